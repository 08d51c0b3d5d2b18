package gateway

import (
	"context"
	"fmt"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/store/natsstore"
)

// fakeNotifier answers every SUBSCRIBE on a UDP socket with 200 OK
// (Expires: 600) and reports it; the test sends the NOTIFYs. It is the
// gateway's outbound proxy, and so its registrar too: it grants every
// REGISTER.
type fakeNotifier struct {
	t    *testing.T
	pc   net.PacketConn
	addr string
	subs chan subscribed
}

// subscribed is a SUBSCRIBE the notifier answered.
type subscribed struct {
	req     *sip.Request
	from    net.Addr
	event   string
	expires string
	tag     string // the To tag of the 200
	cseq    int
}

func startNotifier(t *testing.T) *fakeNotifier {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n := &fakeNotifier{t: t, pc: pc, addr: pc.LocalAddr().String(), subs: make(chan subscribed, 16)}
	done := make(chan struct{})
	t.Cleanup(func() { pc.Close(); <-done })
	go func() {
		defer close(done)
		seen := map[string]bool{}
		buf := make([]byte, 65535)
		for {
			k, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			m, err := sip.ParseMessage(buf[:k])
			req, ok := m.(*sip.Request)
			if err == nil && ok && req.Method == sip.REGISTER {
				res := sip.NewResponseFromRequest(req, 200, "OK", nil)
				if ct := req.Contact(); ct != nil {
					res.AppendHeader(ct.Clone())
				}
				if h := req.GetHeader("Expires"); h != nil {
					res.AppendHeader(sip.NewHeader("Expires", h.Value()))
				}
				pc.WriteTo([]byte(res.String()), from)
				continue
			}
			if err != nil || !ok || req.Method != sip.SUBSCRIBE {
				if res, ok := m.(*sip.Response); ok && res.StatusCode >= 300 {
					t.Logf("notifier: NOTIFY answered %d %s", res.StatusCode, res.Reason)
				}
				continue // the gateway's answers to NOTIFY
			}
			s := subscribed{req: req, from: from, tag: fmt.Sprintf("n%d", len(seen)+1)}
			if h := req.GetHeader("Event"); h != nil {
				s.event = h.Value()
			}
			if h := req.GetHeader("Expires"); h != nil {
				s.expires = h.Value()
			}
			res := sip.NewResponseFromRequest(req, 200, "OK", nil)
			if to := res.To(); to != nil && to.Params.Has("tag") {
				s.tag, _ = to.Params.Get("tag")
			} else if to != nil {
				to.Params.Add("tag", s.tag)
			}
			res.AppendHeader(sip.NewHeader("Expires", "600"))
			res.AppendHeader(sip.NewHeader("Contact", "<sip:notifier@"+n.addr+">"))
			pc.WriteTo([]byte(res.String()), from)
			key := req.CallID().Value() + " " + req.CSeq().Value()
			if seen[key] {
				continue // a retransmission
			}
			seen[key] = true
			select {
			case n.subs <- s:
			default: // unread: the test waiting for it fails
			}
		}
	}()
	return n
}

// next returns the next SUBSCRIBE; the test fails after 10 s without one.
func (n *fakeNotifier) next() subscribed {
	n.t.Helper()
	select {
	case s := <-n.subs:
		return s
	case <-time.After(10 * time.Second):
		n.t.Fatal("no SUBSCRIBE")
		return subscribed{}
	}
}

// notify sends, in s's dialog, a NOTIFY of body (of type ctype).
func (n *fakeNotifier) notify(s *subscribed, ctype, body string) {
	s.cseq++
	from, to := s.req.From(), s.req.To()
	msg := fmt.Sprintf("NOTIFY %s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK-n%d%s\r\nFrom: <%s>;tag=%s\r\nTo: %s\r\n"+
		"Call-ID: %s\r\nCSeq: %d NOTIFY\r\nMax-Forwards: 70\r\nContact: <sip:notifier@%s>\r\nEvent: %s\r\n"+
		"Subscription-State: active;expires=600\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s",
		s.req.Contact().Address.String(), n.addr, s.cseq, s.tag, to.Address.String(), s.tag, from.Value(),
		s.req.CallID().Value(), s.cseq, n.addr, s.event, ctype, len(body), body)
	if _, err := n.pc.WriteTo([]byte(msg), s.from); err != nil {
		n.t.Fatal(err)
	}
}

func summary(waiting int) string {
	return fmt.Sprintf("Messages-Waiting: yes\r\nMessage-Account: sip:alice@example.com\r\nVoice-Message: %d/8 (0/2)\r\n", waiting)
}

func pidfNote(note string) string {
	return `<?xml version="1.0" encoding="UTF-8"?><presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:carol@example.com">` +
		`<tuple id="t1"><status><basic>open</basic></status><note>` + note + `</note></tuple></presence>`
}

