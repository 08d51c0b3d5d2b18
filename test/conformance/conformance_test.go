// Package conformance checks that docs/protocol.md is enough to write a
// client: docClient (docclient_test.go) is written from the document
// alone, and each scenario asserts what a section promises, against a
// real gateway on a loopback socket.
package conformance

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/jsonrtc/jsonrtc/gateway"
	"github.com/jsonrtc/jsonrtc/limits"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// startGateway runs a gateway with its default configuration (open mode,
// no SIP), changed by mod when not nil, and returns its WebSocket URL, as
// test/integration does.
func startGateway(t *testing.T, mod func(*gateway.Config)) string {
	t.Helper()
	cfg := gateway.DefaultConfig()
	if mod != nil {
		mod(&cfg)
	}
	g, err := gateway.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := g.Shutdown(ctx); err != nil {
			t.Errorf("gateway shutdown: %v", err)
		}
	})
	srv := httptest.NewServer(g.Handler())
	t.Cleanup(srv.Close)
	return "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws/webrtc/conformance"
}

const (
	alice = "alice@example.com"
	bob   = "bob@example.com"
	carol = "carol@example.com"
)

// scenarios is what any client must be able to do with the gateway,
// knowing only docs/protocol.md.
var scenarios = []struct {
	name string
	run  func(t *testing.T, url string)
	mod  func(*gateway.Config)
}{
	{"ConnectJsonrtc", func(t *testing.T, url string) { testConnect(t, url, "jsonrtc") }, nil},
	{"ConnectOracle", func(t *testing.T, url string) { testConnect(t, url, "webrtc.oracle.com") }, nil},
	{"ConnectGuest", testConnectGuest, nil},
	{"ConnectRefusals", testConnectRefusals, nil},
	{"Call", testCall, nil},
	{"Decline", testDecline, nil},
	{"Cancel", testCancel, nil},
	{"Reoffer", testReoffer, nil},
	{"Glare", testGlare, nil},
	{"Fork", testFork, nil},
	{"Transfer", testTransfer, nil},
	{"TrickleAndDTMF", testTrickleAndDTMF, nil},
	{"Messaging", testMessaging, nil},
	{"Presence", testPresence, nil},
	{"StandaloneAcks", testStandaloneAcks, nil},
	{"DuplicateFromClient", testDuplicateFromClient, nil},
	{"Resume", testResume, nil},
	{"ResumeReplacesOpenSocket", testResumeReplaces, nil},
	{"ResumeTwice", testResumeTwice, nil},
	{"CallWhileAway", testCallWhileAway, nil},
	{"OracleAcknowledgement", testOracleAcknowledgement, nil},
	{"FailedResumeUnknownSession", testFailedResumeUnknown, nil},
	{"FailedResumeSameIdentity", testFailedResumeSameIdentity, nil},
	{"Logout", testLogout, nil},
	{"BadInput", testBadInput, nil},
	{"ForeignSessionAndSecondConnect", testForeignAndSecondConnect, nil},
	{"MalformedInARow", testMalformedInARow, nil},
	{"MalformedSpread", testMalformedSpread, nil},
	{"SequenceExhausted", testSequenceExhausted, nil},
	{"RateLimitedResume", testRateLimitedResume, defaultLimits},
	{"Keepalive", testKeepalive, nil},
}

func TestConformance(t *testing.T) {
	for _, s := range scenarios {
		t.Run(s.name, func(t *testing.T) { s.run(t, startGateway(t, s.mod)) })
	}
}

// testConnect: §1.2 (the subprotocol is echoed), §4.1 (the response).
func testConnect(t *testing.T, url, subprotocol string) {
	c := newDocClient(t, url, subprotocol)
	r, err := c.connect(ctxT(t), alice)
	if err != nil {
		t.Fatal(err)
	}
	wantEq(t, "type", r.Control.Type, "response")
	wantEq(t, "package_type", r.Control.PackageType, "register")
	wantEq(t, "action", r.Header.Action, "connect")
	wantEq(t, "session_id length", len(r.Control.SessionID), 22) // §2.2
	wantEq(t, "sequence", r.seq(), 1)
	if r.Control.AckSequence == nil || *r.Control.AckSequence != 1 {
		t.Errorf("ack_sequence = %v, want 1", r.Control.AckSequence)
	}
	wantEq(t, "message_state", r.Control.MessageState, "final")
	wantEq(t, "version", r.Control.Version, "1.0") // §13
	wantEq(t, "response_code", r.Header.ResponseCode, 200)
	wantEq(t, "reason", r.Header.Reason, "OK")
	wantEq(t, "initiator", r.Header.Initiator, alice)
	wantEq(t, "target", r.Header.Target, alice)
	// §3.1: the client's next frame is 2, and the gateway's next is 2.
	s := c.send(ctxT(t), request("call", "x", "prack", header{}, nil))
	wantEq(t, "first frame after connect", s, 2)
	f := c.expect(t, "error", "call", "prack")
	wantEq(t, "gateway's second frame", f.seq(), 2)
}

// testConnectGuest: §4.3, open mode without initiator.
func testConnectGuest(t *testing.T, url string) {
	c := newDocClient(t, url, "jsonrtc")
	r, err := c.connect(ctxT(t), "")
	if err != nil {
		t.Fatal(err)
	}
	id := r.Header.Initiator
	local, _, ok := strings.Cut(id, "@")
	if r.Header.ResponseCode != 200 || !ok || !strings.HasPrefix(local, "guest-") || len(local) != len("guest-")+8 {
		t.Errorf("guest identity %q (response %v), want guest-<8 characters>@<domain>", id, r)
	}
}

