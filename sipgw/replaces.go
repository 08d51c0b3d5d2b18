package sipgw

import (
	"context"
	"net/url"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// Attended transfer (RFC 5589 section 7): the transferee's new call
// carries a Replaces header (RFC 3891) naming the dialog between the
// transferor and the transfer target that it takes over.

// Replaces names a dialog as the UA that gets the INVITE with Replaces
// sees it: ToTag is that UA's own tag, FromTag the other party's.
type Replaces struct {
	CallID, ToTag, FromTag string
	// EarlyOnly: replace the dialog only if it is not yet answered.
	EarlyOnly bool
}

// ParseReplaces reads a Replaces header value (RFC 3891 section 6.1).
func ParseReplaces(v string) (Replaces, error) {
	var r Replaces
	parts := strings.Split(strings.TrimSpace(v), ";")
	r.CallID = strings.TrimSpace(parts[0])
	if !isCallID(r.CallID) {
		return r, invalid("Replaces: bad Call-ID")
	}
	for _, p := range parts[1:] {
		k, val, _ := strings.Cut(strings.TrimSpace(p), "=")
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "to-tag":
			r.ToTag = strings.TrimSpace(val)
		case "from-tag":
			r.FromTag = strings.TrimSpace(val)
		case "early-only":
			r.EarlyOnly = true
		}
	}
	if !isToken([]byte(r.ToTag)) || !isToken([]byte(r.FromTag)) {
		return r, invalid("Replaces: to-tag and from-tag must be tokens")
	}
	return r, nil
}

// String is the header value.
func (r Replaces) String() string {
	s := r.CallID + ";to-tag=" + r.ToTag + ";from-tag=" + r.FromTag
	if r.EarlyOnly {
		s += ";early-only"
	}
	return s
}

// isCallID: word ["@" word] (RFC 3261 section 25.1), at most 256 bytes.
func isCallID(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isTokenChar(c) || strings.IndexByte("@()<>:\\\"/[]?{}", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

// escapeURIHeader escapes a value for the headers part of a SIP URI
// (RFC 3261 section 19.1.1: hnv-unreserved / unreserved / escaped).
func escapeURIHeader(v string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-_.!~*'()[]/?:+$", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

// TransferReplacing sends a REFER for an attended transfer: the peer is
// to call target with a Replaces header naming r (RFC 5589 section 7),
// carried in the Refer-To URI. Like [Call.Transfer] it returns when the
// peer accepted it; the NOTIFYs follow as EventTransferProgress.
func (c *Call) TransferReplacing(ctx context.Context, target string, r Replaces, ext ...Header) ([]Header, error) {
	u, err := c.g.ParseTarget(target)
	if err != nil {
		return nil, err
	}
	if _, err := ParseReplaces(r.String()); err != nil {
		return nil, err
	}
	if u.Scheme == "tel" {
		return nil, invalid("an attended transfer needs a SIP target, not %q", target)
	}
	req := sip.NewRequest(sip.REFER, sip.Uri{})
	req.AppendHeader(sip.NewHeader("Refer-To", "<"+u.String()+"?Replaces="+escapeURIHeader(r.String())+">"))
	req.AppendHeader(sip.NewHeader("Referred-By", "<"+c.local.String()+">"))
	return c.simple(ctx, req, ext)
}

// Replaces returns the Replaces header of an incoming call's INVITE, and
// whether it had a valid one; an invalid one is treated as none.
func (c *Call) Replaces() (Replaces, bool) {
	if c.replaces == "" {
		return Replaces{}, false
	}
	r, err := ParseReplaces(c.replaces)
	return r, err == nil
}

// referReplaces takes the Replaces header out of a Refer-To URI (RFC
// 5589 section 7); nil when it has none. The URI keeps no headers: the
// transferee's new call must not carry what else the transferor put
// there.
func referReplaces(u *sip.Uri) (*Replaces, error) {
	var rep *Replaces
	for _, kv := range u.Headers {
		if !strings.EqualFold(kv.K, "Replaces") {
			continue
		}
		v, err := url.PathUnescape(kv.V)
		if err != nil {
			return nil, invalid("Replaces in Refer-To: %v", err)
		}
		r, err := ParseReplaces(v)
		if err != nil {
			return nil, err
		}
		rep = &r
	}
	u.Headers = nil
	return rep, nil
}
