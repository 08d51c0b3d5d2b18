package gateway

import (
	"context"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/push"
	"github.com/jsonrtc/jsonrtc/store"
)

// pushService is an RFC 8030 push service written for the test: it
// decrypts what it gets for its one subscription, as the browser would.
type pushService struct {
	url    string
	key    *ecdh.PrivateKey
	auth   []byte
	got    chan []byte
	status atomic.Int32 // the answer; 0: 201
}

func newPushService(t *testing.T) *pushService {
	t.Helper()
	k, _ := ecdh.P256().GenerateKey(rand.Reader)
	ps := &pushService{key: k, auth: make([]byte, 16), got: make(chan []byte, 8)}
	rand.Read(ps.auth)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.Header.Get("Authorization"), "vapid t=") || r.Header.Get("Content-Encoding") != "aes128gcm" {
			http.Error(w, "not a Web Push request", http.StatusBadRequest)
			return
		}
		body, _ := io.ReadAll(r.Body)
		plain, err := push.Decrypt(body, ps.key.Bytes(), ps.auth)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		ps.got <- plain
		if c := ps.status.Load(); c != 0 {
			w.WriteHeader(int(c))
			return
		}
		w.WriteHeader(http.StatusCreated)
	}))
	t.Cleanup(srv.Close)
	ps.url = srv.URL + "/push/sub-1"
	return ps
}

func (ps *pushService) channel() *protocol.PushChannel {
	b := base64.RawURLEncoding
	return &protocol.PushChannel{Type: protocol.PushWebPush, Endpoint: ps.url,
		Keys: protocol.PushKeys{P256DH: b.EncodeToString(ps.key.PublicKey().Bytes()), Auth: b.EncodeToString(ps.auth)}}
}

func withPush(t *testing.T) func(*Config) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := k.Bytes()
	return func(c *Config) {
		c.Push = PushConfig{VAPIDPrivateKey: base64.RawURLEncoding.EncodeToString(raw), Subject: "mailto:ops@example.com",
			AllowedEndpoints: []string{"127.0.0.1:*"}, StandbyTimeout: Duration(time.Hour)}
	}
}

func standby(ch *protocol.PushChannel) *protocol.Frame {
	return &protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageRegister, CorrelationID: "c9"},
		Header:  protocol.Header{Action: protocol.ActionStandby},
		Payload: protocol.EncodePayload(protocol.StandbyPayload{Push: ch}),
	}
}

// socketLost signals each socket loss of g (not blocking g: the signal is
// dropped while one waits unread).
func socketLost(g *Gateway) chan struct{} {
	lost := make(chan struct{}, 1)
	g.onSocketLost = func(*Session) {
		select {
		case lost <- struct{}{}:
		default:
		}
	}
	return lost
}

// asleep connects identity, puts it in standby with ch (checking the
// answer: 200, the standby timeout of withPush) and closes its socket.
func asleep(t *testing.T, g *Gateway, url, identity string, ch *protocol.PushChannel) *peer {
	t.Helper()
	lost := socketLost(g)
	p := dial(t, url, protocol.SubprotocolJSONrtc, nil)
	p.connect(identity)
	p.send(standby(ch))
	if r := p.read(); r.Control.Type != protocol.TypeResponse || r.Header.Action != protocol.ActionStandby || r.Header.Expiry != 3600 {
		t.Fatalf("standby answer %s", r.Marshal())
	}
	p.c.CloseNow()
	<-lost
	return p
}

