package call

import (
	"context"
	"math"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jsonrtc/jsonrtc/media/rtpengine"
	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/sipgw"
	"github.com/prometheus/client_golang/prometheus"
)

// The media of SIP calls anchored in rtpengine (media.go), against a fake
// rtpengine (a Controller that records each command); the real one is in
// test/interop (TestRTPEngineCall*).

// engineCmd is one ng command the handler sent.
type engineCmd struct {
	name string
	r    rtpengine.Request
}

// fakeEngine answers offer and answer with the SDP marked as rewritten
// (relayed), keeps the calls offered until deleted, and fails the
// commands named in fail.
type fakeEngine struct {
	cmds chan engineCmd

	mu   sync.Mutex
	live map[string]bool
	// answered is the to-tag of each call's last answer: the other
	// leg's tag in the delete's figures.
	answered map[string]string
	first    map[string]string // the from-tag of each call's first offer
	fail     map[string]error
	gate     map[string]chan struct{} // a command of this name waits for the channel to close
}

func newFakeEngine() *fakeEngine {
	return &fakeEngine{cmds: make(chan engineCmd, 64), live: map[string]bool{}, answered: map[string]string{}, first: map[string]string{}, fail: map[string]error{}}
}

// relayed is sdp as the fake rewrites it.
func relayed(sdp string) string { return strings.Replace(sdp, "s=-", "s=relayed", 1) }

func (f *fakeEngine) do(name string, r *rtpengine.Request) (*rtpengine.Response, error) {
	f.cmds <- engineCmd{name, *r}
	f.mu.Lock()
	gate := f.gate[name]
	f.mu.Unlock()
	if gate != nil {
		<-gate
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail[name]; err != nil {
		return nil, err
	}
	switch name {
	case "offer":
		if !f.live[r.CallID] {
			f.first[r.CallID] = r.FromTag
		}
		f.live[r.CallID] = true
	case "answer", "delete", "query":
		if !f.live[r.CallID] {
			return nil, &rtpengine.Error{Command: name, Reason: "Unknown call-id"}
		}
		if name == "query" {
			return &rtpengine.Response{Result: "ok", Raw: deleteFigures(f.first[r.CallID], f.answered[r.CallID])}, nil
		}
		if name == "delete" {
			delete(f.live, r.CallID)
			other := f.answered[r.CallID]
			delete(f.answered, r.CallID)
			delete(f.first, r.CallID)
			return &rtpengine.Response{Result: "ok", Raw: deleteFigures(r.FromTag, other)}, nil
		}
		if r.FromTag == f.first[r.CallID] && r.ToTag != "" {
			// An answer to the first offerer names the other leg (a
			// re-answer turned the other way does not).
			f.answered[r.CallID] = r.ToTag
		}
	}
	return &rtpengine.Response{Result: "ok", SDP: relayed(r.SDP)}, nil
}

// deleteFigures is a delete answer as rtpengine 10.5 shapes it (checked
// by test/interop TestRTPEngineQuality): the first offer's tag (from) sent
// 100 RTP packets and 3 RTCP, the other leg 80 packets, and 2 could
// not be relayed toward it; the first leg's media has a MOS of 4.3 from
// its receiver's reports (sdk/js/e2e media.test.mjs saw the shape), the
// other's none. other names the other leg ("other-leg" if unknown).
func deleteFigures(from, other string) map[string]any {
	if other == "" {
		other = "other-leg"
	}
	leg := func(packets, bytes, errors, rtcp, ssrc int64) map[string]any {
		return map[string]any{"medias": []any{map[string]any{"streams": []any{
			map[string]any{"flags": []any{"RTP", "filled"}, "SSRC": ssrc, "stats": map[string]any{"packets": packets, "bytes": bytes, "errors": errors}},
			map[string]any{"flags": []any{"RTCP", "filled"}, "SSRC": ssrc, "stats": map[string]any{"packets": rtcp, "bytes": rtcp * 80, "errors": int64(0)}},
		}}}}
	}
	return map[string]any{"result": "ok", "tags": map[string]any{from: leg(100, 17200, 0, 3, 1111), other: leg(80, 13760, 2, 0, 2222)},
		"SSRC": map[string]any{"1111": map[string]any{"cumulative loss": int64(0), "average MOS": map[string]any{"MOS": int64(43), "jitter": int64(8), "packet loss": int64(0), "round-trip time": int64(2330)}}}}
}

// mediaFigure returns the sample count and sum of histogram name{side}
// in h's metrics.
func mediaFigure(t *testing.T, h *Handler, name, side string) (uint64, float64) {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(h.Collector())
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "side" && l.GetValue() == side {
					return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
				}
			}
		}
	}
	return 0, 0
}

// Ping fails as failing("ping", err) says; it is not recorded (a pool
// pings all the time).
func (f *fakeEngine) Ping(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fail["ping"]
}
func (f *fakeEngine) Offer(ctx context.Context, r *rtpengine.Request) (*rtpengine.Response, error) {
	return f.do("offer", r)
}
func (f *fakeEngine) Answer(ctx context.Context, r *rtpengine.Request) (*rtpengine.Response, error) {
	return f.do("answer", r)
}
func (f *fakeEngine) Delete(ctx context.Context, r *rtpengine.Request) (*rtpengine.Response, error) {
	return f.do("delete", r)
}
func (f *fakeEngine) Query(ctx context.Context, r *rtpengine.Request) (*rtpengine.Response, error) {
	return f.do("query", r)
}

func (f *fakeEngine) failing(name string, err error) {
	f.mu.Lock()
	f.fail[name] = err
	f.mu.Unlock()
}

// expect returns the next command, which must be name.
func (f *fakeEngine) expect(t *testing.T, name string) rtpengine.Request {
	t.Helper()
	select {
	case c := <-f.cmds:
		if c.name != name {
			t.Fatalf("rtpengine %s %+v, want %s", c.name, c.r, name)
		}
		return c.r
	case <-time.After(waitFor):
		t.Fatalf("no rtpengine %s", name)
		return rtpengine.Request{}
	}
}

// idle checks that no call is left in rtpengine and no command unread,
// once the handler is idle.
func (f *fakeEngine) idle(t *testing.T, e *env) {
	t.Helper()
	e.assertIdle(t)
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.live) != 0 {
		t.Errorf("calls left in rtpengine: %v", f.live)
	}
	select {
	case c := <-f.cmds:
		t.Errorf("unexpected rtpengine %s %+v", c.name, c.r)
	default:
	}
}

