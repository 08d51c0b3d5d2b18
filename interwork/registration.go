package interwork

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jsonrtc/jsonrtc/internal/ratelog"
	"github.com/jsonrtc/jsonrtc/limits"
	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/sipgw"
)

// This file registers the identities of web sessions at the SIP
// registrar (docs/protocol.md §10.1): a connect registers its identity
// (one binding per identity, however many sessions, released when the
// last session ends: never on a socket loss), and the registrar's
// challenges reach the client in the protocol (§4.8): a connect's as its
// error 401/407, a refresh's or removal's as `request`/`authenticate` to
// a live session of the identity.

// regOpTimeout bounds one unregistration.
const regOpTimeout = 10 * time.Second

// authAnswerTimeout bounds how long one session has to answer a live
// challenge; a refresh that nothing answers loses the registration.
const authAnswerTimeout = 10 * time.Second

// Session is what the registrations need of a web session. The gateway
// calls [Registrations] at the session's life events: Register at a
// connect (or the first resume of a session restored from the store),
// Attach once the session exists, Ended when it ends, Answered for each
// `authenticate` answer it sends.
type Session interface {
	// ID is the session id, the key of Ended and Answered.
	ID() string
	// Done is closed when the session ends.
	Done() <-chan struct{}
	// Request sends f, a gateway request. It fails when the session has
	// no socket: register frames are never resent on a resume, so a
	// detached session would never see it.
	Request(f *protocol.Frame) error
	// RegistrationLost ends the session: its registration could no
	// longer be refreshed, so it is unreachable from SIP, and the client
	// reconnects and registers anew, or learns why it cannot.
	RegistrationLost(err error)
}

// RegistrationOptions configure [NewRegistrations].
type RegistrationOptions struct {
	// Config is the sip section with its defaults applied: its registrar
	// and the domains whose identities register.
	Config sipgw.Config
	// Limits bounds the REGISTERs that connects cause; nil: no bound.
	Limits *limits.Registers
	// Peers lists the live sessions of identity that may be asked a
	// registrar's challenge (docs/protocol.md §4.8), in the order to ask
	// them.
	Peers  func(identity string) []Session
	Logger *slog.Logger
}

// Registrations holds the SIP registrations of web sessions. Its methods
// are safe for concurrent use. Close waits for what it started.
type Registrations struct {
	ua    *sipgw.UserAgent // nil: nothing registers
	cfg   sipgw.Config
	lim   *limits.Registers
	peers func(identity string) []Session
	log   *slog.Logger
	rlog  *ratelog.Logger

	mu     sync.Mutex
	bySess map[string]*Binding
	asks   map[askKey]chan *protocol.Frame // live challenges awaiting an answer
	askSeq uint64
	closed bool           // Close waits for the releases in flight
	quit   chan struct{}  // closed by Close: the watchers stop
	wg     sync.WaitGroup // releases and watchers; Add under mu, before closed
}

type askKey struct{ session, corr string }

// Binding is one session's share of its identity's registration.
type Binding struct{ reg *sipgw.Registration }

// Instance is the +sip.instance b is registered under; "" for a nil b.
// The session keeps it in its record, for the node it moves to
// (Connect.Instance).
func (b *Binding) Instance() string {
	if b == nil {
		return ""
	}
	return b.reg.Instance()
}

