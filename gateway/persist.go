package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/jsonrtc/jsonrtc/notification"
	"github.com/jsonrtc/jsonrtc/presence"
	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/session"
	"github.com/jsonrtc/jsonrtc/store"
)

// Session records in the store (docs/protocol.md §4.6). With a store of
// its own (Options.Store) the gateway writes ahead: a frame leaves for a
// socket only once the state that retains it, and every peer sequence
// its acknowledgement covers, is in the store. So a frame the gateway
// acknowledged, and one it sent and has not seen acknowledged, survive a
// restart, even a kill, and the client resumes as after a socket loss.
// Without one (tests that build a gateway in code) records are kept in
// memory, written at a socket loss, and frames go out at once.

// record is what the store keeps of a session: enough to check a resume
// against it and resend what the client missed. Calls are not in it
// (callrepl.go keeps web-to-web ones apart); its presence (publication,
// watches) and message-summary subscriptions are, made again when it
// resumes after a restart or a move (presencerepl.go, subsrepl.go).
type record struct {
	Identity string `json:"identity"`
	App      string `json:"app,omitempty"`
	Oracle   bool   `json:"oracle,omitempty"`
	Guest    bool   `json:"guest,omitempty"`
	// Profile is the limits profile the session's quota was opened with.
	Profile string         `json:"profile,omitempty"`
	State   *session.State `json:"state"`
	// Owner is the node that owns the session (a cluster's; "" alone),
	// Routes the hosts of its interactions (cluster.go).
	Owner  string  `json:"owner,omitempty"`
	Routes []route `json:"routes,omitempty"`
	// Relays: what the session took of each sender's relays (relays.go).
	Relays []relayMark `json:"relays,omitempty"`
	// Awaiting: the sends owed a delivery report (reports.go).
	Awaiting []awaited `json:"awaiting,omitempty"`
	// Outbox: the client's messages waiting for their receivers
	// (outbox.go).
	Outbox []outboxEntry `json:"outbox,omitempty"`
	// Early: reports that came before their sends (reports.go).
	Early []earlyReport `json:"early,omitempty"`
	// Standby is how to wake a client gone to standby (push.go): a
	// client that sleeps across a gateway restart is still woken, and its
	// session still waits push.standby_timeout for it.
	Standby *protocol.PushChannel `json:"standby,omitempty"`
	// Presence: its publication and watches of web presentities, made
	// again after a restart (presencerepl.go).
	Presence *presence.RemoteSession `json:"presence,omitempty"`
	// RegInstance is the +sip.instance of its SIP binding (regmove.go).
	RegInstance string `json:"reg_instance,omitempty"`
	// Notes: its message-summary subscriptions (subsrepl.go).
	Notes []notification.Saved `json:"notes,omitempty"`
}

func recordKey(id string) string { return "session." + id }

// snapshot is a session's state at one instant, with the frames that
// instant released for its socket.
type snapshot struct {
	s      *Session
	gen    uint64
	st     *session.State
	routes []route
	relays []relayMark
	pres   *presence.RemoteSession
	notes  []notification.Saved
	awaits []awaited
	outbox []outboxEntry
	early  []earlyReport
	frames [][]byte
	conn   *link
}

// snapshotLocked takes s's state; s.mu is held.
func (s *Session) snapshotLocked() snapshot {
	s.snapGen++
	s.unsaved = 0
	sn := snapshot{s: s, gen: s.snapGen, st: s.st.Clone(), routes: s.routesSnapshotLocked(), relays: s.relaysSnapshotLocked(), awaits: s.awaitingSnapshotLocked(), outbox: s.outboxSnapshotLocked(), early: slices.Clone(s.early), pres: s.presence, notes: s.notes, frames: s.pending, conn: s.conn}
	s.pending = nil
	return sn
}

