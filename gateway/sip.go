package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jsonrtc/jsonrtc/call"
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
	g.calls.UseSIP(g.sip, call.SIPOptions{Domains: domains, Headers: g.cfg.Calls.SIPHeaders})
	g.sip.OnIncomingCall(func(sc *sipgw.Call) {
		if g.onIncomingSIPCall != nil {
			g.onIncomingSIPCall(sc.Identity())
		}
		g.calls.IncomingSIP(sc)
	})
}

// registers reports whether a connect of identity registers it: when the
// sip section names a registrar and identity is of a SIP domain.
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
func (g *Gateway) sipRegister(ctx context.Context, f *protocol.Frame, identity string) (*sipgw.Registration, error) {
	if !g.registers(identity) {
		return nil, nil
	}
	var o sipgw.RegisterOptions
	if len(f.Header.Authorization) > 0 {
		a, err := parseAuthorization(f.Header.Authorization)
		if err != nil {
			return nil, &protocol.Error{Code: protocol.CodeBadRequest, Reason: "header.authorization: " + err.Error()}
		}
		o.Authorization = a
	}
	reg, err := g.sip.Register(ctx, identity, &o)
	if err == nil {
		return reg, nil
	}
	var ce *sipgw.ChallengeError
	if errors.As(err, &ce) {
		ch := ce.Challenge
		code := protocol.CodeUnauthorized
		if ch.Proxy {
			code = protocol.CodeProxyAuthRequired
		}
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
		return nil, &challengeError{code: code, authenticate: b}
	}
	code := sipgw.ResponseCode(err)
	switch {
	case code == protocol.CodeServerError || code < 400 || code > 699:
		code = protocol.CodeServiceUnavailable
	case code == protocol.CodeBadRequest:
		return nil, &protocol.Error{Code: code, Reason: "identity cannot be registered over SIP"}
	}
	g.log.Info("SIP registration failed", "identity", identity, "err", err)
	return nil, &protocol.Error{Code: code, Reason: "registrar: " + protocol.Reason(code)}
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
func (g *Gateway) waitRegistrations() {
	g.regs.mu.Lock()
	g.regs.closed = true
	g.regs.mu.Unlock()
	g.regs.wg.Wait()
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
// a registrar challenge.
func connectErrorFor(f *protocol.Frame, err error) []byte {
	var ce *challengeError
	if errors.As(err, &ce) {
		out := &protocol.Frame{
			Control: protocol.Control{Type: protocol.TypeError, Package: protocol.PackageRegister},
			Header: protocol.Header{Action: protocol.ActionConnect, ErrorCode: ce.code,
				Reason: protocol.Reason(ce.code), Authenticate: ce.authenticate},
		}
		if f != nil {
			out.Control.AckSequence = f.Control.Sequence
			out.Control.CorrelationID = protocol.ClientCorrelation(f)
		}
		return out.Marshal()
	}
	return connectError(f, protocol.CodeOf(err), reasonOf(err))
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
