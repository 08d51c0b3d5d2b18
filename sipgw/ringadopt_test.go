package sipgw

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/jsonrtc/jsonrtc/internal/sipstream"
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
	cb, err := b.AdoptRinging(context.Background(), st, nil)
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
	untilConfirmed(t, cb)
	timeout := time.After(10 * time.Second)
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

// untilConfirmed waits, 10 s at most, for the adopted call cb's
// confirmation by the ACK.
func untilConfirmed(t *testing.T, cb *Call) {
	t.Helper()
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
}

// TestAdoptRingingAnsweredNeverAcked: the adopted ringing call's 200
// that no ACK follows (the caller gone, or its proxy's ACK lost) is
// retransmitted for 64*T1, then the call, confirmed, ends with our BYE
// (RFC 3261 section 13.3.1.4) and EndTimeout, which the web leg hears.
// Its transaction is the adopter's own, outside the transaction layer:
// it takes 64*T1 of sipgo's default T1 to run (32 s).
func TestAdoptRingingAnsweredNeverAcked(t *testing.T) {
	_, st, b, bob, _, _ := ringingElsewhere(t, "")
	cb, err := b.AdoptRinging(context.Background(), st, nil)
	if err != nil {
		t.Fatal(err)
	}
	answered := time.Now()
	if err := cb.Answer(context.Background(), []byte("v=0\r\no=alice 1 1 IN IP4 127.0.0.1\r\n")); err != nil {
		t.Fatal(err)
	}
	if res := bob.final(t); res.StatusCode != 200 {
		t.Fatalf("the caller got %d", res.StatusCode)
	}
	ended := untilEnded(t, cb, 64*sip.T1+20*time.Second)
	timeout := time.After(10 * time.Second)
	if took := time.Since(answered); ended.End != EndTimeout || took < 64*sip.T1-2*sip.T1 {
		t.Fatalf("ended %v after %v, want a timeout after 64*T1 (%v)", ended.End, took, 64*sip.T1)
	}
	for {
		select {
		case req := <-bob.got:
			if req.Method != sip.BYE {
				continue
			}
			if req.CallID().Value() != "ring-in" {
				t.Fatalf("the BYE\n%s", req)
			}
			return
		case <-timeout:
			t.Fatal("no BYE at the caller")
		}
	}
}

// TestReleaseRingingEndsSilently (issue 15): a node taken for dead
// whose ringing incoming call another node adopted releases it: the call
// ends (EndReleased), its INVITE transaction with it, without a
// response: the caller's CANCEL finds none here (481), and no 487 or
// other final response leaves for the INVITE, whose answer is the
// adopter's. Before, Release left the ringing call as it was, to answer
// the CANCEL with a 487 or its ring timeout with a 480.
func TestReleaseRingingEndsSilently(t *testing.T) {
	c, st, _, bob, from, to := ringingElsewhere(t, "")
	if _, ok := c.Release(); ok {
		t.Fatal("a ringing call released as a confirmed one")
	}
	if ev := untilEnded(t, c, 10*time.Second); ev.End != EndReleased {
		t.Fatalf("ended %v, want released", ev.End)
	}
	timeout := time.After(10 * time.Second)
	var ruri sip.Uri
	if err := sip.ParseUri(st.Invite.RequestURI, &ruri); err != nil {
		t.Fatal(err)
	}
	gw, err := net.ResolveUDPAddr("udp", ruri.HostPort())
	if err != nil {
		t.Fatal(err)
	}
	cancel := bob.rawRequest("CANCEL", st.Invite.RequestURI, from, to, "ring-in", 10, "", "")
	if _, err := bob.pc.WriteTo([]byte(cancel), gw); err != nil {
		t.Fatal(err)
	}
	for {
		select {
		case res := <-bob.res:
			if res.CSeq().MethodName == sip.INVITE && res.StatusCode >= 200 {
				t.Fatalf("the released INVITE got\n%s", res)
			}
			if res.CSeq().MethodName == sip.CANCEL {
				if res.StatusCode != 481 {
					t.Fatalf("the CANCEL got %d, want 481: no transaction left", res.StatusCode)
				}
				return
			}
		case <-timeout:
			t.Fatal("no answer to the CANCEL")
		}
	}
}

