package client

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/jsonrtc/jsonrtc/protocol"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// dial connects a client to f and closes it at cleanup.
func dial(t *testing.T, f *fake, mod func(*Options)) *Client {
	t.Helper()
	o := f.opts()
	if mod != nil {
		mod(&o)
	}
	c, err := Dial(t.Context(), o)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	ev := nextEvent(t, c)
	if ev.Kind != EventConnected {
		t.Fatalf("first event %v, want connected", ev)
	}
	return c
}

func nextEvent(t *testing.T, c *Client) Event {
	t.Helper()
	ev, ok := <-c.Events()
	if !ok {
		t.Fatalf("events closed: %v", c.Err())
	}
	return ev
}

// waitEvent skips events until one of kind k.
func waitEvent(t *testing.T, c *Client, k EventKind) Event {
	t.Helper()
	for {
		if ev := nextEvent(t, c); ev.Kind == k {
			return ev
		}
	}
}

func TestConnect(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake(t)
		c := dial(t, f, func(o *Options) { o.Identity = "" })
		if c.SessionID() != "S1" || c.Identity() != "alice@example.com" {
			t.Fatalf("session %q identity %q", c.SessionID(), c.Identity())
		}
		first, err := protocol.Decode(f.nextRaw(t, false))
		if err != nil {
			t.Fatal(err)
		}
		if first.Control.Type != protocol.TypeRequest || first.Control.Package != protocol.PackageRegister ||
			first.Control.Sequence != 1 || first.Control.SessionID != "" || first.Header.Action != protocol.ActionConnect ||
			first.Header.Initiator != "" {
			t.Fatalf("connect frame %+v", first)
		}
		if err := c.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		for ev := range c.Events() {
			if ev.Kind == EventClosed && ev.Err != nil {
				t.Fatalf("closed with %v", ev.Err)
			}
		}
		if c.Err() != nil {
			t.Fatal(c.Err())
		}
	})
}

func TestAckTiming(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake(t)
		c := dial(t, f, nil)
		f.nextRaw(t, false) // connect
		// The connect response is owed an ack: 200 ms of silence later
		// an acknowledgement frame carries it.
		start := time.Now()
		ack, _ := protocol.Decode(f.nextRaw(t, false))
		if ack.Control.Type != protocol.TypeAcknowledgement || ack.Control.AckSequence != 1 || ack.Control.Sequence != 0 {
			t.Fatalf("ack frame %+v", ack.Control)
		}
		if d := time.Since(start); d != 200*time.Millisecond {
			t.Fatalf("ack after %v, want 200ms", d)
		}
		// A frame from the gateway, answered at once: the response
		// carries the ack, and no acknowledgement frame follows.
		f.send(msgFrame("hi"), false)
		ev := waitEvent(t, c, EventMessage)
		if err := ev.Message.Reply(t.Context(), 200); err != nil {
			t.Fatal(err)
		}
		resp := f.next(t)
		if resp.Control.AckSequence != 2 || resp.Control.CorrelationID != "s-hi" || resp.Header.ResponseCode != 200 {
			t.Fatalf("reply %+v %+v", resp.Control, resp.Header)
		}
		time.Sleep(time.Second) // fake time: any ack timer has fired by now
		synctest.Wait()
		for len(f.raw) > 0 {
			d := <-f.raw
			if fr, _ := protocol.Decode(d); fr != nil && fr.Control.Type == protocol.TypeAcknowledgement {
				t.Fatalf("acknowledgement frame %s though the reply carried the ack", d)
			}
		}
	})
}