// newMediaEnv is newEnv with media anchored (policy always) in a fake
// rtpengine.
func newMediaEnv(t *testing.T, ring time.Duration) (*env, *fakeEngine) {
	t.Helper()
	e := newEnv(t, ring)
	f := newFakeEngine()
	a, err := rtpengine.NewAdapter(f, rtpengine.PolicyAlways)
	if err != nil {
		t.Fatal(err)
	}
	e.h.far.media = a
	return e, f
}

// TestMediaOutgoing: a browser calls SIP through rtpengine. The INVITE
// carries rtpengine's offer under the Call-ID and From-tag rtpengine was
// given, and announces no trickle; each fork's answer goes to rtpengine
// under its To-tag until the 200, a fork's 18x after it does not; the
// browser's hold and the phone's re-offer go through rtpengine with the
// tags of their sender; the browser's candidates never reach the phone;
// the BYE deletes the call in rtpengine, and the browser's shutdown
// carries the delete's figures (docs/protocol.md §5.8).
func TestMediaOutgoing(t *testing.T) {
	e, eng := newMediaEnv(t, time.Minute)
	a, fc := e.outgoing(t)
	off := eng.expect(t, "offer")
	if off.SDP != webOffer || off.TransportProtocol != "RTP/AVP" || off.ICE != "remove" {
		t.Fatalf("offer to rtpengine %+v", off)
	}
	if fc.dial.CallID == "" || off.CallID != fc.dial.CallID || off.FromTag != fc.dial.FromTag || fc.dial.Trickle || string(fc.dial.SDP) != relayed(webOffer) {
		t.Fatalf("dial %+v after offer %+v", fc.dial, off)
	}

	fc.push(sipgw.Event{Kind: sipgw.EventProgress, Code: 183, SDP: []byte(sipAnswer), ToTag: "fork-a"})
	if ans := eng.expect(t, "answer"); ans.ToTag != "fork-a" || ans.ICE != "force" || ans.SDP != sipAnswer {
		t.Fatalf("early answer to rtpengine %+v", ans)
	}
	if f := a.expect(t, protocol.TypeResponse, protocol.ActionStart); f.Header.ResponseCode != 183 || decodeSDP(t, f) != relayed(sipAnswer) {
		t.Fatalf("183 to the browser: %d %q", f.Header.ResponseCode, decodeSDP(t, f))
	}
	fc.push(sipgw.Event{Kind: sipgw.EventAnswered, Code: 200, SDP: []byte(sipAnswer), ToTag: "fork-b"})
	if ans := eng.expect(t, "answer"); ans.ToTag != "fork-b" {
		t.Fatalf("answer to rtpengine %+v", ans)
	}
	if f := a.expect(t, protocol.TypeResponse, protocol.ActionStart); f.Header.ResponseCode != 200 || decodeSDP(t, f) != relayed(sipAnswer) {
		t.Fatalf("200 to the browser: %d %q", f.Header.ResponseCode, decodeSDP(t, f))
	}
	// The losing fork's late 183: nothing to rtpengine, nothing to the browser.
	fc.push(sipgw.Event{Kind: sipgw.EventProgress, Code: 183, SDP: []byte(sipAnswer), ToTag: "fork-a"})
	e.send(a, wf{typ: protocol.TypeMessage, act: protocol.ActionComplete, sub: "c1", seq: 2, corr: "c1"})
	fc.expectOp(t, "ack")

	// Trickled candidates: rtpengine is the browser's ICE peer.
	fc.setPeerTrickle()
	e.send(a, wf{typ: protocol.TypeMessage, act: protocol.ActionTrickle, sub: "c1", seq: 3, p: protocol.CallPayload{Candidates: "a=mid:0\r\n" + cand1 + "\r\n"}})
	// They go to rtpengine as a fragment with the browser's credentials
	// under the m= line too (rtpengine ignores it otherwise).
	wantFrag := "a=ice-ufrag:U1\r\na=ice-pwd:P1\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=ice-ufrag:U1\r\na=ice-pwd:P1\r\na=mid:0\r\n" + cand1 + "\r\n"
	if fr := eng.expect(t, "offer"); !slices.Equal(fr.Flags, []string{"fragment"}) || fr.CallID != off.CallID || fr.FromTag != off.FromTag || fr.SDP != wantFrag || fr.ICE != "" {
		t.Fatalf("trickle to rtpengine %+v", fr)
	}

	// The browser holds.
	hold := strings.Replace(webOffer, "a=sendrecv", "a=sendonly", 1)
	e.send(a, wf{typ: protocol.TypeRequest, act: protocol.ActionStart, sub: "c1", seq: 4, p: protocol.CallPayload{SDP: hold}})
	if ro := eng.expect(t, "offer"); ro.FromTag != off.FromTag || ro.ToTag != "fork-b" || ro.SDP != hold || ro.ICE != "remove" {
		t.Fatalf("browser's re-offer to rtpengine %+v", ro)
	}
	if o := fc.expectOp(t, "reoffer"); o.sdp != relayed(hold) {
		t.Fatalf("re-INVITE %q", o.sdp)
	}
	fc.reoffers <- reofferResult{answer: []byte(sipAnswer)}
	if ra := eng.expect(t, "answer"); ra.FromTag != off.FromTag || ra.ToTag != "fork-b" || ra.ICE != "force" {
		t.Fatalf("phone's answer to rtpengine %+v", ra)
	}
	if f := a.expect(t, protocol.TypeResponse, protocol.ActionStart); decodeSDP(t, f) != relayed(sipAnswer) {
		t.Fatalf("re-offer's answer to the browser %q", decodeSDP(t, f))
	}

	// The phone re-offers: its tag is rtpengine's from-tag now.
	phoneOffers(t, e, eng, a, fc, "fork-b", off.FromTag, 5)

	fc.end(sipgw.Event{End: sipgw.EndRemoteBye, Code: 200})
	if d := eng.expect(t, "delete"); d.CallID != off.CallID || !d.DeleteNow {
		t.Fatalf("delete %+v", d)
	}
	// The shutdown carries the delete's figures, the browser's leg first.
	sd := a.expect(t, protocol.TypeMessage, protocol.ActionShutdown)
	var end protocol.ShutdownPayload
	if err := protocol.DecodePayload(sd.Payload, &end); err != nil {
		t.Fatal(err)
	}
	wantEnd := []protocol.MediaStats{
		{Side: "web", Packets: 100, Bytes: 17200, Quality: &protocol.MediaQuality{MOS: 4.3, JitterMS: 8, RTTMS: 2.33}},
		{Side: "sip", Packets: 80, Bytes: 13760, Errors: 2},
	}
	if !reflect.DeepEqual(end.Media, wantEnd) {
		t.Fatalf("shutdown's media %s, want %+v", sd.Payload, wantEnd)
	}
	eng.idle(t, e)
	// The delete's figures: one observation per leg, the browser's leg
	// (our From-tag) as web, RTCP left out.
	for _, f := range []struct {
		name, side string
		sum        float64
	}{
		{"jsonrtc_media_packets", "web", 100}, {"jsonrtc_media_bytes", "web", 17200}, {"jsonrtc_media_errors", "web", 0},
		{"jsonrtc_media_packets", "sip", 80}, {"jsonrtc_media_bytes", "sip", 13760}, {"jsonrtc_media_errors", "sip", 2},
		{"jsonrtc_media_mos", "web", 4.3}, {"jsonrtc_media_jitter_seconds", "web", 0.008}, {"jsonrtc_media_loss_percent", "web", 0},
	} {
		if n, sum := mediaFigure(t, e.h, f.name, f.side); n != 1 || math.Abs(sum-f.sum) > 1e-9 {
			t.Errorf("%s{side=%s}: %d observations summing %v, want 1 of %v", f.name, f.side, n, sum, f.sum)
		}
	}
	// The phone's leg had no reports: no quality observed.
	if n, _ := mediaFigure(t, e.h, "jsonrtc_media_mos", "sip"); n != 0 {
		t.Errorf("jsonrtc_media_mos{side=sip}: %d observations of a leg without reports", n)
	}
	// No INFO with the browser's candidate went to the phone.
	select {
	case o := <-fc.ops:
		t.Fatalf("unexpected SIP operation %s", o.name)
	default:
	}
}

