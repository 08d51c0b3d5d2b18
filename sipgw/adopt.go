package sipgw

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/jsonrtc/jsonrtc/routing"
)

// Continuing a dialog on another node (issue 15; docs/cluster.md "SIP
// dialogs"). The node that served a call wrote its DialogState at every
// change; when that node is gone, another node's user agent adopts the
// state: it rebuilds the call and sends a target refresh (RFC 3261
// section 12.2: a re-INVITE, or an UPDATE when the peer allows one, RFC
// 3311 section 5) that carries its own Contact, so that the peer's next
// in-dialog requests come to it.
//
// What is lost between the old node's end and the refresh's 2xx: a
// request the peer starts in that window goes to the old Contact, and
// its retransmissions keep going there (RFC 3261 section 17.1: a client
// transaction's retransmissions go where the request went; a stateful
// proxy's record-routed branch does the same), so the target refresh
// does not recover it: it fails at the peer after Timer B or F (64*T1,
// 32 s by default) with a 408, or at once with a 503 from a proxy that
// found the old node's TCP port closed. An INFO (a DTMF digit) of that
// window is lost; a re-INVITE or UPDATE is refused, which the peer may
// retry, or may take as the dialog's end (RFC 5057 section 5.2); a BYE is
// lost, and the adopted call ends when the session timer runs out (or
// the web side hangs up). What the peer sends after the refresh's 2xx
// reaches the new node. The window is the cluster's detection and
// takeover time (the dead node's lease, docs/cluster.md) plus one round
// trip of the refresh. A request of the old node that the state written
// last does not show (its CSeq) is not known to the adopter: its next
// request would reuse the CSeq, which the peer refuses (500, RFC 3261
// section 12.2.2); Call.SetWriteAhead lets the record be written before
// each request leaves (docs/protocol.md §4.6). An offer/answer exchange
// under way at the old node's end is lost with its transaction (the
// state has the last completed one): the peer that sent a 2xx waits for
// an ACK that never comes and ends the dialog (RFC 3261 section 13.3.1.4),
// unless the state says the ACK of our re-INVITE was owed (AckOwed): the
// adopter sends it (ackDead).

// ErrDialogState: a DialogState Adopt cannot use (another version, a
// missing or malformed field).
var ErrDialogState = errors.New("sipgw: unusable dialog state")

// AdoptOptions are what a DialogState does not carry.
type AdoptOptions struct {
	// Transform is the call's header rules (its Route's), as Dial takes
	// them; nil: none for an outgoing call (uac), and for an incoming one
	// (uas) the rules this user agent binds to an INVITE from the peer.
	Transform *routing.Transform
	// WriteAhead is the call's [Call.SetWriteAhead] function from the
	// start: the target refresh's CSeq is written ahead too (not
	// written, the refresh fails, and the adoption with it).
	WriteAhead func(DialogState) error
}

// Adopt continues on this user agent the confirmed dialog st, which
// another user agent served (another node's, now gone or released): it
// rebuilds the call, sends the target refresh with this user agent's
// Contact (an UPDATE without a body when the peer allows UPDATE, else a
// re-INVITE with the last SDP we sent, its o= version bumped: RFC 3264
// section 8 allows a new version of an unchanged description) and
// returns the call once the peer accepted it. From then on the peer's
// in-dialog requests come here as the call's events, and the call's
// requests (Hangup's BYE) go with the dialog's next CSeq and its route
// set. The call's first event is whatever the peer sends next; it
// starts confirmed. When the refresh fails, the call is ended, with a
// BYE unless the answer was 481 (the dialog is gone), and the error
// says why (ResponseCode reads its code: the failure's, 408 for no
// answer); Adopt returns without waiting for the BYE's answer (up to
// 64*T1). A 491 (the peer's own
// re-INVITE crossed it) is retried once, a 422 once with the peer's
// Min-SE, and a refused UPDATE becomes a re-INVITE, as in a session
// refresh (timer.go). ctx bounds the refresh.
func (g *UserAgent) Adopt(ctx context.Context, st DialogState, o *AdoptOptions) (*Call, error) {
	if g.ctx == nil {
		return nil, ErrClosed
	}
	c, timer, err := g.install(st, o)
	if err != nil {
		return nil, err
	}
	g.rlog.Info("adopted call", "sipgw: adopted a dialog", "call", c.id, "identity", c.identity, "role", st.Role)
	if st.AckOwed {
		c.ackDead()
	}
	next, err := c.refresh(ctx, timer)
	if err != nil {
		code := ResponseCode(err)
		c.deliver(func() {
			if code != 481 {
				bctx, cancel := context.WithTimeout(c.life, sip.Timer_F)
				defer cancel()
				_ = c.bye(bctx, nil)
			}
			c.endForced = &Event{End: EndError, Code: code, Reason: "Target refresh failed"}
		})
		if code == 481 {
			<-c.done // at once: no BYE
		}
		// The BYE, which a peer that did not answer the refresh may not
		// answer either (Timer F, 32 s), goes on on the call's goroutine,
		// which Close waits for: the adopter need not wait for it to end
		// its side (a node's start waited for it, docs/cluster.md).
		return nil, fmt.Errorf("sipgw: target refresh of an adopted dialog: %w", err)
	}
	c.deliver(func() { c.armTimer(next) })
	return c, nil
}

