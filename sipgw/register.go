package sipgw

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
)

// Challenge is a 401/407 digest challenge from the registrar, surfaced so
// the web side can answer it (JSONrtc `authenticate`).
type Challenge struct {
	Proxy     bool // 407 Proxy-Authenticate rather than 401
	Scheme    string
	Realm     string
	Nonce     string
	Algorithm string
	QOP       []string
	Opaque    string
	Stale     bool
	// Method and URI are what a client-computed response must cover.
	Method string
	URI    string
}

// Authorization answers a Challenge (JSONrtc `authorization`): either
// {Username, Realm, HA1} (or a Password), from which the gateway computes
// every response, or one client-computed {Username, Realm, Nonce,
// Response, CNonce, NC, URI, QOP} for exactly one challenge.
type Authorization struct {
	Username string
	Realm    string
	HA1      string
	Password string

	Nonce    string
	Response string
	CNonce   string
	NC       int
	URI      string
	QOP      string
	Proxy    bool
}

// ChallengeError is returned by Register when the registrar challenged
// and nothing available could answer; the gateway sends it to the web
// client as error 401/407 with `authenticate`.
type ChallengeError struct {
	Challenge Challenge
	// Rejected: the challenge answered the web client's credentials,
	// which the registrar refused (errors.Is(err, ErrCredentialsRejected)).
	Rejected bool
}

// Unwrap makes a rejection match ErrCredentialsRejected.
func (e *ChallengeError) Unwrap() error {
	if e.Rejected {
		return ErrCredentialsRejected
	}
	return nil
}

// ErrCredentialsRejected is matched by the error of a REGISTER whose
// credentials the registrar refused: a new challenge that is not stale,
// or 403, after a request that carried them. They are not sent again
// (RFC 3261 section 22.2); the error is a *ChallengeError when the web
// client may answer anew, else it wraps the *ResponseError.
var ErrCredentialsRejected = errors.New("sipgw: registrar rejected the credentials")

func (e *ChallengeError) Error() string {
	code := 401
	if e.Challenge.Proxy {
		code = 407
	}
	return fmt.Sprintf("sipgw: registrar challenged (%d, realm %q)", code, e.Challenge.Realm)
}

// AuthFunc answers a challenge synchronously (e.g. from a credential
// store, or by asking a live web session); it is also used to answer the
// challenges of refreshes and removals. It returns an error matching
// ErrNoAnswer when nothing could answer: during Register that fails with
// *ChallengeError (the web client may answer with its next connect).
type AuthFunc func(ctx context.Context, ch Challenge) (Authorization, error)

// ErrNoAnswer is matched by an AuthFunc's error when nothing could answer
// the challenge (no live session to ask).
var ErrNoAnswer = errors.New("sipgw: nothing can answer the challenge")

// RegisterOptions say how to answer the registrar's challenges. UserAgent
// credentials for the identity (config `credentials`) come first, then
// Authorization, then Auth; with none, Register fails with
// *ChallengeError.
type RegisterOptions struct {
	Authorization *Authorization
	Auth          AuthFunc
	// Admit, when set, is called before the REGISTER of a new binding
	// goes out (not when joining an existing binding, nor for
	// refreshes); its error fails Register with nothing sent. The
	// gateway bounds registration attempts with it.
	Admit func() error
	// Route is where the REGISTERs go (its trunk, with failover; ""
	// the outbound proxy) and, by its Sender's From, the AOR they bind
	// (the application's sip_identity; unset, the identity's AOR).
	// Identity headers and privacy are not for REGISTER: the binding is
	// the AOR's own. A registration joined keeps the route it started
	// with.
	Route Route
	// Instance, when set, is the +sip.instance a new binding registers
	// under instead of this node's own for the identity: that of the
	// binding another node held for a session that moved here, so that
	// the registrar replaces that binding (matched by instance and
	// reg-id, RFC 5626 section 6) with this node's Contact rather than
	// keeping it next to ours, pointing at a node that let go or died.
	// Unused when the identity's binding here is joined; a value that is
	// not a URN is ignored.
	Instance string
}

// ErrRegistrationLost: a refresh failed; the binding is gone.
var ErrRegistrationLost = errors.New("sipgw: registration lost")

// Registration is one holder's share of an identity's registration.
type Registration struct {
	r    *registration
	once sync.Once
}

