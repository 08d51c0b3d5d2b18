package client

import (
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/coder/websocket"
	"github.com/jsonrtc/jsonrtc/protocol"
)

// TestStandby: Standby sends request/standby with the channel, and once
// answered drops the socket and reconnects no more (EventStandby), for as
// long as the gateway keeps the session; Wake resumes it; a send while
// asleep wakes it too, and is delivered by the resume.
func TestStandby(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake(t)
		c := dial(t, f, func(o *Options) { o.PingInterval = -1 })
		<-f.conns
		answer := func() {
			req := f.next(t)
			if req.Header.Action != protocol.ActionStandby {
				t.Errorf("standby request %+v", req.Header)
				return
			}
			var p protocol.StandbyPayload
			if err := protocol.DecodePayload(req.Payload, &p); err != nil || p.Push == nil || p.Push.Token != "device-1" {
				t.Errorf("standby payload %s: %v", req.Payload, err)
				return
			}
			f.send(&protocol.Frame{Control: protocol.Control{Type: protocol.TypeResponse, Package: protocol.PackageRegister,
				CorrelationID: req.Control.CorrelationID, MessageState: protocol.StateFinal},
				Header: protocol.Header{Action: protocol.ActionStandby, ResponseCode: 200, Expiry: 3600}}, false)
		}
		go answer()
		d, err := c.Standby(t.Context(), protocol.PushChannel{Type: protocol.PushWebhook, Token: "device-1"})
		if err != nil || d != time.Hour {
			t.Fatalf("Standby: %s, %v", d, err)
		}
		if ev := nextEvent(t, c); ev.Kind != EventStandby {
			t.Fatalf("event %v", ev.Kind)
		}
		time.Sleep(50 * time.Minute) // past ResumeTimeout: asleep, the client does not give up
		synctest.Wait()
		select {
		case <-f.conns:
			t.Fatal("a reconnect while asleep")
		default:
		}
		if err := c.Wake(t.Context()); err != nil {
			t.Fatal(err)
		}
		<-f.conns
		if ev := waitEvent(t, c, EventResumed); ev.SessionID != "S1" {
			t.Fatalf("resumed %+v", ev)
		}

		go answer()
		if _, err := c.Standby(t.Context(), protocol.PushChannel{Type: protocol.PushWebhook, Token: "device-1"}); err != nil {
			t.Fatal(err)
		}
		waitEvent(t, c, EventStandby)
		go func() {
			m := f.next(t)
			f.send(&protocol.Frame{Control: protocol.Control{Type: protocol.TypeResponse, Package: protocol.PackageMessaging,
				CorrelationID: m.Control.CorrelationID, MessageState: protocol.StateFinal},
				Header: protocol.Header{Action: protocol.ActionSend, ResponseCode: 200}}, false)
		}()
		if code, err := c.Send(t.Context(), "bob@example.com", "text/plain", "sent asleep"); err != nil || code != 200 {
			t.Fatalf("a send while asleep: %d, %v", code, err)
		}
		waitEvent(t, c, EventResumed)
	})
}

// TestStandbyRefusedInCall: no standby while a call is up.
func TestStandbyRefusedInCall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake(t)
		c := dial(t, f, func(o *Options) { o.PingInterval = -1 })
		if _, err := c.StartCall(t.Context(), "bob@example.com", sdpA); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Standby(t.Context(), protocol.PushChannel{Type: protocol.PushWebhook, Token: "x"}); !errors.Is(err, ErrCallState) {
			t.Fatalf("Standby in a call: %v", err)
		}
	})
}

// TestCloseInStandby: Close of a session in standby resumes it on a
// socket of its own and logs out (close 1000) once the resume is
// answered, so that the gateway ends it at once instead of pushing the
// next caller to a client that is gone; a session whose resume cannot be
// made is given up after ConnectTimeout.
func TestCloseInStandby(t *testing.T) {
	standby := func(t *testing.T, f *fake, c *Client) {
		t.Helper()
		go func() {
			req := f.next(t)
			f.send(&protocol.Frame{Control: protocol.Control{Type: protocol.TypeResponse, Package: protocol.PackageRegister,
				CorrelationID: req.Control.CorrelationID, MessageState: protocol.StateFinal},
				Header: protocol.Header{Action: protocol.ActionStandby, ResponseCode: 200, Expiry: 3600}}, false)
		}()
		if _, err := c.Standby(t.Context(), protocol.PushChannel{Type: protocol.PushWebhook, Token: "device-1"}); err != nil {
			t.Fatal(err)
		}
		waitEvent(t, c, EventStandby)
		if code := <-f.closes; code == websocket.StatusNormalClosure {
			t.Fatalf("standby closed the socket %v: a logout", code)
		}
	}
	t.Run("logs out", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			f := newFake(t)
			c := dial(t, f, func(o *Options) { o.PingInterval = -1 })
			<-f.conns
			standby(t, f, c)
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			select {
			case <-f.conns:
			default:
				t.Fatal("Close in standby opened no socket")
			}
			if code := <-f.closes; code != websocket.StatusNormalClosure {
				t.Fatalf("the resumed socket closed %v, want 1000 (logout)", code)
			}
		})
	})
	t.Run("gives up", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			f := newFake(t)
			c := dial(t, f, func(o *Options) { o.PingInterval = -1; o.ConnectTimeout = 5 * time.Second })
			<-f.conns
			standby(t, f, c)
			f.set(func(f *fake) { f.blackhole = true })
			f.net.Close() // no gateway to resume on
			t0 := time.Now()
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			if d := time.Since(t0); d > 5*time.Second {
				t.Fatalf("Close took %v, want at most ConnectTimeout", d)
			}
		})
	})
}
