package gateway

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/emiago/sipgo/sip"
	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/store"
)

// adoptOwn adopts back the calls whose records name r's node, as a
// start does, and returns once all are over.
func (r *callRepl) adoptOwn() { r.adoptListed(r.listOwn()) }

// phoneRequest is a request the held phone got, answered when the test
// says.
type phoneRequest struct {
	req    *sip.Request
	answer func(code int)
}

// heldPhone is a phone over UDP that hands each request (but ACKs and
// retransmissions) to the returned channel and answers it only when
// told; its address.
func heldPhone(t *testing.T) (string, <-chan phoneRequest) {
	t.Helper()
	got := make(chan phoneRequest, 8)
	seen := map[string]bool{} // by branch: on the phone's one goroutine
	addr := udpPhone(t, func(req *sip.Request, answer func(code int)) {
		branch, _ := req.Via().Params.Get("branch")
		if req.Method == sip.ACK || seen[branch] {
			return
		}
		seen[branch] = true
		select {
		case got <- phoneRequest{req, answer}:
		default:
			t.Errorf("the phone's queue is full: %s dropped", req.Method)
		}
	})
	return addr, got
}

// nextRequest returns the phone's next request, which must be method's.
func nextRequest(t *testing.T, got <-chan phoneRequest, method sip.RequestMethod) phoneRequest {
	t.Helper()
	select {
	case r := <-got:
		if r.req.Method != method {
			t.Fatalf("the phone got %s, want %s", r.req.Method, method)
		}
		return r
	case <-time.After(15 * time.Second):
		t.Fatalf("the phone got no %s", method)
	}
	return phoneRequest{}
}

// sipStartConfig is a gateway's configuration with a SIP side.
func sipStartConfig(c *Config) {
	c.SIP.Domain = "example.com"
	c.SIP.Listen.UDP = "127.0.0.1:0"
}

// earlierLife runs a gateway on st with the sessions of alice and bob
// (web identities: no registration), records a confirmed SIP call of
// alice's (subsession c1) to phone as hosted by it, and stops it, as a
// node killed in the call: the sessions' and the call's records stay.
// It returns alice's and bob's clients, gone with their sockets.
func earlierLife(t *testing.T, st store.Store, phone string) (a, b *peer) {
	t.Helper()
	g1, url1 := newGatewayOpts(t, sipStartConfig, Options{Store: st})
	a = dial(t, url1, protocol.SubprotocolJSONrtc, nil)
	a.connect("alice@web.example")
	b = dial(t, url1, protocol.SubprotocolJSONrtc, nil)
	b.connect("bob@web.example")
	putSIPRecord(t, g1, a.sid, phone, callRecord{Host: g1.repl.host})
	// The phone allows UPDATE: the adoption's refresh is one, answered
	// without an ACK.
	ctx := context.Background()
	data, rev, err := st.Get(ctx, callKey(a.sid, "c1"))
	if err != nil {
		t.Fatal(err)
	}
	var rec callRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		t.Fatal(err)
	}
	rec.SIP.PeerAllow = []string{"INVITE", "ACK", "BYE", "UPDATE"}
	data, _ = json.Marshal(rec)
	if _, err := st.Update(ctx, callKey(a.sid, "c1"), data, rev); err != nil {
		t.Fatal(err)
	}
	a.c.CloseNow()
	b.c.CloseNow()
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := g1.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	return a, b
}

// startAgain builds a gateway on st as New does at a start, and returns
// it with its WebSocket URL and the adoption's refresh the phone got,
// unanswered, once New has returned. New must return while the phone
// holds the refresh; if it does not, the refresh is answered 481, which
// ends the adoption, and the test fails.
func startAgain(t *testing.T, st store.Store, got <-chan phoneRequest) (*Gateway, string, phoneRequest) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Session.AckDelay = Duration(time.Hour)
	sipStartConfig(&cfg)
	type built struct {
		g   *Gateway
		err error
	}
	ch := make(chan built, 1)
	go func() {
		g, err := New(cfg, &Options{Store: st})
		ch <- built{g, err}
	}()
	up := nextRequest(t, got, sip.UPDATE)
	var b built
	select {
	case b = <-ch:
	case <-time.After(5 * time.Second):
		up.answer(481)
		if b = <-ch; b.err == nil {
			b.g.Shutdown(context.Background())
		}
		t.Fatal("New waited for the adoption of a call whose peer does not answer its refresh")
	}
	if b.err != nil {
		t.Fatal(b.err)
	}
	srv := httptest.NewServer(b.g.Handler())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := b.g.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		srv.Close()
	})
	return b.g, "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws/webrtc/test", up
}

