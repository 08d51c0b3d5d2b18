package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/jsonrtc/jsonrtc/call"
	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/sipgw"
)

// A ringing incoming SIP call (over UDP) whose host died rings on at the
// node that adopts a callee's call (issue 15): rung on two sessions, its
// record under one's key and the other's pointing at it, it is adopted
// through the pointer; the second session's answer is the 200 the
// caller's proxy gets, built from the record (its Vias, To with our tag,
// CSeq) with this node's Contact, where the ACK and the BYE come; the
// other session hears the call is off, the answering one the BYE. The
// record names this node while the call lasts and goes at its end.
// Before, the call was refused (480) and both sessions shut down.
func TestRingingIncomingSIPCallOfADeadHostContinued(t *testing.T) {
	g, url := sipNode(t)
	var bs []*peer
	var legs []call.LegSnapshot
	for i := range 2 {
		b := dial(t, url, protocol.SubprotocolOracle, nil)
		b.connect("bob@web.example")
		bs = append(bs, b)
		legs = append(legs, call.LegSnapshot{Session: b.sid, Identity: "bob@web.example", Sub: fmt.Sprintf("g%d", i+1), StartCorr: "s1"})
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	app, _ := json.Marshal(call.SIPSnapshot{Target: "bob@web.example", Remote: "carol@sip.example", Web: legs[0], Forks: legs[1:],
		RingUntil: time.Now().Add(time.Minute)})
	via := "SIP/2.0/UDP " + pc.LocalAddr().String() + ";branch=z9hG4bKproxy1"
	rec := callRecord{Host: "n7", SIP: &sipgw.DialogState{Version: sipgw.DialogStateVersion, Role: "uas", CallID: "cid-in", LocalTag: "ours",
		RemoteTag: "theirs", LocalURI: "sip:bob@example.com", RemoteURI: "sip:carol@sip.example", RemoteTarget: "sip:carol@" + pc.LocalAddr().String(),
		Transport: "UDP", RemoteSDP: sdpOffer, App: app,
		Invite: &sipgw.InviteState{RequestURI: "sip:bob@" + g.sip.Addr("udp"), Vias: []string{via, "SIP/2.0/UDP 10.9.9.9:5060;branch=z9hG4bKcaller"},
			From: "<sip:carol@sip.example>;tag=theirs", To: "<sip:bob@example.com>;tag=ours", CSeq: 21}}}
	ck := callKey(legs[0].Session, legs[0].Sub)
	ptr, _ := json.Marshal(callRecord{Of: ck})
	if _, err := g.store.Create(context.Background(), callKey(legs[1].Session, legs[1].Sub), ptr); err != nil {
		t.Fatal(err)
	}
	adoptRecordAs(t, g, legs[0].Session, legs[0].Sub, legs[1].Session, legs[1].Sub, rec)
	sipRecordOf(t, g, legs[1].Session, legs[1].Sub, func(r *callRecord) bool { return r != nil && r.Host == g.self() && r.SIP != nil && r.SIP.Invite != nil })
	if n, c := g.repl.sip.ringingAdopted.Load(), g.repl.sip.cancelled.Load(); n != 1 || c != 0 {
		t.Fatalf("ringing calls adopted %d, ended %d; want 1, 0", n, c)
	}

	bs[1].send(&protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeResponse, Package: protocol.PackageCall, SubsessionID: "g2", CorrelationID: "s1", MessageState: protocol.StateFinal},
		Header:  protocol.Header{Action: protocol.ActionStart, ResponseCode: 200},
		Payload: protocol.EncodePayload(protocol.CallPayload{SDP: sdpOffer}),
	})
	f := bs[0].read()
	expect(t, f, protocol.TypeMessage, protocol.ActionShutdown)
	if f.Control.SubsessionID != "g1" {
		t.Fatalf("the other session got %s", f.Marshal())
	}
	res, from := readResponse(t, pc, 200)
	if res.CSeq().MethodName != sip.INVITE {
		t.Fatalf("the caller's proxy got\n%s", res)
	}
	ct := res.Contact()
	if vs := res.GetHeaders("Via"); len(vs) != 2 || vs[0].Value() != via || res.CSeq().SeqNo != 21 || res.CallID().Value() != "cid-in" ||
		res.To().Value() != "<sip:bob@example.com>;tag=ours" || ct == nil || ct.Address.HostPort() != g.sip.Addr("udp") {
		t.Fatalf("the caller's proxy got\n%s", res)
	}
	write := func(method string, cseq int) {
		t.Helper()
		m := fmt.Sprintf("%s %s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK%s%d\r\nMax-Forwards: 70\r\nFrom: <sip:carol@sip.example>;tag=theirs\r\n"+
			"To: <sip:bob@example.com>;tag=ours\r\nCall-ID: cid-in\r\nCSeq: %d %s\r\nContent-Length: 0\r\n\r\n",
			method, ct.Address.String(), pc.LocalAddr(), method, cseq, cseq, method)
		if _, err := pc.WriteTo([]byte(m), from); err != nil {
			t.Fatal(err)
		}
	}
	write("ACK", 21)
	expect(t, bs[1].read(), protocol.TypeMessage, protocol.ActionComplete)
	write("BYE", 22)
	if res, _ := readResponse(t, pc, 200); res.CSeq().MethodName != sip.BYE {
		t.Fatalf("the BYE's answer\n%s", res)
	}
	f = bs[1].read()
	expect(t, f, protocol.TypeMessage, protocol.ActionShutdown)
	if f.Control.SubsessionID != "g2" {
		t.Fatalf("the answering session got %s", f.Marshal())
	}
	sipRecordOf(t, g, legs[1].Session, legs[1].Sub, func(r *callRecord) bool { return r == nil })
}

