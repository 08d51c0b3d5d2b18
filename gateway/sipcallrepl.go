package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"time"

	"github.com/jsonrtc/jsonrtc/call"
	"github.com/jsonrtc/jsonrtc/endpoint"
	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/prometheus/client_golang/prometheus"
)

// Replicated SIP calls (docs/cluster.md, "SIP dialogs"): a confirmed call
// between a web session and SIP has a record like a web call's
// (callrepl.go), in the same bucket, under its web leg's key: its host
// and its dialog's state (call.SIPDialog), whose App is the web side's
// part (call.SIPSnapshot). It is written out of line at the confirmation
// and at each change of the dialog, and ahead of each in-dialog request
// the host sends (its CSeq must be in the store before the peer sees it,
// docs/protocol.md §4.6), and deleted at the call's end. The adopter of
// a dead host's call (the same paths as a web call's: a survivor's live
// session at the lease's expiry, a session resuming later, a node
// restarted on its data directory) takes the record by compare-and-set
// and has its user agent adopt the dialog: a target refresh with its own
// Contact, after which the phone's requests come to it. An outgoing
// call has a record from its INVITE's sending, an incoming one from its
// ringing (sipgw.Call.EarlyState; one record for the web sessions it
// rings, under one's key, the others' pointing at it). The INVITE's
// transaction cannot move: the adopter cancels an outgoing one
// (EndEarlySIP); an incoming one over UDP rings on at the adopter, which
// answers the INVITE from the record (RestoreRingingSIP), and the other
// legs' owners route their frames to it as they find the record naming
// it; over TCP or TLS it is refused (EndEarlySIP).

// sipAdoptTimeout bounds an adoption's target refresh: the resume that
// adopts waits for it.
const sipAdoptTimeout = 10 * time.Second

// sipCounters are the SIP calls' own figures.
type sipCounters struct {
	aheadFailed  atomic.Uint64 // write-aheads not written in time
	adoptFailed  atomic.Uint64 // dialogs whose adoption failed
	adoptedCalls atomic.Uint64 // dialogs adopted
	orphaned     atomic.Uint64 // dialogs ended: their web user gone
	cancelled    atomic.Uint64 // ringing calls of a dead host ended (cancelled or refused)
	// ringingAdopted: ringing incoming calls of a dead host that ring on
	// here.
	ringingAdopted atomic.Uint64
}

