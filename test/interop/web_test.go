package interop

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/client"
	"github.com/jsonrtc/jsonrtc/gateway"
	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/sipgw"
)

// These tests run the whole path: the Go client as the web side, an
// in-process gateway with the sip section configured, Kamailio as
// registrar and proxy, SIPp as the far SIP party.

// webGW is a gateway with SIP toward Kamailio, and its WebSocket URL.
type webGW struct {
	g        *gateway.Gateway
	url      string
	incoming chan string // identities of incoming SIP calls, as they arrive
}

func startWebGateway(t testing.TB, k *Kamailio, mods ...func(*gateway.Config)) *webGW {
	t.Helper()
	cfg := gateway.DefaultConfig()
	cfg.SIP = sipgw.Config{
		Listen:        sipgw.ListenConfig{UDP: "127.0.0.1:0"},
		Domain:        domain,
		OutboundProxy: "sip:" + k.Addr,
		Registrar:     "sip:" + k.Addr,
		UserAgent:     "jsonrtc-interop",
	}
	cfg.Calls.SIPHeaders = []string{"X-App"}
	for _, m := range mods {
		m(&cfg)
	}
	w := &webGW{incoming: make(chan string, 4)}
	g, err := gateway.New(cfg, &gateway.Options{Logger: newTestLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	g.OnIncomingSIPCallForTest(func(id string) { w.incoming <- id })
	srv := httptest.NewServer(g.Handler())
	w.g, w.url = g, "ws"+strings.TrimPrefix(srv.URL, "http")+"/ws/webrtc/test"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		// Nothing may be left of any call, on either side, before the
		// gateway closes (which would hang up leftovers and hide them).
		if err := g.WaitIdle(ctx); err != nil {
			t.Errorf("calls still in progress: %+v, SIP %+v", g.Stats(), g.SIPStats())
		}
		if st := g.SIPStats(); st.Calls != 0 || st.Dialogs != 0 {
			t.Errorf("SIP side left behind: %+v", st)
		}
		if err := g.Shutdown(ctx); err != nil {
			t.Errorf("gateway shutdown: %v\n%s", err, goroutines())
		}
		srv.Close()
		if st := g.Stats(); st.Calls != 0 || st.Sessions != 0 {
			t.Errorf("gateway left behind: %+v", st)
		}
		if st := g.SIPStats(); st.Registrations != 0 {
			t.Errorf("registrations left behind: %+v", st)
		}
	})
	return w
}

