package interop

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/jsonrtc/jsonrtc/gateway"
	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/sipgw"
)

// These tests count the REGISTERs that reach Kamailio (started with
// logRequests) while web clients connect with wrong credentials or in a
// loop: the gateway must neither flood the registrar nor let a client
// guess passwords through it.

// seenRegisters counts the REGISTERs from user that Kamailio received so
// far: distinct transactions (Call-ID and CSeq, so that a UDP
// retransmission counts once), and how many of them carried
// Authorization.
func (k *Kamailio) seenRegisters(t *testing.T, user string) (all, authed int) {
	t.Helper()
	seen := map[string]bool{}
	for line := range strings.SplitSeq(k.logged(t), "\n") {
		_, rest, ok := strings.Cut(line, "SEEN REGISTER ")
		f := strings.Fields(rest)
		if !ok || len(f) != 4 || f[0] != user || seen[f[1]+" "+f[2]] {
			continue
		}
		seen[f[1]+" "+f[2]] = true
		all++
		if f[3] == "auth" {
			authed++
		}
	}
	return all, authed
}

// logged returns Kamailio's log (started with logRequests) once it has
// every request sent before the call: Kamailio's one UDP worker logs
// requests in the order they came, so once the line of an OPTIONS sent
// now is there, so is every earlier REGISTER's.
func (k *Kamailio) logged(t *testing.T) string {
	t.Helper()
	before := strings.Count(k.proc.out.String(), "SEEN OPTIONS")
	if !optionsPing(k.Addr, 5*time.Second) {
		t.Fatal("kamailio does not answer OPTIONS")
	}
	until(t, "Kamailio to log the OPTIONS", func() bool {
		return strings.Count(k.proc.out.String(), "SEEN OPTIONS") > before
	})
	return k.proc.out.String()
}

// A wrong password the gateway holds (sip.credentials) is sent once: the
// registrar's second challenge is not stale, so sending the same
// credentials again would be a second guess with the same password (RFC
// 3261 section 22.2). Before the fix: three REGISTERs, two with them.
func TestRegisterRejectedCredentialsSentOnce(t *testing.T) {
	k := startKamailioWith(t, 1, true)
	g := newGateway(t, k, func(c *sipgw.Config) {
		c.Credentials = map[string]sipgw.Credential{"alice@" + domain: {Username: "alice", Password: "wrong"}}
	})
	_, err := g.Register(ctxT(t), "alice@"+domain, nil)
	if !errors.Is(err, sipgw.ErrCredentialsRejected) || sipgw.ResponseCode(err) != 401 {
		t.Fatalf("wrong gateway password: %v, want credentials rejected (401)", err)
	}
	if all, authed := k.seenRegisters(t, "alice"); all != 2 || authed != 1 {
		t.Fatalf("registrar saw %d REGISTERs, %d with credentials; want 2 and 1", all, authed)
	}
	// The web client's HA1: rejected once, and its new challenge is
	// handed back for the client's next connect.
	_, err = g.Register(ctxT(t), "carol@"+domain, &sipgw.RegisterOptions{
		Authorization: &sipgw.Authorization{Username: "carol", Realm: domain, HA1: md5hex("carol", domain, "wrong")},
	})
	var ce *sipgw.ChallengeError
	if !errors.As(err, &ce) || !ce.Rejected || !errors.Is(err, sipgw.ErrCredentialsRejected) || ce.Challenge.Nonce == "" {
		t.Fatalf("wrong client HA1: %v, want a rejected challenge", err)
	}
	if all, authed := k.seenRegisters(t, "carol"); all != 2 || authed != 1 {
		t.Fatalf("registrar saw %d REGISTERs, %d with credentials; want 2 and 1", all, authed)
	}
	if st := g.Stats(); st.Registrations != 0 || st.Transactions != 0 {
		t.Fatalf("left behind %+v", st)
	}
}

// rawConn is a WebSocket that speaks JSONrtc frames by hand, as an
// attacker's script would.
type rawConn struct {
	c   *websocket.Conn
	seq uint64
}

func dialRaw(t *testing.T, url string) *rawConn {
	t.Helper()
	c, _, err := websocket.Dial(ctxT(t), url, &websocket.DialOptions{Subprotocols: []string{protocol.SubprotocolJSONrtc}})
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadLimit(1 << 20)
	t.Cleanup(func() { c.CloseNow() })
	return &rawConn{c: c}
}

// connectFrame is a new-session connect of identity, with authorization
// when not nil.
func (r *rawConn) connectFrame(identity string, authorization any) []byte {
	r.seq++
	h := map[string]any{"action": "connect", "initiator": identity}
	if authorization != nil {
		h["authorization"] = authorization
	}
	b, _ := json.Marshal(map[string]any{
		"control": map[string]any{"type": "request", "package_type": "register", "sequence": r.seq, "version": "1.0"},
		"header":  h,
	})
	return b
}