type registration struct {
	g        *UserAgent
	identity string
	aor      sip.Uri
	trunk    string // RegisterOptions.Route.Trunk
	token    string // the Contact user (identityInstance)
	instance string // +sip.instance
	callID   string
	fromTag  string

	ready chan struct{} // closed when the first REGISTER is decided
	err   error         // set before ready closes

	mu     sync.Mutex // guards below
	cseq   uint32
	refs   int
	auth   AuthFunc
	cred   *Authorization // reusable (HA1 or password)
	lastCh *Challenge     // the challenge cred last answered, with qop=auth
	nc     int            // the nonce-count last used with lastCh's nonce
	// computed is the last client-computed answer the registrar
	// accepted, for the challenge computedCh: the removal sends it again
	// when no reusable credentials are held (see reuseNonce).
	computed   *Authorization
	computedCh Challenge
	granted    time.Duration
	lostErr    error
	gruu       *sip.Uri // the registrar\'s pub-gruu for our binding, if any
	// The flow of the last accepted REGISTER (outbound.go), the
	// registrar's Flow-Timer, whether it said Require: outbound (then
	// the flow is kept alive), and when.
	flow      flow
	flowTimer time.Duration
	outbound  bool
	okAt      time.Time
	flowStats FlowStats

	lost     chan struct{}
	stopCh   chan struct{}
	stopOnce sync.Once
	loopDone chan struct{}
	removed  chan struct{} // closed when stop is over
}

