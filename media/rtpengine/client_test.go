package rtpengine

import (
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestPing(t *testing.T) {
	c := dialFake(t, newFakeNG(t, ok), nil)
	if err := c.Ping(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// TestRequestFields: the typed options reach rtpengine under the ng
// protocol's names, empty ones left out.
func TestRequestFields(t *testing.T) {
	f := newFakeNG(t, ok)
	c := dialFake(t, f, nil)
	res, err := c.Offer(t.Context(), &Request{
		CallID: "c1", FromTag: "f1", ViaBranch: "z9hG4bK1", SDP: "v=0\r\n",
		Flags: []string{"trust-address"}, Replace: []string{"origin"}, RTCPMux: []string{"demux"},
		ICE: "remove", DTLS: "off", TransportProtocol: "RTP/AVP", SDES: []string{"off"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.SDP != "rewritten offer" || res.Result != "ok" {
		t.Fatalf("response %+v", res)
	}
	want := map[string]any{
		"command": "offer", "call-id": "c1", "from-tag": "f1", "via-branch": "z9hG4bK1", "sdp": "v=0\r\n",
		"flags": []any{"trust-address"}, "replace": []any{"origin"}, "rtcp-mux": []any{"demux"},
		"ICE": "remove", "DTLS": "off", "transport-protocol": "RTP/AVP", "SDES": []any{"off"},
	}
	if got := f.requests()[0]; !reflect.DeepEqual(got, want) {
		t.Fatalf("sent %#v\nwant %#v", got, want)
	}
	if _, err := c.Offer(t.Context(), &Request{}); err == nil {
		t.Fatal("an offer without call-id was sent")
	}
}

// TestRetransmit: a lost request is sent again with the same cookie (so
// rtpengine answers it from its cache instead of executing it twice).
func TestRetransmit(t *testing.T) {
	f := newFakeNG(t, func(f *fakeNG, cookie string, req map[string]any, n int) map[string]any {
		if n < 3 {
			return nil // the first two copies are lost
		}
		return ok(f, cookie, req, n)
	})
	c := dialFake(t, f, fastRetry)
	if err := c.Ping(t.Context()); err != nil {
		t.Fatal(err)
	}
	// At least two copies went again (more if the machine is slow enough
	// for another tick before the reply).
	if st := c.Stats(); st.Retransmits < 2 || st.Timeouts != 0 {
		t.Errorf("stats %+v, want 2 retransmits or more", st)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.seen) != 1 {
		t.Fatalf("cookies %v, want one cookie for every copy", f.seen)
	}
	for _, n := range f.seen {
		if n < 3 {
			t.Fatalf("request received %d times, want 3 or more", n)
		}
	}
}

func TestTimeout(t *testing.T) {
	f := newFakeNG(t, func(*fakeNG, string, map[string]any, int) map[string]any { return nil })
	c := dialFake(t, f, &Options{Retransmit: 10 * time.Millisecond, Timeout: 100 * time.Millisecond})
	if err := c.Ping(t.Context()); !errors.Is(err, ErrTimeout) {
		t.Fatalf("ping of a silent server: %v, want ErrTimeout", err)
	}
	if st := c.Stats(); st.Timeouts != 1 || st.Retransmits == 0 {
		t.Errorf("stats %+v, want one timeout after retransmits", st)
	}
}

func TestErrorReason(t *testing.T) {
	f := newFakeNG(t, func(*fakeNG, string, map[string]any, int) map[string]any {
		return map[string]any{"result": "error", "error-reason": "Unknown call-id"}
	})
	c := dialFake(t, f, nil)
	_, err := c.Query(t.Context(), &Request{CallID: "nope"})
	var re *Error
	if !errors.As(err, &re) || re.Reason != "Unknown call-id" || re.Command != "query" {
		t.Fatalf("query: %v, want *Error with rtpengine's reason", err)
	}
}

// TestCookieMatching: concurrent requests answered out of order each get
// their own reply; replies to unknown cookies and garbage are ignored.
func TestCookieMatching(t *testing.T) {
	var mu sync.Mutex
	var held []func()
	f := newFakeNG(t, func(f *fakeNG, cookie string, req map[string]any, n int) map[string]any {
		if n > 1 {
			return nil
		}
		mu.Lock()
		defer mu.Unlock()
		held = append(held, func() {
			out, _ := encode([]byte(cookie+" "), map[string]any{"result": "ok", "sdp": req["call-id"]})
			f.conn.WriteToUDP(out, f.peer)
		})
		if len(held) < 4 {
			return nil
		}
		// All four arrived: garbage first, then the replies newest first.
		f.conn.WriteToUDP([]byte("deadbeef d6:result2:oke"), f.peer)
		f.conn.WriteToUDP([]byte("no-space"), f.peer)
		for i := len(held) - 1; i >= 0; i-- {
			held[i]()
		}
		return nil
	})
	c := dialFake(t, f, &Options{Retransmit: time.Minute, Timeout: 5 * time.Second})
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for i := range 4 {
		wg.Go(func() {
			id := fmt.Sprint("call-", i)
			res, err := c.Offer(t.Context(), &Request{CallID: id})
			if err == nil && res.SDP != id {
				err = fmt.Errorf("request %s got the reply of %s", id, res.SDP)
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	// The garbage and the unknown cookie were sent before the replies,
	// so they have been read (the socket keeps order from one sender).
	if st := c.Stats(); st.Stray != 2 {
		t.Errorf("stats %+v, want the 2 stray datagrams counted", st)
	}
}

func TestClosePendingRequest(t *testing.T) {
	f := newFakeNG(t, func(*fakeNG, string, map[string]any, int) map[string]any { return nil })
	c, err := Dial(t.Context(), f.addr(), &Options{Retransmit: time.Minute, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- c.Ping(t.Context()) }()
	<-f.got // the request is out
	c.Close()
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Fatalf("pending ping after Close: %v, want ErrClosed", err)
	}
	if err := c.Ping(t.Context()); !errors.Is(err, ErrClosed) {
		t.Fatalf("ping after Close: %v, want ErrClosed", err)
	}
}
