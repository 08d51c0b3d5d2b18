package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jsonrtc/jsonrtc/call"
	"github.com/jsonrtc/jsonrtc/endpoint"
	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/store"
	"github.com/prometheus/client_golang/prometheus"
)

// Replicated web calls (docs/cluster.md, "A dead node"): each call
// between web sessions has a record in the store, the session records'
// bucket (same replicas, same age limit, written again while the call
// lasts), from its start (ringing) to its end. The record names the
// call's host and holds its snapshot (call.Snapshot) under the key of
// its caller's leg; each callee leg (each ringing fork, then the one
// that answered) has a key that points at it. When
// a host dies, the owner of a session with a route to it for a call (a
// survivor's live session at the lease's expiry, or a session resuming
// later) adopts the call: it takes the record by compare-and-set on its
// revision, naming itself the host, and rebuilds the call in its
// handler; whoever loses the race reads the new host. A node restarted
// on its data directory adopts back the calls still naming it.

// maxCallQueue bounds the call records waiting for the store; beyond it
// a call's change goes unwritten (counted, logged): the call goes on,
// and only its host's death would then end it.
const maxCallQueue = 4096

// callPrefix begins the keys of call records.
const callPrefix = "call."

// callRecord is a record's value: under the caller leg's key, the host
// and the call; under the callee leg's, the caller leg's key.
type callRecord struct {
	Host string         `json:"host,omitempty"`
	Call *call.Snapshot `json:"call,omitempty"`
	Of   string         `json:"of,omitempty"`
	// SIP is a SIP call's dialog, whose App is its call.SIPSnapshot
	// (sipcallrepl.go), under its web leg's key; Call is then nil.
	SIP *call.SIPDialog `json:"sip,omitempty"`
	// Released: the host handed the SIP call over (a drain): a node
	// taking its session over adopts it at once, the host alive.
	Released bool `json:"released,omitempty"`
	// Ended is why the call is over, in the record left for the legs
	// whose sessions resume after the end (its other fields but Host,
	// the node that ended it, are empty): a ringing SIP call of several
	// web sessions a node found of a dead host and ended, whose forks'
	// sessions resume on other nodes, up to a lease's time apart
	// (takeSIP). Their owners tell them this reason, not that the
	// call's node went down. It is not written again, and expires with
	// the bucket's age limit, as the forks' keys pointing at it.
	Ended string `json:"ended,omitempty"`
}

// callKey names the record of a leg: the client's subsession ids are
// its own, and may hold characters a NATS key refuses.
func callKey(session, sub string) string {
	h := sha256.Sum256([]byte(session + "\x00" + sub))
	return callPrefix + hex.EncodeToString(h[:16])
}

// legID names a call's caller leg.
type legID struct{ session, sub string }

type callOp struct {
	sn    call.Snapshot
	ended bool
	// web is a SIP call's web leg, and sip its dialog (sipcallrepl.go);
	// nil for a call between web sessions.
	web      *call.LegSnapshot
	sip      *call.SIPDialog
	released bool
	// forks are the other web legs a ringing incoming SIP call rings
	// (call.SIPSnapshot.Forks): their keys point at the record.
	forks []call.LegSnapshot
	// done hear the outcome of the change's write (nil: written; each
	// has room for it): the write-ahead of a SIP call's requests waits
	// for it.
	done []chan error
}

// keys returns the record's key and the key of an answered call's
// callee pointing at it ("" for a SIP call, which has one web leg, and
// for a ringing call: ptrKeys has its forks').
func (op callOp) keys() (ck, wk string) {
	if op.web != nil {
		return callKey(op.web.Session, op.web.Sub), ""
	}
	ck = callKey(op.sn.Caller.Session, op.sn.Caller.Sub)
	if !op.sn.Answered() {
		return ck, ""
	}
	return ck, callKey(op.sn.Callee.Session, op.sn.Callee.Sub)
}

// ptrKeys are the keys pointing at the record: one per callee leg of a
// call between web sessions (its ringing forks, or the one that
// answered), one per fork of a SIP call ringing several web sessions
// besides its web leg (none, not nil, for the others: the forks that
// no longer ring point at it no more).
func (op callOp) ptrKeys() []string {
	if op.web != nil {
		ks := []string{}
		for _, l := range op.forks {
			ks = append(ks, callKey(l.Session, l.Sub))
		}
		return ks
	}
	return ptrKeys(op.sn)
}

func ptrKeys(sn call.Snapshot) []string {
	var ks []string
	for _, l := range sn.Callees() {
		ks = append(ks, callKey(l.Session, l.Sub))
	}
	return ks
}

// leg names the call by the leg its record is kept under.
func (op callOp) leg() legID {
	if op.web != nil {
		return legID{op.web.Session, op.web.Sub}
	}
	return legID{op.sn.Caller.Session, op.sn.Caller.Sub}
}

// record is the change's record, naming host.
func (op callOp) record(host string) callRecord {
	if op.web != nil {
		return callRecord{Host: host, SIP: op.sip, Released: op.released}
	}
	return callRecord{Host: host, Call: &op.sn}
}