// ackDead sends the ACK the dead node owed for its re-INVITE of
// st.LocalCSeq, before the target refresh: a peer that answered it 2xx
// retransmits the 2xx to the dead node and, without an ACK, ends the
// dialog after 64*T1 (RFC 3261 section 13.3.1.4), and may refuse the
// refresh meanwhile. A peer that never answered 2xx drops it (section
// 17.2.3: it matches no transaction, and its dialog owes no 2xx an ACK).
// The peer may have taken the re-INVITE's offer, whose SDP the record
// does not hold (its answer never came here): the refresh's re-INVITE
// offers the last completed exchange's again, its o= version bumped once
// more, past the one the lost offer may have had (RFC 3264 section 8),
// so that the peer takes it as a change.
func (c *Call) ackDead() {
	if err := c.ackLast(); err != nil {
		c.g.rlog.Info("adopted call", "sipgw: the owed ACK of an adopted dialog not sent", "call", c.id, "err", err)
	}
	c.mu.Lock()
	c.localSDP = bumpOrigin(c.localSDP)
	c.mu.Unlock()
	c.changed()
}

// install rebuilds the call of st on this user agent and starts it, its
// dialog found by the peer's requests; timer is the session timer the
// state had, the caller's to arm.
func (g *UserAgent) install(st DialogState, o *AdoptOptions) (*Call, sessionTimer, error) {
	var opts AdoptOptions
	if o != nil {
		opts = *o
	}
	c, id, err := g.rebuild(st)
	if err != nil {
		return nil, sessionTimer{}, err
	}
	if opts.Transform == nil && st.Role == "uas" {
		// An incoming call's header rules are bound as at its INVITE,
		// under this node's configuration.
		opts.Transform = g.bindIncoming(routing.Call, st.Identity, st.RemoteURI)
	}
	c.xform, c.ahead = opts.Transform, opts.WriteAhead
	// Set before the dialog can be found: the peer's BYE reads it.
	dctx, end := context.WithCancel(context.Background())
	c.adoptedEnd = end
	timer := c.stSnap // the owner's from now on
	if err := g.addCall(c); err != nil {
		end()
		return nil, sessionTimer{}, err
	}
	g.setDialog(id, c)
	g.wg.Go(func() {
		defer end()
		c.loop(dctx)
	})
	return c, timer, nil
}

