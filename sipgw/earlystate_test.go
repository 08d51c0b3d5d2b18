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
)

// TestEndDialogCancelsEarlyCall: the INVITE of a ringing outgoing call,
// recorded (EarlyState, through JSON as the store has it), is cancelled
// by another user agent as its own would have (RFC 3261 section 9.1):
// the CANCEL carries the INVITE's top Via alone (branch and sent-by:
// what a proxy matches it by), its Request-URI, Call-ID, From, To, CSeq
// number and Route, and the cause. Adopt refuses such a state.
func TestEndDialogCancelsEarlyCall(t *testing.T) {
	bob := newFakeProxy(t, func(m sip.RequestMethod) int {
		if m == sip.INVITE {
			return 180
		}
		return 200
	})
	cfg := Config{Listen: ListenConfig{UDP: "127.0.0.1:0"}, Domain: "example.com", OutboundProxy: bob.uri()}
	a := startWith(t, cfg, nil)
	ctx := context.Background()
	c, err := a.Dial(ctx, DialOptions{Identity: "alice@example.com", Target: "bob", SDP: []byte("v=0\r\n")})
	if err != nil {
		t.Fatal(err)
	}
	inv := bob.next(t, sip.INVITE)
	for ev := range c.Events() {
		if ev.Kind == EventProgress {
			break
		}
		if ev.Kind == EventEnded {
			t.Fatalf("ended before ringing: %+v", ev)
		}
	}
	if _, ok := c.DialogState(); ok {
		t.Fatal("DialogState of a ringing call")
	}
	c.SetApp([]byte(`{"web":1}`))
	st, ok := c.EarlyState()
	if !ok || st.Invite == nil {
		t.Fatalf("no EarlyState of a ringing call: %+v", st)
	}
	st = viaStore(t, st)
	if st.CallID != inv.CallID().Value() || string(st.App) != `{"web":1}` || st.LocalSDP != "v=0\r\n" {
		t.Errorf("early state %+v", st)
	}

	b := startWith(t, cfg, nil)
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := b.Adopt(actx, st, nil); !errors.Is(err, ErrDialogState) {
		t.Errorf("Adopt of an early state: %v, want ErrDialogState", err)
	}
	if err := b.EndDialog(actx, st, 503, "the caller's node went down", nil); err != nil {
		t.Fatal(err)
	}
	cn := bob.next(t, sip.CANCEL)
	if got, want := cn.Via().Value(), inv.Via().Value(); got != want {
		t.Errorf("CANCEL Via %q, want the INVITE's %q", got, want)
	}
	if n := len(cn.GetHeaders("Via")); n != 1 {
		t.Errorf("CANCEL has %d Via", n)
	}
	if cn.Recipient.String() != inv.Recipient.String() || cn.CallID().Value() != inv.CallID().Value() ||
		cn.From().Value() != inv.From().Value() || cn.To().Value() != inv.To().Value() {
		t.Errorf("CANCEL\n%s\ndoes not copy the INVITE\n%s", cn, inv)
	}
	if cs := cn.CSeq(); cs.SeqNo != inv.CSeq().SeqNo || cs.MethodName != sip.CANCEL {
		t.Errorf("CANCEL CSeq %v, INVITE's %v", cs, inv.CSeq())
	}
	if got, want := cn.GetHeader("Route"), inv.GetHeader("Route"); got == nil || want == nil || got.Value() != want.Value() {
		t.Errorf("CANCEL Route %v, INVITE's %v", got, want)
	}
	if r := cn.GetHeader("Reason"); r == nil || r.Value() != `SIP;cause=503;text="the caller's node went down"` {
		t.Errorf("CANCEL Reason %v", r)
	}
	// The INVITE's 487, as a proxy sends it after the CANCEL, ends A's
	// call (without, A's Close would wait Timer B for it).
	res := sip.NewResponseFromRequest(inv, 487, "Request Terminated", nil)
	res.To().Params.Add("tag", "fake")
	gw, err := net.ResolveUDPAddr("udp", a.Addr("udp"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.pc.WriteTo([]byte(res.String()), gw); err != nil {
		t.Fatal(err)
	}
	for ev := range c.Events() {
		if ev.Kind == EventEnded && ev.Code != 487 {
			t.Errorf("A's call ended %+v, want the 487", ev)
		}
	}
}

// TestEarlyStateOnlyWhileInviting: EarlyState says nothing of an
// answered call, which DialogState describes.
func TestEarlyStateOnlyWhileInviting(t *testing.T) {
	_, c := upCall(t, Config{Listen: ListenConfig{UDP: "127.0.0.1:0"}, Domain: "example.com", OutboundProxy: adoptPeer(t, "", 0).uri()})
	if st, ok := c.EarlyState(); ok {
		t.Errorf("EarlyState of a confirmed call: %+v", st)
	}
	if _, ok := c.DialogState(); !ok {
		t.Error("no DialogState of a confirmed call")
	}
}

// TestEndDialogRefusesRingingIncoming: the INVITE of a ringing incoming
// call, recorded (EarlyState), is answered by another user agent with
// the final response a dead node owed: its Vias, From, To with the
// call's tag, Call-ID and CSeq, sent where the top Via says (its rport),
// so that the caller's proxy matches it by the branch.
func TestEndDialogRefusesRingingIncoming(t *testing.T) {
	_, st, b, bob, _, _ := ringingElsewhere(t, "")
	if st.Role != "uas" || st.Invite == nil || len(st.Invite.Vias) != 1 || st.RemoteTag != "near" {
		t.Fatalf("early state of a ringing incoming call %+v", st)
	}
	if err := b.EndDialog(context.Background(), st, 480, "the call's node went down", nil); err != nil {
		t.Fatal(err)
	}
	res := bob.final(t)
	tag, _ := res.To().Params.Get("tag")
	branch, _ := res.Via().Params.Get("branch")
	if res.StatusCode != 480 || res.Reason != "the call's node went down" || res.CallID().Value() != "ring-in" ||
		res.CSeq().SeqNo != 10 || res.CSeq().MethodName != sip.INVITE || tag == "" || tag != st.LocalTag || branch != "z9hG4bKring-in10" {
		t.Fatalf("the caller got\n%s", res)
	}
}

// endRinging declines the ringing incoming call c of the peer bob and
// acknowledges the decline as the peer, so that the call ends at once
// (A's Close would otherwise wait for the ACK).
func endRinging(t *testing.T, c *Call, bob *fakeProxy, gw net.Addr, from, to string) {
	t.Helper()
	select {
	case <-c.done: // released: nothing left to decline
		return
	default:
	}
	go func() { _ = c.Hangup(context.Background()) }()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case res := <-bob.res:
			if res.StatusCode != 603 { // Hangup's, not another node's answer
				continue
			}
			tag, _ := res.To().Params.Get("tag")
			ack := fmt.Sprintf("ACK %s SIP/2.0\r\nVia: %s\r\nMax-Forwards: 70\r\nFrom: %s\r\nTo: %s;tag=%s\r\n"+
				"Call-ID: ring-in\r\nCSeq: 10 ACK\r\nContent-Length: 0\r\n\r\n", "sip:alice@example.com", res.Via().Value(), from, to, tag)
			if _, err := bob.pc.WriteTo([]byte(ack), gw); err != nil {
				t.Fatal(err)
			}
			for range c.Events() {
			}
			return
		case <-timeout:
			t.Fatal("no decline at the caller")
		}
	}
}