// processedLocked notes a client frame processed; s.mu is held. The
// state that processed it need not be written at once: the rule (docs/
// protocol.md §4.6) is about what the client was told, and whatever
// tells it (an acknowledgement, piggybacked or standalone after
// session.ack_delay, or any frame) is queued (queueLocked) and so
// written with that state before it leaves. A relay the frame made is
// stored with its receiver's record, maybe before this state: when the
// gateway dies in between, the client resends the frame and the
// receiver takes the relay once (relays.go), as across nodes. Writing
// here too doubled the writes of a relayed message (its sender's state,
// then again with its report) for nothing the client could see. Past
// maxUnsaved frames processed and not snapshotted the state is written
// anyway: a resend after a kill is bounded well within the relays a
// receiver keeps per stream of a sender (relaysKept).
func (s *Session) processedLocked() {
	s.unsaved++
	if s.unsaved >= maxUnsaved || s.oracle {
		// An oracle client gets no acknowledgement: nothing would
		// write its state soon.
		s.markDirtyLocked()
	}
}

// maxUnsaved bounds the client frames processed between snapshots.
const maxUnsaved = relaysKept / 2

// markDirtyLocked queues s for the writer; s.mu is held. s.dirty says s
// is in g.dirty, and only the writer, taking it off, clears it: a save
// meanwhile leaves it queued once (twice, the round would take its
// saveMu twice).
func (s *Session) markDirtyLocked() {
	if s.dirty || s.starting || !s.g.wal {
		return
	}
	s.dirty = true
	g := s.g
	g.dirtyMu.Lock()
	g.dirty = append(g.dirty, s)
	g.dirtyMu.Unlock()
	select {
	case g.dirtyKick <- struct{}{}:
	default:
	}
}

// writer writes dirty sessions and releases their frames, round after
// round: what goes dirty while a round is written waits for the next,
// so rounds grow with the load and the store sees a write per session
// per round at most.
func (g *Gateway) writer() {
	refresh := time.NewTicker(g.refreshEvery())
	defer refresh.Stop()
	for {
		select {
		case <-g.dirtyKick:
		case <-refresh.C:
			g.markAllDirty()
			if g.node != nil {
				// The directory's entries expire as the records do.
				g.goTracked(g.republishAll)
			}
			continue
		case <-g.ctx.Done():
			return
		}
		g.writeRound()
	}
}

// refreshEvery is how often every live record is written again, so that
// the store's expiry (store.ttl: twice the resume timeout) never takes
// the record of a session that is alive but quiet.
func (g *Gateway) refreshEvery() time.Duration { return g.cfg.Session.ResumeTimeout.D() / 2 }

func (g *Gateway) markAllDirty() {
	for _, s := range g.liveSessions() {
		s.mu.Lock()
		if !s.ended {
			s.markDirtyLocked()
		}
		s.mu.Unlock()
	}
}

// liveSessions returns the sessions of the tables at one instant.
func (g *Gateway) liveSessions() []*Session {
	g.mu.Lock()
	defer g.mu.Unlock()
	all := make([]*Session, 0, len(g.sessions))
	for _, s := range g.sessions {
		all = append(all, s)
	}
	return all
}

// writeRound takes a consistent cut of the dirty sessions: inbound
// processing holds walMu shared, so no frame is half processed (its
// relays queued to some peers and not yet to others, its sender's
// acknowledgement queued without the state that processed it). A
// relay may still be written before the state of its sender
// (processedLocked): its receiver takes it once. Each
// session's saveMu is taken before its snapshot and held until its
// frames are on the socket: a session's frames go out in the order of
// its snapshots.
func (g *Gateway) writeRound() {
	g.walMu.Lock()
	g.dirtyMu.Lock()
	list := g.dirty
	g.dirty = nil
	g.dirtyMu.Unlock()
	snaps := make([]snapshot, 0, len(list))
	for _, s := range list {
		s.saveMu.Lock()
		s.mu.Lock()
		s.dirty = false
		if s.ended {
			s.mu.Unlock()
			s.saveMu.Unlock()
			continue
		}
		snaps = append(snaps, s.snapshotLocked())
		s.mu.Unlock()
	}
	// The forwarded frames dispatched before this cut: their effects
	// are in it (takenfwd.go).
	confirms, tickets := g.confirms.take()
	g.walMu.Unlock()
	var data [][]byte
	if b, ok := g.store.(store.Batcher); ok && len(snaps) > 1 && !g.noBatch.Load() {
		snaps, data = g.writeBatch(b, snaps)
	}
	// The writes go in parallel: each is a round trip to the store.
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i, sn := range snaps {
		sem <- struct{}{}
		wg.Go(func() {
			var ok bool
			if data != nil {
				ok = g.storeLocked(sn, data[i])
			} else {
				ok = g.writeLocked(sn)
			}
			if ok {
				sn.release()
			}
			sn.s.saveMu.Unlock()
			<-sem
		})
	}
	wg.Wait()
	failed := g.writeFailed.Swap(false)
	switch {
	case failed:
		g.confirms.restore(confirms, tickets)
		poke(g.dirtyKick) // the next round sends them
	default:
		if len(confirms) > 0 {
			g.sendConfirms(confirms)
		}
		if len(tickets) > 0 {
			g.tickets.written(tickets, g.holdFor())
		}
	}
	if failed {
		// The store failed a write (cluster: a leader election): the
		// next round, which writes it again, waits a moment.
		g.pause(100 * time.Millisecond)
	}
}

