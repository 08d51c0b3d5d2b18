// Package forwarded reads what a trusted reverse proxy says about the
// client behind it: its address (X-Forwarded-For) and the scheme it used
// (X-Forwarded-Proto). Those headers are believed only when the peer of
// the TCP connection is one of the configured proxies; anyone else could
// write them. Start with [Parse] and [Proxies.Client].
package forwarded

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"
)

// Proxies is the set of trusted reverse proxies; the zero value trusts
// none.
type Proxies []netip.Prefix

// Parse reads CIDR prefixes ("10.0.0.0/8") or single addresses
// ("192.0.2.7", a /32 or /128).
func Parse(list []string) (Proxies, error) {
	out := make(Proxies, 0, len(list))
	for _, s := range list {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not an address or CIDR prefix", s)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

// Trusted reports whether a is one of the proxies.
func (ps Proxies) Trusted(a netip.Addr) bool {
	a = a.Unmap().WithZone("")
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Client returns the address of the client that made r and whether it
// used https. With a peer that is not a trusted proxy, that is the peer
// and r.TLS. Behind trusted proxies it is the rightmost X-Forwarded-For
// hop that is not itself a trusted proxy (hops to its left were written
// by the client and prove nothing), and X-Forwarded-Proto as the nearest
// proxy set it. ok is false when r.RemoteAddr is not an IP address.
func (ps Proxies) Client(r *http.Request) (addr netip.Addr, https bool, ok bool) {
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}, r.TLS != nil, false
	}
	addr, https = peer.Addr().Unmap().WithZone(""), r.TLS != nil
	if !ps.Trusted(addr) {
		return addr, https, true
	}
	if proto := lastValue(r.Header.Values("X-Forwarded-Proto")); proto != "" {
		https = strings.EqualFold(proto, "https")
	}
	hops := r.Header.Values("X-Forwarded-For")
	for i := len(hops) - 1; i >= 0; i-- {
		list := strings.Split(hops[i], ",")
		for j := len(list) - 1; j >= 0; j-- {
			hop, err := netip.ParseAddr(strings.TrimSpace(list[j]))
			if err != nil {
				// Garbage where a trusted proxy should have written an
				// address: stop at the last hop we can vouch for.
				return addr, https, true
			}
			addr = hop.Unmap().WithZone("")
			if !ps.Trusted(addr) {
				return addr, https, true
			}
		}
	}
	return addr, https, true
}

// lastValue is the rightmost element of a comma-separated header: the one
// the nearest proxy added.
func lastValue(vals []string) string {
	if len(vals) == 0 {
		return ""
	}
	v := vals[len(vals)-1]
	if i := strings.LastIndexByte(v, ','); i >= 0 {
		v = v[i+1:]
	}
	return strings.TrimSpace(v)
}
