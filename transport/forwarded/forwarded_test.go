package forwarded

import (
	"crypto/tls"
	"net/http"
	"net/netip"
	"testing"
)

func TestClient(t *testing.T) {
	ps, err := Parse([]string{"10.0.0.0/8", "192.0.2.7", "2001:db8::/32"})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, peer string
		tls        bool
		xff        []string
		proto      string
		want       string
		https      bool
	}{
		{"no proxy", "198.51.100.1:5000", false, nil, "", "198.51.100.1", false},
		{"tls peer", "198.51.100.1:5000", true, nil, "", "198.51.100.1", true},
		{"untrusted peer's headers ignored", "198.51.100.1:5000", false, []string{"203.0.113.9"}, "https", "198.51.100.1", false},
		{"trusted proxy", "10.1.2.3:5000", false, []string{"203.0.113.9"}, "https", "203.0.113.9", true},
		{"spoofed left hops ignored", "10.1.2.3:5000", false, []string{"1.1.1.1, 203.0.113.9"}, "http", "203.0.113.9", false},
		{"proxy chain", "10.1.2.3:5000", false, []string{"1.1.1.1, 203.0.113.9", "192.0.2.7"}, "https", "203.0.113.9", true},
		{"garbage rightmost", "10.1.2.3:5000", false, []string{"203.0.113.9, nonsense"}, "", "10.1.2.3", false},
		{"all trusted", "10.1.2.3:5000", false, []string{"10.9.9.9"}, "", "10.9.9.9", false},
		{"no xff", "10.1.2.3:5000", false, nil, "https", "10.1.2.3", true},
		{"ipv6 proxy", "[2001:db8::1]:443", false, []string{"2001:db9::5"}, "https", "2001:db9::5", true},
		{"proto list: nearest wins", "10.1.2.3:5000", false, nil, "https, http", "10.1.2.3", false},
	}
	for _, c := range cases {
		r := &http.Request{RemoteAddr: c.peer, Header: http.Header{}}
		if c.tls {
			r.TLS = &tls.ConnectionState{}
		}
		for _, v := range c.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		if c.proto != "" {
			r.Header.Set("X-Forwarded-Proto", c.proto)
		}
		addr, https, ok := ps.Client(r)
		if !ok || addr != netip.MustParseAddr(c.want) || https != c.https {
			t.Errorf("%s: %v https=%v ok=%v; want %s https=%v", c.name, addr, https, ok, c.want, c.https)
		}
	}
	var none Proxies
	r := &http.Request{RemoteAddr: "10.1.2.3:1", Header: http.Header{"X-Forwarded-Proto": {"https"}}}
	if _, https, _ := none.Client(r); https {
		t.Error("no trusted proxies, yet X-Forwarded-Proto believed")
	}
	if _, err := Parse([]string{"10.0.0.0/33"}); err == nil {
		t.Error("bad prefix accepted")
	}
}
