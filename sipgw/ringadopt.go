package sipgw

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/jsonrtc/jsonrtc/routing"
)

// An incoming call ringing when its node dies goes on ringing on another
// node (issue 15; docs/cluster.md "SIP dialogs"). Its INVITE transaction
// died with the node, but the caller's proxy matches a response to its
// own client transaction by the branch of its Via (RFC 3261 section
// 17.1.3), whoever sends it, and forwards a 2xx whatever state that
// transaction is in (section 16.7, step 5). So the adopter rebuilds the
// INVITE from the record (EarlyState: its Vias, Record-Route, From, To
// with our tag, Call-ID, CSeq, the caller's Contact, the offer, the
// headers the 200 reads: session timer, option tags) and
// answers it as a server transaction of its own whose responses go where
// the top Via says: the 200 with its own Contact, retransmitted from T1
// to T2 until the ACK, which comes to that Contact, the call then
// confirmed here; or the final failure. No target refresh is needed:
// the 200 carries our Contact. Over TCP or TLS the INVITE's connection
// was the dead node's: the responses go on a connection of this node's
// to the Via's address (received, else sent-by: RFC 3261 section
// 18.2.2), which sipgo's transport layer reuses or dials
// (responseConn), and the proxy matches them by the branch all the
// same.
//
// The phone's CANCEL after the death goes to the dead node: the proxy
// answers it and, its branch silent, ends the INVITE with a 408 or 487
// at its own timer. The adopter does not hear of it; the call rings here
// until the web side's ring timeout. A 200 sent after the caller gave up
// is forwarded by the proxy all the same, and the caller acknowledges
// it and ends it with a BYE (section 15), or the 200 is never
// acknowledged and the call ends with our BYE after 64*T1 (section
// 13.3.1.4, as for any 2xx).

// RingingMoves reports whether the ringing incoming call of st (from
// [Call.EarlyState]) can go on ringing on another user agent
// ([UserAgent.AdoptRinging]): a record of one whose INVITE came over
// UDP, TCP or TLS, with what the 200 copies of it.
func RingingMoves(st DialogState) bool {
	_, err := ringingInvite(st)
	return err == nil
}

// AdoptRinging goes on on this user agent with the ringing incoming call
// of st, which another node's user agent recorded ([Call.EarlyState])
// and no longer serves (dead). The call it returns rings, as one
// [UserAgent.OnIncomingCall] hands over: Answer sends the 200 built from
// the recorded INVITE, with this user agent's Contact (its own, for a
// node of a cluster), retransmitted until the ACK (within 64*T1, else a
// BYE ends the call), the dialog then confirmed here; Reject sends the
// final failure; Progress a provisional response. Its EarlyState is the
// record's, and DialogState, once confirmed, goes on as for any call.
// Nothing is sent before one of those but the transaction's own 100
// Trying, which the proxy absorbs. Over TCP or TLS the connection the
// responses go on is dialled first, within ctx, unless this node has
// one to the Via's address already; a proxy it cannot reach is an
// error. ErrNeedsConnection when the INVITE came over another transport.
func (g *UserAgent) AdoptRinging(ctx context.Context, st DialogState, o *AdoptOptions) (*Call, error) {
	if g.ctx == nil {
		return nil, ErrClosed
	}
	req, err := ringingInvite(st)
	if err != nil {
		return nil, err
	}
	bad := func(f string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrDialogState, fmt.Sprintf(f, a...))
	}
	inv := st.Invite
	var local, remote sip.Uri
	if err := sip.ParseUri(st.LocalURI, &local); err != nil {
		return nil, bad("local_uri %q: %v", st.LocalURI, err)
	}
	remote = *req.From().Address.Clone()

	// A server transaction of this user agent's own, outside its
	// transaction layer: nothing else reaches it (a retransmitted INVITE
	// or a CANCEL goes to the dead node), and its responses go out of
	// the UDP listener or on the connection to the Via's address. It
	// releases the connection at its end.
	key, err := sip.ServerTxKeyMake(req)
	if err != nil {
		return nil, bad("transaction key: %v", err)
	}
	conn, err := g.responseConn(ctx, req.Via(), req.Source())
	if err != nil {
		return nil, err
	}
	tx := sip.NewServerTx(key, req, conn, g.log)
	if err := tx.Init(); err != nil {
		_, _ = conn.TryClose()
		return nil, err
	}
	dtx, err := g.dua.ReadInvite(req, tx)
	if err != nil {
		tx.Terminate()
		return nil, bad("INVITE: %v", err)
	}
	// ReadInvite gave the dialog a To-tag of its own; the caller has
	// ours (the dead node's provisional responses carried it).
	dtx.InviteRequest.To().Params.Add("tag", st.LocalTag)
	if dtx.ID, err = sip.DialogIDFromRequestUAS(dtx.InviteRequest); err != nil {
		tx.Terminate()
		return nil, bad("dialog ID: %v", err)
	}

	var opts AdoptOptions
	if o != nil {
		opts = *o
	}
	c := g.newCall(Incoming)
	c.uas, c.inviteTx = dtx, tx
	c.identity, c.local, c.remote, c.display = st.Identity, local, remote, st.RemoteDisplay
	c.offer = []byte(st.RemoteSDP)
	c.keys = incomingKeys(dtx.InviteRequest)
	c.noteInvite(dtx.InviteRequest)
	c.xform = opts.Transform
	if c.xform == nil {
		c.xform = g.bindIncoming(routing.Call, c.identity, c.remote.String())
	}
	c.ahead = opts.WriteAhead
	c.remoteSDP = c.offer
	c.remoteCSeq = inv.CSeq
	c.inviteDone = make(chan struct{})
	c.state = stateRinging
	c.rang = true // the dead node's call rang: a 480 is no unreachable AOR
	c.trickle = st.Trickle
	for _, p := range st.PeerInfo {
		if c.peerInfo == nil {
			c.peerInfo = map[string]bool{}
		}
		c.peerInfo[p] = true
	}
	c.app = st.App
	if err := g.addCall(c); err != nil {
		tx.Terminate()
		return nil, err
	}
	g.setDialog(dtx.ID, c)
	g.rlog.Info("adopted call", "sipgw: adopted a ringing incoming call", "call", c.id, "identity", c.identity, "call_id", st.CallID)
	g.wg.Go(func() {
		defer tx.Terminate()
		c.loop(dtx.Context())
	})
	g.wg.Go(func() { c.endFailedTx(tx) })
	return c, nil
}

