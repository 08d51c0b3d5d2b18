package push

import (
	"errors"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"
)

// ErrInternalAddress: a push endpoint's name resolved to an address of
// the gateway's own networks (loopback, private, link-local...).
var ErrInternalAddress = errors.New("push: refusing to connect to an internal address")

// Internal reports whether ip is not a public unicast address. Checking
// the endpoint's host name is not enough: DNS may point an allowed name
// there (SSRF, DNS rebinding), so the check is made on the address
// dialed.
func Internal(ip netip.Addr) bool {
	ip = ip.Unmap()
	return !ip.IsGlobalUnicast() || ip.IsPrivate() || ip.IsLoopback() ||
		cgnat.Contains(ip) || nat64.Contains(ip)
}

var (
	cgnat = netip.MustParsePrefix("100.64.0.0/10") // RFC 6598
	nat64 = netip.MustParsePrefix("64:ff9b::/96")  // RFC 6052: to anything
)

// GuardedClient is an HTTP client for push services: its dialer refuses,
// after name resolution, every internal address but those allow accepts
// (nil: none), and it follows no redirect (a redirect could name an
// internal address too).
func GuardedClient(allow func(netip.AddrPort) bool) *http.Client {
	d := &net.Dialer{Timeout: 10 * time.Second, Control: func(_, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return ErrInternalAddress
		}
		if Internal(ap.Addr()) && (allow == nil || !allow(ap)) {
			return ErrInternalAddress
		}
		return nil
	}}
	return &http.Client{
		Timeout:       10 * time.Second,
		Transport:     &http.Transport{DialContext: d.DialContext, ForceAttemptHTTP2: true, TLSHandshakeTimeout: 10 * time.Second, MaxIdleConnsPerHost: 4},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}