// untilEnded waits, within d, for the end of cb, and returns it.
func untilEnded(t *testing.T, cb *Call, d time.Duration) Event {
	t.Helper()
	timeout := time.After(d)
	for {
		select {
		case ev, ok := <-cb.Events():
			if !ok {
				t.Fatal("events closed before the end")
			}
			if ev.Kind == EventEnded {
				return ev
			}
		case <-timeout:
			t.Fatal("the call did not end")
		}
	}
}

// TestAdoptRingingDeclined: the adopted ringing call's Reject sends the
// final failure from the record, and the call ends without the ACK,
// which goes to the dead node.
func TestAdoptRingingDeclined(t *testing.T) {
	_, st, b, bob, _, _ := ringingElsewhere(t, "")
	cb, err := b.AdoptRinging(context.Background(), st, nil)
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
	if ev := untilEnded(t, cb, 10*time.Second); ev.End != EndRejected {
		t.Fatalf("ended %v, want rejected", ev.End)
	}
}

// ringingVia is the record of a ringing incoming call whose INVITE's
// only Via is via.
func ringingVia(via string) DialogState {
	return DialogState{Version: DialogStateVersion, Role: "uas", CallID: "x", LocalTag: "t", RemoteTarget: "sip:bob@127.0.0.1",
		LocalURI: "sip:alice@example.com", Invite: &InviteState{RequestURI: "sip:alice@127.0.0.1", From: "<sip:bob@example.com>;tag=f",
			To: "<sip:alice@example.com>;tag=t", CSeq: 1, Vias: []string{via}}}
}

// TestRingingOverWSDoesNotMove: a ringing call whose INVITE came over a
// transport other than UDP, TCP or TLS is not adopted (its answer needs
// the INVITE's connection).
func TestRingingOverWSDoesNotMove(t *testing.T) {
	st := ringingVia("SIP/2.0/WS 127.0.0.1:5066;branch=z9hG4bKx")
	if RingingMoves(st) {
		t.Fatal("a ringing call over WS moves")
	}
	b := startWith(t, Config{Listen: ListenConfig{UDP: "127.0.0.1:0"}, Domain: "example.com"}, nil)
	if _, err := b.AdoptRinging(context.Background(), st, nil); !errors.Is(err, ErrNeedsConnection) {
		t.Fatalf("adopting a ringing call over WS: %v", err)
	}
}

// TestAdoptRingingProxyUnreachable: a ringing call over TCP whose
// proxy refuses the adopter's connection is not adopted, and nothing of
// it stays.
func TestAdoptRingingProxyUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	st := ringingVia("SIP/2.0/TCP " + closed + ";branch=z9hG4bKx")
	if !RingingMoves(st) {
		t.Fatal("a ringing call over TCP does not move")
	}
	b := startWith(t, Config{Listen: ListenConfig{UDP: "127.0.0.1:0"}, Domain: "example.com"}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := b.AdoptRinging(ctx, st, nil); err == nil {
		t.Fatal("adopted a ringing call whose proxy is out of reach")
	}
	if s := b.Stats(); s.Calls != 0 || s.Dialogs != 0 || s.Transactions != 0 {
		t.Fatalf("left %+v", s)
	}
}

