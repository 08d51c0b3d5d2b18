package limits

import (
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.yaml.in/yaml/v3"
)

func newLimiter(t *testing.T, cfg Config) *Limiter {
	t.Helper()
	l, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func open(t *testing.T, l *Limiter, app, id string) *Session {
	t.Helper()
	s, err := l.OpenSession(app, "", id)
	if err != nil {
		t.Fatalf("OpenSession(%q, %q): %v", app, id, err)
	}
	t.Cleanup(s.Close)
	return s
}

func denials(l *Limiter, lim Limit, sc Scope) uint64 {
	for _, d := range l.Denials() {
		if d.Limit == lim && d.Scope == sc {
			return d.Count
		}
	}
	return 0
}

func TestFrameBucket(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := Config{Profiles: map[string]Profile{"default": {
			Identity: Quota{Frames: Rate{Rate: 10, Per: time.Second, Burst: 5}},
		}}}
		l := newLimiter(t, cfg)
		s := open(t, l, "app", "alice@example.com")
		for i := range 5 {
			if !s.AllowFrame() {
				t.Fatalf("frame %d of the burst refused", i+1)
			}
		}
		if s.AllowFrame() {
			t.Fatal("frame beyond the burst allowed")
		}
		if got := denials(l, LimitFrames, ScopeIdentity); got != 1 {
			t.Fatalf("frames/identity denials = %d, want 1", got)
		}
		// Another identity has its own bucket.
		bob := open(t, l, "app", "bob@example.com")
		if !bob.AllowFrame() {
			t.Fatal("bob refused because of alice")
		}
		// A second session of the same identity shares the bucket.
		alice2 := open(t, l, "app", "alice@example.com")
		if alice2.AllowFrame() {
			t.Fatal("alice's second session has a fresh bucket")
		}
		time.Sleep(100 * time.Millisecond) // one token at 10/s
		if !s.AllowFrame() {
			t.Fatal("refilled token refused")
		}
		if s.AllowFrame() {
			t.Fatal("more than one token refilled in 100ms")
		}
		time.Sleep(10 * time.Second) // refills to the burst, not beyond
		n := 0
		for s.AllowFrame() {
			n++
		}
		if n != 5 {
			t.Fatalf("after a long pause %d frames allowed, want the burst of 5", n)
		}
	})
}

func TestApplicationFrameBucket(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := Config{Profiles: map[string]Profile{"default": {
			Application: Quota{Frames: Rate{Rate: 1, Per: time.Second, Burst: 3}},
		}}}
		l := newLimiter(t, cfg)
		a := open(t, l, "app", "a@x")
		b := open(t, l, "app", "b@x")
		other := open(t, l, "other", "a@x")
		if !a.AllowFrame() || !b.AllowFrame() || !a.AllowFrame() {
			t.Fatal("burst refused")
		}
		if b.AllowFrame() {
			t.Fatal("application bucket not shared by its identities")
		}
		if got := denials(l, LimitFrames, ScopeApplication); got != 1 {
			t.Fatalf("frames/application denials = %d, want 1", got)
		}
		if !other.AllowFrame() {
			t.Fatal("another application shares the bucket")
		}
	})
}

func TestMessagesPerMinute(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := Config{Profiles: map[string]Profile{"default": {
			Identity: Quota{Messages: Rate{Rate: 6, Per: time.Minute, Burst: 2}},
		}}}
		l := newLimiter(t, cfg)
		s := open(t, l, "app", "alice@example.com")
		if !s.AllowMessage() || !s.AllowMessage() {
			t.Fatal("burst refused")
		}
		if s.AllowMessage() {
			t.Fatal("third message allowed")
		}
		time.Sleep(9 * time.Second)
		if s.AllowMessage() {
			t.Fatal("token refilled before 10s")
		}
		time.Sleep(time.Second)
		if !s.AllowMessage() {
			t.Fatal("token not refilled after 10s")
		}
		if got := denials(l, LimitMessages, ScopeIdentity); got != 2 {
			t.Fatalf("messages/identity denials = %d, want 2", got)
		}
	})
}

