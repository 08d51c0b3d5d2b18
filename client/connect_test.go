package client

import (
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/coder/websocket"
	"github.com/jsonrtc/jsonrtc/protocol"
)

// namedRefusal is a case of the tests of refusals.
type namedRefusal struct {
	name    string
	refusal refusal
}

// refusalsForNow are the gateway's refusals of a connect for now
// (docs/protocol.md §4.2): a draining node's HTTP 503, an overloaded
// store's error 503, a close 1013.
var refusalsForNow = []namedRefusal{
	{"http 503", refusal{status: 503}},
	{"error 503", refusal{code: protocol.CodeServiceUnavailable}},
	{"close 1013", refusal{close: websocket.StatusTryAgainLater}},
}

// TestConnectRefusedForNow: a first connect the gateway refuses for now
// (an overloaded store's 503, a draining node's HTTP 503, a close 1013)
// is tried again after the reconnect backoff, as a new session
// (sequence 1), until it passes.
func TestConnectRefusedForNow(t *testing.T) {
	for _, tc := range refusalsForNow {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFake(t)
				f.refuseWith = func(n int, _ string) refusal {
					if n <= 2 {
						return tc.refusal
					}
					return refusal{}
				}
				c := dial(t, f, func(o *Options) { o.ReconnectMin, o.ReconnectMax = time.Second, 4*time.Second })
				first := <-f.net.dialAt
				prev := first
				for _, hi := range []time.Duration{1, 2} {
					at := <-f.net.dialAt
					if d := at.Sub(prev); d < hi*time.Second/2 || d > hi*time.Second {
						t.Fatalf("retry after %v, want in [%v, %v]", d, hi*time.Second/2, hi*time.Second)
					}
					prev = at
				}
				if c.SessionID() != "S1" {
					t.Fatalf("session %q, want S1", c.SessionID())
				}
				// The fake's session S1 started from the last connect's
				// sequence: 1, as a new client's.
				if got := f.state().Processed; got != 1 {
					t.Fatalf("the connect that passed had sequence %d, want 1", got)
				}
			})
		})
	}
}

// TestConnectRefusedFinal: a refusal that is no "not now" (401, 403,
// error 403) fails Dial at once, without a retry.
func TestConnectRefusedFinal(t *testing.T) {
	for _, tc := range []namedRefusal{
		{"http 401", refusal{status: 401}},
		{"http 403", refusal{status: 403}},
		{"error 403", refusal{code: protocol.CodeForbidden}},
		{"close 1008", refusal{close: websocket.StatusPolicyViolation}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFake(t)
				f.refuseWith = func(int, string) refusal { return tc.refusal }
				_, err := Dial(t.Context(), f.opts())
				if err == nil {
					t.Fatal("Dial passed")
				}
				synctest.Wait()
				if n := len(f.net.dialAt); n != 1 {
					t.Fatalf("%d dials, want 1 (err %v)", n, err)
				}
			})
		})
	}
}

// TestConnectAttempts: a gateway that keeps refusing fails Dial after
// Options.ConnectAttempts, with its refusal.
func TestConnectAttempts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake(t)
		f.refuseWith = func(int, string) refusal { return refusal{status: 503} }
		o := f.opts()
		o.ConnectAttempts = 3
		_, err := Dial(t.Context(), o)
		var he *HandshakeError
		if !errors.As(err, &he) || he.Status != 503 {
			t.Fatalf("Dial: %v, want the handshake's 503", err)
		}
		if n := len(f.net.dialAt); n != 3 {
			t.Fatalf("%d dials, want 3", n)
		}
	})
}

// TestConnectRefusedNextURL: with Options.URLs, the retry of a refused
// first connect goes to the next node.
func TestConnectRefusedNextURL(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake(t)
		var hosts []string
		f.refuseWith = func(_ int, host string) refusal {
			hosts = append(hosts, host)
			if host == "n1" {
				return refusal{code: protocol.CodeServiceUnavailable}
			}
			return refusal{}
		}
		dial(t, f, func(o *Options) { o.URLs = []string{"ws://n1/ws/", "ws://n2/ws/"} })
		f.mu.Lock()
		defer f.mu.Unlock()
		if len(hosts) != 2 || hosts[0] != "n1" || hosts[1] != "n2" {
			t.Fatalf("handshakes to %v, want n1 then n2", hosts)
		}
	})
}