// readResponse returns the next response of code pc gets (retransmissions
// of others skipped), within 10 s, and where it came from.
func readResponse(t *testing.T, pc net.PacketConn, code int) (*sip.Response, net.Addr) {
	t.Helper()
	_ = pc.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 65535)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatalf("no %d at the caller's proxy: %v", code, err)
		}
		m, err := sip.ParseMessage(append([]byte(nil), buf[:n]...))
		if res, ok := m.(*sip.Response); err == nil && ok && res.StatusCode == code {
			return res, from
		}
	}
}

// A ringing incoming SIP call whose INVITE came over TCP, its host dead,
// does not ring on (its answer needs the INVITE's connection, the dead
// node's, RFC 3261 section 18.2.2): the callee hears it ended and the
// record goes, as before the ringing calls rang on; nothing reaches the
// caller, whose proxy's timer ends it.
func TestRingingIncomingSIPCallOverTCPOfADeadHostEnded(t *testing.T) {
	g, url := sipNode(t)
	b := dial(t, url, protocol.SubprotocolOracle, nil)
	b.connect("bob@web.example")
	leg := call.LegSnapshot{Session: b.sid, Identity: "bob@web.example", Sub: "g1", StartCorr: "s1"}
	app, _ := json.Marshal(call.SIPSnapshot{Target: "bob@web.example", Remote: "carol@sip.example", Web: leg, RingUntil: time.Now().Add(time.Minute)})
	rec := callRecord{Host: "n7", SIP: &sipgw.DialogState{Version: sipgw.DialogStateVersion, Role: "uas", CallID: "cid-tcp", LocalTag: "ours",
		RemoteTag: "theirs", LocalURI: "sip:bob@example.com", RemoteURI: "sip:carol@sip.example", RemoteTarget: "sip:carol@127.0.0.1:9;transport=tcp",
		Transport: "TCP", RemoteSDP: sdpOffer, App: app,
		Invite: &sipgw.InviteState{RequestURI: "sip:bob@" + g.sip.Addr("udp"), Vias: []string{"SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKtcp1"},
			From: "<sip:carol@sip.example>;tag=theirs", To: "<sip:bob@example.com>;tag=ours", CSeq: 3}}}
	adoptRecord(t, g, leg.Session, leg.Sub, rec)
	f := b.read()
	expect(t, f, protocol.TypeMessage, protocol.ActionShutdown)
	if f.Control.SubsessionID != "g1" || f.Header.Reason != call.RingLostIn {
		t.Fatalf("bob's end of the call: %s", f.Marshal())
	}
	sipRecordOf(t, g, leg.Session, leg.Sub, func(r *callRecord) bool { return r == nil })
	if n, c := g.repl.sip.ringingAdopted.Load(), g.repl.sip.cancelled.Load(); n != 0 || c != 1 {
		t.Fatalf("ringing calls adopted %d, ended %d; want 0, 1", n, c)
	}
}
