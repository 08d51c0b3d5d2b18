package interop

import (
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/client"
	"github.com/jsonrtc/jsonrtc/gateway"
	"github.com/jsonrtc/jsonrtc/sipgw"
)

// Session timers (RFC 4028) and UPDATE (RFC 3311) against SIPp through
// Kamailio. The timers are seconds, not the RFC's minutes: Min-SE 2s,
// and the SIPp peers pick 3-4s intervals, so that a refresh or an expiry
// happens within a test.

// noLeaks fails t when goroutines started during it outlive its
// cleanups (registered first, it runs after the gateway's Close): the
// session timers and refreshes belong to their call.
func noLeaks(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		until(t, "the test's goroutines to end", func() bool { return runtime.NumGoroutine() <= before })
	})
}

// shortTimers is the session_timers of these tests.
func shortTimers(cfg *sipgw.Config) {
	cfg.SessionTimers = sipgw.SessionTimerConfig{Expires: 4 * time.Second, MinSE: 2 * time.Second}
}

// expectInfoNext checks that the next event is the SIPp scenario's INFO,
// which it sends once the refresh it checked is done: nothing about the
// refresh reached the call's owner (the web side).
func expectInfoNext(t *testing.T, c *sipgw.Call) {
	t.Helper()
	if ev := expect(t, c, sipgw.EventInfo); ev.Digit != "5" {
		t.Fatalf("info %+v", ev)
	}
}

// TestSessionTimerOutgoing: calls the gateway places, with 3-4 s
// sessions, each against a SIPp far end that checks the headers (Supported,
// Allow, User-Agent, Session-Expires, Min-SE) of what it gets:
//   - Update: the 200 makes the gateway the refresher; an UPDATE comes
//     within the interval.
//   - Reinvite: a peer whose Allow has no UPDATE is refreshed by a
//     re-INVITE carrying the offer the call runs on.
//   - 422Retry: the INVITE is answered 422 with Min-SE 60; the gateway
//     retries once, asking for 60 (RFC 4028 §7.4).
//   - Refresh481: a refresh answered 481 ends the call with BYE (§10).
//   - Expires: the peer is the refresher and never refreshes: the gateway
//     sends BYE before the interval is up (§10).
func TestSessionTimerOutgoing(t *testing.T) {
	for _, tc := range []struct {
		name, scenario string
		info           bool           // the scenario sends an INFO once it has seen the refresh
		end            sipgw.EndCause // 0: the call stays up and is hung up cleanly
		code           int
		reason         string // in the end event's reason
	}{
		{name: "Update", scenario: "uas_timer_update.xml", info: true},
		{name: "Reinvite", scenario: "uas_timer_reinvite.xml", info: true},
		{name: "422Retry", scenario: "uas_422.xml"},
		{name: "Refresh481", scenario: "uas_timer_481.xml", end: sipgw.EndSessionExpired, code: 481, reason: "481"},
		{name: "Expires", scenario: "uas_timer_expire.xml", end: sipgw.EndSessionExpired, code: 408},
	} {
		t.Run(tc.name, func(t *testing.T) {
			noLeaks(t)
			k := startKamailio(t)
			g := newGateway(t, k, shortTimers)
			uas := startSipp(t, tc.scenario, "")
			c := dial(t, g, uas.Port, sipgw.DialOptions{})
			answeredAcked(t, c)
			if tc.end == 0 {
				if tc.info {
					expectInfoNext(t, c)
				}
				hangUpClean(t, g, c, uas)
				return
			}
			if ev := ended(t, c); ev.End != tc.end || ev.Code != tc.code || !strings.Contains(ev.Reason, tc.reason) {
				t.Fatalf("end %v %d %q", ev.End, ev.Code, ev.Reason)
			}
			uas.expectSuccess(t)
			assertIdle(t, g)
		})
	}
}

// registeredShortTimers is a gateway with short session timers, alice
// registered at k, and the calls offered to her.
func registeredShortTimers(t *testing.T, k *Kamailio) (*sipgw.UserAgent, chan *sipgw.Call) {
	t.Helper()
	calls := make(chan *sipgw.Call, 1)
	g := newGateway(t, k, func(cfg *sipgw.Config) {
		shortTimers(cfg)
		cfg.Credentials = map[string]sipgw.Credential{"alice@" + domain: {Username: "alice", Password: users["alice"]}}
	}, func(c *sipgw.Call) { calls <- c })
	r, err := g.Register(ctxT(t), "alice@"+domain, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Release(ctxT(t)) })
	return g, calls
}

// TestSessionIntervalTooSmall: an INVITE whose Session-Expires is below
// our Min-SE is answered 422 with our Min-SE (and a Server header); no
// call reaches the web side.
func TestSessionIntervalTooSmall(t *testing.T) {
	noLeaks(t)
	k := startKamailio(t)
	g, calls := registeredShortTimers(t, k)
	uac := startSipp(t, "uac_timer_422.xml", k.Addr)
	uac.expectSuccess(t)
	select {
	case c := <-calls:
		t.Fatalf("call %s offered despite the 422", c.ID())
	default:
	}
	assertIdle(t, g)
}

