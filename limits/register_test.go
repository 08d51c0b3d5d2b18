package limits

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"go.yaml.in/yaml/v3"
)

func newRegisters(t *testing.T, c RegisterConfig) *Registers {
	t.Helper()
	r, err := NewRegisters(Config{Register: c})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

var (
	addrA = netip.MustParseAddr("192.0.2.1")
	addrB = netip.MustParseAddr("192.0.2.2")
)

// denied checks that err is a refusal for reason that may succeed after
// retry.
func denied(t *testing.T, err error, reason RegisterReason, retry time.Duration) {
	t.Helper()
	var d *RegisterDenied
	if !errors.As(err, &d) || d.Reason != reason || d.RetryAfter != retry {
		t.Fatalf("got %v, want %s refusal, retry after %v", err, reason, retry)
	}
}

var unlimitedRegisters = RegisterConfig{PerSocket: Rate{Rate: -1}, PerIdentity: Rate{Rate: -1}, PerAddress: Rate{Rate: -1}}

// The back-off doubles from initial to max with each rejection, refuses
// every attempt while it runs, and is reset by a success.
func TestRegisterBackoffDoubles(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := unlimitedRegisters
		c.Backoff = Backoff{Initial: time.Second, Max: 5 * time.Minute}
		r := newRegisters(t, c)
		if err := r.Allow("s1", addrA, "alice"); err != nil {
			t.Fatal(err)
		}
		want := []time.Duration{1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300}
		for i, w := range want {
			w *= time.Second
			if d := r.Failed("alice"); d != w {
				t.Fatalf("failure %d: back-off %v, want %v", i+1, d, w)
			}
			denied(t, r.Allow("s1", addrA, "alice"), RegisterBackoff, w)
			// Another identity is not affected.
			if err := r.Allow("s1", addrA, "bob"); err != nil {
				t.Fatal(err)
			}
			time.Sleep(w - time.Millisecond)
			denied(t, r.Allow("s2", addrB, "alice"), RegisterBackoff, time.Millisecond)
			time.Sleep(time.Millisecond)
			if err := r.Allow("s1", addrA, "alice"); err != nil {
				t.Fatalf("after the back-off of %v: %v", w, err)
			}
		}
		if n := r.Denied(RegisterBackoff); n != uint64(2*len(want)) {
			t.Fatalf("back-off refusals counted %d, want %d", n, 2*len(want))
		}
		r.Succeeded("alice")
		if d := r.Failed("alice"); d != time.Second {
			t.Fatalf("after a success the back-off is %v, want 1s", d)
		}
	})
}

// A back-off is forgotten once max has passed since it ended.
func TestRegisterBackoffForgotten(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := unlimitedRegisters
		c.Backoff = Backoff{Initial: time.Second, Max: time.Minute}
		r := newRegisters(t, c)
		r.Failed("alice")
		r.Failed("alice")
		time.Sleep(2*time.Second + time.Minute - time.Nanosecond)
		if d := r.Failed("alice"); d != 4*time.Second {
			t.Fatalf("back-off %v, want 4s (not yet forgotten)", d)
		}
		time.Sleep(4*time.Second + time.Minute)
		if d := r.Failed("alice"); d != time.Second {
			t.Fatalf("back-off %v, want 1s (forgotten)", d)
		}
	})
}

func TestRegisterBackoffDisabled(t *testing.T) {
	c := unlimitedRegisters
	c.Backoff.Initial = -1
	r := newRegisters(t, c)
	if d := r.Failed("alice"); d != 0 {
		t.Fatalf("back-off %v with backoff.initial < 0", d)
	}
	if err := r.Allow("s", addrA, "alice"); err != nil {
		t.Fatal(err)
	}
}

// The back-off table is bounded by max_keys: a newcomer evicts the
// back-off that ends first.
func TestRegisterBackoffBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, err := NewRegisters(Config{MaxKeys: 2, Register: unlimitedRegisters})
		if err != nil {
			t.Fatal(err)
		}
		r.Failed("a")
		r.Failed("b")
		r.Failed("b")
		r.Failed("c")
		if len(r.backoffs) != 2 || r.backoffs["a"] != nil {
			t.Fatalf("back-offs %v, want b and c", r.backoffs)
		}
	})
}