type callRepl struct {
	g    *Gateway
	host string // this node's name; "local" alone
	ttl  time.Duration

	mu    sync.Mutex
	queue map[string]callOp // by the caller leg's key: the last change wins
	order []string
	kick  chan struct{}
	// live are the records this node holds, by key: written by run, and
	// added to by adopt.
	live map[string]heldRecord
	// calls are the keys in live of call records (the others point at
	// one): jsonrtc_call_records.
	calls map[string]legID
	// ringing are the keys in calls of SIP calls whose INVITE is under
	// way (sipcallrepl.go): jsonrtc_call_records leaves them out.
	ringing map[string]bool
	// ptrs are the keys in live pointing at each call record, by its key:
	// a ringing fork's goes once another answered.
	ptrs map[string][]string
	// adopting serialises the adoptions of a call.
	adopting idLocks
	// doubtful are the keys of call records whose claim (an adoption's
	// compare-and-set) failed without a conflict: it may have been
	// applied, its answer lost, and the record then names this node for
	// a call it does not have (claim).
	doubtful map[string]bool
	// starting: the calls being adopted back at start (startadopt.go).
	starting *adopting

	// noBatch: the store makes no batches (store.ErrNoBatch); changes
	// are written one by one from then on.
	noBatch atomic.Bool

	dropped, adopted atomic.Uint64
	// waitedAdoption counts the adoptions asked for while this node's
	// own was under way (adoptOnce).
	waitedAdoption atomic.Uint64
	sip            sipCounters // sipcallrepl.go
	// afterClaim, for tests, runs in a web call's adoption between its
	// claim and its rebuilding.
	afterClaim func(ck string)
}

func newCallRepl(g *Gateway, host string) *callRepl {
	return &callRepl{g: g, host: host, ttl: g.cfg.RecordTTL(), queue: map[string]callOp{},
		kick: make(chan struct{}, 1), live: map[string]heldRecord{}, calls: map[string]legID{}, ringing: map[string]bool{}, ptrs: map[string][]string{},
		doubtful: map[string]bool{}, starting: newAdopting()}
}

// collectors are the call records' metrics.
func (r *callRepl) collectors() []prometheus.Collector {
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "jsonrtc_call_records",
			Help: "Calls hosted here (web calls from their start, and SIP calls once confirmed) whose record is in the store (another node goes on with them if this one dies)."},
			func() float64 {
				r.mu.Lock()
				defer r.mu.Unlock()
				return float64(len(r.calls) - len(r.ringing))
			}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "jsonrtc_sip_call_records_ringing",
			Help: "SIP calls hosted here whose INVITE is under way and whose record is in the store (another node ends them if this one dies)."},
			func() float64 {
				r.mu.Lock()
				defer r.mu.Unlock()
				return float64(len(r.ringing))
			}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "jsonrtc_calls_adopting",
			Help: "Calls of this node's earlier life it is adopting back since its start (their frames wait for the adoption)."},
			func() float64 { return float64(r.starting.pending()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "jsonrtc_calls_adopted_total",
			Help: "Web calls this node took over from a dead host, or from its own earlier life, by their records."},
			func() float64 { return float64(r.adopted.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "jsonrtc_call_records_dropped_total",
			Help: "Changes of calls (web and SIP) not written to their records because the write queue was full."},
			func() float64 { return float64(r.dropped.Load()) }),
	}
}

// replicate queues a call's change (call.Options.Replicate: never
// blocks).
func (r *callRepl) replicate(sn call.Snapshot, ended bool) { r.push(callOp{sn: sn, ended: ended}) }

// writeAhead writes a call's answer, or its end, before the other side
// hears of it (call.Options.WriteAhead): it waits for the write, at most
// writeAheadBound. Its error lets the frame go on, written out of line
// as before: refusing a callee's answer or a hang-up for a store's
// outage would fail the call that the record is there to keep.
func (r *callRepl) writeAhead(sn call.Snapshot, ended bool) error {
	done := make(chan error, 1)
	err := errCallQueueFull
	if r.push(callOp{sn: sn, ended: ended, done: []chan error{done}}) {
		t := time.NewTimer(writeAheadBound)
		defer t.Stop()
		select {
		case err = <-done:
		case <-t.C:
			err = errNotWritten
		case <-r.g.ctx.Done():
			err = r.g.ctx.Err()
		}
	}
	if err != nil {
		r.g.rlog.Info("call records", "a call's answer or end relayed before its record was written", "session_id", sn.Caller.Session, "subsession_id", sn.Caller.Sub, "err", err)
	}
	return err
}

// writeAheadBound bounds writeAhead's wait, shorter than a store's
// storeTimeout: the frame's dispatch holds walMu shared meanwhile, and
// the writer's next cut, and every frame after it, waits behind it (a
// store electing a leader held writes about 5 s).
const writeAheadBound = time.Second

