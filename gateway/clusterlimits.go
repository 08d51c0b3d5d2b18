package gateway

// sessionsElsewhere counts identity's live sessions on the other nodes
// of a cluster, from this node's view of the directory, for the
// identity's session limit to hold cluster-wide (docs/cluster.md,
// "Limits"). The view lags a session started elsewhere a moment ago: two
// connects at once on two nodes may both be admitted.
func (g *Gateway) sessionsElsewhere(identity string) int {
	if g.node == nil {
		return 0
	}
	return len(g.liveEntries(g.node.Remote(identity)))
}
