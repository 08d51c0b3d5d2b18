// Package limits enforces rate limits and quotas on the gateway: per
// source address (handshakes per second), and per application and per
// identity (concurrent sessions, calls and subscriptions; client frames
// per second; instant messages per minute).
//
// Start with [New] and [Config]. At the WebSocket handshake the gateway
// calls [Limiter.AllowHandshake] before authenticating, then
// [Limiter.OpenSession] with the authenticated application and identity;
// the [Session] it returns is checked on every frame ([Session.AllowFrame])
// and around calls, subscriptions and messages, and closed when the
// session ends. Every denial is counted by limit and scope
// ([Limiter.Denials]) for the metrics endpoint.
//
// Rates are token buckets kept as one atomic word each (the generic cell
// rate algorithm, GCRA: a "theoretical arrival time" that each event
// pushes forward by the refill interval, refused when it runs more than
// burst-1 intervals ahead of now). A Session holds pointers to its
// identity's and application's state, so the per-frame path takes no lock
// and looks nothing up. Keys live in sharded maps bounded by
// [Config.MaxKeys]; a key that holds nothing and whose buckets are full
// again is dropped lazily, when its shard needs room, since forgetting it
// changes no decision. The package starts no goroutine.
//
// Limits are per gateway node: a cluster of n nodes admits up to n times
// the configured application-wide rates. An identity's sessions and
// calls on the other nodes are the caller's to count and pass in
// ([Limiter.OpenSessionBeside], [Session.AcquireCallBeside]).
package limits