// push queues op, over the change of the same call waiting before it;
// false when the queue is full (counted, logged).
func (r *callRepl) push(op callOp) bool {
	k, _ := op.keys()
	r.mu.Lock()
	prev, ok := r.queue[k]
	if !ok {
		if len(r.queue) >= maxCallQueue {
			r.mu.Unlock()
			r.dropped.Add(1)
			id := op.leg()
			r.g.rlog.Warn("call records", "call records' queue full: a call's change is not written", "session_id", id.session, "subsession_id", id.sub)
			return false
		}
		r.order = append(r.order, k)
	}
	op.done = append(prev.done, op.done...)
	r.queue[k] = op
	r.mu.Unlock()
	poke(r.kick)
	return true
}

// run writes the queued changes until ctx ends, and every third of the
// records' lifetime writes the live ones again.
func (r *callRepl) run(ctx context.Context) { writeLoop(ctx, r.kick, r.ttl, r.drain, r.refresh) }

func (r *callRepl) refresh(ctx context.Context) {
	r.mu.Lock()
	live := make(map[string]heldRecord, len(r.live))
	for k, h := range r.live {
		live[k] = h
	}
	r.mu.Unlock()
	for k, h := range live {
		nh, keep := rewrite(ctx, r.g.store, k, h)
		if !keep {
			if rev, mine, _ := r.overOwn(ctx, k, h.data, h.rev); mine {
				nh, keep = heldRecord{data: h.data, rev: rev}, true
			}
		}
		r.mu.Lock()
		id, isCall := r.calls[k]
		if cur := r.live[k]; cur.rev == h.rev && bytes.Equal(cur.data, h.data) { // not written meanwhile
			if keep {
				r.live[k] = nh
			} else {
				delete(r.live, k)
				delete(r.calls, k)
				delete(r.ringing, k)
			}
		}
		r.mu.Unlock()
		if !keep && isCall {
			r.lost(ctx, k, id)
		}
	}
}

// lost drops the copy here of the call under ck, whose record this node
// could not write over its revision, when the record names another host:
// this node was taken for dead, and another adopted the call, or ended
// it (Ended). A record gone (expired) leaves the call here.
func (r *callRepl) lost(ctx context.Context, ck string, id legID) {
	rec, _, _, err := r.read(ctx, ck)
	if err != nil || rec.Call == nil && rec.SIP == nil && rec.Ended == "" || rec.Host == r.host {
		return
	}
	r.g.calls.Drop(id.session, id.sub)
	r.g.rlog.Warn("call records", "a call hosted here was adopted by another node: this copy is dropped", "session_id", id.session, "subsession_id", id.sub, "host", rec.Host)
}

func (r *callRepl) drain(ctx context.Context) {
	for {
		r.mu.Lock()
		q, order := r.queue, r.order
		r.queue, r.order = map[string]callOp{}, nil
		r.mu.Unlock()
		if len(order) == 0 {
			return
		}
		if b, ok := r.g.store.(store.Batcher); ok && !r.noBatch.Load() && r.writeBatch(ctx, b, order, q) {
			continue
		}
		r.writeEach(ctx, order, q)
	}
}

// writeEach writes the changes q of the calls in order one by one.
func (r *callRepl) writeEach(ctx context.Context, order []string, q map[string]callOp) {
	for _, k := range order {
		wctx, cancel := context.WithTimeout(ctx, storeTimeout)
		err := r.write(wctx, k, q[k])
		cancel()
		for _, d := range q[k].done {
			d <- err
		}
	}
}

// A drain's changes go to a store that batches (store.Batcher: a
// replicated bucket) as one atomic batch: a call's record and the
// pointers it creates, written by compare-and-set as one by one, and an
// ended call's record deleted at the revision written here, with its
// pointers. A call setup made seven requests of the store one by one
// (the record and its callee's pointer created, the answer written, and
// at the end a read of the record, its deletion and its pointer's),
// each a raft entry on three nodes: with batches it makes three, fewer
// with calls changing at once (docs/benchmarks.md "Cluster: idle memory
// and call setups"). A batch refused (a conflict: the call adopted by
// another node, a pointer left from before) or not answered is written
// again one by one, which tells a write of ours that was applied from
// another node's (overOwn, createOver).

// plannedCall is a change's part of a batch.
type plannedCall struct {
	ck      string
	op      callOp
	data    []byte // the record; nil for an ended call
	at      int    // its record's write in the batch
	ptrs    []string
	ptr     []byte   // a pointer's value
	created []string // pointers created, at at+1...
	gone    []string // pointers deleted: forks that no longer ring
	ends    []string // an ended call's keys, forgotten here
}

