package gateway

import (
	"net/netip"

	"github.com/jsonrtc/jsonrtc/auth"
	"github.com/jsonrtc/jsonrtc/interwork"
	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/routing"
)

// A session's SIP binding moves with it (docs/cluster.md "SIP
// registrations"). Its record keeps the +sip.instance the binding is
// registered under; the node that takes the session over registers
// under that instance with its own Contact, so that the registrar
// replaces the binding, which pointed at the node the session left (or
// that died), instead of keeping it next to the new one until it
// expires. The node the session left lets go of its share without
// removing the binding (interwork.Registrations.Moved).

// registerSession registers the identity of s for its connect or resume
// f from socket c (client address addr) by principal p (its
// application's sip_identity is the AOR bound; routing's register rules
// pick the trunk), under the instance its record names when it moved
// here; nil, nil when registration is not configured for it.
func (g *Gateway) registerSession(f *protocol.Frame, s *Session, c conn, addr netip.Addr, p *auth.Principal) (*interwork.Binding, error) {
	if !g.regs.Registers(s.identity) {
		return nil, nil
	}
	route, err := g.sipRoute(routing.Register, s.identity, p, addr)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	moved := s.regInstance
	s.mu.Unlock()
	b, err := g.regs.Register(g.ctx, interwork.Connect{Identity: s.identity, Authorization: f.Header.Authorization,
		Remote: c.RemoteAddr(), Addr: addr, Route: route, Instance: moved})
	if err == nil {
		// The binding joined may be another's, under this node's
		// instance: the record names the one the session now holds.
		s.mu.Lock()
		s.regInstance = b.Instance()
		s.mu.Unlock()
	}
	return b, err
}

// movedRegistration takes the binding's instance from r, the record s
// is about to own, and keeps it in r when s knows one (a session of this
// node writing its record anew).
func (s *Session) movedRegistration(r *record) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.regInstance == "" {
		s.regInstance = r.RegInstance
	} else {
		r.RegInstance = s.regInstance
	}
}

// endRegistration gives up the SIP binding of s, which ended: a copy
// whose record another writer took (lost) lets go of it, as a session
// taken over does, for the new owner registered it under the same
// instance; any other end removes it (the last holder's share).
func (g *Gateway) endRegistration(s *Session) {
	s.mu.Lock()
	lost := s.lost
	s.mu.Unlock()
	if lost {
		g.regs.Moved(s.id)
		return
	}
	g.regs.Ended(s.id)
}