// TestMediaIncoming: SIP calls two browsers through rtpengine. They ring
// with rtpengine's WebRTC offer (one offer for both), a callee's early
// media and the winner's answer go to rtpengine under our To-tag before
// they reach SIP, and the hang-up deletes the call.
func TestMediaIncoming(t *testing.T) {
	e, eng := newMediaEnv(t, time.Minute)
	fc, eps, st := e.incoming(t, 2)
	off := eng.expect(t, "offer")
	k := fc.Keys()
	if off.CallID != k.CallID || off.FromTag != k.RemoteTag || off.ViaBranch != k.ViaBranch || off.ICE != "force" || off.SDP != sipOffer {
		t.Fatalf("offer to rtpengine %+v, keys %+v", off, k)
	}
	for i, f := range st {
		if decodeSDP(t, f) != relayed(sipOffer) {
			t.Fatalf("start %d with %q", i, decodeSDP(t, f))
		}
	}
	e.send(eps[1], wf{typ: protocol.TypeResponse, act: protocol.ActionStart, sub: st[1].Control.SubsessionID, seq: 1,
		corr: st[1].Control.CorrelationID, code: 183, p: protocol.CallPayload{SDP: webOffer}})
	if ans := eng.expect(t, "answer"); ans.ToTag != k.LocalTag || ans.ICE != "remove" {
		t.Fatalf("early answer to rtpengine %+v", ans)
	}
	if o := fc.expectOp(t, "progress"); o.code != 183 || o.sdp != relayed(webOffer) || o.trickle {
		t.Fatalf("183 %+v", o)
	}
	e.send(eps[0], wf{typ: protocol.TypeResponse, act: protocol.ActionStart, sub: st[0].Control.SubsessionID, seq: 1,
		corr: st[0].Control.CorrelationID, state: protocol.StateFinal, code: 200, p: protocol.CallPayload{SDP: webOffer}})
	eps[1].expect(t, protocol.TypeMessage, protocol.ActionShutdown)
	if ans := eng.expect(t, "answer"); ans.ToTag != k.LocalTag || ans.FromTag != k.RemoteTag {
		t.Fatalf("answer to rtpengine %+v", ans)
	}
	if o := fc.expectOp(t, "answer"); o.sdp != relayed(webOffer) || o.trickle {
		t.Fatalf("200 %+v", o)
	}
	fc.push(sipgw.Event{Kind: sipgw.EventConfirmed})
	eps[0].expect(t, protocol.TypeMessage, protocol.ActionComplete)
	e.send(eps[0], wf{typ: protocol.TypeMessage, act: protocol.ActionShutdown, sub: st[0].Control.SubsessionID, seq: 2, corr: st[0].Control.CorrelationID})
	fc.expectOp(t, "hangup")
	eng.expect(t, "delete")
	eng.idle(t, e)
}

// TestMediaEnds: however an anchored call ends, its rtpengine call is
// deleted, once.
func TestMediaEnds(t *testing.T) {
	webBye := func(e *env, a *fakeEP, fc *fakeCall) {
		e.send(a, wf{typ: protocol.TypeMessage, act: protocol.ActionShutdown, sub: "c1", seq: 3, corr: "c1"})
	}
	sipEnds := func(end sipgw.EndCause, code int) func(*env, *fakeEP, *fakeCall) {
		return func(e *env, a *fakeEP, fc *fakeCall) { fc.end(sipgw.Event{End: end, Code: code}) }
	}
	for _, tc := range []struct {
		name     string
		answered bool
		ring     time.Duration
		end      func(*env, *fakeEP, *fakeCall)
	}{
		{name: "web cancel", end: webBye},
		{name: "web bye", answered: true, end: webBye},
		{name: "web session ends", answered: true, end: func(e *env, a *fakeEP, fc *fakeCall) { e.h.SessionEnded(a) }},
		{name: "ring timeout", ring: 30 * time.Millisecond},
		{name: "sip declines", end: sipEnds(sipgw.EndRejected, 603)},
		{name: "sip timeout", end: sipEnds(sipgw.EndTimeout, 408)},
		{name: "sip bye", answered: true, end: sipEnds(sipgw.EndRemoteBye, 200)},
		{name: "sip error", answered: true, end: sipEnds(sipgw.EndError, 500)},
		{name: "gateway shutdown", answered: true, end: sipEnds(sipgw.EndShutdown, 503)},
	} {
		t.Run(tc.name, inBubble(func(t *testing.T) {
			ring := tc.ring
			if ring == 0 {
				ring = time.Minute
			}
			e, eng := newMediaEnv(t, ring)
			a, fc := e.outgoing(t)
			off := eng.expect(t, "offer")
			if tc.answered {
				fc.push(sipgw.Event{Kind: sipgw.EventAnswered, Code: 200, SDP: []byte(sipAnswer), ToTag: "b"})
				eng.expect(t, "answer")
				a.expect(t, protocol.TypeResponse, protocol.ActionStart)
			}
			if tc.end != nil {
				tc.end(e, a, fc)
			}
			if d := eng.expect(t, "delete"); d.CallID != off.CallID {
				t.Fatalf("delete %+v", d)
			}
			eng.idle(t, e)
		}))
	}
	t.Run("incoming cancelled", inBubble(func(t *testing.T) {
		e, eng := newMediaEnv(t, time.Minute)
		fc, eps, _ := e.incoming(t, 1)
		eng.expect(t, "offer")
		fc.end(sipgw.Event{End: sipgw.EndCancelled, Code: 487})
		eps[0].expect(t, protocol.TypeMessage, protocol.ActionShutdown)
		eng.expect(t, "delete")
		eng.idle(t, e)
	}))
	t.Run("dial fails", func(t *testing.T) {
		e, eng := newMediaEnv(t, time.Minute)
		err := error(&sipgw.ResponseError{Code: 404})
		e.dialErr.Store(&err)
		a := e.ep("alice@web.example")
		f := wf{typ: protocol.TypeRequest, act: protocol.ActionStart, sub: "c1", seq: 1, p: protocol.CallPayload{SDP: webOffer}}.frame()
		f.Header.Target = "bob@sip.example"
		e.h.HandleFrame(a, f)
		webFailed(404)(t, a)
		eng.expect(t, "offer")
		eng.expect(t, "delete")
		eng.idle(t, e)
	})
}

