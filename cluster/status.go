package cluster

import (
	"sort"
	"time"
)

// Status is what a node knows of the cluster, for operators
// (docs/cluster.md "Operations"): read from its own state, it asks
// nothing of the network and answers while the cluster has no quorum.
type Status struct {
	// Node is this node's name.
	Node string `json:"node"`
	// LeaseTTL is how long a silent node stays up.
	LeaseTTL string `json:"lease_ttl"`
	// Nodes lists this node and the peers whose leases it saw, by name.
	Nodes []NodeStatus `json:"nodes"`
}

// NodeStatus is one node as seen from here.
type NodeStatus struct {
	Name string `json:"name"`
	// Up: the lease is live (for this node: its last write succeeded).
	Up bool `json:"up"`
	// Lease is the last write of its lease seen; zero when none.
	Lease time.Time `json:"lease,omitzero"`
	// Sessions counts the directory entries naming the node, in this
	// node's view of the directory.
	Sessions int `json:"sessions"`
}

// Status reports this node's view of the cluster.
func (n *Node) Status() Status {
	n.mu.Lock()
	defer n.mu.Unlock()
	byNode := map[string]*NodeStatus{n.o.Name: {Name: n.o.Name, Up: !n.failing && !n.wrote.IsZero(), Lease: n.wrote.UTC()}}
	for name, at := range n.seen {
		byNode[name] = &NodeStatus{Name: name, Up: true, Lease: at.UTC()}
	}
	for _, e := range n.byID {
		s := byNode[e.Node]
		if s == nil {
			// Named by entries, its lease expired or never seen.
			s = &NodeStatus{Name: e.Node}
			byNode[e.Node] = s
		}
		s.Sessions++
	}
	st := Status{Node: n.o.Name, LeaseTTL: n.o.LeaseTTL.String()}
	for _, s := range byNode {
		st.Nodes = append(st.Nodes, *s)
	}
	sort.Slice(st.Nodes, func(i, j int) bool { return st.Nodes[i].Name < st.Nodes[j].Name })
	return st
}
