package sipgw

import (
	"encoding/json"
	"slices"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// DialogStateVersion is the version of [DialogState] this package writes
// and the only one [UserAgent.Adopt] reads: a record of another version
// (a node of an older or newer release) is refused, not guessed at.
const DialogStateVersion = 1

// DialogState is what another node's user agent needs to continue a
// confirmed INVITE dialog (RFC 3261 section 12): the dialog's identity,
// both CSeq counters, its route set and remote target, the offer/answer
// state and the session timer. It is plain data, JSON-encoded into the
// call's store record; read it with [Call.DialogState] whenever
// [Call.DialogChanged] signals, and hand it to [UserAgent.Adopt].
type DialogState struct {
	Version int `json:"v"`
	// Role is "uac" when we sent the initial INVITE, "uas" when the peer
	// did. It names the call's Direction; the dialog's requests are
	// built the same way from either (From is ours, To the peer's).
	Role   string `json:"role"`
	CallID string `json:"call_id"`
	// LocalTag and RemoteTag: our tag (From of our requests) and the
	// peer's (To of our requests).
	LocalTag  string `json:"local_tag"`
	RemoteTag string `json:"remote_tag"`
	// LocalURI and RemoteURI are the From and To URIs of our requests
	// (section 12.1); the display names go with them.
	LocalURI      string `json:"local_uri"`
	LocalDisplay  string `json:"local_display,omitempty"`
	RemoteURI     string `json:"remote_uri"`
	RemoteDisplay string `json:"remote_display,omitempty"`
	// LocalCSeq is the CSeq of the last request we sent in the dialog:
	// the adopter's first one takes the next. RemoteCSeq is the highest
	// the peer sent (0: none yet).
	LocalCSeq  uint32 `json:"local_cseq"`
	RemoteCSeq uint32 `json:"remote_cseq,omitempty"`
	// RouteSet are the Route values of our in-dialog requests, in the
	// order they go on them (section 12.1.1 and 12.1.2: the Record-Route
	// of the dialog-creating message, reversed for the UAC).
	RouteSet []string `json:"route_set,omitempty"`
	// RemoteTarget is the peer's Contact URI, the Request-URI of our
	// in-dialog requests; LocalContact is the Contact the peer has for
	// us, which adoption replaces.
	RemoteTarget string `json:"remote_target"`
	LocalContact string `json:"local_contact"`
	// Transport is the transport of the dialog's requests ("UDP", "TCP", ...).
	Transport string `json:"transport"`
	// Identity is the web identity of our side.
	Identity string `json:"identity"`
	// PeerAllow lists the methods the peer allows (its Allow), which
	// says whether a refresh may be an UPDATE (RFC 3311).
	PeerAllow []string `json:"peer_allow,omitempty"`
	// PeerInfo are the Info Packages the peer takes (lower case), and
	// Trickle whether our messages announce trickle-ice (info.go).
	PeerInfo []string `json:"peer_info,omitempty"`
	Trickle  bool     `json:"trickle,omitempty"`
	// OfferPending says an offer/answer exchange was under way (a
	// re-INVITE or UPDATE either way): its transaction is not carried
	// over, and the SDPs below are those of the last completed exchange.
	OfferPending bool `json:"offer_pending,omitempty"`
	// AckOwed says our re-INVITE, the request of LocalCSeq, had left and
	// its ACK had not: a 2xx the peer sent it waits for an ACK, which an
	// adopter sends (RFC 3261 section 13.3.1.4: the peer ends the dialog
	// when none comes).
	AckOwed bool `json:"ack_owed,omitempty"`
	// LocalSDP and RemoteSDP: the descriptions we and the peer sent last.
	LocalSDP  string `json:"local_sdp,omitempty"`
	RemoteSDP string `json:"remote_sdp,omitempty"`
	// SessionExpires is the negotiated session timer interval in
	// seconds (RFC 4028: Session-Expires), 0 for none; WeRefresh says
	// whether we are its refresher.
	SessionExpires int  `json:"session_expires,omitempty"`
	WeRefresh      bool `json:"we_refresh,omitempty"`
	// ViaBranch is the branch of the peer's INVITE (uas only): a part
	// of the dialog keys a media relay knows the call by (DialogKeys).
	ViaBranch string `json:"via_branch,omitempty"`
	// App is the caller's own record ([Call.SetApp]), carried as is:
	// what maps the dialog back to its web session and subsession.
	App json.RawMessage `json:"app,omitempty"`
	// Invite, set by [Call.EarlyState] alone, is the INVITE of an
	// outgoing call no final response answered yet: the dialog is not
	// confirmed, and another node can only cancel it
	// ([UserAgent.EndDialog]); [UserAgent.Adopt] refuses such a state.
	Invite *InviteState `json:"invite,omitempty"`
}

// DialogChanged signals, coalesced, that the call's [DialogState] may
// have changed: a request went either way (CSeq), an SDP, the session
// timer, the confirmation. One signal may stand for several changes,
// and none is lost: read the state after each receive. It is never
// closed; stop reading at Done.
func (c *Call) DialogChanged() <-chan struct{} { return c.changedCh }

// changed signals DialogChanged without blocking: a pending signal
// already covers this change.
func (c *Call) changed() {
	select {
	case c.changedCh <- struct{}{}:
	default:
	}
}

// SetWriteAhead sets f, called on the goroutine about to send one of
// the call's in-dialog requests in its confirmed dialog, before the
// request leaves, with the state the request makes (LocalCSeq is its
// CSeq): the request waits for f to return, so that a record written
// there is in the store before the peer can see the CSeq (the durability
// rule of docs/protocol.md §4.6). When f fails, the request does not
// leave and fails with ErrNotRecorded (its CSeq not taken), but a BYE,
// which goes anyway (see requestIn). The other changes (SDPs, the timer,
// the peer's CSeq) are not written ahead: read them at DialogChanged.
// nil removes it. f must not call the call's methods but DialogState.
func (c *Call) SetWriteAhead(f func(DialogState) error) {
	c.mu.Lock()
	c.ahead = f
	c.mu.Unlock()
}

// writeAhead hands the SetWriteAhead function the state of the request
// about to leave: the next CSeq (the caller holds the request slot, so
// no other request takes it meanwhile). Its error is the function's.
func (c *Call) writeAhead() error {
	c.mu.Lock()
	f := c.ahead
	c.mu.Unlock()
	if f == nil {
		return nil
	}
	st, ok := c.DialogState()
	if !ok {
		return nil
	}
	st.LocalCSeq++
	return f(st)
}

// SetApp sets the opaque record DialogState carries for the caller
// (its JSON), which an adopting node gets back in the adopted call's
// DialogState. It signals DialogChanged.
func (c *Call) SetApp(app json.RawMessage) {
	c.mu.Lock()
	c.app = slices.Clone(app)
	c.mu.Unlock()
	c.changed()
}

// DialogState returns a snapshot of the call's dialog; false before the
// dialog is confirmed (an unanswered call is not continued elsewhere:
// its INVITE transaction cannot be) and after it ended. It costs about
// 3 µs and 36 small allocations (the URIs formatted, the SDPs copied),
// no I/O (BenchmarkDialogState): take it at every DialogChanged.
func (c *Call) DialogState() (DialogState, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != stateConfirmed {
		return DialogState{}, false
	}
	s := DialogState{
		Version:        DialogStateVersion,
		Role:           "uac",
		Identity:       c.identity,
		Trickle:        c.trickle,
		OfferPending:   c.reinviteIn || c.reinviteOut,
		AckOwed:        c.ackOwed,
		LocalSDP:       string(c.localSDP),
		RemoteSDP:      string(c.remoteSDP),
		SessionExpires: secs(c.stSnap.interval),
		WeRefresh:      c.stSnap.weRefresh,
		RemoteCSeq:     c.remoteCSeq,
		ViaBranch:      c.keys.ViaBranch,
		App:            slices.Clone(c.app), // the caller's to change
	}
	for p := range c.peerInfo {
		s.PeerInfo = append(s.PeerInfo, p)
	}
	slices.Sort(s.PeerInfo)
	var inv *sip.Request
	var allowFrom sip.Message
	if c.uac != nil {
		inv, allowFrom = c.uac.InviteRequest, c.uac.InviteResponse
		res := c.uac.InviteResponse
		from, to := inv.From(), res.To()
		s.LocalURI, s.LocalDisplay, s.LocalTag = from.Address.String(), from.DisplayName, tagOf(from.Params)
		s.RemoteURI, s.RemoteDisplay, s.RemoteTag = to.Address.String(), to.DisplayName, tagOf(to.Params)
		s.LocalCSeq = max(c.localCSeq, c.uac.CSEQ()) // uacDialog counts
		rrs := res.GetHeaders("Record-Route")
		for i := len(rrs) - 1; i >= 0; i-- {
			s.RouteSet = append(s.RouteSet, rrs[i].Value())
		}
		if c.dir == Incoming {
			s.Role = "uas" // an adopted incoming call
		}
	} else {
		s.Role = "uas"
		inv, allowFrom = c.uas.InviteRequest, c.uas.InviteRequest
		from, to := inv.From(), inv.To()
		s.LocalURI, s.LocalDisplay, s.LocalTag = to.Address.String(), to.DisplayName, tagOf(to.Params)
		s.RemoteURI, s.RemoteDisplay, s.RemoteTag = from.Address.String(), from.DisplayName, tagOf(from.Params)
		s.LocalCSeq = c.uas.CSEQ()
		for _, h := range inv.GetHeaders("Record-Route") {
			s.RouteSet = append(s.RouteSet, h.Value())
		}
	}
	s.CallID = inv.CallID().Value()
	s.Transport = inv.Transport()
	target, contact := c.remoteTargetLocked(), c.localContact
	s.RemoteTarget, s.LocalContact = target.String(), contact.String()
	for _, h := range allowFrom.GetHeaders("Allow") {
		for _, m := range strings.Split(h.Value(), ",") {
			if m = strings.TrimSpace(m); m != "" {
				s.PeerAllow = append(s.PeerAllow, m)
			}
		}
	}
	return s, true
}

func tagOf(p sip.HeaderParams) string {
	t, _ := p.Get("tag")
	return t
}

// notePeerCSeq records the CSeq of a request from the peer in the
// dialog; false for one out of order in an adopted dialog, to be refused
// with 500 (RFC 3261 section 12.2.2), which sipgo's dialog sessions do
// for the others.
func (c *Call) notePeerCSeq(req *sip.Request) bool {
	cs := req.CSeq()
	if cs == nil {
		return true
	}
	c.mu.Lock()
	higher := cs.SeqNo > c.remoteCSeq
	if higher {
		c.remoteCSeq = cs.SeqNo
	}
	lower := cs.SeqNo < c.remoteCSeq
	c.mu.Unlock()
	if higher {
		c.changed()
	}
	return !lower || c.adoptedEnd == nil
}

// noteTarget takes the Contact of m as the dialog's remote target: m is
// a target refresh we accepted with a 2xx, or the 2xx to ours (RFC 3261
// section 12.2.1.2 and 12.2.2, RFC 6141 section 3.3: a refused one
// changes nothing).
func (c *Call) noteTarget(m interface{ Contact() *sip.ContactHeader }) {
	ct := m.Contact()
	if ct == nil {
		return
	}
	c.mu.Lock()
	c.target = ct.Address.Clone()
	c.mu.Unlock()
	c.changed()
}
