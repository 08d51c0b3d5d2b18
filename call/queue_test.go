package call

import (
	"context"
	"strconv"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/sipgw"
	"github.com/prometheus/client_golang/prometheus"
)

// refusedCount reads jsonrtc_call_sip_refused_total{op} through the
// collector the gateway registers.
func refusedCount(t *testing.T, h *Handler, op string) int {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(h.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if mf.GetName() == "jsonrtc_call_sip_refused_total" && lp.GetName() == "op" && lp.GetValue() == op {
					return int(m.GetCounter().GetValue())
				}
			}
		}
	}
	t.Fatalf("jsonrtc_call_sip_refused_total{op=%q} missing", op)
	return 0
}

// expect503 checks the answer to a request the full queue refused.
func expect503(t *testing.T, ep *fakeEP, act protocol.Action, corr string) {
	t.Helper()
	f := ep.expect(t, protocol.TypeError, act)
	if f.Header.ErrorCode != protocol.CodeServiceUnavailable || f.Control.CorrelationID != corr {
		t.Fatalf("error %d (%s) correlation %q, want 503 correlation %q", f.Header.ErrorCode, f.Header.Reason,
			f.Control.CorrelationID, corr)
	}
}

// A web caller's DTMF and PRACK that find the SIP leg's queue full (a
// re-INVITE hangs, the DTMF behind it fill the queue) are answered 503
// with their correlation and counted; the queued ones still go.
func TestSIPQueueFullOutgoing(t *testing.T) { synctest.Test(t, testSIPQueueFullOutgoing) }

func testSIPQueueFullOutgoing(t *testing.T) {
	e := newEnv(t, time.Minute)
	a, fc := e.outgoing(t)
	e.answerOut(t, a, fc)
	e.send(a, wf{typ: protocol.TypeRequest, act: protocol.ActionStart, sub: "c1", seq: 3, corr: "c3", p: protocol.CallPayload{SDP: webOffer}})
	fc.expectOp(t, "reoffer") // the worker now waits on it
	seq := uint64(4)
	for range farQueue {
		e.send(a, wf{typ: protocol.TypeMessage, act: protocol.ActionDTMF, sub: "c1", seq: seq, p: protocol.CallPayload{Digits: "1", Duration: 100}})
		seq++
	}
	a.quiet(t)
	if n := refusedCount(t, e.h, "dtmf"); n != 0 {
		t.Fatalf("refused %d before the queue was full", n)
	}
	e.send(a, wf{typ: protocol.TypeMessage, act: protocol.ActionDTMF, sub: "c1", seq: seq, p: protocol.CallPayload{Digits: "9", Duration: 100}})
	expect503(t, a, protocol.ActionDTMF, "c"+strconv.FormatUint(seq, 10))
	if n := refusedCount(t, e.h, "dtmf"); n != 1 {
		t.Fatalf("refused dtmf %d, want 1", n)
	}
	seq++
	f := wf{typ: protocol.TypeRequest, act: protocol.ActionTransfer, sub: "c1", seq: seq, corr: "c" + strconv.FormatUint(seq, 10)}.frame()
	f.Header.ReferTo = "sip:carol@sip.example"
	e.h.HandleFrame(a, f)
	expect503(t, a, protocol.ActionTransfer, "c"+strconv.FormatUint(seq, 10))
	if n := refusedCount(t, e.h, "transfer"); n != 1 {
		t.Fatalf("refused transfer %d, want 1", n)
	}
	fc.reoffers <- reofferResult{answer: []byte(sipAnswer)}
	if f := a.expect(t, protocol.TypeResponse, protocol.ActionStart); f.Header.ResponseCode != 200 {
		t.Fatalf("re-offer answer %d", f.Header.ResponseCode)
	}
	for range farQueue {
		if o := fc.expectOp(t, "dtmf"); o.sdp != "1" {
			t.Fatalf("digit %q, want the queued 1s", o.sdp)
		}
	}
	e.send(a, wf{typ: protocol.TypeMessage, act: protocol.ActionShutdown, sub: "c1", seq: seq + 1})
	fc.expectOp(t, "hangup")
}

// gatedCall is a SIP leg whose provisionals and DTMF wait for the test.
type gatedCall struct {
	*fakeCall
	gate    chan struct{}
	entered chan struct{} // an operation waits at the gate
}

func newGatedCall(identity, remote string) gatedCall {
	return gatedCall{newFakeCall(identity, remote), make(chan struct{}), make(chan struct{}, 1)}
}

func (g gatedCall) wait() {
	select {
	case g.entered <- struct{}{}:
	default:
	}
	<-g.gate
}

// waiting returns once an operation waits at the gate.
func (g gatedCall) waiting(t *testing.T) {
	t.Helper()
	select {
	case <-g.entered:
	case <-time.After(waitFor):
		t.Fatal("no SIP operation at the gate")
	}
}

func (g gatedCall) Progress(ctx context.Context, code int, sdp []byte, reliable bool) error {
	g.wait()
	return g.fakeCall.Progress(ctx, code, sdp, reliable)
}

func (g gatedCall) SendDTMF(ctx context.Context, digit string, d time.Duration, ext ...sipgw.Header) error {
	g.wait()
	return g.fakeCall.SendDTMF(ctx, digit, d, ext...)
}

