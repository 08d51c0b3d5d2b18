package sipgw

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// adoptPeer is bob: a peer that answers every request 200, an INVITE
// with its To-tag "far", its Contact, a Record-Route of itself (so the
// dialog has a route set), the Session-Expires it was asked for, and
// SDP; allow is its Allow ("" for none); refresh, when not 0, is its
// answer to a target refresh (an in-dialog INVITE or UPDATE).
func adoptPeer(t testing.TB, allow string, refresh int) *fakeProxy {
	t.Helper()
	return adoptPeerGRUU(t, allow, refresh, "")
}

// adoptPeerGRUU is adoptPeer, also a registrar that assigns each binding
// the public GRUU gruu ("": none).
func adoptPeerGRUU(t testing.TB, allow string, refresh int, gruu string) *fakeProxy {
	t.Helper()
	var port atomic.Int64
	bob := newFakePeer(t, func(req *sip.Request) *sip.Response {
		res := sip.NewResponseFromRequest(req, 200, "OK", nil)
		if req.Method == sip.REGISTER && gruu != "" && req.Contact() != nil {
			ct := req.Contact().Clone()
			ct.Params.Add("expires", "600")
			ct.Params.Add("pub-gruu", `"`+gruu+`"`)
			res.AppendHeader(ct)
			return res
		}
		if refresh != 0 && req.To().Params.Has("tag") && (req.Method == sip.INVITE || req.Method == sip.UPDATE) {
			return sip.NewResponseFromRequest(req, refresh, "Refresh", nil)
		}
		if req.Method != sip.INVITE {
			return res
		}
		if !req.To().Params.Has("tag") {
			res.To().Params.Add("tag", "far")
			res.AppendHeader(sip.NewHeader("Record-Route", fmt.Sprintf("<sip:127.0.0.1:%d;lr>", port.Load())))
		}
		res.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "bob", Host: "127.0.0.1", Port: int(port.Load())}})
		if allow != "" {
			res.AppendHeader(sip.NewHeader("Allow", allow))
		}
		if se := req.GetHeader("Session-Expires"); se != nil {
			// The caller refreshes (RFC 4028 section 9).
			res.AppendHeader(sip.NewHeader("Session-Expires", se.Value()))
			res.AppendHeader(sip.NewHeader("Require", "timer"))
		}
		res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
		res.SetBody([]byte("v=0\r\no=bob 7 7 IN IP4 127.0.0.1\r\n"))
		return res
	})
	port.Store(int64(bob.pc.LocalAddr().(*net.UDPAddr).Port))
	return bob
}

// nextState waits for DialogChanged until the call's DialogState holds
// what ok wants.
func nextState(t *testing.T, c *Call, ok func(DialogState) bool) DialogState {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		if st, done := c.DialogState(); done && ok(st) {
			return st
		}
		select {
		case <-c.DialogChanged():
		case <-timeout:
			st, _ := c.DialogState()
			t.Fatalf("dialog state not as wanted within 10s: %+v", st)
		}
	}
}