// ringingOverStream rings alice on one user agent with an INVITE from
// a peer over tp (TCP or TLS), on a connection the peer then closes, as
// the dead node's went with it, and returns the call's recorded state,
// a second user agent, clustered (trusting the peer's certificate), to
// go on with it, and the peer. The INVITE's top Via is the peer's: over
// TCP an address it is not at with its received parameter the one it
// is (RFC 3261 section 18.2.2 wants received), over TLS "localhost",
// the only name of its certificate.
func ringingOverStream(t *testing.T, tp string) (st DialogState, b *UserAgent, p *sipstream.Peer, from string) {
	t.Helper()
	reg := newFakePeer(t, func(req *sip.Request) *sip.Response {
		if req.Method == sip.REGISTER {
			return sip.NewResponseFromRequest(req, 200, "OK", nil)
		}
		return nil
	})
	cf, kf, roots := testCert(t, 7, "localhost")
	listen := ListenConfig{UDP: "127.0.0.1:0", TCP: "127.0.0.1:0", TLS: "127.0.0.1:0", TLSCert: cf, TLSKey: kf}
	a, incoming, token := registeredAlice(t, Config{Listen: listen, Domain: "example.com", Registrar: reg.uri()})
	p = sipstream.Start(t, tp, cf, kf)
	conn := p.Dial(t, a.Addr(strings.ToLower(tp)))
	via := fmt.Sprintf("SIP/2.0/TCP 192.0.2.1:%d;branch=z9hG4bKring-tcp10;received=127.0.0.1", p.Port())
	if tp == "TLS" {
		via = fmt.Sprintf("SIP/2.0/TLS localhost:%d;branch=z9hG4bKring-tcp10", p.Port())
	}
	from = "<sip:bob@example.com>;tag=near"
	body := "v=0\r\no=bob 3 3 IN IP4 127.0.0.1\r\n"
	inv := fmt.Sprintf("INVITE sip:%s@%s;transport=%s SIP/2.0\r\nVia: %s\r\nMax-Forwards: 70\r\nFrom: %s\r\nTo: <sip:alice@example.com>\r\n"+
		"Call-ID: ring-tcp\r\nCSeq: 10 INVITE\r\nContact: <sip:bob@127.0.0.1:%d;transport=%s>\r\nAllow: INVITE, ACK, BYE, CANCEL\r\n"+
		"Content-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s",
		token, a.Addr(strings.ToLower(tp)), strings.ToLower(tp), via, from, p.Port(), strings.ToLower(tp), len(body), body)
	if _, err := conn.Write([]byte(inv)); err != nil {
		t.Fatal(err)
	}
	var c *Call
	select {
	case c = <-incoming:
	case <-time.After(10 * time.Second):
		t.Fatal("no incoming call")
	}
	st, ok := c.EarlyState()
	if !ok || len(st.Invite.Vias) != 1 || st.Invite.Vias[0] != via {
		t.Fatalf("early state of a ringing incoming call %+v (%v)", st, ok)
	}
	st = viaStore(t, st)
	conn.Close()
	b, err := New(Config{Listen: ListenConfig{UDP: "127.0.0.1:0", TLS: "127.0.0.1:0", TLSCert: cf, TLSKey: kf}, Domain: "example.com"}, &Options{Clustered: true})
	if err != nil {
		t.Fatal(err)
	}
	b.tlsRoots = roots
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	return st, b, p, from
}

