package gateway

import (
	"net/http"
	"net/netip"
	"time"

	"github.com/jsonrtc/jsonrtc/auth"
	"github.com/jsonrtc/jsonrtc/protocol"
)

// Guests are anonymous and free to make, so a flood of them must cost
// little and cannot lock real guests out:
//   - a guest neither registers nor publishes presence (serve.go connect,
//     presence.Guest): it costs the SIP network nothing until it calls;
//   - each source address holds at most guest.sessions_per_address guest
//     sessions (limits.GuestSessions), so the application's session quota
//     takes many hosts to fill;
//   - a guest session that has not taken part in a call outlives its
//     socket only guest.idle_resume_timeout, not session.resume_timeout:
//     a dropped handshake gives its place back in seconds.

// clientAddr is the source address of a handshake, and whether the page
// came over https: the one place that decides them, for the handshake
// rate, the guest sessions per address and the guest cookie. Behind a
// trusted proxy, the client is the address it forwards. The zero Addr
// when unknown.
func (g *Gateway) clientAddr(r *http.Request) (addr netip.Addr, https bool) {
	addr, https, ok := g.proxies.Client(r)
	if !ok {
		return netip.Addr{}, https
	}
	return addr, https
}

// openGuest takes a place among addr's guest sessions for a new session
// of p, when p is a guest's. The release func is never nil.
func (g *Gateway) openGuest(p *auth.Principal, addr netip.Addr) (release func(), err error) {
	if p == nil || !p.Guest {
		return func() {}, nil
	}
	release, ok := g.guests.Open(addr, p.GuestPolicy.SessionsPerAddress)
	if !ok {
		g.log.Debug("guest session refused: too many from this address", "remote", addr)
		return nil, &protocol.Error{Code: protocol.CodeServiceUnavailable, Reason: "too many guest sessions from this address"}
	}
	return release, nil
}

// resumeTimeout is how long the session outlives its socket: a guest
// that has not taken part in a call has nothing to resume and gets its
// application's short idle timeout.
func (s *Session) resumeTimeout() time.Duration {
	d := s.g.cfg.Session.ResumeTimeout.D()
	if s.standby != nil {
		// Asleep on purpose, with a way to be woken (push.go).
		return s.g.cfg.Push.standbyTimeout()
	}
	if p := s.principal; p != nil && p.Guest && p.GuestPolicy.IdleResumeTimeout > 0 && !s.engaged.Load() {
		d = min(d, p.GuestPolicy.IdleResumeTimeout)
	}
	return d
}

// Guest implements presence.Guest: a guest's presence is never
// published to the SIP side.
func (s *Session) Guest() bool { return s.guest }