// connect sends one connect and returns the answer.
func (r *rawConn) connect(t *testing.T, identity string, authorization any) *protocol.Frame {
	t.Helper()
	if err := r.c.Write(ctxT(t), websocket.MessageText, r.connectFrame(identity, authorization)); err != nil {
		t.Fatal(err)
	}
	return r.read(t, ctxT(t))
}

func (r *rawConn) read(t *testing.T, ctx context.Context) *protocol.Frame {
	t.Helper()
	_, data, err := r.c.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	f, err := protocol.Decode(data)
	if err != nil {
		t.Fatalf("%v: %s", err, data)
	}
	return f
}

// retryAfter returns header.retry_after of a refused connect.
func retryAfter(t *testing.T, f *protocol.Frame) string {
	t.Helper()
	e, ok := f.Header.ExtValue("retry_after")
	if !ok || e.Kind != protocol.ExtNumber {
		t.Fatalf("refusal without retry_after: %+v", f.Header)
	}
	return e.Value
}

// metric returns the value of the sample line of name{labels} on the
// gateway's metrics listener (its handler, served here in-process).
func (w *webGW) metric(t *testing.T, sample string) string {
	t.Helper()
	rec := httptest.NewRecorder()
	w.g.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for line := range strings.SplitSeq(rec.Body.String(), "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			return v
		}
	}
	t.Fatalf("no %s in /metrics", sample)
	return ""
}

// A socket that sends connects in a loop makes at most per_socket's
// burst of REGISTERs; the others are refused with 503 and retry_after,
// without contacting SIP. Before the fix every connect was a REGISTER.
func TestWebRegisterLoopPerSocket(t *testing.T) {
	k := startKamailioWith(t, 1, true)
	w := startWebGateway(t, k)
	r := dialRaw(t, w.url)
	const connects = 20
	codes := map[int]int{}
	for range connects {
		f := r.connect(t, "carol@"+domain, nil)
		codes[f.Header.ErrorCode]++
		if f.Header.ErrorCode == 503 {
			if v := retryAfter(t, f); v != "10" && v != "9" {
				t.Fatalf("retry_after %s, want the socket bucket's 10s", v)
			}
		}
	}
	// The default per_socket burst is 3.
	if codes[401] != 3 || codes[503] != connects-3 {
		t.Fatalf("answers by code %v, want 3 challenges and %d refusals", codes, connects-3)
	}
	if all, _ := k.seenRegisters(t, "carol"); all != 3 {
		t.Fatalf("registrar saw %d REGISTERs, want 3", all)
	}
	if v := w.metric(t, `jsonrtc_limits_register_denied_total{reason="socket"}`); v != fmt.Sprint(connects-3) {
		t.Fatalf("socket refusals counted %s, want %d", v, connects-3)
	}
}

// After the registrar rejected a client's digest answer, the identity
// backs off: its next connect is refused with 503 and retry_after before
// any REGISTER, from any socket, even with the right password.
func TestWebRegisterBackoffAfterRejectedDigest(t *testing.T) {
	k := startKamailioWith(t, 1, true)
	w := startWebGateway(t, k)
	ha1 := func(pw string) map[string]string {
		return map[string]string{"username": "carol", "realm": domain, "ha1": md5hex("carol", domain, pw)}
	}
	f := dialRaw(t, w.url).connect(t, "carol@"+domain, ha1("wrong"))
	if f.Header.ErrorCode != 401 || len(f.Header.Authenticate) == 0 {
		t.Fatalf("wrong password: %+v, want 401 with a new challenge", f.Header)
	}
	all, authed := k.seenRegisters(t, "carol")
	if all != 2 || authed != 1 {
		t.Fatalf("registrar saw %d REGISTERs, %d with credentials; want 2 and 1", all, authed)
	}
	f = dialRaw(t, w.url).connect(t, "carol@"+domain, ha1(users["carol"]))
	if f.Header.ErrorCode != 503 || !strings.Contains(f.Header.Reason, "rejected") || retryAfter(t, f) != "1" {
		t.Fatalf("connect during the back-off: %+v, want 503 retry after 1s", f.Header)
	}
	if a, _ := k.seenRegisters(t, "carol"); a != all {
		t.Fatalf("registrar saw %d REGISTERs, want %d: the back-off must not contact SIP", a, all)
	}
	if v := w.metric(t, `jsonrtc_limits_register_denied_total{reason="backoff"}`); v != "1" {
		t.Fatalf("back-off refusals counted %s, want 1", v)
	}
	// A wrong password the gateway holds: 403, and the identity backs
	// off likewise.
	w2 := startWebGateway(t, k, func(c *gateway.Config) {
		c.SIP.Credentials = map[string]sipgw.Credential{"alice@" + domain: {Username: "alice", Password: "wrong"}}
	})
	if f := dialRaw(t, w2.url).connect(t, "alice@"+domain, nil); f.Header.ErrorCode != 403 {
		t.Fatalf("wrong gateway password: %+v, want 403", f.Header)
	}
	if f := dialRaw(t, w2.url).connect(t, "alice@"+domain, nil); f.Header.ErrorCode != 503 {
		t.Fatalf("connect during the back-off: %+v, want 503", f.Header)
	}
	if all, authed := k.seenRegisters(t, "alice"); all != 2 || authed != 1 {
		t.Fatalf("registrar saw %d REGISTERs from alice, %d with credentials; want 2 and 1", all, authed)
	}
}