// release hands sn's frames to the socket they were sent for, if it is
// still the session's (else they are retained, for the resume).
func (sn snapshot) release() {
	if len(sn.frames) == 0 || sn.conn == nil {
		return
	}
	s := sn.s
	s.mu.Lock()
	if s.conn == sn.conn {
		for _, d := range sn.frames {
			if !s.pushLocked(d) {
				break
			}
		}
	}
	s.mu.Unlock()
}

// writeBatch writes the round's records as one batch of the store (a
// replicated bucket agrees on one entry, not on one per record); s.saveMu
// of each is held. A snapshot with nothing to write is done at once. It
// returns the snapshots left to write one by one, with their records:
// all of them when the batch failed (a conflict among them, a leader
// being elected, a batch whose answer was lost: each Update tells its
// own write).
func (g *Gateway) writeBatch(b store.Batcher, snaps []snapshot) ([]snapshot, [][]byte) {
	ws := make([]store.Write, 0, len(snaps))
	left := snaps[:0]
	var data [][]byte
	for _, sn := range snaps {
		d, done, ok := g.encode(sn)
		if done {
			if ok {
				sn.release()
			}
			sn.s.saveMu.Unlock()
			continue
		}
		left = append(left, sn)
		data = append(data, d)
		ws = append(ws, store.Write{Key: recordKey(sn.s.id), Value: d, Rev: sn.s.rev})
	}
	if len(ws) == 0 {
		return nil, nil
	}
	// One attempt (writeAttempt), not the store's whole bound: a batch
	// sent to a leader handing over (a drain's StepDown) is never
	// answered, and its frames waited storeTimeout for nothing (a
	// message of TestRollingRestart, 5 s, as the first node went). The
	// next round sends it again, to the new leader; if the lost one was
	// applied, that batch conflicts with it and goes one by one, where
	// update takes our own write for done.
	ctx, cancel := context.WithTimeout(context.Background(), writeAttempt)
	revs, err := b.WriteBatch(ctx, ws)
	cancel()
	switch {
	case errors.Is(err, store.ErrNoBatch):
		g.noBatch.Store(true)
		return left, data
	case errors.Is(err, context.DeadlineExceeded) && g.node != nil:
		// The store answered nothing within the attempt (a bucket
		// electing a leader, a leader handing over): one by one, each
		// write would wait as long again before its frames went back
		// to wait. They wait for the next round now, as a failed
		// write's.
		g.metrics.storeWrites.WithLabelValues("batch_failed").Inc()
		for _, sn := range left {
			g.requeue(sn, err)
			sn.s.saveMu.Unlock()
		}
		return nil, nil
	case err != nil:
		g.metrics.storeWrites.WithLabelValues("batch_failed").Inc()
		return left, data
	}
	for i, sn := range left {
		g.metrics.storeWrites.WithLabelValues("ok").Inc()
		sn.s.rev, sn.s.savedGen = revs[i], sn.gen
		sn.release()
		sn.s.saveMu.Unlock()
	}
	return nil, nil
}

// writeLocked stores sn; s.saveMu is held. It reports whether sn's
// frames may go out: false when another writer owns the record. A store
// that fails (down, or the record over its bound) costs durability, not
// service: the frames go out unstored, logged and counted.
func (g *Gateway) writeLocked(sn snapshot) bool {
	data, done, ok := g.encode(sn)
	if done {
		return ok
	}
	return g.storeLocked(sn, data)
}

