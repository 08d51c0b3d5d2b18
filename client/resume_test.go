package client

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jsonrtc/jsonrtc/protocol"
)

// clientMsg is a messaging request the client sends with SendFrame.
func clientMsg(body string) *protocol.Frame {
	return &protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageMessaging},
		Header:  protocol.Header{Action: protocol.ActionSend, Target: "bob@example.com"},
		Payload: protocol.EncodePayload(protocol.MessagePayload{Body: body}),
	}
}

func body(t *testing.T, fr *protocol.Frame) string {
	t.Helper()
	var p protocol.MessagePayload
	if err := protocol.DecodePayload(fr.Payload, &p); err != nil {
		t.Fatal(err)
	}
	return p.Body
}

// TestResumeLostBothWays loses two frames in each direction with the
// socket, then checks both sides deliver each exactly once, in order.
func TestResumeLostBothWays(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake(t)
		c := dial(t, f, func(o *Options) { o.AutoAcceptMessages = true })
		<-f.conns
		f.set(func(f *fake) { f.blackhole = true })
		for _, b := range []string{"c1", "c2"} {
			if _, err := c.SendFrame(t.Context(), clientMsg(b)); err != nil {
				t.Fatal(err)
			}
		}
		f.send(msgFrame("s1"), true)
		f.send(msgFrame("s2"), true)
		c.Kill()
		if ev := nextEvent(t, c); ev.Kind != EventReconnecting {
			t.Fatalf("event %v, want reconnecting", ev)
		}
		<-f.conns
		if ev := nextEvent(t, c); ev.Kind != EventResumed || ev.SessionID != "S1" {
			t.Fatalf("event %v, want resumed S1", ev)
		}
		for _, want := range []string{"s1", "s2"} {
			ev := nextEvent(t, c)
			if ev.Kind != EventMessage || ev.Message.Body != want {
				t.Fatalf("event %v, want message %s", ev, want)
			}
		}
		for i, want := range []string{"c1", "c2"} {
			fr := f.next(t)
			if body(t, fr) != want || fr.Control.Sequence != uint64(i+2) {
				t.Fatalf("gateway got %s seq %d, want %s", body(t, fr), fr.Control.Sequence, want)
			}
		}
		// The auto-accept replies come after the resent frames.
		for range 2 {
			if fr := f.next(t); fr.Control.Type != protocol.TypeResponse {
				t.Fatalf("want the replies, got %+v", fr.Control)
			}
		}

		// Duplicate suppression: the gateway repeats an old frame (as a
		// resume with a stale cslr would); it is not delivered again.
		st := f.state()
		old := st.Unsent(0)
		if len(old) == 0 {
			synctest.Wait()
			st = f.state()
		}
		dup := msgFrame("s2")
		dup.Control.SessionID, dup.Control.Sequence = "S1", 3
		f.sendRaw(dup.Marshal())
		f.send(msgFrame("s3"), false)
		if ev := nextEvent(t, c); ev.Kind != EventMessage || ev.Message.Body != "s3" {
			t.Fatalf("event %v, want message s3 (the duplicate must be dropped)", ev)
		}
	})
}

// TestResumeServerDrop: the gateway's side of the socket goes away.
func TestResumeServerDrop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake(t)
		c := dial(t, f, nil)
		<-f.conns
		f.drop()
		waitEvent(t, c, EventResumed)
		if _, err := c.SendFrame(t.Context(), clientMsg("after")); err != nil {
			t.Fatal(err)
		}
		if fr := f.next(t); body(t, fr) != "after" || fr.Control.SessionID != "S1" {
			t.Fatalf("got %+v", fr.Control)
		}
	})
}