// testConnectRefusals: §1.1 (no subprotocol: HTTP 400), §4.2 (a first
// frame that is not a connect: 403, no session; a later connect works).
func testConnectRefusals(t *testing.T, url string) {
	_, resp, err := websocket.Dial(ctxT(t), url, nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusBadRequest {
		t.Errorf("handshake without subprotocol: %v %v, want HTTP 400", resp, err)
	}

	c := newDocClient(t, url, "jsonrtc")
	if err := c.dial(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	pub := request("presence", "p1", "publish", header{}, jsonPayload(map[string]string{"status": "open"}))
	pub.Control.Sequence = u64(1)
	if err := c.writeFrame(ctxT(t), pub); err != nil {
		t.Fatal(err)
	}
	e, err := c.nextConnect(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	wantEq(t, "type", e.Control.Type, "error")
	wantEq(t, "package_type", e.Control.PackageType, "presence") // "carries that action and its package"
	wantEq(t, "action", e.Header.Action, "publish")
	wantEq(t, "error_code", e.Header.ErrorCode, 403)
	wantEq(t, "reason", e.Header.Reason, "the first frame must be a connect request")
	wantEq(t, "session_id", e.Control.SessionID, "")
	if e.Control.Sequence != nil {
		t.Errorf("connect error has a sequence: %v", e)
	}
	if e.Control.AckSequence == nil || *e.Control.AckSequence != 1 {
		t.Errorf("connect error ack_sequence = %v, want 1", e.Control.AckSequence)
	}
	wantEq(t, "correlation_id", e.Control.CorrelationID, "c1")

	// "the client MAY send another connect (with the next sequence)".
	conn := frame{Control: control{Type: "request", PackageType: "register", Sequence: u64(2), Version: "1.0"}, Header: header{Action: "connect", Initiator: alice}}
	if err := c.writeFrame(ctxT(t), conn); err != nil {
		t.Fatal(err)
	}
	r, err := c.nextConnect(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	wantEq(t, "second connect", r.Header.ResponseCode, 200)
	wantEq(t, "second connect sequence", r.seq(), 1)
	if r.Control.AckSequence == nil || *r.Control.AckSequence != 2 {
		t.Errorf("second connect ack_sequence = %v, want 2", r.Control.AckSequence)
	}
	// The numbering goes on from the connect's: next is 3 (§3.1).
	c.mu.Lock()
	c.sessionID, c.identity, c.nextSeq, c.online = r.Control.SessionID, r.Header.Initiator, 3, true
	c.mu.Unlock()
	c.barrier(t)
}

// call is an established call between two doc clients, as §5.2-§5.5 build it.
type call struct {
	caller, callee         *docClient
	callerSub, callerCorr  string
	calleeSub, calleeCorr  string
	offer, answer          json.RawMessage
	ringing, final, relayd frame
}

// ring runs §5.2: the caller's start reaches the callee.
func ring(t *testing.T, caller, callee *docClient, sub string) *call {
	t.Helper()
	k := &call{caller: caller, callee: callee, callerSub: sub, offer: sdpPayload("sendrecv")}
	h := header{Target: callee.identity, Initiator: caller.identity, Ext: map[string]any{"x-custom": "hello"}}
	s := caller.send(ctxT(t), request("call", sub, "start", h, k.offer))
	k.callerCorr = fmt.Sprintf("c%d", s) // §2.5: a frame without correlation is c<sequence>
	in := callee.expect(t, "request", "call", "start")
	k.relayd = in
	k.calleeSub, k.calleeCorr = in.Control.SubsessionID, in.Control.CorrelationID
	if !selfCorrelation(in.Control.CorrelationID) || !strings.HasPrefix(in.Control.SubsessionID, "s") {
		t.Errorf("callee ids %q/%q, want s<n> (§5.1)", in.Control.SubsessionID, in.Control.CorrelationID)
	}
	wantEq(t, "callee start initiator", in.Header.Initiator, caller.identity)
	wantEq(t, "callee start target", in.Header.Target, callee.identity)
	wantPayload(t, "callee start", in.Payload, k.offer)
	wantEq(t, "relayed extension header", in.Header.Ext["x-custom"], any("hello")) // §2.4
	return k
}

// establish runs §5.3-§5.5 on a ringing call.
func (k *call) establish(t *testing.T) {
	t.Helper()
	k.callee.send(ctxT(t), answer(k.relayd, "subsequent", 180, nil))
	k.ringing = k.caller.expect(t, "response", "call", "start")
	wantEq(t, "ringing message_state", k.ringing.Control.MessageState, "subsequent")
	wantEq(t, "ringing response_code", k.ringing.Header.ResponseCode, 180)
	wantEq(t, "ringing reason", k.ringing.Header.Reason, "Ringing")
	wantEq(t, "ringing subsession", k.ringing.Control.SubsessionID, k.callerSub)
	wantEq(t, "ringing correlation", k.ringing.Control.CorrelationID, k.callerCorr)

	k.answer = sdpPayload("sendrecv")
	k.callee.send(ctxT(t), answer(k.relayd, "final", 200, k.answer))
	k.final = k.caller.expect(t, "response", "call", "start")
	wantEq(t, "answer message_state", k.final.Control.MessageState, "final")
	wantEq(t, "answer response_code", k.final.Header.ResponseCode, 200)
	wantEq(t, "answer reason", k.final.Header.Reason, "OK")
	wantEq(t, "answer correlation", k.final.Control.CorrelationID, k.callerCorr)
	wantEq(t, "answer initiator", k.final.Header.Initiator, k.caller.identity)
	wantEq(t, "answer target", k.final.Header.Target, k.callee.identity)
	wantPayload(t, "answer", k.final.Payload, k.answer)

	k.caller.send(ctxT(t), message("call", k.callerSub, "complete", k.final.Control.CorrelationID, header{}, nil))
	done := k.callee.expect(t, "message", "call", "complete")
	wantEq(t, "complete subsession", done.Control.SubsessionID, k.calleeSub)
	wantEq(t, "complete correlation", done.Control.CorrelationID, k.calleeCorr)
}

func pair(t *testing.T, url string) (*docClient, *docClient) {
	return mustConnect(t, url, alice), mustConnect(t, url, bob)
}

// testCall: §5.2-§5.5 and the bye of §5.8.
func testCall(t *testing.T, url string) {
	a, b := pair(t, url)
	k := ring(t, a, b, "call1")
	k.establish(t)
	b.send(ctxT(t), message("call", k.calleeSub, "shutdown", "", header{}, nil))
	bye := a.expect(t, "message", "call", "shutdown")
	wantEq(t, "bye subsession", bye.Control.SubsessionID, k.callerSub)
	wantEq(t, "bye initiator", bye.Header.Initiator, bob) // §5.8: the side that hung up
	wantEq(t, "bye target", bye.Header.Target, alice)
	if !selfCorrelation(bye.Control.CorrelationID) {
		t.Errorf("bye correlation %q, want a fresh s<n>", bye.Control.CorrelationID)
	}
	// §5.8: a request on the ended call is 481; shutdown is never answered.
	b.barrier(t)
	a.barrier(t)
}

// testDecline: §5.7, a decline ≥ 600 fails the call at once.
func testDecline(t *testing.T, url string) {
	a, b := pair(t, url)
	k := ring(t, a, b, "call1")
	b.send(ctxT(t), errorTo(k.relayd, 603))
	e := a.expect(t, "error", "call", "start")
	wantEq(t, "error_code", e.Header.ErrorCode, 603)
	wantEq(t, "subsession", e.Control.SubsessionID, "call1")
	wantEq(t, "correlation", e.Control.CorrelationID, k.callerCorr)
	if e.Header.Reason == "" {
		t.Error("error without reason (§9.1: the gateway always sets one)")
	}
	b.barrier(t)
}

// testCancel: §5.8, the caller's shutdown before the answer.
func testCancel(t *testing.T, url string) {
	a, b := pair(t, url)
	k := ring(t, a, b, "call1")
	a.send(ctxT(t), message("call", "call1", "shutdown", k.callerCorr, header{}, nil))
	s := b.expect(t, "message", "call", "shutdown")
	wantEq(t, "cancel subsession", s.Control.SubsessionID, k.calleeSub)
	wantEq(t, "cancel correlation", s.Control.CorrelationID, k.calleeCorr)
	wantEq(t, "cancel target", s.Header.Target, bob)
	a.barrier(t) // "the caller hears nothing more"
	// A late answer from the callee is dropped without answer (§5.8).
	b.send(ctxT(t), answer(k.relayd, "final", 200, sdpPayload("sendrecv")))
	b.barrier(t)
	a.barrier(t)
}

// testReoffer: §5.9, the callee puts the call on hold.
func testReoffer(t *testing.T, url string) {
	a, b := pair(t, url)
	k := ring(t, a, b, "call1")
	k.establish(t)
	hold := sdpPayload("sendonly")
	s := b.send(ctxT(t), request("call", k.calleeSub, "start", header{Target: alice}, hold))
	in := a.expect(t, "request", "call", "start")
	wantEq(t, "re-offer subsession", in.Control.SubsessionID, "call1")
	if !selfCorrelation(in.Control.CorrelationID) {
		t.Errorf("re-offer correlation %q, want s<n>", in.Control.CorrelationID)
	}
	wantEq(t, "re-offer initiator", in.Header.Initiator, bob) // §5.1 exception
	wantEq(t, "re-offer target", in.Header.Target, alice)
	wantPayload(t, "re-offer", in.Payload, hold)

	held := sdpPayload("recvonly")
	a.send(ctxT(t), answer(in, "final", 200, held))
	r := b.expect(t, "response", "call", "start")
	wantEq(t, "re-offer answer code", r.Header.ResponseCode, 200)
	wantEq(t, "re-offer answer correlation", r.Control.CorrelationID, fmt.Sprintf("c%d", s))
	wantEq(t, "re-offer answer subsession", r.Control.SubsessionID, k.calleeSub)
	wantPayload(t, "re-offer answer", r.Payload, held)
	b.send(ctxT(t), message("call", k.calleeSub, "complete", r.Control.CorrelationID, header{}, nil))
	done := a.expect(t, "message", "call", "complete")
	wantEq(t, "re-offer complete correlation", done.Control.CorrelationID, in.Control.CorrelationID)

	// §5.9: a re-offer without SDP is 488.
	s = a.send(ctxT(t), request("call", "call1", "start", header{Target: bob}, nil))
	e := a.expect(t, "error", "call", "start")
	wantEq(t, "re-offer without SDP", e.Header.ErrorCode, 488)
	wantEq(t, "its correlation", e.Control.CorrelationID, fmt.Sprintf("c%d", s))
	b.barrier(t)
}

// testGlare: §5.9, a re-offer while the peer's is outstanding is 491.
func testGlare(t *testing.T, url string) {
	a, b := pair(t, url)
	k := ring(t, a, b, "call1")
	k.establish(t)
	a.send(ctxT(t), request("call", "call1", "start", header{Target: bob}, sdpPayload("sendonly")))
	in := b.expect(t, "request", "call", "start")
	s := b.send(ctxT(t), request("call", k.calleeSub, "start", header{Target: alice}, sdpPayload("sendonly")))
	e := b.expect(t, "error", "call", "start")
	wantEq(t, "glare code", e.Header.ErrorCode, 491)
	wantEq(t, "glare reason", e.Header.Reason, "Glare")
	wantEq(t, "glare correlation", e.Control.CorrelationID, fmt.Sprintf("c%d", s))
	// The first re-offer still completes.
	b.send(ctxT(t), answer(in, "final", 200, sdpPayload("recvonly")))
	r := a.expect(t, "response", "call", "start")
	wantEq(t, "re-offer answer", r.Header.ResponseCode, 200)
	a.barrier(t)
}

// testFork: §5.13, a call rings every session of the callee; the first
// final answer wins and the other fork gets shutdown. The second fork
// rings wsc.js-style, without response_code (§5.3).
func testFork(t *testing.T, url string) {
	a, b1 := pair(t, url)
	b2 := mustConnect(t, url, bob)
	k := ring(t, a, b1, "call1")
	in2 := b2.expect(t, "request", "call", "start")
	wantPayload(t, "second fork's offer", in2.Payload, k.offer)
	b2.send(ctxT(t), answer(in2, "subsequent", 0, nil))
	r := a.expect(t, "response", "call", "start")
	wantEq(t, "ringing without code", r.Header.ResponseCode, 180)
	// §5.4: an answer without SDP is refused and the fork keeps ringing.
	b1.send(ctxT(t), answer(k.relayd, "final", 200, nil))
	e := b1.expect(t, "error", "call", "start")
	wantEq(t, "answer without SDP", e.Header.ErrorCode, 400)
	b1.send(ctxT(t), answer(k.relayd, "final", 200, sdpPayload("sendrecv")))
	r = a.expect(t, "response", "call", "start")
	wantEq(t, "answer", r.Control.MessageState, "final")
	sd := b2.expect(t, "message", "call", "shutdown")
	wantEq(t, "losing fork's shutdown subsession", sd.Control.SubsessionID, in2.Control.SubsessionID)
	wantEq(t, "losing fork's shutdown correlation", sd.Control.CorrelationID, in2.Control.CorrelationID)
	// A late answer of the losing fork is dropped.
	b2.send(ctxT(t), answer(in2, "final", 200, sdpPayload("sendrecv")))
	b2.barrier(t)
	a.send(ctxT(t), message("call", "call1", "complete", k.callerCorr, header{}, nil))
	b1.expect(t, "message", "call", "complete")
	a.barrier(t)
}

// testTransfer: §5.12 between web clients; toward an oracle client 405.
func testTransfer(t *testing.T, url string) {
	a, b := pair(t, url)
	k := ring(t, a, b, "call1")
	s := a.send(ctxT(t), request("call", "call1", "transfer", header{ReferTo: carol}, nil))
	e := a.expect(t, "error", "call", "transfer")
	wantEq(t, "transfer before the answer", e.Header.ErrorCode, 491)
	k.establish(t)
	s = a.send(ctxT(t), request("call", "call1", "transfer", header{ReferTo: carol}, nil))
	in := b.expect(t, "request", "call", "transfer")
	wantEq(t, "refer_to", in.Header.ReferTo, carol)
	wantEq(t, "transfer subsession", in.Control.SubsessionID, k.calleeSub)
	b.send(ctxT(t), answer(in, "final", 202, nil))
	r := a.expect(t, "response", "call", "transfer")
	wantEq(t, "transfer answer", r.Header.ResponseCode, 202)
	wantEq(t, "transfer correlation", r.Control.CorrelationID, fmt.Sprintf("c%d", s))

	o := newDocClient(t, url, "webrtc.oracle.com")
	if r, err := o.connect(ctxT(t), carol); err != nil || r.Header.ResponseCode != 200 {
		t.Fatalf("oracle connect: %v %v", r, err)
	}
	k2 := ring(t, a, o, "call2")
	k2.establish(t)
	a.send(ctxT(t), request("call", "call2", "transfer", header{ReferTo: bob}, nil))
	e = a.expect(t, "error", "call", "transfer")
	wantEq(t, "transfer toward an oracle client", e.Header.ErrorCode, 405)
	o.barrier(t)
}

// testTrickleAndDTMF: §5.10, §5.11, relayed unchanged after the answer.
func testTrickleAndDTMF(t *testing.T, url string) {
	a, b := pair(t, url)
	k := ring(t, a, b, "call1")
	k.establish(t)
	cand := jsonPayload(map[string]string{"candidates": "a=mid:0\r\na=candidate:1 1 udp 2113937151 192.168.1.10 50000 typ host\r\na=end-of-candidates\r\n"})
	a.send(ctxT(t), message("call", "call1", "trickle", "", header{}, cand))
	tr := b.expect(t, "message", "call", "trickle")
	wantEq(t, "trickle subsession", tr.Control.SubsessionID, k.calleeSub)
	wantEq(t, "trickle initiator", tr.Header.Initiator, alice)
	wantEq(t, "trickle target", tr.Header.Target, bob)
	wantPayload(t, "trickle", tr.Payload, cand)

	digits := jsonPayload(map[string]any{"digits": "12#", "duration": 100})
	b.send(ctxT(t), message("call", k.calleeSub, "dtmf", "", header{}, digits))
	d := a.expect(t, "message", "call", "dtmf")
	wantEq(t, "dtmf subsession", d.Control.SubsessionID, "call1")
	wantEq(t, "dtmf initiator", d.Header.Initiator, bob)
	wantPayload(t, "dtmf", d.Payload, digits)
	a.barrier(t) // neither is answered
	b.barrier(t)
}

func textMessage(body string) json.RawMessage {
	return jsonPayload(map[string]string{"content_type": "text/plain", "body": body})
}

// testMessaging: §8.1, §8.2.
func testMessaging(t *testing.T, url string) {
	a, b := pair(t, url)
	body := textMessage("hello bob")
	s := a.send(ctxT(t), request("messaging", "", "send", header{Target: bob}, body))
	in := b.expect(t, "request", "messaging", "send")
	wantEq(t, "delivery initiator", in.Header.Initiator, alice)
	wantEq(t, "delivery target", in.Header.Target, bob)
	wantEq(t, "delivery subsession", in.Control.SubsessionID, "")
	if !selfCorrelation(in.Control.CorrelationID) {
		t.Errorf("delivery correlation %q, want s<n>", in.Control.CorrelationID)
	}
	wantPayload(t, "delivery", in.Payload, body)
	b.send(ctxT(t), answer(in, "", 200, nil))
	r := a.expect(t, "response", "messaging", "send")
	wantEq(t, "report code", r.Header.ResponseCode, 200)
	wantEq(t, "report correlation", r.Control.CorrelationID, fmt.Sprintf("c%d", s))

	// A target never seen: 404 (§8.2).
	s = a.send(ctxT(t), request("messaging", "", "send", header{Target: "nobody@example.com"}, body))
	e := a.expect(t, "error", "messaging", "send")
	wantEq(t, "unknown target", e.Header.ErrorCode, 404)
	wantEq(t, "its correlation", e.Control.CorrelationID, fmt.Sprintf("c%d", s))
}

// watch subscribes w to presentity's presence on sub (§6.1) and reads the
// answer and the first notify, which must say open (§6.2).
func watch(t *testing.T, w *docClient, presentity, sub string) {
	t.Helper()
	s := w.send(ctxT(t), request("presence", sub, "start", header{Initiator: w.identity, Target: presentity}, nil))
	r := w.expect(t, "response", "presence", "start")
	wantEq(t, "watch code", r.Header.ResponseCode, 200)
	wantEq(t, "watch state", r.Control.MessageState, "final")
	wantEq(t, "watch correlation", r.Control.CorrelationID, fmt.Sprintf("c%d", s))
	wantEq(t, "watch subsession", r.Control.SubsessionID, sub)
	if r.Header.Expiry == nil || *r.Header.Expiry != 3600 {
		t.Errorf("expiry = %v, want 3600", r.Header.Expiry)
	}
	n := w.expect(t, "message", "presence", "notify")
	wantEq(t, "notify subsession", n.Control.SubsessionID, sub)
	wantEq(t, "notify initiator", n.Header.Initiator, presentity)
	wantEq(t, "notify target", n.Header.Target, w.identity)
	if !selfCorrelation(n.Control.CorrelationID) {
		t.Errorf("notify correlation %q, want s<n>", n.Control.CorrelationID)
	}
	wantPayload(t, "first notify", n.Payload, jsonPayload(map[string]string{"presentity": presentity, "status": "open"}))
}

// testPresence: §6.1-§6.4.
func testPresence(t *testing.T, url string) {
	a, b := pair(t, url)
	watch(t, a, bob, "w1")

	state := jsonPayload(map[string]string{"status": "open", "activity": "away", "note": "lunch"})
	b.send(ctxT(t), request("presence", "p1", "publish", header{Initiator: bob}, state))
	p := b.expect(t, "response", "presence", "publish")
	wantEq(t, "publish code", p.Header.ResponseCode, 200)
	n := a.expect(t, "message", "presence", "notify")
	wantPayload(t, "notify after publish", n.Payload, jsonPayload(map[string]string{"presentity": bob, "status": "open", "activity": "away", "note": "lunch"}))

	// §6.3: publishing another's presence is 403.
	b.send(ctxT(t), request("presence", "p1", "publish", header{}, jsonPayload(map[string]string{"presentity": alice, "status": "closed"})))
	e := b.expect(t, "error", "presence", "publish")
	wantEq(t, "publish for another", e.Header.ErrorCode, 403)

	// §6.4: unsubscribe; not answered, and no more notifies.
	a.send(ctxT(t), message("presence", "w1", "shutdown", "", header{}, nil))
	a.barrier(t)
	b.send(ctxT(t), request("presence", "p1", "publish", header{}, jsonPayload(map[string]string{"status": "closed"})))
	b.expect(t, "response", "presence", "publish")
	a.barrier(t)
}

// testStandaloneAcks: §3.2. A jsonrtc client gets an acknowledgement
// after session.ack_delay (200 ms) of silence; an oracle client never.
func testStandaloneAcks(t *testing.T, url string) {
	o := newDocClient(t, url, "webrtc.oracle.com")
	if r, err := o.connect(ctxT(t), carol); err != nil || r.Header.ResponseCode != 200 {
		t.Fatalf("oracle connect: %v %v", r, err)
	}
	a := mustConnect(t, url, alice)

	// A shutdown of nothing is not answered (§6.4): only an ack can follow.
	o.send(ctxT(t), message("presence", "none", "shutdown", "", header{}, nil))
	t0 := time.Now()
	s := a.send(ctxT(t), message("presence", "none", "shutdown", "", header{}, nil))
	ack := a.expectAck(t, s)
	if d := time.Since(t0); d < 200*time.Millisecond {
		t.Errorf("standalone ack after %v, before the 200 ms ack delay", d)
	}
	if ack.Control.Sequence != nil || ack.Header.Action != "" {
		t.Errorf("acknowledgement with a sequence or an action: %v", ack)
	}
	// The oracle client's frame was processed before alice's, so its ack
	// timer, had it one, would have fired by now; the barrier's answer
	// carries the ack instead, and nothing standalone came before it.
	o.barrier(t)
	select {
	case f := <-o.acks:
		t.Errorf("oracle client got a standalone acknowledgement: %v", f)
	default:
	}
}

// testDuplicateFromClient: §3.4 step 6: a resent frame has no effect.
func testDuplicateFromClient(t *testing.T, url string) {
	a, b := pair(t, url)
	a.send(ctxT(t), request("messaging", "", "send", header{Target: bob}, textMessage("once")))
	a.mu.Lock()
	raw := a.retained[len(a.retained)-1].raw
	a.mu.Unlock()
	b.expect(t, "request", "messaging", "send")
	if err := a.writeRaw(ctxT(t), raw); err != nil {
		t.Fatal(err)
	}
	a.barrier(t)
	b.barrier(t)
}

// testResume: §4.4, §4.6. Frames sent to the client while its socket is
// down, and frames it sent meanwhile, are each processed once.
func testResume(t *testing.T, url string) {
	a, b := pair(t, url)
	old := a.sessionID
	a.drop()

	// While alice is away: bob sends her two messages (processed: bob's
	// barrier is answered after them), and alice queues one.
	b.send(ctxT(t), request("messaging", "", "send", header{Target: alice}, textMessage("m1")))
	b.send(ctxT(t), request("messaging", "", "send", header{Target: alice}, textMessage("m2")))
	b.barrier(t)
	s := a.send(ctxT(t), request("messaging", "", "send", header{Target: bob}, textMessage("a1")))
	if got := a.retainedSeqs(); len(got) != 1 || got[0] != s {
		t.Fatalf("retained %v, want [%d]", got, s)
	}

	r, ok, err := a.resume(ctxT(t), nil)
	if err != nil || !ok {
		t.Fatalf("resume: ok=%v err=%v %v", ok, err, r)
	}
	wantEq(t, "session_id", r.Control.SessionID, old)
	wantEq(t, "response_code", r.Header.ResponseCode, 200)
	wantEq(t, "initiator", r.Header.Initiator, alice)
	wantEq(t, "sslr", *r.Header.Sslr, s-1) // alice's frame was never written

	for _, want := range []string{"m1", "m2"} {
		in := a.expect(t, "request", "messaging", "send")
		if in.seq() >= r.seq() {
			t.Errorf("resent frame %d not below the connect response's %d", in.seq(), r.seq())
		}
		wantPayload(t, "resent", in.Payload, textMessage(want))
		a.send(ctxT(t), answer(in, "", 200, nil))
	}
	in := b.expect(t, "request", "messaging", "send")
	wantPayload(t, "alice's queued message", in.Payload, textMessage("a1"))
	b.send(ctxT(t), answer(in, "", 200, nil))
	for range 2 {
		b.expect(t, "response", "messaging", "send")
	}
	a.expect(t, "response", "messaging", "send")
	a.barrier(t)
	b.barrier(t)
	wantEq(t, "duplicates alice dropped", a.dups, 0)
}

// testResumeReplaces: §4.4, a resume while the old socket is still open
// closes the old one with 4000.
func testResumeReplaces(t *testing.T, url string) {
	a := mustConnect(t, url, alice)
	a.mu.Lock()
	oldClosed := a.closed
	a.mu.Unlock()
	r, ok, err := a.resume(ctxT(t), nil)
	if err != nil || !ok {
		t.Fatalf("resume: ok=%v err=%v %v", ok, err, r)
	}
	select {
	case rep := <-oldClosed:
		wantEq(t, "old socket close code", rep.code, websocket.StatusCode(4000))
	case <-time.After(5 * time.Second):
		t.Fatal("old socket not closed")
	}
	a.barrier(t)
}

// testResumeTwice: §4.4, a second resume right after the first, before
// any new frame: cslr is then below the first resume's response, whose
// number is never filled (register frames are not resent).
func testResumeTwice(t *testing.T, url string) {
	a, b := pair(t, url)
	a.drop()
	if _, ok, err := a.resume(ctxT(t), nil); err != nil || !ok {
		t.Fatalf("first resume: ok=%v err=%v", ok, err)
	}
	a.drop()
	b.send(ctxT(t), request("messaging", "", "send", header{Target: alice}, textMessage("m1")))
	b.barrier(t)
	if _, ok, err := a.resume(ctxT(t), nil); err != nil || !ok {
		t.Fatalf("second resume: ok=%v err=%v", ok, err)
	}
	in := a.expect(t, "request", "messaging", "send")
	wantPayload(t, "resent", in.Payload, textMessage("m1"))
	a.send(ctxT(t), answer(in, "", 200, nil))
	b.expect(t, "response", "messaging", "send")
	a.barrier(t)
	wantEq(t, "duplicates alice dropped", a.dups, 0)
}

// testCallWhileAway: §4.6, §5.13: a session waiting for a resume is rung;
// its start is retained and arrives on the resume, and the call goes on.
func testCallWhileAway(t *testing.T, url string) {
	a, b := pair(t, url)
	b.drop()
	s := a.send(ctxT(t), request("call", "call1", "start", header{Target: bob}, sdpPayload("sendrecv")))
	a.barrier(t) // the start was processed: bob's fork is rung
	if _, ok, err := b.resume(ctxT(t), nil); err != nil || !ok {
		t.Fatalf("resume: ok=%v err=%v", ok, err)
	}
	in := b.expect(t, "request", "call", "start")
	wantEq(t, "initiator", in.Header.Initiator, alice)
	k := &call{caller: a, callee: b, callerSub: "call1", callerCorr: fmt.Sprintf("c%d", s),
		calleeSub: in.Control.SubsessionID, calleeCorr: in.Control.CorrelationID, relayd: in}
	k.establish(t)
}

// testOracleAcknowledgement: §3.2, the wsc.js form of acknowledgement
// (the gateway's sequence in the client's own sequence field) is not a
// client sequence.
func testOracleAcknowledgement(t *testing.T, url string) {
	a := mustConnect(t, url, alice)
	a.barrier(t) // gateway frame 2
	ack := frame{Control: control{Type: "acknowledgement", PackageType: "call", SessionID: a.sessionID, SubsessionID: "no-such-call", Sequence: u64(2), Version: "1.0"}}
	if err := a.writeFrame(ctxT(t), ack); err != nil {
		t.Fatal(err)
	}
	// Our next frame is still 3 and is processed, not taken as a duplicate.
	a.barrier(t)
}

// testFailedResumeUnknown: §4.5, numbering after a failed resume.
func testFailedResumeUnknown(t *testing.T, url string) {
	a := mustConnect(t, url, alice)
	a.barrier(t)
	a.drop()
	a.mu.Lock()
	a.sessionID = "AAAAAAAAAAAAAAAAAAAAAA" // no such session
	a.mu.Unlock()
	r, ok, err := a.resume(ctxT(t), nil)
	if err != nil || ok {
		t.Fatalf("resume of an unknown session: ok=%v err=%v", ok, err)
	}
	if r.Control.SessionID == "" || r.Control.SessionID == "AAAAAAAAAAAAAAAAAAAAAA" {
		t.Errorf("session_id %q, want a new one", r.Control.SessionID)
	}
	wantEq(t, "sequence", r.seq(), 1)
	if r.Control.AckSequence == nil || *r.Control.AckSequence != 1 {
		t.Errorf("ack_sequence = %v, want 1 (the reconnect connect stands for 1)", r.Control.AckSequence)
	}
	// A frame numbered 1 is a duplicate of the connect and is dropped.
	dup := request("call", "x", "prack", header{}, nil)
	dup.Control.Sequence, dup.Control.SessionID, dup.Control.Version = u64(1), r.Control.SessionID, "1.0"
	if err := a.writeFrame(ctxT(t), dup); err != nil {
		t.Fatal(err)
	}
	// Our next frame is 2, and the gateway's next is 2.
	s := a.send(ctxT(t), request("call", "y", "prack", header{}, nil))
	wantEq(t, "first frame of the new session", s, 2)
	e := a.expect(t, "error", "call", "prack")
	wantEq(t, "its correlation (the frame numbered 1 got no answer)", e.Control.CorrelationID, "c2")
	wantEq(t, "gateway sequence", e.seq(), 2)
}

// testFailedResumeSameIdentity: §4.5, a resume that fails criterion 2
// ends the old session: its call is shut down toward the peer.
func testFailedResumeSameIdentity(t *testing.T, url string) {
	a, b := pair(t, url)
	k := ring(t, a, b, "call1")
	k.establish(t)
	old := a.sessionID
	a.drop()
	a.mu.Lock()
	h := a.resumeHeaders()
	a.mu.Unlock()
	h.Cslr = u64(1 << 40) // a frame the gateway never sent
	r, ok, err := a.resume(ctxT(t), &h)
	if err != nil || ok || r.Control.SessionID == old {
		t.Fatalf("resume with cslr beyond the gateway's frames: ok=%v err=%v %v", ok, err, r)
	}
	bye := b.expect(t, "message", "call", "shutdown")
	wantEq(t, "shutdown subsession", bye.Control.SubsessionID, k.calleeSub)
	a.barrier(t) // nothing of the old session reaches the new one
}

// testLogout: §4.7, close 1000 ends the session at once.
func testLogout(t *testing.T, url string) {
	a, b := pair(t, url)
	c := mustConnect(t, url, carol)
	watch(t, c, alice, "w")
	k := ring(t, a, b, "call1")
	k.establish(t)

	old := a.sessionID
	a.mu.Lock()
	a.online = false
	conn := a.conn
	a.mu.Unlock()
	if err := conn.Close(websocket.StatusNormalClosure, "logout"); err != nil {
		t.Fatalf("close 1000: %v", err)
	}
	bye := b.expect(t, "message", "call", "shutdown")
	wantEq(t, "bye initiator", bye.Header.Initiator, alice)
	n := c.expect(t, "message", "presence", "notify")
	wantPayload(t, "watcher's notify", n.Payload, jsonPayload(map[string]string{"presentity": alice, "status": "closed"}))

	// The session is gone: resuming it gives a new session.
	r, ok, err := a.resume(ctxT(t), nil)
	if err != nil || ok || r.Control.SessionID == old {
		t.Fatalf("resume after logout: ok=%v err=%v %v", ok, err, r)
	}
}

// testBadInput: §9.3 (malformed frames), §2.7, §3.4 (missing sequence,
// gaps, numbers out of range), §5.8 (481).
func testBadInput(t *testing.T, url string) {
	a := mustConnect(t, url, alice)
	ctx := ctxT(t)

	a.writeRaw(ctx, []byte("not json"))
	e := a.expect(t, "error", "call", "")
	wantEq(t, "malformed: error_code", e.Header.ErrorCode, 400)
	wantEq(t, "malformed: correlation_id", e.Control.CorrelationID, "")
	wantEq(t, "malformed: session_id", e.Control.SessionID, a.sessionID)
	if e.Control.Sequence == nil || e.Header.Reason == "" {
		t.Errorf("malformed: error not sequenced or without reason: %v", e)
	}

	s := a.claim()
	a.writeRaw(ctx, fmt.Appendf(nil, `{"control":{"type":"request","package_type":"call","subsession_id":"c9","sequence":%d},"header":{"action":"fly"}}`, s))
	e = a.expect(t, "error", "call", "fly")
	wantEq(t, "unknown action", e.Header.ErrorCode, 405)
	wantEq(t, "unknown action: correlation", e.Control.CorrelationID, fmt.Sprintf("c%d", s))
	wantEq(t, "unknown action: subsession", e.Control.SubsessionID, "c9")

	a.writeRaw(ctx, []byte(`{"control":{"type":"request","package_type":"call","subsession_id":"c9"},"header":{"action":"prack"}}`))
	e = a.expect(t, "error", "call", "prack")
	wantEq(t, "no sequence", e.Header.ErrorCode, 400)
	wantEq(t, "no sequence: reason", e.Header.Reason, "control.sequence is missing")

	// 2^53 is not a sequence (§2.2: 1 to 2^53−1).
	a.writeRaw(ctx, []byte(`{"control":{"type":"request","package_type":"call","subsession_id":"c9","sequence":9007199254740992},"header":{"action":"prack"}}`))
	e = a.expect(t, "error", "call", "prack")
	wantEq(t, "sequence 2^53", e.Header.ErrorCode, 400)
	wantEq(t, "sequence 2^53: correlation (not a sequence, §9.3)", e.Control.CorrelationID, "")

	s = a.claim()
	a.writeRaw(ctx, fmt.Appendf(nil, `{"control":{"type":"request","package_type":"call","subsession_id":"c9","sequence":%d},"header":{"action":"start","x-h":"a\r\nVia: evil"}}`, s))
	e = a.expect(t, "error", "call", "start")
	wantEq(t, "extension header with CRLF", e.Header.ErrorCode, 400)

	// A gap is accepted (§3.4 step 7).
	a.skip(5)
	a.barrier(t)

	// A frame whose payload does not decode (§5.2: 400).
	a.send(ctx, request("call", "c10", "start", header{Target: bob}, json.RawMessage(`{"sdp":5}`)))
	e = a.expect(t, "error", "call", "start")
	wantEq(t, "bad payload", e.Header.ErrorCode, 400)
	a.barrier(t)
}

// testForeignAndSecondConnect: §3.4 step 2 (a frame naming another
// session is dropped without answer), §4.4 (a connect on a connected
// socket is 405), §4.3 (a presence start for someone else is 403).
func testForeignAndSecondConnect(t *testing.T, url string) {
	a := mustConnect(t, url, alice)
	f := request("call", "x", "prack", header{}, nil)
	f.Control.Sequence, f.Control.SessionID = u64(a.claim()), "AAAAAAAAAAAAAAAAAAAAAA"
	a.writeFrame(ctxT(t), f)
	a.barrier(t)

	s := a.claim()
	again := frame{Control: control{Type: "request", PackageType: "register", SessionID: a.sessionID, Sequence: u64(s)}, Header: header{Action: "connect"}}
	a.writeFrame(ctxT(t), again)
	e := a.expect(t, "error", "register", "connect")
	wantEq(t, "second connect", e.Header.ErrorCode, 405)
	wantEq(t, "second connect reason", e.Header.Reason, "already connected")

	a.send(ctxT(t), request("presence", "w", "start", header{Initiator: carol, Target: bob}, nil))
	e = a.expect(t, "error", "presence", "start")
	wantEq(t, "presence start as another", e.Header.ErrorCode, 403)

	// §4.2: an invalid open-mode identity.
	c := newDocClient(t, url, "jsonrtc")
	r, err := c.connect(ctxT(t), "not an identity")
	if err != nil {
		t.Fatal(err)
	}
	wantEq(t, "invalid identity", r.Header.ErrorCode, 400)
	wantEq(t, "invalid identity reason", r.Header.Reason, "initiator is not a valid identity")
}

// testMalformedInARow: §9.3, ten undecodable messages close the socket
// with 1008, each answered first; the session waits for a resume (§1.5).
func testMalformedInARow(t *testing.T, url string) {
	a := mustConnect(t, url, alice)
	for range 10 {
		a.writeRaw(ctxT(t), []byte("{"))
	}
	wantEq(t, "close code", a.waitClosed(t).code, websocket.StatusPolicyViolation)
	a.mu.Lock()
	a.online = false
	a.mu.Unlock()
	got := 0
	for len(a.frames) > 0 {
		got += countError(t, <-a.frames)
	}
	wantEq(t, "error frames before the close", got, 10)
	if _, ok, err := a.resume(ctxT(t), nil); err != nil || !ok {
		t.Fatalf("resume after 1008: ok=%v err=%v", ok, err)
	}
	a.barrier(t) // nothing resent: every error was received and counted in cslr
}

// testMalformedSpread: §9.3, malformed messages are counted in time: valid
// frames between them do not reset the count.
func testMalformedSpread(t *testing.T, url string) {
	a := mustConnect(t, url, alice)
	for i := range 10 {
		a.writeRaw(ctxT(t), []byte("{"))
		countError(t, a.expect(t, "error", "call", ""))
		if i < 9 {
			a.barrier(t)
		}
	}
	wantEq(t, "close code", a.waitClosed(t).code, websocket.StatusPolicyViolation)
}

// testSequenceExhausted: §9.1, the client frame numbered 2^53−1 is
// answered 500 and ends the session (close 1000).
func testSequenceExhausted(t *testing.T, url string) {
	a := mustConnect(t, url, alice)
	old := a.sessionID
	a.mu.Lock()
	a.nextSeq = 1<<53 - 1
	a.mu.Unlock()
	a.send(ctxT(t), request("call", "x", "prack", header{}, nil))
	e := a.expect(t, "error", "call", "prack")
	wantEq(t, "error_code", e.Header.ErrorCode, 500)
	wantEq(t, "reason", e.Header.Reason, "sequence numbers exhausted; start a new session")
	wantEq(t, "close code", a.waitClosed(t).code, websocket.StatusNormalClosure)
	a.mu.Lock()
	a.online = false
	a.mu.Unlock()
	// §9.1: "the client starts a new session". (Resuming it instead is
	// racy: the gateway sends the close before it ends the session, and a
	// quick resume lands in between; reported, not relied on here.)
	c := mustConnect(t, url, alice)
	if c.sessionID == old {
		t.Errorf("new session has the exhausted one's id")
	}
	c.barrier(t)
}

// defaultLimits turns the default limits profile on: in open mode, with
// no profile configured, nothing is limited (§9.3).
func defaultLimits(cfg *gateway.Config) {
	cfg.Limits.Profiles = map[string]limits.Profile{limits.DefaultProfile: {}}
}

// testRateLimitedResume: §9.3 rate limits. A burst past the frame budget
// gets one 503 (processed) and silence for the rest (not processed); the
// next frame let through closes the socket with 1013, and resuming as
// §4.4 says, again each time, gets every frame answered exactly once.
func testRateLimitedResume(t *testing.T, url string) {
	a := mustConnect(t, url, alice)
	// The default profile's frame burst is 100, refilled at 50 a second:
	// 160 goes past it even when a loaded machine takes a second to send
	// them (110 did not, once in CI at a load of 25: every frame was
	// answered and the socket never closed).
	const burst = 160
	answers := map[string]int{}
	var sent []uint64
	for range burst {
		sent = append(sent, a.send(ctxT(t), request("call", "none", "prack", header{}, nil)))
	}
	closes, resumes := 0, 0
	a.resendEvery = 25 * time.Millisecond // under the default 50 frames a second
	probe := time.NewTicker(50 * time.Millisecond)
	defer probe.Stop()
	heard := false
	deadline := time.After(10 * time.Second)
	for len(answers) < len(sent) {
		a.mu.Lock()
		closed := a.closed
		a.mu.Unlock()
		select {
		case f := <-a.frames:
			if f.Control.Type != "error" || (f.Header.ErrorCode != 481 && f.Header.ErrorCode != 503) {
				t.Fatalf("unexpected frame %v", f)
			}
			if f.Header.ErrorCode == 503 {
				wantEq(t, "503 reason", f.Header.Reason, "rate limited")
			}
			answers[f.Control.CorrelationID]++
			heard = true
		case rep := <-closed:
			wantEq(t, "close code", rep.code, websocket.StatusTryAgainLater)
			closes++
			a.mu.Lock()
			a.online = false
			a.mu.Unlock()
			if _, ok, err := a.resume(ctxT(t), nil); err != nil || !ok {
				t.Fatalf("resume %d: ok=%v err=%v", resumes+1, ok, err)
			}
			resumes++
		case <-probe.C:
			// Answers stopped with frames unanswered: the socket is
			// behind, and the gateway notices only on the next frame it
			// lets through (§9.3), as any client's next would be.
			if !heard {
				sent = append(sent, a.send(ctxT(t), request("call", "none", "prack", header{}, nil)))
			}
			heard = false
		case <-deadline:
			t.Fatalf("%d of %d frames answered after %d resumes", len(answers), len(sent), resumes)
		}
	}
	for _, s := range sent {
		if n := answers[fmt.Sprintf("c%d", s)]; n != 1 {
			t.Errorf("frame %d answered %d times", s, n)
		}
	}
	if closes == 0 {
		t.Error("the burst never closed the socket with 1013")
	}
	t.Logf("%d frames, %d resumes", len(sent), resumes)
}

func countError(t *testing.T, f frame) int {
	t.Helper()
	if f.Control.Type != "error" || f.Header.ErrorCode != 400 || f.Header.Action != "" {
		t.Errorf("want error 400 without action, got %v", f)
		return 0
	}
	return 1
}

// testKeepalive: §1.4, ping is answered pong and is not a frame.
func testKeepalive(t *testing.T, url string) {
	a := mustConnect(t, url, alice)
	a.ping(t)
	a.ping(t)
	a.barrier(t) // the pings took no sequence: the barrier's is 2
	wantEq(t, "next sequence", a.claim(), 3)
}
