package gateway

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jsonrtc/jsonrtc/media/rtpengine"
	"github.com/jsonrtc/jsonrtc/store"
)

// The media ledger: each call anchored in rtpengine has a record in the
// store (media.<node>.<hash of its Call-ID>) from its first offer to its
// delete, so that calls a dead process left in rtpengine are deleted
// when the node starts again, or by another node of the cluster once
// the dead one's lease expired (docs/media.md, "A gateway that dies"),
// not only at rtpengine's --timeout. Of the nodes that sweep a dead
// node's records at once (every survivor, the node itself restarted),
// exactly one deletes each call: it claims the record first by
// compare-and-set (claim). Records live as long as session records after
// their last write (Config.RecordTTL): the ledger writes each live one
// again well before that.

// maxLedgerQueue bounds the writes waiting for the store; beyond it a
// call goes unrecorded (counted, logged): only a crash would then leave
// it to rtpengine's --timeout.
const maxLedgerQueue = 4096

// ledgerRecord is a record's value: what a sweep needs to delete the
// call, and the incarnation of the process that made it.
type ledgerRecord struct {
	CallID  string `json:"call_id"`
	FromTag string `json:"from_tag"`
	Addr    string `json:"addr"`
	Life    string `json:"life"`
	// Claim names the sweeper (node/life) that took the record to delete
	// its call; empty while the call's own life holds it.
	Claim string `json:"claim,omitempty"`
}

// heldRecord is a live call's record as last written: what refresh
// writes again, over its revision.
type heldRecord struct {
	data []byte
	rev  uint64
}

type ledgerOp struct {
	rec     ledgerRecord
	release bool
}

type mediaLedger struct {
	g      *Gateway
	prefix string // media.<node>.
	life   string // this process's incarnation
	ttl    time.Duration

	mu    sync.Mutex
	queue []ledgerOp
	kick  chan struct{}
	live  map[string]heldRecord // the calls held now, by key: run's own

	sweeping map[string]bool // dead peers being swept (sweepDead), under mu
	// retry holds the releases whose delete failed (a node cut off from
	// its cluster, whose store takes no write): refresh queues them
	// again, so that the records go when the store is back, not at
	// their age limit. run's own.
	retry []ledgerOp

	dropped, swept atomic.Uint64
}

func newMediaLedger(g *Gateway, node string) *mediaLedger {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return &mediaLedger{g: g, prefix: "media." + node + ".", life: hex.EncodeToString(b[:]), ttl: g.cfg.RecordTTL(),
		kick: make(chan struct{}, 1), live: map[string]heldRecord{}, sweeping: map[string]bool{}}
}

// ledgerKey names a call's record: Call-IDs of calls from SIP may hold
// characters a NATS key refuses.
func ledgerKey(prefix, callID string) string {
	h := sha256.Sum256([]byte(callID))
	return prefix + hex.EncodeToString(h[:16])
}

// Hold and Release queue the write (rtpengine.Ledger: never block).
func (l *mediaLedger) Hold(k rtpengine.Keys, addr string) {
	l.push(ledgerOp{rec: ledgerRecord{CallID: k.CallID, FromTag: k.FromTag, Addr: addr, Life: l.life}})
}

func (l *mediaLedger) Release(callID string) {
	l.push(ledgerOp{rec: ledgerRecord{CallID: callID}, release: true})
}

func (l *mediaLedger) push(op ledgerOp) {
	l.mu.Lock()
	if len(l.queue) >= maxLedgerQueue {
		l.mu.Unlock()
		l.dropped.Add(1)
		l.g.rlog.Warn("media ledger", "media ledger full: a call's record is not written", "call_id", op.rec.CallID)
		return
	}
	l.queue = append(l.queue, op)
	l.mu.Unlock()
	poke(l.kick)
}

// run writes the queued records until ctx ends, and every third of
// their lifetime writes the live ones again.
func (l *mediaLedger) run(ctx context.Context) { writeLoop(ctx, l.kick, l.ttl, l.drain, l.refresh) }

// poke wakes a writeLoop, or leaves it awake.
func poke(kick chan struct{}) {
	select {
	case kick <- struct{}{}:
	default:
	}
}

// writeLoop runs drain on each poke of kick and refresh every third of
// ttl (the records' lifetime in the store), until ctx ends.
func writeLoop(ctx context.Context, kick <-chan struct{}, ttl time.Duration, drain, refresh func(context.Context)) {
	t := time.NewTicker(max(ttl/3, time.Second))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-kick:
			drain(ctx)
		case <-t.C:
			refresh(ctx)
		}
	}
}

func (l *mediaLedger) drain(ctx context.Context) {
	for {
		l.mu.Lock()
		q := l.queue
		l.queue = nil
		l.mu.Unlock()
		if len(q) == 0 {
			return
		}
		for _, op := range q {
			key := ledgerKey(l.prefix, op.rec.CallID)
			wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			if op.release {
				if err := l.g.store.Delete(wctx, key); err != nil && !errors.Is(err, store.ErrNotFound) {
					l.g.rlog.Info("media ledger", "media ledger: a record not deleted (tried again)", "err", err)
					if len(l.retry) < maxLedgerQueue {
						l.retry = append(l.retry, op)
					}
				}
				delete(l.live, key)
			} else if data, err := json.Marshal(op.rec); err == nil {
				rev, err := l.g.store.Create(wctx, key, data)
				if errors.Is(err, store.ErrConflict) {
					// A record of the same Call-ID from a life before:
					// this call is the one rtpengine holds now.
					_ = l.g.store.Delete(wctx, key)
					rev, err = l.g.store.Create(wctx, key, data)
				}
				if err != nil {
					l.g.rlog.Info("media ledger", "media ledger: a call's record not written", "err", err)
				} else {
					l.live[key] = heldRecord{data: data, rev: rev}
				}
			}
			cancel()
		}
	}
}