// subscriptionSIP configures SIP with notifier as the outbound proxy and
// the registrar.
func subscriptionSIP(c *Config, notifier string) {
	c.SIP.Listen.UDP, c.SIP.Domain = "127.0.0.1:0", "example.com"
	c.SIP.Registrar, c.SIP.OutboundProxy = "sip:"+notifier, "sip:"+notifier
}

// readNotify reads p's next frame, which must be a notify on sub whose
// payload contains want.
func readNotify(t *testing.T, p *peer, sub, want string) {
	t.Helper()
	f := p.read()
	if f.Header.Action != protocol.ActionNotify || f.Control.SubsessionID != sub || !strings.Contains(string(f.Payload), want) {
		t.Fatalf("want a notify on %s with %s, got %s", sub, want, f.Marshal())
	}
}

// TestSubscriptionsAcrossRestart (issue 15): a single gateway on the
// nats store is killed (nothing written after the kill) and started
// again on its data directory; alice's session resumes with her watch
// of a SIP presentity and her message-summary subscription, which the
// new process subscribes again (new SUBSCRIBE dialogs), for the same
// subsessions, without a start from her. The new dialogs' first NOTIFYs,
// with what she was told already, are not told again; their changes
// are. Before, the subscriptions were lost with the process: she heard
// nothing more.
func TestSubscriptionsAcrossRestart(t *testing.T) {
	notifier := startNotifier(t)
	sip := func(c *Config) { subscriptionSIP(c, notifier.addr) }
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	k := startKillable(t, ctx, sip)
	url1 := k.url
	a := dial(t, url1, protocol.SubprotocolJSONrtc, nil)
	a.connect("alice@example.com")
	pres, mwi := subscribeBoth(t, a, notifier)
	// The record holds what the client was told: written ahead of it.

	k.kill(ctx)
	// Its shutdown ended its dialogs (Expires: 0), as a kill would not.
	for range 2 {
		if s := notifier.next(); s.expires != "0" {
			t.Fatalf("the old process subscribed %s again (Expires %s)", s.event, s.expires)
		}
	}

	url2 := k.restart(ctx, sip)
	a2 := resumeWS(t, url2, "alice@example.com", a.sid, a.seq+1, a.last)
	if n := resubscribed(t, a2, notifier, pres, mwi); n != 0 {
		t.Fatalf("%d removals after the restart", n)
	}
}

// TestClusterTakeoverMovesSubscriptions (issue 15): alice's session,
// with a watch of a SIP presentity and a message-summary subscription,
// resumes on n2 (a takeover): n2 subscribes again with new dialogs, for
// the same subsessions, silently, and n1 ends its own (Expires: 0), its
// handlers holding none; what the notifier tells n2's dialogs reaches
// alice when it is news to her. Before, n1 kept its subscriptions,
// notifying through the moved session while it lived (and the voicemail
// one refreshed for ever), and n2 had none.
func TestClusterTakeoverMovesSubscriptions(t *testing.T) {
	notifier := startNotifier(t)
	gs, urls := newClusterGatewaysMod(t, 2, nil, func(c *Config) { subscriptionSIP(c, notifier.addr) })
	a := dial(t, urls[0], protocol.SubprotocolJSONrtc, nil)
	a.connect("alice@example.com")
	pres, mwi := subscribeBoth(t, a, notifier)

	a2 := resumeWS(t, urls[1], "alice@example.com", a.sid, a.seq+1, a.last)
	removals := resubscribed(t, a2, notifier, pres, mwi)
	for ; removals < 2; removals++ {
		if s := notifier.next(); s.expires != "0" || s.req.CallID().Value() != pres.req.CallID().Value() && s.req.CallID().Value() != mwi.req.CallID().Value() {
			t.Fatalf("SUBSCRIBE %s, Expires %s: want n1's removal", s.event, s.expires)
		}
	}
	if p, n := gs[0].presence.Subscriptions(), gs[0].notes.Subscriptions(); p != 0 || n != 0 {
		t.Fatalf("n1 holds %d watches and %d voicemail subscriptions after the move", p, n)
	}
	if p, n := gs[1].presence.Subscriptions(), gs[1].notes.Subscriptions(); p != 1 || n != 1 {
		t.Fatalf("n2 holds %d watches and %d voicemail subscriptions, want 1 and 1", p, n)
	}
	// Only the new owner subscribed again.
	select {
	case s := <-notifier.subs:
		t.Fatalf("one more SUBSCRIBE %s, Expires %s", s.event, s.expires)
	default:
	}
}