// encode is sn's record; done when there is nothing to write, ok then
// whether sn's frames may go out (writeLocked). s.saveMu is held.
func (g *Gateway) encode(sn snapshot) (data []byte, done, ok bool) {
	s := sn.s
	if sn.gen <= s.savedGen {
		return nil, true, true
	}
	s.mu.Lock()
	ended, lost, standby, regInstance := s.ended && !s.keepRecord, s.lost, s.standby, s.regInstance
	s.mu.Unlock()
	if lost {
		return nil, true, false
	}
	if ended {
		return nil, true, true // nothing to store; no socket either
	}
	data, err := json.Marshal(record{Identity: s.identity, App: s.app, Oracle: s.oracle, Guest: s.guest, Profile: s.profile, State: sn.st,
		Owner: g.ownerName(), Routes: sn.routes, Relays: sn.relays, Awaiting: sn.awaits, Outbox: sn.outbox, Early: sn.early,
		Standby: standby, RegInstance: regInstance, Presence: sn.pres, Notes: sn.notes})
	if err != nil {
		s.log.Error("encoding session record", "err", err)
		return nil, true, true
	}
	return data, false, false
}

// storeLocked writes sn's record data, as writeLocked; s.saveMu is held.
func (g *Gateway) storeLocked(sn snapshot, data []byte) bool {
	s := sn.s
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	// Attempts bounded by writeAttempt (writeBatch says why); one whose
	// answer was lost but that was applied meets our own write as a
	// conflict, taken for done below.
	rev, err := unanswered(ctx, func(ctx context.Context) (uint64, error) {
		if s.rev == 0 {
			return g.store.Create(ctx, recordKey(s.id), data)
		}
		return g.update(ctx, recordKey(s.id), data, s.rev)
	})
	for errors.Is(err, store.ErrConflict) && g.node != nil {
		r, cur, rerr := g.restore(s.id)
		if rerr != nil || r == nil || r.Owner != g.self() {
			break
		}
		// The record names this node, which only this copy writes (a
		// takeover writes the taker's name; a copy that moved writes no
		// more). Either it holds an earlier write of ours whose answer
		// was lost (a leader change) and that went on as failed, or it
		// is our last write, which a leader elected a moment ago has not
		// applied yet, or the read is a replica's behind it. Taken for a
		// takeover, the session ended here with frames its peers had
		// been told were sent (a message lost in test/cluster
		// TestResumeOnAnotherNode; after leader step-downs, bob's copy
		// in TestRollingRestart, with nobody else resuming it). Written
		// again over what the record holds, until the write's deadline.
		if cur >= s.rev {
			g.metrics.storeWrites.WithLabelValues("retried").Inc()
			if rev, err = g.update(ctx, recordKey(s.id), data, cur); !errors.Is(err, store.ErrConflict) {
				break
			}
		}
		if !sleepCtx(ctx, 50*time.Millisecond) {
			break
		}
	}
	if errors.Is(err, store.ErrConflict) && g.node != nil {
		// Another node took the session over, and its word did not
		// reach us (onTakeover): this copy lets go the same way.
		g.metrics.storeWrites.WithLabelValues("conflict").Inc()
		// The record is read until the store answers (an election):
		// the directory, which ownerOf falls back on, may still name
		// this node, and the copy would end as if superseded, toward
		// its peers too, while the session lives on elsewhere.
		owner := ""
		if r, _, rerr := g.restoreWaiting(s.id, time.Now().Add(g.resumeBudget())); rerr == nil && r != nil {
			owner = r.Owner
		} else if rerr != nil {
			owner = g.ownerOf(s.id)
		}
		if owner != "" && owner != g.self() {
			g.goTracked(func() { s.moveTo(owner, false) })
			return false
		}
		if owner == g.self() {
			// The record names this node, which only this copy writes,
			// but the loop above could not read it to write over it (a
			// leader being elected: at a partition's heal, bob's copy on
			// the majority ended as superseded in test/cluster
			// TestClusterPartition, his client sent to another node).
			// Written again at the next round, as after a failed write.
			err = errOwnRecord
		}
	}
	if errors.Is(err, store.ErrConflict) {
		// Another writer owns the record now (a resume elsewhere): this
		// copy of the session is stale, and must not write over it.
		g.metrics.storeWrites.WithLabelValues("conflict").Inc()
		s.log.Warn("session record taken over; ending this copy", "err", err)
		s.mu.Lock()
		s.lost = true
		s.mu.Unlock()
		g.goTracked(func() { s.end(reasonReplaced) })
		return false
	}
	if err != nil && g.node != nil {
		// In a cluster the store fails while a bucket elects a leader
		// (a node died: seconds) and the session may move to another
		// node meanwhile: frames out unstored would be ahead of the
		// record it resumes from there, and the resume refused. They
		// wait for the store instead: back in the queue, written again
		// at the writer's next round.
		g.metrics.storeWrites.WithLabelValues("error").Inc()
		g.requeue(sn, err)
		return false
	}
	if err != nil {
		g.metrics.storeWrites.WithLabelValues("error").Inc()
		g.rlog.Error("store write", "saving session record; frames go out unstored", "session_id", s.id, "err", err)
		return true
	}
	g.metrics.storeWrites.WithLabelValues("ok").Inc()
	s.rev, s.savedGen = rev, sn.gen
	return true
}

