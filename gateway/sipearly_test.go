package gateway

import (
	"context"
	"encoding/json"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/jsonrtc/jsonrtc/call"
	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/sipgw"
)

// A ringing outgoing SIP call whose host died has a record of its
// INVITE: the node that adopts the caller's call (here at the host's
// lease expiry) cancels the INVITE as the dead host would have, the
// phone gets the CANCEL (the INVITE's Via and CSeq number, the cause),
// the caller the error of her start (503, saying why), and the record
// goes. Before, the record did not exist: the phone rang on until its
// INVITE timed out, and the caller heard "the call's node went down".
func TestRingingSIPCallOfADeadHostCancelled(t *testing.T) {
	g, url := sipNode(t)
	a := dial(t, url, protocol.SubprotocolOracle, nil)
	a.connect("alice@web.example")
	phone, got := byePeer(t)
	app, _ := json.Marshal(call.SIPSnapshot{Out: true, Target: "bob@sip.example",
		Web: call.LegSnapshot{Session: a.sid, Identity: "alice@web.example", Sub: "c1", StartCorr: "s1"}})
	via := "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKdeadnode"
	rec := callRecord{Host: "n7", SIP: &sipgw.DialogState{Version: sipgw.DialogStateVersion, Role: "uac", CallID: "cid-ringing", LocalTag: "lt",
		LocalURI: "sip:alice@example.com", RemoteURI: "sip:bob@sip.example", App: app,
		Invite: &sipgw.InviteState{RequestURI: "sip:bob@" + phone, Via: via, From: "<sip:alice@example.com>;tag=lt", To: "<sip:bob@sip.example>", CSeq: 4}}}
	adoptRecord(t, g, a.sid, "c1", rec)
	var cn *sip.Request
	select {
	case cn = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("the phone got nothing")
	}
	if cn.Method != sip.CANCEL || cn.Via().Value() != via || cn.CSeq().SeqNo != 4 || cn.CallID().Value() != "cid-ringing" {
		t.Fatalf("the phone got\n%s\nwant the INVITE's CANCEL", cn)
	}
	if r := cn.GetHeader("Reason"); r == nil || r.Value() != `SIP;cause=503;text="the call's node went down before the answer: cancelled"` {
		t.Errorf("CANCEL Reason %v", r)
	}
	f := a.read()
	expect(t, f, protocol.TypeError, protocol.ActionStart)
	if f.Control.SubsessionID != "c1" || f.Control.CorrelationID != "s1" || f.Header.ErrorCode != 503 || f.Header.Reason == "" {
		t.Fatalf("alice's end of the call %s", f.Marshal())
	}
	sipRecordOf(t, g, a.sid, "c1", func(r *callRecord) bool { return r == nil })
	if n := g.repl.sip.cancelled.Load(); n != 1 {
		t.Errorf("cancelled %d, want 1", n)
	}
}

// A ringing incoming SIP call whose host died, recorded while it rang,
// that cannot ring on elsewhere (a record without the caller's Contact,
// as a node of an earlier release wrote; or an INVITE over TCP or TLS,
// which this node cannot answer either, TestRingingIncomingSIPCallOfADeadHostContinued
// has one that can): the node that adopts a callee's call answers the caller's INVITE 480
// from the record (to its top Via, which a proxy matches by the branch),
// each callee gets a shutdown, and the record goes. Rung on two sessions,
// the record is under one's key and the other's points at it: adopted
// through the pointer (that fork's owner got there first), the call is
// refused all the same and both callees are told, and the record is
// left saying why, for a fork whose session resumes later (its owner
// reads the reason there). Before, the caller rang until its own timer ran out;
// rung on two sessions, the call had no record at all.
func TestRingingIncomingSIPCallOfADeadHostRefused(t *testing.T) {
	for _, forks := range []int{0, 1} {
		t.Run(strconv.Itoa(forks+1)+" sessions", func(t *testing.T) { ringingIncomingRefused(t, forks) })
	}
}

