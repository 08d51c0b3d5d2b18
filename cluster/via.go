package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/nats-io/nats.go"
)

// Requests relayed through a third node. NATS carries a message over one
// route, never from one route to another: with the link between two
// nodes alone cut (each still reaching the third: a firewall rule, a
// route lost on one path), a request from one to the other finds no
// responders although the other is alive, its lease written through the
// store. Messages and calls' frames between sessions on the two nodes
// then waited for the link, and got 480 past the bound of a held frame
// (docs/cluster.md "One link cut"). A request that finds no responders
// at a node this one takes for alive is now sent to a live peer, which
// makes it for it and relays the answer back.
//
// Order is kept as before: a caller waits for each request's answer
// before it makes the next of an interaction, whichever way it went;
// the receiver handles the requests of one kind one at a time, as they
// come. A node that died within its lease is found so through the peer
// too (its answer says no node): one round trip more, once per request.

// kindVia is the subject kind on which a node relays requests for its
// peers.
const kindVia = "via"

// maxVia bounds the relayed requests a node waits on at once for its
// peers; past it, it answers busy, and the asker tries another peer.
const maxVia = 256

// viaMargin is what the asker keeps of its deadline for the way back:
// the relaying node's own request ends that much before.
const viaMargin = 100 * time.Millisecond

type viaReq struct {
	To   string `json:"to"`
	Kind string `json:"kind"`
	Data []byte `json:"data"`
	// WaitMS bounds the relaying node's request.
	WaitMS int64 `json:"wait_ms"`
}

// viaRep is the answer of a relayed request: the reply, or why none.
type viaRep struct {
	Data []byte `json:"data,omitempty"`
	Err  string `json:"err,omitempty"`
}

// Reasons a relaying node gives for no reply.
const (
	viaNoNode  = "no node" // the target does not answer there either
	viaBusy    = "busy"    // maxVia relayed requests under way
	viaTimeout = "timeout"
)

// serveVia relays peers' requests, each on a goroutine of its own, up to
// maxVia at once.
func (n *Node) serveVia() error {
	slots := make(chan struct{}, maxVia)
	sub, err := n.nc.Subscribe(subject(n.o.Name, kindVia), func(m *nats.Msg) {
		if m.Reply == "" {
			return
		}
		var req viaReq
		if err := json.Unmarshal(m.Data, &req); err != nil || !validName(req.To) || req.Kind == "" {
			respondVia(m, viaRep{Err: "bad request"})
			return
		}
		select {
		case slots <- struct{}{}:
		default:
			respondVia(m, viaRep{Err: viaBusy})
			return
		}
		n.relayed.Add(1)
		go func() {
			defer func() { <-slots }()
			wait := min(time.Duration(req.WaitMS)*time.Millisecond, maxViaWait)
			ctx, cancel := context.WithTimeout(n.ctx, wait)
			defer cancel()
			rep, err := n.nc.RequestWithContext(ctx, subject(req.To, req.Kind), req.Data)
			switch {
			case err == nil:
				respondVia(m, viaRep{Data: rep.Data})
			case errors.Is(err, nats.ErrNoResponders):
				respondVia(m, viaRep{Err: viaNoNode})
			case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
				respondVia(m, viaRep{Err: viaTimeout})
			default:
				respondVia(m, viaRep{Err: err.Error()})
			}
		}()
	})
	if err != nil {
		return err
	}
	n.mu.Lock()
	n.subs = append(n.subs, sub)
	n.mu.Unlock()
	return nil
}

// maxViaWait bounds a relayed request whatever its asker asks.
const maxViaWait = 30 * time.Second

func respondVia(m *nats.Msg, rep viaRep) {
	data, _ := json.Marshal(rep)
	m.Respond(data)
}

// requestVia sends a request that found no responders at node through
// a live peer, trying each in a random order until one relays it. It
// reports tried false when node is not alive here or no peer is: the
// caller's "no node" stands.
func (n *Node) requestVia(ctx context.Context, node, kind string, data []byte) (rep []byte, tried bool, err error) {
	if !n.Alive(node) {
		return nil, false, nil
	}
	var peers []string
	for _, p := range n.Nodes() {
		if p != node && p != n.o.Name {
			peers = append(peers, p)
		}
	}
	if len(peers) == 0 {
		return nil, false, nil
	}
	rand.Shuffle(len(peers), func(i, j int) { peers[i], peers[j] = peers[j], peers[i] })
	wait := time.Duration(1<<62 - 1)
	if d, ok := ctx.Deadline(); ok {
		wait = time.Until(d) - viaMargin
	}
	if wait <= 0 {
		return nil, true, context.DeadlineExceeded
	}
	req, _ := json.Marshal(viaReq{To: node, Kind: kind, Data: data, WaitMS: wait.Milliseconds()})
	err = fmt.Errorf("%w: %s", ErrNoNode, node)
	for _, p := range peers {
		m, rerr := n.nc.RequestWithContext(ctx, subject(p, kindVia), req)
		if rerr != nil {
			if ctx.Err() != nil {
				return nil, true, rerr
			}
			continue // that peer out of reach too, or of an earlier version
		}
		var r viaRep
		if json.Unmarshal(m.Data, &r) != nil {
			continue
		}
		switch r.Err {
		case "":
			n.sentVia.Add(1)
			return r.Data, true, nil
		case viaNoNode, viaBusy:
			continue
		case viaTimeout:
			return nil, true, fmt.Errorf("cluster: request to %s through %s: %w", node, p, context.DeadlineExceeded)
		default:
			err = fmt.Errorf("cluster: request to %s through %s: %s", node, p, r.Err)
		}
	}
	return nil, true, err
}

// Relayed counts the requests this node sent through a peer and
// answered (sent), and those it relayed for its peers (relayed).
func (n *Node) Relayed() (sent, relayed uint64) { return n.sentVia.Load(), n.relayed.Load() }