// requeue puts sn's frames back to wait for the writer's next round,
// which writes s again (a cluster's store failing a write); s.saveMu is
// held.
func (g *Gateway) requeue(sn snapshot, err error) {
	s := sn.s
	g.rlog.Warn("store write", "saving session record; its frames wait for the store", "session_id", s.id, "err", err)
	s.mu.Lock()
	if s.conn == sn.conn && len(sn.frames) > 0 {
		s.pending = append(sn.frames[:len(sn.frames):len(sn.frames)], s.pending...)
	}
	if !s.ended {
		s.markDirtyLocked()
	}
	s.mu.Unlock()
	g.writeFailed.Store(true)
}

// errOwnRecord: a write refused as a conflict with a record that names
// this node, which could not be read in time to write over it.
var errOwnRecord = errors.New("gateway: revision conflict with this node's own record")

// ownerName is the owner written in records: this node's name in a
// cluster, "" alone.
func (g *Gateway) ownerName() string {
	if g.node == nil {
		return ""
	}
	return g.self()
}

// unanswered runs f, each attempt bounded by writeAttempt, again while
// an attempt goes unanswered and ctx lasts (writeBatch says why). An
// answered failure returns at once, as one attempt's would: the writer's
// next round makes it again, and a store that fails outright (a node
// being killed) does not hold the session's saveMu for ctx's whole time.
func unanswered(ctx context.Context, f func(context.Context) (uint64, error)) (uint64, error) {
	for {
		actx, cancel := context.WithTimeout(ctx, writeAttempt)
		rev, err := f(actx)
		timedOut := actx.Err() != nil
		cancel()
		if err == nil || !timedOut || ctx.Err() != nil {
			return rev, err
		}
	}
}

// storeTimeout bounds one store operation.
const storeTimeout = 5 * time.Second

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// save writes s's current state now (a socket loss, the start of a
// session, Shutdown).
func (g *Gateway) save(s *Session) {
	s.saveMu.Lock()
	defer s.saveMu.Unlock()
	s.mu.Lock()
	sn := s.snapshotLocked()
	s.mu.Unlock()
	if g.writeLocked(sn) {
		sn.release()
	}
}

