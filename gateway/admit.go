package gateway

import (
	"errors"
	"math/rand/v2"
	"net/http"
	"strconv"

	"github.com/jsonrtc/jsonrtc/auth"
	"github.com/jsonrtc/jsonrtc/limits"
	"github.com/jsonrtc/jsonrtc/protocol"
)

// retryAfterFull is the Retry-After, in seconds, of a connect refused
// because the gateway, the application or the identity is full: sessions
// end at their own pace, so there is no sooner time to promise.
const retryAfterFull = 5

// retryAfterSoon is the Retry-After, in seconds, of a connect refused for
// moments: a node shutting down, draining or cut off from its cluster
// (the next attempt lands on another node, or on this one restarted), or
// a store slow to take a session's admission. 1 or 2 at random, so that
// the clients refused together do not all come back in the same second.
func retryAfterSoon() int { return 1 + rand.IntN(2) }

// refuseForNow answers a handshake 503 with Retry-After (seconds) and
// the text msg (docs/protocol.md §1.1); the SDKs wait at least that long
// before their next attempt at this node.
func refuseForNow(w http.ResponseWriter, msg string, after int) {
	w.Header().Set("Retry-After", strconv.Itoa(after))
	http.Error(w, msg, http.StatusServiceUnavailable)
}

// retryLater is a connect refused for a while: error 503 with the
// extension header retry_after (whole seconds), as a registration's
// interwork.RetryError is answered (docs/protocol.md §4.2).
type retryLater struct {
	err   *protocol.Error
	after int
}

func (e *retryLater) Error() string { return e.err.Error() }
func (e *retryLater) Unwrap() error { return e.err }

// unavailable is a connect refused 503 with reason for after seconds.
func unavailable(reason string, after int) error {
	return &retryLater{err: &protocol.Error{Code: protocol.CodeServiceUnavailable, Reason: reason}, after: after}
}

// refuseBeforeUpgrade answers with HTTP 503 and Retry-After, before the
// upgrade, a handshake that could only start a new session when no new
// session can be admitted (the gateway at session.max_sessions, or the
// application at its session quota), and reports whether it did.
//
// A resume takes no new slot and must get its session back even then;
// its session id comes only in the connect frame after the upgrade. So
// the handshake is let through (and a new session refused later with an
// error frame) whenever it may be a resume: the principal's identity is
// not known yet (open applications), or it has a session here. The
// per-identity session quota is therefore never applied here: an identity
// at its cap has sessions, any of which may be resuming.
func (g *Gateway) refuseBeforeUpgrade(w http.ResponseWriter, p *auth.Principal) bool {
	if p.Identity == "" || g.hasSession(p.Application, p.Identity) {
		return false
	}
	g.mu.Lock()
	full := len(g.sessions) >= g.cfg.Session.MaxSessions
	g.mu.Unlock()
	reason := "too many sessions"
	if !full {
		var le *limits.Error
		if err := g.lim.PeekApplicationSessions(p.Application, p.Limits); !errors.As(err, &le) {
			return false
		}
		reason = "application session limit reached"
	}
	g.metrics.handshakes.WithLabelValues("full").Inc()
	refuseForNow(w, "jsonrtc: "+reason, retryAfterFull)
	return true
}

// hasSession reports whether identity has a session (connected or
// waiting for a resume) in application app.
func (g *Gateway) hasSession(app, identity string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, s := range g.byIdentity[identity] {
		if s.app == app {
			return true
		}
	}
	return false
}
