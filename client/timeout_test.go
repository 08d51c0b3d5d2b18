package client

import (
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jsonrtc/jsonrtc/protocol"
)

// TestRequestTimeout: a gateway that takes a Send and never answers it
// fails the request with ErrRequestTimeout after the bound, not before,
// counted, and the session goes on (issue 13: nothing waits forever).
func TestRequestTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake(t)
		c := dial(t, f, func(o *Options) { o.PingInterval = -1 })
		start := time.Now()
		_, err := c.Send(t.Context(), "bob@example.com", "text/plain", "hello?")
		if !errors.Is(err, ErrRequestTimeout) {
			t.Fatalf("Send: %v, want ErrRequestTimeout", err)
		}
		if d := time.Since(start); d != 30*time.Second {
			t.Fatalf("failed after %s, want the default 30s", d)
		}
		if n := c.RequestTimeouts(); n != 1 {
			t.Fatalf("RequestTimeouts %d", n)
		}
		if got := f.next(t); got.Header.Action != protocol.ActionSend {
			t.Fatalf("the gateway got %+v", got.Header)
		}
		// A request answered in time is unaffected.
		go func() {
			req := f.next(t)
			resp := &protocol.Frame{Control: protocol.Control{Type: protocol.TypeResponse, Package: protocol.PackageMessaging,
				CorrelationID: req.Control.CorrelationID, MessageState: protocol.StateFinal},
				Header: protocol.Header{Action: protocol.ActionSend, ResponseCode: 200}}
			f.send(resp, false)
		}()
		if code, err := c.Send(t.Context(), "bob@example.com", "text/plain", "again"); err != nil || code != 200 {
			t.Fatalf("answered Send: %d %v", code, err)
		}
	})
}

// TestRequestTimeoutPerAction: RequestTimeouts overrides the bound for
// one package/action.
func TestRequestTimeoutPerAction(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake(t)
		c := dial(t, f, func(o *Options) {
			o.PingInterval = -1
			o.RequestTimeouts = map[string]time.Duration{"messaging/send": 5 * time.Second}
		})
		start := time.Now()
		if _, err := c.Send(t.Context(), "bob@example.com", "text/plain", "x"); !errors.Is(err, ErrRequestTimeout) {
			t.Fatalf("Send: %v", err)
		}
		if d := time.Since(start); d != 5*time.Second {
			t.Fatalf("failed after %s, want 5s", d)
		}
	})
	if _, err := (Options{URL: "ws://x/ws/", RequestTimeouts: map[string]time.Duration{"call/start": 0}}).withDefaults(); err == nil {
		t.Fatal("a zero bound accepted")
	}
}

// TestCallStartTimeout: a start with no answer fails the call
// (CallFailed, 408, ErrRequestTimeout) and cancels it at the gateway;
// once it rings, the bound is ProgressTimeout.
func TestCallStartTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake(t)
		c := dial(t, f, func(o *Options) { o.PingInterval = -1; o.ProgressTimeout = time.Minute })
		start := time.Now()
		k, err := c.StartCall(t.Context(), "bob@example.com", sdpA)
		if err != nil {
			t.Fatal(err)
		}
		st := f.next(t)
		ev := wantCall(t, c, k, CallFailed)
		if !errors.Is(ev.Err, ErrRequestTimeout) || ev.Code != protocol.CodeRequestTimeout || time.Since(start) != 30*time.Second {
			t.Fatalf("failed %+v after %s", ev, time.Since(start))
		}
		cancel := f.next(t)
		if cancel.Header.Action != protocol.ActionShutdown || cancel.Control.CorrelationID != st.Control.CorrelationID {
			t.Fatalf("cancel %+v %+v", cancel.Control, cancel.Header)
		}

		k, err = c.StartCall(t.Context(), "carol@example.com", sdpA)
		if err != nil {
			t.Fatal(err)
		}
		st = f.next(t)
		time.Sleep(20 * time.Second)
		ring := srvCall(protocol.TypeResponse, st.Control.SubsessionID, st.Control.CorrelationID, protocol.ActionStart)
		ring.Control.MessageState, ring.Header.ResponseCode = protocol.StateSubsequent, 180
		f.send(ring, false)
		wantCall(t, c, k, CallRinging)
		rang := time.Now()
		wantCall(t, c, k, CallFailed)
		if d := time.Since(rang); d != time.Minute {
			t.Fatalf("ringing call failed after %s, want ProgressTimeout", d)
		}
		if n := c.RequestTimeouts(); n != 2 {
			t.Fatalf("RequestTimeouts %d", n)
		}
	})
}

// TestReOfferTimeout: a re-offer with no answer fails (CallReOfferFailed,
// 408) and the call goes on: a new re-offer may follow.
func TestReOfferTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake(t)
		c := dial(t, f, func(o *Options) { o.PingInterval = -1 })
		k, err := c.StartCall(t.Context(), "bob@example.com", sdpA)
		if err != nil {
			t.Fatal(err)
		}
		st := f.next(t)
		ans := srvCall(protocol.TypeResponse, st.Control.SubsessionID, st.Control.CorrelationID, protocol.ActionStart)
		ans.Control.MessageState, ans.Header.ResponseCode = protocol.StateFinal, 200
		ans.Payload = protocol.EncodePayload(protocol.CallPayload{SDP: "answer"})
		f.send(ans, false)
		wantCall(t, c, k, CallAnswered)
		wantCall(t, c, k, CallEstablished)
		f.next(t) // complete
		if err := k.ReOffer(t.Context(), sdpA); err != nil {
			t.Fatal(err)
		}
		f.next(t)
		start := time.Now()
		ev := wantCall(t, c, k, CallReOfferFailed)
		if !errors.Is(ev.Err, ErrRequestTimeout) || ev.Code != protocol.CodeRequestTimeout || time.Since(start) != 30*time.Second {
			t.Fatalf("re-offer failed %+v after %s", ev, time.Since(start))
		}
		if err := k.ReOffer(t.Context(), sdpA); err != nil {
			t.Fatalf("a new re-offer after the timeout: %v", err)
		}
	})
}
