// Package sipstream is a SIP peer over TCP or TLS for unit tests: it
// listens, dials, and reports every message it reads with the
// connection it came on, where a test writes its answer. Interop tests
// use Kamailio and SIPp instead.
package sipstream

import (
	"crypto/tls"
	"errors"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Peer is a running peer.
type Peer struct {
	tp   string // TCP or TLS
	ln   net.Listener
	msgs chan Msg

	mu     sync.Mutex
	closed bool
	conns  []net.Conn
	wg     sync.WaitGroup
}

// Msg is a message the peer read.
type Msg struct {
	Msg  sip.Message
	Conn net.Conn
	// Accepted: it came on a connection the peer accepted, not one it
	// dialled.
	Accepted bool
}

// Start runs a peer on 127.0.0.1 until the test ends, over tp: TCP, or
// TLS with the certificate of certFile and keyFile.
func Start(t testing.TB, tp, certFile, keyFile string) *Peer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if tp == "TLS" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			ln.Close()
			t.Fatal(err)
		}
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}})
	}
	p := &Peer{tp: tp, ln: ln, msgs: make(chan Msg, 64)}
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.serve(c, true)
		}
	})
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		p.closed = true
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

// Addr is the peer's listening address (host:port).
func (p *Peer) Addr() string { return p.ln.Addr().String() }

// Port is the peer's listening port.
func (p *Peer) Port() int { return p.ln.Addr().(*net.TCPAddr).Port }

// Dial connects to addr over the peer's transport (a certificate there
// is not checked); the peer reads what comes back on it.
func (p *Peer) Dial(t testing.TB, addr string) net.Conn {
	t.Helper()
	var c net.Conn
	var err error
	if p.tp == "TLS" {
		c, err = tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
	} else {
		c, err = net.DialTimeout("tcp", addr, 5*time.Second)
	}
	if err != nil {
		t.Fatal(err)
	}
	p.serve(c, false)
	return c
}

// serve reads c until it closes; a message the test does not take in
// time (64 waiting) is dropped.
func (p *Peer) serve(c net.Conn, accepted bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.Close()
		return
	}
	p.conns = append(p.conns, c)
	p.wg.Go(func() {
		par := sip.NewParser().NewSIPStream()
		buf := make([]byte, 65535)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			err = par.ParseSIPStream(buf[:n], func(m sip.Message) {
				select {
				case p.msgs <- Msg{Msg: m, Conn: c, Accepted: accepted}:
				default:
				}
			})
			if err != nil && !errors.Is(err, sip.ErrParseSipPartial) {
				return
			}
		}
	})
}

// Next returns the next message the peer reads that ok takes (what
// names it in the failure), within 10 s.
func (p *Peer) Next(t testing.TB, what string, ok func(sip.Message) bool) Msg {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case m := <-p.msgs:
			if ok(m.Msg) {
				return m
			}
		case <-timeout:
			t.Fatalf("no %s at the %s peer", what, p.tp)
			return Msg{}
		}
	}
}

// Response returns the next response of code the peer reads.
func (p *Peer) Response(t testing.TB, code int) (*sip.Response, Msg) {
	t.Helper()
	m := p.Next(t, strconv.Itoa(code), func(m sip.Message) bool {
		res, ok := m.(*sip.Response)
		return ok && res.StatusCode == code
	})
	return m.Msg.(*sip.Response), m
}

// Request returns the next request of method the peer reads.
func (p *Peer) Request(t testing.TB, method sip.RequestMethod) (*sip.Request, Msg) {
	t.Helper()
	m := p.Next(t, string(method), func(m sip.Message) bool {
		req, ok := m.(*sip.Request)
		return ok && req.Method == method
	})
	return m.Msg.(*sip.Request), m
}