func TestConcurrentSessions(t *testing.T) {
	cfg := Config{Profiles: map[string]Profile{
		"default": {Identity: Quota{Sessions: 2}, Application: Quota{Sessions: 3}},
		"tight":   {Identity: Quota{Sessions: 1}},
	}}
	l := newLimiter(t, cfg)
	a1 := open(t, l, "app", "a")
	open(t, l, "app", "a")
	_, err := l.OpenSession("app", "", "a")
	var le *Error
	if !errors.As(err, &le) || le.Limit != LimitSessions || le.Scope != ScopeIdentity {
		t.Fatalf("third session of a: err = %v, want identity sessions limit", err)
	}
	open(t, l, "app", "b")
	_, err = l.OpenSession("app", "", "c")
	if !errors.As(err, &le) || le.Limit != LimitSessions || le.Scope != ScopeApplication {
		t.Fatalf("fourth session of app: err = %v, want application sessions limit", err)
	}
	// The refused identity c took nothing: once room is made, c gets in.
	a1.Close()
	a1.Close() // idempotent
	open(t, l, "app", "c")
	// A profile applies to the application that names it.
	if _, err := l.OpenSession("strict2", "tight", "y"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.OpenSession("strict2", "tight", "y"); !errors.As(err, &le) {
		t.Fatalf("second session in the tight profile: err = %v", err)
	}
	if _, err := l.OpenSession("app", "nope", "a"); !errors.Is(err, ErrUnknownProfile) {
		t.Fatalf("unknown profile: err = %v", err)
	}
}

func TestCallsAndSubscriptions(t *testing.T) {
	cfg := Config{Profiles: map[string]Profile{"default": {
		Identity:    Quota{Calls: 2, Subscriptions: 1},
		Application: Quota{Calls: 3},
	}}}
	l := newLimiter(t, cfg)
	a := open(t, l, "app", "a")
	a2 := open(t, l, "app", "a")
	b := open(t, l, "app", "b")
	if !a.AcquireCall() || !a2.AcquireCall() {
		t.Fatal("calls within quota refused")
	}
	if a.AcquireCall() {
		t.Fatal("third call of identity a allowed")
	}
	if !b.AcquireCall() {
		t.Fatal("b's call refused")
	}
	if b.AcquireCall() {
		t.Fatal("fourth call of the application allowed")
	}
	a.ReleaseCall()
	a.ReleaseCall() // more than held: ignored
	if !b.AcquireCall() {
		t.Fatal("released call not reusable")
	}
	if !a.AcquireSubscription() || a2.AcquireSubscription() {
		t.Fatal("subscription quota of 1 per identity not enforced")
	}
	// Close gives back what the session still held.
	a.Close()
	if a.AcquireCall() {
		t.Fatal("call acquired on a closed session")
	}
	if !a2.AcquireSubscription() {
		t.Fatal("closed session's subscription not released")
	}
	b.Close()
	if !a2.AcquireCall() {
		t.Fatal("closed session's calls not released")
	}
	if got := denials(l, LimitCalls, ScopeIdentity); got != 1 {
		t.Fatalf("calls/identity denials = %d, want 1", got)
	}
	if got := denials(l, LimitCalls, ScopeApplication); got != 1 {
		t.Fatalf("calls/application denials = %d, want 1", got)
	}
}

func TestHandshakesPerAddress(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newLimiter(t, Config{Handshakes: Rate{Rate: 2, Per: time.Second, Burst: 2}})
		a := netip.MustParseAddr("192.0.2.1")
		for range 2 {
			if !l.AllowHandshake(a) {
				t.Fatal("handshake within burst refused")
			}
		}
		if l.AllowHandshake(a) {
			t.Fatal("handshake beyond burst allowed")
		}
		if l.AllowHandshake(netip.MustParseAddr("::ffff:192.0.2.1")) {
			t.Fatal("IPv4-mapped address escapes its IPv4 bucket")
		}
		if !l.AllowHandshake(netip.MustParseAddr("192.0.2.2")) {
			t.Fatal("another address refused")
		}
		// An IPv6 /64 is one source.
		v6 := []string{"2001:db8:1:2::1", "2001:db8:1:2:ffff::9", "fe80::1%eth0"}
		if !l.AllowHandshake(netip.MustParseAddr(v6[0])) || !l.AllowHandshake(netip.MustParseAddr(v6[1])) {
			t.Fatal("IPv6 burst refused")
		}
		if l.AllowHandshake(netip.MustParseAddr("2001:db8:1:2:dead::1")) {
			t.Fatal("an address of the same /64 has its own bucket")
		}
		if !l.AllowHandshake(netip.MustParseAddr("2001:db8:1:3::1")) {
			t.Fatal("another /64 refused")
		}
		if !l.AllowHandshake(netip.MustParseAddr(v6[2])) {
			t.Fatal("zoned address refused")
		}
		time.Sleep(500 * time.Millisecond)
		if !l.AllowHandshake(a) {
			t.Fatal("refill refused")
		}
		if got := denials(l, LimitHandshakes, ScopeAddress); got != 3 {
			t.Fatalf("handshake denials = %d, want 3", got)
		}
	})
}

