package client

import (
	"errors"
	"slices"
	"strconv"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jsonrtc/jsonrtc/protocol"
)

const sdpA = "v=0\r\nm=audio 9 RTP/AVP 0\r\na=sendrecv\r\n"

func srvCall(typ protocol.Type, sub, corr string, action protocol.Action) *protocol.Frame {
	return &protocol.Frame{
		Control: protocol.Control{Type: typ, Package: protocol.PackageCall, SubsessionID: sub, CorrelationID: corr},
		Header:  protocol.Header{Action: action, Initiator: "alice@example.com", Target: "bob@example.com"},
	}
}

func wantCall(t *testing.T, c *Client, k *Call, want CallEvent) Event {
	t.Helper()
	ev := nextEvent(t, c)
	if ev.Kind != EventCall || ev.Call != k || ev.CallEvent != want {
		t.Fatalf("event %v, want call/%v", ev, want)
	}
	return ev
}

func TestOutgoingCall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake(t)
		c := dial(t, f, nil)
		k, err := c.StartCall(t.Context(), "bob@example.com", sdpA, protocol.Ext{Name: "x-app", Value: "demo"})
		if err != nil {
			t.Fatal(err)
		}
		st := f.next(t)
		if st.Control.Type != protocol.TypeRequest || st.Header.Action != protocol.ActionStart || st.Control.SubsessionID != "c2" ||
			st.Header.Target != "bob@example.com" || st.Header.Initiator != "alice@example.com" {
			t.Fatalf("start %+v %+v", st.Control, st.Header)
		}
		if e, ok := st.Header.ExtValue("x-app"); !ok || e.Value != "demo" {
			t.Fatal("extension header lost")
		}
		ring := srvCall(protocol.TypeResponse, "c2", "c2", protocol.ActionStart)
		ring.Control.MessageState, ring.Header.ResponseCode = protocol.StateSubsequent, 180
		f.send(ring, false)
		if ev := wantCall(t, c, k, CallRinging); ev.Code != 180 {
			t.Fatalf("ringing code %d", ev.Code)
		}
		ans := srvCall(protocol.TypeResponse, "c2", "c2", protocol.ActionStart)
		ans.Control.MessageState, ans.Header.ResponseCode = protocol.StateFinal, 200
		ans.Payload = protocol.EncodePayload(protocol.CallPayload{SDP: "answer"})
		f.send(ans, false)
		if ev := wantCall(t, c, k, CallAnswered); ev.SDP != "answer" || ev.Code != 200 {
			t.Fatalf("answered %+v", ev)
		}
		wantCall(t, c, k, CallEstablished)
		if cm := f.next(t); cm.Header.Action != protocol.ActionComplete || cm.Control.CorrelationID != "c2" || cm.Control.Type != protocol.TypeMessage {
			t.Fatalf("complete %+v", cm.Control)
		}
		// A re-offer from us, answered; complete correlates to it.
		if err := k.ReOffer(t.Context(), sdpA); err != nil {
			t.Fatal(err)
		}
		ro := f.next(t)
		if ro.Header.Action != protocol.ActionStart || ro.Control.CorrelationID != "c4" {
			t.Fatalf("re-offer %+v", ro.Control)
		}
		ra := srvCall(protocol.TypeResponse, "c2", "c4", protocol.ActionStart)
		ra.Control.MessageState, ra.Header.ResponseCode = protocol.StateFinal, 200
		ra.Payload = protocol.EncodePayload(protocol.CallPayload{SDP: "answer2"})
		f.send(ra, false)
		wantCall(t, c, k, CallReOfferAnswered)
		if cm := f.next(t); cm.Header.Action != protocol.ActionComplete || cm.Control.CorrelationID != "c4" {
			t.Fatalf("complete %+v", cm.Control)
		}
		// A re-offer from the peer, answered by the application.
		f.send(func() *protocol.Frame {
			r := srvCall(protocol.TypeRequest, "c2", "s9", protocol.ActionStart)
			r.Payload = protocol.EncodePayload(protocol.CallPayload{SDP: "hold"})
			return r
		}(), false)
		if ev := wantCall(t, c, k, CallReOffer); ev.SDP != "hold" {
			t.Fatal(ev.SDP)
		}
		if err := k.Answer(t.Context(), "held"); err != nil {
			t.Fatal(err)
		}
		if r := f.next(t); r.Control.CorrelationID != "s9" || r.Control.MessageState != protocol.StateFinal || r.Header.ResponseCode != 200 {
			t.Fatalf("re-offer answer %+v", r.Control)
		}
		if err := k.DTMF(t.Context(), "12#", 100); err != nil {
			t.Fatal(err)
		}
		if d := f.next(t); d.Header.Action != protocol.ActionDTMF {
			t.Fatal(d.Header.Action)
		}
		// Hang-up after the answer is a bye with a new correlation.
		if err := k.Hangup(t.Context()); err != nil {
			t.Fatal(err)
		}
		if sd := f.next(t); sd.Header.Action != protocol.ActionShutdown || sd.Control.CorrelationID != "c"+strconv.FormatUint(sd.Control.Sequence, 10) {
			t.Fatalf("bye %+v", sd.Control)
		}
		if err := k.Hangup(t.Context()); !errors.Is(err, ErrCallState) {
			t.Fatalf("second hangup: %v", err)
		}
	})
}