// planBatch makes the batch of the changes q of the calls in order, and
// the plan of each change it holds.
func (r *callRepl) planBatch(order []string, q map[string]callOp) (plans []plannedCall, ws []store.Write) {
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := map[string]bool{}
	for _, ck := range order {
		op := q[ck]
		p := plannedCall{ck: ck, op: op, at: len(ws)}
		h, held := r.live[ck]
		var w []store.Write
		if op.ended {
			p.ends = append([]string{ck}, union(op.ptrKeys(), r.ptrs[ck])...)
			if held {
				// Deleted only while the record is the one written
				// here: a node taken for dead must not delete a call
				// another adopted.
				w = append(w, store.Write{Key: ck, Rev: h.rev, Delete: true})
				for _, k := range p.ends[1:] {
					w = append(w, store.Write{Key: k, Delete: true})
				}
			}
		} else {
			p.data, _ = json.Marshal(op.record(r.host))
			w = append(w, store.Write{Key: ck, Value: p.data, Rev: h.rev}) // a create where not held
			p.ptrs = op.ptrKeys()
			for _, wk := range p.ptrs {
				if _, held := r.live[wk]; !held {
					if p.ptr == nil {
						p.ptr, _ = json.Marshal(callRecord{Of: ck})
					}
					p.created = append(p.created, wk)
					w = append(w, store.Write{Key: wk, Value: p.ptr})
				}
			}
			if p.ptrs != nil {
				for _, k := range r.ptrs[ck] {
					if !slices.Contains(p.ptrs, k) {
						p.gone = append(p.gone, k)
						w = append(w, store.Write{Key: k, Delete: true})
					}
				}
			}
		}
		// A key may be in a batch once: a change touching a key of
		// another's (none known) is left out, written one by one.
		clash := false
		for _, x := range w {
			clash = clash || seen[x.Key]
		}
		if clash {
			continue
		}
		for _, x := range w {
			seen[x.Key] = true
		}
		ws = append(ws, w...)
		plans = append(plans, p)
	}
	return plans, ws
}

// writeBatch writes the changes q of the calls in order as one batch,
// and reports whether it did: false leaves them all unwritten, to be
// written one by one (fewer than two writes, or no batches here).
func (r *callRepl) writeBatch(ctx context.Context, b store.Batcher, order []string, q map[string]callOp) bool {
	plans, ws := r.planBatch(order, q)
	if len(ws) < 2 {
		return false
	}
	// Each attempt bounded as a write's (retrying, writeAttempt): a
	// batch sent to a stream leader handing over (a drain) is never
	// answered, and waited out whole (storeTimeout) it held the SIP
	// calls' CSeq write-aheads past their bound, whose adoptions then
	// failed (test/cluster TestDrainDuringSIPCalls in CI). An attempt
	// applied whose answer was lost makes the next one a conflict, and
	// one by one each write then tells its own.
	var revs []uint64
	noBatch := false
	wctx, cancel := context.WithTimeout(ctx, storeTimeout)
	_, err := retrying(wctx, func(actx context.Context) (uint64, error) {
		var err error
		revs, err = b.WriteBatch(actx, ws)
		if errors.Is(err, store.ErrNoBatch) {
			noBatch = true
			return 0, nil
		}
		return 0, err
	})
	cancel()
	if noBatch {
		r.noBatch.Store(true)
		return false
	}
	if err != nil {
		r.g.rlog.Info("call records", "a batch of call records not written: written again one by one", "err", err)
		r.writeEach(ctx, order, q)
		return true
	}
	planned := map[string]bool{}
	for _, p := range plans {
		planned[p.ck] = true
		if p.op.ended {
			r.forget(p.ends...)
		} else {
			r.written(p.ck, p.op, p.data, revs[p.at], p.ptrs)
			for i, wk := range p.created {
				r.hold(wk, p.ptr, revs[p.at+1+i])
			}
			r.forget(p.gone...)
		}
		for _, d := range p.op.done {
			d <- nil
		}
	}
	var rest []string
	for _, ck := range order {
		if !planned[ck] {
			rest = append(rest, ck)
		}
	}
	r.writeEach(ctx, rest, q)
	return true
}

// written holds a call's record as written at rev, with its pointers
// (nil: as they were).
func (r *callRepl) written(ck string, op callOp, data []byte, rev uint64, ptrs []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.live[ck] = heldRecord{data: data, rev: rev}
	r.calls[ck] = op.leg()
	setRinging(r.ringing, ck, op.sip)
	if ptrs != nil {
		r.ptrs[ck] = ptrs
	}
}

// errNotOurs: a call's record this node may not write any more (another
// node adopted the call, or the record expired).
var errNotOurs = errors.New("the call's record is no longer this node's")

