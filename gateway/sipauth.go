package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/sipgw"
)

// This file answers the registrar's challenges of refreshes and removals
// through a live session (docs/protocol.md §4.8): when the gateway holds
// no reusable credentials for an identity (its client computed the
// digest response of the connect), it sends a live session of the
// identity `request`/`authenticate` and applies the client's answer.

// authAnswerTimeout bounds how long one session has to answer a live
// challenge; a refresh that nothing answers loses the registration.
const authAnswerTimeout = 10 * time.Second

// errNoAuthAnswer: the session did not answer, or answered with an error.
var errNoAuthAnswer = errors.New("gateway: the session did not answer the challenge")

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

// liveAuth answers identity's challenges by asking its live sessions in
// turn: those with a socket, and not webrtc.oracle.com (wsc.js has no
// answer for a gateway's request). It fails with sipgw.ErrNoAnswer when
// none answered, so that a connect gets the challenge itself.
func (g *Gateway) liveAuth(identity string) sipgw.AuthFunc {
	return func(ctx context.Context, ch sipgw.Challenge) (sipgw.Authorization, error) {
		g.mu.Lock()
		list := append([]*Session(nil), g.byIdentity[identity]...)
		g.mu.Unlock()
		for _, s := range list {
			if s.oracle {
				continue
			}
			a, err := s.askAuth(ctx, ch)
			if err == nil {
				return a, nil
			}
			s.log.Debug("live digest challenge not answered", "err", err)
			if ctx.Err() != nil {
				break
			}
		}
		return sipgw.Authorization{}, sipgw.ErrNoAnswer
	}
}

// askAuth sends s `request`/`authenticate` and waits for its answer.
func (s *Session) askAuth(ctx context.Context, ch sipgw.Challenge) (sipgw.Authorization, error) {
	f := &protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageRegister},
		Header: protocol.Header{Action: protocol.ActionAuthenticate, Initiator: s.identity, Target: s.identity,
			Authenticate: challengeJSON(ch)},
	}
	answer := make(chan *protocol.Frame, 1)
	s.mu.Lock()
	if s.ended || s.conn == nil {
		// Register frames are never resent on a resume: a detached
		// session would never see the challenge.
		s.mu.Unlock()
		return sipgw.Authorization{}, errNoAuthAnswer
	}
	s.mu.Unlock()
	if _, err := s.sendAuthRequest(f, answer); err != nil {
		return sipgw.Authorization{}, err
	}
	corr := f.Control.CorrelationID
	defer func() {
		s.mu.Lock()
		delete(s.auths, corr)
		s.mu.Unlock()
	}()
	ctx, cancel := context.WithTimeout(ctx, authAnswerTimeout)
	defer cancel()
	select {
	case r := <-answer:
		if r.Control.Type != protocol.TypeResponse {
			return sipgw.Authorization{}, errNoAuthAnswer
		}
		a, err := parseAuthorization(r.Header.Authorization)
		if err != nil {
			return sipgw.Authorization{}, err
		}
		return *a, nil
	case <-s.gone:
		return sipgw.Authorization{}, errEnded
	case <-ctx.Done():
		return sipgw.Authorization{}, ctx.Err()
	}
}

// sendAuthRequest sends f, correlated by the gateway, with its answer
// channel registered under the correlation id before it goes out.
func (s *Session) sendAuthRequest(f *protocol.Frame, answer chan *protocol.Frame) (uint64, error) {
	s.mu.Lock()
	s.authSeq++
	corr := "auth" + strconv.FormatUint(s.authSeq, 10)
	if s.auths == nil {
		s.auths = map[string]chan *protocol.Frame{}
	}
	s.auths[corr] = answer
	s.mu.Unlock()
	f.Control.CorrelationID = corr
	seq, err := s.Send(f, false)
	if err != nil {
		s.mu.Lock()
		delete(s.auths, corr)
		s.mu.Unlock()
	}
	return seq, err
}

// onRegisterFrame handles a register-package frame on a live session:
// the answer to an authenticate request, or a connect (405).
func (s *Session) onRegisterFrame(f *protocol.Frame) {
	if f.Header.Action == protocol.ActionStandby && f.Control.Type == protocol.TypeRequest {
		s.onStandby(f)
		return
	}
	if f.Header.Action != protocol.ActionAuthenticate {
		s.Send(errorFor(f, protocol.CodeMethodNotAllowed, "already connected"), false)
		return
	}
	if f.Control.Type == protocol.TypeRequest {
		s.Send(errorFor(f, protocol.CodeMethodNotAllowed, "only the gateway sends authenticate"), false)
		return
	}
	s.mu.Lock()
	ch := s.auths[f.Control.CorrelationID]
	delete(s.auths, f.Control.CorrelationID)
	s.mu.Unlock()
	if ch == nil {
		// Late (after the bound) or unsolicited: nothing waits for it.
		s.log.Debug("authenticate answer nobody waits for", "correlation_id", f.Control.CorrelationID)
		return
	}
	ch <- f
}