// TestIncomingSessionRefresh: the caller asks the gateway (the UAS) to
// refresh a 4s session; SIPp checks the 200's Session-Expires, Server,
// Allow and Supported, and that an UPDATE comes within the 4s.
func TestIncomingSessionRefresh(t *testing.T) {
	noLeaks(t)
	k := startKamailio(t)
	g, calls := registeredShortTimers(t, k)
	uac := startSipp(t, "uac_timer.xml", k.Addr)
	c := incoming(t, calls)
	if err := c.Answer(ctxT(t), []byte(offer)); err != nil {
		t.Fatal(err)
	}
	expect(t, c, sipgw.EventConfirmed)
	// The refresh makes no event: the next one is the caller's BYE.
	if ev := ended(t, c); ev.End != sipgw.EndRemoteBye {
		t.Fatalf("end %v %d", ev.End, ev.Code)
	}
	uac.expectSuccess(t)
	assertIdle(t, g)
}

// TestUpdateInConfirmedCall: an UPDATE with an offer reaches the call's
// owner as a re-offer and its 200 carries the answer; an UPDATE without
// a body is a refresh, answered 200 with Session-Expires by the gateway.
func TestUpdateInConfirmedCall(t *testing.T) {
	noLeaks(t)
	k := startKamailio(t)
	g := newGateway(t, k, nil)
	uas := startSipp(t, "uas_update.xml", "")
	c := dial(t, g, uas.Port, sipgw.DialOptions{})
	answeredAcked(t, c)
	ev := expect(t, c, sipgw.EventReoffer)
	if !strings.Contains(string(ev.SDP), "a=sendonly") {
		t.Fatalf("reoffer sdp %q", ev.SDP)
	}
	if err := ev.Reoffer.Accept([]byte(strings.Replace(offer, "a=sendrecv", "a=recvonly", 1))); err != nil {
		t.Fatal(err)
	}
	// No ACK follows the 200 to an UPDATE: the answer is confirmed at once.
	expect(t, c, sipgw.EventConfirmed)
	expectInfoNext(t, c)
	hangUpClean(t, g, c, uas)
}

// TestWebSessionRefreshFails: the web caller of a call whose refresh is
// answered 481 gets shutdown with the reason; the refresh itself never
// reached it.
func TestWebSessionRefreshFails(t *testing.T) {
	k := startKamailio(t)
	w := startWebGateway(t, k, func(cfg *gateway.Config) { shortTimers(&cfg.SIP) })
	uas := startSipp(t, "uas_timer_481.xml", "")
	a := w.connect(t, "open@"+domain, nil)
	if _, err := a.StartCall(ctxT(t), uasTarget(uas), offer); err != nil {
		t.Fatal(err)
	}
	webAnswered(t, a)
	webExpect(t, a, client.CallEstablished)
	if ev := webExpect(t, a, client.CallEnded); !strings.Contains(ev.Reason, "481") {
		t.Fatalf("shutdown reason %q", ev.Reason)
	}
	uas.expectSuccess(t)
}

// TestWebSessionRefreshUnseen: the refresh of a web caller's call (an
// UPDATE) reaches SIP within the interval, and the web side sees nothing
// of it: its next call event is the DTMF SIPp sends after the refresh.
func TestWebSessionRefreshUnseen(t *testing.T) {
	k := startKamailio(t)
	w := startWebGateway(t, k, func(cfg *gateway.Config) { shortTimers(&cfg.SIP) })
	uas := startSipp(t, "uas_timer_update.xml", "")
	a := w.connect(t, "open@"+domain, nil)
	out, err := a.StartCall(ctxT(t), uasTarget(uas), offer)
	if err != nil {
		t.Fatal(err)
	}
	webAnswered(t, a)
	webExpect(t, a, client.CallEstablished)
	webExpect(t, a, client.CallDTMF)
	if err := out.Hangup(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	uas.expectSuccess(t)
}

// TestPeerRefreshByReinvite: the peer is the refresher and refreshes
// with a re-INVITE that repeats its SDP unchanged (RFC 3264 §8): the
// gateway answers it with the SDP the call runs on, and nothing reaches
// the call's owner, not even the ACK.
func TestPeerRefreshByReinvite(t *testing.T) {
	noLeaks(t)
	k := startKamailio(t)
	g := newGateway(t, k, func(cfg *sipgw.Config) {
		cfg.SessionTimers = sipgw.SessionTimerConfig{Expires: 30 * time.Second, MinSE: 2 * time.Second}
	})
	uas := startSipp(t, "uas_timer_peer.xml", "")
	c := dial(t, g, uas.Port, sipgw.DialOptions{})
	answeredAcked(t, c)
	expectInfoNext(t, c)
	hangUpClean(t, g, c, uas)
}