// deleteRecord removes s's record, unless another writer owns it.
func (g *Gateway) deleteRecord(s *Session) {
	s.saveMu.Lock()
	defer s.saveMu.Unlock()
	s.mu.Lock()
	lost := s.lost
	s.mu.Unlock()
	if lost {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	if err := g.deleteOwn(ctx, s.id, s.rev); err != nil {
		s.log.Error("deleting session record", "err", err)
	}
}

// deleteOwn deletes the record of session id, ending here, while it is
// this node's: over rev, its last write here, or over the revision read
// again while the record still names this node (written out of line). A
// record another node took over is left to it: a resume there this node
// never heard of (cut off from the others), whose session the deletion
// ended at its next write as superseded (test/cluster
// TestClusterPartition: carol, resumed on the majority, lost her
// session when the minority's copy of it timed out as the partition
// healed). A store that takes no batches (a bucket of one replica) has
// no deletion over a revision: the record is read, and deleted if it
// names this node. Alone, it is deleted as it is.
func (g *Gateway) deleteOwn(ctx context.Context, id string, rev uint64) error {
	if g.node == nil {
		return g.store.Delete(ctx, recordKey(id))
	}
	b, batches := g.store.(store.Batcher)
	for try := 0; ; try++ {
		if batches {
			_, err := b.WriteBatch(ctx, []store.Write{{Key: recordKey(id), Rev: rev, Delete: true}})
			switch {
			case errors.Is(err, store.ErrNoBatch):
				batches = false
			case !errors.Is(err, store.ErrConflict):
				return err
			case try == 3:
				return fmt.Errorf("gateway: record rewritten while deleted: %w", err)
			}
		}
		r, cur, err := g.restoreBy(id, time.Now().Add(storeTimeout))
		switch {
		case err != nil:
			return err
		case r == nil:
			return nil // gone already (its age limit)
		case r.Owner != g.self():
			g.metrics.storeWrites.WithLabelValues("conflict").Inc()
			g.rlog.Info("record left", "session record left to its owner", "session_id", id, "owner", r.Owner)
			return nil
		case !batches:
			return g.store.Delete(ctx, recordKey(id))
		}
		rev = cur
	}
}

// restore reads the record of a session that is not live here: one that
// lived in this gateway's previous run (or, later, on another node). It
// returns nil, 0 when there is none.
func (g *Gateway) restore(id string) (*record, uint64, error) {
	return g.restoreBy(id, time.Now().Add(storeTimeout))
}

// restoreBy is restore with a read bounded by deadline (and storeTimeout).
func (g *Gateway) restoreBy(id string, deadline time.Time) (*record, uint64, error) {
	ctx, cancel := context.WithDeadline(g.ctx, earlier(deadline, time.Now().Add(storeTimeout)))
	defer cancel()
	data, rev, err := g.store.Get(ctx, recordKey(id))
	if errors.Is(err, store.ErrNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	var r record
	if err := json.Unmarshal(data, &r); err != nil || r.State == nil || r.State.ID != id {
		return nil, 0, errors.New("gateway: unreadable session record")
	}
	return &r, rev, nil
}

// own takes the record of a restored session over from revision rev:
// of two gateways resuming one record, one wins.
func (g *Gateway) own(s *Session, r *record, rev uint64) error {
	return g.ownBy(s, r, rev, time.Now().Add(storeTimeout))
}

// ownBy is own with a write bounded by deadline (and storeTimeout).
func (g *Gateway) ownBy(s *Session, r *record, rev uint64, deadline time.Time) error {
	r.Owner = g.ownerName()
	s.movedRegistration(r)
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithDeadline(g.ctx, earlier(deadline, time.Now().Add(storeTimeout)))
	defer cancel()
	n, err := g.update(ctx, recordKey(s.id), data, rev)
	if err != nil {
		return err
	}
	s.rev = n
	return nil
}

// update is the store's compare-and-set, telling our own write from
// another writer's. A replicated store may apply a write whose answer
// is lost (its leader changed under load) and refuse the client's retry
// as a revision conflict: the record then holds exactly what we wrote,
// and the write succeeded. Taken for a takeover, it ended a session
// whose frame had been relayed but not yet acknowledged, and the client
// sent that frame again on its resume: a duplicate.
func (g *Gateway) update(ctx context.Context, key string, data []byte, rev uint64) (uint64, error) {
	n, err := g.store.Update(ctx, key, data, rev)
	if !errors.Is(err, store.ErrConflict) {
		return n, err
	}
	cur, curRev, gerr := g.store.Get(ctx, key)
	if gerr == nil && curRev > rev && bytes.Equal(cur, data) {
		g.metrics.storeWrites.WithLabelValues("retried").Inc()
		return curRev, nil
	}
	return n, err
}

// restoreAll brings back, at start-up, every session the store holds:
// each waits for its client's resume as after a socket loss, and frames
// for it (a message from a session that resumed first) are retained for
// it meanwhile, as for any session between sockets. What a session gets
// from its connect (principal, guest place, SIP registration) it gets at
// its first resume (completeRestore).
func (g *Gateway) restoreAll() error {
	keys, err := g.restoreKeys()
	if err != nil {
		return err
	}
	n := 0
	for _, k := range keys {
		ok, err := g.restoreOne(k[len("session."):])
		if err != nil {
			return err
		}
		if ok {
			n++
		}
	}
	if n > 0 {
		g.log.Info("sessions restored from the store; waiting for their clients to resume", "sessions", n)
	}
	return nil
}

// restoreWait bounds the listing of the records to restore at start,
// each attempt bounded by storeTimeout: as long as the wait for
// JetStream before it (natsstore: 60 s). One listing can time out on a
// loaded machine or while the bucket elects a leader, and a node that
// exited for it ("restoring sessions: context deadline exceeded", a
// gateway leaf of a NATS hub in test/cluster TestLeafNATS) left its
// sessions to the other nodes' takeovers and its peers short of a node.
const restoreWait = 60 * time.Second

// restoreKeys lists the session records' keys, trying again until
// restoreWait passes.
func (g *Gateway) restoreKeys() ([]string, error) {
	ctx, cancel := context.WithTimeout(g.ctx, restoreWait)
	defer cancel()
	for {
		actx, acancel := context.WithTimeout(ctx, storeTimeout)
		keys, err := g.store.Keys(actx, "session.")
		acancel()
		if err == nil {
			return keys, nil
		}
		g.log.Info("listing the sessions to restore; trying again", "err", err)
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// restoreOne restores the session id at start-up if its record names
// this node, reporting whether it did. The session's resume lock is held
// from the read to the tables: another node's takeover asked meanwhile
// is answered "resuming" (the client resumes again), not "not here",
// after which the asker took the record over and this node's restore,
// its compare-and-set made first, left a copy here behind what the
// client received there, whose next resume here ended the session (the
// cluster chaos test).
func (g *Gateway) restoreOne(id string) (bool, error) {
	defer g.resuming.lock(id)()
	r, rev, err := g.restore(id)
	if err != nil || r == nil {
		g.log.Warn("session record not restored", "session_id", id, "err", err)
		return false, nil
	}
	if r.Owner != g.ownerName() {
		// Another node's: it resumes where its client lands.
		return false, nil
	}
	return g.takeRecord(r, rev, false)
}

// takeRecord makes the session of record r (at revision rev) this
// node's, in its tables and in the store, waiting for its client's
// resume as after a socket loss; the session's resume lock is held. It
// reports whether it did; an error only when the tables refuse it, or
// (adopt: the record is a dead node's, deadsession.go) why not.
func (g *Gateway) takeRecord(r *record, rev uint64, adopt bool) (bool, error) {
	s := g.sessionOf(r.Identity, r.Oracle, r.State)
	s.app, s.guest, s.profile, s.restored, s.unbound = r.App, r.Guest, r.Profile, true, true
	s.setRoutes(r.Routes)
	s.setRelays(r.Relays)
	s.setOwed(r)
	if g.push != nil && r.Standby != nil && g.push.check(r.Standby) == nil {
		// Asleep, with the same channel: the push config may have
		// changed since, hence the check again.
		s.standby = r.Standby
	}
	if adopt {
		// Limits first: refused, the record stays as it is, for the
		// client's resume elsewhere. A node's own record at start is
		// deleted instead (below): nobody else would take it.
		quota, err := g.lim.OpenSession(r.App, r.Profile, r.Identity)
		if err != nil {
			return false, fmt.Errorf("limits: %w", err)
		}
		s.quota = quota
	}
	if err := g.own(s, r, rev); err != nil {
		if adopt {
			s.quota.Close()
			return false, err
		}
		s.log.Warn("session record not restored", "err", err)
		return false, nil
	}
	if !adopt {
		quota, err := g.lim.OpenSession(r.App, r.Profile, r.Identity)
		if err != nil {
			s.log.Warn("session record not restored: limits", "err", err)
			g.deleteRecord(s)
			return false, nil
		}
		s.quota = quota
	}
	if err := g.add(s); err != nil {
		s.quota.Close()
		return false, err
	}
	s.mu.Lock()
	s.startResumeTimerLocked()
	s.mu.Unlock()
	g.restorePresence(s, r.Presence)
	g.restoreNotes(s, r.Notes)
	g.publish(s)
	s.takeAwaiting()
	s.takeOutbox()
	return true, nil
}

// takeRestored reports, once, whether s was restored from the store and
// not yet announced to the handlers.
func (s *Session) takeRestored() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.restored
	s.restored = false
	return r
}