// refresh writes every live record again, before the store's age limit
// forgets it under a long call, and queues again the releases that
// failed.
func (l *mediaLedger) refresh(ctx context.Context) {
	if len(l.retry) > 0 {
		l.mu.Lock()
		l.queue = append(l.queue, l.retry...)
		l.mu.Unlock()
		l.retry = nil
		poke(l.kick)
	}
	for key, h := range l.live {
		if nh, keep := rewrite(ctx, l.g.store, key, h); keep {
			l.live[key] = nh
		} else {
			delete(l.live, key)
		}
	}
}

// sweepDead sweeps a peer whose lease expired (cluster.Node.OnNodeDown),
// once it has stayed down mediaSweepWait more: a node that comes back at
// once sweeps its own earlier life, and the calls of its new life are
// none of the dead one's; a node cut off, alive, has ended its calls
// with anchored media by then (mediacutoff.go).
func (l *mediaLedger) sweepDead(ctx context.Context, node string) {
	l.mu.Lock()
	busy := l.sweeping[node]
	l.sweeping[node] = true
	l.mu.Unlock()
	if busy {
		return
	}
	defer func() {
		l.mu.Lock()
		delete(l.sweeping, node)
		l.mu.Unlock()
	}()
	if !sleepCtx(ctx, mediaSweepWait(l.g.node.LeaseTTL())) || !l.g.node.Down(node) {
		return
	}
	l.sweep(ctx, node)
}

// rewrite writes a held record again over its revision; keep is false
// when it is no longer ours: gone (expired) or written by another. A
// write that fails otherwise keeps it as it was, for the next round.
func rewrite(ctx context.Context, st store.Store, key string, h heldRecord) (nh heldRecord, keep bool) {
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	rev, err := st.Update(wctx, key, h.data, h.rev)
	switch {
	case err == nil:
		return heldRecord{data: h.data, rev: rev}, true
	case errors.Is(err, store.ErrConflict):
		return h, false
	}
	return h, true
}

// sweep deletes in rtpengine the calls of node's records (this node's
// from an earlier life, or a dead node's), each once claimed, and then
// their records.
func (l *mediaLedger) sweep(ctx context.Context, node string) {
	prefix := "media." + node + "."
	keys, err := l.g.store.Keys(ctx, prefix)
	if err != nil {
		l.g.log.Warn("media ledger: the calls a dead process left could not be listed", "node", node, "err", err)
		return
	}
	// SIP calls with a record go on elsewhere, or here again, media and
	// all (sipcallrepl.go): their adopter holds them.
	adopted, err := l.g.repl.sipMediaCalls(ctx)
	if err != nil {
		l.g.log.Warn("media ledger: the SIP calls' records could not be read: the calls a dead process left are not swept", "node", node, "err", err)
		return
	}
	swept := 0
	for _, key := range keys {
		if !strings.HasPrefix(key, prefix) {
			continue
		}
		data, rev, err := l.g.store.Get(ctx, key)
		if err != nil {
			continue
		}
		var rec ledgerRecord
		if json.Unmarshal(data, &rec) != nil || (node == l.node() && rec.Life == l.life) || adopted[rec.CallID] || !l.claim(ctx, node, key, rec, rev) {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, l.g.cfg.Media.WithDefaults().Timeout)
		err = l.g.pool.Sweep(sctx, rec.Addr, rtpengine.Keys{CallID: rec.CallID, FromTag: rec.FromTag})
		cancel()
		if err == nil {
			swept++
		}
		_ = l.g.store.Delete(ctx, key)
	}
	if swept > 0 {
		l.swept.Add(uint64(swept))
		l.g.log.Info("media ledger: calls a dead process left in rtpengine deleted", "node", node, "calls", swept)
	}
}

// claim makes this life the sweeper of a record read at rev, by
// compare-and-set: false when another sweeper, alive, has it, when the
// write lost to another's (a survivor's, or the node's own back), or
// when node, a peer, is alive again (its records are its own).
func (l *mediaLedger) claim(ctx context.Context, node, key string, rec ledgerRecord, rev uint64) bool {
	me := l.node() + "/" + l.life
	if by, life, ok := strings.Cut(rec.Claim, "/"); ok && rec.Claim != me {
		// A sweeper that died (a peer down, or an earlier life of this
		// node) leaves the record to be claimed again.
		if by == l.node() && life == l.life || by != l.node() && (l.g.node == nil || !l.g.node.Down(by)) {
			return false
		}
	}
	if node != l.node() && (l.g.node == nil || !l.g.node.Down(node)) {
		return false
	}
	rec.Claim = me
	data, err := json.Marshal(rec)
	if err != nil {
		return false
	}
	_, err = l.g.store.Update(ctx, key, data, rev)
	return err == nil
}

func (l *mediaLedger) node() string {
	return strings.TrimSuffix(strings.TrimPrefix(l.prefix, "media."), ".")
}