// TestStandbyWakesWithWebPush: a client registers its Web Push
// subscription and closes its socket; a message for it sends one push
// (only what a notification needs: kind and sender), which the push
// service decrypts; the client resumes, past session.resume_timeout, and
// gets the message.
func TestStandbyWakesWithWebPush(t *testing.T) {
	ps := newPushService(t)
	g, url := newGateway(t, func(c *Config) {
		withPush(t)(c)
		c.Session.ResumeTimeout = Duration(time.Second)
	})
	bob := asleep(t, g, url, "bob@example.com", ps.channel())

	alice := dial(t, url, protocol.SubprotocolJSONrtc, nil)
	alice.connect("alice@example.com")
	alice.send(message("bob@example.com", "wake up"))
	alice.send(message("bob@example.com", "again"))
	var ev struct{ Kind, From string }
	select {
	case p := <-ps.got:
		if err := json.Unmarshal(p, &ev); err != nil || ev.Kind != "message" || ev.From != "alice@example.com" || strings.Contains(string(p), "wake up") {
			t.Fatalf("push payload %s", p)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no push")
	}
	// Past session.resume_timeout (1 s): the standby keeps the session.
	time.Sleep(1500 * time.Millisecond) // the timeout being tested has no event to wait on
	b2 := resumeWS(t, url, "bob@example.com", bob.sid, bob.seq, bob.last)
	for _, want := range []string{"wake up", "again"} {
		f := b2.read()
		var m protocol.MessagePayload
		protocol.DecodePayload(f.Payload, &m)
		if f.Header.Action != protocol.ActionSend || m.Body != want {
			t.Fatalf("after the resume: %s", f.Marshal())
		}
	}
	if m := scrape(t, g); !strings.Contains(m, `jsonrtc_pushes_total{channel="webpush",outcome="ok"} 1`+"\n") {
		t.Errorf("one push counted:\n%s", m[strings.Index(m, "jsonrtc_pushes"):][:200])
	}
	select {
	case p := <-ps.got:
		t.Fatalf("a second push for the same standby: %s", p)
	default:
	}
}

// TestStandbyRefusals: a channel the gateway cannot or must not use is
// refused with 400 (another host than the allowed push services, plain
// http elsewhere than loopback, bad keys), and standby without push
// configured with 405.
func TestStandbyRefusals(t *testing.T) {
	ps := newPushService(t)
	_, url := newGateway(t, withPush(t))
	a := dial(t, url, protocol.SubprotocolJSONrtc, nil)
	a.connect("alice@example.com")
	for name, mod := range map[string]func(*protocol.PushChannel){
		"foreign host":  func(c *protocol.PushChannel) { c.Endpoint = "https://attacker.example/x" },
		"plain http":    func(c *protocol.PushChannel) { c.Endpoint = "http://fcm.googleapis.com/x" },
		"bad key":       func(c *protocol.PushChannel) { c.Keys.P256DH = "AAAA" },
		"no type":       func(c *protocol.PushChannel) { c.Type = "" },
		"no webhook":    func(c *protocol.PushChannel) { c.Type, c.Token = protocol.PushWebhook, "tok" },
		"internal host": func(c *protocol.PushChannel) { c.Endpoint = "https://169.254.169.254/latest" },
	} {
		ch := ps.channel()
		mod(ch)
		a.send(standby(ch))
		if r := a.read(); r.Control.Type != protocol.TypeError || r.Header.ErrorCode != protocol.CodeBadRequest {
			t.Errorf("%s: %s", name, r.Marshal())
		}
	}
	_, plain := newGateway(t, nil)
	b := dial(t, plain, protocol.SubprotocolJSONrtc, nil)
	b.connect("bob@example.com")
	b.send(standby(ps.channel()))
	if r := b.read(); r.Control.Type != protocol.TypeError || r.Header.ErrorCode != protocol.CodeMethodNotAllowed {
		t.Errorf("standby without push: %s", r.Marshal())
	}
}

// TestPushConfigValidate names the bad keys.
func TestPushConfigValidate(t *testing.T) {
	for key, mod := range map[string]func(*Config){
		"push.vapid_private_key": func(c *Config) { c.Push.VAPIDPrivateKey, c.Push.Subject = "bm90IGEga2V5", "mailto:a@b" },
		"push.subject":           func(c *Config) { withPush(t)(c); c.Push.Subject = "ops" },
		"push.webhook":           func(c *Config) { c.Push.Webhook.URL = "https://relay.example/" },
		"push.webhook.secret":    func(c *Config) { c.Push.Webhook = WebhookConfig{URL: "https://relay.example/", Secret: "short"} },
		"push.standby_timeout":   func(c *Config) { withPush(t)(c); c.Push.StandbyTimeout = Duration(time.Millisecond) },
		"push.per_identity":      func(c *Config) { withPush(t)(c); c.Push.PerIdentity = -1 },
		"push.vapid_key_file":    func(c *Config) { withPush(t)(c); c.Push.VAPIDKeyFile = "vapid.key" },
	} {
		c := DefaultConfig()
		mod(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), key+":") {
			t.Errorf("%s: %v", key, err)
		}
	}
}