// restartInCall runs earlierLife on a new store with a held phone and
// starts again on it (startAgain): the gateway, its URL, the adoption's
// refresh unanswered, the phone's requests, and alice's and bob's
// clients of the earlier life.
func restartInCall(t *testing.T) (*Gateway, string, phoneRequest, <-chan phoneRequest, *peer, *peer) {
	t.Helper()
	st := store.NewMemory()
	phone, got := heldPhone(t)
	a, b := earlierLife(t, st, phone)
	g, url, up := startAgain(t, st, got)
	return g, url, up, got, a, b
}

// A node started again adopts back its earlier life's SIP call without
// holding its start: New returns, the other sessions resume and a new
// one connects while the call's peer has not answered the target
// refresh. The call's session resumes too, and its hang-up sent meanwhile waits for the
// adoption: once the peer answers, the call is adopted and the hang-up
// reaches the phone as a BYE after the refresh. Before, New returned
// only once the adoption was over (the refresh's 10 s and a failed
// one's BYE, up to 32 s, for each call in turn), and nobody could
// connect meanwhile.
func TestStartAdoptsWithoutWaiting(t *testing.T) {
	g, url, up, got, g1a, g1b := restartInCall(t)
	resumeWS(t, url, "bob@web.example", g1b.sid, g1b.seq+1, g1b.last)
	dial(t, url, protocol.SubprotocolJSONrtc, nil).connect("carol@web.example")
	a := resumeWS(t, url, "alice@web.example", g1a.sid, g1a.seq+1, g1a.last)
	if n := g.repl.starting.pending(); n != 1 {
		t.Fatalf("%d calls being adopted after the resumes, want alice's", n)
	}
	a.send(&protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeMessage, Package: protocol.PackageCall, SubsessionID: "c1", CorrelationID: "h1"},
		Header:  protocol.Header{Action: protocol.ActionShutdown, Initiator: "alice@web.example", Target: "bob@sip.example"},
	})
	up.answer(200)
	bye := nextRequest(t, got, sip.BYE)
	if n := bye.req.CSeq().SeqNo; n != 9 {
		t.Errorf("the hang-up's BYE has CSeq %d, want 9 (after the refresh's 8)", n)
	}
	bye.answer(200)
	sipRecordOf(t, g, g1a.sid, "c1", func(r *callRecord) bool { return r == nil })
	if n := g.repl.sip.adoptedCalls.Load(); n != 1 {
		t.Errorf("%d SIP calls adopted, want 1", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	g.repl.waitStart(ctx)
	if n := g.repl.starting.pending(); n != 0 {
		t.Errorf("%d calls still being adopted", n)
	}
}

// A node started again whose adoption of its earlier life's SIP call
// fails (the peer refuses the refresh) tells the call's session, which
// resumed meanwhile, at once: its shutdown comes while the phone still
// holds the BYE that ends the dialog. Before, the adopter waited for the
// BYE's answer (up to Timer F, 32 s) before it told the web user.
func TestStartAdoptionFailedTold(t *testing.T) {
	g, url, up, got, g1a, _ := restartInCall(t)
	a := resumeWS(t, url, "alice@web.example", g1a.sid, g1a.seq+1, g1a.last)
	up.answer(500)
	bye := nextRequest(t, got, sip.BYE)
	f := a.read()
	expect(t, f, protocol.TypeMessage, protocol.ActionShutdown)
	if f.Control.SubsessionID != "c1" || !strings.Contains(f.Header.Reason, "taken over") {
		t.Fatalf("alice's end of the call %s", f.Marshal())
	}
	bye.answer(200)
	sipRecordOf(t, g, g1a.sid, "c1", func(r *callRecord) bool { return r == nil })
	if n := g.repl.sip.adoptFailed.Load(); n != 1 {
		t.Errorf("%d failed adoptions, want 1", n)
	}
}

// A session that ends (its client logs out) while its call is being
// adopted back at start ends the call once the adoption is over: the
// phone gets the BYE after the refresh. Before the session's end waited
// for the adoption, the call was adopted for a session gone, and stayed.
func TestStartAdoptionThenSessionEnd(t *testing.T) {
	g, url, up, got, g1a, _ := restartInCall(t)
	a := resumeWS(t, url, "alice@web.example", g1a.sid, g1a.seq+1, g1a.last)
	a.c.Close(websocket.StatusNormalClosure, "signed out")
	for deadline := time.Now().Add(10 * time.Second); g.lookup(g1a.sid) != nil; <-time.After(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("alice's session not ended 10 s after her logout")
		}
	}
	up.answer(200)
	nextRequest(t, got, sip.BYE).answer(200)
	sipRecordOf(t, g, g1a.sid, "c1", func(r *callRecord) bool { return r == nil })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := g.WaitIdle(ctx); err != nil {
		t.Fatalf("calls left: %v", err)
	}
}