// EndDialog ends on this user agent the dialog st, which
// another user agent served and nobody will go on with (its web side is
// gone: docs/cluster.md "SIP dialogs"), so that the peer does not keep a
// call with no one on the other side until its session timer runs out,
// or for ever without one. It sends the dialog's BYE, with the next CSeq
// and its route set and `Reason: SIP;cause=code;text="reason"` (RFC
// 3326), without a target refresh first: the peer's answer comes back
// by the BYE's Via. It returns once the call is over (a BYE refused or
// unanswered is logged: nothing else is left to do) or when ctx is done.
// A state of a call not answered yet (st.Invite, from [Call.EarlyState])
// is ended by a CANCEL of its INVITE, an outgoing call's, or by the
// final response code (reason its phrase) to an incoming call's INVITE,
// sent statelessly (earlystate.go; over TCP or TLS on a connection
// dialled within ctx).
func (g *UserAgent) EndDialog(ctx context.Context, st DialogState, code int, reason string, o *AdoptOptions) error {
	if g.ctx == nil {
		return ErrClosed
	}
	if st.Invite != nil && st.Role == "uas" {
		return g.refuseInvite(ctx, st, code, reason)
	}
	if st.Invite != nil {
		return g.cancelInvite(ctx, st, code, reason)
	}
	c, _, err := g.install(st, o)
	if err != nil {
		return err
	}
	g.rlog.Info("ended call", "sipgw: ended a dialog nobody goes on with", "call", c.id, "identity", c.identity, "role", st.Role)
	return c.HangupWith(ctx, code, reason)
}

// rebuild makes the call of st, confirmed, and its dialog ID. The dialog
// is a sipgo client session of a made-up INVITE and 2xx whatever the
// role: the requests of a dialog take the same shape from either side
// once it is confirmed (RFC 3261 section 12.2.1.1), which the session
// builds from the INVITE's From and Call-ID, the 2xx's To, Contact (the
// remote target) and Record-Route (the route set, reversed).
func (g *UserAgent) rebuild(st DialogState) (*Call, string, error) {
	bad := func(f string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrDialogState, fmt.Sprintf(f, a...))
	}
	if st.Version != DialogStateVersion {
		return nil, "", bad("version %d, want %d", st.Version, DialogStateVersion)
	}
	if st.Invite != nil {
		return nil, "", bad("not confirmed: the INVITE is under way")
	}
	dir := Outgoing
	switch st.Role {
	case "uac":
	case "uas":
		dir = Incoming
	default:
		return nil, "", bad("role %q", st.Role)
	}
	if st.CallID == "" || st.LocalTag == "" || st.RemoteTag == "" {
		return nil, "", bad("no Call-ID or tag")
	}
	var local, remote, target sip.Uri
	for _, u := range []struct {
		name, s string
		to      *sip.Uri
	}{{"local_uri", st.LocalURI, &local}, {"remote_uri", st.RemoteURI, &remote}, {"remote_target", st.RemoteTarget, &target}} {
		if err := sip.ParseUri(u.s, u.to); err != nil || u.to.Host == "" {
			return nil, "", bad("%s %q: %v", u.name, u.s, err)
		}
	}
	for _, r := range st.RouteSet {
		// sipgo parses the first Route of each request it sends (strict
		// or loose routing) and takes its address: one it cannot parse
		// would fail every request, or worse.
		probe := sip.NewRequest(sip.BYE, target)
		probe.AppendHeader(sip.NewHeader("Route", r))
		if rh := probe.Route(); rh == nil || rh.Address.Host == "" {
			return nil, "", bad("route %q", r)
		}
	}
	if st.SessionExpires < 0 {
		return nil, "", bad("session_expires %d", st.SessionExpires)
	}
	if len(st.LocalSDP) == 0 {
		// A re-INVITE refresh offers it again; none: no session yet.
		return nil, "", bad("no local SDP")
	}

	inv := sip.NewRequest(sip.INVITE, *target.Clone())
	from := &sip.FromHeader{DisplayName: st.LocalDisplay, Address: local, Params: sip.NewParams()}
	from.Params.Add("tag", st.LocalTag)
	inv.AppendHeader(from)
	cid := sip.CallIDHeader(st.CallID)
	inv.AppendHeader(&cid)
	inv.AppendHeader(&sip.CSeqHeader{SeqNo: st.LocalCSeq, MethodName: sip.INVITE})
	ct := g.dua.ContactHDR
	inv.AppendHeader(&ct)
	if st.Transport != "" {
		inv.SetTransport(st.Transport)
	}
	res := sip.NewResponse(200, "OK")
	to := &sip.ToHeader{DisplayName: st.RemoteDisplay, Address: remote, Params: sip.NewParams()}
	to.Params.Add("tag", st.RemoteTag)
	res.AppendHeader(sip.HeaderClone(from))
	res.AppendHeader(to)
	res.AppendHeader(sip.HeaderClone(&cid))
	res.AppendHeader(&sip.ContactHeader{Address: target, Params: sip.NewParams()})
	for i := len(st.RouteSet) - 1; i >= 0; i-- {
		res.AppendHeader(sip.NewHeader("Record-Route", st.RouteSet[i]))
	}
	if len(st.PeerAllow) > 0 {
		res.AppendHeader(sip.NewHeader("Allow", strings.Join(st.PeerAllow, ", ")))
	}
	id, err := sip.DialogIDFromResponse(res)
	if err != nil {
		return nil, "", bad("dialog ID: %v", err)
	}
	uac := &sipgo.DialogClientSession{Dialog: sipgo.Dialog{ID: id, InviteRequest: inv, InviteResponse: res}, UA: g.dua}
	uac.Init()

	c := g.newCall(dir)
	c.uac = uac
	c.identity, c.local, c.remote, c.display = st.Identity, local, remote, st.RemoteDisplay
	c.keys = DialogKeys{CallID: st.CallID, LocalTag: st.LocalTag, ViaBranch: st.ViaBranch}
	if dir == Incoming {
		c.keys.RemoteTag = st.RemoteTag
	}
	c.state, c.acked = stateConfirmed, true
	c.localSDP = bumpOrigin([]byte(st.LocalSDP))
	if st.RemoteSDP != "" {
		c.remoteSDP = []byte(st.RemoteSDP)
	}
	c.remoteCSeq = st.RemoteCSeq
	c.trickle = st.Trickle
	for _, p := range st.PeerInfo {
		if c.peerInfo == nil {
			c.peerInfo = map[string]bool{}
		}
		c.peerInfo[p] = true
	}
	c.stSnap = sessionTimer{interval: time.Duration(st.SessionExpires) * time.Second, weRefresh: st.WeRefresh}
	c.localContact = ct.Address
	c.app = st.App
	return c, id, nil
}

