//go:build race

package cluster

// raceEnabled: jsonrtcd is built with the race detector too.
const raceEnabled = true