func TestOutgoingCallRejectedAndCancelled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake(t)
		c := dial(t, f, nil)
		k, _ := c.StartCall(t.Context(), "bob@example.com", sdpA)
		f.next(t)
		busy := srvCall(protocol.TypeError, "c2", "c2", protocol.ActionStart)
		busy.Header.ErrorCode, busy.Header.Reason = 486, "Busy Here"
		f.send(busy, false)
		if ev := wantCall(t, c, k, CallFailed); ev.Code != 486 || ev.Reason != "Busy Here" {
			t.Fatalf("failed %+v", ev)
		}
		k2, _ := c.StartCall(t.Context(), "bob@example.com", sdpA)
		f.next(t)
		if err := k2.Hangup(t.Context()); err != nil {
			t.Fatal(err)
		}
		if sd := f.next(t); sd.Header.Action != protocol.ActionShutdown || sd.Control.CorrelationID != k2.ID() {
			t.Fatalf("cancel %+v", sd.Control)
		}
	})
}

// TestEarlyOfferCompleteIsNotEstablished: the complete that commits our
// answer to the phone's offer in the early dialog (its UPDATE after a
// reliable 183) does not establish the call, before or after the 200
// (SIPp sends its 200 as the UPDATE's 200 reaches it): the 200 does.
func TestEarlyOfferCompleteIsNotEstablished(t *testing.T) {
	for _, completeFirst := range []bool{true, false} {
		t.Run(strconv.FormatBool(completeFirst), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFake(t)
				c := dial(t, f, nil)
				k, _ := c.StartCall(t.Context(), "bob@example.com", sdpA)
				f.next(t)
				early := srvCall(protocol.TypeResponse, "c2", "c2", protocol.ActionStart)
				early.Control.MessageState, early.Header.ResponseCode = protocol.StateSubsequent, 183
				early.Payload = protocol.EncodePayload(protocol.CallPayload{SDP: "early"})
				f.send(early, false)
				wantCall(t, c, k, CallEarlyMedia)
				offer := srvCall(protocol.TypeRequest, "c2", "s7", protocol.ActionStart)
				offer.Payload = protocol.EncodePayload(protocol.CallPayload{SDP: "update offer"})
				f.send(offer, false)
				wantCall(t, c, k, CallReOffer)
				if err := k.Answer(t.Context(), sdpA); err != nil {
					t.Fatal(err)
				}
				if r := f.next(t); r.Control.Type != protocol.TypeResponse || r.Control.CorrelationID != "s7" {
					t.Fatalf("answer %+v", r.Control)
				}
				complete := srvCall(protocol.TypeMessage, "c2", "s7", protocol.ActionComplete)
				if completeFirst {
					f.send(complete, false)
				}
				ans := srvCall(protocol.TypeResponse, "c2", "c2", protocol.ActionStart)
				ans.Control.MessageState, ans.Header.ResponseCode = protocol.StateFinal, 200
				ans.Payload = protocol.EncodePayload(protocol.CallPayload{SDP: "answer"})
				f.send(ans, false)
				if !completeFirst {
					f.send(complete, false)
				}
				f.send(srvCall(protocol.TypeMessage, "c2", "", protocol.ActionDTMF), false)
				wantCall(t, c, k, CallAnswered)
				wantCall(t, c, k, CallEstablished)
				wantCall(t, c, k, CallDTMF)
			})
		})
	}
}

