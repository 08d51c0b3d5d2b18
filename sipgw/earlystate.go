package sipgw

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
)

// An outgoing call whose node dies before the answer (issue 15;
// docs/cluster.md "SIP dialogs"). Its INVITE transaction cannot move,
// but another node can still end it: a CANCEL is matched to the INVITE
// by what it copies of it (RFC 3261 section 9.1: the Request-URI,
// Call-ID, From, To, the CSeq number and the INVITE's top Via alone, its
// branch among it), not by who sends it, so the node that finds the
// call's record sends the CANCEL the dead node would have. A stateful
// proxy (Kamailio's tm) matches it to the INVITE's transaction by the
// branch and cancels its branches downstream; the callee answers 487.
// The answers go where the INVITE's Via says, to the dead node: the 200
// to the CANCEL too, unless the proxy answers to the CANCEL's source
// (rport). A 2xx that crossed the CANCEL goes there as well, is never
// acknowledged, and the callee ends that dialog with a BYE after 64*T1
// (RFC 3261 section 13.3.1.4).

// InviteState is the INVITE of an outgoing call no final response
// answered yet, as a CANCEL copies it (RFC 3261 section 9.1). Header
// values are as they went on the wire.
type InviteState struct {
	RequestURI string `json:"request_uri"`
	// Via is the INVITE's top Via: its branch and sent-by are what a
	// proxy matches the CANCEL by.
	Via  string `json:"via"`
	From string `json:"from"`
	To   string `json:"to"`
	CSeq uint32 `json:"cseq"`
	// Route are the INVITE's Route values, in order: the CANCEL follows
	// them to the proxy that has the INVITE's transaction.
	Route []string `json:"route,omitempty"`
}

// sentInvite is the INVITE under way of an outgoing call; c.mu.
type sentInvite struct {
	st                InviteState
	callID, transport string
}

// noteInvite records req, the outgoing call's INVITE as it left (its
// Via added by the transport), for EarlyState: at the dial, and at each
// provisional response (an INVITE sent again after a challenge, a 422 or
// a failover has another branch). It signals DialogChanged when the
// INVITE is another one. On the owner goroutine, or before it starts.
func (c *Call) noteInvite(req *sip.Request) {
	st := InviteState{RequestURI: req.Recipient.String()}
	if v := req.Via(); v != nil {
		st.Via = v.Value()
	}
	if f := req.From(); f != nil {
		st.From = f.Value()
	}
	if t := req.To(); t != nil {
		st.To = t.Value()
	}
	if cs := req.CSeq(); cs != nil {
		st.CSeq = cs.SeqNo
	}
	for _, h := range req.GetHeaders("Route") {
		st.Route = append(st.Route, h.Value())
	}
	var cid string
	if h := req.CallID(); h != nil {
		cid = h.Value()
	}
	c.mu.Lock()
	same := c.invite != nil && c.invite.st.Via == st.Via && c.invite.st.CSeq == st.CSeq
	if !same {
		c.invite = &sentInvite{st: st, callID: cid, transport: req.Transport()}
	}
	c.mu.Unlock()
	if !same {
		c.changed()
	}
}

// EarlyState returns, for an outgoing call whose INVITE no final response
// answered yet, what another node needs to cancel it ([UserAgent.EndDialog]
// with the state): a DialogState whose Invite is set, with the call's
// identity, URIs, SDP and App. False for any other call, or once the
// INVITE is answered ([Call.DialogState] takes over at the confirmation).
// Read it at DialogChanged, as DialogState.
func (c *Call) EarlyState() (DialogState, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dir != Outgoing || c.state != stateInviting || c.invite == nil {
		return DialogState{}, false
	}
	inv := c.invite.st
	inv.Route = slices.Clone(inv.Route)
	return DialogState{
		Version:      DialogStateVersion,
		Role:         "uac",
		CallID:       c.invite.callID,
		LocalTag:     c.keys.LocalTag,
		LocalURI:     c.local.String(),
		RemoteURI:    c.remote.String(),
		LocalCSeq:    inv.CSeq,
		LocalContact: c.localContact.String(),
		Transport:    c.invite.transport,
		Identity:     c.identity,
		LocalSDP:     string(c.localSDP),
		App:          slices.Clone(c.app),
		Invite:       &inv,
	}, true
}

