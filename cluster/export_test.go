package cluster

import "encoding/json"

// FailLeaseWrites fails n's lease writes from now on (on) or no more.
func (n *Node) FailLeaseWrites(on bool) { n.failLease.Store(on) }

// CutRoute has n's requests to peer find no responders (on) or not, as
// with the link between them cut.
func (n *Node) CutRoute(peer string, on bool) {
	if on {
		n.noRoute.Store(peer, true)
	} else {
		n.noRoute.Delete(peer)
	}
}

// Pong is what n answers a ping with: its lease's age and for how long
// its writes have succeeded, in milliseconds (-1: none).
func (n *Node) Pong() (wroteMS, writableMS int64) {
	var p pong
	json.Unmarshal(n.pong(), &p)
	return p.WroteMS, p.WritableMS
}

// WatchesEnded counts the watches nats.go ended that n made again.
func (n *Node) WatchesEnded() uint64 { return n.watchEnded.Load() }

func (n *Node) Rewatched() uint64 { return n.rewatched.Load() }
