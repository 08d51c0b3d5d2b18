package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jsonrtc/jsonrtc/call"
	"github.com/jsonrtc/jsonrtc/limits"
	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/sipgw"
)

// This file interworks calls and registration with SIP (docs/protocol.md
// §10.1, §10.2) when the sip section is configured: a connect registers the
// identity (one binding per identity, however many sessions, released
// when the last session ends: never on a socket loss); calls to non-web
// targets and INVITEs for registered identities go through call.Handler's
// SIP legs (call/sip.go).

// sipOpTimeout bounds one SIP registration exchange.
const sipOpTimeout = 10 * time.Second

// sipRegs holds the registration of each session, by session id.
type sipRegs struct {
	mu     sync.Mutex
	m      map[string]*sipgw.Registration
	closed bool           // Shutdown waits for the releases in flight
	wg     sync.WaitGroup // releases in flight; Add under mu, before closed
}

// sipCalls connects the call handler to the SIP side. It runs in New,
// after the handlers exist and before the SIP side starts.
func (g *Gateway) sipCalls() {
	g.regs = &sipRegs{m: map[string]*sipgw.Registration{}}
	if g.sip == nil {
		return
	}
	c := g.cfg.SIP
	domains := []string{c.Domain, c.TelDomain}
	for k, v := range c.IdentityDomains {
		domains = append(domains, k, v)
	}
	g.calls.UseSIP(g.sip, call.SIPOptions{Domains: domains, Headers: g.cfg.Calls.SIPHeaders, ToWeb: g.router.Load().ToWeb()})
	g.sip.OnIncomingCall(func(sc *sipgw.Call) {
		if f := g.onIncomingSIPCall.Load(); f != nil {
			(*f)(sc.Identity())
		}
		g.calls.IncomingSIP(sc)
	})
}

// registers reports whether a connect of identity registers it: when the
// sip section has a registrar (sip:<domain> unless the key says otherwise:
// g.cfg has its defaults applied) and identity is of a SIP domain.
func (g *Gateway) registers(identity string) bool {
	if g.sip == nil || g.cfg.SIP.Registrar == "" {
		return false
	}
	at := strings.LastIndexByte(identity, '@')
	if at < 0 {
		return !strings.Contains(identity, ":")
	}
	d := strings.ToLower(identity[at+1:])
	if strings.EqualFold(d, g.cfg.SIP.Domain) {
		return true
	}
	_, ok := g.cfg.SIP.IdentityDomains[d]
	return ok
}

// challengeError is a registrar challenge the gateway could not answer:
// the connect gets error 401/407 with header.authenticate.
type challengeError struct {
	code         int
	authenticate json.RawMessage
}

func (e *challengeError) Error() string { return "registrar challenge " + strconv.Itoa(e.code) }