// Register binds identity at the registrar (REGISTER with this node's
// +sip.instance), or joins the existing binding: one registration per
// identity, reference counted across web sessions. It returns once the
// registrar accepted. The binding is refreshed before expiry and removed
// when the last holder calls Release.
func (g *UserAgent) Register(ctx context.Context, identity string, o *RegisterOptions) (*Registration, error) {
	if g.ctx == nil {
		return nil, ErrClosed
	}
	if o == nil {
		o = &RegisterOptions{}
	}
	aor, err := g.AOR(identity)
	if o.Route.Sender.From != "" {
		aor, err = parseIdentityURI("sip_identity", o.Route.Sender.From)
	}
	if err != nil {
		return nil, err
	}
	for {
		g.mu.Lock()
		if g.closed {
			g.mu.Unlock()
			return nil, ErrClosed
		}
		if old := g.leaving[identity]; old != nil {
			// Its removal carries the same Contact as our REGISTER
			// would: sent after it, it would remove our binding.
			g.mu.Unlock()
			select {
			case <-old.removed:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			continue
		}
		r := g.regs[identity]
		if r != nil {
			g.mu.Unlock()
			select {
			case <-r.ready:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			g.mu.Lock()
			if r.err == nil && g.regs[identity] == r {
				r.mu.Lock()
				r.refs++
				if o.Auth != nil {
					r.auth = o.Auth
				}
				r.mu.Unlock()
				g.mu.Unlock()
				return &Registration{r: r}, nil
			}
			g.mu.Unlock()
			if r.err != nil {
				// The concurrent attempt failed; try with our own credentials.
				continue
			}
			continue
		}
		instance, token := g.identityInstance(identity)
		if validInstance(o.Instance) {
			instance = o.Instance
		}
		r = &registration{
			g: g, identity: identity, aor: aor, trunk: o.Route.Trunk, token: token, instance: instance,
			callID: randUUID(), fromTag: sip.GenerateTagN(16), refs: 1, auth: o.Auth,
			ready: make(chan struct{}), lost: make(chan struct{}),
			stopCh: make(chan struct{}), loopDone: make(chan struct{}), removed: make(chan struct{}),
		}
		g.regs[identity] = r
		g.contacts[r.token] = r
		g.mu.Unlock()

		var granted time.Duration
		if o.Admit != nil {
			err = o.Admit()
		}
		if err == nil {
			granted, err = r.send(ctx, g.cfg.RegisterExpiry, o.Authorization)
		}
		if err != nil {
			g.dropReg(r)
			r.err = err
			close(r.ready)
			close(r.loopDone)
			return nil, err
		}
		r.mu.Lock()
		r.granted = granted
		r.mu.Unlock()
		close(r.ready)
		g.log.Info("sipgw: registered", "identity", identity, "expires", granted)
		g.wg.Go(r.refreshLoop)
		return &Registration{r: r}, nil
	}
}

func (g *UserAgent) dropReg(r *registration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.regs[r.identity] == r {
		delete(g.regs, r.identity)
	}
	if g.contacts[r.token] == r {
		delete(g.contacts, r.token)
	}
}

func (g *UserAgent) lookupContact(token string) *registration {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.contacts[token]
}

// Lost is closed when a refresh failed and the binding is gone.
func (h *Registration) Lost() <-chan struct{} { return h.r.lost }

// Err says why the registration was lost.
func (h *Registration) Err() error {
	h.r.mu.Lock()
	defer h.r.mu.Unlock()
	return h.r.lostErr
}

// Expires is the binding lifetime the registrar granted.
func (h *Registration) Expires() time.Duration {
	h.r.mu.Lock()
	defer h.r.mu.Unlock()
	return h.r.granted
}

// Release gives up this holder's share; the last one removes the binding
// (REGISTER Expires: 0) before returning. Safe to call more than once.
func (h *Registration) Release(ctx context.Context) error {
	return h.release(ctx, true)
}

// Handover gives up this holder's share as its session moves to another
// node, which registers the binding under the same instance
// (RegisterOptions.Instance): the last one stops refreshing and leaves
// the binding at the registrar. A removal would take the new node's
// binding away (the registrar matches it by instance), and so would a
// refresh with this node's Contact. Safe to call more than once, and
// after Release (the first call decides).
func (h *Registration) Handover() {
	_ = h.release(context.Background(), false)
}

// Instance is the +sip.instance the binding is registered under.
func (h *Registration) Instance() string { return h.r.instance }

func (h *Registration) release(ctx context.Context, remove bool) error {
	var err error
	h.once.Do(func() {
		r := h.r
		g := r.g
		g.mu.Lock()
		r.mu.Lock()
		r.refs--
		last := r.refs == 0
		r.mu.Unlock()
		if last {
			if g.regs[r.identity] == r {
				delete(g.regs, r.identity)
				g.leaving[r.identity] = r
			}
			if g.contacts[r.token] == r {
				delete(g.contacts, r.token)
			}
		}
		g.mu.Unlock()
		if last {
			err = r.stop(ctx, remove)
		}
	})
	return err
}

// validInstance reports whether v may go in +sip.instance's quotes.
func validInstance(v string) bool {
	return strings.HasPrefix(v, "urn:") && len(v) <= 256 && !hasCtl(v) && !strings.ContainsAny(v, "\"<>\\ ")
}

// stop ends refreshing and, with remove, removes the binding, once.
func (r *registration) stop(ctx context.Context, remove bool) error {
	var err error
	r.stopOnce.Do(func() {
		defer func() {
			g := r.g
			g.mu.Lock()
			if g.leaving[r.identity] == r {
				delete(g.leaving, r.identity)
			}
			g.mu.Unlock()
			close(r.removed)
		}()
		close(r.stopCh)
		<-r.loopDone
		select {
		case <-r.lost:
			return
		default:
		}
		if !remove {
			r.g.dropReg(r)
			r.g.log.Info("sipgw: registration handed over", "identity", r.identity)
			return
		}
		_, err = r.send(ctx, 0, nil)
		r.g.dropReg(r)
		r.g.log.Info("sipgw: unregistered", "identity", r.identity, "err", err)
	})
	return err
}

// refreshLoop refreshes the binding before it expires and, on an
// outbound flow, pings it between refreshes (outbound.go).
func (r *registration) refreshLoop() {
	defer close(r.loopDone)
	// ctx ends keepalives and flow recovery when the registration stops,
	// so that Release does not wait out a pong or a REGISTER's timeout.
	ctx, cancel := context.WithCancel(r.g.ctx)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		select {
		case <-r.stopCh:
			cancel()
		case <-ctx.Done():
		}
	}()
	defer func() {
		cancel()
		<-stopped
	}()
	refreshAt := time.Now().Add(r.refreshIn())
	for {
		wait := time.Until(refreshAt)
		ka, f := r.keepaliveIn()
		ping := ka > 0 && ka < wait
		if ping {
			wait = ka
		}
		if !r.sleep(wait) {
			return
		}
		if ping {
			err := r.g.ping(ctx, f)
			if ctx.Err() != nil {
				return
			}
			r.mu.Lock()
			if err == nil {
				r.flowStats.Answered++
			} else {
				r.flowStats.Failed++
			}
			r.mu.Unlock()
			if err == nil {
				continue
			}
			r.g.rlog.Info("outbound flow", "sipgw: outbound flow failed, registering again", "identity", r.identity, "err", err)
			if !r.recoverFlow(ctx) {
				return
			}
			refreshAt = time.Now().Add(r.refreshIn())
			continue
		}
		ctx, cancel := context.WithTimeout(r.g.ctx, sip.Timer_F)
		granted, err := r.send(ctx, r.g.cfg.RegisterExpiry, nil)
		cancel()
		if err != nil {
			r.lose(err)
			return
		}
		r.mu.Lock()
		r.granted = granted
		r.mu.Unlock()
		refreshAt = time.Now().Add(r.refreshIn())
	}
}

// sleep waits d; false when the registration stopped or the user agent
// closed first.
func (r *registration) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.stopCh:
	case <-r.g.ctx.Done():
	}
	return false
}