// write stores a call's change under its caller leg's key ck; the error
// says it was not written (an end's deletion reports none).
func (r *callRepl) write(ctx context.Context, ck string, op callOp) error {
	st := r.g.store
	wks := op.ptrKeys()
	if op.ended {
		r.mu.Lock()
		h, held := r.live[ck]
		wks = union(wks, r.ptrs[ck])
		r.mu.Unlock()
		r.forget(append([]string{ck}, wks...)...)
		if !held {
			return nil // not written here (or its end written already)
		}
		// Deleted only while the record is the one written here: a
		// node taken for dead must not delete a call another adopted.
		if _, rev, err := st.Get(ctx, ck); err != nil || rev != h.rev {
			return nil
		}
		r.deleteKeys(ctx, append([]string{ck}, wks...))
		return nil
	}
	data, _ := json.Marshal(op.record(r.host))
	r.mu.Lock()
	h, held := r.live[ck]
	r.mu.Unlock()
	var rev uint64
	var err error
	if held {
		rev, err = updateRetrying(ctx, st, ck, data, h.rev)
		if errors.Is(err, store.ErrConflict) {
			var mine bool
			if rev, mine, err = r.overOwn(ctx, ck, data, h.rev); !mine {
				// Adopted by another node (this one taken for dead), or
				// expired: not ours to write any more.
				r.mu.Lock()
				old := r.ptrs[ck]
				r.mu.Unlock()
				r.forget(append([]string{ck}, old...)...)
				r.lost(ctx, ck, op.leg())
				return errNotOurs
			}
		} else if err != nil {
			rev = h.rev
		}
		if err != nil {
			// Not written, or not known to be (it may have been
			// applied): held with the change, the record is written
			// at the next refresh, over an earlier write of ours that
			// landed. Left as it was, the refresh wrote the change
			// before this one, or nothing (overOwn).
			r.hold(ck, data, rev)
			r.g.rlog.Info("call records", "a call's record not written; written again at the next refresh", "err", err)
			return err
		}
	} else {
		rev, err = retrying(ctx, func(ctx context.Context) (uint64, error) { return createOver(ctx, st, ck, data) })
	}
	if err != nil {
		r.g.rlog.Info("call records", "a call's record not written", "err", err)
		return err
	}
	r.mu.Lock()
	old := r.ptrs[ck]
	r.mu.Unlock()
	r.written(ck, op, data, rev, wks)
	r.mu.Lock()
	var create []string
	for _, wk := range wks {
		if _, held := r.live[wk]; !held {
			create = append(create, wk)
		}
	}
	r.mu.Unlock()
	for _, wk := range create {
		ptr, _ := json.Marshal(callRecord{Of: ck})
		if rev, err := createOver(ctx, st, wk, ptr); err == nil {
			r.hold(wk, ptr, rev)
		}
	}
	// The forks that no longer ring (another answered, or they failed)
	// point at the call no more.
	var gone []string
	for _, k := range old {
		if !slices.Contains(wks, k) {
			gone = append(gone, k)
		}
	}
	if len(gone) > 0 && wks != nil {
		r.forget(gone...)
		r.deleteKeys(ctx, gone)
	}
	return nil
}

// deleteKeys deletes the records of keys.
func (r *callRepl) deleteKeys(ctx context.Context, keys []string) {
	for _, k := range keys {
		if err := r.g.store.Delete(ctx, k); err != nil {
			r.g.rlog.Info("call records", "a call's record not deleted (it expires)", "err", err)
		}
	}
}

// union returns a with the elements of b it does not have.
func union(a, b []string) []string {
	for _, k := range b {
		if !slices.Contains(a, k) {
			a = append(a, k)
		}
	}
	return a
}

// writeAttempt bounds one attempt of a call record's write. A write sent
// to a stream leader that is handing over (a drain's StepDown) or has
// just died is never answered: waited out whole, it held every call's
// write behind it for storeTimeout, and each in-dialog SIP request
// behind its write-ahead (a drain at 5.2 s in BenchmarkSIPFailover).
// It is made again, to the new leader, until the write's own bound.
const writeAttempt = time.Second

// retrying runs f, each attempt bounded by writeAttempt, until it
// succeeds, fails with an answer of the store's (a conflict, a missing
// key, a value too large), or ctx ends.
func retrying(ctx context.Context, f func(context.Context) (uint64, error)) (uint64, error) {
	for {
		actx, cancel := context.WithTimeout(ctx, writeAttempt)
		rev, err := f(actx)
		cancel()
		if err == nil || errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrTooLarge) {
			return rev, err
		}
		// No leader yet answers at once ("no responders"): the election
		// takes a moment, polled (it has no event here).
		select {
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			return rev, err
		}
	}
}

// updateRetrying is st.Update made again as retrying does. An attempt
// whose answer was lost may have been applied: the next one then meets a
// conflict with our own write, which is taken as done (the record holds
// data).
func updateRetrying(ctx context.Context, st store.Store, key string, data []byte, rev uint64) (uint64, error) {
	tries := 0
	n, err := retrying(ctx, func(ctx context.Context) (uint64, error) {
		tries++
		return st.Update(ctx, key, data, rev)
	})
	if errors.Is(err, store.ErrConflict) && tries > 1 {
		if got, grev, gerr := st.Get(ctx, key); gerr == nil && bytes.Equal(got, data) {
			return grev, nil
		}
	}
	return n, err
}