// NewRegistrations returns the registrations of sessions on ua; with a
// nil ua, or no registrar configured, no identity registers. A nil o
// means the defaults.
func NewRegistrations(ua *sipgw.UserAgent, o *RegistrationOptions) *Registrations {
	if o == nil {
		o = &RegistrationOptions{}
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	peers := o.Peers
	if peers == nil {
		peers = func(string) []Session { return nil }
	}
	return &Registrations{ua: ua, cfg: o.Config, lim: o.Limits, peers: peers, log: log, rlog: ratelog.New(log, nil),
		bySess: map[string]*Binding{}, asks: map[askKey]chan *protocol.Frame{}, quit: make(chan struct{})}
}

// Registers reports whether a connect of identity registers it: when the
// sip section has a registrar (sip:<domain> unless the key says
// otherwise) and identity is of a SIP domain.
func (r *Registrations) Registers(identity string) bool {
	if r.ua == nil || r.cfg.Registrar == "" {
		return false
	}
	at := strings.LastIndexByte(identity, '@')
	if at < 0 {
		return !strings.Contains(identity, ":")
	}
	d := strings.ToLower(identity[at+1:])
	if strings.EqualFold(d, r.cfg.Domain) {
		return true
	}
	_, ok := r.cfg.IdentityDomains[d]
	return ok
}

// Connect is a connect that may register its identity.
type Connect struct {
	Identity string
	// Authorization is the connect's header.authorization: it answers
	// the challenge of a previous connect.
	Authorization json.RawMessage
	// Remote is the socket's address (ip:port) and Addr the client's
	// (the address a trusted proxy forwards, else Remote's).
	Remote string
	Addr   netip.Addr
	// Route is where the REGISTERs go and the AOR they bind
	// (sipgw.RegisterOptions.Route).
	Route sipgw.Route
	// Instance is the +sip.instance of the binding the session held on
	// the node it moved from (Binding.Instance, kept in its record), ""
	// for a new session: registered under it, this node's binding
	// replaces that one at the registrar (sipgw.RegisterOptions.Instance).
	Instance string
}

// ChallengeError is a registrar challenge the gateway could not answer:
// the connect gets error Code (401 or 407) with header.authenticate.
type ChallengeError struct {
	Code         int
	Authenticate json.RawMessage
}

func (e *ChallengeError) Error() string { return "registrar challenge " + strconv.Itoa(e.Code) }

// RetryError is a connect refused for a while: error 503
// (docs/protocol.md §9.2: overloaded or rate-limited), with the wait in
// Reason and in the extension header retry_after (whole seconds).
type RetryError struct {
	Reason string
	After  time.Duration
}

func (e *RetryError) Error() string { return e.Reason }

// Register registers c's identity for a new session; nil, nil when
// registration is not configured for it. A connect that would send a
// REGISTER takes an attempt from the socket's, the address's and the
// identity's buckets (limits.Registers), and one whose identity backs off
// after rejected credentials is refused without contacting SIP. The
// errors are *protocol.Error, *ChallengeError or *RetryError.
func (r *Registrations) Register(ctx context.Context, c Connect) (*Binding, error) {
	if !r.Registers(c.Identity) {
		return nil, nil
	}
	// Refreshes and removals that the gateway cannot answer itself ask
	// a live session of the identity (docs/protocol.md §4.8).
	o := sipgw.RegisterOptions{Route: c.Route, Instance: c.Instance, Auth: func(ctx context.Context, ch sipgw.Challenge) (sipgw.Authorization, error) {
		return r.Authenticate(ctx, c.Identity, ch)
	}}
	if len(c.Authorization) > 0 {
		a, err := parseAuthorization(c.Authorization)
		if err != nil {
			return nil, &protocol.Error{Code: protocol.CodeBadRequest, Reason: "header.authorization: " + err.Error()}
		}
		o.Authorization = a
	}
	sent := false // a REGISTER went out: joining a binding sends none
	o.Admit = func() error {
		if r.lim != nil {
			if err := r.lim.Allow(c.Remote, c.Addr, c.Identity); err != nil {
				return err
			}
		}
		sent = true
		return nil
	}
	reg, err := r.ua.Register(ctx, c.Identity, &o)
	if err == nil {
		if sent && r.lim != nil {
			r.lim.Succeeded(c.Identity)
		}
		return &Binding{reg}, nil
	}
	var denied *limits.RegisterDenied
	if errors.As(err, &denied) {
		return nil, registerDeniedError(denied)
	}
	if errors.Is(err, sipgw.ErrCredentialsRejected) && r.lim != nil {
		// Bounded by the buckets above, so not a flood of lines.
		d := r.lim.Failed(c.Identity)
		r.log.Info("registrar rejected the credentials; backing off", "identity", c.Identity, "backoff", d, "remote", c.Remote)
	}
	var ce *sipgw.ChallengeError
	if errors.As(err, &ce) {
		ch := ce.Challenge
		code := protocol.CodeUnauthorized
		if ch.Proxy {
			code = protocol.CodeProxyAuthRequired
		}
		return nil, &ChallengeError{Code: code, Authenticate: challengeJSON(ch)}
	}
	if errors.Is(err, sipgw.ErrCredentialsRejected) {
		// The gateway's own credentials (sip.credentials): nothing the
		// client can answer.
		return nil, &protocol.Error{Code: protocol.CodeForbidden, Reason: "registrar rejected the credentials"}
	}
	code := sipgw.ResponseCode(err)
	switch {
	case code == protocol.CodeServerError || code < 400 || code > 699:
		code = protocol.CodeServiceUnavailable
	case code == protocol.CodeBadRequest:
		return nil, &protocol.Error{Code: code, Reason: "identity cannot be registered over SIP"}
	}
	r.rlog.Info("sip register", "SIP registration failed", "identity", c.Identity, "err", err)
	return nil, &protocol.Error{Code: code, Reason: "registrar: " + protocol.Reason(code)}
}

func registerDeniedError(d *limits.RegisterDenied) *RetryError {
	secs := int64((d.RetryAfter + time.Second - 1) / time.Second)
	if secs < 1 {
		secs = 1
	}
	var why string
	switch d.Reason {
	case limits.RegisterBackoff:
		why = "the registrar rejected this identity's credentials"
	case limits.RegisterSocket:
		why = "too many registration attempts on this socket"
	case limits.RegisterIdentity:
		why = "too many registration attempts for this identity"
	case limits.RegisterAddress:
		why = "too many registration attempts from this address"
	default:
		why = "too many registration attempts"
	}
	return &RetryError{Reason: why + "; retry in " + strconv.FormatInt(secs, 10) + "s", After: time.Duration(secs) * time.Second}
}

// Attach ties b to session s until s ends (Ended). A registration that
// can no longer be refreshed ends the session (Session.RegistrationLost).
// A nil b (nothing registered) is a no-op; a b for a session that ended
// already is released.
func (r *Registrations) Attach(s Session, b *Binding) {
	if b == nil {
		return
	}
	r.mu.Lock()
	select {
	case <-s.Done():
		// Ended ran before this: nothing else would release b.
		r.mu.Unlock()
		r.Release(b)
		return
	default:
	}
	r.bySess[s.ID()] = b
	r.goUnlock(func() {
		select {
		case <-b.reg.Lost():
			s.RegistrationLost(b.reg.Err())
		case <-s.Done():
		case <-r.quit:
		}
	})
}

// Release gives up b (the last holder unregisters), off the caller's
// goroutine: a binding no session took, or an ended session's.
func (r *Registrations) Release(b *Binding) {
	if b == nil {
		return
	}
	r.mu.Lock()
	r.goUnlock(func() {
		ctx, cancel := context.WithTimeout(context.Background(), regOpTimeout)
		defer cancel()
		if err := b.reg.Release(ctx); err != nil {
			r.log.Info("SIP unregistration failed", "err", err)
		}
	})
}

// goUnlock runs f in a goroutine that Close waits for, and unlocks r.mu,
// which the caller holds. Once Close has begun it runs nothing: the SIP
// side's close removes every binding still held.
func (r *Registrations) goUnlock(f func()) {
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.wg.Add(1)
	r.mu.Unlock()
	go func() {
		defer r.wg.Done()
		f()
	}()
}

// Ended releases the registration of the ended session id.
func (r *Registrations) Ended(id string) {
	r.Release(r.detach(id))
}

// Moved lets go of the registration of session id, which another node
// took over: that node registers the binding under the same instance
// (Connect.Instance), so the last holder here leaves it at the registrar
// and stops refreshing it (sipgw.Registration.Handover) rather than
// removing it, which would take the new owner's binding away.
// Like Release, off the caller's goroutine: a refresh in flight is
// waited for.
func (r *Registrations) Moved(id string) {
	b := r.detach(id)
	if b == nil {
		return
	}
	r.mu.Lock()
	if r.closed {
		// goUnlock would run nothing, and the SIP side's close would
		// remove the binding: let go here.
		r.mu.Unlock()
		b.reg.Handover()
		return
	}
	r.goUnlock(b.reg.Handover)
}

func (r *Registrations) detach(id string) *Binding {
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.bySess[id]
	delete(r.bySess, id)
	return b
}

// Close waits for the unregistrations of ended sessions, so that they go
// out before the SIP side closes, and stops watching the registrations
// still held. It gives up with ctx's error when ctx ends first; the
// unregistrations still running end within regOpTimeout.
func (r *Registrations) Close(ctx context.Context) error {
	r.mu.Lock()
	if !r.closed {
		r.closed = true
		close(r.quit)
	}
	r.mu.Unlock()
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// errNoAuthAnswer: the session answered with an error.
var errNoAuthAnswer = errors.New("interwork: the session did not answer the challenge")

// errSessionEnded: the session ended while asked.
var errSessionEnded = errors.New("interwork: the session ended")

// Authenticate asks identity's live sessions (RegistrationOptions.Peers)
// in turn to answer ch (`request`/`authenticate`, docs/protocol.md §4.8),
// each within authAnswerTimeout. It is the registrations' sipgw.AuthFunc.
// It fails with sipgw.ErrNoAnswer when none answered, so that a connect
// gets the challenge itself.
func (r *Registrations) Authenticate(ctx context.Context, identity string, ch sipgw.Challenge) (sipgw.Authorization, error) {
	for _, s := range r.peers(identity) {
		a, err := r.ask(ctx, s, identity, ch)
		if err == nil {
			return a, nil
		}
		r.log.Debug("live digest challenge not answered", "session_id", s.ID(), "err", err)
		if ctx.Err() != nil {
			break
		}
	}
	return sipgw.Authorization{}, sipgw.ErrNoAnswer
}

// ask sends s `request`/`authenticate` and waits for its answer.
func (r *Registrations) ask(ctx context.Context, s Session, identity string, ch sipgw.Challenge) (sipgw.Authorization, error) {
	answer := make(chan *protocol.Frame, 1)
	r.mu.Lock()
	r.askSeq++
	k := askKey{s.ID(), "auth" + strconv.FormatUint(r.askSeq, 10)}
	// Registered before the request goes out: the answer may come first.
	r.asks[k] = answer
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.asks, k)
		r.mu.Unlock()
	}()
	f := &protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageRegister, CorrelationID: k.corr},
		Header: protocol.Header{Action: protocol.ActionAuthenticate, Initiator: identity, Target: identity,
			Authenticate: challengeJSON(ch)},
	}
	if err := s.Request(f); err != nil {
		return sipgw.Authorization{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, authAnswerTimeout)
	defer cancel()
	select {
	case a := <-answer:
		if a.Control.Type != protocol.TypeResponse {
			return sipgw.Authorization{}, errNoAuthAnswer
		}
		auth, err := parseAuthorization(a.Header.Authorization)
		if err != nil {
			return sipgw.Authorization{}, err
		}
		return *auth, nil
	case <-s.Done():
		return sipgw.Authorization{}, errSessionEnded
	case <-ctx.Done():
		return sipgw.Authorization{}, ctx.Err()
	}
}