// TestBoundedKeys checks that a flood of new keys cannot grow the tables
// past MaxKeys, that keys holding a session survive it, and that a table
// full of such keys refuses newcomers.
func TestBoundedKeys(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newLimiter(t, Config{MaxKeys: numShards * 2, Handshakes: Rate{Rate: 1, Per: time.Hour, Burst: 1}})
		for i := range 10000 {
			a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
			if !l.AllowHandshake(a) {
				t.Fatalf("first handshake of %v refused", a)
			}
		}
		if n := l.ips.len(); n > numShards*2 {
			t.Fatalf("address table holds %d keys, cap %d", n, numShards*2)
		}

		// Sessions pin their keys: fill the subject table with them.
		var sessions []*Session
		full := false
		for i := 0; i < 10000 && !full; i++ {
			s, err := l.OpenSession("app", "", "user"+strings.Repeat("x", i%7)+string(rune('a'+i%26))+itoa(i))
			var le *Error
			switch {
			case err == nil:
				sessions = append(sessions, s)
			case errors.As(err, &le) && le.Limit == LimitCapacity:
				full = true
			default:
				t.Fatal(err)
			}
		}
		if !full {
			t.Fatal("table never filled")
		}
		if n := l.subjects.len(); n > numShards*2 {
			t.Fatalf("subject table holds %d keys, cap %d", n, numShards*2)
		}
		for _, s := range sessions {
			if !s.AllowFrame() || !s.AcquireCall() {
				t.Fatal("an admitted session lost its state")
			}
		}
		// Ending the sessions makes their keys evictable again.
		for _, s := range sessions {
			s.Close()
		}
		time.Sleep(time.Hour)
		for i := range 1000 {
			s, err := l.OpenSession("app", "", "late"+itoa(i))
			if err != nil {
				t.Fatalf("after the sessions ended: %v", err)
			}
			s.Close()
		}
	})
}

func itoa(i int) string {
	var b [20]byte
	n := len(b)
	for {
		n--
		b[n] = byte('0' + i%10)
		i /= 10
		if i == 0 {
			return string(b[n:])
		}
	}
}