func newTestLogger(t testing.TB) *slog.Logger {
	level := slog.LevelWarn
	if os.Getenv("SIPGW_DEBUG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: level}))
}

// ha1Authorizer answers a connect challenge as Chameleon does: the
// challenge's realm with ha1 = MD5(user:realm:password).
func ha1Authorizer(user, pw string, calls *atomic.Int32) func(context.Context, json.RawMessage) (json.RawMessage, error) {
	return func(_ context.Context, ch json.RawMessage) (json.RawMessage, error) {
		calls.Add(1)
		var c struct {
			Scheme, Realm, Nonce string
		}
		if err := json.Unmarshal(ch, &c); err != nil || c.Realm == "" || c.Nonce == "" || c.Scheme != "Digest" {
			return nil, errors.New("unexpected challenge " + string(ch))
		}
		return json.Marshal(map[string]string{"username": user, "realm": c.Realm, "ha1": md5hex(user, c.Realm, pw)})
	}
}

// webCallToUAS starts Kamailio, a gateway and a SIPp UAS playing
// scenario, and places a call to the UAS from a web session.
// computedAuthorizer answers a challenge with a digest response it
// computes itself (never an ha1), counting its calls in n.
func computedAuthorizer(user, pw string, n *atomic.Int32) func(context.Context, json.RawMessage) (json.RawMessage, error) {
	return func(_ context.Context, raw json.RawMessage) (json.RawMessage, error) {
		n.Add(1)
		var ch struct{ Realm, Nonce, QOP, Method, URI string }
		if err := json.Unmarshal(raw, &ch); err != nil || ch.Method != "REGISTER" || ch.URI == "" {
			return nil, errors.New("unexpected challenge " + string(raw))
		}
		var qop []string
		if ch.QOP != "" {
			qop = strings.Split(ch.QOP, ",")
		}
		a := clientDigest(sipgw.Challenge{Realm: ch.Realm, Nonce: ch.Nonce, QOP: qop, Method: ch.Method, URI: ch.URI}, user, pw)
		return json.Marshal(map[string]string{"username": a.Username, "realm": a.Realm, "nonce": a.Nonce,
			"response": a.Response, "cnonce": a.CNonce, "nc": fmt.Sprintf("%08x", a.NC), "uri": a.URI, "qop": a.QOP})
	}
}

func webCallToUAS(t *testing.T, scenario string) (*client.Client, *client.Call, *Sipp) {
	t.Helper()
	return webCallToUASKeys(t, scenario)
}

// webCallToUASKeys is webCallToUAS with SIPp keywords (-key name value,
// [name] in the scenario), given as name, value pairs.
func webCallToUASKeys(t *testing.T, scenario string, keys ...string) (*client.Client, *client.Call, *Sipp) {
	t.Helper()
	var extra []string
	for i := 0; i+1 < len(keys); i += 2 {
		extra = append(extra, "-key", keys[i], keys[i+1])
	}
	k := startKamailio(t)
	w := startWebGateway(t, k)
	uas := startSipp(t, scenario, "", extra...)
	a := w.connect(t, "open@"+domain, nil)
	out, err := a.StartCall(ctxT(t), uasTarget(uas), offer)
	if err != nil {
		t.Fatal(err)
	}
	return a, out, uas
}

func (w *webGW) connect(t testing.TB, identity string, mod func(*client.Options)) *client.Client {
	t.Helper()
	o := client.Options{URL: w.url, Identity: identity, ReconnectMin: 10 * time.Millisecond, ReconnectMax: 100 * time.Millisecond}
	if mod != nil {
		mod(&o)
	}
	c, err := client.Dial(ctxT(t), o)
	if err != nil {
		t.Fatalf("connect %s: %v", identity, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// webNext returns c's next event of kind k, skipping others.
func webNext(t testing.TB, c *client.Client, k client.EventKind) client.Event {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case ev, ok := <-c.Events():
			if !ok {
				t.Fatalf("events closed waiting for %s", k)
			}
			if ev.Kind == k {
				return ev
			}
			if ev.Kind == client.EventClosed {
				t.Fatalf("closed waiting for %s: %v", k, ev.Err)
			}
		case <-timeout:
			t.Fatalf("no %s event", k)
		}
	}
}

// webExpect returns c's next call event, which must be want.
func webExpect(t testing.TB, c *client.Client, want client.CallEvent) client.Event {
	t.Helper()
	ev := webNext(t, c, client.EventCall)
	if ev.CallEvent != want {
		t.Fatalf("call event %v (code %d %s), want %v", ev.CallEvent, ev.Code, ev.Reason, want)
	}
	return ev
}

// webAnswered skips ringing and returns the answer.
func webAnswered(t testing.TB, c *client.Client) client.Event {
	t.Helper()
	for {
		ev := webNext(t, c, client.EventCall)
		switch ev.CallEvent {
		case client.CallRinging, client.CallEarlyMedia:
		case client.CallAnswered:
			if ev.Code != 200 || !strings.Contains(ev.SDP, "m=audio") {
				t.Fatalf("answer %d %q", ev.Code, ev.SDP)
			}
			return ev
		default:
			t.Fatalf("call event %v (code %d), want answered", ev.CallEvent, ev.Code)
		}
	}
}

func uasTarget(s *Sipp) string { return "uas-" + strconv.Itoa(s.Port) + "@" + domain }

func TestWebRegisterWithoutChallenge(t *testing.T) {
	k := startKamailio(t)
	w := startWebGateway(t, k)
	a := w.connect(t, "open@"+domain, nil)
	b := w.connect(t, "open@"+domain, nil)
	if st := w.g.SIPStats(); st.Registrations != 1 {
		t.Fatalf("registrations %+v, want one shared by both sessions", st)
	}
	// A socket blip keeps the binding.
	a.Kill()
	webNext(t, a, client.EventReconnecting)
	webNext(t, a, client.EventResumed)
	if st := w.g.SIPStats(); st.Registrations != 1 {
		t.Fatalf("registrations after a resume %+v", st)
	}
	_ = b
}

func TestWebRegisterChallenge(t *testing.T) {
	k := startKamailio(t)
	// A short back-off after carol's wrong password below, so that her
	// right one is soon tried.
	w := startWebGateway(t, k, func(c *gateway.Config) { c.Limits.Register.Backoff.Initial = 50 * time.Millisecond })
	// Without credentials the challenge ends the connect: 401 with
	// header.authenticate.
	_, err := client.Dial(ctxT(t), client.Options{URL: w.url, Identity: "alice@" + domain})
	var fe *client.FrameError
	if !errors.As(err, &fe) || fe.Code != 401 {
		t.Fatalf("connect without credentials: %v, want 401", err)
	}
	var n atomic.Int32
	a := w.connect(t, "alice@"+domain, func(o *client.Options) { o.Authorize = ha1Authorizer("alice", users["alice"], &n) })
	if n.Load() != 1 || a.Identity() != "alice@"+domain {
		t.Fatalf("authorized %d times as %s", n.Load(), a.Identity())
	}
	if st := w.g.SIPStats(); st.Registrations != 1 {
		t.Fatalf("registrations %+v", st)
	}
	// A wrong password is challenged again, and the client's retry
	// refused while carol backs off (before carol has a binding: later
	// sessions of an identity share it). One attempt: the client would
	// try a 503 again, challenged anew once the back-off is over.
	var m atomic.Int32
	_, err = client.Dial(ctxT(t), client.Options{URL: w.url, Identity: "carol@" + domain,
		Authorize: ha1Authorizer("carol", "wrong", &m), ConnectAttempts: 1})
	if !errors.As(err, &fe) || fe.Code != 503 || m.Load() != 2 {
		t.Fatalf("wrong password: %v after %d tries, want 503 after 2", err, m.Load())
	}
	// A client that computes the digest response itself (carol), once
	// the back-off is over.
	var cn atomic.Int32
	var c *client.Client
	until(t, "carol's back-off to end", func() bool {
		c, err = client.Dial(ctxT(t), client.Options{URL: w.url, Identity: "carol@" + domain,
			Authorize: computedAuthorizer("carol", users["carol"], &cn)})
		if errors.As(err, &fe) && fe.Code == 503 {
			return false
		}
		if err != nil {
			t.Fatal(err)
		}
		return true
	})
	t.Cleanup(func() { c.Close() })
	if cn.Load() != 1 || c.Identity() != "carol@"+domain {
		t.Fatalf("carol authorized %d times", cn.Load())
	}
	if st := w.g.SIPStats(); st.Registrations != 2 {
		t.Fatalf("registrations %+v", st)
	}
}

func TestWebCallAnswered(t *testing.T) {
	a, out, uas := webCallToUAS(t, "uas_answer.xml")
	// The 180 may be missing: sipgo drops a provisional response that its
	// INVITE transaction has not handed over when the 200 ends it.
	if ev := webAnswered(t, a); ev.Code != 200 {
		t.Fatalf("answer %d", ev.Code)
	}
	webExpect(t, a, client.CallEstablished) // complete -> ACK
	if err := out.Hangup(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	uas.expectSuccess(t)
}

func TestWebCallBusy(t *testing.T) {
	k := startKamailio(t)
	w := startWebGateway(t, k)
	uas := startSipp(t, "uas_busy.xml", "")
	a := w.connect(t, "open@"+domain, nil)
	if _, err := a.StartCall(ctxT(t), uasTarget(uas), offer); err != nil {
		t.Fatal(err)
	}
	if ev := webExpect(t, a, client.CallFailed); ev.Code != 486 {
		t.Fatalf("failed %d", ev.Code)
	}
	uas.expectSuccess(t)
}

func TestWebCallCancelled(t *testing.T) {
	a, out, uas := webCallToUAS(t, "uas_noanswer.xml")
	webExpect(t, a, client.CallRinging)
	if err := out.Hangup(ctxT(t)); err != nil { // shutdown before the answer: CANCEL
		t.Fatal(err)
	}
	uas.expectSuccess(t)
}

func TestWebCallFarEndBye(t *testing.T) {
	k := startKamailio(t)
	w := startWebGateway(t, k)
	uas := startSipp(t, "uas_farbye.xml", "")
	a := w.connect(t, "open@"+domain, nil)
	if _, err := a.StartCall(ctxT(t), uasTarget(uas), offer); err != nil {
		t.Fatal(err)
	}
	webAnswered(t, a)
	webExpect(t, a, client.CallEstablished)
	webExpect(t, a, client.CallEnded)
	uas.expectSuccess(t)
}

func TestWebCallEarlyMedia(t *testing.T) {
	a, out, uas := webCallToUAS(t, "uas_early.xml")
	if ev := webExpect(t, a, client.CallEarlyMedia); ev.Code != 183 || !strings.Contains(ev.SDP, "m=audio") {
		t.Fatalf("early media %d %q", ev.Code, ev.SDP)
	}
	webAnswered(t, a)
	webExpect(t, a, client.CallEstablished)
	if err := out.Hangup(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	uas.expectSuccess(t)
}

func TestWebCall100relPrack(t *testing.T) {
	a, out, uas := webCallToUAS(t, "uas_100rel.xml")
	if ev := webExpect(t, a, client.CallEarlyMedia); ev.Code != 183 {
		t.Fatalf("early media %d", ev.Code)
	}
	if err := out.Prack(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if ev := webExpect(t, a, client.CallPrack); ev.Code != 0 {
		t.Fatalf("PRACK answered with response_code %d", ev.Code)
	}
	webAnswered(t, a)
	webExpect(t, a, client.CallEstablished)
	if err := out.Hangup(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	uas.expectSuccess(t)
}

func TestWebCallReinviteHoldResume(t *testing.T) {
	a, out, uas := webCallToUAS(t, "uas_reinvite.xml")
	webAnswered(t, a)
	webExpect(t, a, client.CallEstablished)
	hold := strings.Replace(offer, "a=sendrecv", "a=sendonly", 1)
	for _, sdp := range []string{hold, offer} {
		if err := out.ReOffer(ctxT(t), sdp); err != nil {
			t.Fatal(err)
		}
		if ev := webExpect(t, a, client.CallReOfferAnswered); !strings.Contains(ev.SDP, "m=audio") || ev.Code != 200 {
			t.Fatalf("re-offer answer %d %q", ev.Code, ev.SDP)
		}
	}
	// The far end puts us on hold: a re-INVITE becomes a re-offer; our
	// answer becomes its 200, its ACK our complete.
	ev := webExpect(t, a, client.CallReOffer)
	if !strings.Contains(ev.SDP, "a=sendonly") {
		t.Fatalf("re-offer %q", ev.SDP)
	}
	if err := out.Answer(ctxT(t), strings.Replace(offer, "a=sendrecv", "a=recvonly", 1)); err != nil {
		t.Fatal(err)
	}
	webExpect(t, a, client.CallEstablished)
	if err := out.Hangup(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	uas.expectSuccess(t)
}

// alice is registered with her digest secret answered by the client.
func (w *webGW) alice(t *testing.T, mod func(*client.Options)) *client.Client {
	var n atomic.Int32
	return w.connect(t, "alice@"+domain, func(o *client.Options) {
		o.Authorize = ha1Authorizer("alice", users["alice"], &n)
		if mod != nil {
			mod(o)
		}
	})
}

func TestWebIncomingAnswered(t *testing.T) {
	k := startKamailio(t)
	w := startWebGateway(t, k)
	a := w.alice(t, nil)
	b := w.alice(t, nil) // a second session of alice: forked, then cancelled
	uac := startSipp(t, "uac_call.xml", k.Addr)
	in := webNext(t, a, client.EventIncomingCall)
	if !strings.HasPrefix(in.Call.Peer(), "bob@") || !strings.Contains(in.SDP, "m=audio") {
		t.Fatalf("incoming from %q with %q", in.Call.Peer(), in.SDP)
	}
	inB := webNext(t, b, client.EventIncomingCall)
	if err := in.Call.Ring(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if err := in.Call.Answer(ctxT(t), offer); err != nil {
		t.Fatal(err)
	}
	if ev := webExpect(t, b, client.CallEnded); ev.Call != inB.Call {
		t.Fatal("shutdown for another call")
	}
	webExpect(t, a, client.CallEstablished) // ACK -> complete
	webExpect(t, a, client.CallEnded)       // BYE -> shutdown
	uac.expectSuccess(t)
}

func TestWebIncomingDeclined(t *testing.T) {
	k := startKamailio(t)
	w := startWebGateway(t, k)
	a := w.alice(t, nil)
	uac := startSipp(t, "uac_declined.xml", k.Addr)
	in := webNext(t, a, client.EventIncomingCall)
	if err := in.Call.Decline(ctxT(t), 603); err != nil {
		t.Fatal(err)
	}
	uac.expectSuccess(t)
}

// An INVITE that arrives while the web socket is down waits in the
// session and rings once the client resumed.
func TestWebIncomingWhileSocketDown(t *testing.T) {
	k := startKamailio(t)
	w := startWebGateway(t, k)
	var blocked atomic.Bool
	gate := make(chan struct{})
	a := w.alice(t, func(o *client.Options) {
		o.NetDial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			if blocked.Load() {
				select {
				case <-gate:
				case <-ctx.Done():
					return nil, ctx.Err()
				}
			}
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}
	})
	blocked.Store(true)
	a.Kill()
	webNext(t, a, client.EventReconnecting)
	uac := startSipp(t, "uac_call.xml", k.Addr)
	select {
	case id := <-w.incoming:
		if id != "alice@"+domain {
			t.Fatalf("incoming call for %s", id)
		}
	case <-ctxT(t).Done():
		t.Fatal("no INVITE reached the gateway")
	}
	close(gate)
	resumed := time.Now()
	webNext(t, a, client.EventResumed)
	in := webNext(t, a, client.EventIncomingCall)
	if err := in.Call.Answer(ctxT(t), offer); err != nil {
		t.Fatal(err)
	}
	webExpect(t, a, client.CallEstablished)
	if d := time.Since(resumed); d > 5*time.Second {
		t.Errorf("answered %v after the resume", d)
	}
	webExpect(t, a, client.CallEnded)
	uac.expectSuccess(t)
}

// A socket drop mid-call does not touch the SIP dialog; the far end's BYE
// that arrives meanwhile reaches the web side after the resume.
func TestWebSocketDropMidCall(t *testing.T) {
	k := startKamailio(t)
	w := startWebGateway(t, k)
	uas := startSipp(t, "uas_pausebye.xml", "")
	var blocked atomic.Bool
	gate := make(chan struct{})
	a := w.connect(t, "open@"+domain, func(o *client.Options) {
		o.NetDial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			if blocked.Load() {
				select {
				case <-gate:
				case <-ctx.Done():
					return nil, ctx.Err()
				}
			}
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}
	})
	if _, err := a.StartCall(ctxT(t), uasTarget(uas), offer); err != nil {
		t.Fatal(err)
	}
	webAnswered(t, a)
	webExpect(t, a, client.CallEstablished)
	// The gateway handles frames in order: once a start sent after our
	// complete is refused (404, at once), the complete reached it and
	// became the ACK.
	if _, err := a.StartCall(ctxT(t), "nobody@web.example", offer); err != nil {
		t.Fatal(err)
	}
	if ev := webExpect(t, a, client.CallFailed); ev.Code != 404 {
		t.Fatalf("call to nobody: %d", ev.Code)
	}
	blocked.Store(true)
	a.Kill()
	webNext(t, a, client.EventReconnecting)
	// SIPp ends after its BYE was answered: the dialog outlived the
	// socket (a BYE of ours would have failed its scenario).
	uas.expectSuccess(t)
	close(gate)
	webNext(t, a, client.EventResumed)
	webExpect(t, a, client.CallEnded)
}

// An unanswered SIP call ends after the gateway's ring timeout: 480 to
// the web caller, CANCEL to the far end.
func TestWebCallRingTimeout(t *testing.T) {
	k := startKamailio(t)
	w := startWebGateway(t, k, func(c *gateway.Config) { c.Calls.RingTimeout = gateway.Duration(2 * time.Second) })
	uas := startSipp(t, "uas_noanswer.xml", "")
	a := w.connect(t, "open@"+domain, nil)
	if _, err := a.StartCall(ctxT(t), uasTarget(uas), offer); err != nil {
		t.Fatal(err)
	}
	webExpect(t, a, client.CallRinging)
	if ev := webExpect(t, a, client.CallFailed); ev.Code != 480 {
		t.Fatalf("failed %d", ev.Code)
	}
	uas.expectSuccess(t)
}

// DTMF becomes INFO application/dtmf-relay, a transfer becomes REFER.
func TestWebCallDTMFAndTransfer(t *testing.T) {
	k := startKamailio(t)
	w := startWebGateway(t, k)
	uas := startSipp(t, "uas_dtmf.xml", "")
	a := w.connect(t, "open@"+domain, nil)
	out, err := a.StartCall(ctxT(t), uasTarget(uas), offer, protocol.Ext{Name: "X-App", Value: "demo"})
	if err != nil {
		t.Fatal(err)
	}
	webAnswered(t, a)
	webExpect(t, a, client.CallEstablished)
	if err := out.DTMF(ctxT(t), "5", 100); err != nil {
		t.Fatal(err)
	}
	if code, err := out.Transfer(ctxT(t), "sip:carol@example.com"); err != nil || code != 202 {
		t.Fatalf("transfer: %d %v", code, err)
	}
	if err := out.Hangup(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	uas.expectSuccess(t)
}

// TestWebCallInjectionRefused: targets that try to smuggle SIP syntax
// (parameters, headers, a second address, CR/LF) never reach the SIP
// network: the call fails with 400 on the web side.
func TestWebCallInjectionRefused(t *testing.T) {
	k := startKamailio(t)
	w := startWebGateway(t, k)
	a := w.connect(t, "open@"+domain, nil)
	for _, target := range []string{
		"sip:bob@" + domain + ">;tag=x",
		"bob@" + domain + ";transport=tcp",
		"sip:bob@" + domain + "?Route=%3Csip:evil.example%3E",
		"bob@" + domain + "\r\nVia: SIP/2.0/UDP evil.example",
		"\"bob\" <sip:bob@" + domain + ">",
		"bob@evil.example,sip:carol@" + domain,
	} {
		if _, err := a.StartCall(ctxT(t), target, offer); err != nil {
			t.Fatal(err)
		}
		if ev := webExpect(t, a, client.CallFailed); ev.Code != 400 && ev.Code != 404 {
			t.Fatalf("target %q: failed with %d, want 400", target, ev.Code)
		}
	}
}