func TestIncomingCall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake(t)
		f.identity = "bob@example.com"
		c := dial(t, f, nil)
		start := srvCall(protocol.TypeRequest, "s1", "s2", protocol.ActionStart)
		offer := sdpHead + "m=audio 9 RTP/AVP 0\r\nm=video 9 RTP/AVP 96\r\n"
		start.Payload = protocol.EncodePayload(protocol.CallPayload{SDP: offer})
		f.send(start, false)
		ev := nextEvent(t, c)
		if ev.Kind != EventIncomingCall || ev.SDP != offer || ev.Call.Peer() != "alice@example.com" || !ev.Call.Incoming() {
			t.Fatalf("incoming %v", ev)
		}
		// A video offer makes a video call.
		if !slices.Equal(ev.Call.Kinds(), []string{"audio", "video"}) || !ev.Call.Video() {
			t.Fatalf("kinds %v video %v", ev.Call.Kinds(), ev.Call.Video())
		}
		k := ev.Call
		if err := k.Ring(t.Context()); err != nil {
			t.Fatal(err)
		}
		r := f.next(t)
		if r.Control.MessageState != protocol.StateSubsequent || r.Control.CorrelationID != "s2" || r.Header.ResponseCode != 180 ||
			r.Header.Initiator != "alice@example.com" || r.Header.Target != "bob@example.com" {
			t.Fatalf("ring %+v %+v", r.Control, r.Header)
		}
		if err := k.Answer(t.Context(), "answer"); err != nil {
			t.Fatal(err)
		}
		if a := f.next(t); a.Control.MessageState != protocol.StateFinal || a.Control.CorrelationID != "s2" {
			t.Fatalf("answer %+v", a.Control)
		}
		if err := k.Answer(t.Context(), "again"); !errors.Is(err, ErrCallState) {
			t.Fatalf("second answer: %v", err)
		}
		f.send(srvCall(protocol.TypeMessage, "s1", "s2", protocol.ActionComplete), false)
		wantCall(t, c, k, CallEstablished)
		tr := srvCall(protocol.TypeMessage, "s1", "", protocol.ActionTrickle)
		tr.Payload = protocol.EncodePayload(protocol.CallPayload{Candidates: "a=mid:0\r\n"})
		f.send(tr, false)
		if ev := wantCall(t, c, k, CallTrickle); ev.Candidates != "a=mid:0\r\n" {
			t.Fatal(ev.Candidates)
		}
		// A transfer accepted with 202 is reported: 1xx, then the final
		// status, with the request's correlation; nothing after that.
		tf := srvCall(protocol.TypeRequest, "s1", "s5", protocol.ActionTransfer)
		tf.Header.ReferTo = "sip:carol@example.com"
		f.send(tf, false)
		wantCall(t, c, k, CallTransfer)
		if err := k.RespondTransfer(t.Context(), 202); err != nil {
			t.Fatal(err)
		}
		f.next(t)
		for _, code := range []int{180, 200} {
			if err := k.ReportTransfer(t.Context(), code); err != nil {
				t.Fatal(err)
			}
			if m := f.next(t); m.Control.Type != protocol.TypeMessage || m.Header.Action != protocol.ActionTransfer ||
				m.Control.CorrelationID != "s5" || m.Header.ResponseCode != code {
				t.Fatalf("report %+v %+v", m.Control, m.Header)
			}
		}
		if err := k.ReportTransfer(t.Context(), 486); !errors.Is(err, ErrCallState) {
			t.Fatalf("report after the final status: %v", err)
		}
		pr := srvCall(protocol.TypeMessage, "s1", "c3", protocol.ActionTransfer)
		pr.Header.ResponseCode = 100
		f.send(pr, false)
		if ev := wantCall(t, c, k, CallTransferProgress); ev.Code != 100 {
			t.Fatalf("transfer progress %d", ev.Code)
		}
		rs := srvCall(protocol.TypeMessage, "s1", "", protocol.ActionStart)
		rs.Payload = protocol.EncodePayload(protocol.CallPayload{SDP: "new answer"})
		f.send(rs, false)
		if ev := wantCall(t, c, k, CallRemoteSDP); ev.SDP != "new answer" {
			t.Fatalf("remote SDP %q", ev.SDP)
		}
		f.send(srvCall(protocol.TypeMessage, "s1", "s7", protocol.ActionShutdown), false)
		if ev := wantCall(t, c, k, CallEnded); ev.Reason != "shutdown" {
			t.Fatal(ev.Reason)
		}

		// A second call, declined.
		start2 := srvCall(protocol.TypeRequest, "s2", "s9", protocol.ActionStart)
		f.send(start2, false)
		k2 := waitEvent(t, c, EventIncomingCall).Call
		if err := k2.Decline(t.Context(), 486); err != nil {
			t.Fatal(err)
		}
		if d := f.next(t); d.Control.Type != protocol.TypeError || d.Header.ErrorCode != 486 || d.Control.CorrelationID != "s9" {
			t.Fatalf("decline %+v %+v", d.Control, d.Header)
		}
	})
}

