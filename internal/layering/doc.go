// Package layering holds the test that keeps the project's imports going
// downward (docs/DEVELOPING.md): cmd -> gateway -> transports, session,
// handlers, auth, limits, store -> sipgw -> protocol.
package layering
