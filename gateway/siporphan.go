package gateway

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	"github.com/jsonrtc/jsonrtc/call"
)

// SIP calls nobody will continue (docs/cluster.md, "SIP dialogs"): a
// SIP call record whose web session is gone is ended by whichever node
// finds it (endOrphan: the dialog's BYE, its media, its record). A node
// finds such a record when it adopts back its earlier life's calls, and
// by the sweep below: a record handed over at a drain (released) whose
// client never resumed, or one naming a dead host whose session expired
// before any survivor adopted it, is visited by no resume.

// orphanSweep is how often each node of a cluster looks for SIP call
// records nobody will continue. The phone keeps such a call up to this
// long after the session record's expiry.
const orphanSweep = 30 * time.Second

// watchOrphans sweeps the SIP call records every orphanSweep, until the
// gateway ends.
func (g *Gateway) watchOrphans() {
	if g.repl == nil {
		return
	}
	t := time.NewTicker(orphanSweep)
	defer t.Stop()
	for {
		select {
		case <-g.ctx.Done():
			return
		case <-t.C:
		}
		g.repl.sweepOrphans()
	}
}

// sweepOrphans ends the SIP calls of records that are released, or name
// a dead host, and whose web sessions' records are gone. A record whose
// session is still there is left to the resume that adopts it.
func (r *callRepl) sweepOrphans() {
	ctx, cancel := context.WithTimeout(r.g.ctx, 4*storeTimeout)
	defer cancel()
	keys, err := r.g.store.Keys(ctx, callPrefix)
	if err != nil {
		r.g.rlog.Info("call records", "SIP call records not swept", "err", err)
		return
	}
	for _, k := range keys {
		if !strings.HasPrefix(k, callPrefix) {
			continue
		}
		rec, ck, rev, err := r.read(ctx, k)
		if err != nil || ck != k || rec.SIP == nil || !rec.Released && (rec.Host == r.host || !r.g.node.Down(rec.Host)) {
			continue
		}
		var sn call.SIPSnapshot
		if json.Unmarshal(rec.SIP.App, &sn) != nil {
			continue
		}
		if !r.sessionsGone(sn, rec.SIP.Invite != nil) {
			continue
		}
		unlock := r.adopting.lock(ck)
		r.endOrphan(ctx, ck, rec, rev, sn)
		unlock()
	}
}

// sessionsGone reports whether the web sessions of the SIP call sn have
// no record: its web leg's, and with ringing its forks' (a call ringing
// several sessions is left to a fork's resume while one is there, which
// ends it saying why: takeSIP). A record not read counts as there.
func (r *callRepl) sessionsGone(sn call.SIPSnapshot, ringing bool) bool {
	legs := []call.LegSnapshot{sn.Web}
	if ringing {
		legs = append(legs, sn.Forks...)
	}
	for _, l := range legs {
		if s, _, err := r.g.restoreBy(l.Session, time.Now().Add(storeTimeout)); err != nil || s != nil {
			return false
		}
	}
	return true
}
