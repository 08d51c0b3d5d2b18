package client

import (
	"strconv"
	"testing"
	"testing/synctest"

	"github.com/jsonrtc/jsonrtc/protocol"
)

// wantExt checks that fr is a frame of action carrying the extension
// header x-tag with value want, the one the test passed to the method.
func wantExt(t *testing.T, fr *protocol.Frame, action protocol.Action, want string) {
	t.Helper()
	if fr.Header.Action != action {
		t.Fatalf("frame %s/%s, want %s", fr.Control.Type, fr.Header.Action, action)
	}
	if e, ok := fr.Header.ExtValue("x-tag"); !ok || e.Value != want {
		t.Fatalf("%s/%s extension headers %+v, want x-tag %q", fr.Control.Type, action, fr.Header.Ext, want)
	}
}

func tag(v string) protocol.Ext { return protocol.Ext{Name: "x-tag", Value: v} }

// Issue 16: every method that sends a frame takes extension headers and
// puts them on the frame.
func TestExtensionHeadersMessaging(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake(t)
		c := dial(t, f, nil)
		done := make(chan error, 1)
		go func() {
			_, err := c.Send(t.Context(), "bob@example.com", "text/plain", "hello", tag("send"))
			done <- err
		}()
		req := f.next(t)
		wantExt(t, req, protocol.ActionSend, "send")
		f.send(&protocol.Frame{Control: protocol.Control{Type: protocol.TypeResponse, Package: protocol.PackageMessaging, CorrelationID: req.Control.CorrelationID},
			Header: protocol.Header{Action: protocol.ActionSend, ResponseCode: 200}}, false)
		if err := <-done; err != nil {
			t.Fatal(err)
		}

		for i, code := range []int{200, 486} {
			f.send(msgFrame("m"+strconv.Itoa(i)), false)
			ev := waitEvent(t, c, EventMessage)
			if err := ev.Message.Reply(t.Context(), code, tag("reply")); err != nil {
				t.Fatal(err)
			}
			wantExt(t, f.next(t), protocol.ActionSend, "reply")
		}
	})
}

func TestExtensionHeadersCall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake(t)
		c := dial(t, f, func(o *Options) { o.ManualComplete = true })
		k, err := c.StartCall(t.Context(), "bob@example.com", sdpA)
		if err != nil {
			t.Fatal(err)
		}
		f.next(t)
		ans := srvCall(protocol.TypeResponse, "c2", "c2", protocol.ActionStart)
		ans.Control.MessageState, ans.Header.ResponseCode = protocol.StateFinal, 200
		ans.Payload = protocol.EncodePayload(protocol.CallPayload{SDP: "answer"})
		f.send(ans, false)
		wantCall(t, c, k, CallAnswered)
		if err := k.Complete(t.Context(), "", tag("complete")); err != nil {
			t.Fatal(err)
		}
		wantExt(t, f.next(t), protocol.ActionComplete, "complete")
		if err := k.DTMF(t.Context(), "1", 0, tag("dtmf")); err != nil {
			t.Fatal(err)
		}
		wantExt(t, f.next(t), protocol.ActionDTMF, "dtmf")
		if err := k.Trickle(t.Context(), "a=mid:0\r\n", tag("trickle")); err != nil {
			t.Fatal(err)
		}
		wantExt(t, f.next(t), protocol.ActionTrickle, "trickle")

		tf := srvCall(protocol.TypeRequest, "c2", "s5", protocol.ActionTransfer)
		tf.Header.ReferTo = "sip:carol@example.com"
		f.send(tf, false)
		wantCall(t, c, k, CallTransfer)
		if err := k.RespondTransfer(t.Context(), 202, tag("accept")); err != nil {
			t.Fatal(err)
		}
		wantExt(t, f.next(t), protocol.ActionTransfer, "accept")
		if err := k.ReportTransfer(t.Context(), 200, tag("report")); err != nil {
			t.Fatal(err)
		}
		wantExt(t, f.next(t), protocol.ActionTransfer, "report")

		// A refusal is an error frame; it carries them too.
		f.send(tf, false)
		wantCall(t, c, k, CallTransfer)
		if err := k.RespondTransfer(t.Context(), 603, tag("refuse")); err != nil {
			t.Fatal(err)
		}
		if r := f.next(t); r.Control.Type != protocol.TypeError {
			t.Fatalf("refusal %s", r.Control.Type)
		} else {
			wantExt(t, r, protocol.ActionTransfer, "refuse")
		}
	})
}
