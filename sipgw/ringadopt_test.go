package sipgw

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// ringingElsewhere rings alice on one user agent with an INVITE of the
// peer bob's (Record-Route rr when set), and returns the call, its
// recorded state, and a second user agent, clustered, to go on with it:
// the first one's user agent stays, as a dead node's stays silent.
func ringingElsewhere(t *testing.T, rr string) (c *Call, st DialogState, b *UserAgent, bob *fakeProxy, from, to string) {
	t.Helper()
	bob = newFakePeer(t, func(req *sip.Request) *sip.Response {
		if req.Method == sip.REGISTER || req.Method == sip.BYE {
			return sip.NewResponseFromRequest(req, 200, "OK", nil)
		}
		return nil
	})
	cfg := Config{Listen: ListenConfig{UDP: "127.0.0.1:0"}, Domain: "example.com", Registrar: bob.uri()}
	a, incoming, token := registeredAlice(t, cfg)
	from, to = "<sip:bob@example.com>;tag=near", "<sip:alice@example.com>"
	extra := "Content-Type: application/sdp\r\nAllow: INVITE, ACK, BYE, CANCEL, INFO\r\nSupported: timer\r\nSession-Expires: 1200;refresher=uac\r\n"
	if rr != "" {
		extra += "Record-Route: " + rr + "\r\n"
	}
	inv := bob.rawRequest("INVITE", "sip:"+token+"@"+a.Addr("udp"), from, to, "ring-in", 10, extra, "v=0\r\no=bob 3 3 IN IP4 127.0.0.1\r\n")
	gw, err := net.ResolveUDPAddr("udp", a.Addr("udp"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.pc.WriteTo([]byte(inv), gw); err != nil {
		t.Fatal(err)
	}
	select {
	case c = <-incoming:
	case <-time.After(10 * time.Second):
		t.Fatal("no incoming call")
	}
	c.SetApp([]byte(`{"web":2}`))
	st, ok := c.EarlyState()
	if !ok || st.RemoteTarget != "sip:bob@"+bob.pc.LocalAddr().String() || len(st.PeerAllow) != 5 || (rr != "") != (len(st.RouteSet) == 1) {
		t.Fatalf("early state of a ringing incoming call %+v (%v)", st, ok)
	}
	st = viaStore(t, st)
	b = startWith(t, Config{Listen: ListenConfig{UDP: "127.0.0.1:0"}, Domain: "example.com"}, &Options{Clustered: true})
	t.Cleanup(func() { endRinging(t, c, bob, gw, from, to) })
	return c, st, b, bob, from, to
}

// TestAdoptRingingAnswered (issue 15, a ringing incoming call continued
// after its node dies): another user agent goes on with the recorded
// INVITE of a ringing incoming call; its Answer sends the 200 the dead
// node would have (every Via, the Record-Route, From, To with the call's
// tag, Call-ID, CSeq, the SDP, the session timer the INVITE asked for)
// with its own Contact, where the top Via
// says, again until the ACK; the ACK to that Contact confirms the call,
// whose state then says so, and its BYE goes to the caller's Contact.
func TestAdoptRingingAnswered(t *testing.T) {
	_, st, b, bob, from, _ := ringingElsewhere(t, "")
	rr := "<sip:" + bob.pc.LocalAddr().String() + ";lr>"
	if !RingingMoves(st) {
		t.Fatal("a ringing call over UDP does not move")
	}
	st.RouteSet = []string{rr} // as a proxy's, copied into the 200 only
	cb, err := b.AdoptRinging(st, nil)
	if err != nil {
		t.Fatal(err)
	}
	if es, ok := cb.EarlyState(); !ok || es.Invite.Via != st.Invite.Via || es.LocalTag != st.LocalTag {
		t.Fatalf("the adopted ringing call's early state %+v (%v)", es, ok)
	}
	answer := "v=0\r\no=alice 1 1 IN IP4 127.0.0.1\r\n"
	if err := cb.Answer(context.Background(), []byte(answer)); err != nil {
		t.Fatal(err)
	}
	res := bob.final(t)
	tag, _ := res.To().Params.Get("tag")
	branch, _ := res.Via().Params.Get("branch")
	ct := res.Contact()
	if res.StatusCode != 200 || res.CallID().Value() != "ring-in" || res.CSeq().SeqNo != 10 || tag != st.LocalTag ||
		branch != "z9hG4bKring-in10" || string(res.Body()) != answer || ct == nil || ct.Address.HostPort() != b.Addr("udp") ||
		res.GetHeader("Record-Route") == nil || res.GetHeader("Record-Route").Value() != rr ||
		res.GetHeader("Session-Expires") == nil || res.GetHeader("Session-Expires").Value() != "1200;refresher=uac" {
		t.Fatalf("the caller got\n%s", res)
	}
	if again := bob.final(t); again.StatusCode != 200 {
		t.Fatalf("then %d, want the 200 again until the ACK", again.StatusCode)
	}
	gw, err := net.ResolveUDPAddr("udp", b.Addr("udp"))
	if err != nil {
		t.Fatal(err)
	}
	ack := fmt.Sprintf("ACK %s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKack1\r\nMax-Forwards: 70\r\nFrom: %s\r\nTo: %s\r\n"+
		"Call-ID: ring-in\r\nCSeq: 10 ACK\r\nContent-Length: 0\r\n\r\n", ct.Address.String(), bob.pc.LocalAddr(), from, res.To().Value())
	if _, err := bob.pc.WriteTo([]byte(ack), gw); err != nil {
		t.Fatal(err)
	}
	timeout := time.After(10 * time.Second)
	for confirmed := false; !confirmed; {
		select {
		case ev := <-cb.Events():
			confirmed = ev.Kind == EventConfirmed
			if ev.Kind == EventEnded {
				t.Fatalf("ended %v before the ACK confirmed it", ev.End)
			}
		case <-timeout:
			t.Fatal("the ACK did not confirm the adopted call")
		}
	}
	if ds, ok := cb.DialogState(); !ok || ds.Role != "uas" || ds.LocalTag != st.LocalTag || ds.LocalContact != ct.Address.String() {
		t.Fatalf("the confirmed call's state %+v (%v)", ds, ok)
	}
	go func() { _ = cb.Hangup(context.Background()) }()
	timeout = time.After(10 * time.Second)
	for {
		select {
		case req := <-bob.got:
			if req.Method != sip.BYE {
				continue
			}
			if r := req.GetHeader("Route"); req.CallID().Value() != "ring-in" || r == nil || r.Value() != rr {
				t.Fatalf("the BYE\n%s", req)
			}
			for range cb.Events() {
			}
			return
		case <-timeout:
			t.Fatal("no BYE at the caller")
		}
	}
}

// TestAdoptRingingDeclined: the adopted ringing call's Reject sends the
// final failure from the record, and the call ends without the ACK,
// which goes to the dead node.
func TestAdoptRingingDeclined(t *testing.T) {
	_, st, b, bob, _, _ := ringingElsewhere(t, "")
	cb, err := b.AdoptRinging(st, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := cb.Reject(context.Background(), 486, "Busy Here"); err != nil {
		t.Fatal(err)
	}
	res := bob.final(t)
	tag, _ := res.To().Params.Get("tag")
	if res.StatusCode != 486 || tag != st.LocalTag || res.CSeq().SeqNo != 10 {
		t.Fatalf("the caller got\n%s", res)
	}
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev, ok := <-cb.Events():
			if !ok {
				t.Fatal("events closed before the end")
			}
			if ev.Kind == EventEnded {
				if ev.End != EndRejected {
					t.Fatalf("ended %v, want rejected", ev.End)
				}
				return
			}
		case <-timeout:
			t.Fatal("the declined call did not end")
		}
	}
}

// TestRingingOverTCPDoesNotMove: a ringing call whose INVITE came over
// TCP is not adopted (its answer needs the INVITE's connection).
func TestRingingOverTCPDoesNotMove(t *testing.T) {
	st := DialogState{Version: DialogStateVersion, Role: "uas", CallID: "x", LocalTag: "t", RemoteTarget: "sip:bob@127.0.0.1",
		LocalURI: "sip:alice@example.com", Invite: &InviteState{RequestURI: "sip:alice@127.0.0.1", From: "<sip:bob@example.com>;tag=f",
			To: "<sip:alice@example.com>;tag=t", CSeq: 1, Vias: []string{"SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bKx"}}}
	if RingingMoves(st) {
		t.Fatal("a ringing call over TCP moves")
	}
	b := startWith(t, Config{Listen: ListenConfig{UDP: "127.0.0.1:0"}, Domain: "example.com"}, nil)
	if _, err := b.AdoptRinging(st, nil); err == nil {
		t.Fatal("adopted a ringing call over TCP")
	}
}
