package gateway

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/jsonrtc/jsonrtc/cluster"
	"github.com/jsonrtc/jsonrtc/presence"
)

// Presence across the nodes of a cluster (docs/cluster.md, "Presence"):
// each node writes its sessions' shares in their identities' states
// (presence.Options.Local) to a replicated bucket, one entry per session,
// and feeds what the other nodes write to its presence handler
// (presence.Handler.RemoteSession), which composes an identity's state
// from all its sessions and tells its own watchers.
//
// Entries live as long as session records after their last write:
// each node writes its live ones again every third of that, and forgets
// the others' entries not written for that long (a watch hears no
// expiry). A session that ends deletes its entry; one that moves has it
// written by its new node; a dead node's entries go with its sessions'
// resumes elsewhere, or the resume timeout after its lease lapsed.

// PresenceBucket is the bucket of the sessions' presence.
const PresenceBucket = "jsonrtc_presence"

type presenceKey struct{ identity, session string }

// presenceValue is an entry: the session's share and its node.
type presenceValue struct {
	Node string `json:"node"`
	presence.RemoteSession
}

type presenceOp struct {
	key  presenceKey
	data []byte // nil: delete
}

type presenceSeen struct {
	node    string
	at      time.Time
	watches int // that its last write carried (tests wait on it)
}

type presenceRepl struct {
	g      *Gateway
	shared *cluster.Shared
	ttl    time.Duration

	mu    sync.Mutex
	queue []presenceOp
	kick  chan struct{}
	local map[presenceKey][]byte // this node's live entries
	// gone: this node's entries deleted, until the watch brings the
	// delete (a write before it is still this node's).
	gone map[presenceKey]struct{}
	seen map[presenceKey]presenceSeen // the others' entries
}

// startPresenceRepl opens the bucket and starts the writer; the watch
// feeds the handler from now on.
func (g *Gateway) startPresenceRepl() error {
	p := &presenceRepl{g: g, ttl: g.cfg.RecordTTL(), kick: make(chan struct{}, 1),
		local: map[presenceKey][]byte{}, gone: map[presenceKey]struct{}{}, seen: map[presenceKey]presenceSeen{}}
	ctx, cancel := context.WithTimeout(g.ctx, 10*clusterTimeout)
	defer cancel()
	shared, err := g.node.OpenShared(ctx, PresenceBucket, p.ttl, p.heard)
	if err != nil {
		return err
	}
	p.shared = shared
	g.prepl.Store(p)
	g.wg.Go(p.run)
	return nil
}

// presenceLocal implements presence.Options.Local.
func (g *Gateway) presenceLocal(identity, session string, r *presence.RemoteSession) {
	g.keepPresence(identity, session, r)
	p := g.prepl.Load()
	if p == nil {
		return
	}
	k := presenceKey{identity, session}
	if r == nil {
		g.mu.Lock()
		closing := g.closed && g.wal
		g.mu.Unlock()
		p.mu.Lock()
		delete(p.local, k)
		if !closing {
			// A shutdown keeps its sessions' records, for their clients
			// to resume on another node: their entries stay until then.
			p.queue = append(p.queue, presenceOp{key: k})
			p.gone[k] = struct{}{}
		}
		p.mu.Unlock()
		p.wake()
		return
	}
	data, err := json.Marshal(presenceValue{Node: g.self(), RemoteSession: *r})
	if err != nil {
		return
	}
	p.mu.Lock()
	p.local[k] = data
	p.queue = append(p.queue, presenceOp{key: k, data: data})
	p.mu.Unlock()
	p.wake()
}

// A session's share is in its record too (record.Presence), written
// ahead as the rest of its state: the presence handler exports it before
// it answers the publish or the watch, so an answer the client got is in
// the store. The bucket is in memory, replicated across the nodes of a
// cluster; the record is what a restart of the node on its data
// directory (alone, or after a kill -9) reads back (restoreAll), and a
// single node has no bucket at all. The share is small (a state and the
// watches' targets) and changes only at a publish, a watch or an
// unwatch, so it costs a record write no more often than the frames do.

// keepPresence puts session's share in its record. The end of a session
// leaves it: a shutdown keeps the record, with the share, for the next
// run.
func (g *Gateway) keepPresence(identity, session string, r *presence.RemoteSession) {
	if r == nil {
		return
	}
	s := g.lookup(session)
	if s == nil || s.identity != identity {
		return
	}
	s.mu.Lock()
	s.presence = r
	s.markDirtyLocked()
	s.mu.Unlock()
}

// restorePresence gives the presence handler the share of s, a session
// restored from its record (at start-up, or taken over from another
// node, whose bucket entry may be gone with the bucket's memory): its
// identity's state holds the publication meanwhile, and the client's
// resume takes the publication and the watches over, made again without
// a word to it, as after a move (presence.Handler's adopt). The record
// is at least as recent as the bucket in what the client was answered:
// it is written ahead of the answer, the bucket after.
func (g *Gateway) restorePresence(s *Session, r *presence.RemoteSession) {
	if r == nil {
		return
	}
	s.mu.Lock()
	s.presence = r
	s.mu.Unlock()
	g.presence.RemoteSession(s.identity, s.id, r)
}