// TestWebRegisterFlood is the measurement of docs/security.md ("REGISTER
// floods and password guessing"): one raw WebSocket sends connects that
// each would make a REGISTER (carol is challenged) as fast as it can for
// 3 s, without waiting for answers; the test counts the REGISTERs that
// reach Kamailio and what the flooder got back.
func TestWebRegisterFlood(t *testing.T) {
	k := startKamailioWith(t, 1, true)
	w := startWebGateway(t, k)
	r := dialRaw(t, w.url)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var sent atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		for ctx.Err() == nil {
			if err := r.c.Write(ctx, websocket.MessageText, r.connectFrame("carol@"+domain, nil)); err != nil {
				return
			}
			sent.Add(1)
		}
	})
	codes := map[int]int{}
	for {
		_, data, err := r.c.Read(ctx)
		if err != nil {
			break
		}
		f, err := protocol.Decode(data)
		if err != nil {
			t.Fatalf("%v: %s", err, data)
		}
		codes[f.Header.ErrorCode]++
	}
	wg.Wait()
	all, _ := k.seenRegisters(t, "carol")
	t.Logf("flood: %d connects sent in 3s, answers by code %v, %d REGISTERs reached the registrar", sent.Load(), codes, all)
	if all > 3 {
		t.Fatalf("%d REGISTERs reached the registrar, want at most the per_socket burst of 3", all)
	}
	if codes[503] == 0 {
		t.Fatal("no connect was refused")
	}
}

// A refresh and the removal reuse the nonce of the last challenge with
// the next nonce-count: one REGISTER each instead of a challenged pair.
func TestRegisterRefreshReusesNonce(t *testing.T) {
	k := startKamailioWith(t, 1, true)
	g := newGateway(t, k, func(c *sipgw.Config) { c.RegisterExpiry = 10 * time.Second })
	r, err := g.Register(ctxT(t), "alice@"+domain, &sipgw.RegisterOptions{
		Authorization: &sipgw.Authorization{Username: "alice", Realm: domain, HA1: md5hex("alice", domain, users["alice"])},
	})
	if err != nil {
		t.Fatal(err)
	}
	// The refresh is due after 4/5 of the 10 s granted.
	until(t, "the refresh to reach Kamailio", func() bool {
		return strings.Count(k.proc.out.String(), "SEEN REGISTER alice") >= 3
	})
	// Release waits for a refresh in progress, then removes the binding.
	if err := r.Release(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if all, authed := k.seenRegisters(t, "alice"); all != 4 || authed != 3 {
		t.Fatalf("registrar saw %d REGISTERs, %d with credentials; want 4 and 3 (challenged, answered, refresh, removal)", all, authed)
	}
	if st := g.Stats(); st.Registrations != 0 || st.Transactions != 0 {
		t.Fatalf("left behind %+v", st)
	}
}

// A stale challenge after an answer is answered again, with the same
// credentials and the new nonce: the only retry RFC 3261 section 22.2
// allows. SIPp plays the registrar and checks each REGISTER.
func TestRegisterStaleNonce(t *testing.T) {
	uas := startSipp(t, "registrar_stale.xml", "")
	g := newGateway(t, &Kamailio{Addr: "127.0.0.1:" + strconv.Itoa(uas.Port)}, nil)
	r, err := g.Register(ctxT(t), "alice@"+domain, &sipgw.RegisterOptions{
		Authorization: &sipgw.Authorization{Username: "alice", Realm: domain, HA1: md5hex("alice", domain, "pw")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if r.Expires() != 60*time.Second {
		t.Fatalf("expires %v", r.Expires())
	}
	if err := r.Release(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	uas.expectSuccess(t)
}
