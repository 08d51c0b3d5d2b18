// Package fakereg is a SIP registrar for unit tests: it answers every
// REGISTER on a UDP socket with 200 OK, granting what was asked, and
// reports each one. Interop tests use Kamailio instead.
package fakereg

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Register is one REGISTER the registrar answered.
type Register struct {
	Expires  string // the Expires header
	Contact  string // the Contact URI
	Instance string // the Contact's +sip.instance, unquoted
}

// Registrar is a running fake registrar.
type Registrar struct {
	// Addr is its host:port, for sip.registrar ("sip:" + Addr).
	Addr string
	seen chan Register
}

// Start runs a registrar until the test ends.
func Start(t testing.TB) *Registrar {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	r := &Registrar{Addr: pc.LocalAddr().String(), seen: make(chan Register, 64)}
	go func() {
		buf := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			m, err := sip.ParseMessage(buf[:n])
			req, ok := m.(*sip.Request)
			if err != nil || !ok || req.Method != sip.REGISTER {
				continue
			}
			res := sip.NewResponseFromRequest(req, 200, "OK", nil)
			var seen Register
			if ct := req.Contact(); ct != nil {
				res.AppendHeader(ct.Clone())
				seen.Contact = ct.Address.String()
				v, _ := ct.Params.Get("+sip.instance")
				seen.Instance = strings.Trim(v, `"<>`)
			}
			if h := req.GetHeader("Expires"); h != nil {
				seen.Expires = h.Value()
				res.AppendHeader(sip.NewHeader("Expires", seen.Expires))
			}
			pc.WriteTo([]byte(res.String()), from)
			select {
			case r.seen <- seen:
			default: // unread: the test waiting for it fails
			}
		}
	}()
	return r
}

// Next returns the next REGISTER answered; the test fails after 10 s
// without one.
func (r *Registrar) Next(t testing.TB) Register {
	t.Helper()
	select {
	case s := <-r.seen:
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("no REGISTER")
		return Register{}
	}
}

// None fails the test when a REGISTER was answered and not yet taken by
// Next.
func (r *Registrar) None(t testing.TB) {
	t.Helper()
	select {
	case s := <-r.seen:
		t.Fatalf("unexpected REGISTER %+v", s)
	default:
	}
}