// TestStandbyWakesWithWebhook: a native app's session in standby is
// woken through the application's push relay: a signed POST naming the
// event, the caller, the identity and the device's token; the call
// waits, retained, for the app to resume and ring.
func TestStandbyWakesWithWebhook(t *testing.T) {
	secret := "0123456789abcdef-relay"
	got := make(chan []byte, 4)
	relay := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := push.VerifyWebhook([]byte(secret), r.Header, body, time.Now(), time.Minute); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		got <- body
	}))
	t.Cleanup(relay.Close)
	g, url := newGateway(t, func(c *Config) { c.Push.Webhook = WebhookConfig{URL: relay.URL, Secret: secret} })
	// (The default standby timeout, 1 h, is what asleep checks.)
	bob := asleep(t, g, url, "bob@example.com", &protocol.PushChannel{Type: protocol.PushWebhook, Token: "device-1"})
	alice := dial(t, url, protocol.SubprotocolJSONrtc, nil)
	alice.connect("alice@example.com")
	alice.send(&protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageCall, SubsessionID: "call-1", CorrelationID: "c2"},
		Header:  protocol.Header{Action: protocol.ActionStart, Initiator: "alice@example.com", Target: "bob@example.com"},
		Payload: sdpPayload(sdpOffer),
	})
	select {
	case body := <-got:
		var ev struct{ Kind, From, Identity, Token string }
		if err := json.Unmarshal(body, &ev); err != nil || ev != (struct{ Kind, From, Identity, Token string }{"call", "alice@example.com", "bob@example.com", "device-1"}) {
			t.Fatalf("webhook body %s", body)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no webhook")
	}
	b2 := resumeWS(t, url, "bob@example.com", bob.sid, bob.seq, bob.last)
	expect(t, b2.read(), protocol.TypeRequest, protocol.ActionStart)
}

// TestStandbyPushesWhatReachedTheClosingSocket: a message that reaches a
// client between its standby and the close of its socket may never be
// read: it is pushed once the socket goes.
func TestStandbyPushesWhatReachedTheClosingSocket(t *testing.T) {
	ps := newPushService(t)
	g, url := newGateway(t, withPush(t))
	lost := socketLost(g)
	bob := dial(t, url, protocol.SubprotocolJSONrtc, nil)
	bob.connect("bob@example.com")
	bob.send(standby(ps.channel()))
	expect(t, bob.read(), protocol.TypeResponse, protocol.ActionStandby)
	alice := dial(t, url, protocol.SubprotocolJSONrtc, nil)
	alice.connect("alice@example.com")
	alice.send(message("bob@example.com", "just in time"))
	expect(t, bob.read(), protocol.TypeRequest, protocol.ActionSend) // on the socket, but bob sleeps
	select {
	case p := <-ps.got:
		t.Fatalf("a push while the socket is up: %s", p)
	default:
	}
	bob.c.CloseNow()
	<-lost
	select {
	case p := <-ps.got:
		if !strings.Contains(string(p), `"kind":"message"`) {
			t.Fatalf("push %s", p)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no push for the message the closing socket got")
	}
}

// pushOutcomes reports the outcome of each push of g (set before the
// gateway pushes anything).
func pushOutcomes(g *Gateway) chan string {
	out := make(chan string, 8)
	g.onPushed = func(o string) { out <- o }
	return out
}

// sessionsOf returns identity's sessions on g.
func sessionsOf(g *Gateway, identity string) []*Session {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]*Session(nil), g.byIdentity[identity]...)
}

// TestStandbyPushRefusesInternalAddressAtDial: a name the allow-list
// admits but that resolves to loopback is not dialed (SSRF): the push
// fails, counted, and the push service hears nothing.
func TestStandbyPushRefusesInternalAddressAtDial(t *testing.T) {
	ps := newPushService(t)
	g, url := newGateway(t, func(c *Config) {
		withPush(t)(c)
		c.Push.AllowedEndpoints = []string{"localhost:*"}
	})
	ch := ps.channel()
	ch.Endpoint = strings.Replace(ch.Endpoint, "127.0.0.1", "localhost", 1)
	outcomes := pushOutcomes(g)
	asleep(t, g, url, "bob@example.com", ch)
	alice := dial(t, url, protocol.SubprotocolJSONrtc, nil)
	alice.connect("alice@example.com")
	alice.send(message("bob@example.com", "wake up"))
	if o := <-outcomes; o != "error" {
		t.Fatalf("outcome %s", o)
	}
	select {
	case p := <-ps.got:
		t.Fatalf("the push service behind loopback got %s", p)
	default:
	}
}

