package gateway

import (
	"errors"
	"net/http"

	"github.com/jsonrtc/jsonrtc/auth"
	"github.com/jsonrtc/jsonrtc/limits"
)

// retryAfterFull is the Retry-After of a handshake refused because the
// gateway or the application is full: sessions end at their own pace, so
// there is no sooner time to promise.
const retryAfterFull = "5"

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
	w.Header().Set("Retry-After", retryAfterFull)
	http.Error(w, "jsonrtc: "+reason, http.StatusServiceUnavailable)
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