func ringingIncomingRefused(t *testing.T, forks int) {
	g, url := sipNode(t)
	var bs []*peer
	var legs []call.LegSnapshot
	for i := range forks + 1 {
		b := dial(t, url, protocol.SubprotocolOracle, nil)
		b.connect("bob@web.example")
		bs = append(bs, b)
		legs = append(legs, call.LegSnapshot{Session: b.sid, Identity: "bob@web.example", Sub: "g" + strconv.Itoa(i+1), StartCorr: "s1"})
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	app, _ := json.Marshal(call.SIPSnapshot{Target: "bob@web.example", Remote: "carol@sip.example", Web: legs[0], Forks: legs[1:]})
	via := "SIP/2.0/UDP " + pc.LocalAddr().String() + ";branch=z9hG4bKproxy1"
	rec := callRecord{Host: "n7", SIP: &sipgw.DialogState{Version: sipgw.DialogStateVersion, Role: "uas", CallID: "cid-in", LocalTag: "ours",
		RemoteTag: "theirs", LocalURI: "sip:bob@example.com", RemoteURI: "sip:carol@sip.example", App: app,
		Invite: &sipgw.InviteState{Vias: []string{via, "SIP/2.0/UDP 10.9.9.9:5060;branch=z9hG4bKcaller"}, From: "<sip:carol@sip.example>;tag=theirs",
			To: "<sip:bob@example.com>;tag=ours", CSeq: 21}}}
	ck := callKey(legs[0].Session, legs[0].Sub)
	for _, l := range legs[1:] {
		ptr, _ := json.Marshal(callRecord{Of: ck})
		if _, err := g.store.Create(context.Background(), callKey(l.Session, l.Sub), ptr); err != nil {
			t.Fatal(err)
		}
	}
	by := legs[len(legs)-1] // the fork's key when there is one
	adoptRecordAs(t, g, legs[0].Session, legs[0].Sub, by.Session, by.Sub, rec)
	_ = pc.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 65535)
	n, _, err := pc.ReadFrom(buf)
	if err != nil {
		t.Fatalf("the caller's proxy got nothing: %v", err)
	}
	m, err := sip.ParseMessage(buf[:n])
	res, ok := m.(*sip.Response)
	if err != nil || !ok {
		t.Fatalf("the caller's proxy got %q (%v)", buf[:n], err)
	}
	if vs := res.GetHeaders("Via"); res.StatusCode != 480 || len(vs) != 2 || vs[0].Value() != via || res.CSeq().SeqNo != 21 ||
		res.CSeq().MethodName != sip.INVITE || res.CallID().Value() != "cid-in" || res.To().Value() != "<sip:bob@example.com>;tag=ours" {
		t.Fatalf("the caller's proxy got\n%s", res)
	}
	for i, b := range bs {
		f := b.read()
		expect(t, f, protocol.TypeMessage, protocol.ActionShutdown)
		if f.Control.SubsessionID != legs[i].Sub || !strings.Contains(f.Header.Reason, "before the answer") {
			t.Fatalf("bob's end of the call on %s: %s", legs[i].Sub, f.Marshal())
		}
	}
	if n := g.repl.sip.cancelled.Load(); n != 1 {
		t.Errorf("cancelled %d, want 1", n)
	}
	if forks == 0 {
		sipRecordOf(t, g, legs[0].Session, legs[0].Sub, func(r *callRecord) bool { return r == nil })
		return
	}
	// Left saying why, for a fork whose session resumes later: its
	// owner hears the reason from the record, the call's node gone
	// before the answer, not merely gone.
	for _, l := range legs {
		if r := sipRecordOf(t, g, l.Session, l.Sub, func(r *callRecord) bool { return r != nil }); r.Ended != call.RingLostIn || r.SIP != nil || r.Host != g.self() {
			t.Fatalf("the record read through %s: %+v", l.Sub, r)
		}
	}
	if host, gone := g.repl.adopt(legs[1].Session, legs[1].Sub); host != "" || gone != call.RingLostIn {
		t.Fatalf("a fork's adoption after the end: host %q, gone %q", host, gone)
	}
}

// adoptRecord stores rec as the call record of the leg (session, sub),
// and has g adopt it, as a survivor does at its host's lease expiry.
func adoptRecord(t *testing.T, g *Gateway, session, sub string, rec callRecord) {
	t.Helper()
	adoptRecordAs(t, g, session, sub, session, sub, rec)
}

// adoptRecordAs is adoptRecord through the leg (bySession, bySub), whose
// key points at the record.
func adoptRecordAs(t *testing.T, g *Gateway, session, sub, bySession, bySub string, rec callRecord) {
	t.Helper()
	data, _ := json.Marshal(rec)
	if _, err := g.store.Create(context.Background(), callKey(session, sub), data); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := g.repl.adoptOnce(ctx, bySession, bySub); err != nil {
		t.Fatal(err)
	}
}

// A SIP call's record while its INVITE is under way counts as ringing,
// not in jsonrtc_call_records (which says a call would go on elsewhere),
// and moves there at the answer: the tests that kill a node once
// jsonrtc_call_records says the confirmed call is recorded rely on it.
func TestSIPCallRecordRingingGauge(t *testing.T) {
	gs, _ := newClusterGatewaysMod(t, 1, nil, nil)
	g := gs[0]
	sn := call.SIPSnapshot{Out: true, Target: "bob@sip.example", Web: call.LegSnapshot{Session: "S1", Identity: "alice@example.com", Sub: "c1", StartCorr: "c1"}}
	app, _ := json.Marshal(sn)
	st := sipgw.DialogState{Version: sipgw.DialogStateVersion, Role: "uac", CallID: "cid-g", App: app, Invite: &sipgw.InviteState{Via: "SIP/2.0/UDP h;branch=z9hG4bKg", CSeq: 1}}
	until := func(records, ringing int) {
		t.Helper()
		want := []string{"jsonrtc_call_records " + strconv.Itoa(records) + "\n", "jsonrtc_sip_call_records_ringing " + strconv.Itoa(ringing) + "\n"}
		for deadline := time.Now().Add(15 * time.Second); ; <-time.After(20 * time.Millisecond) {
			m := scrape(t, g)
			if strings.Contains(m, want[0]) && strings.Contains(m, want[1]) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("want %q after 15s", want)
			}
		}
	}
	g.repl.replicateSIP(sn, st, false)
	until(0, 1)
	st.Invite, st.LocalTag, st.RemoteTag = nil, "lt", "rt"
	g.repl.replicateSIP(sn, st, false)
	until(1, 0)
	g.repl.replicateSIP(sn, st, true)
	until(0, 0)
}