// overOwn writes data under key over the record's current revision when
// a write of it from held, the revision this node holds, was refused as
// a conflict, if the record is still this node's: a call record naming
// this host, or a leg's pointer as this node wrote it. A write answered
// with a failure may have been applied (its answer lost as the bucket's
// leader changed: a partition, a node's death), and the record then
// holds this node's write at a revision it never heard of. Taken for an
// adoption elsewhere, the call's record was forgotten here and never
// written again: it expired while the call went on, and the call could
// no longer be adopted (likely test/cluster TestClusterPartition's call
// ended on the callee's side by the heal). mine is false when another node adopted the
// call or the record is gone; with an error (the record not read, or not
// written over), the revision is the one to write over next time.
func (r *callRepl) overOwn(ctx context.Context, key string, data []byte, held uint64) (rev uint64, mine bool, err error) {
	cur, rev, err := r.g.store.Get(ctx, key)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return 0, false, nil
	case err != nil:
		return held, true, err
	}
	var rec callRecord
	if json.Unmarshal(cur, &rec) != nil {
		return 0, false, nil
	}
	if isCall := rec.Call != nil || rec.SIP != nil; isCall && rec.Host != r.host || !isCall && !bytes.Equal(cur, data) {
		return 0, false, nil
	}
	n, err := r.g.store.Update(ctx, key, data, rev)
	if err != nil {
		return rev, true, err
	}
	r.g.metrics.storeWrites.WithLabelValues("retried").Inc()
	return n, true, nil
}

// createOver creates key, over a record of the same key left from
// before (a leg's key is its session's and subsession's: the record is
// this call's), written over at its revision, never deleted first: an
// adopter rewrites the dead host's pointers of a ringing call's forks,
// and a fork's session resuming on a third node that read its pointer
// between a delete and the create found no call, gave up its adoption
// and told its user the call had ended while it rang on at the adopter
// (test/cluster TestSIPCallRingingContinuedOnKill, once in CI).
func createOver(ctx context.Context, st store.Store, key string, data []byte) (uint64, error) {
	for range 3 {
		rev, err := st.Create(ctx, key, data)
		if !errors.Is(err, store.ErrConflict) {
			return rev, err
		}
		cur, rev, err := st.Get(ctx, key)
		switch {
		case errors.Is(err, store.ErrNotFound):
			continue // deleted or expired since: created again
		case err != nil:
			return 0, err
		case bytes.Equal(cur, data):
			return rev, nil
		}
		if rev, err = st.Update(ctx, key, data, rev); !errors.Is(err, store.ErrConflict) {
			return rev, err
		}
	}
	return 0, store.ErrConflict
}

func (r *callRepl) hold(key string, data []byte, rev uint64) {
	r.mu.Lock()
	r.live[key] = heldRecord{data: data, rev: rev}
	r.mu.Unlock()
}

func (r *callRepl) forget(keys ...string) {
	r.mu.Lock()
	for _, k := range keys {
		delete(r.live, k)
		delete(r.calls, k)
		delete(r.ringing, k)
		delete(r.ptrs, k)
		delete(r.doubtful, k)
	}
	r.mu.Unlock()
}

// read returns the call record of the leg key names, following the
// callee leg's pointer: the record, its key and revision.
func (r *callRepl) read(ctx context.Context, key string) (*callRecord, string, uint64, error) {
	for range 2 {
		data, rev, err := r.g.store.Get(ctx, key)
		if err != nil {
			return nil, key, 0, err
		}
		var rec callRecord
		if err := json.Unmarshal(data, &rec); err != nil {
			return nil, key, 0, err
		}
		if rec.Of == "" {
			return &rec, key, rev, nil
		}
		key = rec.Of
	}
	return nil, key, 0, store.ErrNotFound
}

// adopt finds the host of the call of the leg (session, sub), whose route
// names a dead node: a live node that has it (its host, or a survivor
// that adopted it first), or this node, which adopts it when the record
// still names a dead host. "" is no call to go on with: no record (the
// call ended, was not answered yet, or its record expired), or a leg
// whose session is gone; gone then says why the call is over for the
// leg (nodeDownReason, or the reason its record was left with), rather
// than a store that did not answer (its buckets electing leaders after
// the death), which is waited for, backing off, within resumeWait.
func (r *callRepl) adopt(session, sub string) (host, gone string) {
	deadline := time.Now().Add(r.g.resumeBudget())
	ctx, cancel := context.WithDeadline(r.g.ctx, deadline)
	defer cancel()
	var last error
	for wait := 50 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		// Each try gets a part of the wait, as a resume's reads do
		// (restoreWaiting): one sent to a leader that went away is not
		// answered at all, and the next goes to its successor.
		actx, acancel := context.WithDeadline(ctx, earlier(deadline, time.Now().Add(readAttempt)))
		host, err := r.adoptOnce(actx, session, sub)
		acancel()
		if err == nil {
			return host, ""
		}
		last = err
		if errors.Is(err, errCallGone) || time.Until(deadline) < wait || !sleepCtx(ctx, wait) {
			break
		}
	}
	r.g.rlog.Info("call adoption", "a call whose host died not adopted", "session_id", session, "subsession_id", sub, "err", last)
	var ended *callEnded
	switch {
	case errors.As(last, &ended):
		return "", ended.reason
	case errors.Is(last, errCallGone):
		return "", nodeDownReason
	}
	return "", ""
}

