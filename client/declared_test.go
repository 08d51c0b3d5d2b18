package client

import (
	"encoding/json"
	"errors"
	"testing"
	"testing/synctest"

	"github.com/jsonrtc/jsonrtc/protocol"
)

// TestDeclaredRequest: Request sends the declared action and returns the
// response frame; an error frame is a *FrameError with the frame.
func TestDeclaredRequest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake(t)
		c := dial(t, f, nil)
		answer := func(code int) {
			req := f.next(t)
			if req.Header.Action != "x-lookup" || req.Header.Target != "sip:dir@example.com" || string(req.Payload) != `{"q":"bob"}` {
				t.Errorf("request %s", req.Marshal())
			}
			out := &protocol.Frame{
				Control: protocol.Control{Type: protocol.TypeResponse, Package: protocol.PackageMessaging, CorrelationID: req.Control.CorrelationID, MessageState: protocol.StateFinal},
				Header:  protocol.Header{Action: "x-lookup", ResponseCode: code},
				Payload: json.RawMessage(`{"found":true}`),
			}
			if code >= 300 {
				out.Control.Type, out.Header.ResponseCode, out.Header.ErrorCode, out.Header.Reason = protocol.TypeError, 0, code, "payload.q: too short"
			}
			f.send(out, false)
		}
		ext := []protocol.Ext{{Name: "X-Tenant", Value: "acme"}}
		go answer(200)
		res, err := c.Request(t.Context(), protocol.PackageMessaging, "x-lookup", "sip:dir@example.com", ext, json.RawMessage(`{"q":"bob"}`))
		if err != nil || res.Header.ResponseCode != 200 || string(res.Payload) != `{"found":true}` {
			t.Fatalf("response %v %v", res, err)
		}
		go answer(400)
		res, err = c.Request(t.Context(), protocol.PackageMessaging, "x-lookup", "sip:dir@example.com", ext, json.RawMessage(`{"q":"bob"}`))
		var fe *FrameError
		if !errors.As(err, &fe) || fe.Code != 400 || res == nil || res.Header.Reason != "payload.q: too short" {
			t.Fatalf("error %v %v", res, err)
		}
	})
}

// TestDeclaredIncoming: a request of an action the client does not know
// is EventRequest; Respond answers it once.
func TestDeclaredIncoming(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake(t)
		c := dial(t, f, nil)
		f.send(&protocol.Frame{
			Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageCall, SubsessionID: "s1", CorrelationID: "s9"},
			Header:  protocol.Header{Action: "x-score", Initiator: "bob@example.com", Target: "alice@example.com"},
			Payload: json.RawMessage(`{"points":9}`),
		}, false)
		ev := waitEvent(t, c, EventRequest)
		if ev.Request.Frame.Header.Action != "x-score" || string(ev.Request.Frame.Payload) != `{"points":9}` {
			t.Fatalf("request %s", ev.Request.Frame.Marshal())
		}
		if err := ev.Request.Respond(t.Context(), 200, "", nil, json.RawMessage(`{"ok":true}`)); err != nil {
			t.Fatal(err)
		}
		resp := f.next(t)
		if resp.Control.Type != protocol.TypeResponse || resp.Control.CorrelationID != "s9" || resp.Control.SubsessionID != "s1" ||
			resp.Header.ResponseCode != 200 || string(resp.Payload) != `{"ok":true}` {
			t.Fatalf("response %s", resp.Marshal())
		}
		if err := ev.Request.Respond(t.Context(), 486, "busy", nil, nil); !errors.Is(err, ErrCallState) {
			t.Fatalf("second answer: %v", err)
		}
	})
}

// TestDeclaredUnhandled: with Options.Requests set, a request of an
// action it does not list is answered 405 at once and makes no event;
// one it lists comes as EventRequest.
func TestDeclaredUnhandled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake(t)
		c := dial(t, f, func(o *Options) { o.Requests = []string{"call/x-score"} })
		req := func(action protocol.Action, corr string) {
			f.send(&protocol.Frame{
				Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageCall, SubsessionID: "s1", CorrelationID: corr},
				Header:  protocol.Header{Action: action, Initiator: "bob@example.com", Target: "alice@example.com"},
			}, false)
		}
		req("x-alert", "s8")
		resp := f.next(t)
		if resp.Control.Type != protocol.TypeError || resp.Header.ErrorCode != 405 || resp.Control.CorrelationID != "s8" ||
			resp.Control.SubsessionID != "s1" || resp.Header.Action != "x-alert" {
			t.Fatalf("answer %s", resp.Marshal())
		}
		req("x-score", "s9")
		if ev := waitEvent(t, c, EventRequest); ev.Request.Frame.Header.Action != "x-score" || ev.Request.Frame.Control.CorrelationID != "s9" {
			t.Fatalf("event %s", ev.Request.Frame.Marshal())
		}
	})
}