// TestMediaUnavailable: rtpengine does not answer. A browser's call fails
// with 503 before any INVITE; a phone's call is refused with 503 before
// any browser rings; an answer rtpengine could not convert ends the call
// (503 to the browser, CANCEL to the phone; 503 to the phone); a phone's
// re-offer is refused with 503 and the call goes on. Each failure is
// counted, and nothing is left.
func TestMediaUnavailable(t *testing.T) {
	t.Run("browser calls", func(t *testing.T) {
		e, eng := newMediaEnv(t, time.Minute)
		eng.failing("offer", rtpengine.ErrTimeout)
		a := e.ep("alice@web.example")
		f := wf{typ: protocol.TypeRequest, act: protocol.ActionStart, sub: "c1", seq: 1, p: protocol.CallPayload{SDP: webOffer}}.frame()
		f.Header.Target = "bob@sip.example"
		e.h.HandleFrame(a, f)
		if f := a.expect(t, protocol.TypeError, protocol.ActionStart); f.Header.ErrorCode != 503 || f.Header.Reason != mediaReason {
			t.Fatalf("error %d %q", f.Header.ErrorCode, f.Header.Reason)
		}
		eng.expect(t, "offer")
		eng.expect(t, "delete")
		eng.idle(t, e)
		select {
		case <-e.dials:
			t.Fatal("an INVITE went without rtpengine's offer")
		default:
		}
		if n := e.h.mediaFailed.Load(); n != 1 {
			t.Fatalf("counted %d failures", n)
		}
	})
	t.Run("phone calls", func(t *testing.T) {
		e, eng := newMediaEnv(t, time.Minute)
		eng.failing("offer", rtpengine.ErrTimeout)
		b := e.ep("bob@web.example")
		fc := newFakeCall("bob@web.example", "sip:carol@sip.example")
		fc.offer = []byte(sipOffer)
		e.h.incomingSIP(fc)
		eng.expect(t, "offer")
		if o := fc.expectOp(t, "reject"); o.code != 503 {
			t.Fatalf("rejected with %d", o.code)
		}
		// rtpengine may have made the call before its answer was lost.
		eng.expect(t, "delete")
		eng.idle(t, e)
		select {
		case f := <-b.frames:
			t.Fatalf("the browser heard %s/%s", f.Control.Type, f.Header.Action)
		default:
		}
	})
	t.Run("phone's answer", func(t *testing.T) {
		e, eng := newMediaEnv(t, time.Minute)
		a, fc := e.outgoing(t)
		eng.expect(t, "offer")
		eng.failing("answer", rtpengine.ErrTimeout)
		fc.push(sipgw.Event{Kind: sipgw.EventAnswered, Code: 200, SDP: []byte(sipAnswer), ToTag: "b"})
		eng.expect(t, "answer")
		if f := a.expect(t, protocol.TypeError, protocol.ActionStart); f.Header.ErrorCode != 503 {
			t.Fatalf("error %d", f.Header.ErrorCode)
		}
		fc.expectOp(t, "hangup")
		eng.expect(t, "delete")
		eng.idle(t, e)
	})
	t.Run("browser's answer", func(t *testing.T) {
		e, eng := newMediaEnv(t, time.Minute)
		fc, eps, st := e.incoming(t, 1)
		eng.expect(t, "offer")
		eng.failing("answer", rtpengine.ErrTimeout)
		e.send(eps[0], wf{typ: protocol.TypeResponse, act: protocol.ActionStart, sub: st[0].Control.SubsessionID, seq: 1,
			corr: st[0].Control.CorrelationID, state: protocol.StateFinal, code: 200, p: protocol.CallPayload{SDP: webOffer}})
		eng.expect(t, "answer")
		if o := fc.expectOp(t, "reject"); o.code != 503 {
			t.Fatalf("rejected with %d", o.code)
		}
		eps[0].expect(t, protocol.TypeMessage, protocol.ActionShutdown)
		eng.expect(t, "delete")
		eng.idle(t, e)
	})
	t.Run("phone's re-offer", func(t *testing.T) {
		e, eng := newMediaEnv(t, time.Minute)
		a, fc := e.outgoing(t)
		eng.expect(t, "offer")
		fc.push(sipgw.Event{Kind: sipgw.EventAnswered, Code: 200, SDP: []byte(sipAnswer), ToTag: "b"})
		eng.expect(t, "answer")
		a.expect(t, protocol.TypeResponse, protocol.ActionStart)
		eng.failing("offer", rtpengine.ErrTimeout)
		fc.pushReoffer(sipOffer)
		eng.expect(t, "offer")
		if o := fc.expectOp(t, "ro-reject"); o.code != 503 {
			t.Fatalf("re-offer refused with %d", o.code)
		}
		e.send(a, wf{typ: protocol.TypeMessage, act: protocol.ActionShutdown, sub: "c1", seq: 3, corr: "c1"})
		fc.expectOp(t, "hangup")
		eng.expect(t, "delete")
		eng.idle(t, e)
		if n := e.h.mediaFailed.Load(); n != 1 {
			t.Fatalf("counted %d failures", n)
		}
	})
}