// viaStore passes st through JSON, as the store does.
func viaStore(t *testing.T, st DialogState) DialogState {
	t.Helper()
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var out DialogState
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// handOver releases c on its user agent g, closes g as a node that is
// gone, and adopts the state on a new user agent.
func handOver(t *testing.T, g *UserAgent, c *Call, cfg Config) (*UserAgent, *Call, DialogState) {
	t.Helper()
	return handOverWith(t, g, c, cfg, nil)
}

// handOverWith is handOver with the adopter's options.
func handOverWith(t *testing.T, g *UserAgent, c *Call, cfg Config, o *AdoptOptions) (*UserAgent, *Call, DialogState) {
	t.Helper()
	st, ok := c.Release()
	if !ok {
		t.Fatal("Release: no confirmed dialog")
	}
	for ev := range c.Events() {
		if ev.Kind == EventEnded && ev.End != EndReleased {
			t.Fatalf("released call ended %v", ev.End)
		}
	}
	if err := g.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	st = viaStore(t, st)
	b := startWith(t, cfg, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cb, err := b.Adopt(ctx, st, o)
	if err != nil {
		t.Fatal(err)
	}
	return b, cb, st
}

// checkInDialog checks that req belongs to the dialog of st as the
// adopter sends it: tags, Call-ID, CSeq, the route set, its target and
// the adopter's Contact.
func checkInDialog(t *testing.T, req *sip.Request, st DialogState, cseq uint32, adopter *UserAgent) {
	t.Helper()
	if got := req.CallID().Value(); got != st.CallID {
		t.Errorf("%s Call-ID %q, want %q", req.Method, got, st.CallID)
	}
	if tag, _ := req.From().Params.Get("tag"); tag != st.LocalTag {
		t.Errorf("%s From-tag %q, want %q", req.Method, tag, st.LocalTag)
	}
	if tag, _ := req.To().Params.Get("tag"); tag != st.RemoteTag {
		t.Errorf("%s To-tag %q, want %q", req.Method, tag, st.RemoteTag)
	}
	if got := req.CSeq().SeqNo; got != cseq {
		t.Errorf("%s CSeq %d, want %d", req.Method, got, cseq)
	}
	var routes []string
	for _, h := range req.GetHeaders("Route") {
		routes = append(routes, h.Value())
	}
	if strings.Join(routes, ",") != strings.Join(st.RouteSet, ",") {
		t.Errorf("%s Route %q, want the route set %q", req.Method, routes, st.RouteSet)
	}
	if got := req.Recipient.String(); got != st.RemoteTarget {
		t.Errorf("%s Request-URI %s, want the remote target %s", req.Method, got, st.RemoteTarget)
	}
	if req.Method == sip.BYE {
		return
	}
	_, port, _ := net.SplitHostPort(adopter.Addr("udp"))
	if ct := req.Contact(); ct == nil || fmt.Sprint(ct.Address.Port) != port {
		t.Errorf("%s Contact %v, want the adopter's port %s", req.Method, ct, port)
	}
}

// TestAdoptOutgoing: a call A dialed, with a route set, is released by
// A (A then closes, as a node that is gone) and adopted by B: the peer
// gets B's target refresh, a re-INVITE (the peer allows no UPDATE) with
// the dialog's next CSeq, its Route, B's Contact and A's last SDP with
// the o= version bumped, and the session timer A had; the peer's
// re-INVITE with a new offer (answered by B's web side) and its INFO
// then reach B's call, and B's BYE the peer with the CSeq after the
// refresh's and the same route set.
func TestAdoptOutgoing(t *testing.T) {
	bob := adoptPeer(t, "", 0)
	cfg := Config{Listen: ListenConfig{UDP: "127.0.0.1:0"}, Domain: "example.com", OutboundProxy: bob.uri()}
	a, c := upCall(t, cfg)
	ctx := context.Background()
	first := bob.next(t, sip.INVITE).CSeq().SeqNo
	// A request of A's moves the local CSeq the adopter goes on from;
	// its state is handed over before the request leaves.
	type ahead struct {
		cseq   uint32
		queued int // requests the peer had got by then
	}
	aheads := make(chan ahead, 4)
	c.SetWriteAhead(func(s DialogState) error { aheads <- ahead{s.LocalCSeq, len(bob.got)}; return nil })
	if err := c.SendDTMF(ctx, "1", 0); err != nil {
		t.Fatal(err)
	}
	if info := bob.next(t, sip.INFO); info.CSeq().SeqNo != first+1 {
		t.Fatalf("INFO CSeq %d, want %d", info.CSeq().SeqNo, first+1)
	}
	if a := <-aheads; a.cseq != first+1 || a.queued != 0 {
		t.Fatalf("written ahead: CSeq %d with %d requests at the peer, want %d before the INFO left", a.cseq, a.queued, first+1)
	}
	c.SetApp(json.RawMessage(`{"session":"s1","sub":"c1"}`))
	want := nextState(t, c, func(s DialogState) bool { return s.LocalCSeq == first+1 && len(s.App) > 0 })
	if want.Role != "uac" || want.RemoteTag != "far" || len(want.RouteSet) != 1 || want.RemoteSDP == "" ||
		want.SessionExpires != 1800 || !want.WeRefresh {
		t.Fatalf("state %+v", want)
	}

	var refreshAhead atomic.Uint32
	b, cb, st := handOverWith(t, a, c, cfg, &AdoptOptions{WriteAhead: func(s DialogState) error { refreshAhead.Store(s.LocalCSeq); return nil }})
	re := bob.next(t, sip.INVITE)
	checkInDialog(t, re, st, first+2, b)
	if got := refreshAhead.Load(); got != first+2 {
		t.Errorf("the refresh's state written ahead with CSeq %d, want %d", got, first+2)
	}
	if se := re.GetHeader("Session-Expires"); se == nil || se.Value() != "1800;refresher=uac" {
		t.Errorf("refresh Session-Expires %v, want the dialog's 1800 with us refreshing", se)
	}
	if got := string(re.Body()); got != "v=0\r\no=alice 1 2 IN IP4 127.0.0.1\r\n" {
		t.Errorf("refresh SDP %q, want A's last with the version bumped", got)
	}
	if cb.Direction() != Outgoing || cb.Keys().CallID != st.CallID {
		t.Errorf("adopted call %v %+v", cb.Direction(), cb.Keys())
	}
	if got, _ := cb.DialogState(); string(got.App) != `{"session":"s1","sub":"c1"}` {
		t.Errorf("adopted App %s", got.App)
	}

	from, to := "<sip:bob@example.com>;tag=far", "<sip:alice@example.com>;tag="+st.LocalTag
	ruri := "sip:gw@" + b.Addr("udp")
	// The peer's re-INVITE with a new offer reaches B's web side, whose
	// answer is the 200; its ACK confirms.
	answered := make(chan *sip.Response, 1)
	go func() {
		answered <- bob.send(t, b.Addr("udp"), bob.rawRequest("INVITE", ruri, from, to, st.CallID, 1,
			"Content-Type: application/sdp\r\n", "v=0\r\no=bob 7 8 IN IP4 127.0.0.1\r\n"))
	}()
	ev := <-cb.Events()
	if ev.Kind != EventReoffer || string(ev.SDP) != "v=0\r\no=bob 7 8 IN IP4 127.0.0.1\r\n" {
		t.Fatalf("B's first event %v %q, want the peer's re-offer", ev.Kind, ev.SDP)
	}
	if err := ev.Reoffer.Accept([]byte("v=0\r\no=alice 1 3 IN IP4 127.0.0.1\r\n")); err != nil {
		t.Fatal(err)
	}
	if res := <-answered; res.StatusCode != 200 || string(res.Body()) != "v=0\r\no=alice 1 3 IN IP4 127.0.0.1\r\n" {
		t.Fatalf("the peer's re-INVITE to B answered %d %q", res.StatusCode, res.Body())
	}
	ack := fmt.Sprintf("ACK %s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKreack\r\nMax-Forwards: 70\r\nFrom: %s\r\nTo: %s\r\n"+
		"Call-ID: %s\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n", ruri, bob.pc.LocalAddr(), from, to, st.CallID)
	bgw, err := net.ResolveUDPAddr("udp", b.Addr("udp"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.pc.WriteTo([]byte(ack), bgw); err != nil {
		t.Fatal(err)
	}
	if ev := <-cb.Events(); ev.Kind != EventConfirmed {
		t.Fatalf("B's event after the ACK %v, want confirmed", ev.Kind)
	}
	res := bob.send(t, b.Addr("udp"), bob.rawRequest("INFO", ruri, from, to, st.CallID, 2,
		"Content-Type: application/dtmf-relay\r\n", "Signal=5\r\nDuration=100\r\n"))
	if res.StatusCode != 200 {
		t.Fatalf("the peer's INFO to B answered %d", res.StatusCode)
	}
	if ev := <-cb.Events(); ev.Kind != EventInfo || ev.Digit != "5" {
		t.Fatalf("B's event %v %q, want the INFO's digit 5", ev.Kind, ev.Digit)
	}
	if got, _ := cb.DialogState(); got.RemoteCSeq != 2 || got.RemoteSDP != "v=0\r\no=bob 7 8 IN IP4 127.0.0.1\r\n" ||
		got.LocalSDP != "v=0\r\no=alice 1 3 IN IP4 127.0.0.1\r\n" {
		t.Errorf("B's state after the re-offer and INFO: %+v", got)
	}
	if err := cb.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	checkInDialog(t, bob.next(t, sip.BYE), st, first+3, b)
	if s := b.Stats(); s.Calls != 0 || s.Dialogs != 0 {
		t.Errorf("B after the BYE: %+v", s)
	}
}

// TestAdoptIncoming: a call the peer made to A (A answered, the peer
// ACKed) is adopted by B: the peer allows UPDATE, so B's target refresh
// is an UPDATE without a body, From our tag, To the peer's, with the
// CSeq after the INVITE's (A sent nothing) and the INVITE's
// Record-Route as its Route. B then goes as A did and C adopts B's
// state: a request of the peer's below the CSeq it had sent is refused
// 500 (RFC 3261 section 12.2.2), its BYE reaches C, which ends the call
// as the peer's.
func TestAdoptIncoming(t *testing.T) {
	bob := adoptPeer(t, "", 0)
	cfg := Config{Listen: ListenConfig{UDP: "127.0.0.1:0"}, Domain: "example.com", Registrar: bob.uri()}
	a, incoming, token := registeredAlice(t, cfg)
	ctx := context.Background()
	ruri := "sip:" + token + "@" + a.Addr("udp")
	from, to := "<sip:bob@example.com>;tag=near", "<sip:alice@example.com>"
	rr := "<sip:" + bob.pc.LocalAddr().String() + ";lr>"
	answered := make(chan *sip.Response, 1)
	go func() {
		answered <- bob.send(t, a.Addr("udp"), bob.rawRequest("INVITE", ruri, from, to, "adopt-in", 10,
			"Record-Route: "+rr+"\r\nAllow: INVITE, ACK, BYE, INFO, UPDATE\r\nContent-Type: application/sdp\r\n",
			"v=0\r\no=bob 3 3 IN IP4 127.0.0.1\r\n"))
	}()
	c := <-incoming
	if err := c.Answer(ctx, []byte("v=0\r\no=alice 4 4 IN IP4 127.0.0.1\r\n")); err != nil {
		t.Fatal(err)
	}
	ok := <-answered
	if ok.StatusCode != 200 {
		t.Fatalf("INVITE answered %d", ok.StatusCode)
	}
	tag, _ := ok.To().Params.Get("tag")
	ack := fmt.Sprintf("ACK %s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKack10\r\nMax-Forwards: 70\r\nFrom: %s\r\nTo: %s;tag=%s\r\n"+
		"Call-ID: adopt-in\r\nCSeq: 10 ACK\r\nContent-Length: 0\r\n\r\n", ok.Contact().Address.String(), bob.pc.LocalAddr(), from, to, tag)
	gw, err := net.ResolveUDPAddr("udp", a.Addr("udp"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.pc.WriteTo([]byte(ack), gw); err != nil {
		t.Fatal(err)
	}
	for ev := range c.Events() {
		if ev.Kind == EventConfirmed {
			break
		}
	}
	want := nextState(t, c, func(DialogState) bool { return true })
	if want.Role != "uas" || want.LocalTag != tag || want.RemoteTag != "near" || want.RemoteCSeq != 10 ||
		want.LocalCSeq != 10 || len(want.RouteSet) != 1 || want.RouteSet[0] != rr {
		t.Fatalf("state %+v", want)
	}

	b, cb, st := handOver(t, a, c, cfg)
	up := bob.next(t, sip.UPDATE)
	checkInDialog(t, up, st, 11, b)
	if len(up.Body()) != 0 {
		t.Errorf("UPDATE refresh with a body %q", up.Body())
	}
	if cb.Direction() != Incoming {
		t.Errorf("adopted call's direction %v", cb.Direction())
	}

	// B goes too: C adopts what B wrote (its Contact, its refresh's
	// CSeq), with the same route set and roles.
	st2 := nextState(t, cb, func(s DialogState) bool { return s.LocalCSeq == 11 })
	if st2.Role != "uas" || strings.Join(st2.RouteSet, ",") != strings.Join(st.RouteSet, ",") || st2.RemoteTarget != st.RemoteTarget {
		t.Fatalf("B's state %+v, want A's dialog", st2)
	}
	c3, cc, st3 := handOver(t, b, cb, cfg)
	checkInDialog(t, bob.next(t, sip.UPDATE), st3, 12, c3)

	bto := to + ";tag=" + st.LocalTag
	// Below the CSeq the state has of the peer: out of order.
	if res := bob.send(t, c3.Addr("udp"), bob.rawRequest("INFO", "sip:gw@"+c3.Addr("udp"), from, bto, "adopt-in", 9, "", "")); res.StatusCode != 500 {
		t.Errorf("an INFO with an older CSeq answered %d, want 500", res.StatusCode)
	}
	res := bob.send(t, c3.Addr("udp"), bob.rawRequest("BYE", "sip:gw@"+c3.Addr("udp"), from, bto, "adopt-in", 11, "", ""))
	if res.StatusCode != 200 {
		t.Fatalf("the peer's BYE to C answered %d", res.StatusCode)
	}
	var last Event
	for ev := range cc.Events() {
		last = ev
	}
	if last.End != EndRemoteBye {
		t.Fatalf("adopted call ended %v, want the peer's BYE", last.End)
	}
	select {
	case <-cc.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("adopted call not done")
	}
	if s := c3.Stats(); s.Calls != 0 || s.Dialogs != 0 {
		t.Errorf("C after the BYE: %+v", s)
	}
}

func TestBumpOrigin(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"v=0\r\no=- 42 7 IN IP4 10.0.0.1\r\ns=-\r\n", "v=0\r\no=- 42 8 IN IP4 10.0.0.1\r\ns=-\r\n"},
		{"v=0\no=a 1 18446744073709551614 IN IP6 ::1\n", "v=0\no=a 1 18446744073709551615 IN IP6 ::1\n"},
		{"v=0\r\no=a 1 x IN IP4 1.2.3.4\r\n", "v=0\r\no=a 1 x IN IP4 1.2.3.4\r\n"}, // not a number: as it was
		{"v=0\r\no=a 1\r\n", "v=0\r\no=a 1\r\n"},
		{"v=0\r\n", "v=0\r\n"},
	} {
		if got := string(bumpOrigin([]byte(tc.in))); got != tc.want {
			t.Errorf("bumpOrigin(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestAdoptRefusesBadState: a state Adopt cannot continue (another
// version, no tags, a route sipgo could not parse, no SDP to offer) is
// refused with ErrDialogState before anything goes on the wire.
func TestAdoptRefusesBadState(t *testing.T) {
	g := startWith(t, Config{Listen: ListenConfig{UDP: "127.0.0.1:0"}, Domain: "example.com"}, nil)
	good := DialogState{Version: DialogStateVersion, Role: "uac", CallID: "c", LocalTag: "l", RemoteTag: "r",
		LocalURI: "sip:a@example.com", RemoteURI: "sip:b@example.com", RemoteTarget: "sip:b@127.0.0.1:9",
		LocalCSeq: 1, LocalSDP: "v=0\r\n"}
	for name, mod := range map[string]func(*DialogState){
		"version": func(s *DialogState) { s.Version = 2 },
		"role":    func(s *DialogState) { s.Role = "proxy" },
		"tag":     func(s *DialogState) { s.RemoteTag = "" },
		"target":  func(s *DialogState) { s.RemoteTarget = "not a uri" },
		"route":   func(s *DialogState) { s.RouteSet = []string{"<"} },
		"sdp":     func(s *DialogState) { s.LocalSDP = "" },
	} {
		st := good
		mod(&st)
		if _, err := g.Adopt(context.Background(), st, nil); !errors.Is(err, ErrDialogState) {
			t.Errorf("%s: Adopt error %v, want ErrDialogState", name, err)
		}
	}
	if s := g.Stats(); s.Calls != 0 || s.Dialogs != 0 || s.Transactions != 0 {
		t.Errorf("after refused adoptions: %+v", s)
	}
}

// TestPeerTargetRefresh: a re-INVITE from the peer with a new Contact
// (here a session refresh: its SDP unchanged, answered without the web
// side) moves the dialog's remote target (RFC 3261 section 12.2.2): the
// DialogState says so and our BYE goes there. Before, the target stayed
// the 200's Contact for the whole call.
func TestPeerTargetRefresh(t *testing.T) {
	bob := adoptPeer(t, "", 0)
	g, c := upCall(t, Config{Listen: ListenConfig{UDP: "127.0.0.1:0"}, Domain: "example.com", OutboundProxy: bob.uri()})
	ctx := context.Background()
	k := c.Keys()
	moved := "sip:moved@" + bob.pc.LocalAddr().String()
	body := "v=0\r\no=bob 7 7 IN IP4 127.0.0.1\r\n"
	reinvite := fmt.Sprintf("INVITE sip:gw@%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKmoved1\r\nMax-Forwards: 70\r\n"+
		"From: <sip:bob@example.com>;tag=far\r\nTo: <sip:alice@example.com>;tag=%s\r\nCall-ID: %s\r\nCSeq: 1 INVITE\r\n"+
		"Contact: <%s>\r\nContent-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s",
		g.Addr("udp"), bob.pc.LocalAddr(), k.LocalTag, k.CallID, moved, len(body), body)
	if res := bob.send(t, g.Addr("udp"), reinvite); res.StatusCode != 200 {
		t.Fatalf("the peer's re-INVITE answered %d", res.StatusCode)
	}
	st := nextState(t, c, func(s DialogState) bool { return s.RemoteTarget == moved })
	if st.RemoteCSeq != 1 {
		t.Errorf("remote CSeq %d, want the re-INVITE's 1", st.RemoteCSeq)
	}
	if err := c.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	if bye := bob.next(t, sip.BYE); bye.Recipient.String() != moved {
		t.Errorf("BYE to %s, want the refreshed target %s", bye.Recipient.String(), moved)
	}
}

// BenchmarkDialogState: the snapshot taken at every DialogChanged, and
// its JSON for the store.
func BenchmarkDialogState(b *testing.B) {
	bob := adoptPeer(b, "", 0)
	_, c := upCall(b, Config{Listen: ListenConfig{UDP: "127.0.0.1:0"}, Domain: "example.com", OutboundProxy: bob.uri()})
	b.Run("snapshot", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := c.DialogState(); !ok {
				b.Fatal("no state")
			}
		}
	})
	b.Run("json", func(b *testing.B) {
		b.ReportAllocs()
		st, _ := c.DialogState()
		for b.Loop() {
			if _, err := json.Marshal(st); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestAdoptDialogGone: the peer answers the target refresh 481 (it ended
// the dialog in the gap, its BYE lost with the old node): Adopt fails
// with the 481, sends no BYE into a dialog that is not there, and keeps
// nothing.
func TestAdoptDialogGone(t *testing.T) {
	bob := adoptPeer(t, "", 481)
	cfg := Config{Listen: ListenConfig{UDP: "127.0.0.1:0"}, Domain: "example.com", OutboundProxy: bob.uri()}
	a, c := upCall(t, cfg)
	ctx := context.Background()
	bob.next(t, sip.INVITE)
	st, ok := c.Release()
	if !ok {
		t.Fatal("Release: no confirmed dialog")
	}
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	b := startWith(t, cfg, nil)
	cb, err := b.Adopt(ctx, viaStore(t, st), nil)
	if cb != nil || ResponseCode(err) != 481 {
		t.Fatalf("Adopt: %v, %v; want no call and the 481", cb, err)
	}
	bob.next(t, sip.INVITE)
	// What the peer got after the refresh: nothing but its ACK, which
	// it does not report; a BYE would be here by the time B is idle.
	if s := b.Stats(); s.Calls != 0 || s.Dialogs != 0 || s.Transactions != 0 {
		t.Errorf("B after the failed adoption: %+v", s)
	}
	select {
	case r := <-bob.got:
		t.Errorf("the peer got %s after the 481", r.Method)
	default:
	}
}

// upCall starts a user agent with cfg and returns it with its call from
// alice to bob, answered and ACKed.
func upCall(tb testing.TB, cfg Config) (*UserAgent, *Call) {
	tb.Helper()
	g := startWith(tb, cfg, nil)
	return g, dialAnswered(tb, g, "v=0\r\no=alice 1 1 IN IP4 127.0.0.1\r\n")
}

// FuzzAdoptState: a DialogState from the store, whatever its fields,
// is refused or rebuilt without a panic; a rebuilt one gives a state
// that rebuilds to itself (but the SDP's o= version, bumped each time).
func FuzzAdoptState(f *testing.F) {
	f.Add("uac", "c1", "l", "r", "sip:a@example.com", "sip:b@example.com", "sip:b@127.0.0.1:9", "<sip:127.0.0.1:5060;lr>", "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\n", uint32(7))
	f.Add("uas", "c@h", "x", "y", "sips:a@h;transport=tls", "tel:+1555", "sip:[::1]:5070;transport=tcp", "<sip:p1;lr>, <sip:p2;lr>", "v=0\r\n", uint32(0))
	f.Add("uac", "c", "l", "r", "sip:a@h", "sip:b@h", "sip:b@h", "<", "v=0", uint32(1))
	g := startWith(f, Config{Listen: ListenConfig{UDP: "127.0.0.1:0"}, Domain: "example.com"}, nil)
	f.Fuzz(func(t *testing.T, role, callID, ltag, rtag, local, remote, target, route, sdp string, cseq uint32) {
		st := DialogState{Version: DialogStateVersion, Role: role, CallID: callID, LocalTag: ltag, RemoteTag: rtag,
			LocalURI: local, RemoteURI: remote, RemoteTarget: target, LocalCSeq: cseq, LocalSDP: sdp}
		if route != "" {
			st.RouteSet = []string{route}
		}
		c, _, err := g.rebuild(st)
		if err != nil {
			return
		}
		c.lifeCancel()
		s1, ok := c.DialogState()
		if !ok {
			t.Fatal("a rebuilt call has no state")
		}
		c2, _, err := g.rebuild(s1)
		if err != nil {
			t.Fatalf("the state of a rebuilt call %+v is refused: %v", s1, err)
		}
		c2.lifeCancel()
		s2, _ := c2.DialogState()
		s1.LocalSDP, s2.LocalSDP = "", ""
		if !reflect.DeepEqual(s1, s2) {
			t.Fatalf("rebuilt again:\n%+v\nwant\n%+v", s2, s1)
		}
	})
}

// TestEndDialog: a call released by A (A then closes, as a node that is
// gone) whose web side nobody will continue is ended by B: the peer gets
// one BYE, in the dialog (the CSeq after A's last, the route set) with
// the cause B gives, and no target refresh before it.
func TestEndDialog(t *testing.T) {
	bob := adoptPeer(t, "", 0)
	cfg := Config{Listen: ListenConfig{UDP: "127.0.0.1:0"}, Domain: "example.com", OutboundProxy: bob.uri()}
	a, c := upCall(t, cfg)
	ctx := context.Background()
	first := bob.next(t, sip.INVITE).CSeq().SeqNo
	st, ok := c.Release()
	if !ok {
		t.Fatal("Release: no confirmed dialog")
	}
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	st = viaStore(t, st)
	b := startWith(t, cfg, nil)
	ectx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := b.EndDialog(ectx, st, 480, "the web user is gone", nil); err != nil {
		t.Fatal(err)
	}
	var bye *sip.Request
	select {
	case bye = <-bob.got:
	case <-time.After(10 * time.Second):
		t.Fatal("no request at the peer")
	}
	if bye.Method != sip.BYE {
		t.Fatalf("the peer got %s, want the BYE first", bye.Method)
	}
	checkInDialog(t, bye, st, first+1, b)
	if r := bye.GetHeader("Reason"); r == nil || r.Value() != `SIP;cause=480;text="the web user is gone"` {
		t.Errorf("BYE Reason %v", r)
	}
	if s := b.Stats(); s.Calls != 0 || s.Dialogs != 0 {
		t.Errorf("B after the BYE: %+v", s)
	}
	select {
	case r := <-bob.got:
		t.Errorf("the peer got %s after the BYE", r.Method)
	default:
	}
}

// registeredAlice is a user agent of cfg registered as alice, with the
// channel of its incoming calls and the user part
// its Contact has for her (what a caller's INVITE is addressed to).
func registeredAlice(t *testing.T, cfg Config) (*UserAgent, chan *Call, string) {
	t.Helper()
	a, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	incoming := make(chan *Call, 1)
	a.OnIncomingCall(func(c *Call) { incoming <- c })
	ctx := context.Background()
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close(ctx) })
	if _, err := a.Register(ctx, "alice@example.com", nil); err != nil {
		t.Fatal(err)
	}
	_, token := a.identityInstance("alice@example.com")
	return a, incoming, token
}
