package limits

import (
	"fmt"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// RegisterConfig bounds the SIP REGISTERs that connect requests make the
// gateway send. While the registrar challenges, every connect that does
// not join an existing binding costs the registrar a REGISTER, and one
// that carries header.authorization is a password guess; these limits
// keep both from being a flood or an online guessing attack.
//
// A zero field takes its default; a negative rate means unlimited, a
// negative backoff.initial no back-off.
type RegisterConfig struct {
	// PerSocket bounds the attempts of one WebSocket. Default 1 per 10s,
	// burst 3: a client needs two (challenged, then answered), three
	// with a stale nonce.
	PerSocket Rate `yaml:"per_socket"`
	// PerIdentity bounds the attempts for one identity, whatever the
	// sockets. Default 6 per minute, burst 10.
	PerIdentity Rate `yaml:"per_identity"`
	// PerAddress bounds the attempts from one source address (IPv6: its
	// /64), whatever the identities: password spraying. Default 10 per
	// second, burst 40: five new registrations a second (each takes two
	// attempts), half the handshakes limits.handshakes_per_ip admits.
	PerAddress Rate `yaml:"per_address"`
	// Backoff refuses an identity's attempts for a while after the
	// registrar rejected its credentials.
	Backoff Backoff `yaml:"backoff"`
}

// Backoff is an exponential back-off: Initial after the first failure,
// doubling with each further failure up to Max, and forgotten at the
// first success or after Max without a failure.
type Backoff struct {
	Initial time.Duration `yaml:"initial"` // default 1s
	Max     time.Duration `yaml:"max"`     // default 5m
}

var defaultRegister = RegisterConfig{
	PerSocket:   Rate{Rate: 1, Per: 10 * time.Second, Burst: 3},
	PerIdentity: Rate{Rate: 6, Per: time.Minute, Burst: 10},
	PerAddress:  Rate{Rate: 10, Per: time.Second, Burst: 40},
	Backoff:     Backoff{Initial: time.Second, Max: 5 * time.Minute},
}

func (c RegisterConfig) withDefaults() RegisterConfig {
	d := defaultRegister
	c.PerSocket = c.PerSocket.withDefaults(d.PerSocket)
	c.PerIdentity = c.PerIdentity.withDefaults(d.PerIdentity)
	c.PerAddress = c.PerAddress.withDefaults(d.PerAddress)
	if c.Backoff.Initial == 0 {
		c.Backoff.Initial = d.Backoff.Initial
	}
	if c.Backoff.Max == 0 {
		c.Backoff.Max = max(d.Backoff.Max, c.Backoff.Initial)
	}
	return c
}

func (c RegisterConfig) validate(key string) []error {
	var errs []error
	errs = append(errs, c.PerSocket.validate(key+".per_socket")...)
	errs = append(errs, c.PerIdentity.validate(key+".per_identity")...)
	errs = append(errs, c.PerAddress.validate(key+".per_address")...)
	if b := c.Backoff; b.Initial > 0 {
		if b.Max < b.Initial || b.Max > 24*time.Hour {
			errs = append(errs, fmt.Errorf("%s.backoff.max: %v is not between backoff.initial (%v) and 24h", key, b.Max, b.Initial))
		}
	}
	return errs
}

// RegisterReason says why a registration attempt was refused; it is the
// "reason" label of jsonrtc_limits_register_denied_total.
type RegisterReason uint8

const (
	RegisterSocket   RegisterReason = iota // the socket's bucket is empty
	RegisterIdentity                       // the identity's bucket is empty
	RegisterAddress                        // the source address's bucket is empty
	RegisterBackoff                        // the identity is backing off after rejected credentials
	RegisterCapacity                       // the table is full (see Config.MaxKeys)
	numRegisterReasons
)

func (r RegisterReason) String() string {
	switch r {
	case RegisterSocket:
		return "socket"
	case RegisterIdentity:
		return "identity"
	case RegisterAddress:
		return "address"
	case RegisterBackoff:
		return "backoff"
	case RegisterCapacity:
		return "capacity"
	}
	return "RegisterReason(" + strconv.Itoa(int(r)) + ")"
}

// RegisterDenied is a refused registration attempt. The gateway answers
// the connect with error 503 (docs/protocol.md §9.2: rate-limited) and
// the time to wait.
type RegisterDenied struct {
	Reason RegisterReason
	// RetryAfter is when an attempt may succeed again (for a bucket,
	// when its next token is due); 0 when unknown.
	RetryAfter time.Duration
}

func (e *RegisterDenied) Error() string {
	return "limits: registration attempts refused (" + e.Reason.String() + "), retry after " + e.RetryAfter.String()
}

// Registers enforces a RegisterConfig. It is safe for concurrent use and
// starts no goroutine. Build it with [NewRegisters].
type Registers struct {
	epoch                     time.Time
	socket, identity, address bucket
	keys                      *table // buckets; keys prefixed s, i, a
	initial, max              int64  // back-off, nanoseconds; initial < 0: none
	maxKeys                   int
	denied                    [numRegisterReasons]atomic.Uint64

	mu       sync.Mutex
	backoffs map[string]*backoff // by identity
}

// backoff is one identity's back-off.
type backoff struct {
	until int64 // attempts are refused before this clock reading
	next  int64 // the length of the next back-off
}

// NewRegisters builds the registration limits of cfg (its Register
// section and MaxKeys), which it validates.
func NewRegisters(cfg Config) (*Registers, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	c := cfg.Register
	return &Registers{
		epoch:    time.Now(),
		socket:   compileRate(c.PerSocket),
		identity: compileRate(c.PerIdentity),
		address:  compileRate(c.PerAddress),
		keys:     newTable(cfg.MaxKeys),
		initial:  int64(c.Backoff.Initial),
		max:      int64(c.Backoff.Max),
		maxKeys:  cfg.MaxKeys,
		backoffs: map[string]*backoff{},
	}, nil
}

// now is the clock: monotonic nanoseconds since NewRegisters, never 0.
func (r *Registers) now() int64 { return int64(time.Since(r.epoch)) + 1 }

// Allow takes one registration attempt for identity from socket (any
// string naming one WebSocket, e.g. its remote address and port) at
// source address addr. Call it just before a REGISTER for a new binding
// goes out. The error is a *RegisterDenied; nothing is taken when the
// identity is backing off.
func (r *Registers) Allow(socket string, addr netip.Addr, identity string) error {
	now := r.now()
	if d := r.backingOff(identity, now); d > 0 {
		return r.deny(RegisterBackoff, d)
	}
	for _, k := range []struct {
		key    string
		b      bucket
		reason RegisterReason
	}{
		{"s" + socket, r.socket, RegisterSocket},
		{"a" + addrKey(addr), r.address, RegisterAddress},
		{"i" + identity, r.identity, RegisterIdentity},
	} {
		if k.b.interval < 0 {
			continue
		}
		ok, wait := false, int64(0)
		if !r.keys.with(k.key, now, func(e *entry) { ok, wait = k.b.takeOrWait(&e.frames, now) }) {
			return r.deny(RegisterCapacity, 0)
		}
		if !ok {
			return r.deny(k.reason, time.Duration(wait))
		}
	}
	return nil
}

// takeOrWait takes one event from the bucket whose theoretical arrival
// time is tat, or reports how long until the next one may be taken.
func (b bucket) takeOrWait(tat *atomic.Int64, now int64) (bool, int64) {
	if gcra(tat, now, b.interval, b.tolerance) {
		return true, 0
	}
	return false, max(1, tat.Load()-b.tolerance-now)
}

func (r *Registers) deny(reason RegisterReason, retry time.Duration) error {
	r.denied[reason].Add(1)
	return &RegisterDenied{Reason: reason, RetryAfter: retry}
}

// backingOff returns how long identity still backs off (0: it does not).
func (r *Registers) backingOff(identity string, now int64) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	if b := r.backoffs[identity]; b != nil && b.until > now {
		return time.Duration(b.until - now)
	}
	return 0
}

