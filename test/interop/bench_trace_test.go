package interop

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// A -trace_msg log as SIPp 3.6 writes it: INVITE retransmitted, 180, 200,
// ACK, BYE and its 200 for call 1; call 2 answered; call 3 unanswered.
const sampleTrace = `----------------------------------------------- 2026-11-25 19:21:35.933775
UDP message sent (462 bytes):

INVITE sip:uas-1@example.com SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:25061;branch=z9hG4bK-20699-1-0
Call-ID: 1-20699@127.0.0.1
CSeq: 1 INVITE
X-App: bench-7
Content-Length:   0

----------------------------------------------- 2026-11-25 19:21:35.934000
UDP message sent (462 bytes):

INVITE sip:uas-2@example.com SIP/2.0
Call-ID: 2-20699@127.0.0.1
CSeq: 1 INVITE

----------------------------------------------- 2026-11-25 19:21:36.433775
UDP message sent (462 bytes):

INVITE sip:uas-1@example.com SIP/2.0
Call-ID: 1-20699@127.0.0.1
CSeq: 1 INVITE

----------------------------------------------- 2026-11-25 19:21:36.433900
UDP message received [291] bytes :

SIP/2.0 180 Ringing
Call-ID: 1-20699@127.0.0.1
CSeq: 1 INVITE

----------------------------------------------- 2026-11-25 19:21:36.434015
UDP message received [450] bytes :

SIP/2.0 200 OK
Via: SIP/2.0/UDP 127.0.0.1:25061;branch=z9hG4bK-20699-1-0
call-id: 1-20699@127.0.0.1
CSeq: 1 INVITE

----------------------------------------------- 2026-11-25 19:21:36.434100
UDP message received [450] bytes :

SIP/2.0 200 OK
Call-ID: 2-20699@127.0.0.1
CSeq: 1 INVITE

----------------------------------------------- 2026-11-25 19:21:36.434200
UDP message sent (300 bytes):

BYE sip:127.0.0.1:25060 SIP/2.0
Call-ID: 1-20699@127.0.0.1
CSeq: 2 BYE

----------------------------------------------- 2026-11-25 19:21:36.435200
UDP message received [300 bytes] :

SIP/2.0 200 OK
Call-ID: 1-20699@127.0.0.1
CSeq: 2 BYE

----------------------------------------------- 2026-11-25 19:21:36.436000
UDP message sent (462 bytes):

INVITE sip:uas-3@example.com SIP/2.0
Call-ID: 3-20699@127.0.0.1
CSeq: 1 INVITE

`

func TestTraceSetups(t *testing.T) {
	calls, err := traceSetups(strings.NewReader(sampleTrace))
	if err != nil {
		t.Fatal(err)
	}
	// Call 1 from its first INVITE, not the retransmission, to the
	// INVITE's 200, not the BYE's; call 3 has no answer.
	c1, c2, c3 := calls["1-20699@127.0.0.1"], calls["2-20699@127.0.0.1"], calls["3-20699@127.0.0.1"]
	if c1 == nil || c2 == nil || c3 == nil || len(calls) != 3 {
		t.Fatalf("calls %v", calls)
	}
	if d := c1.ok.Sub(c1.invite); d != 500240*time.Microsecond || c1.tag != "bench-7" {
		t.Fatalf("call 1: %v, tag %q", d, c1.tag)
	}
	if !c3.ok.IsZero() {
		t.Fatalf("call 3 answered at %v", c3.ok)
	}
	lat := setupLatencies(calls)
	slices.Sort(lat)
	if want := []time.Duration{500100 * time.Microsecond, 500240 * time.Microsecond}; !slices.Equal(lat, want) {
		t.Fatalf("latencies %v, want %v", lat, want)
	}
	if _, err := traceSetups(strings.NewReader(traceSeparator + "yesterday\n")); err == nil {
		t.Fatal("a bad timestamp parsed")
	}
}

// A -trace_stat file as SIPp 3.6 writes it (columns cut after FailedCall):
// a dump at start and the one at exit.
const sampleStats = "StartTime;LastResetTime;CurrentTime;ElapsedTime(P);ElapsedTime(C);TargetRate;CallRate(P);CallRate(C);IncomingCall(P);IncomingCall(C);OutgoingCall(P);OutgoingCall(C);TotalCallCreated;CurrentCall;SuccessfulCall(P);SuccessfulCall(C);FailedCall(P);FailedCall(C);\n" +
	"2026-12-05\t11:57:14.150387\t1796471834.150387;2026-12-05\t11:57:14.150387\t1796471834.150387;2026-12-05\t11:57:14.150400\t1796471834.150400;00:00:00;00:00:00;100000;0;0;0;0;0;0;0;0;0;0;0;0;\n" +
	"2026-12-05\t11:57:14.150387\t1796471834.150387;2026-12-05\t11:57:15.215056\t1796471835.215056;2026-12-05\t11:57:15.215470\t1796471835.215470;00:00:00;00:00:01;100000;0;1877.93;0;0;0;2000;2000;0;0;2000;0;0;\n"

func TestSippStats(t *testing.T) {
	calls, elapsed, err := sippStats(sampleStats)
	if err != nil {
		t.Fatal(err)
	}
	if calls != 2000 || elapsed != 1065083*time.Microsecond {
		t.Fatalf("%d calls in %v", calls, elapsed)
	}
	if _, _, err := sippStats(strings.Replace(sampleStats, "1796471835.215470", "soon", 1)); err == nil {
		t.Fatal("a bad time parsed")
	}
}
