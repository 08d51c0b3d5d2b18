package sipgw

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/jsonrtc/jsonrtc/routing"
)

// Direction says who sent the initial INVITE.
type Direction int

const (
	// Outgoing calls were started by a web client ([UserAgent.Dial]).
	Outgoing Direction = iota + 1
	// Incoming calls came from SIP ([UserAgent.OnIncomingCall]).
	Incoming
)

// EventKind names what happened on a call.
type EventKind int

const (
	// EventProgress: a 180/183 arrived for our INVITE (Code, Reason, SDP
	// for early media). When Reliable, answer it with [Call.Prack].
	EventProgress EventKind = iota + 1
	// EventAnswered: a 2xx arrived for our INVITE (Code, SDP). Confirm it
	// with [Call.Ack] when the web caller sends complete.
	EventAnswered
	// EventConfirmed: the ACK for our 2xx arrived (SDP when it carried
	// one): for an incoming call's answer, or for a re-INVITE we accepted;
	// or our 200 to an UPDATE's offer went (no ACK follows one).
	EventConfirmed
	// EventPrack: the peer acknowledged our reliable provisional (RSeq, SDP).
	EventPrack
	// EventReoffer: the peer sent a re-INVITE or an UPDATE with a new
	// offer (SDP). Answer with Event.Reoffer.Accept or Reject; unanswered
	// it fails after Timer B. An offer that repeats the peer's SDP
	// unchanged (a session refresh) is answered without this event.
	EventReoffer
	// EventInfo: an INFO arrived (InfoPackage, ContentType, Body; Digit and
	// Duration for application/dtmf-relay). Answered 200 just before it
	// is queued here, but for one of a declared package (InfoRequest);
	// one of an Info Package we never announced was refused with 469
	// instead. A NOTIFY, MESSAGE or UPDATE of a declared action
	// (SetReceives) comes as one too, with its InfoRequest to answer
	// (InfoRequest.Method says which).
	EventInfo
	// EventRefer: the peer asks us to transfer the call (ReferTo). Answer
	// with Event.Refer.Accept or Reject; unanswered it is refused (480).
	EventRefer
	// EventTransferProgress: a NOTIFY of the REFER we sent ([Call.Transfer])
	// with the status line of the new call (Code, Reason); Final on the
	// last one (Subscription-State: terminated).
	EventTransferProgress
	// EventRemoteSDP: the peer's description changed without a new offer
	// from the web side (SDP): the answer in the ACK of a re-INVITE
	// without SDP, which the gateway answered with our current offer.
	EventRemoteSDP
	// EventEnded is the last event: the call is over (End, Code, Reason).
	// The Events channel is closed after it.
	EventEnded
)

var eventNames = [...]string{"", "progress", "answered", "confirmed", "prack", "reoffer", "info", "refer",
	"transfer-progress", "remote-sdp", "ended"}

func (k EventKind) String() string {
	if int(k) < len(eventNames) {
		return eventNames[k]
	}
	return "EventKind(" + strconv.Itoa(int(k)) + ")"
}

// EndCause says why a call ended.
type EndCause int

const (
	// EndRejected: a 3xx-6xx final response (ours or the peer's; Code).
	EndRejected EndCause = iota + 1
	// EndCancelled: CANCEL before the answer (by either side). Code 487.
	EndCancelled
	// EndRemoteBye: the peer sent BYE.
	EndRemoteBye
	// EndLocalBye: we sent BYE ([Call.Hangup]).
	EndLocalBye
	// EndTimeout: no answer, no ACK or no PRACK in time. Code 408.
	EndTimeout
	// EndError: a transport or protocol failure. Code 500 or 503.
	EndError
	// EndShutdown: the gateway closed.
	EndShutdown
	// EndSessionExpired: the session timer ran out (RFC 4028): the peer
	// did not refresh in time (Code 408), or our refresh failed (Code
	// its failure: 481, 408...). We sent BYE; Reason says which.
	EndSessionExpired
	// EndReleased: [Call.Release] handed the dialog over to another
	// node; nothing went on the wire.
	EndReleased
)

var endNames = [...]string{"", "rejected", "cancelled", "remote-bye", "local-bye", "timeout", "error", "shutdown", "session-expired", "released"}

func (e EndCause) String() string {
	if int(e) < len(endNames) {
		return endNames[e]
	}
	return "EndCause(" + strconv.Itoa(int(e)) + ")"
}

// Event is one SIP-side happening on a call, in the order it happened.
type Event struct {
	Kind     EventKind
	Code     int
	Reason   string
	SDP      []byte
	Reliable bool   // EventProgress: sent with 100rel, needs Prack
	RSeq     uint32 // EventProgress, EventPrack
	// ToTag is the To-tag of the response of an EventProgress or
	// EventAnswered: the fork that sent it, when a proxy forked our
	// INVITE (every fork shares our Call-ID, From-tag and Via branch).
	ToTag string
	// EventInfo
	InfoPackage string // lower case; "" for a legacy INFO
	ContentType string // lower case, without parameters
	Body        []byte
	Digit       string
	Duration    int // milliseconds
	// InfoRequest: an INFO of a declared Info Package (SetInfoPackages),
	// not answered yet: answer it with InfoRequest.Respond.
	InfoRequest *InfoRequest
	// EventRefer
	ReferTo string
	Refer   *Refer
	// ReferReplaces: the Replaces of the Refer-To URI of an attended
	// transfer (RFC 5589 section 7), whose headers ReferTo no longer has.
	ReferReplaces *Replaces
	// EventTransferProgress
	Final bool
	// EventReoffer
	Reoffer *Reoffer
	// EventEnded
	End EndCause
	// Headers are the extension headers the call's to_web rules made of
	// the SIP message behind the event (Header.Name is the extension
	// header's): the response of an EventProgress or EventAnswered, the
	// request of an EventReoffer, EventInfo, EventRefer,
	// EventTransferProgress (NOTIFY), or an EventEnded by the peer's BYE.
	Headers []Header
}