// subscribeBoth has a watch sip:carol@example.com on w1 and subscribe to
// sip:vm@example.com on m1, notifier answering and notifying "desk" and
// 2 messages; it returns the two SUBSCRIBEs.
func subscribeBoth(t *testing.T, a *peer, notifier *fakeNotifier) (pres, mwi subscribed) {
	t.Helper()
	a.send(&protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackagePresence, SubsessionID: "w1"},
		Header:  protocol.Header{Action: protocol.ActionStart, Target: "sip:carol@example.com"},
	})
	pres = notifier.next()
	notifier.notify(&pres, "application/pidf+xml", pidfNote("desk"))
	if r := a.read(); r.Header.ResponseCode != 200 || r.Control.SubsessionID != "w1" {
		t.Fatalf("watch answered %s", r.Marshal())
	}
	readNotify(t, a, "w1", "desk")
	a.send(&protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageMessageNotification, SubsessionID: "m1"},
		Header:  protocol.Header{Action: protocol.ActionStart, Target: "sip:vm@example.com"},
	})
	mwi = notifier.next()
	notifier.notify(&mwi, "application/simple-message-summary", summary(2))
	if r := a.read(); r.Header.ResponseCode != 200 || r.Control.SubsessionID != "m1" {
		t.Fatalf("subscribe answered %s", r.Marshal())
	}
	readNotify(t, a, "m1", "2/8")
	return pres, mwi
}

// resubscribed waits for two new SUBSCRIBE dialogs, of presence and
// message-summary, and checks that their first NOTIFYs, with the state
// a2 (on w1 and m1) was told, reach it only when they change. Removals
// (Expires: 0) of pres's and mwi's dialogs meanwhile are counted.
func resubscribed(t *testing.T, a2 *peer, notifier *fakeNotifier, pres, mwi subscribed) (removals int) {
	t.Helper()
	again := map[string]*subscribed{}
	for len(again) < 2 {
		s := notifier.next()
		old := s.req.CallID().Value() == pres.req.CallID().Value() || s.req.CallID().Value() == mwi.req.CallID().Value()
		switch {
		case old && s.expires == "0":
			removals++
		case old || s.expires == "0" || again[s.event] != nil:
			t.Fatalf("SUBSCRIBE %s, Expires %s, Call-ID %s: want a new dialog of each event", s.event, s.expires, s.req.CallID().Value())
		default:
			again[s.event] = &s
		}
	}
	if again["presence"] == nil || again["message-summary"] == nil {
		t.Fatalf("subscribed again: %v", again)
	}
	// What alice was told already is not told again; the changes are.
	notifier.notify(again["presence"], "application/pidf+xml", pidfNote("desk"))
	notifier.notify(again["message-summary"], "application/simple-message-summary", summary(2))
	notifier.notify(again["presence"], "application/pidf+xml", pidfNote("lunch"))
	readNotify(t, a2, "w1", "lunch")
	notifier.notify(again["message-summary"], "application/simple-message-summary", summary(3))
	readNotify(t, a2, "m1", "3/8")
	return removals
}

// killable is a single gateway on the nats store, on disk, for a test
// to kill (no write after the kill) and start again on its directory.
type killable struct {
	t   *testing.T
	dir string
	e   *natsstore.Embedded
	ks  *killedStore
	g   *Gateway
	srv *httptest.Server
	url string // its WebSocket URL
}

// startKillable starts a killable gateway, its configuration the
// defaults (acknowledgements held an hour) changed by mod (nil: none).
func startKillable(t *testing.T, ctx context.Context, mod func(*Config)) *killable {
	t.Helper()
	k := &killable{t: t, dir: t.TempDir()}
	var err error
	if k.e, err = natsstore.Start(ctx, &natsstore.EmbeddedOptions{Dir: k.dir, Store: natsstore.Options{TTL: time.Minute}}); err != nil {
		t.Fatal(err)
	}
	k.ks = &killedStore{Store: k.e}
	cfg := DefaultConfig()
	cfg.Session.AckDelay = Duration(time.Hour)
	if mod != nil {
		mod(&cfg)
	}
	if k.g, err = New(cfg, &Options{Store: k.ks}); err != nil {
		t.Fatal(err)
	}
	k.srv = httptest.NewServer(k.g.Handler())
	k.url = "ws" + strings.TrimPrefix(k.srv.URL, "http") + "/ws/webrtc/test"
	return k
}

// kill stops the gateway with its store failing every write, so that the
// records stay as they were, and drops its sockets.
func (k *killable) kill(ctx context.Context) {
	k.ks.killed.Store(true)
	k.srv.CloseClientConnections()
	k.srv.Close()
	k.g.Shutdown(ctx) // its writes fail: the records stay as they were
	k.e.Close()
}

// restart starts a gateway (configured as newGatewayOpts's, changed by
// mod) on the killed one's data directory and returns its URL.
func (k *killable) restart(ctx context.Context, mod func(*Config)) string {
	k.t.Helper()
	e, err := natsstore.Start(ctx, &natsstore.EmbeddedOptions{Dir: k.dir, Store: natsstore.Options{TTL: time.Minute}})
	if err != nil {
		k.t.Fatal(err)
	}
	k.t.Cleanup(e.Close)
	_, url := newGatewayOpts(k.t, mod, Options{Store: e})
	return url
}