// endFailedTx ends the adopted INVITE's transaction tx a few
// retransmissions after a final failure (Timer G's first ones): the
// proxy acknowledges a failure hop by hop, to the Via's sent-by, the
// dead node, so no ACK comes here, and waited for until Timer H (64*T1)
// the call would stay ringing in its record as long.
func (c *Call) endFailedTx(tx sip.ServerTransaction) {
	select {
	case <-c.finalCh:
	case <-c.done:
		return
	}
	c.mu.Lock()
	failed := c.finalCode >= 300
	c.mu.Unlock()
	if !failed {
		return
	}
	t := time.NewTimer(4 * sip.T1)
	defer t.Stop()
	select {
	case <-t.C:
	case <-c.done:
	}
	tx.Terminate()
}

// ringingInvite rebuilds the INVITE of the ringing incoming call of st,
// as it came, its source where its responses go.
func ringingInvite(st DialogState) (*sip.Request, error) {
	bad := func(f string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrDialogState, fmt.Sprintf(f, a...))
	}
	inv := st.Invite
	if st.Version != DialogStateVersion || st.Role != "uas" || inv == nil || len(inv.Vias) == 0 {
		return nil, bad("not a ringing incoming call (version %d, role %q)", st.Version, st.Role)
	}
	fields := append([]string{st.CallID, st.LocalTag, inv.RequestURI, inv.From, inv.To, st.RemoteTarget}, inv.Vias...)
	for _, f := range append(fields, st.RouteSet...) {
		if f == "" || hasCtl(f) {
			return nil, bad("empty or control characters in the INVITE's %q", f)
		}
	}
	for _, h := range inv.Headers {
		name, _, ok := strings.Cut(h, ":")
		if !ok || hasCtl(h) || !slices.ContainsFunc(ringingHeaders, func(n string) bool { return strings.EqualFold(n, strings.TrimSpace(name)) }) {
			return nil, bad("header %q", h)
		}
	}
	for _, m := range st.PeerAllow {
		if hasCtl(m) || strings.ContainsAny(m, ",\r\n") {
			return nil, bad("allow %q", m)
		}
	}
	if hasCtl(strings.ReplaceAll(strings.ReplaceAll(st.RemoteSDP, "\r", ""), "\n", "")) {
		return nil, bad("control characters in the offer")
	}
	var local sip.Uri
	if err := sip.ParseUri(st.LocalURI, &local); err != nil {
		return nil, bad("local_uri %q: %v", st.LocalURI, err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "INVITE %s SIP/2.0\r\n", inv.RequestURI)
	for _, v := range inv.Vias {
		fmt.Fprintf(&b, "Via: %s\r\n", v)
	}
	for _, r := range st.RouteSet {
		fmt.Fprintf(&b, "Record-Route: %s\r\n", r)
	}
	fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: %d INVITE\r\nContact: <%s>\r\nMax-Forwards: 70\r\n",
		inv.From, inv.To, st.CallID, inv.CSeq, st.RemoteTarget)
	if len(st.PeerAllow) > 0 {
		fmt.Fprintf(&b, "Allow: %s\r\n", strings.Join(st.PeerAllow, ", "))
	}
	for _, h := range inv.Headers {
		fmt.Fprintf(&b, "%s\r\n", h)
	}
	if st.RemoteSDP != "" {
		b.WriteString("Content-Type: application/sdp\r\n")
	}
	fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n%s", len(st.RemoteSDP), st.RemoteSDP)
	m, err := sip.ParseMessage([]byte(b.String()))
	if err != nil {
		return nil, bad("INVITE: %v", err)
	}
	req, ok := m.(*sip.Request)
	if !ok || req.Via() == nil || req.Method != sip.INVITE || req.From() == nil || req.To() == nil {
		return nil, bad("INVITE not parsed as one")
	}
	if tag, _ := req.To().Params.Get("tag"); tag != st.LocalTag {
		return nil, bad("the INVITE's To has tag %q, the call %q", tag, st.LocalTag)
	}
	dest, err := viaDestination(req.Via())
	if err != nil {
		return nil, err
	}
	// The responses go where the top Via says (sipgo answers a request
	// to its source, which this one has none of), over its transport
	// (the Request-URI's transport parameter is ours, not the caller's):
	// a server transaction over TCP or TLS leaves retransmissions alone.
	req.SetSource(dest)
	req.SetTransport(strings.ToUpper(req.Via().Transport))
	return req, nil
}
