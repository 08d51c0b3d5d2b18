package interwork

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jsonrtc/jsonrtc/internal/fakereg"
	"github.com/jsonrtc/jsonrtc/limits"
	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/sipgw"
)

// fakeSession is a web session as Registrations sees it: the frames it
// is sent go to sent; a detached one refuses them.
type fakeSession struct {
	id       string
	detached bool
	done     chan struct{}
	sent     chan *protocol.Frame
	lost     chan error
}

func newFake(id string) *fakeSession {
	return &fakeSession{id: id, done: make(chan struct{}), sent: make(chan *protocol.Frame, 4), lost: make(chan error, 1)}
}

func (f *fakeSession) ID() string                 { return f.id }
func (f *fakeSession) Done() <-chan struct{}      { return f.done }
func (f *fakeSession) RegistrationLost(err error) { f.lost <- err }

func (f *fakeSession) Request(fr *protocol.Frame) error {
	if f.detached {
		return errors.New("detached")
	}
	f.sent <- fr
	return nil
}

func newRegs(ua *sipgw.UserAgent, peers ...*fakeSession) *Registrations {
	return NewRegistrations(ua, &RegistrationOptions{
		Config: sipgw.Config{Domain: "example.com", Registrar: "sip:example.com",
			IdentityDomains: map[string]string{"web.example": "example.com"}},
		Peers: func(identity string) []Session {
			out := make([]Session, len(peers))
			for i, p := range peers {
				out[i] = p
			}
			return out
		},
	})
}

var testChallenge = sipgw.Challenge{Scheme: "Digest", Realm: "example.com", Nonce: "n1", QOP: []string{"auth", "auth-int"},
	Opaque: "o", Method: "REGISTER", URI: "sip:example.com"}

type authResult struct {
	a   sipgw.Authorization
	err error
}

func authenticate(r *Registrations) <-chan authResult {
	out := make(chan authResult, 1)
	go func() {
		a, err := r.Authenticate(context.Background(), "alice@example.com", testChallenge)
		out <- authResult{a, err}
	}()
	return out
}

// answer is a session's answer to the authenticate request req.
func answer(req *protocol.Frame, typ protocol.Type, authorization string) *protocol.Frame {
	f := &protocol.Frame{
		Control: protocol.Control{Type: typ, Package: protocol.PackageRegister, CorrelationID: req.Control.CorrelationID},
		Header:  protocol.Header{Action: protocol.ActionAuthenticate},
	}
	if authorization != "" {
		f.Header.Authorization = json.RawMessage(authorization)
	}
	return f
}

// A live challenge (docs/protocol.md §4.8) is sent as request/authenticate
// to the identity's sessions in turn: a detached one is skipped, an error
// answer passes to the next one, a response's authorization is the
// answer.
func TestAuthenticateAsksSessionsInTurn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		detached, refuses, answers := newFake("s0"), newFake("s1"), newFake("s2")
		detached.detached = true
		r := newRegs(nil, detached, refuses, answers)
		res := authenticate(r)

		req := <-refuses.sent
		if req.Control.Type != protocol.TypeRequest || req.Control.Package != protocol.PackageRegister ||
			req.Header.Action != protocol.ActionAuthenticate || req.Control.CorrelationID == "" ||
			req.Header.Initiator != "alice@example.com" || req.Header.Target != "alice@example.com" {
			t.Fatalf("request %s", req.Marshal())
		}
		var ch map[string]any
		if err := json.Unmarshal(req.Header.Authenticate, &ch); err != nil {
			t.Fatal(err)
		}
		want := map[string]any{"scheme": "Digest", "realm": "example.com", "nonce": "n1", "qop": "auth,auth-int",
			"opaque": "o", "method": "REGISTER", "uri": "sip:example.com"}
		if len(ch) != len(want) {
			t.Fatalf("authenticate %s, want %v", req.Header.Authenticate, want)
		}
		for k, v := range want {
			if ch[k] != v {
				t.Fatalf("authenticate %s: %s is %v, want %v", req.Header.Authenticate, k, ch[k], v)
			}
		}
		if !r.Answered("s1", answer(req, protocol.TypeError, "")) {
			t.Fatal("an error answer found nothing waiting for it")
		}

		req = <-answers.sent
		// The answer of another session to this correlation id is not it.
		if r.Answered("s1", answer(req, protocol.TypeResponse, `{"username":"mallory","ha1":"x"}`)) {
			t.Fatal("a session answered another's challenge")
		}
		if !r.Answered("s2", answer(req, protocol.TypeResponse, `{"username":"alice","realm":"example.com","ha1":"deadbeef"}`)) {
			t.Fatal("the answer found nothing waiting for it")
		}
		got := <-res
		if got.err != nil || got.a.Username != "alice" || got.a.HA1 != "deadbeef" {
			t.Fatalf("answered %+v, %v", got.a, got.err)
		}
		// Answered once: a second copy is late.
		if r.Answered("s2", answer(req, protocol.TypeResponse, `{"username":"alice","ha1":"x"}`)) {
			t.Fatal("a challenge was answered twice")
		}
		if len(detached.sent) != 0 {
			t.Fatal("a detached session was asked")
		}
	})
}