// TestMediaBadSIPSDP: an SDP from SIP that does not parse never reaches
// rtpengine; the call fails as without it (488), and is deleted.
func TestMediaBadSIPSDP(t *testing.T) {
	e, eng := newMediaEnv(t, time.Minute)
	a, fc := e.outgoing(t)
	eng.expect(t, "offer")
	fc.push(sipgw.Event{Kind: sipgw.EventAnswered, Code: 200, SDP: []byte("v=0\r\nm=audio x RTP/AVP 0\r\n"), ToTag: "b"})
	if f := a.expect(t, protocol.TypeError, protocol.ActionStart); f.Header.ErrorCode != 488 {
		t.Fatalf("error %d", f.Header.ErrorCode)
	}
	fc.expectOp(t, "hangup")
	eng.expect(t, "delete")
	eng.idle(t, e)
}

// answeredMedia starts an anchored browser call the phone answers with
// sipAnswer (To-tag toTag), and returns it once the browser has the 200,
// with the first offer to rtpengine.
func answeredMedia(t *testing.T, toTag string) (*env, *fakeEngine, *fakeEP, *fakeCall, rtpengine.Request) {
	t.Helper()
	e, eng := newMediaEnv(t, time.Minute)
	a, fc := e.outgoing(t)
	off := eng.expect(t, "offer")
	fc.push(sipgw.Event{Kind: sipgw.EventAnswered, Code: 200, SDP: []byte(sipAnswer), ToTag: toTag})
	eng.expect(t, "answer")
	a.expect(t, protocol.TypeResponse, protocol.ActionStart)
	return e, eng, a, fc, off
}

// TestMediaRemoteSDP: the phone's answer in the ACK of its re-INVITE
// without SDP (sipgw offered it our last SDP, rtpengine's) goes to
// rtpengine as the answer to an offer from the web side's end, and the
// browser gets rtpengine's WebRTC rewrite of it.
func TestMediaRemoteSDP(t *testing.T) {
	e, eng, a, fc, off := answeredMedia(t, "b")
	hold := strings.Replace(sipAnswer, "a=sendrecv", "a=sendonly", 1)
	fc.push(sipgw.Event{Kind: sipgw.EventRemoteSDP, SDP: []byte(hold)})
	if ra := eng.expect(t, "answer"); ra.FromTag != off.FromTag || ra.ToTag != "b" || ra.ICE != "force" || ra.SDP != hold {
		t.Fatalf("answer to rtpengine %+v", ra)
	}
	if f := a.expect(t, protocol.TypeMessage, protocol.ActionStart); decodeSDP(t, f) != relayed(hold) {
		t.Fatalf("remote SDP to the browser %q", decodeSDP(t, f))
	}
	fc.end(sipgw.Event{End: sipgw.EndRemoteBye, Code: 200})
	a.expect(t, protocol.TypeMessage, protocol.ActionShutdown)
	eng.expect(t, "delete")
	eng.idle(t, e)
}

// TestMediaReofferRightAfterOurs: the phone re-offers the moment it has
// ACKed our re-INVITE, while rtpengine still works on the answer for the
// browser. That is no glare (RFC 3261 section 14.2: our transaction is
// over), so the phone's re-offer is not refused with 491: it waits, and
// reaches the browser right after the browser's own answer.
func TestMediaReofferRightAfterOurs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e, eng := newMediaEnv(t, time.Minute)
		a, fc := e.outgoing(t)
		eng.expect(t, "offer")
		fc.push(sipgw.Event{Kind: sipgw.EventAnswered, Code: 200, SDP: []byte(sipAnswer), ToTag: "fork-b"})
		eng.expect(t, "answer")
		a.expect(t, protocol.TypeResponse, protocol.ActionStart)
		e.send(a, wf{typ: protocol.TypeMessage, act: protocol.ActionComplete, sub: "c1", seq: 2, corr: "c1"})
		fc.expectOp(t, "ack")

		gate := make(chan struct{})
		eng.mu.Lock()
		eng.gate = map[string]chan struct{}{"answer": gate}
		eng.mu.Unlock()
		hold := strings.Replace(webOffer, "a=sendrecv", "a=sendonly", 1)
		e.send(a, wf{typ: protocol.TypeRequest, act: protocol.ActionStart, sub: "c1", seq: 3, p: protocol.CallPayload{SDP: hold}})
		eng.expect(t, "offer")
		fc.expectOp(t, "reoffer")
		fc.reoffers <- reofferResult{answer: []byte(sipAnswer)}
		eng.expect(t, "answer") // and held there
		fc.pushReoffer(sipOffer)
		synctest.Wait() // the phone's re-offer is taken, the answer still held
		eng.mu.Lock()
		eng.gate = nil
		eng.mu.Unlock()
		close(gate)

		if f := a.expect(t, protocol.TypeResponse, protocol.ActionStart); f.Control.CorrelationID != "c3" || decodeSDP(t, f) != relayed(sipAnswer) {
			t.Fatalf("the browser's re-offer answered %q on %q", decodeSDP(t, f), f.Control.CorrelationID)
		}
		eng.expect(t, "offer") // the phone's, after the answer
		f := a.expect(t, protocol.TypeRequest, protocol.ActionStart)
		if decodeSDP(t, f) != relayed(sipOffer) {
			t.Fatalf("phone's re-offer to the browser %q", decodeSDP(t, f))
		}
		e.send(a, wf{typ: protocol.TypeResponse, act: protocol.ActionStart, sub: "c1", seq: 4, corr: f.Control.CorrelationID,
			state: protocol.StateFinal, code: 200, p: protocol.CallPayload{SDP: webOffer}})
		eng.expect(t, "answer")
		if o := fc.expectOp(t, "ro-accept"); o.sdp == "" {
			t.Fatalf("the phone's re-offer answered with %+v", o)
		}
		fc.end(sipgw.Event{End: sipgw.EndRemoteBye, Code: 200})
		webShutdown(t, a)
	})
}

// newPooledMediaEnv is newMediaEnv with the fake in a pool that pings it
// every second and loses its calls at the second failed ping; figures,
// if given, is its FiguresInterval.
func newPooledMediaEnv(t *testing.T, figures ...time.Duration) (*env, *fakeEngine, *rtpengine.Pool) {
	t.Helper()
	e := newEnv(t, time.Minute)
	f := newFakeEngine()
	o := &rtpengine.PoolOptions{Interval: time.Second, LostAfter: 2}
	for _, d := range figures {
		o.FiguresInterval = d
	}
	p := rtpengine.NewPool([]rtpengine.Instance{{Addr: "fake", Ctl: f}}, o)
	p.Start()
	t.Cleanup(p.Close)
	a, err := rtpengine.NewPoolAdapter(p, rtpengine.PolicyAlways)
	if err != nil {
		t.Fatal(err)
	}
	e.h.far.media = a
	return e, f, p
}