// ResponseError is a final SIP failure response to one of our requests.
type ResponseError struct {
	Code   int
	Reason string
	// Headers are the extension headers the call's to_web rules made of
	// the response (an in-dialog request's: re-INVITE, INFO, REFER).
	Headers []Header
}

func (e *ResponseError) Error() string { return fmt.Sprintf("sipgw: %d %s", e.Code, e.Reason) }

// ResponseCode returns the SIP code carried by err: a *ResponseError's
// code, 408 for timeouts, 400 for invalid input, 503 when closed or
// overloaded, else 500.
func ResponseCode(err error) int {
	var re *ResponseError
	switch {
	case err == nil:
		return 200
	case errors.As(err, &re):
		return re.Code
	case errors.Is(err, sip.ErrTransactionTimeout), errors.Is(err, context.DeadlineExceeded):
		return 408
	case errors.Is(err, ErrInvalidInput):
		return 400
	case errors.Is(err, ErrClosed), errors.Is(err, ErrOverloaded), errors.Is(err, ErrTrunkDown):
		return 503
	case errors.Is(err, ErrCallState):
		return 405
	}
	return 500
}

// ErrCallState: the operation does not fit the call's state (Prack with
// nothing to acknowledge, Answer twice, Ack on an incoming call...).
var ErrCallState = errors.New("sipgw: not allowed in this call state")

// ErrNotRecorded is the *ResponseError of an in-dialog request refused
// before it left because the call's state with its CSeq could not be
// recorded (Call.SetWriteAhead).
var ErrNotRecorded = &ResponseError{Code: 503, Reason: "the call's state could not be recorded"}

// ErrGlare is the *ResponseError of a re-INVITE that crossed another one.
var ErrGlare = &ResponseError{Code: 491, Reason: "Request Pending"}

type callState int

const (
	stateInviting callState = iota // outgoing, no final yet
	stateRinging                   // incoming, no final yet
	stateAnswered                  // 2xx sent or received, no ACK yet
	stateConfirmed
	stateEnded
)

// Call is one INVITE dialog, either direction, paired with one web call
// subsession. Its methods are safe for concurrent use. Read Events until
// it is closed: the call's owner goroutine waits while the queue is full.
type Call struct {
	g        *UserAgent
	id       string
	dir      Direction
	identity string
	local    sip.Uri
	// byAOR: a balancer sent the INVITE to the identity's AOR, not to a
	// Contact of this node (balancer.go): a 480 then says when to retry,
	// unless the call rang (a provisional went out: no answer, not no
	// session). rang is guarded by mu.
	byAOR    bool
	rang     bool
	remote   sip.Uri
	display  string
	offer    []byte
	replaces string     // incoming: the INVITE's Replaces header (replaces.go)
	keys     DialogKeys // set before the call is handed out

	events chan Event
	in     chan func() // work for the owner goroutine
	done   chan struct{}
	slot   chan struct{} // serialises our in-dialog requests (CSeq order)
	// life is cancelled when the call ends: it bounds what the call's
	// own goroutines (a session refresh) wait for.
	life       context.Context
	lifeCancel context.CancelFunc
	st         sessionTimer // owner goroutine only (timer.go)
	stTimer    *time.Timer  // owner goroutine only; nil when not armed

	// outgoing
	uac          *sipgo.DialogClientSession
	inviteCtx    context.Context
	inviteCancel context.CancelFunc
	prackCh      chan prackCmd
	autoPrack    bool
	password     DigestAuth

	// incoming
	uas        *sipgo.DialogServerSession
	inviteDone chan struct{} // closed when the INVITE needs nothing more
	// inviteTx is an incoming call's INVITE server transaction: a call
	// released while ringing ends it before its end is told (finish).
	inviteTx   sip.ServerTransaction
	peer100rel bool

	mu          sync.Mutex // guards the fields below; never held over I/O
	state       callState
	acked       bool
	pracked     bool
	localBye    bool
	remoteBye   bool
	finalCode   int
	reinviteOut bool
	reinviteIn  bool
	ackOwed     bool                     // our re-INVITE (the last CSeq) left, and its ACK has not (DialogState.AckOwed)
	localSDP    []byte                   // the SDP we sent last (sdpstate.go)
	remoteSDP   []byte                   // the SDP the peer sent last
	lateOffer   bool                     // our 200 to a re-INVITE without SDP offered; its ACK answers
	quietAck    uint32                   // CSeq of a re-INVITE answered without the owner (update.go)
	peerInfo    map[string]bool          // Info Packages the peer takes (info.go)
	trickle     bool                     // incoming: our responses announce trickle-ice
	rseq        uint32                   // outgoing: RSeq awaiting our PRACK; incoming: last sent
	pracks      map[uint32]chan struct{} // incoming: reliable provisionals awaiting PRACK; made by the first
	sdpPrack    chan struct{}            // incoming: closed by the PRACK of the last reliable provisional with SDP
	lastRSeq    map[string]uint32        // by To-tag: each fork's early dialog counts its own (RFC 3262 section 4); owner goroutine only
	// hops are the next hops an outgoing INVITE may still fail over to;
	// progressed: a provisional beyond 100 came, so the request reached
	// the callee and fails over no more (owner goroutine only).
	hops       []nextHop
	progressed bool
	// notAcceptable is DialOptions.NotAcceptable (owner goroutine only).
	notAcceptable func(ctx context.Context, code int) []byte
	headers       []Header // incoming: the to_web extension headers of the INVITE
	byeHeaders    []Header // the to_web extension headers of the peer's BYE (mu)
	// xform is the call's transformations, under the configuration it
	// started with; set before the call is handed out.
	xform *routing.Transform
	// early lists the early dialogs of an outgoing call (one per fork
	// that sent a reliable provisional) until the answer; c.mu.
	early    []string
	earlyDlg *earlyDialog // the last PRACKed reliable provisional's early dialog, with SDP (UpdateEarly); c.mu
	// localCSeq is the CSeq of the outgoing call's last request in its
	// dialog: sipgw builds them (uacDialog), not sipgo's dialog; c.mu.
	localCSeq uint32
	endForced *Event // owner goroutine only

	// The dialog's replication (dialogstate.go, adopt.go): changedCh
	// signals DialogChanged; c.mu guards the rest.
	changedCh    chan struct{}
	app          []byte
	stSnap       sessionTimer // a copy of st for DialogState
	remoteCSeq   uint32       // the highest CSeq of the peer's requests
	localContact sip.Uri      // our Contact in the dialog
	invite       *sentInvite  // outgoing: the INVITE under way (earlystate.go)
	target       *sip.Uri     // the remote target of the last target refresh; nil: none yet
	ahead        func(DialogState) error
	// adoptedEnd ends an adopted call's dialog (the peer's BYE): sipgo
	// has no dialog session of its own for it (adopt.go).
	adoptedEnd context.CancelFunc

	respMu    sync.Mutex // serialises our responses to the INVITE (sipgo stores the last one)
	retrans   sync.WaitGroup
	finalCh   chan struct{} // closed once the INVITE's final response is decided
	finalOnce sync.Once
	doneOnce  sync.Once
}

