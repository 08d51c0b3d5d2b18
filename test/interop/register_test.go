package interop

import (
	"crypto/md5"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/jsonrtc/jsonrtc/sipgw"
)

func md5hex(parts ...string) string {
	s := md5.Sum([]byte(strings.Join(parts, ":")))
	return hex.EncodeToString(s[:])
}

func TestRegisterWithoutChallenge(t *testing.T) {
	k := startKamailio(t)
	g := newGateway(t, k, nil)
	r1, err := g.Register(ctxT(t), "open@"+domain, nil)
	if err != nil {
		t.Fatal(err)
	}
	// A second web session shares the binding.
	r2, err := g.Register(ctxT(t), "open@"+domain, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := g.Stats().Registrations; n != 1 {
		t.Fatalf("registrations %d, want 1", n)
	}
	if r1.Expires() <= 0 {
		t.Fatalf("expires %v", r1.Expires())
	}
	if err := r1.Release(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if n := g.Stats().Registrations; n != 1 {
		t.Fatalf("registrations after one release %d, want 1", n)
	}
	if err := r2.Release(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if st := g.Stats(); st.Registrations != 0 || st.Transactions != 0 {
		t.Fatalf("left behind %+v", st)
	}
}

// registerAlice registers alice with her ha1, answering Kamailio's
// challenge.
func registerAlice(t *testing.T, g *sipgw.UserAgent) *sipgw.Registration {
	t.Helper()
	ha1 := md5hex("alice", domain, users["alice"])
	r, err := g.Register(ctxT(t), "alice@"+domain, &sipgw.RegisterOptions{
		Authorization: &sipgw.Authorization{Username: "alice", Realm: domain, HA1: ha1},
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRegisterChallengeHA1(t *testing.T) {
	k := startKamailio(t)
	g := newGateway(t, k, nil)
	r := registerAlice(t, g)
	if err := r.Release(ctxT(t)); err != nil {
		t.Fatal(err)
	}
}

// The two-step web flow: the challenge goes to the client, whose
// computed response comes back with the next connect.
func TestRegisterChallengeClientResponse(t *testing.T) {
	k := startKamailio(t)
	g := newGateway(t, k, nil)
	_, err := g.Register(ctxT(t), "carol@"+domain, nil)
	var ce *sipgw.ChallengeError
	if !errors.As(err, &ce) {
		t.Fatalf("err %v, want challenge", err)
	}
	ch := ce.Challenge
	if ch.Realm != domain || ch.Nonce == "" || ch.Proxy || ch.Method != "REGISTER" {
		t.Fatalf("challenge %+v", ch)
	}
	if g.Stats().Registrations != 0 {
		t.Fatal("failed registration kept")
	}
	// Wrong password: refused again.
	a := clientDigest(ch, "carol", "wrong")
	if _, err := g.Register(ctxT(t), "carol@"+domain, &sipgw.RegisterOptions{Authorization: &a}); !errors.As(err, &ce) {
		t.Fatalf("wrong password: %v", err)
	}
	a = clientDigest(ce.Challenge, "carol", users["carol"])
	r, err := g.Register(ctxT(t), "carol@"+domain, &sipgw.RegisterOptions{Authorization: &a})
	if err != nil {
		t.Fatal(err)
	}
	// Unregistering is challenged again and answered by nobody: the
	// binding then expires; Release reports it.
	_ = r.Release(ctxT(t))
	if st := g.Stats(); st.Registrations != 0 || st.Transactions != 0 {
		t.Fatalf("left behind %+v", st)
	}
}

// clientDigest computes what a web client would send (RFC 2617, qop=auth
// when offered).
func clientDigest(ch sipgw.Challenge, user, pw string) sipgw.Authorization {
	ha1 := md5hex(user, ch.Realm, pw)
	ha2 := md5hex(ch.Method, ch.URI)
	a := sipgw.Authorization{Username: user, Realm: ch.Realm, Nonce: ch.Nonce, URI: ch.URI}
	for _, q := range ch.QOP {
		if q == "auth" {
			a.QOP, a.NC, a.CNonce = "auth", 1, "0a4f113b"
			a.Response = md5hex(ha1, ch.Nonce, "00000001", a.CNonce, "auth", ha2)
			return a
		}
	}
	a.Response = md5hex(ha1, ch.Nonce, ha2)
	return a
}

func TestRegisterBadIdentity(t *testing.T) {
	k := startKamailio(t)
	g := newGateway(t, k, nil)
	for _, id := range []string{"alice@example.com>;x=1", "al\r\nice@example.com", "tel:+1555", "alice@exa mple.com"} {
		if _, err := g.Register(ctxT(t), id, nil); !errors.Is(err, sipgw.ErrInvalidInput) {
			t.Errorf("%q: %v", id, err)
		}
	}
}