// TestMediaLost: the rtpengine instance holding a call stops answering
// its pings: at the second failed one the call ends with "media relay
// lost" on both sides (the web side's shutdown reason, or 503 before the
// answer; SIP's BYE Reason, CANCEL or 503), whatever its state. Its
// delete is not sent to the silent instance but when it answers again.
func TestMediaLost(t *testing.T) {
	// Each case sets a call up and returns it, its call-id, and what the
	// web side must then hear.
	for _, tc := range []struct {
		name string
		call func(t *testing.T, e *env, eng *fakeEngine) (*fakeCall, string, func())
	}{
		{"answered outgoing", func(t *testing.T, e *env, eng *fakeEngine) (*fakeCall, string, func()) {
			a, fc := e.outgoing(t)
			off := eng.expect(t, "offer")
			fc.push(sipgw.Event{Kind: sipgw.EventAnswered, Code: 200, SDP: []byte(sipAnswer), ToTag: "b"})
			eng.expect(t, "answer")
			a.expect(t, protocol.TypeResponse, protocol.ActionStart)
			return fc, off.CallID, func() {
				if f := a.expect(t, protocol.TypeMessage, protocol.ActionShutdown); f.Header.Reason != lostReason {
					t.Fatalf("shutdown reason %q", f.Header.Reason)
				}
			}
		}},
		{"ringing outgoing", func(t *testing.T, e *env, eng *fakeEngine) (*fakeCall, string, func()) {
			a, fc := e.outgoing(t)
			return fc, eng.expect(t, "offer").CallID, func() {
				if f := a.expect(t, protocol.TypeError, protocol.ActionStart); f.Header.ErrorCode != 503 || f.Header.Reason != lostReason {
					t.Fatalf("error %d %q", f.Header.ErrorCode, f.Header.Reason)
				}
			}
		}},
		{"answered incoming", func(t *testing.T, e *env, eng *fakeEngine) (*fakeCall, string, func()) {
			fc, eps, st := e.incoming(t, 1)
			off := eng.expect(t, "offer")
			e.answerIn(t, fc, eps[0], st[0])
			eng.expect(t, "answer")
			return fc, off.CallID, func() {
				f := eps[0].expect(t, protocol.TypeMessage, protocol.ActionShutdown)
				if f.Header.Reason != lostReason || f.Header.Target != "bob@web.example" {
					t.Fatalf("shutdown %+v", f.Header)
				}
			}
		}},
		{"ringing incoming", func(t *testing.T, e *env, eng *fakeEngine) (*fakeCall, string, func()) {
			fc, eps, _ := e.incoming(t, 2)
			return fc, eng.expect(t, "offer").CallID, func() {
				for _, ep := range eps {
					ep.expect(t, protocol.TypeMessage, protocol.ActionShutdown)
				}
			}
		}},
	} {
		t.Run(tc.name, inBubble(func(t *testing.T) {
			e, eng, p := newPooledMediaEnv(t)
			fc, callID, webHears := tc.call(t, e, eng)
			eng.failing("ping", rtpengine.ErrTimeout)
			webHears()
			if o := fc.expectOp(t, "hangup"); o.code != 503 || o.sdp != lostReason {
				t.Fatalf("SIP hang-up %+v, want 503 %q", o, lostReason)
			}
			e.assertIdle(t)
			select {
			case c := <-eng.cmds:
				t.Fatalf("rtpengine %s %+v sent to the silent instance", c.name, c.r)
			default:
			}
			if st := p.Instances()[0]; st.Lost != 1 || st.Calls != 0 {
				t.Fatalf("instance %+v, want 1 call lost", st)
			}
			eng.failing("ping", nil)
			if d := eng.expect(t, "delete"); d.CallID != callID || !d.DeleteNow {
				t.Fatalf("delete %+v", d)
			}
			// The pool's goroutine sent it, which WaitIdle does not
			// wait for: until it is done with the answer.
			synctest.Wait()
			eng.idle(t, e)
		}))
	}
}

// TestMediaRoute: a browser's call goes to rtpengine as its target's
// media route says (rtpengine.Config.RouteFor): SDES-SRTP for a target of
// media.sdes (RTP/SAVP, crypto not turned off), RTP/AVP for another, a
// route's codecs on the offer toward SIP, and no rtpengine at all under
// a route's policy never.
func TestMediaRoute(t *testing.T) {
	yes := true
	cfg := rtpengine.Config{
		SDES:   rtpengine.Targets{"sip.example"},
		Codecs: rtpengine.Codecs{Strip: []string{"G722"}},
		Routes: []rtpengine.RouteConfig{
			{Targets: rtpengine.Targets{"trunk.example"}, SDES: &yes, Codecs: &rtpengine.Codecs{Transcode: []string{"PCMA"}}},
			{Targets: rtpengine.Targets{"webrtc.example"}, Policy: rtpengine.PolicyNever},
		},
	}
	for _, tc := range []struct {
		target string
		proto  string // of the offer to rtpengine; "" for none
		codecs rtpengine.Codecs
	}{
		{"bob@sip.example", "RTP/SAVP", rtpengine.Codecs{Strip: []string{"G722"}}},
		{"sip:bob@other.example", "RTP/AVP", rtpengine.Codecs{Strip: []string{"G722"}}},
		{"sip:bob@trunk.example", "RTP/SAVP", rtpengine.Codecs{Transcode: []string{"PCMA"}}},
		{"sip:bob@webrtc.example", "", rtpengine.Codecs{}},
	} {
		e, eng := newMediaEnv(t, time.Minute)
		e.h.far.route = cfg.RouteFor
		a, fc := e.outgoingTo(t, tc.target)
		if tc.proto == "" {
			if got := string(fc.dial.SDP); got != webOffer {
				t.Errorf("%s: the INVITE's SDP is not the browser's: %q", tc.target, got)
			}
		} else {
			off := eng.expect(t, "offer")
			if off.TransportProtocol != tc.proto || (len(off.SDES) == 0) != (tc.proto == "RTP/SAVP") || !reflect.DeepEqual(off.Codec, tc.codecs) {
				t.Errorf("%s: offer to rtpengine %s SDES %v codecs %+v, want %s %+v", tc.target, off.TransportProtocol, off.SDES, off.Codec, tc.proto, tc.codecs)
			}
		}
		e.send(a, wf{typ: protocol.TypeMessage, act: protocol.ActionShutdown, sub: "c1", seq: 2, corr: "c1"})
		fc.expectOp(t, "hangup")
		if tc.proto != "" {
			eng.expect(t, "delete")
		}
		eng.idle(t, e)
	}
}

