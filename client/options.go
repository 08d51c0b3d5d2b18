package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/session"
)

// Options configure Dial. The zero value of every field means its default.
type Options struct {
	// URL of the gateway's WebSocket endpoint, e.g. ws://127.0.0.1:8080/ws/.
	URL string
	// URLs, when set, are the WebSocket endpoints of a cluster's nodes
	// (docs/cluster.md): the first connect goes to the first, and each
	// reconnect or resume to the next in turn, so that a client whose
	// node drains or dies resumes on another. URL is then ignored, and
	// each long-poll URL is derived from its WebSocket one.
	URLs []string
	// Header is sent with every handshake (Authorization, Origin...).
	Header http.Header
	// Transports lists the transports to try, in order of preference:
	// TransportWebSocket, TransportLongPoll (docs/protocol.md §1.6). Each
	// connect and resume tries them in turn until one opens. Default
	// WebSocket only.
	Transports []string
	// PollURL is the long-poll endpoint. Default: URL with http(s) for
	// ws(s) and /poll/ for /ws/.
	PollURL string
	// Subprotocol offered: protocol.SubprotocolJSONrtc (default) or
	// protocol.SubprotocolOracle.
	Subprotocol string
	// Identity is the initiator sent in connect; it may be empty (the
	// gateway then decides). The identity the session runs as is the one
	// in the connect response: [Client.Identity].
	Identity string
	// Logger receives lifecycle logs at Info and frames at Debug.
	// Default: discard.
	Logger *slog.Logger
	// Limits bound the retained window (default 1024 frames, 1 MiB).
	Limits session.Limits

	// ReconnectMin and ReconnectMax bound the backoff between reconnect
	// attempts: the first attempt is immediate, then the delay doubles
	// from ReconnectMin up to ReconnectMax, each one jittered down by up
	// to half. Defaults 250 ms and 10 s.
	ReconnectMin, ReconnectMax time.Duration
	// ResumeTimeout is how long the client tries to resume after losing
	// its socket before it gives up and closes with ErrResumeTimeout; it
	// should not exceed the gateway's. A resume refused for now (HTTP
	// 503, error 503, close 1013) is tried again within it; one refused
	// 401 or 403 ends the client at once (docs/protocol.md §4.5).
	// Default 60 s.
	ResumeTimeout time.Duration
	// ConnectTimeout bounds one attempt: handshake plus connect response.
	// Default 10 s.
	ConnectTimeout time.Duration
	// ConnectAttempts bounds the attempts of the first connect when the
	// gateway refuses it for now: HTTP 503 at the handshake, error 503
	// answering the connect (an overloaded store's "session admission
	// failed", a limit reached, docs/protocol.md §4.2) or a close 1013.
	// Each retry waits as a reconnect does (ReconnectMin doubling up to
	// ReconnectMax, jittered), or the refusal's Retry-After (retry_after)
	// when longer, and, with URLs, goes to the next of them without it;
	// Dial's ctx bounds them all. Any other failure, a 401 or 403 among
	// them, fails Dial at once. Default 5; 1: no retry.
	ConnectAttempts int
	// WriteTimeout bounds one socket write. Default 10 s.
	WriteTimeout time.Duration

	// PingInterval: a text "ping" is sent when nothing has arrived for
	// this long. Default 10 s; negative disables keepalive.
	PingInterval time.Duration
	// PongTimeout is the wait before the first unanswered ping is
	// repeated; the waits then double (docs/protocol.md §1.4). Default 2 s.
	PongTimeout time.Duration
	// PingGiveUp is how long pings may go unanswered before the socket is
	// declared dead and the client reconnects. Default 15 s.
	PingGiveUp time.Duration
	// RequestTimeout bounds the wait for the answer to a request: Send,
	// Transfer, and the first answer to a call's start (StartCall). Past
	// it the request fails with ErrRequestTimeout (a call with
	// CallFailed, and a cancel goes to the gateway), and
	// Client.RequestTimeouts counts it. Default 30 s. RequestTimeouts
	// overrides it per "package/action" (e.g. "messaging/send",
	// "call/start"). The connect is bounded by ConnectTimeout.
	RequestTimeout  time.Duration
	RequestTimeouts map[string]time.Duration
	// ProgressTimeout bounds the wait for a call's final answer once a
	// provisional one came (ringing): SIP's Timer C. Default 180 s.
	ProgressTimeout time.Duration
	// AckDelay: after receiving frames, an acknowledgement frame is sent
	// when nothing else has carried the ack for this long. Default 200 ms.
	AckDelay time.Duration

	// EventBuffer is the capacity of Events. Default 256. The buffer is
	// allocated up front (about 250 bytes an entry): keep it small when
	// holding many sessions.
	EventBuffer int
	// SlowConsumerTimeout is how long the loop waits on a full Events
	// channel before closing the session with ErrSlowConsumer. Default 5 s.
	SlowConsumerTimeout time.Duration
	// MaxPending bounds requests awaiting their response. Default 1024.
	MaxPending int
	// ReadLimit is the largest inbound frame. Default 1 MiB.
	ReadLimit int64

	// ManualComplete: when false (default) the client sends complete by
	// itself when a final answer to its offer or re-offer arrives, as
	// wsc.js does; when true the application calls Call.Complete.
	ManualComplete bool
	// AutoAcceptMessages answers every incoming messaging send with 200
	// before delivering it; otherwise the application calls Message.Reply.
	AutoAcceptMessages bool
	// Requests, when not nil, lists the declared actions
	// ("package/action", e.g. "call/x-score") whose requests the
	// application answers (EventRequest); a request of any other is
	// answered 405 at once, without an event, rather than left for the
	// gateway to answer 408 after its templates.answer_timeout. An empty
	// list refuses them all. Nil: every one comes as EventRequest.
	Requests []string
	// Authorize answers a 401/407 challenge to connect, a first one or a
	// resume (docs/protocol.md §4.8): it receives header.authenticate and
	// returns header.authorization. Nil: the challenge fails Dial, or
	// ends the session on a resume.
	Authorize func(ctx context.Context, challenge json.RawMessage) (json.RawMessage, error)
	// OnFrame, when set, sees every JSON frame read or written (Out true)
	// and every raw text frame, before the client acts on it. It runs on
	// the client's goroutines: it must be quick and must not call the
	// Client. The slice is only valid during the call.
	OnFrame func(out bool, data []byte)

	// NetDial, when set, opens the TCP connections (tests use it to
	// observe or break them). HTTPClient, when set, is used instead and
	// NetDial is ignored; Kill then cannot reach the TCP connection and
	// closes the WebSocket without a close frame instead.
	NetDial    func(ctx context.Context, network, addr string) (net.Conn, error)
	HTTPClient *http.Client
}