// TestAdoptRingingOverStreamAnswered (issue 15): a ringing incoming call
// whose INVITE came over TCP or TLS goes on on another user agent, whose
// 200 reaches the caller's proxy on a connection of its own, opened to
// the top Via's received address over TCP, to its sent-by name over TLS
// (the certificate checked against it); the ACK on that connection
// confirms the call, and its BYE goes to the caller's Contact.
func TestAdoptRingingOverStreamAnswered(t *testing.T) {
	for _, tp := range []string{"TCP", "TLS"} {
		t.Run(tp, func(t *testing.T) {
			st, b, p, from := ringingOverStream(t, tp)
			if !RingingMoves(st) {
				t.Fatalf("a ringing call over %s does not move", tp)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			cb, err := b.AdoptRinging(ctx, st, nil)
			if err != nil {
				t.Fatal(err)
			}
			answer := "v=0\r\no=alice 1 1 IN IP4 127.0.0.1\r\n"
			if err := cb.Answer(ctx, []byte(answer)); err != nil {
				t.Fatal(err)
			}
			res, m := p.Response(t, 200)
			tag, _ := res.To().Params.Get("tag")
			branch, _ := res.Via().Params.Get("branch")
			ct := res.Contact()
			if !m.Accepted || res.CallID().Value() != "ring-tcp" || res.CSeq().SeqNo != 10 || tag != st.LocalTag ||
				branch != "z9hG4bKring-tcp10" || string(res.Body()) != answer || ct == nil || ct.Address.HostPort() != b.Addr("udp") {
				t.Fatalf("the caller got, on a connection it accepted (%v)\n%s", m.Accepted, res)
			}
			ack := fmt.Sprintf("ACK %s SIP/2.0\r\nVia: SIP/2.0/%s 127.0.0.1:%d;branch=z9hG4bKack1\r\nMax-Forwards: 70\r\nFrom: %s\r\nTo: %s\r\n"+
				"Call-ID: ring-tcp\r\nCSeq: 10 ACK\r\nContent-Length: 0\r\n\r\n", ct.Address.String(), tp, p.Port(), from, res.To().Value())
			if _, err := m.Conn.Write([]byte(ack)); err != nil {
				t.Fatal(err)
			}
			untilConfirmed(t, cb)
			go func() { _ = cb.Hangup(context.Background()) }()
			bye, bm := p.Request(t, sip.BYE)
			if bye.CallID().Value() != "ring-tcp" {
				t.Fatalf("the BYE\n%s", bye)
			}
			if _, err := bm.Conn.Write([]byte(sip.NewResponseFromRequest(bye, 200, "OK", nil).String())); err != nil {
				t.Fatal(err)
			}
			for range cb.Events() {
			}
		})
	}
}

// TestAdoptRingingOverStreamDeclined: the decline of a ringing call
// adopted over TCP or TLS reaches the caller's proxy on a connection of
// the adopter's, and the call ends.
func TestAdoptRingingOverStreamDeclined(t *testing.T) {
	for _, tp := range []string{"TCP", "TLS"} {
		t.Run(tp, func(t *testing.T) {
			st, b, p, _ := ringingOverStream(t, tp)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			cb, err := b.AdoptRinging(ctx, st, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := cb.Reject(ctx, 486, "Busy Here"); err != nil {
				t.Fatal(err)
			}
			res, m := p.Response(t, 486)
			if tag, _ := res.To().Params.Get("tag"); !m.Accepted || tag != st.LocalTag || res.CSeq().SeqNo != 10 {
				t.Fatalf("the caller got, on a connection it accepted (%v)\n%s", m.Accepted, res)
			}
			for ev := range cb.Events() {
				if ev.Kind == EventEnded && ev.End != EndRejected {
					t.Fatalf("ended %v, want rejected", ev.End)
				}
			}
		})
	}
}

// TestEndDialogRefusesRingingIncomingOverStream: the final response to a
// recorded INVITE that came over TCP or TLS, refused by another user
// agent, reaches the caller's proxy on a connection of that user
// agent's (before: not sent, ErrNeedsConnection).
func TestEndDialogRefusesRingingIncomingOverStream(t *testing.T) {
	for _, tp := range []string{"TCP", "TLS"} {
		t.Run(tp, func(t *testing.T) {
			st, b, p, _ := ringingOverStream(t, tp)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := b.EndDialog(ctx, st, 480, "the call's node went down", nil); err != nil {
				t.Fatal(err)
			}
			res, m := p.Response(t, 480)
			branch, _ := res.Via().Params.Get("branch")
			if tag, _ := res.To().Params.Get("tag"); !m.Accepted || tag != st.LocalTag || res.CallID().Value() != "ring-tcp" || branch != "z9hG4bKring-tcp10" {
				t.Fatalf("the caller got, on a connection it accepted (%v)\n%s", m.Accepted, res)
			}
		})
	}
}
