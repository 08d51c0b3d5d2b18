package rtpengine

import (
	"bytes"
	"net"
	"sync"
	"testing"
	"time"
)

// fakeNG is a fake rtpengine for unit tests: a UDP socket that records
// each request and answers it with what reply returns (nothing if nil).
type fakeNG struct {
	conn  *net.UDPConn
	reply func(f *fakeNG, cookie string, req map[string]any, n int) map[string]any

	mu   sync.Mutex
	reqs []map[string]any
	seen map[string]int // copies of each cookie received
	got  chan struct{}  // a datagram arrived
	peer *net.UDPAddr   // the last sender
}

func newFakeNG(t *testing.T, reply func(f *fakeNG, cookie string, req map[string]any, n int) map[string]any) *fakeNG {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeNG{conn: c, reply: reply, seen: map[string]int{}, got: make(chan struct{}, 100)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, maxReply)
		for {
			n, from, err := c.ReadFromUDP(buf)
			if err != nil {
				return
			}
			cookie, body, _ := bytes.Cut(buf[:n], []byte(" "))
			v, err := decode(body)
			if err != nil {
				t.Errorf("fake ng: undecodable request %q: %v", buf[:n], err)
				continue
			}
			req := v.(map[string]any)
			f.mu.Lock()
			f.peer = from
			f.seen[string(cookie)]++
			copies := f.seen[string(cookie)]
			if copies == 1 {
				f.reqs = append(f.reqs, req)
			}
			f.mu.Unlock()
			if r := f.reply(f, string(cookie), req, copies); r != nil {
				out, _ := encode(append(cookie, ' '), r)
				c.WriteToUDP(out, from)
			}
			select {
			case f.got <- struct{}{}:
			default:
			}
		}
	}()
	t.Cleanup(func() { c.Close(); <-done })
	return f
}

func (f *fakeNG) addr() string { return f.conn.LocalAddr().String() }

func (f *fakeNG) requests() []map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]map[string]any(nil), f.reqs...)
}

func dialFake(t *testing.T, f *fakeNG, opt *Options) *Client {
	t.Helper()
	c, err := Dial(t.Context(), f.addr(), opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// ok answers offer and answer with an SDP naming the command, the rest
// with "ok" (ping with "pong").
func ok(_ *fakeNG, _ string, req map[string]any, _ int) map[string]any {
	switch req["command"] {
	case "ping":
		return map[string]any{"result": "pong"}
	case "offer", "answer":
		return map[string]any{"result": "ok", "sdp": "rewritten " + req["command"].(string)}
	}
	return map[string]any{"result": "ok"}
}

var fastRetry = &Options{Retransmit: 20 * time.Millisecond, Timeout: 2 * time.Second}