func TestFailedResume(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake(t)
		c := dial(t, f, nil)
		<-f.conns
		k, err := c.StartCall(t.Context(), "bob@example.com", "v=0\r\nm=audio 9 RTP/AVP 0\r\n")
		if err != nil {
			t.Fatal(err)
		}
		if fr := f.next(t); fr.Control.SubsessionID != "c2" || fr.Control.CorrelationID != "c2" || fr.Control.Sequence != 2 {
			t.Fatalf("start %+v", fr.Control)
		}
		f.set(func(f *fake) { f.refuse = true; f.blackhole = true })
		sendErr := make(chan error, 1)
		go func() {
			_, err := c.Send(t.Context(), "bob@example.com", "text/plain", "lost")
			sendErr <- err
		}()
		synctest.Wait()
		c.Kill()
		waitEvent(t, c, EventReconnecting)
		var lostCall, lost bool
		for !lost {
			ev := nextEvent(t, c)
			switch {
			case ev.Kind == EventCall && ev.Call == k && ev.CallEvent == CallFailed:
				lostCall = true
			case ev.Kind == EventSessionLost:
				if ev.PrevSessionID != "S1" || ev.SessionID != "S2" || !errors.Is(ev.Err, ErrSessionLost) {
					t.Fatalf("session lost %+v", ev)
				}
				lost = true
			default:
				t.Fatalf("unexpected %v", ev)
			}
		}
		if !lostCall {
			t.Fatal("the call did not fail")
		}
		if err := <-sendErr; !errors.Is(err, ErrSessionLost) {
			t.Fatalf("pending Send: %v", err)
		}
		if c.SessionID() != "S2" {
			t.Fatalf("session %s", c.SessionID())
		}
		if _, err := c.SendFrame(t.Context(), clientMsg("new")); err != nil {
			t.Fatal(err)
		}
		fr := f.next(t)
		if fr.Control.SessionID != "S2" || fr.Control.Sequence != 2 || body(t, fr) != "new" {
			t.Fatalf("first frame of the new session %+v", fr.Control)
		}
		if err := k.Hangup(t.Context()); !errors.Is(err, ErrCallState) {
			t.Fatalf("hangup of a lost call: %v", err)
		}
		// The new session's numbering lets it resume.
		f.set(func(f *fake) { f.refuse = false })
		c.Kill()
		waitEvent(t, c, EventReconnecting)
		if ev := nextEvent(t, c); ev.Kind != EventResumed || ev.SessionID != "S2" {
			t.Fatalf("event %v, want resumed S2", ev)
		}
	})
}

// TestPingDoubling: no pong, so pings repeat at doubling intervals, then
// the client reconnects.
func TestPingDoubling(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake(t)
		c := dial(t, f, func(o *Options) {
			o.PingInterval, o.PongTimeout, o.PingGiveUp = 10*time.Second, time.Second, 15*time.Second
		})
		<-f.conns
		start := time.Now()
		waitPing := func() time.Duration {
			t.Helper()
			for {
				if d := f.nextRaw(t, true); string(d) == "ping" {
					return time.Since(start)
				}
			}
		}
		// Answered: the next ping comes a full interval later.
		if d := waitPing(); d != 10*time.Second {
			t.Fatalf("first ping at %v", d)
		}
		if d := waitPing(); d != 20*time.Second {
			t.Fatalf("ping after a pong at %v, want 20s", d)
		}
		// The fake hands the ping over before it reads noPong: this
		// ping is answered once the fake waits again, not unanswered.
		synctest.Wait()
		f.set(func(f *fake) { f.noPong = true })
		for _, want := range []time.Duration{30, 31, 33, 37} {
			if d := waitPing(); d != want*time.Second {
				t.Fatalf("ping at %v, want %v", d, want*time.Second)
			}
		}
		ev := waitEvent(t, c, EventReconnecting)
		if d := time.Since(start); d != 45*time.Second || !errors.Is(ev.Err, errPingTimeout) {
			t.Fatalf("reconnect at %v (%v), want 45s", d, ev.Err)
		}
		f.set(func(f *fake) { f.noPong = false })
		waitEvent(t, c, EventResumed)
	})
}

