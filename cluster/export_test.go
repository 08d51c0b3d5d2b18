package cluster

// FailLeaseWrites fails n's lease writes from now on (on) or no more.
func (n *Node) FailLeaseWrites(on bool) { n.failLease.Store(on) }