// cancelWait is how long cancelInvite waits for the CANCEL's answer,
// which comes only when the proxy answers to the CANCEL's source (the
// INVITE's Via names the node that sent it): the transaction goes on
// retransmitting without a waiter, until its answer or Timer F.
const cancelWait = time.Second

// cancelInvite sends the CANCEL of st.Invite, with `Reason:
// SIP;cause=code;text="reason"` when code is set (RFC 3326). It returns
// once the CANCEL is answered (nil for 2xx: the INVITE's transaction was
// found), after cancelWait without an answer (nil: it left), or when ctx
// is done.
func (g *UserAgent) cancelInvite(ctx context.Context, st DialogState, code int, reason string) error {
	inv := st.Invite
	bad := func(f string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrDialogState, fmt.Sprintf(f, a...))
	}
	if st.Version != DialogStateVersion || st.Role != "uac" {
		return bad("version %d, role %q", st.Version, st.Role)
	}
	fields := append([]string{st.CallID, inv.RequestURI, inv.Via, inv.From, inv.To}, inv.Route...)
	for _, f := range fields {
		if f == "" || hasCtl(f) {
			return bad("empty or control characters in the INVITE's %q", f)
		}
	}
	if code != 0 && (hasCtl(reason) || strings.ContainsAny(reason, `"\`)) {
		return invalid("reason")
	}
	// Written out and parsed: the values are the INVITE's headers as they
	// went, which sipgo's parser makes typed headers of (the transport
	// reads the top Via and Route).
	var b strings.Builder
	fmt.Fprintf(&b, "CANCEL %s SIP/2.0\r\nVia: %s\r\n", inv.RequestURI, inv.Via)
	for _, r := range inv.Route {
		fmt.Fprintf(&b, "Route: %s\r\n", r)
	}
	fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: %d CANCEL\r\nMax-Forwards: 70\r\n", inv.From, inv.To, st.CallID, inv.CSeq)
	if code != 0 {
		fmt.Fprintf(&b, "Reason: SIP;cause=%s;text=\"%s\"\r\n", strconv.Itoa(code), reason)
	}
	fmt.Fprintf(&b, "User-Agent: %s\r\nContent-Length: 0\r\n\r\n", g.cfg.UserAgent)
	m, err := sip.ParseMessage([]byte(b.String()))
	if err != nil {
		return bad("CANCEL: %v", err)
	}
	req, ok := m.(*sip.Request)
	if !ok || req.Via() == nil || req.Method != sip.CANCEL {
		return bad("CANCEL not parsed as one")
	}
	if st.Transport != "" {
		req.SetTransport(st.Transport)
	}
	g.track()
	tx, err := g.cli.TransactionRequest(ctx, req)
	if err != nil {
		g.untrack()
		return fmt.Errorf("sipgw: CANCEL: %w", err)
	}
	g.rlog.Info("cancelled call", "sipgw: cancelled the INVITE of a call nobody goes on with", "identity", st.Identity, "call_id", st.CallID)
	answered := make(chan error, 1)
	g.wg.Go(func() {
		defer g.untrack()
		defer tx.Terminate()
		for {
			select {
			case res := <-tx.Responses():
				if res.IsProvisional() {
					continue
				}
				var err error
				if !res.IsSuccess() {
					err = &ResponseError{Code: res.StatusCode, Reason: res.Reason}
				}
				answered <- err
				return
			case <-tx.Done():
				return
			case <-g.ctx.Done():
				return
			}
		}
	})
	t := time.NewTimer(cancelWait)
	defer t.Stop()
	select {
	case err := <-answered:
		return err
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