// Answered hands f, an `authenticate` response or error from session
// id, to the challenge waiting for it; false when nothing waits (late,
// after authAnswerTimeout, or unsolicited).
func (r *Registrations) Answered(id string, f *protocol.Frame) bool {
	k := askKey{id, f.Control.CorrelationID}
	r.mu.Lock()
	ch := r.asks[k]
	delete(r.asks, k)
	r.mu.Unlock()
	if ch == nil {
		return false
	}
	ch <- f // buffered, and deleted above: sent once
	return true
}

// challengeJSON is header.authenticate for ch (docs/protocol.md §4.8).
func challengeJSON(ch sipgw.Challenge) json.RawMessage {
	b, _ := json.Marshal(struct {
		Scheme    string `json:"scheme"`
		Realm     string `json:"realm"`
		Nonce     string `json:"nonce"`
		Algorithm string `json:"algorithm,omitempty"`
		QOP       string `json:"qop,omitempty"`
		Opaque    string `json:"opaque,omitempty"`
		Stale     bool   `json:"stale,omitempty"`
		Method    string `json:"method"`
		URI       string `json:"uri"`
	}{ch.Scheme, ch.Realm, ch.Nonce, ch.Algorithm, strings.Join(ch.QOP, ","), ch.Opaque, ch.Stale, ch.Method, ch.URI})
	return b
}