// refreshIn is the wait before the next refresh: 4/5 of the granted
// lifetime, at least a second.
func (r *registration) refreshIn() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return max(r.granted*4/5, time.Second)
}

// lose ends the registration after a failed refresh: the binding is gone.
func (r *registration) lose(err error) {
	r.g.rlog.Info("register refresh", "sipgw: registration refresh failed", "identity", r.identity, "err", err)
	r.mu.Lock()
	r.lostErr = fmt.Errorf("%w: %w", ErrRegistrationLost, err)
	r.mu.Unlock()
	r.g.dropReg(r)
	close(r.lost)
}

func (r *registration) newRequest(expires time.Duration, h nextHop) *sip.Request {
	g := r.g
	req := sip.NewRequest(sip.REGISTER, *g.regURI.Clone())
	from := &sip.FromHeader{Address: *r.aor.Clone(), Params: sip.NewParams()}
	from.Params.Add("tag", r.fromTag)
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: *r.aor.Clone(), Params: sip.NewParams()})
	cid := sip.CallIDHeader(r.callID)
	req.AppendHeader(&cid)
	r.mu.Lock()
	r.cseq++
	seq := r.cseq
	r.mu.Unlock()
	req.AppendHeader(&sip.CSeqHeader{SeqNo: seq, MethodName: sip.REGISTER})
	h.set(req)
	ct := g.contactHeader(r.token)
	ct.Params.Add("+sip.instance", `"<`+r.instance+`>"`)
	if g.outbound {
		// RFC 5626 section 4.2: reg-id with +sip.instance asks for
		// the binding to be tied to this flow, which outbound.go
		// keeps alive.
		ct.Params.Add("reg-id", regID)
	}
	req.AppendHeader(&ct)
	req.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(int(expires/time.Second))))
	// RFC 5627: with our +sip.instance, a registrar that assigns GRUUs
	// returns them in the 200 (keepGRUU).
	req.AppendHeader(sip.NewHeader("Supported", registerSupported(g.outbound)))
	req.AppendHeader(sip.NewHeader("User-Agent", g.cfg.UserAgent))
	return req
}

// send does one REGISTER (expires 0 removes) through the registration's
// trunk: to its first proxy up, then, after a 503, a 408 or no answer,
// to the next, as a new transaction of the same Call-ID (RFC 3263
// section 4.3), as INVITE and MESSAGE do (trunk.go).
func (r *registration) send(ctx context.Context, expires time.Duration, preset *Authorization) (time.Duration, error) {
	hops, err := r.g.hops(Route{Trunk: r.trunk})
	if err != nil {
		return 0, err
	}
	for i, h := range hops {
		granted, err := r.sendVia(ctx, expires, preset, h)
		if i == len(hops)-1 || ctx.Err() != nil || r.g.ctx.Err() != nil || !registerFailsOver(err) {
			return granted, err
		}
		r.g.rlog.Info("register failover", "sipgw: REGISTER failed over to the next proxy", "trunk", r.trunk, "err", err)
	}
	return 0, ErrTrunkDown // no hops: hops returned an error instead
}

