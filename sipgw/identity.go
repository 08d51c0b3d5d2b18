package sipgw

import (
	"github.com/emiago/sipgo/sip"
	"github.com/jsonrtc/jsonrtc/routing"
)

// This file presents the sender of a request the gateway originates for
// a web session: the From its application's sip_identity template makes,
// the identity headers of RFC 3325 the gateway (never the client: they
// are reserved headers) asserts, and RFC 3323 privacy for guests.

// anonymousFrom is the From of a request with privacy (RFC 3323 section
// 4.1.1.3).
var anonymousFrom = sip.Uri{Scheme: "sip", User: "anonymous", Host: "anonymous.invalid"}

// sender is a validated routing.Sender.
type sender struct {
	from      sip.Uri
	display   string
	asserted  *sip.Uri
	preferred *sip.Uri
	privacy   bool
}

// senderFor checks s and works out the From of identity's requests: the
// template's URI, or the identity's AOR when s has none.
func (g *UserAgent) senderFor(identity string, s routing.Sender) (sender, error) {
	var out sender
	var err error
	if s.From != "" {
		if out.from, err = parseIdentityURI("sip_identity", s.From); err != nil {
			return out, err
		}
	} else if out.from, err = g.AOR(identity); err != nil {
		return out, err
	}
	for _, x := range []struct {
		v   string
		dst **sip.Uri
	}{{s.AssertedIdentity, &out.asserted}, {s.PreferredIdentity, &out.preferred}} {
		if x.v == "" {
			continue
		}
		u, err := parseIdentityURI("identity header", x.v)
		if err != nil {
			return out, err
		}
		*x.dst = &u
	}
	if s.Privacy {
		out.privacy = true
		out.display = "Anonymous"
		out.from = anonymousFrom
	}
	return out, nil
}

// parseIdentityURI parses a sip: or sips: URI of user@host and nothing
// else, as it must be to stand in From or an identity header without
// smuggling a parameter or a header into either.
func parseIdentityURI(what, s string) (sip.Uri, error) {
	var u sip.Uri
	if hasCtl(s) || len(s) > 256 {
		return u, invalid("%s %q", what, s)
	}
	if err := sip.ParseUri(s, &u); err != nil {
		return u, invalid("%s %q: %v", what, s, err)
	}
	if (u.Scheme != "sip" && u.Scheme != "sips") || u.Password != "" || u.Port != 0 ||
		u.UriParams.Length() > 0 || u.Headers.Length() > 0 || !validUser(u.User) || !validHost(u.Host) {
		return u, invalid("%s %q is not a sip: URI of a user at a host", what, s)
	}
	clean := sip.Uri{Scheme: u.Scheme, User: u.User, Host: u.Host}
	if clean.String() != s {
		return u, invalid("%s %q does not round-trip", what, s)
	}
	return clean, nil
}

// present adds the identity headers and privacy of s to req.
func (s sender) present(req *sip.Request) {
	if s.asserted != nil {
		req.AppendHeader(sip.NewHeader("P-Asserted-Identity", "<"+s.asserted.String()+">"))
	}
	if s.preferred != nil {
		req.AppendHeader(sip.NewHeader("P-Preferred-Identity", "<"+s.preferred.String()+">"))
	}
	if s.privacy {
		// id: the network strips the asserted identity before it leaves
		// the trust domain (RFC 3325 section 7).
		req.AppendHeader(sip.NewHeader("Privacy", "id"))
	}
}
