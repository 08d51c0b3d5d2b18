package client

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/session"
)

// Errors callers branch on.
var (
	// ErrClosed: the Client was closed (by Close or for a cause that
	// Client.Err reports).
	ErrClosed = errors.New("client: closed")
	// ErrSessionLost: the gateway refused a resume; everything pending in
	// the old session failed.
	ErrSessionLost = errors.New("client: session lost")
	// ErrResumeTimeout: the socket could not be resumed within
	// Options.ResumeTimeout.
	ErrResumeTimeout = errors.New("client: resume timed out")
	// ErrSlowConsumer: the application did not drain Events in time.
	ErrSlowConsumer = errors.New("client: events not drained; session closed")
	// ErrWindowFull: the retained window is full; nothing was sent.
	ErrWindowFull = session.ErrWindowFull
	// ErrTooManyPending: Options.MaxPending requests await a response.
	ErrTooManyPending = errors.New("client: too many pending requests")
	// ErrRequestTimeout: a request got no answer within its bound
	// (Options.RequestTimeout, RequestTimeouts, ProgressTimeout).
	ErrRequestTimeout = errors.New("client: no answer to the request in time")
	// ErrCallState: the call is not in a state that allows this action.
	ErrCallState = errors.New("client: not allowed in this call state")
)

// FrameError is an error frame from the gateway answering a request.
type FrameError struct {
	Code   int
	Reason string
	// RetryAfter is the wait a connect refused for now asked for, its
	// header.retry_after (docs/protocol.md §4.2); 0 when none.
	RetryAfter time.Duration
}

func (e *FrameError) Error() string {
	return "client: gateway answered " + strconv.Itoa(e.Code) + " " + e.Reason
}

// HandshakeError is a WebSocket handshake the gateway refused over HTTP.
type HandshakeError struct {
	Status int
	Err    error
	// RetryAfter is the refusal's Retry-After, in whole seconds as the
	// gateway sends it; 0 when none.
	RetryAfter time.Duration
}

func (e *HandshakeError) Error() string {
	return fmt.Sprintf("client: handshake refused with HTTP %d: %v", e.Status, e.Err)
}

func (e *HandshakeError) Unwrap() error { return e.Err }

// EventKind says what an Event reports.
type EventKind uint8

const (
	// EventConnected: the session is up (SessionID, Identity). Sent once,
	// after Dial.
	EventConnected EventKind = iota + 1
	// EventReconnecting: the socket was lost (Err says why); the client is
	// reconnecting.
	EventReconnecting
	// EventResumed: the session resumed on a new socket (SessionID).
	EventResumed
	// EventSessionLost: the gateway refused the resume. Every call ended
	// and every pending request failed with ErrSessionLost; the client
	// now runs session SessionID (the old one was PrevSessionID).
	EventSessionLost
	// EventClosed: the last event; Err is nil after Close.
	EventClosed
	// EventIncomingCall: a new call (Call, SDP, Header).
	EventIncomingCall
	// EventCall: a call changed (Call, Call event in CallEvent, and Code,
	// Reason, SDP, Header as the frame carried them).
	EventCall
	// EventMessage: an incoming messaging send (Message).
	EventMessage
	// EventError: an error frame that answers nothing the client has
	// pending (Frame, Code, Reason), e.g. the 400 for a malformed frame.
	EventError
	// EventFrame: an inbound frame the client does not interpret (Frame):
	// presence, message_notification, or a frame for an unknown call.
	EventFrame
	// EventStandby: the session sleeps (Client.Standby): no socket until
	// Wake, a send, or the app's push relay wakes the app, which calls Wake.
	EventStandby
	// EventRequest: a request of an action the client does not know, one
	// the gateway's configuration declares (Request, Frame, Header); answer
	// it with Request.Respond, or the sender waits for the gateway's
	// answer timeout. With Options.Requests set, only the actions it lists
	// come as this event; the others are answered 405 at once.
	EventRequest
)

var eventNames = [...]string{"", "connected", "reconnecting", "resumed", "session-lost", "closed",
	"incoming-call", "call", "message", "error", "frame", "standby", "request"}

func (k EventKind) String() string {
	if int(k) < len(eventNames) && k != 0 {
		return eventNames[k]
	}
	return "EventKind(" + strconv.Itoa(int(k)) + ")"
}

// CallEvent is what happened to a call.
type CallEvent uint8