// presenceMoved: s moved to another node, which writes its entry from
// now on.
func (g *Gateway) presenceMoved(s *Session) {
	g.presence.SessionMoved(s)
	if p := g.prepl.Load(); p != nil {
		p.mu.Lock()
		delete(p.local, presenceKey{s.identity, s.id})
		p.mu.Unlock()
	}
}

func (p *presenceRepl) wake() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// heard is told of every write to the bucket, this node's included.
func (p *presenceRepl) heard(identity, session string, data []byte) {
	k := presenceKey{identity, session}
	var v presenceValue
	if data != nil && (json.Unmarshal(data, &v) != nil || v.Node == "") {
		return
	}
	p.mu.Lock()
	// An entry in this node's name that it does not hold is an earlier
	// life's (a restart on the same data), or a write that landed after
	// its session moved on: another node's, as far as this one goes, so
	// that a session restored here takes its state over.
	_, mine := p.local[k]
	_, ended := p.gone[k]
	ours := data == nil || (v.Node == p.g.self() && (mine || ended))
	if data == nil {
		delete(p.gone, k)
	}
	if ours {
		delete(p.seen, k)
	} else {
		p.seen[k] = presenceSeen{node: v.Node, at: time.Now(), watches: len(v.Watches)}
	}
	p.mu.Unlock()
	if ours {
		// A remote copy of a session that came here goes.
		p.g.presence.RemoteSession(identity, session, nil)
		return
	}
	p.g.presence.RemoteSession(identity, session, &v.RemoteSession)
}

// run writes the queue as it fills, and every third of the TTL writes
// the live entries again and forgets the others' stale ones.
func (p *presenceRepl) run() {
	t := time.NewTicker(p.ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-p.g.ctx.Done():
			return
		case <-p.kick:
			p.flush()
		case <-t.C:
			p.mu.Lock()
			for k, data := range p.local {
				p.queue = append(p.queue, presenceOp{key: k, data: data})
			}
			p.mu.Unlock()
			p.flush()
			p.sweep(time.Now().Add(-p.ttl), "")
		}
	}
}

func (p *presenceRepl) flush() {
	p.mu.Lock()
	q := p.queue
	p.queue = nil
	p.mu.Unlock()
	var failed []presenceOp
	for _, op := range q {
		ctx, cancel := context.WithTimeout(p.g.ctx, clusterTimeout)
		var err error
		if op.data == nil {
			err = p.shared.Delete(ctx, op.key.identity, op.key.session)
		} else {
			err = p.shared.Put(ctx, op.key.identity, op.key.session, op.data)
		}
		cancel()
		if err != nil && p.g.ctx.Err() == nil {
			p.g.rlog.Warn("cluster presence", "writing a session's presence failed; trying again", "session_id", op.key.session, "err", err)
			failed = append(failed, op)
		}
	}
	if len(failed) > 0 {
		p.again(failed)
	}
}

// presenceRetry is the wait before a failed presence write is made again.
const presenceRetry = 250 * time.Millisecond

// again queues the failed ops to be written again soon, before what was
// queued meanwhile, unless that has a newer op of theirs. Left to the
// rewrite every third of the TTL, a publication that met a bucket
// electing its leader (a node killed) reached the other nodes' watchers
// minutes later (test/cluster TestPresenceNodeKilled).
func (p *presenceRepl) again(failed []presenceOp) {
	p.mu.Lock()
	newer := map[presenceKey]bool{}
	for _, op := range p.queue {
		newer[op.key] = true
	}
	var again []presenceOp
	for _, op := range failed {
		if !newer[op.key] {
			again = append(again, op)
		}
	}
	p.queue = append(again, p.queue...)
	p.mu.Unlock()
	time.AfterFunc(presenceRetry, func() {
		select {
		case p.kick <- struct{}{}:
		default:
		}
	})
}

// sweep forgets the others' entries last written before cutoff (of
// node's only, unless node is empty).
func (p *presenceRepl) sweep(cutoff time.Time, node string) {
	var gone []presenceKey
	p.mu.Lock()
	for k, s := range p.seen {
		if s.at.Before(cutoff) && (node == "" || s.node == node) {
			gone = append(gone, k)
			delete(p.seen, k)
		}
	}
	p.mu.Unlock()
	for _, k := range gone {
		p.g.presence.RemoteSession(k.identity, k.session, nil)
	}
}

// nodeDown: node's lease lapsed. Its sessions that nobody resumes
// within the resume timeout are gone.
func (p *presenceRepl) nodeDown(node string) {
	down := time.Now()
	time.AfterFunc(p.g.cfg.Session.ResumeTimeout.D(), func() {
		if p.g.ctx.Err() == nil {
			p.sweep(down, node)
		}
	})
}