// TestStandbyForgetsGoneSubscription: a push service answering 410
// (RFC 8030 §7.3) ends the standby: the session no longer sleeps (a SIP
// caller is not told to wait for it).
func TestStandbyForgetsGoneSubscription(t *testing.T) {
	ps := newPushService(t)
	ps.status.Store(http.StatusGone)
	g, url := newGateway(t, withPush(t))
	outcomes := pushOutcomes(g)
	asleep(t, g, url, "bob@example.com", ps.channel())
	bob := sessionsOf(g, "bob@example.com")[0]
	if !bob.Asleep() {
		t.Fatal("bob does not sleep")
	}
	alice := dial(t, url, protocol.SubprotocolJSONrtc, nil)
	alice.connect("alice@example.com")
	alice.send(message("bob@example.com", "wake up"))
	<-ps.got
	if o := <-outcomes; o != "gone" {
		t.Fatalf("outcome %s", o)
	}
	if bob.Asleep() {
		t.Fatal("the gone subscription is kept")
	}
}

// TestStandbyPushRatePerIdentity: push.per_identity bounds the pushes an
// identity gets a minute over all its sessions; the one over is counted,
// not sent.
func TestStandbyPushRatePerIdentity(t *testing.T) {
	ps := newPushService(t)
	g, url := newGateway(t, func(c *Config) {
		withPush(t)(c)
		c.Push.PerIdentity = 1
	})
	outcomes := pushOutcomes(g)
	asleep(t, g, url, "bob@example.com", ps.channel())
	asleep(t, g, url, "bob@example.com", ps.channel())
	alice := dial(t, url, protocol.SubprotocolJSONrtc, nil)
	alice.connect("alice@example.com")
	alice.send(message("bob@example.com", "wake up"))
	<-ps.got
	got := map[string]bool{<-outcomes: true, <-outcomes: true}
	if !got["ok"] || !got["rate_limited"] {
		t.Fatalf("outcomes %v, want one ok and one rate_limited", got)
	}
	select {
	case p := <-ps.got:
		t.Fatalf("a push over push.per_identity: %s", p)
	default:
	}
}

// TestStandbyAcrossRestart: the session record keeps the standby, so a
// client asleep when its gateway restarts is restored asleep (a SIP
// caller hears ringing while it is woken; push.standby_timeout, not
// session.resume_timeout), and a message for it after the restart still
// pushes.
func TestStandbyAcrossRestart(t *testing.T) {
	ps := newPushService(t)
	st := store.NewMemory()
	mod := withPush(t) // one VAPID key for both runs
	g1, url1 := newGatewayOpts(t, mod, Options{Store: st})
	bob := asleep(t, g1, url1, "bob@example.com", ps.channel())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := g1.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	g2, url2 := newGatewayOpts(t, mod, Options{Store: st})
	s := g2.lookup(bob.sid)
	if s == nil || !s.Asleep() {
		t.Fatalf("restored session %v: not asleep", s)
	}
	s.mu.Lock()
	timeout := s.resumeTimeout()
	s.mu.Unlock()
	if timeout != time.Hour {
		t.Fatalf("restored with a resume timeout of %s", timeout)
	}
	alice := dial(t, url2, protocol.SubprotocolJSONrtc, nil)
	alice.connect("alice@example.com")
	alice.send(message("bob@example.com", "good morning"))
	select {
	case p := <-ps.got:
		if string(p) != `{"kind":"message","from":"alice@example.com"}` {
			t.Fatalf("push %s", p)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no push after the restart")
	}
}

// TestVAPIDKeyFile: push.vapid_key_file makes a key the first time,
// 0600, and gives the same key at the next start (browsers' subscriptions
// are bound to it); a file others may read is refused.
func TestVAPIDKeyFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "vapid.key")
	p1 := PushConfig{VAPIDKeyFile: file, Subject: "mailto:ops@example.com"}
	if err := p1.LoadVAPIDKeyFile(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(file)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file %v, %v", fi.Mode(), err)
	}
	pub1, err := p1.VAPIDPublicKey()
	if err != nil || pub1 == "" {
		t.Fatalf("public key %q, %v", pub1, err)
	}
	cfg := DefaultConfig()
	cfg.Push = PushConfig{VAPIDKeyFile: file, Subject: "mailto:ops@example.com"}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	g, err := New(cfg, nil) // New loads it too
	if err != nil {
		t.Fatal(err)
	}
	defer g.Shutdown(context.Background())
	p2 := cfg.Push
	if err := p2.LoadVAPIDKeyFile(); err != nil {
		t.Fatal(err)
	}
	if pub2, _ := p2.VAPIDPublicKey(); pub2 != pub1 {
		t.Fatal("another key at the second start")
	}
	os.Chmod(file, 0o644)
	p3 := PushConfig{VAPIDKeyFile: file}
	if err := p3.LoadVAPIDKeyFile(); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("a key file others read: %v", err)
	}
}