// registerFailsOver reports whether a REGISTER's failure is the proxy's
// (no answer, 503, 408), not the registrar's verdict on the binding.
func registerFailsOver(err error) bool {
	var re *ResponseError
	var ne *net.OpError
	switch {
	case err == nil:
		return false
	case errors.As(err, &re):
		return !errors.Is(err, ErrCredentialsRejected) && (re.Code == 503 || re.Code == 408)
	}
	return errors.Is(err, sip.ErrTransactionTimeout) || errors.Is(err, sip.ErrTransactionTransport) || errors.As(err, &ne)
}

// sendVia does one REGISTER through h, answering challenges, and
// returns the granted expiry. Credentials the registrar refused are never
// sent again (RFC 3261 section 22.2): only a new challenge with
// stale=true, which says the credentials were right and the nonce old,
// justifies a retry with them.
func (r *registration) sendVia(ctx context.Context, expires time.Duration, preset *Authorization, h nextHop) (time.Duration, error) {
	g := r.g
	req := r.newRequest(expires, h)
	authed := false             // req carries credentials computed for the last challenge
	var computed *Authorization // the client-computed answer req carries
	var computedCh Challenge
	if preset != nil && preset.Response != "" {
		ch := Challenge{Proxy: preset.Proxy, Realm: preset.Realm, Nonce: preset.Nonce, Method: "REGISTER", URI: g.regURI.String()}
		if err := applyAuth(req, ch, *preset); err != nil {
			return 0, err
		}
		authed = true
		computed, computedCh = preset, ch
	} else if err := r.reuseNonce(req, expires); err != nil {
		return 0, err
	}
	for attempt := 0; ; attempt++ {
		g.track()
		res, err := g.cli.Do(ctx, req)
		g.untrack()
		if err == nil && res == nil {
			// sipgo ends a transaction it terminated (the user agent
			// closing) with neither response nor error.
			err = sip.ErrTransactionTerminated
		}
		if err != nil {
			return 0, fmt.Errorf("sipgw: REGISTER %s: %w", r.identity, err)
		}
		if res.IsSuccess() {
			r.noteFlow(res)
			if computed != nil {
				r.mu.Lock()
				r.computed, r.computedCh = computed, computedCh
				r.mu.Unlock()
			}
			return r.grantedExpiry(res, expires), nil
		}
		if res.StatusCode != 401 && res.StatusCode != 407 {
			re := &ResponseError{Code: res.StatusCode, Reason: res.Reason}
			if authed && res.StatusCode == 403 {
				return 0, fmt.Errorf("%w: %w", ErrCredentialsRejected, re)
			}
			return 0, re
		}
		ch, err := parseChallenge(res, "REGISTER", g.regURI.String())
		if err != nil {
			return 0, err
		}
		if authed && !ch.Stale {
			if _, held := g.cfg.Credentials[r.identity]; held || preset == nil {
				// The gateway's own credentials (sip.credentials, or
				// those a refresh reuses): the web client cannot help.
				return 0, fmt.Errorf("%w: %w", ErrCredentialsRejected, &ResponseError{Code: res.StatusCode, Reason: res.Reason})
			}
			// The web client's credentials: its next connect may
			// answer this new challenge.
			return 0, &ChallengeError{Challenge: ch, Rejected: true}
		}
		if attempt >= 2 {
			// Stale again and again: a registrar that never takes its
			// own nonces.
			return 0, &ResponseError{Code: res.StatusCode, Reason: res.Reason}
		}
		a, err := r.answer(ctx, ch, preset)
		if err != nil {
			return 0, err
		}
		if a.Response == "" {
			a.NC = 0 // a fresh nonce: the count starts at 1
		}
		req = r.newRequest(expires, h)
		if err := applyAuth(req, ch, a); err != nil {
			return 0, err
		}
		authed = true
		computed = nil
		if a.Response != "" {
			computed, computedCh = &a, ch
		}
		if a.HA1 != "" || a.Password != "" {
			r.mu.Lock()
			r.cred, r.lastCh, r.nc = &a, nil, 1
			if slices.Contains(ch.QOP, "auth") {
				r.lastCh = &ch
			}
			r.mu.Unlock()
		}
	}
}