// TestResumeRefusedForNow: a resume the gateway refuses for now (HTTP
// 503, error 503, close 1013: a draining node, an overloaded store) is
// tried again, past Options.ConnectAttempts, until it passes within the
// resume timeout; the session goes on (docs/protocol.md §4.5).
func TestResumeRefusedForNow(t *testing.T) {
	for _, tc := range refusalsForNow {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFake(t)
				const refused = 7 // handshakes 2 to 8
				f.refuseWith = func(n int, _ string) refusal {
					if n >= 2 && n < 2+refused {
						return tc.refusal
					}
					return refusal{}
				}
				c := dial(t, f, func(o *Options) { o.ReconnectMin, o.ReconnectMax = time.Second, 2*time.Second })
				<-f.conns
				f.drop()
				waitEvent(t, c, EventResumed)
				if c.SessionID() != "S1" {
					t.Fatalf("session %q, want S1", c.SessionID())
				}
				if n := len(f.net.dialAt); n != 2+refused {
					t.Fatalf("%d dials, want %d", n, 2+refused)
				}
			})
		})
	}
}

// TestResumeRefusedFinal: a resume refused 401 or 403, over HTTP at the
// handshake or answering the resume, ends the session at once: a refused
// identity is final (docs/protocol.md §4.5). The HTTP ones were tried
// again until the resume timeout.
func TestResumeRefusedFinal(t *testing.T) {
	for _, tc := range []namedRefusal{
		{"http 401", refusal{status: 401}},
		{"http 403", refusal{status: 403}},
		{"error 401", refusal{code: protocol.CodeUnauthorized}},
		{"error 403", refusal{code: protocol.CodeForbidden}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFake(t)
				f.refuseWith = func(n int, _ string) refusal {
					if n >= 2 {
						return tc.refusal
					}
					return refusal{}
				}
				c := dial(t, f, nil)
				<-f.conns
				f.drop()
				for range c.Events() {
				}
				var he *HandshakeError
				var fe *FrameError
				switch err := c.Err(); {
				case tc.refusal.status != 0 && (!errors.As(err, &he) || he.Status != tc.refusal.status),
					tc.refusal.code != 0 && (!errors.As(err, &fe) || fe.Code != tc.refusal.code):
					t.Fatalf("the client ended with %v, want the refusal", err)
				}
				if n := len(f.net.dialAt); n != 2 {
					t.Fatalf("%d dials, want 2: the refused resume is final", n)
				}
			})
		})
	}
}

// TestRefusalRetryAfter: a refusal's Retry-After (HTTP 503) or
// retry_after (error 503) is the least wait before the next attempt at
// that node, of a first connect and of a resume; with Options.URLs the
// next attempt goes to another node at the backoff's pace.
func TestRefusalRetryAfter(t *testing.T) {
	for _, tc := range []struct {
		name    string
		refusal refusal
		urls    bool
		resume  bool
		want    time.Duration // least wait after the refused dial
		most    time.Duration
	}{
		{name: "connect http 503", refusal: refusal{status: 503, after: 3}, want: 3 * time.Second, most: 3 * time.Second},
		{name: "connect error 503", refusal: refusal{code: protocol.CodeServiceUnavailable, after: 3}, want: 3 * time.Second, most: 3 * time.Second},
		{name: "resume http 503", refusal: refusal{status: 503, after: 3}, resume: true, want: 3 * time.Second, most: 3 * time.Second},
		{name: "resume error 503", refusal: refusal{code: protocol.CodeServiceUnavailable, after: 3}, resume: true, want: 3 * time.Second, most: 3 * time.Second},
		{name: "connect http 503 to the next node", refusal: refusal{status: 503, after: 3}, urls: true, want: 50 * time.Millisecond, most: 100 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFake(t)
				refused := 1
				if tc.resume {
					refused = 2
				}
				f.refuseWith = func(n int, _ string) refusal {
					if n == refused {
						return tc.refusal
					}
					return refusal{}
				}
				c := dial(t, f, func(o *Options) {
					o.ReconnectMin, o.ReconnectMax = 100*time.Millisecond, 200*time.Millisecond
					if tc.urls {
						o.URLs = []string{"ws://n1/ws/", "ws://n2/ws/"}
					}
				})
				if tc.resume {
					<-f.net.dialAt
					<-f.conns
					f.drop()
					waitEvent(t, c, EventResumed)
				}
				at := <-f.net.dialAt // the refused one
				next := <-f.net.dialAt
				if d := next.Sub(at); d < tc.want || d > tc.most {
					t.Fatalf("next attempt %v after the refusal, want in [%v, %v]", d, tc.want, tc.most)
				}
			})
		})
	}
}