// gatedIncoming rings one web callee with a gated SIP call.
func gatedIncoming(t *testing.T, e *env) (gatedCall, *fakeEP, *protocol.Frame) {
	t.Helper()
	b := e.ep("bob@web.example")
	g := newGatedCall("bob@web.example", "sip:carol@sip.example")
	g.offer = []byte(sipOffer)
	e.h.incomingSIP(g)
	return g, b, b.expect(t, protocol.TypeRequest, protocol.ActionStart)
}

// A web callee's 183 that finds the queue full is answered 503 and
// counted, not dropped.
func TestSIPQueueFullProgress(t *testing.T) { synctest.Test(t, testSIPQueueFullProgress) }

func testSIPQueueFullProgress(t *testing.T) {
	e := newEnv(t, time.Minute)
	g, b, st := gatedIncoming(t, e)
	sub, corr := st.Control.SubsessionID, st.Control.CorrelationID
	early := wf{typ: protocol.TypeResponse, act: protocol.ActionStart, sub: sub, corr: corr,
		state: protocol.StateSubsequent, code: 183, p: protocol.CallPayload{SDP: webOffer}}
	// The first runs and waits at the gate; farQueue more wait behind it.
	early.seq = 1
	e.send(b, early)
	g.waiting(t)
	for i := range farQueue {
		early.seq = uint64(i + 2)
		e.send(b, early)
	}
	b.quiet(t)
	early.seq = farQueue + 2
	e.send(b, early)
	expect503(t, b, protocol.ActionStart, "c"+strconv.FormatUint(early.seq, 10))
	if n := refusedCount(t, e.h, "progress"); n != 1 {
		t.Fatalf("refused progress %d, want 1", n)
	}
	close(g.gate)
	for range farQueue + 1 {
		g.expectOp(t, "progress")
	}
	e.send(b, wf{typ: protocol.TypeError, act: protocol.ActionStart, sub: sub, seq: farQueue + 3, corr: corr, code: 603})
	if o := g.expectOp(t, "reject"); o.code != 603 {
		t.Fatalf("reject %d", o.code)
	}
}

// A reliable 180 from SIP is PRACKed even when the queue is full: the
// peer sends nothing more before it is (RFC 3262 section 3), and without
// it the call would never be answered.
func TestSIPQueueFullSIPPrack(t *testing.T) { synctest.Test(t, testSIPQueueFullSIPPrack) }

func testSIPQueueFullSIPPrack(t *testing.T) {
	e := newEnv(t, time.Minute)
	dials := make(chan gatedCall, 1)
	e.h.useSIP(func(ctx context.Context, o sipgw.DialOptions) (sipCall, error) {
		g := newGatedCall(o.Identity, "sip:"+o.Target)
		dials <- g
		return g, nil
	}, SIPOptions{Domains: []string{"sip.example"}})
	a := e.ep("alice@web.example")
	f := wf{typ: protocol.TypeRequest, act: protocol.ActionStart, sub: "c1", seq: 1, p: protocol.CallPayload{SDP: webOffer}}.frame()
	f.Header.Target = "bob@sip.example"
	e.h.HandleFrame(a, f)
	var g gatedCall
	select {
	case g = <-dials:
	case <-time.After(waitFor):
		t.Fatal("no INVITE")
	}
	// SIP events are read once the dialled leg is set: DTMF can go.
	g.push(sipgw.Event{Kind: sipgw.EventProgress, Code: 100})
	a.expect(t, protocol.TypeResponse, protocol.ActionStart)
	// The first DTMF waits at the gate, farQueue more behind it.
	for i := range farQueue + 1 {
		e.send(a, wf{typ: protocol.TypeMessage, act: protocol.ActionDTMF, sub: "c1", seq: uint64(2 + i), p: protocol.CallPayload{Digits: "1"}})
		if i == 0 {
			g.waiting(t)
		}
	}
	a.quiet(t)
	g.push(sipgw.Event{Kind: sipgw.EventProgress, Code: 180, Reliable: true})
	if f := a.expect(t, protocol.TypeResponse, protocol.ActionStart); f.Header.ResponseCode != 180 {
		t.Fatalf("provisional %d", f.Header.ResponseCode)
	}
	close(g.gate)
	for range farQueue + 1 {
		g.expectOp(t, "dtmf")
	}
	g.expectOp(t, "prack")
	e.send(a, wf{typ: protocol.TypeMessage, act: protocol.ActionShutdown, sub: "c1", seq: 99})
	g.expectOp(t, "hangup")
}

// WaitSIP gives up when its context ends while a leg's operation still
// runs, and waits for it otherwise.
func TestWaitSIPContext(t *testing.T) {
	e := newEnv(t, time.Minute)
	g, b, st := gatedIncoming(t, e)
	e.send(b, wf{typ: protocol.TypeResponse, act: protocol.ActionStart, sub: st.Control.SubsessionID, seq: 1,
		corr: st.Control.CorrelationID, state: protocol.StateSubsequent, code: 180})
	g.waiting(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := e.h.WaitSIP(ctx); err != context.Canceled {
		t.Fatalf("WaitSIP with a blocked leg: %v, want %v", err, context.Canceled)
	}
	close(g.gate)
	g.expectOp(t, "progress")
	e.send(b, wf{typ: protocol.TypeError, act: protocol.ActionStart, sub: st.Control.SubsessionID, seq: 2,
		corr: st.Control.CorrelationID, code: 603})
	g.expectOp(t, "reject")
}
