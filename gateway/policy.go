package gateway

import (
	"github.com/jsonrtc/jsonrtc/auth"
	"github.com/jsonrtc/jsonrtc/protocol"
)

// checkDestinations applies the target policy to every destination f
// names (protocol.Destinations: a request's target, a transfer's
// refer_to, extension headers that name a party), in every package and
// frame type, before any handler sees f: the web relay and the SIP side
// then never act on an address the policy did not pass. Every
// principal's addresses must have an address's syntax; a guest's must be
// among its allowed targets, so that a guest cannot reach by a transfer
// or a header what it could not call.
//
// Refusals are logged at Debug only (a client triggers them at will) and
// counted by field.
func (s *Session) checkDestinations(f *protocol.Frame) error {
	for d := range protocol.Destinations(f) {
		label := d.Field
		if d.Header {
			label = "header"
		}
		var err error
		if !d.Header {
			err = protocol.CheckAddress(d.Field, d.Address)
		}
		if err == nil && s.principal != nil && !auth.AllowedTarget(s.principal, d.Address) {
			err = &protocol.Error{Code: protocol.CodeForbidden, Reason: d.Field + " not allowed"}
		}
		if err != nil {
			s.g.metrics.refused.WithLabelValues(label).Inc()
			s.log.Debug("destination refused", "field", d.Field, "address", d.Address, "err", err)
			return err
		}
	}
	return nil
}
