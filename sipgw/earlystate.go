package sipgw

import (
	"context"
	"errors"
	"fmt"
	"net"
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
//
// An incoming call whose node dies while it rings rings on at the node
// that finds its record (ringadopt.go). One that cannot (a record
// without the caller's Contact) is refused: the final response is
// built from the recorded INVITE (its Vias, From, To with our tag,
// Call-ID, CSeq) and sent
// statelessly where the top Via says (RFC 3261 section 18.2.2): a
// stateful proxy matches it to its client transaction by the branch of
// that Via, whoever sends it, and the caller stops ringing at once
// rather than at its Timer C. The proxy's ACK of it goes to the dead
// node, which is harmless: a non-2xx ACK is hop by hop.

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
	// Vias are an incoming INVITE's Via values, top first, which its
	// final response copies (RFC 3261 section 8.2.6.2); To then carries
	// our tag, as the call's provisional responses did.
	Vias []string `json:"vias,omitempty"`
	// Headers are the header lines of an incoming INVITE ("Name:
	// value") that its 200 is built from besides those above and the
	// DialogState's (ringingHeaders: the session timer's, the option
	// tags, the Info Packages), for another node to answer it
	// (AdoptRinging).
	Headers []string `json:"headers,omitempty"`
}

// ringingHeaders are the headers of an incoming INVITE that InviteState
// keeps in Headers.
var ringingHeaders = []string{"Supported", "Require", "Session-Expires", "Min-SE", "Recv-Info"}

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
	if c.dir == Incoming {
		for _, h := range req.GetHeaders("Via") {
			st.Vias = append(st.Vias, h.Value())
		}
		for _, name := range ringingHeaders {
			for _, h := range req.GetHeaders(name) {
				st.Headers = append(st.Headers, name+": "+h.Value())
			}
		}
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

// EarlyState returns, for a call whose INVITE no final response answered
// yet, what another node needs to end it ([UserAgent.EndDialog] with the
// state): a DialogState whose Invite is set, with the call's identity,
// URIs, SDP and App; an outgoing call's INVITE is cancelled, an incoming
// one's refused. False once the INVITE is answered ([Call.DialogState]
// takes over at the confirmation).
// Read it at DialogChanged, as DialogState.
func (c *Call) EarlyState() (DialogState, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.invite == nil || !(c.dir == Outgoing && c.state == stateInviting || c.dir == Incoming && c.state == stateRinging) {
		return DialogState{}, false
	}
	inv := c.invite.st
	inv.Route, inv.Vias, inv.Headers = slices.Clone(inv.Route), slices.Clone(inv.Vias), slices.Clone(inv.Headers)
	if c.dir == Incoming {
		st := DialogState{
			Version:       DialogStateVersion,
			Role:          "uas",
			CallID:        c.invite.callID,
			LocalTag:      c.keys.LocalTag,
			RemoteTag:     c.keys.RemoteTag,
			LocalURI:      c.local.String(),
			RemoteURI:     c.remote.String(),
			RemoteDisplay: c.display,
			RemoteCSeq:    inv.CSeq,
			Transport:     c.invite.transport,
			Identity:      c.identity,
			RemoteSDP:     string(c.offer),
			ViaBranch:     c.keys.ViaBranch,
			App:           slices.Clone(c.app),
			Invite:        &inv,
		}
		// What the 200 of another node copies besides the Vias
		// (AdoptRinging): the route set the INVITE recorded, the
		// caller's Contact (the dialog's remote target), what it allows.
		if c.uas != nil {
			req := c.uas.InviteRequest
			for _, h := range req.GetHeaders("Record-Route") {
				st.RouteSet = append(st.RouteSet, h.Value())
			}
			if ct := req.Contact(); ct != nil {
				st.RemoteTarget = ct.Address.String()
			}
			for _, h := range req.GetHeaders("Allow") {
				for _, m := range strings.Split(h.Value(), ",") {
					if m = strings.TrimSpace(m); m != "" {
						st.PeerAllow = append(st.PeerAllow, m)
					}
				}
			}
		}
		for p := range c.peerInfo {
			st.PeerInfo = append(st.PeerInfo, p)
		}
		slices.Sort(st.PeerInfo)
		return st, true
	}
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
	var tx sip.ClientTransaction
	if strings.EqualFold(req.Transport(), "UDP") {
		tx, err = g.cli.TransactionRequest(ctx, req)
	} else {
		// Past the client's requester, which stamps this node's TCP port
		// on the top Via of what it routes: the Via must stay the
		// INVITE's for the proxy to match the CANCEL.
		tx, err = g.ua.TransactionLayer().Request(ctx, req)
	}
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

// refuseInvite answers the incoming INVITE of st.Invite with code (a
// final failure, 300 to 699) and reason as its phrase, statelessly, where
// its top Via says (its received and rport parameters first: RFC 3261
// section 18.2.2, RFC 3581), sent again at T1 and 2*T1 as a server
// transaction's Timer G would (the proxy's ACK goes to the dead node).
// Over UDP only: over TCP or TLS the response needs the INVITE's
// connection, which was the dead node's.
func (g *UserAgent) refuseInvite(st DialogState, code int, reason string) error {
	inv := st.Invite
	bad := func(f string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrDialogState, fmt.Sprintf(f, a...))
	}
	if st.Version != DialogStateVersion || len(inv.Vias) == 0 {
		return bad("version %d, %d Vias", st.Version, len(inv.Vias))
	}
	if code < 300 || code > 699 || reason == "" || hasCtl(reason) {
		return invalid("final response %d %q", code, reason)
	}
	for _, f := range append([]string{st.CallID, inv.From, inv.To}, inv.Vias...) {
		if f == "" || hasCtl(f) {
			return bad("empty or control characters in the INVITE's %q", f)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "SIP/2.0 %d %s\r\n", code, reason)
	for _, v := range inv.Vias {
		fmt.Fprintf(&b, "Via: %s\r\n", v)
	}
	fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: %d INVITE\r\nServer: %s\r\nContent-Length: 0\r\n\r\n",
		inv.From, inv.To, st.CallID, inv.CSeq, g.cfg.UserAgent)
	m, err := sip.ParseMessage([]byte(b.String()))
	if err != nil {
		return bad("response: %v", err)
	}
	res, ok := m.(*sip.Response)
	if !ok || res.Via() == nil {
		return bad("response not parsed as one")
	}
	dest, err := viaDestination(res.Via())
	if err != nil {
		return err
	}
	res.SetDestination(dest)
	conn, err := g.udpConn()
	if err != nil {
		return err
	}
	if err := conn.WriteMsg(res); err != nil {
		return fmt.Errorf("sipgw: final response: %w", err)
	}
	g.rlog.Info("refused call", "sipgw: refused the INVITE of a call nobody goes on with", "identity", st.Identity, "call_id", st.CallID, "code", code)
	g.wg.Go(func() {
		for _, d := range []time.Duration{sip.T1, 2 * sip.T1} {
			select {
			case <-time.After(d):
			case <-g.ctx.Done():
				return
			}
			_ = conn.WriteMsg(res)
		}
	})
	return nil
}

// viaDestination is where the responses to a request whose top Via is
// via go when another node answers it: its received and rport
// parameters first (RFC 3261 section 18.2.2, RFC 3581). Over UDP only:
// over TCP or TLS the responses need the request's connection, which was
// the dead node's.
func viaDestination(via *sip.ViaHeader) (string, error) {
	if !strings.EqualFold(via.Transport, "UDP") {
		return "", fmt.Errorf("%w: over %s", ErrNeedsConnection, via.Transport)
	}
	host, port := via.Host, via.Port
	if r, ok := via.Params.Get("received"); ok && r != "" {
		host = r
	}
	if p, ok := via.Params.Get("rport"); ok && p != "" {
		if n, err := strconv.Atoi(p); err == nil {
			port = n
		}
	}
	if port == 0 {
		port = 5060
	}
	if net.ParseIP(host) == nil {
		return "", fmt.Errorf("sipgw: the INVITE's Via names %q, not an address", host)
	}
	return net.JoinHostPort(host, strconv.Itoa(port)), nil
}

// ErrNeedsConnection: the answer to a recorded INVITE that came over TCP
// or TLS cannot go from another node (RFC 3261 section 18.2.2: over the
// INVITE's connection, which was the dead node's).
var ErrNeedsConnection = errors.New("sipgw: the INVITE's answer needs its connection")

// udpConn is this user agent's UDP listener, which answers recorded
// INVITEs from.
func (g *UserAgent) udpConn() (sip.Connection, error) {
	var conn sip.Connection
	if pool := g.ua.TransportLayer().Pool("udp"); pool != nil {
		conn = pool.Get(g.addrs["udp"])
	}
	if conn == nil {
		return nil, fmt.Errorf("sipgw: no UDP listener for the response")
	}
	return conn, nil
}