// DigestAuth is a username and password for a 401/407 on an INVITE.
type DigestAuth struct{ Username, Password string }

type prackCmd struct {
	sdp []byte
	res chan prackResult
}

type prackResult struct {
	answer []byte
	err    error
}

func (g *UserAgent) newCall(dir Direction) *Call {
	c := &Call{
		g:       g,
		id:      "sipgw-" + strconv.FormatUint(g.callSeq.Add(1), 10),
		dir:     dir,
		events:  make(chan Event, g.cfg.EventQueue),
		in:      make(chan func(), 8),
		done:    make(chan struct{}),
		slot:    make(chan struct{}, 1),
		finalCh: make(chan struct{}),

		changedCh: make(chan struct{}, 1),
	}
	c.life, c.lifeCancel = context.WithCancel(context.Background())
	return c
}

// DialogKeys name a call's SIP dialog, for whatever keys its state by
// them (a media relay: docs/media.md).
type DialogKeys struct {
	CallID string
	// LocalTag is our tag: the From-tag of our INVITE, or the To-tag of
	// our responses to the peer's.
	LocalTag string
	// RemoteTag is the peer's From-tag of an incoming call; empty for an
	// outgoing one, whose forks each answer with a To-tag of their own
	// (Event.ToTag).
	RemoteTag string
	// ViaBranch is the branch of the peer's INVITE (incoming only).
	ViaBranch string
}

// Keys returns the keys of the call's dialog.
func (c *Call) Keys() DialogKeys { return c.keys }

// ID is unique among this gateway's calls; use it in logs.
func (c *Call) ID() string { return c.id }

// Direction says who started the call.
func (c *Call) Direction() Direction { return c.dir }

// Identity is the web identity of our side.
func (c *Call) Identity() string { return c.identity }

// Remote is the peer's address (From of an incoming call, the target of
// an outgoing one), as a SIP URI string.
func (c *Call) Remote() string { return c.remote.String() }

// RemoteDisplayName is the display name of an incoming call's From.
func (c *Call) RemoteDisplayName() string { return c.display }

// Offer is the SDP of an incoming INVITE (nil for a late offer).
func (c *Call) Offer() []byte { return c.offer }

// Headers returns the extension headers the to_web rules made of an
// incoming call's INVITE.
func (c *Call) Headers() []Header { return c.headers }

// Events delivers the call's events in order; closed after EventEnded.
func (c *Call) Events() <-chan Event { return c.events }

// Done is closed when the call is over and forgotten.
func (c *Call) Done() <-chan struct{} { return c.done }

// emit runs on the owner goroutine only.
func (c *Call) emit(ev Event) {
	select {
	case c.events <- ev:
	case <-c.g.ctx.Done():
	}
}

// deliverEvent has the owner goroutine run answer (nil: none), the
// peer's request's response, and queue ev for the reader of Events, and
// waits until the answer went; false when the call ended first: nothing
// was answered, and ev is not queued. Answered there, the request is
// never answered 200 and lost: whatever ends the call after the answer
// (the peer's BYE right after an INFO's 200, as SIPp sends it) reaches
// the owner after the event. The answer goes before the event, so that
// nothing the event leads to (the web user's hang-up: our BYE) overtakes
// it.
func (c *Call) deliverEvent(ev Event, answer func()) bool {
	answered := make(chan struct{})
	if !c.deliver(func() {
		if answer != nil {
			answer()
		}
		close(answered)
		c.emit(ev)
	}) {
		return false
	}
	select {
	case <-answered:
		return true
	case <-c.done:
		// The owner ran what it ran before it closed done.
		select {
		case <-answered:
			return true
		default:
			return false
		}
	}
}