// TestCancelOverTCPKeepsTheVia: over TCP the CANCEL's top Via stays the
// INVITE's (the transport stamps its own TCP port on the Via of the
// requests it routes; a proxy would not match a CANCEL so changed).
func TestCancelOverTCPKeepsTheVia(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan *sip.Request, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		buf := make([]byte, 0, 4096)
		tmp := make([]byte, 4096)
		for {
			n, err := conn.Read(tmp)
			if err != nil {
				return
			}
			buf = append(buf, tmp[:n]...)
			if i := strings.Index(string(buf), "\r\n\r\n"); i >= 0 {
				m, err := sip.ParseMessage(buf[:i+4])
				if req, ok := m.(*sip.Request); err == nil && ok {
					got <- req
				}
				return
			}
		}
	}()
	b := startWith(t, Config{Listen: ListenConfig{UDP: "127.0.0.1:0", TCP: "127.0.0.1:0"}, Domain: "example.com"}, nil)
	via := "SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bKtcp1"
	st := DialogState{Version: DialogStateVersion, Role: "uac", CallID: "cid-tcp", Transport: "TCP",
		Invite: &InviteState{RequestURI: "sip:bob@" + ln.Addr().String() + ";transport=tcp", Via: via,
			From: "<sip:alice@example.com>;tag=lt", To: "<sip:bob@example.com>", CSeq: 3}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.EndDialog(ctx, st, 503, "gone", nil); err != nil {
		t.Fatal(err)
	}
	select {
	case req := <-got:
		if req.Method != sip.CANCEL || req.Via().Value() != via {
			t.Fatalf("the proxy got\n%s\nwant the CANCEL with Via %q", req, via)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("nothing over TCP")
	}
}