// reuseNonce answers, in advance, the challenge that the gateway's
// reusable credentials last answered, with the next nonce-count (RFC
// 2617 section 3.2.2; only with qop=auth, where the count keeps each
// response new): a refresh or removal then costs the registrar one
// REGISTER instead of two. A registrar that no longer takes the nonce
// challenges anew, which send answers as it would a first challenge:
// the credentials went with an old nonce, not rejected.
//
// Without such credentials (the web client computed each response), the
// removal (expires 0) carries the last computed answer the registrar
// accepted, unchanged: a registrar that still takes its nonce and does not
// track nonce-counts (Kamailio's default) removes the binding with it,
// when no web session is left to answer a new challenge. Refreshes never
// resend it: they ask a live session (the AuthFunc).
func (r *registration) reuseNonce(req *sip.Request, expires time.Duration) error {
	r.mu.Lock()
	if r.cred == nil || r.lastCh == nil {
		last, ch := r.computed, r.computedCh
		if r.cred != nil {
			last = nil
		}
		r.mu.Unlock()
		if expires == 0 && last != nil {
			return applyAuth(req, ch, *last)
		}
		return nil
	}
	r.nc++
	a, ch := *r.cred, *r.lastCh
	a.NC = r.nc
	r.mu.Unlock()
	return applyAuth(req, ch, a)
}

// answer picks the credentials for a challenge.
func (r *registration) answer(ctx context.Context, ch Challenge, preset *Authorization) (Authorization, error) {
	if c, ok := r.g.cfg.Credentials[r.identity]; ok {
		user := c.Username
		if user == "" {
			user = r.aor.User
		}
		return Authorization{Username: user, Realm: c.Realm, HA1: c.HA1, Password: c.Password}, nil
	}
	if preset != nil && (preset.HA1 != "" || preset.Password != "") {
		return *preset, nil
	}
	r.mu.Lock()
	cred, auth := r.cred, r.auth
	r.mu.Unlock()
	if cred != nil {
		return *cred, nil
	}
	if auth != nil {
		a, err := auth(ctx, ch)
		if errors.Is(err, ErrNoAnswer) {
			return a, &ChallengeError{Challenge: ch}
		}
		if err != nil {
			return a, fmt.Errorf("sipgw: answering challenge: %w", err)
		}
		return a, nil
	}
	return Authorization{}, &ChallengeError{Challenge: ch}
}

func parseChallenge(res *sip.Response, method, uri string) (Challenge, error) {
	name, proxy := "WWW-Authenticate", false
	if res.StatusCode == 407 {
		name, proxy = "Proxy-Authenticate", true
	}
	h := res.GetHeader(name)
	if h == nil {
		return Challenge{}, &ResponseError{Code: res.StatusCode, Reason: "challenge without " + name}
	}
	c, err := digest.ParseChallenge(h.Value())
	if err != nil {
		return Challenge{}, fmt.Errorf("sipgw: %s: %w", name, err)
	}
	return Challenge{
		Proxy: proxy, Scheme: "Digest", Realm: c.Realm, Nonce: c.Nonce,
		Algorithm: strings.ToUpper(c.Algorithm), QOP: c.QOP, Opaque: c.Opaque, Stale: c.Stale,
		Method: method, URI: uri,
	}, nil
}