// TestBackoff: attempts are immediate, then jittered and doubling up to
// the maximum, until the resume timeout closes the client.
func TestBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake(t)
		c := dial(t, f, func(o *Options) {
			o.ReconnectMin, o.ReconnectMax, o.ResumeTimeout = time.Second, 4*time.Second, 20*time.Second
		})
		<-f.conns
		<-f.net.dialAt
		f.net.refuse.Store(true)
		c.Kill()
		lost := time.Now()
		waitEvent(t, c, EventReconnecting)
		prev := <-f.net.dialAt
		if prev != lost {
			t.Fatalf("first attempt after %v, want immediate", prev.Sub(lost))
		}
		for _, hi := range []time.Duration{1, 2, 4, 4, 4} {
			at := <-f.net.dialAt
			d := at.Sub(prev)
			if d < hi*time.Second/2 || d > hi*time.Second {
				t.Fatalf("attempt after %v, want in [%v, %v]", d, hi*time.Second/2, hi*time.Second)
			}
			prev = at
		}
		ev := waitEvent(t, c, EventClosed)
		if !errors.Is(ev.Err, ErrResumeTimeout) || !errors.Is(c.Err(), ErrResumeTimeout) {
			t.Fatalf("closed with %v / %v", ev.Err, c.Err())
		}
		if d := time.Since(lost); d != 20*time.Second {
			t.Fatalf("gave up after %v", d)
		}
	})
}

// TestKillRealTCP resumes after an abrupt close of a real TCP socket.
func TestKillRealTCP(t *testing.T) {
	f := newFake(t)
	srv := httptest.NewServer(f.srv.Handler)
	t.Cleanup(srv.Close)
	t.Cleanup(f.close) // runs before srv.Close: ends the handlers first
	c, err := Dial(t.Context(), Options{URL: "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws/", Identity: "alice@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitEvent(t, c, EventConnected)
	for i := range 3 {
		c.Kill()
		waitEvent(t, c, EventResumed)
		if _, err := c.SendFrame(t.Context(), clientMsg(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
		if fr := f.next(t); body(t, fr) != fmt.Sprint(i) {
			t.Fatalf("got %s", body(t, fr))
		}
	}
}

// TestResumeLargeWindow resends nearly a full window in one go: the write
// queue must take it without declaring the new socket dead.
func TestResumeLargeWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake(t)
		c := dial(t, f, nil)
		<-f.conns
		f.set(func(f *fake) { f.blackhole = true })
		const n = 1000
		for i := range n {
			if _, err := c.SendFrame(t.Context(), clientMsg(fmt.Sprint(i))); err != nil {
				t.Fatal(err)
			}
		}
		c.Kill()
		waitEvent(t, c, EventReconnecting)
		if ev := nextEvent(t, c); ev.Kind != EventResumed {
			t.Fatalf("event %v, want resumed", ev)
		}
		for i := range n {
			if fr := f.next(t); body(t, fr) != fmt.Sprint(i) {
				t.Fatalf("frame %d is %s", i, body(t, fr))
			}
		}
		// The window is full of unacknowledged frames until the gateway
		// acks; past the limit a send is refused, not lost.
		f.set(func(f *fake) { f.blackhole = true })
		var err error
		for i := 0; i < 2000 && err == nil; i++ {
			_, err = c.SendFrame(t.Context(), clientMsg("x"))
		}
		if !errors.Is(err, ErrWindowFull) {
			t.Fatalf("err = %v, want ErrWindowFull", err)
		}
	})
}

// TestURLsRotate: with Options.URLs, each reconnect goes to the next URL
// in turn (a cluster's next node), and the session resumes there.
func TestURLsRotate(t *testing.T) {
	f := newFake(t)
	var mu sync.Mutex
	hits := map[string]int{}
	var urls []string
	for _, name := range []string{"n1", "n2", "n3"} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			hits[name]++
			mu.Unlock()
			f.srv.Handler.ServeHTTP(w, r)
		}))
		t.Cleanup(srv.Close)
		urls = append(urls, "ws"+strings.TrimPrefix(srv.URL, "http")+"/ws/")
	}
	t.Cleanup(f.close) // runs before the servers close: ends the handlers first
	c, err := Dial(t.Context(), Options{URLs: urls, Identity: "alice@example.com", URL: "ws://ignored.invalid/ws/"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitEvent(t, c, EventConnected)
	for range 4 {
		c.Kill()
		waitEvent(t, c, EventResumed)
	}
	mu.Lock()
	defer mu.Unlock()
	if hits["n1"] != 2 || hits["n2"] != 2 || hits["n3"] != 1 {
		t.Fatalf("handshakes per URL %v, want n1 2, n2 2, n3 1", hits)
	}
}