// sipRegister registers identity for a new session; nil, nil when
// registration is not configured for it. f is the connect; its
// header.authorization answers the challenge of a previous connect.
// remote is the socket's address (ip:port) and addr the client's (the
// address a trusted proxy forwards, else remote's): a connect that would
// send a REGISTER takes an attempt from the socket's, the address's and
// the identity's buckets (limits.Registers), and one whose identity backs
// off after rejected credentials is refused without contacting SIP.
func (g *Gateway) sipRegister(ctx context.Context, f *protocol.Frame, identity, remote string, addr netip.Addr) (*sipgw.Registration, error) {
	if !g.registers(identity) {
		return nil, nil
	}
	// Refreshes and removals that the gateway cannot answer itself ask
	// a live session of the identity (docs/protocol.md §4.8).
	o := sipgw.RegisterOptions{Auth: g.liveAuth(identity)}
	if len(f.Header.Authorization) > 0 {
		a, err := parseAuthorization(f.Header.Authorization)
		if err != nil {
			return nil, &protocol.Error{Code: protocol.CodeBadRequest, Reason: "header.authorization: " + err.Error()}
		}
		o.Authorization = a
	}
	sent := false // a REGISTER went out: joining a binding sends none
	o.Admit = func() error {
		if err := g.regLim.Allow(remote, addr, identity); err != nil {
			return err
		}
		sent = true
		return nil
	}
	reg, err := g.sip.Register(ctx, identity, &o)
	if err == nil {
		if sent {
			g.regLim.Succeeded(identity)
		}
		return reg, nil
	}
	var denied *limits.RegisterDenied
	if errors.As(err, &denied) {
		return nil, registerDeniedError(denied)
	}
	if errors.Is(err, sipgw.ErrCredentialsRejected) {
		// Bounded by the buckets above, so not a flood of lines.
		d := g.regLim.Failed(identity)
		g.log.Info("registrar rejected the credentials; backing off", "identity", identity, "backoff", d, "remote", remote)
	}
	var ce *sipgw.ChallengeError
	if errors.As(err, &ce) {
		ch := ce.Challenge
		code := protocol.CodeUnauthorized
		if ch.Proxy {
			code = protocol.CodeProxyAuthRequired
		}
		return nil, &challengeError{code: code, authenticate: challengeJSON(ch)}
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
	g.rlog.Info("sip register", "SIP registration failed", "identity", identity, "err", err)
	return nil, &protocol.Error{Code: code, Reason: "registrar: " + protocol.Reason(code)}
}

// retryError is a connect refused for a while: error 503 (docs/protocol.md
// §9.2: overloaded or rate-limited), with the wait in the reason and
// in the extension header retry_after (whole seconds).
type retryError struct {
	reason string
	after  time.Duration
}

func (e *retryError) Error() string { return e.reason }

func registerDeniedError(d *limits.RegisterDenied) *retryError {
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
	return &retryError{reason: why + "; retry in " + strconv.FormatInt(secs, 10) + "s", after: time.Duration(secs) * time.Second}
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

// keepRegistration ties reg to session s until it ends.
func (g *Gateway) keepRegistration(s *Session, reg *sipgw.Registration) {
	if reg == nil {
		return
	}
	g.regs.mu.Lock()
	g.regs.m[s.id] = reg
	g.regs.mu.Unlock()
	// A registration that can no longer be refreshed leaves the session
	// unreachable from SIP: the session ends (close 1001), so that the
	// client reconnects and registers anew, or learns why it cannot.
	g.goTracked(func() {
		select {
		case <-reg.Lost():
			s.log.Warn("SIP registration lost; ending the session", "err", reg.Err())
			s.end(reasonRegistrationLost)
		case <-s.gone:
		}
	})
}

// releaseRegistration gives up reg (the last holder unregisters), off
// the caller's goroutine.
func (g *Gateway) releaseRegistration(reg *sipgw.Registration) {
	if reg == nil {
		return
	}
	g.regs.mu.Lock()
	if g.regs.closed {
		// Shutdown is closing the SIP side, which removes every
		// binding still held.
		g.regs.mu.Unlock()
		return
	}
	g.regs.wg.Add(1)
	g.regs.mu.Unlock()
	go func() {
		defer g.regs.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), sipOpTimeout)
		defer cancel()
		if err := reg.Release(ctx); err != nil {
			g.log.Info("SIP unregistration failed", "err", err)
		}
	}()
}

// waitRegistrations waits for the unregistrations of ended sessions;
// Shutdown calls it before the SIP side closes, so that they go out.
// It gives up with ctx's error when ctx ends first; the unregistrations
// still running end within sipOpTimeout.
func (g *Gateway) waitRegistrations(ctx context.Context) error {
	g.regs.mu.Lock()
	g.regs.closed = true
	g.regs.mu.Unlock()
	return waitGroup(ctx, &g.regs.wg)
}

// sipSessionEnded releases the registration of an ended session.
func (g *Gateway) sipSessionEnded(s *Session) {
	g.regs.mu.Lock()
	reg := g.regs.m[s.id]
	delete(g.regs.m, s.id)
	g.regs.mu.Unlock()
	g.releaseRegistration(reg)
}

// connectErrorFor answers a failed connect, with header.authenticate for
// a registrar challenge and header.retry_after for a connect refused for
// a while.
func connectErrorFor(f *protocol.Frame, err error) []byte {
	var ce *challengeError
	var re *retryError
	switch {
	case errors.As(err, &ce):
		out := registerError(f, ce.code, protocol.Reason(ce.code))
		out.Header.Authenticate = ce.authenticate
		return out.Marshal()
	case errors.As(err, &re):
		out := registerError(f, protocol.CodeServiceUnavailable, re.reason)
		out.Header.Ext = []protocol.Ext{{Name: "retry_after", Kind: protocol.ExtNumber,
			Value: strconv.FormatInt(int64(re.after/time.Second), 10)}}
		return out.Marshal()
	}
	return connectError(f, protocol.CodeOf(err), protocol.ReasonOf(err))
}

// registerError is the error frame answering connect f.
func registerError(f *protocol.Frame, code int, reason string) *protocol.Frame {
	out := &protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeError, Package: protocol.PackageRegister},
		Header:  protocol.Header{Action: protocol.ActionConnect, ErrorCode: code, Reason: reason},
	}
	if f != nil {
		out.Control.AckSequence = f.Control.Sequence
		out.Control.CorrelationID = protocol.ClientCorrelation(f)
	}
	return out
}

// WaitIdle returns once no call is in progress, SIP legs included (both
// sides over), or with ctx's error. Tests use it before leak checks.
func (g *Gateway) WaitIdle(ctx context.Context) error { return g.calls.WaitIdle(ctx) }

// SIPStats reports the SIP side's live calls, dialogs, transactions and
// registrations (zero without SIP).
func (g *Gateway) SIPStats() sipgw.Stats {
	if g.sip == nil {
		return sipgw.Stats{}
	}
	return g.sip.Stats()
}
