package gateway

import "time"

// A node cut off from its cluster, alive (watchCutOff), is taken for
// down by its peers a lease TTL after its last lease write; a lease TTL
// later still they sweep its media ledger (sweepDead) and delete its
// calls' media in rtpengine, which they cannot tell from a dead node's.
// Its calls would go on here without media. So the cut-off node ends
// its calls with anchored media first, cleanly (docs/media.md, "A
// gateway cut off from its cluster"): it sees the cut within a round
// of watchCutOff and a ping of the lease lapsing, and the peers' wait
// is longer by cutOffMargin at least. The times derive from these
// functions alone, so that they cannot drift apart.

// cutOffReason ends the calls with anchored media of a node cut off from
// its cluster: the web side's shutdown reason, SIP's BYE Reason.
const cutOffReason = "gateway cut off from its cluster"

// cutOffMargin is what the peers' wait before a sweep leaves a cut-off
// node, beyond its worst time to see the cut, to end its calls.
const cutOffMargin = time.Second

// cutOffRound is how often watchCutOff asks whether the node is cut off.
func cutOffRound(leaseTTL time.Duration) time.Duration { return leaseTTL / 3 }

// cutOffSeen bounds how long after its lease lapsed a cut-off node sees
// it: a round of watchCutOff and the ping that no peer answers.
func cutOffSeen(leaseTTL time.Duration) time.Duration { return cutOffRound(leaseTTL) + cutOffPing }

// mediaSweepWait is how long a node waits, once a peer's lease expired,
// before it sweeps the peer's media ledger: a lease TTL (a node that
// comes back at once sweeps its own earlier life), and never less than a
// cut-off node needs to see the cut and end its anchored calls.
func mediaSweepWait(leaseTTL time.Duration) time.Duration {
	return max(leaseTTL, cutOffSeen(leaseTTL)+cutOffMargin)
}

// endCutOffMedia ends this node's calls with anchored media while it is
// cut off from its cluster (watchCutOff, every round: a call from SIP may
// come in meanwhile), where survivors would sweep their media: with a
// media ledger only.
func (g *Gateway) endCutOffMedia() {
	if g.ledger == nil {
		return
	}
	if n := g.calls.EndAnchored(cutOffReason); n > 0 {
		g.log.Warn("cut off from the cluster: calls with media in rtpengine ended before the other nodes delete it", "calls", n)
	}
}