// parseAuthorization reads header.authorization: {username, realm, ha1}
// or a computed digest {username, realm, nonce, response, cnonce, nc,
// uri, qop}. nc may be a number or the hex string of the digest header.
func parseAuthorization(raw json.RawMessage) (*sipgw.Authorization, error) {
	var a struct {
		Username string          `json:"username"`
		Realm    string          `json:"realm"`
		HA1      string          `json:"ha1"`
		Nonce    string          `json:"nonce"`
		Response string          `json:"response"`
		CNonce   string          `json:"cnonce"`
		NC       json.RawMessage `json:"nc"`
		URI      string          `json:"uri"`
		QOP      string          `json:"qop"`
	}
	if err := json.Unmarshal(raw, &a); err != nil {
		return nil, errors.New("not an object of strings")
	}
	if a.Username == "" || (a.HA1 == "" && a.Response == "") {
		return nil, errors.New("username and ha1 or response are required")
	}
	out := &sipgw.Authorization{Username: a.Username, Realm: a.Realm, HA1: a.HA1, Nonce: a.Nonce,
		Response: a.Response, CNonce: a.CNonce, URI: a.URI, QOP: a.QOP}
	if len(a.NC) > 0 {
		var n uint32
		var s string
		if json.Unmarshal(a.NC, &n) == nil {
			out.NC = int(n)
		} else if json.Unmarshal(a.NC, &s) == nil {
			v, err := strconv.ParseUint(s, 16, 32)
			if err != nil {
				return nil, errors.New("nc")
			}
			out.NC = int(v)
		} else {
			return nil, errors.New("nc")
		}
	}
	return out, nil
}