// sipCollectors are the SIP call records' metrics.
func (r *callRepl) sipCollectors() []prometheus.Collector {
	return []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "jsonrtc_sip_calls_adopted_total",
			Help: "SIP calls whose dialog this node took over from a dead host, or from its own earlier life, by their records."},
			func() float64 { return float64(r.sip.adoptedCalls.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "jsonrtc_sip_call_adoptions_failed_total",
			Help: "SIP calls whose dialog this node could not take over (the target refresh failed): their web legs were ended."},
			func() float64 { return float64(r.sip.adoptFailed.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "jsonrtc_sip_call_writeahead_failed_total",
			Help: "In-dialog requests of SIP calls whose CSeq could not be written ahead (the queue full, or the store failing or slow): refused, but a BYE, which goes anyway; and released calls not written at a drain."},
			func() float64 { return float64(r.sip.aheadFailed.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "jsonrtc_sip_calls_orphaned_total",
			Help: "SIP calls of records this node took whose web session was gone: it ended their dialogs (BYE) and media, and deleted the records."},
			func() float64 { return float64(r.sip.orphaned.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "jsonrtc_sip_calls_cancelled_total",
			Help: "SIP calls still ringing when their host died that this node ended by their records (an outgoing INVITE cancelled, an incoming one over TCP or TLS refused 480), the web leg told."},
			func() float64 { return float64(r.sip.cancelled.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "jsonrtc_sip_calls_ringing_adopted_total",
			Help: "Incoming SIP calls still ringing when their host died that ring on here by their records, until a web callee answers or declines, or the ring timeout."},
			func() float64 { return float64(r.sip.ringingAdopted.Load()) }),
	}
}

// replicateSIP queues a SIP call's change (call.Options.ReplicateSIP).
func (r *callRepl) replicateSIP(sn call.SIPSnapshot, st call.SIPDialog, ended bool) {
	op := sipOp(sn, ended)
	if !ended {
		op.sip = &st
	}
	r.push(op)
}

// sipOp is the change of the SIP call whose web side is sn, ended or
// with its dialog to set.
func sipOp(sn call.SIPSnapshot, ended bool) callOp {
	web := sn.Web
	return callOp{web: &web, forks: sn.Forks, ended: ended}
}

// writeAheadSIP writes st before the request that makes it leaves
// (call.Options.WriteAheadSIP): it waits for the write, at most
// storeTimeout. Its error refuses the request (sipgw.ErrNotRecorded; a
// BYE goes anyway): sent, its CSeq would be one the record lacks, which
// an adopter after this node's death sends again and the peer refuses
// (RFC 3261 section 12.2.2). Refusing costs the web user one request,
// which it hears of (503) and may make again; sending it and having the
// adopter skip CSeqs instead would need a margin no record can bound (a
// store down for minutes, a DTMF each 100 ms) and hides the outage.
func (r *callRepl) writeAheadSIP(sn call.SIPSnapshot, st call.SIPDialog) error {
	web := sn.Web
	err := r.pushWait(callOp{web: &web, sip: &st})
	if err != nil {
		r.sip.aheadFailed.Add(1)
		r.g.rlog.Info("call records", "a SIP request refused: its CSeq could not be written", "session_id", web.Session, "subsession_id", web.Sub, "err", err)
	}
	return err
}

var (
	// errNotWritten: a change not written within storeTimeout.
	errNotWritten = errors.New("the call's record not written in time")
	// errCallQueueFull: a change the call records' queue had no room for.
	errCallQueueFull = errors.New("the call records' queue is full")
)

// pushWait queues op and waits for its write, at most storeTimeout, and
// queues it again while a write fails with time left: a write the store
// refused at once (a failure answered, not a timeout: the write's own
// attempts cover those) may pass a moment later. The error is the last
// write's, errNotWritten when the bound ran out first.
func (r *callRepl) pushWait(op callOp) error {
	t := time.NewTimer(storeTimeout)
	defer t.Stop()
	for {
		done := make(chan error, 1)
		op.done = []chan error{done}
		if !r.push(op) {
			return errCallQueueFull
		}
		var err error
		select {
		case err = <-done:
		case <-t.C:
			return errNotWritten
		case <-r.g.ctx.Done():
			return r.g.ctx.Err()
		}
		if err == nil || errors.Is(err, errNotOurs) {
			return err
		}
		select {
		case <-time.After(writeRetryPause):
		case <-t.C:
			return err
		case <-r.g.ctx.Done():
			return r.g.ctx.Err()
		}
	}
}

// writeRetryPause spaces a write-ahead's writes the store refused, so
// that one refused at once does not spin.
const writeRetryPause = 50 * time.Millisecond

// releaseSIPCalls hands the confirmed SIP calls of this node's sessions
// over, at a drain: each dialog released (call.Handler.ReleaseSIP) and
// its record written, marked released, before the session's socket is
// closed, so that the node the client resumes on adopts the call at
// once (adoptReleased), without waiting for this node's lease.
func (g *Gateway) releaseSIPCalls() {
	if g.repl == nil || g.node == nil {
		return
	}
	for _, s := range g.liveSessions() {
		if !g.calls.HasSIPCall(s) {
			continue
		}
		for _, rel := range g.calls.ReleaseSIP(s) {
			web := rel.Call.Web
			if g.repl.pushWait(callOp{web: &web, sip: &rel.Dialog, released: true}) != nil {
				g.repl.sip.aheadFailed.Add(1)
				g.log.Warn("a released SIP call's record not written: the call is lost", "session_id", web.Session, "subsession_id", web.Sub)
			}
		}
	}
}

// adoptReleased adopts the SIP calls of s, just taken over here, that a
// live node handed over (a drain, releaseSIPCalls): their routes name
// that node, and the records say released.
func (s *Session) adoptReleased() {
	g := s.g
	if g.repl == nil {
		return
	}
	var subs []string
	s.mu.Lock()
	for k, node := range s.routes {
		if k.pkg == protocol.PackageCall && node != g.self() {
			subs = append(subs, k.key)
		}
	}
	s.mu.Unlock()
	for _, sub := range subs {
		ctx, cancel := context.WithTimeout(g.ctx, storeTimeout)
		rec, _, _, err := g.repl.read(ctx, callKey(s.id, sub))
		cancel()
		if err != nil || rec.SIP == nil || !rec.Released {
			continue
		}
		if host, _ := g.repl.adopt(s.id, sub); host != "" {
			s.mu.Lock()
			s.routes[routeKey{protocol.PackageCall, sub}] = host
			s.mu.Unlock()
		}
	}
}

// takeSIP makes this node the host of the SIP call of rec, under ck at
// revision rev, and has its user agent adopt the dialog. A dialog the
// peer does not take back (the refresh refused or unanswered) ends the
// call's web leg (call.Handler.RestoreSIP) and its record. An incoming
// call still ringing rings on here (call.Handler.RestoreRingingSIP) when
// its INVITE came over UDP; another one still ringing is ended instead
// (call.Handler.EndEarlySIP). r.adopting holds ck.
func (r *callRepl) takeSIP(ctx context.Context, ck string, rec *callRecord, rev uint64) error {
	var sn call.SIPSnapshot
	if err := json.Unmarshal(rec.SIP.App, &sn); err != nil {
		return errCallGone // not a record this node can use
	}
	legs := []call.LegSnapshot{sn.Web}
	if rec.SIP.Invite != nil {
		legs = append(legs, sn.Forks...)
	}
	var eps []endpoint.Endpoint
	for _, l := range legs {
		ep, err := r.g.legEndpoint(ctx, l)
		switch {
		case errors.Is(err, errCallGone):
			continue
		case err != nil:
			return err
		}
		eps = append(eps, ep)
	}
	if len(eps) == 0 {
		r.endOrphan(ctx, ck, rec, rev, sn)
		return errCallGone
	}
	// A ringing incoming call over UDP rings on here (sipring's
	// RestoreRingingSIP); over TCP or TLS, and an outgoing one, it is
	// ended.
	continues := rec.SIP.Invite != nil && !sn.Out && r.g.calls.RingingContinues(*rec.SIP)
	forked := rec.SIP.Invite != nil && len(sn.Forks) > 0 && !continues
	if forked {
		// Taken by writing over the record why the call ended: the
		// forks' sessions resume on their own nodes, up to a lease's
		// time apart, and the shutdown below is lost for one nobody
		// has resumed yet; its owner reads the reason here at its
		// resume. Left naming this node, the record would route it
		// here, to no call; deleted, it would say the call's node
		// went down.
		tomb, _ := json.Marshal(callRecord{Host: r.host, Ended: call.RingLostIn})
		if _, err := r.g.store.Update(ctx, ck, tomb, rev); err != nil {
			return err
		}
	} else if err := r.claim(ctx, ck, rec, rev, legID{sn.Web.Session, sn.Web.Sub}); err != nil {
		return err
	}
	if continues {
		switch err := r.g.calls.RestoreRingingSIP(*rec.SIP, eps...); {
		case err == nil:
			r.adopted.Add(1)
			r.sip.ringingAdopted.Add(1)
			r.g.log.Info("ringing SIP call adopted", "session_id", sn.Web.Session, "subsession_id", sn.Web.Sub, "call_id", rec.SIP.CallID, "sessions", len(eps))
		case errors.Is(err, call.ErrLegTaken):
		default:
			// Its web legs heard the end.
			r.sip.adoptFailed.Add(1)
			r.push(sipOp(sn, true))
		}
		return nil
	}
	actx, cancel := context.WithTimeout(r.g.ctx, sipAdoptTimeout)
	defer cancel()
	if rec.SIP.Invite != nil {
		// Ringing or early: its INVITE transaction died with the host.
		// Cancelled (outgoing) or refused (incoming), so that the phone
		// stops ringing, and the web legs whose sessions are there told
		// why (call.Handler.EndEarlySIP).
		err := r.g.calls.EndEarlySIP(actx, *rec.SIP, eps...)
		if !forked {
			r.push(sipOp(sn, true))
		}
		r.sip.cancelled.Add(1)
		r.g.log.Info("ringing SIP call ended: its node died", "session_id", sn.Web.Session, "subsession_id", sn.Web.Sub, "call_id", rec.SIP.CallID, "err", err)
		return nil
	}
	switch err := r.g.calls.RestoreSIP(actx, *rec.SIP, eps[0]); err {
	case nil:
		r.adopted.Add(1)
		r.sip.adoptedCalls.Add(1)
		r.g.log.Info("SIP call adopted", "session_id", sn.Web.Session, "subsession_id", sn.Web.Sub, "call_id", rec.SIP.CallID)
	case call.ErrLegTaken:
	default:
		// The web leg heard the end: the call is over, here as there.
		r.sip.adoptFailed.Add(1)
		r.push(sipOp(sn, true))
	}
	return nil
}

// endOrphan ends the SIP call of rec, under ck at revision rev, whose web
// leg's session is gone (expired before anyone went on with it): nobody
// will continue it, and the phone would keep it until its session timer
// ran out, or for ever. This node takes the record by compare-and-set,
// as for an adoption, so that one node alone ends the dialog (one BYE),
// has its user agent end it (call.Handler.EndSIP, which deletes the
// call's rtpengine session too) and deletes the record. A record another
// node took first is left to it.
func (r *callRepl) endOrphan(ctx context.Context, ck string, rec *callRecord, rev uint64, sn call.SIPSnapshot) {
	if err := r.claim(ctx, ck, rec, rev, legID{sn.Web.Session, sn.Web.Sub}); err != nil {
		return
	}
	ectx, cancel := context.WithTimeout(r.g.ctx, sipAdoptTimeout)
	err := r.g.calls.EndSIP(ectx, *rec.SIP, r.g.orphanRoute(sn).Transform)
	cancel()
	r.push(sipOp(sn, true))
	if err != nil {
		r.g.rlog.Info("call records", "a SIP call whose web user is gone not ended", "session_id", sn.Web.Session, "subsession_id", sn.Web.Sub, "err", err)
		return
	}
	r.sip.orphaned.Add(1)
	r.g.log.Info("SIP call ended: its web user is gone", "session_id", sn.Web.Session, "subsession_id", sn.Web.Sub, "call_id", rec.SIP.CallID)
}

// sipMediaCalls returns the rtpengine Call-IDs of the SIP calls whose
// records are in the store: a sweep of the media ledger leaves them to
// whoever adopts the call (which deletes the media if the adoption
// fails; a record never adopted expires, and its call with rtpengine's
// own --timeout). None without records (r nil).
func (r *callRepl) sipMediaCalls(ctx context.Context) (map[string]bool, error) {
	out := map[string]bool{}
	if r == nil {
		return out, nil
	}
	keys, err := r.g.store.Keys(ctx, callPrefix)
	if err != nil {
		return nil, err
	}
	for _, k := range keys {
		data, _, err := r.g.store.Get(ctx, k)
		var rec callRecord
		if err != nil || json.Unmarshal(data, &rec) != nil || rec.SIP == nil {
			continue
		}
		var sn call.SIPSnapshot
		if json.Unmarshal(rec.SIP.App, &sn) == nil && sn.Media != nil {
			out[sn.Media.Keys.CallID] = true
		}
	}
	return out, nil
}