// TestConcurrentUse runs sessions on many goroutines; with -race it checks
// the locking, and at the end every count must be back at zero.
func TestConcurrentUse(t *testing.T) {
	l := newLimiter(t, Config{Profiles: map[string]Profile{"default": {
		Identity:    Quota{Sessions: 3, Calls: 2, Subscriptions: 2},
		Application: Quota{Sessions: 20, Calls: 10},
	}}})
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := range 200 {
				s, err := l.OpenSession("app", "", "id"+itoa((g+i)%5))
				if err != nil {
					continue
				}
				s.AllowFrame()
				if s.AcquireCall() && i%2 == 0 {
					s.ReleaseCall()
				}
				s.AcquireSubscription()
				s.Close()
			}
		})
	}
	wg.Wait()
	for i := range l.subjects.shards {
		for k, e := range l.subjects.shards[i].m {
			if e.sessions.Load() != 0 || e.calls.Load() != 0 || e.subscriptions.Load() != 0 {
				t.Errorf("%q: sessions %d calls %d subscriptions %d after all closed", k,
					e.sessions.Load(), e.calls.Load(), e.subscriptions.Load())
			}
		}
	}
}

func TestUnlimited(t *testing.T) {
	l := newLimiter(t, Config{
		Handshakes: Rate{Rate: -1},
		Profiles: map[string]Profile{"default": {
			Identity: Quota{Sessions: -1, Calls: -1, Frames: Rate{Rate: -1}},
		}},
	})
	for range 1000 {
		if !l.AllowHandshake(netip.MustParseAddr("192.0.2.1")) {
			t.Fatal("unlimited handshakes refused")
		}
	}
	s := open(t, l, "app", "a")
	for range 1000 {
		if !s.AllowFrame() {
			t.Fatal("unlimited identity frames refused")
		}
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{MaxKeys: -1}, "limits.max_keys"},
		{Config{Handshakes: Rate{Rate: 1, Per: -time.Second}}, "limits.handshakes_per_ip.per"},
		{Config{Handshakes: Rate{Rate: 1, Burst: -2}}, "limits.handshakes_per_ip.burst"},
		{Config{Profiles: map[string]Profile{"web": {Identity: Quota{Frames: Rate{Rate: 10, Per: -1}}}}}, "limits.profiles.web.identity.frames.per"},
		{Config{Profiles: map[string]Profile{"web": {Application: Quota{Messages: Rate{Rate: 1e9, Per: time.Millisecond}}}}}, "limits.profiles.web.application.messages"},
	} {
		err := tc.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate() = %v, want an error naming %s", err, tc.want)
		}
		if _, err := New(tc.cfg, nil); err == nil {
			t.Errorf("New accepted an invalid config (%s)", tc.want)
		}
	}
	if err := (Config{}).Validate(); err != nil {
		t.Errorf("the zero config (all defaults) is invalid: %v", err)
	}
}

// exampleYAML is the example of docs/security.md; keep them in step.
const exampleYAML = `
max_keys: 100000
handshakes_per_ip: {rate: 10, per: 1s, burst: 20}
profiles:
  default:
    identity:
      sessions: 5
      calls: 4
      subscriptions: 100
      frames: {rate: 50, per: 1s, burst: 100}
      messages: {rate: 60, per: 1m, burst: 20}
    application:
      sessions: 10000
      calls: 5000
      frames: {rate: 20000, per: 1s, burst: 40000}
  click-to-call:
    identity:
      sessions: 1
      calls: 1
      subscriptions: 2
      frames: {rate: 20, per: 1s, burst: 40}
      messages: {rate: 1, per: 1m, burst: 2}
    application:
      calls: 50
`

func TestExampleYAML(t *testing.T) {
	var cfg Config
	dec := yaml.NewDecoder(strings.NewReader(exampleYAML))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	c := cfg.WithDefaults()
	if got := c.Profiles["default"].Identity.Messages; got != (Rate{Rate: 60, Per: time.Minute, Burst: 20}) {
		t.Errorf("messages = %+v", got)
	}
	if got := c.Profiles["click-to-call"].Application.Sessions; got != defaultApplication.Sessions {
		t.Errorf("click-to-call application sessions = %d, want the default", got)
	}
	if !c.HasProfile("click-to-call") || !c.HasProfile("") || c.HasProfile("gold") {
		t.Error("HasProfile wrong")
	}
}