// errAdoptionUnderWay: this node is adopting the call (adoptOnce).
var errAdoptionUnderWay = errors.New("gateway: the call's adoption here is under way")

// nodeDownReason tells a leg that its call ended with its host.
const nodeDownReason = "the call's node went down"

// errCallGone: the call has no record, or a leg's session has none.
var errCallGone = errors.New("gateway: the call or a leg's session is gone")

// callEnded: the call's record says it is over (callRecord's Ended).
type callEnded struct{ reason string }

func (e *callEnded) Error() string        { return "gateway: the call ended: " + e.reason }
func (e *callEnded) Is(target error) bool { return target == errCallGone }

func (r *callRepl) adoptOnce(ctx context.Context, session, sub string) (string, error) {
	rec, ck, rev, err := r.read(ctx, callKey(session, sub))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return "", errCallGone
	case err != nil:
		return "", err
	case rec.Ended != "":
		return "", &callEnded{rec.Ended}
	case rec.Call == nil && rec.SIP == nil:
		return "", errCallGone
	case !rec.Released && rec.Host == r.host && !r.isDoubtful(ck):
		if r.adopting.busy(ck) {
			// This node's adoption of the call is under way: its
			// record names this node from the claim on, the call
			// handler has the call only once it is rebuilt. A frame
			// handed to the handler between the two would start a new
			// call (a re-offer reached its other leg on a new
			// subsession). Asked again once done.
			r.waitedAdoption.Add(1)
			return "", errAdoptionUnderWay
		}
		return rec.Host, nil
	case !rec.Released && rec.Host != r.host && !r.g.node.Down(rec.Host):
		return rec.Host, nil
	}
	if err := r.take(ctx, ck, rec, rev); err != nil {
		return "", err // a conflict: another node took it, read who
	}
	return r.host, nil
}

// take makes this node the host of the call of record rec, under ck at
// revision rev, and rebuilds the call in the handler.
func (r *callRepl) take(ctx context.Context, ck string, rec *callRecord, rev uint64) error {
	unlock := r.adopting.lock(ck)
	defer unlock()
	r.mu.Lock()
	_, held := r.calls[ck]
	done := held && !r.doubtful[ck]
	r.mu.Unlock()
	if done {
		// Taken meanwhile by another adoption here (a resume's and
		// the node-down's of the call's two legs): adopted once.
		return nil
	}
	if rec.SIP != nil {
		return r.takeSIP(ctx, ck, rec, rev)
	}
	sn := *rec.Call
	caller, err := r.g.legEndpoint(ctx, sn.Caller)
	if err != nil {
		return err
	}
	callees, err := r.calleeEndpoints(ctx, &sn)
	if err != nil {
		return err
	}
	if err := r.claim(ctx, ck, rec, rev, legID{sn.Caller.Session, sn.Caller.Sub}); err != nil {
		return err
	}
	if r.afterClaim != nil {
		r.afterClaim(ck)
	}
	// The record's pointers are this node's to refresh now, and to
	// delete (those of forks whose session is gone at the next write).
	wks := ptrKeys(*rec.Call)
	for _, wk := range wks {
		if ptr, prev, err := r.g.store.Get(ctx, wk); err == nil {
			r.hold(wk, ptr, prev)
		}
	}
	r.mu.Lock()
	r.ptrs[ck] = wks
	r.mu.Unlock()
	if err := r.g.calls.Restore(sn, caller, callees...); err != nil && !errors.Is(err, call.ErrLegTaken) {
		return err
	}
	r.adopted.Add(1)
	r.g.log.Info("call adopted", "session_id", sn.Caller.Session, "subsession_id", sn.Caller.Sub, "callees", len(callees), "ringing", !sn.Answered())
	return nil
}

// calleeEndpoints returns the endpoints of the callee legs of sn: of a
// ringing call, those of the forks whose sessions are still there (the
// others are left out of sn); errCallGone when none is.
func (r *callRepl) calleeEndpoints(ctx context.Context, sn *call.Snapshot) ([]endpoint.Endpoint, error) {
	if sn.Answered() {
		ep, err := r.g.legEndpoint(ctx, sn.Callee)
		if err != nil {
			return nil, err
		}
		return []endpoint.Endpoint{ep}, nil
	}
	var eps []endpoint.Endpoint
	var ringing []call.LegSnapshot
	for _, l := range sn.Ringing {
		ep, err := r.g.legEndpoint(ctx, l)
		switch {
		case errors.Is(err, errCallGone):
			continue
		case err != nil:
			return nil, err
		}
		eps, ringing = append(eps, ep), append(ringing, l)
	}
	if len(eps) == 0 {
		return nil, errCallGone
	}
	sn.Ringing = ringing
	return eps, nil
}