// Failed records that the registrar rejected identity's credentials and
// returns the back-off it now serves: backoff.initial after the first
// failure, twice the previous one after each further failure, at most
// backoff.max.
func (r *Registers) Failed(identity string) time.Duration {
	if r.initial < 0 {
		return 0
	}
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.backoffs[identity]
	if b != nil && r.forgettable(b, now) {
		b = nil
	}
	if b == nil {
		if len(r.backoffs) >= r.maxKeys {
			r.makeRoom(now)
		}
		b = &backoff{next: r.initial}
		r.backoffs[identity] = b
	}
	d := b.next
	b.until = now + d
	b.next = min(2*d, r.max)
	return time.Duration(d)
}

// Succeeded ends identity's back-off: its credentials were accepted.
func (r *Registers) Succeeded(identity string) {
	r.mu.Lock()
	delete(r.backoffs, identity)
	r.mu.Unlock()
}

// forgettable: a back-off that ended backoff.max ago starts afresh.
func (r *Registers) forgettable(b *backoff, now int64) bool { return now-b.until >= r.max }

// makeRoom drops the forgettable back-offs, or, when none is, the one
// that ends first; r.mu is held. Failures come only from registrar
// answers, which the buckets bound, so the scan is rare.
func (r *Registers) makeRoom(now int64) {
	var first string
	var firstUntil int64
	for id, b := range r.backoffs {
		if r.forgettable(b, now) {
			delete(r.backoffs, id)
		} else if first == "" || b.until < firstUntil {
			first, firstUntil = id, b.until
		}
	}
	if len(r.backoffs) >= r.maxKeys {
		delete(r.backoffs, first)
	}
}

// Collector returns a Prometheus collector of the refusals,
// jsonrtc_limits_register_denied_total{reason}.
func (r *Registers) Collector() prometheus.Collector { return registerCollector{r} }

var registerDeniedDesc = prometheus.NewDesc("jsonrtc_limits_register_denied_total",
	"Connects refused before they could make the gateway send a REGISTER, by reason.",
	[]string{"reason"}, nil)

type registerCollector struct{ r *Registers }

func (c registerCollector) Describe(ch chan<- *prometheus.Desc) { ch <- registerDeniedDesc }

func (c registerCollector) Collect(ch chan<- prometheus.Metric) {
	for reason := range numRegisterReasons {
		ch <- prometheus.MustNewConstMetric(registerDeniedDesc, prometheus.CounterValue,
			float64(c.r.denied[reason].Load()), reason.String())
	}
}

// Denied returns the refusals for reason since NewRegisters.
func (r *Registers) Denied(reason RegisterReason) uint64 { return r.denied[reason].Load() }