const (
	// CallRinging: the callee rings (Code 180, or 183 without SDP).
	CallRinging CallEvent = iota + 1
	// CallEarlyMedia: a provisional answer with SDP (Code 183).
	CallEarlyMedia
	// CallAnswered: the final answer to our offer (Code 200, SDP).
	CallAnswered
	// CallEstablished: complete was received (callee) or sent (caller).
	CallEstablished
	// CallFailed: the offer was rejected or the session was lost (Code,
	// Reason); the call is over.
	CallFailed
	// CallEnded: the peer hung up or cancelled; the call is over.
	CallEnded
	// CallReOffer: the peer re-offered (SDP); answer with Call.Answer or
	// reject with Call.Decline.
	CallReOffer
	// CallReOfferAnswered: the final answer to our re-offer (SDP).
	CallReOfferAnswered
	// CallReOfferFailed: our re-offer was rejected (Code); the call goes on.
	CallReOfferFailed
	// CallPrack: the peer acknowledged a provisional response (SDP: the
	// answer to Call.PrackOffer's offer).
	CallPrack
	// CallTrickle: ICE candidates (Candidates).
	CallTrickle
	// CallDTMF: digits (Digits, Duration).
	CallDTMF
	// CallTransfer: the peer asks to transfer the call (ReferTo); answer
	// with Call.RespondTransfer, then report the new call with
	// Call.ReportTransfer.
	CallTransfer
	// CallError: an error frame about the call that fits no other event.
	CallError
	// CallTransferProgress: the status of the call the peer placed for
	// our transfer (Code, Reason); 200-699 is the last.
	CallTransferProgress
	// CallRemoteSDP: the peer's description changed without an offer of
	// ours (SDP): the new answer to our current description.
	CallRemoteSDP
	// CallFigures: after we hung up a call whose media went through
	// rtpengine, what it counted per leg (Media; docs/protocol.md §5.8).
	// The call is over already.
	CallFigures
)

var callEventNames = [...]string{"", "ringing", "early-media", "answered", "established", "failed",
	"ended", "re-offer", "re-offer-answered", "re-offer-failed", "prack", "trickle", "dtmf", "transfer", "error",
	"transfer-progress", "remote-sdp", "figures"}

func (e CallEvent) String() string {
	if int(e) < len(callEventNames) && e != 0 {
		return callEventNames[e]
	}
	return "CallEvent(" + strconv.Itoa(int(e)) + ")"
}

// Event is one thing that happened in the session. Which fields are set
// depends on Kind (see the EventKind constants).
type Event struct {
	Kind          EventKind
	SessionID     string
	PrevSessionID string
	Identity      string
	Err           error

	Call      *Call
	CallEvent CallEvent
	Code      int
	Reason    string
	SDP       string
	// Candidates, Digits and Duration come from trickle and dtmf payloads.
	Candidates string
	Digits     string
	Duration   int
	ReferTo    string
	// Replaces: on CallTransfer, the token of an attended transfer, for
	// the new call ([Client.StartCallReplacing]); on EventIncomingCall,
	// the id of our call the new one replaces (docs/protocol.md §5.12).
	Replaces string
	// Media: on CallEnded by the gateway's shutdown of a call whose
	// media went through rtpengine, what it counted per leg
	// (docs/protocol.md §5.8).
	Media []protocol.MediaStats
	// Header is the header of the frame behind the event; its Ext holds
	// the extension headers.
	Header *protocol.Header

	Message *Message
	Frame   *protocol.Frame
	Request *Request
}

func (e Event) String() string {
	s := e.Kind.String()
	if e.Kind == EventCall {
		s += "/" + e.CallEvent.String()
	}
	if e.Code != 0 {
		s += " " + strconv.Itoa(e.Code)
	}
	if e.Err != nil {
		s += " (" + e.Err.Error() + ")"
	}
	return s
}

// maxRetryAfter bounds the wait a refusal can ask for: a gateway's
// mistake (or a proxy's Retry-After meant for browsers) must not park
// the client past its resume timeout.
const maxRetryAfter = time.Minute

// parseRetryAfter reads a Retry-After or retry_after given in whole
// seconds; 0 for anything else (an HTTP date included: the gateway
// sends seconds).
func parseRetryAfter(v string) time.Duration {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n <= 0 {
		return 0
	}
	return min(time.Duration(n)*time.Second, maxRetryAfter)
}

// retryAfter is the wait err's refusal asked for; 0 when none.
func retryAfter(err error) time.Duration {
	if he, ok := errors.AsType[*HandshakeError](err); ok {
		return he.RetryAfter
	}
	if fe, ok := errors.AsType[*FrameError](err); ok {
		return fe.RetryAfter
	}
	return 0
}