// claim names this node the host in the call record rec, read under ck
// at revision rev, by compare-and-set, and holds it as the record of
// the call of leg id.
func (r *callRepl) claim(ctx context.Context, ck string, rec *callRecord, rev uint64, id legID) error {
	rec.Host, rec.Released = r.host, false
	data, _ := json.Marshal(rec)
	nrev, err := r.g.store.Update(ctx, ck, data, rev)
	if err != nil {
		if !errors.Is(err, store.ErrConflict) {
			// Maybe applied (its answer lost as the try's time ran
			// out, the store slow or electing): the adoption's next try
			// reads this node in the record, and must take the call
			// again (at the record's new revision) rather than take it
			// for one it has (adoptOnce). Taken so, 38 of 100 calls
			// were adopted nowhere (TestCallsSurviveTheirHost, load 25).
			r.mu.Lock()
			r.doubtful[ck] = true
			r.mu.Unlock()
		}
		return err
	}
	r.hold(ck, data, nrev)
	r.mu.Lock()
	delete(r.doubtful, ck)
	r.calls[ck] = id
	setRinging(r.ringing, ck, rec.SIP)
	r.mu.Unlock()
	return nil
}

// isDoubtful reports whether the record under ck may name this node by
// a claim whose answer was lost (doubtful).
func (r *callRepl) isDoubtful(ck string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.doubtful[ck]
}

// legEndpoint returns the endpoint of a leg's session for a call hosted
// here; errCallGone when the session is gone.
func (g *Gateway) legEndpoint(ctx context.Context, ls call.LegSnapshot) (endpoint.Endpoint, error) {
	if g.node == nil {
		if s := g.lookup(ls.Session); s != nil {
			return s, nil
		}
		return nil, errCallGone
	}
	by := time.Now().Add(storeTimeout)
	if d, ok := ctx.Deadline(); ok {
		by = d
	}
	r, _, err := g.restoreBy(ls.Session, by)
	switch {
	case err != nil:
		return nil, err
	case r == nil:
		return nil, errCallGone
	}
	return g.endpointOf(ls.Session, ls.Identity, ls.Oracle, r.Owner), nil
}

// rerouteRestored points the call routes of the sessions restored here
// that name this node, for calls it does not have, at the calls' hosts:
// a node back after its lease expired finds its calls adopted by others.
func (r *callRepl) rerouteRestored() {
	for _, s := range r.g.liveSessions() {
		var subs []string
		s.mu.Lock()
		for k, node := range s.routes {
			if k.pkg == protocol.PackageCall && node == r.host {
				subs = append(subs, k.key)
			}
		}
		s.mu.Unlock()
		for _, sub := range subs {
			if r.g.calls.Has(s, sub) {
				continue
			}
			host, _ := r.adopt(s.id, sub)
			if host == "" || host == r.host {
				continue
			}
			k := routeKey{protocol.PackageCall, sub}
			s.mu.Lock()
			if s.routes[k] == r.host {
				s.routes[k] = host
			}
			s.mu.Unlock()
		}
	}
}

// routeNewCall notes this node as the host of the call f, a start of
// s's client, begins here: before any frame of the call reaches the
// caller, her session's record then says where her ringing call lives
// (its record is written from the start), so that her resume after
// this node's death finds it. A start refused drops the route again
// (noteRouteLocked).
func (s *Session) routeNewCall(f *protocol.Frame) {
	g := s.g
	if g.repl == nil || g.node == nil || f.Control.Type != protocol.TypeRequest || f.Header.Action != protocol.ActionStart || f.Control.SubsessionID == "" {
		return
	}
	k := routeKey{protocol.PackageCall, f.Control.SubsessionID}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.routes[k]; ok {
		return
	}
	s.noteRouteLocked(f, g.self())
	s.markDirtyLocked()
}

// routedHere reports whether f, a call frame of s's client, belongs to a
// call whose route names this node.
func (s *Session) routedHere(f *protocol.Frame) bool {
	if s.g.node == nil || f.EffectivePackage() != protocol.PackageCall {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.routes[routeKey{protocol.PackageCall, f.Control.SubsessionID}] == s.g.self()
}

// astray hands f, a call frame of s's client whose route names this
// node, to the call's host when this node's call handler does not have
// the call: a node back on its store after its calls were adopted
// elsewhere, whose start-up could not point the route at the new host
// (rerouteRestored), would take a re-offer for a new call. The call's
// record says where the call lives now (adopting it here if its host is
// dead and nobody has).
func (s *Session) astray(f *protocol.Frame) bool {
	g := s.g
	sub := f.Control.SubsessionID
	if g.repl == nil || g.calls.Has(s, sub) {
		return false
	}
	host, _ := g.repl.adopt(s.id, sub)
	if host == "" || host == g.self() {
		return false
	}
	k := routeKey{protocol.PackageCall, sub}
	s.mu.Lock()
	if s.routes[k] == g.self() {
		s.routes[k] = host
	}
	s.mu.Unlock()
	s.forward(host, f)
	return true
}

// setRinging notes whether the record under ck is of a SIP call whose
// INVITE is under way (st's Invite); r.mu is held.
func setRinging(ringing map[string]bool, ck string, st *call.SIPDialog) {
	if st != nil && st.Invite != nil {
		ringing[ck] = true
	} else {
		delete(ringing, ck)
	}
}
