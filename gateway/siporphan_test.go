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
	"github.com/jsonrtc/jsonrtc/endpoint"
	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/routing"
	"github.com/jsonrtc/jsonrtc/sipgw"
)

// byePeer is a phone over UDP that answers every request 200 and hands
// each on to the returned channel; its address.
func byePeer(t *testing.T) (string, <-chan *sip.Request) {
	t.Helper()
	got := make(chan *sip.Request, 8)
	addr := udpPhone(t, func(req *sip.Request, answer func(code int)) {
		select {
		case got <- req:
		default:
			t.Errorf("the phone's queue is full: %s dropped", req.Method)
		}
		answer(200)
	})
	return addr, got
}

// udpPhone is a phone over UDP that hands each request it gets to on,
// with the function that answers it; its address.
func udpPhone(t *testing.T, on func(req *sip.Request, answer func(code int))) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { pc.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			msg, err := sip.ParseMessage(append([]byte(nil), buf[:n]...))
			req, ok := msg.(*sip.Request)
			if err != nil || !ok {
				continue
			}
			on(req, func(code int) {
				_, _ = pc.WriteTo([]byte(sip.NewResponseFromRequest(req, code, "Answered", nil).String()), from)
			})
		}
	}()
	return pc.LocalAddr().String()
}

// A SIP call's record whose web session is gone (expired before anyone
// went on with the call) is taken by the node that finds it (here at its
// restart, adopting back its earlier life's calls): it ends the dialog,
// the phone gets one BYE with the cause, and the record goes. Before,
// the record was left to expire and the phone kept the call.
func TestSIPCallOfAGoneSessionEnded(t *testing.T) {
	g, _ := sipNode(t)
	phone, got := byePeer(t)
	putSIPRecord(t, g, "gone", phone, callRecord{Host: g.self()})

	g.repl.adoptOwn()
	expectOrphanBye(t, g, got)
	// Found again (another node's sweep, a later restart): nothing left.
	g.repl.adoptOwn()
	expectNothing(t, g, got)
}

// An outgoing call's BYE sent because its web user is gone carries the
// header rules of the call's route, bound under this node's
// configuration from what the record kept of the session (its
// application), as an adoption binds them from the live session.
// Before, it went without them.
func TestOrphanByeHasHeaderRules(t *testing.T) {
	gs, _ := newClusterGatewaysMod(t, 1, nil, func(c *Config) {
		c.SIP.Domain = "example.com"
		c.SIP.Listen.UDP = "127.0.0.1:0"
		c.Routing.Headers = []routing.HeaderRuleConfig{{Header: "X-Tenant", Value: "{application}/{user}", Methods: []string{"BYE"}}}
	})
	g := gs[0]
	phone, got := byePeer(t)
	putRoutedSIPRecord(t, g, "gone", phone, callRecord{Host: g.self()}, endpoint.RouteBasis{Application: "acme"})
	g.repl.adoptOwn()
	bye := expectOrphanBye(t, g, got)
	if h := bye.GetHeader("X-Tenant"); h == nil || h.Value() != "acme/alice" {
		t.Fatalf("the orphan's BYE X-Tenant %v, want the header rule's acme/alice", h)
	}
}

// expectOrphanBye waits for the phone's one BYE of the call recorded by
// putSIPRecord, with the cause, and for its record's deletion.
func expectOrphanBye(t *testing.T, g *Gateway, got <-chan *sip.Request) *sip.Request {
	t.Helper()
	var bye *sip.Request
	select {
	case bye = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("the phone got nothing")
	}
	if bye.Method != sip.BYE || bye.CallID().Value() != "cid-orphan" || bye.CSeq().SeqNo != 8 {
		t.Fatalf("the phone got %s %s CSeq %d, want the dialog's BYE with CSeq 8", bye.Method, bye.CallID().Value(), bye.CSeq().SeqNo)
	}
	if r := bye.GetHeader("Reason"); r == nil || r.Value() != `SIP;cause=480;text="the web user is gone"` {
		t.Errorf("BYE Reason %v", r)
	}
	sipRecordOf(t, g, "gone", "c1", func(r *callRecord) bool { return r == nil })
	return bye
}

// expectNothing checks that the phone got nothing more, and that one
// call was counted as orphaned.
func expectNothing(t *testing.T, g *Gateway, got <-chan *sip.Request) {
	t.Helper()
	select {
	case r := <-got:
		t.Fatalf("the phone got %s again", r.Method)
	default:
	}
	if n := g.repl.sip.orphaned.Load(); n != 1 {
		t.Errorf("orphaned %d, want 1", n)
	}
}

// putSIPRecord stores the record rec of a confirmed SIP call from the
// web session's subsession c1 to the phone at addr (Call-ID cid-orphan,
// our last CSeq 7).
func putSIPRecord(t *testing.T, g *Gateway, session, phone string, rec callRecord) {
	t.Helper()
	putRoutedSIPRecord(t, g, session, phone, rec, endpoint.RouteBasis{})
}