// reliableEarly starts an anchored browser call whose phone answers the
// offer in a reliable 183 (To-tag fork-a), and returns it once the
// browser has the 183, with the first offer to rtpengine.
func reliableEarly(t *testing.T) (*env, *fakeEngine, *fakeEP, *fakeCall, rtpengine.Request) {
	t.Helper()
	e, eng := newMediaEnv(t, time.Minute)
	a, fc := e.outgoing(t)
	off := eng.expect(t, "offer")
	fc.push(sipgw.Event{Kind: sipgw.EventProgress, Code: 183, SDP: []byte(sipAnswer), ToTag: "fork-a", Reliable: true, RSeq: 1})
	eng.expect(t, "answer")
	a.expect(t, protocol.TypeResponse, protocol.ActionStart)
	return e, eng, a, fc, off
}

// TestMediaPrackOffer: the browser's PRACK of a reliable 183 carries a new
// offer (RFC 6337 section 3.1). It goes to rtpengine as the browser's
// re-offer does, under the 183's To-tag, before it reaches the phone; the
// PRACK's 200 answer goes through rtpengine back to the browser in the
// prack's response, and a 200 to the INVITE without SDP repeats it. The
// browser's WebRTC SDP never reaches the phone. A failed offer in
// rtpengine ends the call with 503.
func TestMediaPrackOffer(t *testing.T) {
	newOffer := strings.Replace(webOffer, "a=sendrecv", "a=sendonly", 1)
	t.Run("offer and answer", func(t *testing.T) {
		e, eng, a, fc, off := reliableEarly(t)
		e.send(a, wf{typ: protocol.TypeRequest, act: protocol.ActionPrack, sub: "c1", seq: 2, corr: "c1", p: protocol.CallPayload{SDP: newOffer}})
		if ro := eng.expect(t, "offer"); ro.FromTag != off.FromTag || ro.ToTag != "fork-a" || ro.SDP != newOffer || ro.ICE != "remove" || ro.TransportProtocol != "RTP/AVP" {
			t.Fatalf("PRACK's offer to rtpengine %+v", ro)
		}
		if o := fc.expectOp(t, "prack"); o.sdp != relayed(newOffer) {
			t.Fatalf("PRACK toward SIP with %q", o.sdp)
		}
		prackAnswer := strings.Replace(sipAnswer, "a=sendrecv", "a=recvonly", 1)
		fc.reoffers <- reofferResult{answer: []byte(prackAnswer)}
		if ra := eng.expect(t, "answer"); ra.FromTag != off.FromTag || ra.ToTag != "fork-a" || ra.SDP != prackAnswer || ra.ICE != "force" {
			t.Fatalf("PRACK's answer to rtpengine %+v", ra)
		}
		f := a.expect(t, protocol.TypeResponse, protocol.ActionPrack)
		if f.Control.CorrelationID != "c1" || f.Header.ResponseCode != 0 || decodeSDP(t, f) != relayed(prackAnswer) {
			t.Fatalf("prack's response on %q, code %d, SDP %q", f.Control.CorrelationID, f.Header.ResponseCode, decodeSDP(t, f))
		}
		fc.push(sipgw.Event{Kind: sipgw.EventAnswered, Code: 200, ToTag: "fork-a"})
		answeredThenHangUp(t, e, eng, a, fc, prackAnswer)
	})
	// The 200 to the INVITE right behind the PRACK's, while the PRACK's
	// answer is still in rtpengine: the browser gets the prack's
	// response first, then the start's 200 repeating it (the reader
	// holds the 200 behind the worker's PRACK: read in sip.go).
	t.Run("200 right behind the PRACK's", inBubble(func(t *testing.T) {
		e, eng, a, fc, _ := reliableEarly(t)
		e.send(a, wf{typ: protocol.TypeRequest, act: protocol.ActionPrack, sub: "c1", seq: 2, corr: "c1", p: protocol.CallPayload{SDP: newOffer}})
		eng.expect(t, "offer")
		fc.expectOp(t, "prack")
		fc.push(sipgw.Event{Kind: sipgw.EventAnswered, Code: 200, ToTag: "fork-a"})
		a.quiet(t)
		prackAnswer := strings.Replace(sipAnswer, "a=sendrecv", "a=recvonly", 1)
		fc.reoffers <- reofferResult{answer: []byte(prackAnswer)}
		eng.expect(t, "answer")
		if f := a.expect(t, protocol.TypeResponse, protocol.ActionPrack); decodeSDP(t, f) != relayed(prackAnswer) {
			t.Fatalf("prack's response with SDP %q", decodeSDP(t, f))
		}
		answeredThenHangUp(t, e, eng, a, fc, prackAnswer)
	}))
	// SIP refuses the PRACK: the early session stays as the 183 made
	// it, in rtpengine too, which gets the first offer and the 183's
	// answer again; the call goes on.
	t.Run("SIP refuses the PRACK", func(t *testing.T) {
		e, eng, a, fc, off := reliableEarly(t)
		e.send(a, wf{typ: protocol.TypeRequest, act: protocol.ActionPrack, sub: "c1", seq: 2, corr: "c1", p: protocol.CallPayload{SDP: newOffer}})
		eng.expect(t, "offer")
		fc.expectOp(t, "prack")
		fc.reoffers <- reofferResult{err: &sipgw.ResponseError{Code: 488, Reason: "Not Acceptable Here"}}
		if o := eng.expect(t, "offer"); o.SDP != webOffer || o.FromTag != off.FromTag || o.ToTag != "fork-a" {
			t.Fatalf("rollback offer to rtpengine %+v, want the first offer", o)
		}
		if an := eng.expect(t, "answer"); an.SDP != sipAnswer || an.ToTag != "fork-a" {
			t.Fatalf("rollback answer to rtpengine %+v, want the 183's", an)
		}
		if f := a.expect(t, protocol.TypeError, protocol.ActionPrack); f.Header.ErrorCode != 488 {
			t.Fatalf("prack's error %d %q", f.Header.ErrorCode, f.Header.Reason)
		}
		fc.push(sipgw.Event{Kind: sipgw.EventAnswered, Code: 200, ToTag: "fork-a"})
		answeredThenHangUp(t, e, eng, a, fc, sipAnswer)
	})
	t.Run("rtpengine fails the offer", func(t *testing.T) {
		e, eng, a, fc, _ := reliableEarly(t)
		eng.failing("offer", rtpengine.ErrTimeout)
		e.send(a, wf{typ: protocol.TypeRequest, act: protocol.ActionPrack, sub: "c1", seq: 2, corr: "c1", p: protocol.CallPayload{SDP: newOffer}})
		eng.expect(t, "offer")
		if f := a.expect(t, protocol.TypeError, protocol.ActionPrack); f.Header.ErrorCode != 503 || f.Header.Reason != mediaReason {
			t.Fatalf("prack's error %d %q", f.Header.ErrorCode, f.Header.Reason)
		}
		if f := a.expect(t, protocol.TypeError, protocol.ActionStart); f.Header.ErrorCode != 503 {
			t.Fatalf("start's error %d", f.Header.ErrorCode)
		}
		// The phone never had the PRACK: the call is cancelled.
		fc.expectOp(t, "hangup")
		eng.expect(t, "delete")
		eng.idle(t, e)
	})
}