// requestTimeout is the bound on the answer to a request of pkg/action.
func (o *Options) requestTimeout(pkg protocol.Package, action protocol.Action) time.Duration {
	if d, ok := o.RequestTimeouts[string(pkg)+"/"+string(action)]; ok {
		return d
	}
	return o.RequestTimeout
}

// The transports of Options.Transports.
const (
	TransportWebSocket = "websocket"
	TransportLongPoll  = "longpoll"
)

// pollURL is the long-poll URL of the gateway whose WebSocket URL is u.
func pollURL(u string) string {
	switch {
	case strings.HasPrefix(u, "wss://"):
		u = "https://" + u[len("wss://"):]
	case strings.HasPrefix(u, "ws://"):
		u = "http://" + u[len("ws://"):]
	}
	return strings.Replace(u, "/ws/", "/poll/", 1)
}

func (o Options) withDefaults() (Options, error) {
	if len(o.URLs) > 0 {
		o.URL, o.PollURL = o.URLs[0], ""
	}
	if o.URL == "" {
		return o, errors.New("client: Options.URL is empty")
	}
	if o.Subprotocol == "" {
		o.Subprotocol = protocol.SubprotocolJSONrtc
	}
	if o.Subprotocol != protocol.SubprotocolJSONrtc && o.Subprotocol != protocol.SubprotocolOracle {
		return o, errors.New("client: Options.Subprotocol must be jsonrtc or webrtc.oracle.com")
	}
	if len(o.Transports) == 0 {
		o.Transports = []string{TransportWebSocket}
	}
	for _, t := range o.Transports {
		if t != TransportWebSocket && t != TransportLongPoll {
			return o, fmt.Errorf("client: Options.Transports: unknown transport %q", t)
		}
		if t == TransportLongPoll && o.Subprotocol == protocol.SubprotocolOracle {
			return o, errors.New("client: Options.Transports: long-poll speaks only the jsonrtc subprotocol")
		}
	}
	if o.PollURL == "" {
		o.PollURL = pollURL(o.URL)
	}
	for i, u := range o.URLs {
		if u == "" {
			return o, fmt.Errorf("client: Options.URLs[%d] is empty", i)
		}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&o.ReconnectMin, 250*time.Millisecond)
	def(&o.ReconnectMax, 10*time.Second)
	if o.ReconnectMax < o.ReconnectMin {
		o.ReconnectMax = o.ReconnectMin
	}
	def(&o.ResumeTimeout, 60*time.Second)
	def(&o.ConnectTimeout, 10*time.Second)
	if o.ConnectAttempts <= 0 {
		o.ConnectAttempts = 5
	}
	def(&o.WriteTimeout, 10*time.Second)
	def(&o.PingInterval, 10*time.Second)
	def(&o.PongTimeout, 2*time.Second)
	def(&o.PingGiveUp, 15*time.Second)
	def(&o.AckDelay, 200*time.Millisecond)
	def(&o.RequestTimeout, 30*time.Second)
	def(&o.ProgressTimeout, 180*time.Second)
	for k, d := range o.RequestTimeouts {
		if d <= 0 {
			return o, fmt.Errorf("client: Options.RequestTimeouts[%q] must be positive", k)
		}
	}
	def(&o.SlowConsumerTimeout, 5*time.Second)
	if o.EventBuffer <= 0 {
		o.EventBuffer = 256
	}
	if o.MaxPending <= 0 {
		o.MaxPending = 1024
	}
	if o.ReadLimit <= 0 {
		o.ReadLimit = 1 << 20
	}
	return o, nil
}