// putRoutedSIPRecord is putSIPRecord of a call whose web session's
// routing read route.
func putRoutedSIPRecord(t *testing.T, g *Gateway, session, phone string, rec callRecord, route endpoint.RouteBasis) {
	t.Helper()
	app, _ := json.Marshal(call.SIPSnapshot{Out: true, Target: "bob@sip.example", Route: route,
		Web: call.LegSnapshot{Session: session, Identity: "alice@example.com", Sub: "c1", StartCorr: "c1"}})
	rec.SIP = &sipgw.DialogState{Version: sipgw.DialogStateVersion, Role: "uac", CallID: "cid-orphan", LocalTag: "lt", RemoteTag: "rt",
		LocalURI: "sip:alice@example.com", RemoteURI: "sip:bob@sip.example", RemoteTarget: fmt.Sprintf("sip:bob@%s", phone),
		LocalCSeq: 7, LocalSDP: "v=0\r\no=alice 1 1 IN IP4 127.0.0.1\r\n", App: app}
	data, _ := json.Marshal(rec)
	if _, err := g.store.Create(context.Background(), callKey(session, "c1"), data); err != nil {
		t.Fatal(err)
	}
}

// The sweep: a SIP call handed over at a drain (its record released)
// whose client never resumed, its session record gone, is ended (one
// BYE) and its record deleted; one whose session is still there is left
// for the resume that adopts it.
func TestSweepEndsReleasedSIPCallOfAGoneSession(t *testing.T) {
	g, url := sipNode(t)
	a := dial(t, url, protocol.SubprotocolOracle, nil)
	a.connect("alice@web.example") // a SIP domain's user would register
	phone, got := byePeer(t)
	putSIPRecord(t, g, "gone", phone, callRecord{Host: "n7", Released: true})
	putSIPRecord(t, g, a.sid, phone, callRecord{Host: "n7", Released: true})

	g.repl.sweepOrphans()
	expectOrphanBye(t, g, got)
	if r := sipRecordOf(t, g, a.sid, "c1", func(r *callRecord) bool { return r != nil }); !r.Released || r.Host != "n7" {
		t.Errorf("the live session's record %+v, want it released as it was", r)
	}
	g.repl.sweepOrphans()
	expectNothing(t, g, got)
}

// The sweep and a ringing incoming SIP call of a dead host that rang two
// web sessions: left while a fork's session is there (its resume ends
// the call, saying why), ended once neither is. Before, the sweep looked
// at the record's web leg alone, and refused the call ("the web user is
// gone") under a fork about to resume.
func TestSweepLeavesRingingSIPCallOfALiveFork(t *testing.T) {
	g, url := sipNode(t)
	b := dial(t, url, protocol.SubprotocolOracle, nil)
	b.connect("bob@web.example")
	caller, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer caller.Close()
	put := func(web, fork string) {
		t.Helper()
		leg := func(session string) call.LegSnapshot {
			return call.LegSnapshot{Session: session, Identity: "bob@web.example", Sub: "g1", StartCorr: "s1"}
		}
		app, _ := json.Marshal(call.SIPSnapshot{Target: "bob@web.example", Remote: "carol@sip.example", Web: leg(web), Forks: []call.LegSnapshot{leg(fork)}})
		rec := callRecord{Host: "n7", SIP: &sipgw.DialogState{Version: sipgw.DialogStateVersion, Role: "uas", CallID: "cid-" + web, LocalTag: "ours",
			RemoteTag: "theirs", App: app, Invite: &sipgw.InviteState{Vias: []string{"SIP/2.0/UDP " + caller.LocalAddr().String() + ";branch=z9hG4bK" + web},
				From: "<sip:carol@sip.example>;tag=theirs", To: "<sip:bob@example.com>;tag=ours", CSeq: 1}}}
		data, _ := json.Marshal(rec)
		if _, err := g.store.Create(context.Background(), callKey(web, "g1"), data); err != nil {
			t.Fatal(err)
		}
	}
	put("gone", b.sid)
	g.repl.sweepOrphans()
	if n := g.repl.sip.orphaned.Load(); n != 0 {
		t.Fatalf("orphaned %d under a live fork, want 0", n)
	}
	sipRecordOf(t, g, "gone", "g1", func(r *callRecord) bool { return r != nil && r.SIP != nil })
	put("gone2", "gone3")
	g.repl.sweepOrphans()
	if n := g.repl.sip.orphaned.Load(); n != 1 {
		t.Fatalf("orphaned %d, want 1: the call whose sessions are all gone", n)
	}
	sipRecordOf(t, g, "gone2", "g1", func(r *callRecord) bool { return r == nil })
	sipRecordOf(t, g, "gone", "g1", func(r *callRecord) bool { return r != nil && r.SIP != nil })
}

// sipNode is a cluster of one node whose SIP user agent listens on UDP
// (domain example.com), and its WebSocket URL.
func sipNode(t *testing.T) (*Gateway, string) {
	t.Helper()
	gs, urls := newClusterGatewaysMod(t, 1, nil, func(c *Config) {
		c.SIP.Domain = "example.com"
		c.SIP.Listen.UDP = "127.0.0.1:0"
	})
	return gs[0], urls[0]
}
