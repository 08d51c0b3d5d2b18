package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/jsonrtc/jsonrtc/store"
)

// callReservations is the record, in the store, of the calls an
// identity's sessions held when they last started one, on any node,
// within admissionGrace. The directory lags a call started elsewhere a
// moment ago, so two calls at once on two nodes could both pass the
// identity's call limit; where the limit is set and the identity has
// sessions on other nodes, each call start is therefore a
// compare-and-set on this record (docs/cluster.md "Limits").
type callReservations struct {
	Recent []callReservation `json:"recent"`
}

type callReservation struct {
	Session string `json:"session"`
	Node    string `json:"node"`
	Held    int    `json:"held"` // the session's calls after the start
	At      int64  `json:"at"`   // Unix milliseconds
}

func callsKey(app, identity string) string { return "calls." + identityHash(app, identity) }

// keep drops the reservations older than the grace and session's own
// (each session has one: its latest count).
func (r *callReservations) keep(now time.Time, session string) {
	r.Recent = keepRecent(r.Recent, now, session, func(e callReservation) (string, int64) { return e.Session, e.At })
}

// reservedElsewhere counts the calls of identity's sessions on other live
// nodes: for each session, the larger of its directory entry's count
// (by) and its reservation's, which the directory may not show yet.
func (g *Gateway) reservedElsewhere(by map[string]int, recent []callReservation) int {
	for _, e := range recent {
		// A dead node's reservations count no more than its entries.
		if e.Node != g.self() && g.node.Alive(e.Node) {
			by[e.Session] = max(by[e.Session], e.Held)
		}
	}
	n := 0
	for _, c := range by {
		n += c
	}
	return n
}

// acquireCall takes a call from s's quota, with the identity's calls on
// the other nodes of a cluster counted. Without a call limit, or with
// the identity's sessions on this node alone (in its view, and in its
// admission record: admittedElsewhere), the count is the directory's
// and nothing is written in the store; else
// the call is reserved by compare-and-set on the identity's call
// record, so that of calls started at once on several nodes only as
// many pass as the limit leaves room for. A record the store does not
// take refuses the call.
func (g *Gateway) acquireCall(s *Session) bool {
	if g.node == nil || !s.quota.CallsLimited() {
		return s.quota.AcquireCallBeside(g.callsElsewhere(s.identity))
	}
	if by := g.node.RemoteCallsBySession(s.identity); len(by) == 0 && !g.admittedElsewhere(s) {
		return s.quota.AcquireCallBeside(0)
	}
	ctx, cancel := context.WithTimeout(g.ctx, storeTimeout)
	defer cancel()
	key := callsKey(s.app, s.identity)
	for try := 0; ; try++ {
		rec, rev, err := readRecord[callReservations](ctx, g, key)
		if err != nil {
			g.rlog.Warn("call reservation", "reading a call record", "session_id", s.id, "err", err)
			return false
		}
		now := time.Now()
		rec.keep(now, s.id)
		by := g.node.RemoteCallsBySession(s.identity)
		if by == nil {
			by = map[string]int{}
		}
		if !s.quota.AcquireCallBeside(g.reservedElsewhere(by, rec.Recent)) {
			return false
		}
		err = g.writeReservation(ctx, key, rev, rec, s, now)
		if err == nil {
			return true
		}
		s.quota.ReleaseCall()
		if !errors.Is(err, store.ErrConflict) || ctx.Err() != nil ||
			// Another start got there first: read again, past a few
			// tries after a short random pause (as openQuota).
			try >= 4 && !g.pause(time.Duration(1+rand.IntN(10))*time.Millisecond) {
			g.rlog.Warn("call reservation", "writing a call record", "session_id", s.id, "err", err)
			return false
		}
	}
}

// admittedElsewhere reports whether s's identity has a session on
// another live node that this node's view of the directory may not show
// yet: one its admission record names (admitted within admissionGrace).
// Without it, a call start on each of two nodes, each with the
// identity's session on the other connected a moment ago, both took the
// call from the local count alone. One read of the record, and only
// where other nodes are up; a record the store does not give within
// readAttempt counts as none (the call is not refused for it).
func (g *Gateway) admittedElsewhere(s *Session) bool {
	if len(g.node.Nodes()) < 2 {
		return false
	}
	// One read's attempt: a store electing a leader costs the start
	// this much at most, and the call goes on from the local count.
	ctx, cancel := context.WithTimeout(g.ctx, readAttempt)
	defer cancel()
	rec, _, err := readRecord[admissions](ctx, g, admissionKey(s.app, s.identity))
	if err != nil {
		g.rlog.Warn("call reservation", "reading an admission record", "session_id", s.id, "err", err)
		return false
	}
	now := time.Now()
	for _, e := range rec.Recent {
		if e.Node != g.self() && e.Session != s.id && now.Sub(time.UnixMilli(e.At)) < admissionGrace && g.node.Alive(e.Node) {
			return true
		}
	}
	return false
}

// writeReservation writes rec (read at rev; 0: none) with s's calls now
// held as its reservation.
func (g *Gateway) writeReservation(ctx context.Context, key string, rev uint64, rec callReservations, s *Session, now time.Time) error {
	if held := s.callsHeld(); held > 0 {
		rec.Recent = append(rec.Recent, callReservation{Session: s.id, Node: g.self(), Held: held, At: now.UnixMilli()})
	}
	err := g.writeRecord(ctx, key, rev, rec)
	if err == nil {
		s.reserved.Store(now.UnixMilli())
	}
	return err
}

// unreserveCall writes s's count, a call having ended, to its identity's
// call record, out of line, where its reservation would otherwise count
// the call until the grace passed: whoever hears of the end may start
// another at once. Emptied, the record stays (a delete is no
// compare-and-set).
func (g *Gateway) unreserveCall(s *Session) {
	at := s.reserved.Load()
	if g.node == nil || at == 0 || time.Since(time.UnixMilli(at)) >= admissionGrace {
		return
	}
	g.goTracked(func() {
		ctx, cancel := context.WithTimeout(g.ctx, storeTimeout)
		defer cancel()
		key := callsKey(s.app, s.identity)
		for ctx.Err() == nil {
			data, rev, err := g.store.Get(ctx, key)
			var rec callReservations
			if err != nil || json.Unmarshal(data, &rec) != nil {
				return
			}
			// The count is read after the record: a start written since
			// the read counts its call, or conflicts below.
			rec.keep(time.Now(), s.id)
			err = g.writeReservation(ctx, key, rev, rec, s, time.Now())
			if !errors.Is(err, store.ErrConflict) {
				if err != nil {
					g.rlog.Warn("call reservation", "writing an ended call to its call record", "session_id", s.id, "err", err)
				}
				return
			}
		}
	})
}