// A session that says nothing for authAnswerTimeout, or ends while asked,
// is passed over; with nobody left, the answer is sipgw.ErrNoAnswer.
func TestAuthenticateNoAnswer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		silent, ends := newFake("s1"), newFake("s2")
		r := newRegs(nil, silent, ends)
		start := time.Now()
		res := authenticate(r)
		<-silent.sent
		<-ends.sent
		if waited := time.Since(start); waited != authAnswerTimeout {
			t.Fatalf("the next session was asked after %v, want %v", waited, authAnswerTimeout)
		}
		close(ends.done)
		if got := <-res; !errors.Is(got.err, sipgw.ErrNoAnswer) {
			t.Fatalf("got %+v, %v; want ErrNoAnswer", got.a, got.err)
		}
		synctest.Wait()
		r.mu.Lock()
		n := len(r.asks)
		r.mu.Unlock()
		if n != 0 {
			t.Fatalf("%d challenges still wait for an answer", n)
		}
	})
}

// A response whose authorization does not parse is no answer.
func TestAuthenticateBadAnswer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newFake("s1")
		r := newRegs(nil, s)
		res := authenticate(r)
		req := <-s.sent
		r.Answered("s1", answer(req, protocol.TypeResponse, `{"username":"alice"}`))
		if got := <-res; !errors.Is(got.err, sipgw.ErrNoAnswer) {
			t.Fatalf("got %+v, %v; want ErrNoAnswer", got.a, got.err)
		}
	})
}