// applyAuth adds Authorization or Proxy-Authorization to req.
func applyAuth(req *sip.Request, ch Challenge, a Authorization) error {
	for _, s := range []string{a.Username, a.Realm, a.HA1, a.Nonce, a.Response, a.CNonce, a.URI, a.QOP} {
		if hasCtl(s) || strings.ContainsAny(s, `"\`) || len(s) > 256 {
			return invalid("authorization field")
		}
	}
	if a.Username == "" {
		return invalid("authorization without username")
	}
	var cred *digest.Credentials
	if a.Response != "" {
		uri := a.URI
		if uri == "" {
			uri = ch.URI
		}
		nonce := a.Nonce
		if nonce == "" {
			nonce = ch.Nonce
		}
		realm := a.Realm
		if realm == "" {
			realm = ch.Realm
		}
		cred = &digest.Credentials{
			Username: a.Username, Realm: realm, Nonce: nonce, URI: uri, Response: a.Response,
			Algorithm: ch.Algorithm, Cnonce: a.CNonce, Opaque: ch.Opaque, QOP: a.QOP, Nc: a.NC,
		}
	} else {
		if a.HA1 != "" && a.Realm != "" && a.Realm != ch.Realm {
			return invalid("ha1 is for realm %q, challenge is for %q", a.Realm, ch.Realm)
		}
		if a.HA1 == "" && a.Password == "" {
			return invalid("authorization without ha1, password or response")
		}
		chal := &digest.Challenge{Realm: ch.Realm, Nonce: ch.Nonce, Opaque: ch.Opaque, Algorithm: ch.Algorithm, QOP: ch.QOP}
		var err error
		cred, err = digest.Digest(chal, digest.Options{
			Method: ch.Method, URI: ch.URI, Username: a.Username, Password: a.Password, A1: a.HA1, Count: a.NC,
		})
		if err != nil {
			return fmt.Errorf("sipgw: digest: %w", err)
		}
	}
	name := "Authorization"
	if ch.Proxy {
		name = "Proxy-Authorization"
	}
	req.RemoveHeader(name)
	req.AppendHeader(sip.NewHeader(name, cred.String()))
	return nil
}

func (r *registration) grantedExpiry(res *sip.Response, asked time.Duration) time.Duration {
	for _, h := range res.GetHeaders("Contact") {
		ct, ok := h.(*sip.ContactHeader)
		if !ok || ct.Address.User != r.token {
			continue
		}
		r.keepGRUU(ct)
		if v, ok := ct.Params.Get("expires"); ok {
			if n, err := strconv.Atoi(v); err == nil {
				return time.Duration(n) * time.Second
			}
		}
	}
	if h := res.GetHeader("Expires"); h != nil {
		if n, err := strconv.Atoi(strings.TrimSpace(h.Value())); err == nil {
			return time.Duration(n) * time.Second
		}
	}
	return asked
}

// keepGRUU records the public GRUU (RFC 5627 section 5) the registrar
// assigned to our binding, from its Contact in the 200; the binding's
// dialogs then use it as their Contact (UserAgent.dialogContact). The
// temp-gruu is not used: the web identity is no secret to its peers.
func (r *registration) keepGRUU(ct *sip.ContactHeader) {
	v, ok := quotedParam(ct.Params, "pub-gruu")
	if !ok {
		return
	}
	var u sip.Uri
	if err := sip.ParseUri(v, &u); err != nil || (u.Scheme != "sip" && u.Scheme != "sips") || hasCtl(v) {
		r.g.log.Debug("sipgw: pub-gruu ignored", "identity", r.identity, "value", v)
		return
	}
	r.mu.Lock()
	r.gruu = &u
	r.mu.Unlock()
}

// GRUU is the registrar's public GRUU for the identity's binding, or ""
// when it assigned none.
func (h *Registration) GRUU() string {
	h.r.mu.Lock()
	defer h.r.mu.Unlock()
	if h.r.gruu == nil {
		return ""
	}
	return h.r.gruu.String()
}

// dialogContact is the Contact of identity's dialogs: its binding's
// GRUU when the registrar assigned one (RFC 5627 section 4.4: requests
// to it reach this binding, through the registrar's domain), else def.
// A node of a cluster always uses def, its own: the binding follows the
// identity's session from node to node, the call does not (its target
// refresh is sent once, at an adoption), so a GRUU in the dialog sent
// the peer's requests to the session's node, which answered 481.
func (g *UserAgent) dialogContact(identity string, def sip.ContactHeader) sip.ContactHeader {
	if g.clustered {
		return def
	}
	g.mu.Lock()
	r := g.regs[identity]
	g.mu.Unlock()
	if r == nil {
		return def
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.gruu == nil {
		return def
	}
	return sip.ContactHeader{Address: *r.gruu.Clone(), Params: sip.NewParams()}
}

// quotedParam returns the value of a header parameter that is a quoted
// string, unquoted. sipgo splits parameters at every ';', also inside
// quotes (a GRUU's own ";gr=..."): the pieces are joined back.
func quotedParam(params sip.HeaderParams, name string) (string, bool) {
	for i, kv := range params {
		if !strings.EqualFold(kv.K, name) {
			continue
		}
		v := kv.V
		if !strings.HasPrefix(v, `"`) {
			return v, true
		}
		for _, next := range params[i+1:] {
			if len(v) > 1 && strings.HasSuffix(v, `"`) {
				break
			}
			v += ";" + next.K
			if next.V != "" {
				v += "=" + next.V
			}
		}
		if len(v) < 2 || !strings.HasSuffix(v, `"`) {
			return "", false
		}
		return v[1 : len(v)-1], true
	}
	return "", false
}