// Each bucket bounds its key: a socket, an address, an identity.
func TestRegisterBuckets(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRegisters(t, RegisterConfig{
			PerSocket:   Rate{Rate: 1, Per: 10 * time.Second, Burst: 3},
			PerAddress:  Rate{Rate: 1, Per: time.Second, Burst: 5},
			PerIdentity: Rate{Rate: 1, Per: time.Minute, Burst: 4},
		})
		for i := range 3 {
			if err := r.Allow("s1", addrA, "alice"); err != nil {
				t.Fatalf("attempt %d: %v", i+1, err)
			}
		}
		denied(t, r.Allow("s1", addrA, "alice"), RegisterSocket, 10*time.Second)
		// Another socket of the same address: the address has 2 left.
		if err := r.Allow("s2", addrA, "bob"); err != nil {
			t.Fatal(err)
		}
		if err := r.Allow("s3", addrA, "carol"); err != nil {
			t.Fatal(err)
		}
		denied(t, r.Allow("s4", addrA, "dave"), RegisterAddress, time.Second)
		// Another address, alice again: her fourth and last.
		if err := r.Allow("s5", addrB, "alice"); err != nil {
			t.Fatal(err)
		}
		denied(t, r.Allow("s6", addrB, "alice"), RegisterIdentity, time.Minute)
		time.Sleep(10 * time.Second)
		if err := r.Allow("s1", addrA, "bob"); err != nil {
			t.Fatalf("after the socket's refill: %v", err)
		}
		for reason, n := range map[RegisterReason]uint64{RegisterSocket: 1, RegisterAddress: 1, RegisterIdentity: 1, RegisterBackoff: 0} {
			if got := r.Denied(reason); got != n {
				t.Errorf("%s refusals %d, want %d", reason, got, n)
			}
		}
	})
}

// An IPv6 host counts as its /64.
func TestRegisterAddressIPv6(t *testing.T) {
	r := newRegisters(t, RegisterConfig{PerSocket: Rate{Rate: -1}, PerIdentity: Rate{Rate: -1},
		PerAddress: Rate{Rate: 1, Per: time.Hour, Burst: 1}})
	if err := r.Allow("s1", netip.MustParseAddr("2001:db8::1"), "a"); err != nil {
		t.Fatal(err)
	}
	var d *RegisterDenied
	if err := r.Allow("s2", netip.MustParseAddr("2001:db8::ffff:2"), "b"); !errors.As(err, &d) || d.Reason != RegisterAddress {
		t.Fatalf("same /64: %v", err)
	}
	if err := r.Allow("s3", netip.MustParseAddr("2001:db8:0:1::1"), "c"); err != nil {
		t.Fatalf("another /64: %v", err)
	}
}

// registerExampleYAML is the example of docs/security.md ("REGISTER
// floods and password guessing"), which shows the defaults; keep them in
// step.
const registerExampleYAML = `
register:
  per_socket: {rate: 1, per: 10s, burst: 3}
  per_identity: {rate: 6, per: 1m, burst: 10}
  per_address: {rate: 10, per: 1s, burst: 40}
  backoff: {initial: 1s, max: 5m}
`

func TestRegisterConfig(t *testing.T) {
	var c Config
	dec := yaml.NewDecoder(strings.NewReader(registerExampleYAML))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if got, want := c.WithDefaults().Register, (Config{}).WithDefaults().Register; got != want {
		t.Fatalf("the example is %+v, the defaults %+v", got, want)
	}
	var partial Config
	if err := yaml.Unmarshal([]byte("register: {per_identity: {rate: 12, per: 1m}, backoff: {initial: 2s}}"), &partial); err != nil {
		t.Fatal(err)
	}
	if d := partial.WithDefaults().Register; d.PerIdentity.Burst != 20 || d.Backoff != (Backoff{2 * time.Second, 5 * time.Minute}) {
		t.Fatalf("with defaults %+v", d)
	}
	for _, tc := range []struct {
		c   RegisterConfig
		key string
	}{
		{RegisterConfig{PerSocket: Rate{Rate: 1, Per: -time.Second}}, "limits.register.per_socket.per"},
		{RegisterConfig{PerIdentity: Rate{Rate: 1, Per: time.Second, Burst: -2}}, "limits.register.per_identity.burst"},
		{RegisterConfig{PerAddress: Rate{Rate: 10, Per: time.Nanosecond}}, "limits.register.per_address"},
		{RegisterConfig{Backoff: Backoff{Initial: time.Minute, Max: time.Second}}, "limits.register.backoff.max"},
		{RegisterConfig{Backoff: Backoff{Initial: time.Second, Max: 48 * time.Hour}}, "limits.register.backoff.max"},
	} {
		err := Config{Register: tc.c}.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("%+v: %v, want an error naming %s", tc.c, err, tc.key)
		}
	}
}