// deliver hands work to the owner goroutine.
func (c *Call) deliver(f func()) bool {
	select {
	case c.in <- f:
		return true
	case <-c.done:
		return false
	}
}

func (c *Call) acquire(ctx context.Context) error {
	select {
	case c.slot <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-c.done:
		return ErrCallState
	}
}

func (c *Call) release() { <-c.slot }

// finish runs on the owner goroutine: last event, then cleanup.
func (c *Call) finish(ev Event) {
	c.mu.Lock()
	c.state = stateEnded
	ringingReleased := ev.End == EndReleased && c.dir == Incoming && c.finalCode == releasedFinal
	c.mu.Unlock()
	ev.Kind = EventEnded
	if ringingReleased && c.inviteTx != nil {
		// Released while ringing (Release): no final response leaves
		// from here, the adopter answers. The transaction ended only
		// once the INVITE's handler returned, after the end was told:
		// a CANCEL in between was answered 200 here (its 487 never
		// came) instead of 481 (sipgw TestReleaseRingingEndsSilently,
		// once in CI).
		c.inviteTx.Terminate()
	}
	if ev.Reason == "" && ev.Code != 0 {
		ev.Reason = statusText(ev.Code)
	}
	if c.g.log.Enabled(context.Background(), slog.LevelInfo) {
		c.g.rlog.Info("call ended", "sipgw: call ended", "call", c.id, "end", ev.End.String(), "code", ev.Code)
	}
	c.emit(ev)
	close(c.events)
	c.stopTimer()
	c.lifeCancel()
	if c.inviteCancel != nil {
		c.inviteCancel()
	}
	c.closeFinal()
	c.respMu.Lock() // no Progress may start a retransmission after this
	c.respMu.Unlock()
	c.retrans.Wait()
	c.closeInviteDone()
	if c.uac != nil {
		_ = c.uac.Close()
	}
	if c.uas != nil {
		_ = c.uas.Close()
	}
	c.g.removeCall(c)
	close(c.done)
}

// dialogSession is what both dialog roles share.
type dialogSession interface {
	TransactionRequest(ctx context.Context, req *sip.Request) (sip.ClientTransaction, error)
	WriteRequest(req *sip.Request) error
	Context() context.Context
}

// remoteTarget is the peer's Contact, where in-dialog requests go: the
// last target refresh's (noteTarget), else the dialog-creating message's.
func (c *Call) remoteTarget() sip.Uri {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.remoteTargetLocked()
}

// remoteTargetLocked is remoteTarget with c.mu held.
func (c *Call) remoteTargetLocked() sip.Uri {
	if c.target != nil {
		return *c.target.Clone()
	}
	if c.uac != nil {
		if ct := c.uac.InviteResponse.Contact(); ct != nil {
			return *ct.Address.Clone()
		}
		return *c.uac.InviteRequest.Recipient.Clone()
	}
	if ct := c.uas.InviteRequest.Contact(); ct != nil {
		return *ct.Address.Clone()
	}
	return *c.remote.Clone()
}

// request sends an in-dialog request, with the call's header rules for
// its method (ext: the extension headers of the web frame behind it), and
// waits for its final response. Calls are serialised by the caller
// holding the slot.
func (c *Call) request(ctx context.Context, req *sip.Request, ext []Header) (*sip.Response, error) {
	return c.requestIn(ctx, nil, req, ext)
}

// earlyDialog is an early dialog of an outgoing call, as the owner saw it
// when it PRACKed the reliable provisional res that made it: what
// UpdateEarly builds its request of, on another goroutine, while the
// owner waits in sipgo's WaitAnswer for the INVITE's next response.
type earlyDialog struct {
	inv *sip.Request
	res *sip.Response
	uac *sipgo.DialogClientSession // for its CSeq (atomic)
}

// uacDialog returns a sipgo dialog of the outgoing call made for one
// request: in the dialog of res (the 2xx, or an early dialog's
// provisional), from inv, with the call's next CSeq (ack: the last, which
// an ACK repeats). sipgo's own dialog (c.uac) keeps the INVITE's last
// response in a field that its WaitAnswer writes as responses come and
// that its request building reads, unguarded: an early UPDATE built on it
// as the 200 came raced (issue 14). uacCSeq is c.uac's own count (the
// INVITE's CSeq, moved on by sipgo's authentication retries).
func (c *Call) uacDialog(inv *sip.Request, res *sip.Response, uacCSeq uint32, ack bool) *sipgo.DialogClientSession {
	c.mu.Lock()
	last := max(c.localCSeq, uacCSeq)
	if !ack {
		c.localCSeq = last + 1
	}
	c.mu.Unlock()
	seed := inv.Clone()
	seed.CSeq().SeqNo = last
	d := &sipgo.DialogClientSession{Dialog: sipgo.Dialog{InviteRequest: seed, InviteResponse: res}, UA: c.g.dua}
	d.Init()
	return d
}