func TestMessaging(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake(t)
		c := dial(t, f, nil)
		type res struct {
			code int
			err  error
		}
		out := make(chan res, 2)
		go func() {
			code, err := c.Send(t.Context(), "bob@example.com", "text/plain", "hello")
			out <- res{code, err}
		}()
		req := f.next(t)
		if req.Control.Package != protocol.PackageMessaging || req.Header.Action != protocol.ActionSend || body(t, req) != "hello" ||
			req.Control.CorrelationID != "c2" {
			t.Fatalf("send %+v", req.Control)
		}
		resp := &protocol.Frame{Control: protocol.Control{Type: protocol.TypeResponse, Package: protocol.PackageMessaging, CorrelationID: "c2"},
			Header: protocol.Header{Action: protocol.ActionSend, ResponseCode: 202}}
		f.send(resp, false)
		if r := <-out; r.code != 202 || r.err != nil {
			t.Fatalf("Send = %d, %v", r.code, r.err)
		}
		go func() {
			code, err := c.Send(t.Context(), "nobody@example.com", "text/plain", "x")
			out <- res{code, err}
		}()
		req = f.next(t)
		e := &protocol.Frame{Control: protocol.Control{Type: protocol.TypeError, Package: protocol.PackageMessaging, CorrelationID: req.Control.CorrelationID},
			Header: protocol.Header{Action: protocol.ActionSend, ErrorCode: 404, Reason: "Not Found"}}
		f.send(e, false)
		var fe *FrameError
		if r := <-out; r.code != 404 || !errors.As(r.err, &fe) || fe.Code != 404 {
			t.Fatalf("Send = %d, %v", r.code, r.err)
		}
		// Incoming, answered by the application.
		f.send(msgFrame("yo"), false)
		ev := waitEvent(t, c, EventMessage)
		if ev.Message.Body != "yo" || ev.Message.From != "bob@example.com" {
			t.Fatalf("message %+v", ev.Message)
		}
		if err := ev.Message.Reply(t.Context(), 480); err != nil {
			t.Fatal(err)
		}
		if r := f.next(t); r.Control.Type != protocol.TypeError || r.Header.ErrorCode != 480 || r.Control.CorrelationID != "s-yo" {
			t.Fatalf("reply %+v", r.Control)
		}
		// A malformed raw frame: the gateway's error arrives as EventError.
		if err := c.SendRaw(t.Context(), []byte("not json")); err != nil {
			t.Fatal(err)
		}
		if ev := waitEvent(t, c, EventError); ev.Code != 400 {
			t.Fatalf("error event %+v", ev)
		}
	})
}

// TestSlowConsumer: an application that stops reading events gets its
// session closed with ErrSlowConsumer, never a silent drop.
func TestSlowConsumer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake(t)
		c := dial(t, f, func(o *Options) { o.EventBuffer, o.SlowConsumerTimeout = 2, time.Second })
		for i := range 5 {
			f.send(msgFrame(string(rune('a'+i))), false)
		}
		<-c.Done()
		if !errors.Is(c.Err(), ErrSlowConsumer) {
			t.Fatalf("Err = %v", c.Err())
		}
		n := 0
		for range c.Events() {
			n++
		}
		if n != 2 {
			t.Fatalf("%d events buffered, want 2", n)
		}
	})
}