func TestParseAuthorization(t *testing.T) {
	for _, c := range []struct {
		in   string
		want *sipgw.Authorization // nil: an error
	}{
		{`{"username":"alice","realm":"r","ha1":"h"}`, &sipgw.Authorization{Username: "alice", Realm: "r", HA1: "h"}},
		{`{"username":"alice","realm":"r","nonce":"n","response":"x","cnonce":"c","nc":2,"uri":"sip:r","qop":"auth"}`,
			&sipgw.Authorization{Username: "alice", Realm: "r", Nonce: "n", Response: "x", CNonce: "c", NC: 2, URI: "sip:r", QOP: "auth"}},
		{`{"username":"alice","response":"x","nc":"0000001a"}`, &sipgw.Authorization{Username: "alice", Response: "x", NC: 26}},
		{`{"username":"alice","response":"x","nc":"zz"}`, nil},
		{`{"username":"alice","response":"x","nc":true}`, nil},
		{`{"username":"alice","response":"x","nc":-1}`, nil},
		{`{"username":"alice"}`, nil},
		{`{"ha1":"h"}`, nil},
		{`{"username":1,"ha1":"h"}`, nil},
		{`[]`, nil},
		{`null`, nil},
	} {
		got, err := parseAuthorization(json.RawMessage(c.in))
		switch {
		case c.want == nil && err == nil:
			t.Errorf("%s: parsed as %+v, want an error", c.in, got)
		case c.want != nil && (err != nil || *got != *c.want):
			t.Errorf("%s: %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
}

func TestRegisterDeniedError(t *testing.T) {
	for _, c := range []struct {
		reason limits.RegisterReason
		after  time.Duration
		want   string
		secs   time.Duration
	}{
		{limits.RegisterBackoff, 1200 * time.Millisecond, "the registrar rejected this identity's credentials; retry in 2s", 2 * time.Second},
		{limits.RegisterSocket, 0, "too many registration attempts on this socket; retry in 1s", time.Second},
		{limits.RegisterIdentity, 3 * time.Second, "too many registration attempts for this identity; retry in 3s", 3 * time.Second},
		{limits.RegisterAddress, time.Second, "too many registration attempts from this address; retry in 1s", time.Second},
	} {
		e := registerDeniedError(&limits.RegisterDenied{Reason: c.reason, RetryAfter: c.after})
		if e.Reason != c.want || e.After != c.secs {
			t.Errorf("%v after %v: %q, %v; want %q, %v", c.reason, c.after, e.Reason, e.After, c.want, c.secs)
		}
	}
}

// Identities of the sip section's domain and of its identity_domains
// register, others do not; nothing registers without a user agent or a
// registrar.
func TestRegisters(t *testing.T) {
	if newRegs(nil).Registers("alice@example.com") {
		t.Fatal("registers without a user agent")
	}
	cfg := sipgw.Config{Domain: "example.com", Listen: sipgw.ListenConfig{UDP: "127.0.0.1:0"}}
	ua, err := sipgw.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := newRegs(ua)
	for id, want := range map[string]bool{
		"alice@example.com": true, "alice@EXAMPLE.com": true, "alice@web.example": true, "alice": true,
		"alice@elsewhere.example": false, "sip:alice": false, "tel:+123": false,
	} {
		if got := r.Registers(id); got != want {
			t.Errorf("Registers(%q) = %v, want %v", id, got, want)
		}
	}
	noRegistrar := NewRegistrations(ua, &RegistrationOptions{Config: sipgw.Config{Domain: "example.com"}})
	if noRegistrar.Registers("alice@example.com") {
		t.Fatal("registers without a registrar")
	}
}

// A connect that registers nothing gets no binding and no error; a user
// agent that cannot register makes it 503, not a panic or a hang.
func TestRegisterWithoutSIP(t *testing.T) {
	r := newRegs(nil)
	b, err := r.Register(context.Background(), Connect{Identity: "alice@example.com"})
	if b != nil || err != nil {
		t.Fatalf("without SIP: %v, %v", b, err)
	}
	ua, err := sipgw.New(sipgw.Config{Domain: "example.com", Listen: sipgw.ListenConfig{UDP: "127.0.0.1:0"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r = newRegs(ua)
	_, err = r.Register(context.Background(), Connect{Identity: "alice@example.com", Authorization: json.RawMessage(`{"username":"alice"}`)})
	if protocol.CodeOf(err) != protocol.CodeBadRequest || !strings.HasPrefix(protocol.ReasonOf(err), "header.authorization: ") {
		t.Fatalf("bad authorization: %v", err)
	}
	// Not started: the user agent is closed.
	_, err = r.Register(context.Background(), Connect{Identity: "alice@example.com"})
	if protocol.CodeOf(err) != protocol.CodeServiceUnavailable {
		t.Fatalf("closed user agent: %v", err)
	}
	s := newFake("s1")
	r.Attach(s, nil)
	r.Release(nil)
	r.Ended("s1")
	if err := r.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// A binding is released when its session ends, also when the session
// ended before the gateway attached it (between its connect's REGISTER
// and its place in the session tables): that binding once stayed at the
// registrar, refreshed, until the gateway shut down.
func TestBindingReleasedWithItsSession(t *testing.T) {
	reg := fakereg.Start(t)
	ua := startUA(t, reg, "")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r := newRegs(ua)
	defer r.Close(context.Background())

	for _, endedFirst := range []bool{false, true} {
		b, err := r.Register(ctx, Connect{Identity: "alice@example.com"})
		if err != nil || b == nil {
			t.Fatalf("register: %v, %v", b, err)
		}
		if e := reg.Next(t).Expires; e != "60" {
			t.Fatalf("REGISTER Expires: %q, want 60", e)
		}
		s := newFake("s1")
		if endedFirst {
			close(s.done)
			r.Ended(s.id)
			r.Attach(s, b)
		} else {
			r.Attach(s, b)
			close(s.done)
			r.Ended(s.id)
		}
		if e := reg.Next(t).Expires; e != "0" {
			t.Fatalf("ended first %v: REGISTER Expires: %q, want 0", endedFirst, e)
		}
	}
	if err := r.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

// startUA starts a SIP user agent of the node instanceID ("" random)
// registering at reg, with a lifetime of a minute.
func startUA(t *testing.T, reg *fakereg.Registrar, instanceID string) *sipgw.UserAgent {
	t.Helper()
	ua, err := sipgw.New(sipgw.Config{Domain: "example.com", Registrar: "sip:" + reg.Addr, RegisterExpiry: time.Minute,
		InstanceID: instanceID, Listen: sipgw.ListenConfig{UDP: "127.0.0.1:0"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ua.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ua.Close(context.Background()) })
	return ua
}

// TestMovedRegistration: a session's binding moves with it. The node
// it moved to registers under the instance the binding had (the
// registrar replaces the binding rather than keeping the old node's
// Contact next to the new one), and the node it left lets go without a
// word to the registrar: a removal, matched by instance, would take the
// new node's binding away. Before, the new node registered its own
// instance (two bindings, one pointing at a node that may be dead) and
// the old one sent Expires: 0 at the takeover.
func TestMovedRegistration(t *testing.T) {
	reg := fakereg.Start(t)
	uaA := startUA(t, reg, "urn:uuid:00000000-0000-4000-8000-00000000000a")
	uaB := startUA(t, reg, "urn:uuid:00000000-0000-4000-8000-00000000000b")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rA, rB := newRegs(uaA), newRegs(uaB)
	defer rB.Close(context.Background())

	bA, err := rA.Register(ctx, Connect{Identity: "alice@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	first := reg.Next(t)
	if first.Instance == "" || first.Instance != bA.Instance() {
		t.Fatalf("A registered %+v, binding instance %q", first, bA.Instance())
	}
	sA := newFake("s1")
	rA.Attach(sA, bA)

	bB, err := rB.Register(ctx, Connect{Identity: "alice@example.com", Instance: bA.Instance()})
	if err != nil {
		t.Fatal(err)
	}
	moved := reg.Next(t)
	if moved.Instance != first.Instance || moved.Contact == first.Contact || moved.Expires != "60" {
		t.Fatalf("B registered %+v after A's %+v: want A's instance with B's Contact", moved, first)
	}
	if bB.Instance() != first.Instance {
		t.Fatalf("B's binding instance %q, want %q", bB.Instance(), first.Instance)
	}

	rA.Moved(sA.id)
	close(sA.done)
	rA.Ended(sA.id) // the session's end on A after the move: nothing left to release
	if err := rA.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := uaA.Close(ctx); err != nil {
		t.Fatal(err)
	}
	reg.None(t)

	// The new owner still removes the binding when the session ends.
	sB := newFake("s1")
	rB.Attach(sB, bB)
	close(sB.done)
	rB.Ended(sB.id)
	if got := reg.Next(t); got.Expires != "0" || got.Instance != first.Instance {
		t.Fatalf("B's removal %+v, want Expires 0 under %q", got, first.Instance)
	}

	// A value that is not a URN is not sent as an instance.
	bad, err := rB.Register(ctx, Connect{Identity: "bob@example.com", Instance: `x" ;evil`})
	if err != nil {
		t.Fatal(err)
	}
	if got := reg.Next(t); got.Instance == "" || strings.Contains(got.Instance, "evil") || got.Instance != bad.Instance() {
		t.Fatalf("bob registered %+v", got)
	}
	rB.Release(bad)
	reg.Next(t)
}