// requestIn is request in the early dialog early; nil: in the call's
// dialog.
func (c *Call) requestIn(ctx context.Context, early *earlyDialog, req *sip.Request, ext []Header) (*sip.Response, error) {
	if m, ok := dialogMethod(req.Method); ok {
		if err := transformOut(c.xform, m, false, req, ext); err != nil {
			if req.Method != sip.BYE {
				return nil, err
			}
			// A hang-up goes whatever its frame brought: the rules that
			// read the frame set nothing then.
			c.g.rlog.Info("transform", "sipgw: BYE sent without the header rules that read its frame", "call", c.id, "err", err)
			_ = transformOut(c.xform, m, false, req, nil)
		}
	}
	c.g.track()
	defer c.g.untrack()
	if err := c.writeAhead(); err != nil {
		// Sent, the request's CSeq would be one the record lacks: an
		// adopter after this node's death would send it again, and the
		// peer refuse it (RFC 3261 section 12.2.2: 500), or take a
		// re-INVITE for a retransmission. Refused here, the web side
		// hears 503 and may try again; nothing is lost but the request.
		// A BYE goes whatever the record: the hang-up is the user's
		// last word, and it ends the dialog, so no adopter sends the
		// CSeq again in it (a refresh after it meets 481).
		if req.Method != sip.BYE {
			return nil, fmt.Errorf("%w: %w", ErrNotRecorded, err)
		}
		c.g.rlog.Info("write-ahead", "sipgw: BYE sent before its CSeq was recorded", "call", c.id, "err", err)
	}
	var d dialogSession = c.uas
	switch {
	case early != nil:
		d = c.uacDialog(early.inv, early.res, early.uac.CSEQ(), false)
	case c.uac != nil:
		d = c.uacDialog(c.uac.InviteRequest, c.uac.InviteResponse, c.uac.CSEQ(), false)
	}
	tx, err := d.TransactionRequest(ctx, req)
	c.changed() // the request took the next CSeq, whether it left or not
	if err != nil {
		return nil, err
	}
	defer tx.Terminate()
	for {
		select {
		case res := <-tx.Responses():
			if res.IsProvisional() {
				continue
			}
			return res, nil
		case <-tx.Done():
			if err := tx.Err(); err != nil {
				return nil, err
			}
			return nil, sip.ErrTransactionTerminated
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Hangup ends the call the way its state requires: CANCEL an unanswered
// outgoing call (the 487 is swallowed), reject an unanswered incoming one
// with 603, BYE an answered one (sending the ACK first if the web side
// never confirmed). It returns when the call is over or ctx is done. ext
// are the extension headers of the web frame that ended the call, for
// the header rules of the BYE.
func (c *Call) Hangup(ctx context.Context, ext ...Header) error { return c.hangup(ctx, 0, "", ext) }

// HangupWith ends the call as Hangup does, for a cause the far end should
// hear (RFC 3326): a ringing incoming call is refused with code and
// reason, an answered one gets a BYE with `Reason: SIP;cause=code;text=
// "reason"`. An unanswered outgoing one is cancelled as by Hangup.
func (c *Call) HangupWith(ctx context.Context, code int, reason string) error {
	if code < 300 || code > 699 {
		return invalid("hang-up cause %d", code)
	}
	if hasCtl(reason) || strings.ContainsAny(reason, `"\`) || len(reason) > 128 {
		return invalid("reason")
	}
	return c.hangup(ctx, code, reason, nil)
}

// hangup is Hangup, with HangupWith's cause when code is set.
func (c *Call) hangup(ctx context.Context, code int, reason string, ext []Header) error {
	c.mu.Lock()
	st := c.state
	c.mu.Unlock()
	switch {
	case st == stateEnded:
	case st == stateInviting:
		c.mu.Lock()
		if c.state == stateInviting {
			c.inviteCancel()
		}
		c.mu.Unlock()
	case st == stateRinging:
		rc, rr := 603, "Decline"
		if code != 0 {
			rc, rr = code, reason
		}
		if err := c.Reject(ctx, rc, rr); err != nil && !errors.Is(err, ErrCallState) {
			return err
		}
	default:
		var hs []sip.Header
		if code != 0 {
			hs = append(hs, sip.NewHeader("Reason", "SIP;cause="+strconv.Itoa(code)+`;text="`+reason+`"`))
		}
		err := c.bye(ctx, ext, hs...)
		if err != nil {
			c.g.rlog.Info("bye", "sipgw: BYE failed", "call", c.id, "err", err)
		}
		end := 200
		if err != nil {
			end = ResponseCode(err)
		}
		c.deliver(func() {
			if c.endForced == nil {
				c.endForced = &Event{End: EndLocalBye, Code: end}
			}
		})
	}
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// bye sends BYE, with the headers hs and the header rules reading ext,
// unless one went already.
func (c *Call) bye(ctx context.Context, ext []Header, hs ...sip.Header) error {
	if c.dir == Outgoing {
		c.mu.Lock()
		acked := c.acked
		c.mu.Unlock()
		if !acked {
			if err := c.Ack(ctx, nil); err != nil && !errors.Is(err, ErrCallState) {
				return err
			}
		}
	}
	if err := c.acquire(ctx); err != nil {
		return err
	}
	defer c.release()
	c.mu.Lock()
	if c.localBye || c.remoteBye || c.state == stateEnded {
		// Another hang-up's BYE went while this one waited for the
		// transaction slot (Shutdown hangs up every call as their
		// sessions end them), or the far end's came: one BYE per dialog.
		c.mu.Unlock()
		return nil
	}
	c.localBye = true
	c.mu.Unlock()
	req := sip.NewRequest(sip.BYE, c.remoteTarget())
	for _, h := range hs {
		req.AppendHeader(h)
	}
	res, err := c.request(ctx, req, ext)
	if err == nil && !res.IsSuccess() {
		err = &ResponseError{Code: res.StatusCode, Reason: res.Reason}
	}
	return err
}

// Reoffer sends a re-INVITE with sdp (hold, resume, new media) and
// returns the answer SDP; it sends the ACK itself. A re-INVITE that
// crosses another one fails with ErrGlare (491), whichever side lost.
// ext are the extension headers of the web frame behind it, for the
// header rules of the re-INVITE; headers are those the to_web rules made
// of its 2xx (of a failure: in the *ResponseError).
func (c *Call) Reoffer(ctx context.Context, sdp []byte, ext ...Header) (answer []byte, headers []Header, err error) {
	c.mu.Lock()
	if c.state != stateConfirmed {
		c.mu.Unlock()
		return nil, nil, ErrCallState
	}
	if c.reinviteIn || c.reinviteOut {
		c.mu.Unlock()
		return nil, nil, ErrGlare
	}
	c.reinviteOut = true
	c.mu.Unlock()
	// Our INVITE is outstanding only until its final response: from then
	// on a re-INVITE from the far end is no glare (RFC 3261 section
	// 14.2), even before our ACK has gone out.
	var once sync.Once
	done := func() {
		once.Do(func() {
			c.mu.Lock()
			c.reinviteOut = false
			c.mu.Unlock()
		})
	}
	defer done()
	res, err := c.sendReinvite(ctx, sdp, c.g.cfg.SessionTimers.uacHeaders(0, 0, false), ext, done)
	if err != nil {
		return nil, nil, err
	}
	if !res.IsSuccess() {
		return nil, nil, c.responseError(routing.ReInvite, res)
	}
	// A re-INVITE refreshes the session too (RFC 4028 §7.4).
	if st := c.g.cfg.SessionTimers.uacTimer(res); st.interval > 0 {
		c.deliver(func() { c.armTimer(st) })
	}
	return res.Body(), webHeaders(c.xform, routing.ReInvite, true, res), nil
}

// reinvite sends a re-INVITE with sdp and the headers hs unless one is
// already outstanding either way (ErrGlare), and returns its final
// response, ACKed when a 2xx.
func (c *Call) reinvite(ctx context.Context, sdp []byte, hs []sip.Header) (*sip.Response, error) {
	c.mu.Lock()
	if c.reinviteIn || c.reinviteOut {
		c.mu.Unlock()
		return nil, ErrGlare
	}
	c.reinviteOut = true
	c.mu.Unlock()
	done := func() {
		c.mu.Lock()
		c.reinviteOut = false
		c.mu.Unlock()
	}
	defer done()
	return c.sendReinvite(ctx, sdp, hs, nil, done)
}

// sendReinvite sends the re-INVITE; done is called at its final response.
func (c *Call) sendReinvite(ctx context.Context, sdp []byte, hs []sip.Header, ext []Header, done func()) (*sip.Response, error) {
	if err := c.acquire(ctx); err != nil {
		return nil, err
	}
	defer c.release()
	req := sip.NewRequest(sip.INVITE, c.remoteTarget())
	setSDP(req, sdp)
	trickle := c.trickles()
	if trickle {
		advertiseTrickle(req)
	}
	c.g.setSupported(req, true, trickle)
	for _, h := range hs {
		req.AppendHeader(h)
	}
	// Set before the write-ahead (in request) reads the state: the
	// record then tells an adopter to ACK a 2xx this node may not.
	c.setAckOwed(true)
	defer c.setAckOwed(false)
	res, err := c.request(ctx, req, ext)
	done()
	if err != nil {
		return nil, err
	}
	c.notePeer(res)
	if !res.IsSuccess() {
		return res, nil
	}
	c.noteTarget(res)
	c.noteLocal(sdp)
	c.noteRemote(res.Body())
	if err := c.ackLast(); err != nil {
		return nil, err
	}
	return res, nil
}

// setAckOwed notes whether the ACK of our re-INVITE is owed; its end is
// a change of the record (DialogChanged), lest a record written between
// the 2xx and the ACK keep it for an adopter long after.
func (c *Call) setAckOwed(on bool) {
	c.mu.Lock()
	c.ackOwed = on
	c.mu.Unlock()
	if !on {
		c.changed()
	}
}

// ackLast sends the ACK of a 2xx to our last re-INVITE (RFC 3261 section
// 13.2.2.4: its CSeq, a new transaction) in the call's dialog.
func (c *Call) ackLast() error {
	ack := sip.NewRequest(sip.ACK, c.remoteTarget())
	var d dialogSession = c.uas
	if c.uac != nil {
		d = c.uacDialog(c.uac.InviteRequest, c.uac.InviteResponse, c.uac.CSEQ(), true)
	}
	return d.WriteRequest(ack)
}

// SendDTMF sends one digit (0-9, *, #, A-D) as INFO application/dtmf-relay;
// ext are the extension headers of the web frame behind it, for the
// header rules of the INFO ({ext:NAME}).
func (c *Call) SendDTMF(ctx context.Context, digit string, duration time.Duration, ext ...Header) error {
	if len(digit) != 1 || !strings.Contains("0123456789*#ABCDabcd", digit) {
		return invalid("dtmf digit %q", digit)
	}
	if duration <= 0 {
		duration = 160 * time.Millisecond
	}
	body := fmt.Sprintf("Signal=%s\r\nDuration=%d\r\n", strings.ToUpper(digit), duration.Milliseconds())
	return c.SendInfo(ctx, Info{ContentType: "application/dtmf-relay", Body: []byte(body), Ext: ext})
}

// Transfer sends a REFER for a blind transfer to target (validated like
// a Dial target) and returns when the peer accepted it (202). The
// peer's NOTIFYs of the new call follow as EventTransferProgress. ext
// are the extension headers of the web frame behind it (header rules);
// headers those the to_web rules made of the 202 (of a failure: in the
// *ResponseError).
func (c *Call) Transfer(ctx context.Context, target string, ext ...Header) (headers []Header, err error) {
	u, err := c.g.ParseTarget(target)
	if err != nil {
		return nil, err
	}
	req := sip.NewRequest(sip.REFER, sip.Uri{})
	req.AppendHeader(sip.NewHeader("Refer-To", "<"+u.String()+">"))
	req.AppendHeader(sip.NewHeader("Referred-By", "<"+c.local.String()+">"))
	return c.simple(ctx, req, ext)
}

// simple sends a non-INVITE in-dialog request to the remote target and
// returns the extension headers the to_web rules made of its 2xx.
func (c *Call) simple(ctx context.Context, req *sip.Request, ext []Header) ([]Header, error) {
	c.mu.Lock()
	st, early := c.state, c.earlyDlg
	inEarly := req.Method == sip.INFO && c.dir == Outgoing && st == stateInviting && early != nil
	c.mu.Unlock()
	if st != stateConfirmed && !inEarly {
		return nil, ErrCallState
	}
	if err := c.acquire(ctx); err != nil {
		return nil, err
	}
	defer c.release()
	var res *sip.Response
	var err error
	if inEarly {
		// An INFO before the answer (DTMF to an IVR playing early
		// media) goes in the early dialog of the PRACKed reliable
		// provisional, as an early UPDATE does (RFC 6086 allows INFO in
		// early dialogs).
		res, err = c.requestEarly(ctx, early, req, ext)
	} else {
		req.Recipient = c.remoteTarget()
		res, err = c.request(ctx, req, ext)
	}
	if err != nil {
		return nil, err
	}
	m, _ := dialogMethod(req.Method)
	if !res.IsSuccess() {
		return nil, c.responseError(m, res)
	}
	return webHeaders(c.xform, m, true, res), nil
}

// responseError is the failure res to the call's request of method m,
// with the extension headers the to_web rules made of it.
func (c *Call) responseError(m routing.Method, res *sip.Response) *ResponseError {
	return &ResponseError{Code: res.StatusCode, Reason: res.Reason, Headers: webHeaders(c.xform, m, true, res)}
}

func setSDP(m interface {
	SetBody([]byte)
	AppendHeader(sip.Header)
}, sdp []byte) {
	if len(sdp) == 0 {
		return
	}
	m.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	m.SetBody(sdp)
}

// Reoffer is a re-INVITE or an UPDATE from the peer with an offer,
// waiting for the web side's answer.
type Reoffer struct {
	c        *Call
	req      *sip.Request
	tx       sip.ServerTransaction
	once     sync.Once
	done     chan struct{}
	accepted bool         // set before done is closed
	timer    sessionTimer // what the accepted offer's 200 negotiated
}

// Accept answers the re-INVITE with 200 and sdp.
func (r *Reoffer) Accept(sdp []byte) error {
	if len(sdp) == 0 {
		return invalid("answer without SDP")
	}
	res := sip.NewResponseFromRequest(r.req, 200, "OK", nil)
	setSDP(res, sdp)
	st := r.c.timerAnswer(r.req, res)
	if m, ok := dialogMethod(r.req.Method); ok {
		r.c.transformResponse(m, res)
	}
	ct := r.c.g.dua.ContactHDR
	res.AppendHeader(&ct)
	if err := r.finish(res, func() { r.accepted, r.timer = true, st }); err != nil {
		return err
	}
	r.c.noteTarget(r.req)
	r.c.noteRemote(r.req.Body())
	r.c.noteLocal(sdp)
	return nil
}

// settled runs on the goroutine of the request once it is answered:
// an accepted offer restarts the session timer (never from Accept, whose
// caller may hold locks the owner goroutine waits for).
func (r *Reoffer) settled() {
	if !r.accepted {
		return
	}
	r.c.mu.Lock()
	early := r.c.state == stateInviting
	r.c.mu.Unlock()
	if !early {
		// Before the answer there is no session to refresh: the 200's
		// own timer starts then.
		r.c.deliver(func() { r.c.armTimer(r.timer) })
	}
	if r.req.Method == sip.UPDATE {
		// No ACK follows a 200 to an UPDATE: the answer is complete.
		r.c.deliver(func() { r.c.emit(Event{Kind: EventConfirmed}) })
	}
}

// Reject answers the re-INVITE with a failure code (488, 491, ...).
func (r *Reoffer) Reject(code int, reason string) error {
	if code < 300 || code > 699 {
		return invalid("code %d", code)
	}
	if reason == "" {
		reason = statusText(code)
	}
	return r.finish(sip.NewResponseFromRequest(r.req, code, reason, nil), nil)
}

// finish sends res, the only answer; accepted, when not nil, first
// records what an accepted answer settles.
func (r *Reoffer) finish(res *sip.Response, accepted func()) error {
	err := ErrCallState
	r.once.Do(func() {
		if accepted != nil {
			accepted()
		}
		err = r.tx.Respond(res)
		close(r.done)
	})
	return err
}

// handleReinvite runs on the sipgo goroutine of a re-INVITE; it returns
// once the re-INVITE is answered.
func (c *Call) handleReinvite(req *sip.Request, tx sip.ServerTransaction) {
	tx = c.ruled(req, tx)
	if !c.notePeerCSeq(req) {
		c.g.respond(tx, req, 500, "Server Internal Error")
		return
	}
	c.mu.Lock()
	switch {
	case c.state != stateConfirmed && c.state != stateAnswered:
		c.mu.Unlock()
		c.g.respond(tx, req, 491, "Request Pending")
		return
	case c.reinviteOut: // RFC 3261 14.2: glare
		c.mu.Unlock()
		c.g.respond(tx, req, 491, "Request Pending")
		return
	case c.reinviteIn:
		c.mu.Unlock()
		res := sip.NewResponseFromRequest(req, 500, "Server Internal Error", nil)
		res.AppendHeader(sip.NewHeader("Retry-After", "1"))
		_ = tx.Respond(res)
		return
	}
	c.reinviteIn = true
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.reinviteIn = false
		c.mu.Unlock()
	}()
	if c.g.refuseShortTimer(req, tx) { // RFC 4028 §9: 422
		return
	}
	if c.uas != nil {
		if err := c.uas.ReadRequest(req, tx); err != nil {
			c.g.respond(tx, req, 500, "Server Internal Error")
			return
		}
	}
	c.relayOffer(req, tx)
}

// relayOffer hands the offer of a re-INVITE or UPDATE to the web side as
// EventReoffer and waits for its answer.
func (c *Call) relayOffer(req *sip.Request, tx sip.ServerTransaction) {
	c.notePeer(req)
	if len(req.Body()) == 0 {
		// Not the web side's business: nothing changes unless the
		// answer in the ACK does (handleAck).
		if !c.answerLateOffer(req, tx) {
			c.g.respond(tx, req, 488, "Not Acceptable Here")
		}
		return
	}
	if c.answerUnchanged(req, tx) { // a refresh: update.go
		return
	}
	ro := &Reoffer{c: c, req: req, tx: tx, done: make(chan struct{})}
	if !c.deliver(func() { c.emit(Event{Kind: EventReoffer, SDP: req.Body(), Reoffer: ro, Headers: c.peerHeaders(req)}) }) {
		_ = ro.Reject(481, "Call/Transaction Does Not Exist")
		return
	}
	t := time.NewTimer(sip.Timer_B)
	defer t.Stop()
	select {
	case <-ro.done:
		ro.settled()
	case <-tx.Done():
	case <-c.done:
		_ = ro.Reject(481, "Call/Transaction Does Not Exist")
	case <-t.C:
		_ = ro.Reject(500, "Server Internal Error")
	}
}

// handleAck: ACK to a 2xx (ours for an incoming call, or for a re-INVITE).
func (c *Call) handleAck(req *sip.Request) {
	c.mu.Lock()
	initial := c.uas != nil && c.state == stateAnswered
	c.mu.Unlock()
	if c.uas != nil {
		_ = c.uas.ReadAck(req, nil)
	}
	if !initial && !c.quietAcked(req) {
		body := req.Body()
		if sdp := c.lateAnswer(body); sdp != nil {
			c.deliver(func() { c.emit(Event{Kind: EventRemoteSDP, SDP: sdp}) })
			return
		}
		c.deliver(func() { c.emit(Event{Kind: EventConfirmed, SDP: body}) })
	}
}

// handleInDialog runs on the sipgo goroutine of BYE, PRACK, INFO, UPDATE,
// REFER and NOTIFY.
func (c *Call) handleInDialog(req *sip.Request, tx sip.ServerTransaction) {
	tx = c.ruled(req, tx)
	if !c.notePeerCSeq(req) {
		c.g.respond(tx, req, 500, "Server Internal Error")
		return
	}
	c.mu.Lock()
	early := c.state == stateInviting
	c.mu.Unlock()
	if early && req.Method != sip.UPDATE {
		// In the early dialog of our INVITE only an UPDATE is taken
		// (RFC 3311); what else the callee sends waits for the answer.
		c.g.respond(tx, req, 481, "Call/Transaction Does Not Exist")
		return
	}
	switch req.Method {
	case sip.BYE:
		hs := webHeaders(c.xform, routing.Bye, false, req)
		c.mu.Lock()
		c.remoteBye = true
		c.byeHeaders = hs
		overtook := c.uas != nil && c.state == stateAnswered
		c.mu.Unlock()
		if overtook {
			// The ACK is implied: the call was confirmed before it ends.
			c.deliver(c.confirmAnswered)
		}
		var err error
		switch {
		case c.adoptedEnd != nil:
			// The end set going before the 200 leaves: a peer that
			// heard it finds the call ending.
			c.adoptedEnd()
			c.g.respond(tx, req, 200, "OK")
		case c.uac != nil:
			err = c.uac.ReadBye(req, tx)
		default:
			err = c.uas.ReadBye(req, tx)
		}
		if err != nil {
			c.g.respond(tx, req, 481, "Call/Transaction Does Not Exist")
		}
	case sip.PRACK:
		c.handlePrack(req, tx)
	case sip.INFO:
		c.handleInfo(req, tx)
	case sip.UPDATE:
		c.handleUpdate(req, tx) // update.go
	case sip.REFER:
		c.handleRefer(req, tx)
	default: // NOTIFY of a declared action (request.go) or of a REFER we sent
		if !c.declared(req, tx) {
			c.handleReferNotify(req, tx)
		}
	}
}

func parseDTMFRelay(b []byte) (digit string, ms int) {
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "signal":
			if len(v) == 1 && strings.Contains("0123456789*#ABCDabcd", v) {
				digit = strings.ToUpper(v)
			}
		case "duration":
			ms, _ = strconv.Atoi(v)
		}
	}
	return digit, ms
}