// answeredThenHangUp: the browser gets the start's 200 with the early
// answer sdp (through rtpengine), then hangs up; the call is deleted in
// rtpengine and nothing is left.
func answeredThenHangUp(t *testing.T, e *env, eng *fakeEngine, a *fakeEP, fc *fakeCall, sdp string) {
	t.Helper()
	if f := a.expect(t, protocol.TypeResponse, protocol.ActionStart); f.Header.ResponseCode != 200 || decodeSDP(t, f) != relayed(sdp) {
		t.Fatalf("200 to the browser: %d %q", f.Header.ResponseCode, decodeSDP(t, f))
	}
	e.send(a, wf{typ: protocol.TypeMessage, act: protocol.ActionShutdown, sub: "c1", seq: 3})
	fc.expectOp(t, "hangup")
	eng.expect(t, "delete")
	eng.idle(t, e)
}

// TestMediaEarlyUpdateOffer: the callee that answered the browser's offer
// in a reliable 183 sends UPDATE with a new offer in the early dialog
// (RFC 3311 section 5.1): it goes through rtpengine under the 183's
// To-tag (the phone's tag now rtpengine's from-tag, as for a re-offer),
// reaches the browser as a re-offer, and the browser's answer goes back
// through rtpengine as the UPDATE's 200; the call's 200 then completes
// the call.
func TestMediaEarlyUpdateOffer(t *testing.T) {
	e, eng, a, fc, off := reliableEarly(t)
	e.send(a, wf{typ: protocol.TypeRequest, act: protocol.ActionPrack, sub: "c1", seq: 2, corr: "c1"})
	fc.expectOp(t, "prack")
	fc.reoffers <- reofferResult{}
	a.expect(t, protocol.TypeResponse, protocol.ActionPrack)

	phoneOffers(t, e, eng, a, fc, "fork-a", off.FromTag, 3)
	fc.push(sipgw.Event{Kind: sipgw.EventAnswered, Code: 200, ToTag: "fork-a"})
	if f := a.expect(t, protocol.TypeResponse, protocol.ActionStart); f.Header.ResponseCode != 200 {
		t.Fatalf("200 to the browser: %d", f.Header.ResponseCode)
	}
	e.send(a, wf{typ: protocol.TypeMessage, act: protocol.ActionShutdown, sub: "c1", seq: 4})
	fc.expectOp(t, "hangup")
	eng.expect(t, "delete")
	eng.idle(t, e)
}

// phoneOffers has the phone (tag phone) offer sipOffer to the browser a
// (rtpengine's to-tag web: the browser's), checks the offer and the
// browser's answer (its frame sequence seq) go through rtpengine, and
// that the phone's request is accepted with the converted answer.
func phoneOffers(t *testing.T, e *env, eng *fakeEngine, a *fakeEP, fc *fakeCall, phone, web string, seq uint64) {
	t.Helper()
	fc.pushReoffer(sipOffer)
	if ro := eng.expect(t, "offer"); ro.FromTag != phone || ro.ToTag != web || ro.TransportProtocol != "UDP/TLS/RTP/SAVPF" {
		t.Fatalf("phone's offer to rtpengine %+v", ro)
	}
	f := a.expect(t, protocol.TypeRequest, protocol.ActionStart)
	if decodeSDP(t, f) != relayed(sipOffer) {
		t.Fatalf("phone's offer to the browser %q", decodeSDP(t, f))
	}
	e.send(a, wf{typ: protocol.TypeResponse, act: protocol.ActionStart, sub: "c1", seq: seq, corr: f.Control.CorrelationID,
		state: protocol.StateFinal, code: 200, p: protocol.CallPayload{SDP: webOffer}})
	if ra := eng.expect(t, "answer"); ra.FromTag != phone || ra.ToTag != web || ra.ICE != "remove" {
		t.Fatalf("browser's answer to rtpengine %+v", ra)
	}
	if o := fc.expectOp(t, "ro-accept"); o.sdp != relayed(webOffer) {
		t.Fatalf("the phone's offer accepted with %q", o.sdp)
	}
}

// TestMediaTrickleFails: trickled candidates rtpengine refuses are
// counted and the call goes on: the browser hears nothing of them, the
// next still go, end-of-candidates included, and the call ends as usual.
func TestMediaTrickleFails(t *testing.T) {
	e, eng, a, fc, off := answeredMedia(t, "b")
	e.send(a, wf{typ: protocol.TypeMessage, act: protocol.ActionComplete, sub: "c1", seq: 2, corr: "c1"})
	fc.expectOp(t, "ack")
	eng.failing("offer", &rtpengine.Error{Command: "offer", Reason: "Failed to parse SDP"})
	e.send(a, wf{typ: protocol.TypeMessage, act: protocol.ActionTrickle, sub: "c1", seq: 3, p: protocol.CallPayload{Candidates: "a=mid:0\r\n" + cand1 + "\r\n"}})
	if fr := eng.expect(t, "offer"); fr.CallID != off.CallID || !strings.Contains(fr.SDP, cand1) {
		t.Fatalf("first fragment %+v", fr)
	}
	e.send(a, wf{typ: protocol.TypeMessage, act: protocol.ActionTrickle, sub: "c1", seq: 4, p: protocol.CallPayload{Candidates: "a=mid:0\r\na=end-of-candidates\r\n"}})
	if fr := eng.expect(t, "offer"); !strings.HasSuffix(fr.SDP, "a=mid:0\r\na=end-of-candidates\r\n") {
		t.Fatalf("end-of-candidates fragment %+v", fr)
	}
	fc.end(sipgw.Event{End: sipgw.EndRemoteBye, Code: 200})
	a.expect(t, protocol.TypeMessage, protocol.ActionShutdown)
	eng.expect(t, "delete")
	eng.idle(t, e)
	// The worker runs one command at a time: the delete's means both
	// fragments' failures were counted.
	if n := e.h.mediaFailed.Load(); n != 2 {
		t.Errorf("media failures %d, want 2", n)
	}
}