// bumpOrigin returns sdp with the version of its o= line one higher.
func bumpOrigin(sdp []byte) []byte {
	lines := bytes.SplitAfter(sdp, []byte("\n"))
	for i, l := range lines {
		if !bytes.HasPrefix(l, []byte("o=")) {
			continue
		}
		body := bytes.TrimRight(l, "\r\n")
		f := strings.Fields(string(body[2:]))
		if len(f) != 6 {
			return sdp
		}
		v, err := strconv.ParseUint(f[2], 10, 64)
		if err != nil {
			return sdp
		}
		f[2] = strconv.FormatUint(v+1, 10)
		out := make([]byte, 0, len(sdp)+1)
		for _, p := range lines[:i] {
			out = append(out, p...)
		}
		out = append(out, "o="+strings.Join(f, " ")...)
		out = append(out, l[len(body):]...)
		for _, p := range lines[i+1:] {
			out = append(out, p...)
		}
		return out
	}
	return sdp
}

// Release forgets the call on this user agent without a word to the
// peer, for another node to adopt its dialog (a drain): it returns the
// last DialogState (false when the dialog is not confirmed: nothing is
// released then) and ends the call with EndReleased. The peer's next
// requests get 481 here until the adopter's target refresh moved them.
// A ringing incoming call (no final response decided) is ended too,
// its INVITE transaction terminated without a response, and false
// returned: another node adopted it ([UserAgent.AdoptRinging]) while
// this one was taken for dead, and answers the INVITE; a failure from
// here (the caller's CANCEL's 487, a ring timeout's 480) would race
// that node's 200 for the caller's final response.
func (c *Call) Release() (DialogState, bool) {
	st, ok := c.DialogState()
	if !ok {
		if c.decideFinal(releasedFinal) == nil {
			c.deliver(func() {
				if c.endForced == nil {
					c.endForced = &Event{End: EndReleased}
				}
			})
			<-c.done
		}
		return st, false
	}
	if !c.deliver(func() {
		if c.endForced == nil {
			c.endForced = &Event{End: EndReleased}
		}
	}) {
		return DialogState{}, false
	}
	<-c.done
	return st, true
}

// releasedFinal is the final response a released ringing call decides
// on (Release) so that none is sent from here: it never leaves.
const releasedFinal = 487
