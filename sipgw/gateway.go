package sipgw

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/jsonrtc/jsonrtc/internal/ratelog"
	"github.com/jsonrtc/jsonrtc/routing"
	"github.com/jsonrtc/jsonrtc/transport/certs"
)

// ErrClosed is returned by every operation after [UserAgent.Close].
var ErrClosed = errors.New("sipgw: gateway closed")

// ErrOverloaded is returned by Dial when max_calls calls are live.
var ErrOverloaded = errors.New("sipgw: too many calls")

// UserAgent is the SIP user agent of jsonrtc: registrations for web
// identities, and INVITE dialogs paired with web call subsessions.
// Build it with [New], set the incoming call handler with
// [UserAgent.OnIncomingCall], then [UserAgent.Start]; [UserAgent.Close] ends
// everything and waits for every goroutine it started.
type UserAgent struct {
	cfg Config
	log *slog.Logger
	// rlog: lines that frames and SIP messages from outside cause (ratelog).
	rlog   *ratelog.Logger
	secret []byte // instance.go
	// balancers are sip.balancers, parsed (balancer.go).
	balancers []netip.Prefix

	ua     *sipgo.UserAgent
	srv    *sipgo.Server
	cli    *sipgo.Client
	dua    *sipgo.DialogUA
	route  *sip.Uri                 // outbound proxy, as a loose route
	trunks atomic.Pointer[trunkSet] // trunk.go
	// routing is the configuration incoming calls and messages take
	// their transformations from ([UserAgent.SetRouting]).
	routing atomic.Pointer[routing.Router]
	regURI  sip.Uri
	allow   string // the Allow value: the methods routes handles
	onCall  func(*Call)
	started atomic.Bool
	guard   *guard // malformed requests: guard.go

	// infoPkgs: the declared Info Packages (request.go).
	infoPkgs atomic.Pointer[func() []string]
	// receives and onDeclared: the declared NOTIFY, MESSAGE and UPDATE
	// the peer sends (request.go).
	receives   atomic.Pointer[func(inDialog bool, method, mark string) bool]
	onDeclared atomic.Pointer[func(*InfoRequest)]
	// outbound: REGISTERs use RFC 5626 (Config.Outbound); pongs wakes
	// the keepalives of their flows (outbound.go).
	outbound bool
	pongs    pongs
	// clustered: Options.Clustered (dialogContact).
	clustered bool
	// tlsRoots are the authorities the TLS connections we dial trust;
	// nil: the system's. Tests set theirs before Start.
	tlsRoots *x509.CertPool

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // every goroutine we start

	// mu guards the maps below and closed. Never held across I/O.
	mu       sync.Mutex
	closed   bool
	pconns   []net.PacketConn
	lns      []net.Listener
	addrs    map[string]string
	calls    map[*Call]struct{}
	dialogs  map[string]*Call // by sipgo dialog ID
	regs     map[string]*registration
	leaving  map[string]*registration // released, removal in progress
	contacts map[string]*registration // by contact user token
	ev       eventState               // subscriptions, publications, messages: events.go

	txs     atomic.Int64 // transactions in progress (ours and the peer's)
	callSeq atomic.Uint64
}

// Stats counts live state; tests assert all zero after a call ends.
type Stats struct {
	Calls         int
	Dialogs       int
	Transactions  int
	Registrations int
}

// Options configure a UserAgent.
type Options struct {
	// Logger receives the user agent's logs; nil discards them.
	Logger *slog.Logger
	// Trunks are the SIP destinations a [Route] names (routing.trunks),
	// each an ordered failover list of proxies (trunk.go).
	Trunks map[string]routing.TrunkConfig
	// Routing gives the transformations (routing.headers, to_web) of
	// incoming calls and messages; outgoing ones carry theirs in their
	// Route. Nil: none.
	Routing *routing.Router
	// Clustered: this user agent is one node of a cluster of gateways
	// (docs/cluster.md), where an identity's binding moves with its
	// session and a call stays on the node that hosts it. Its dialogs
	// then carry the node's own Contact, never the binding's GRUU: the
	// GRUU leads the peer's in-dialog requests to wherever the binding
	// is, which need not be the call's node, and that node has no
	// dialog to answer them with but 481.
	Clustered bool
}

// New checks cfg and builds a user agent. Nothing listens before Start.
func New(cfg Config, o *Options) (*UserAgent, error) {
	var opts Options // nil: the defaults
	if o != nil {
		opts = *o
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	g := &UserAgent{
		cfg:      cfg,
		log:      logger,
		rlog:     ratelog.New(logger, nil),
		addrs:    map[string]string{},
		calls:    map[*Call]struct{}{},
		dialogs:  map[string]*Call{},
		regs:     map[string]*registration{},
		leaving:  map[string]*registration{},
		contacts: map[string]*registration{},
		outbound: cfg.outboundOn(),

		clustered: opts.Clustered,
	}
	g.routing.Store(opts.Routing)
	var err error
	if g.secret, err = loadInstanceSecret(cfg); err != nil {
		return nil, err
	}
	for _, b := range cfg.Balancers {
		p, err := parsePrefix(b)
		if err != nil {
			return nil, fmt.Errorf("sipgw: balancers: %w", err)
		}
		g.balancers = append(g.balancers, p)
	}
	if g.regURI, err = parseServerURI(cfg.Registrar); err != nil {
		return nil, fmt.Errorf("sipgw: registrar: %w", err)
	}
	if cfg.OutboundProxy != "" {
		u, err := parseServerURI(cfg.OutboundProxy)
		if err != nil {
			return nil, fmt.Errorf("sipgw: outbound_proxy: %w", err)
		}
		u.UriParams = sip.NewParams()
		u.UriParams.Add("lr", "")
		if cfg.Transport != "udp" {
			u.UriParams.Add("transport", cfg.Transport)
		}
		g.route = &u
	}
	trunks, err := g.newTrunks(opts.Trunks)
	if err != nil {
		return nil, err
	}
	g.trunks.Store(trunks)
	return g, nil
}

// OnIncomingCall sets the function called, on its own goroutine, for each
// INVITE to a registered identity. It must be set before Start; without
// it incoming calls get 480.
func (g *UserAgent) OnIncomingCall(f func(*Call)) { g.onCall = f }

// Start binds the listeners and serves SIP until Close. It returns once
// every listener is bound; ctx only bounds the start itself.
func (g *UserAgent) Start(ctx context.Context) error {
	if !g.started.CompareAndSwap(false, true) {
		return errors.New("sipgw: already started")
	}
	lc := net.ListenConfig{}
	var tlsConf *tls.Config
	if g.cfg.Listen.TLS != "" {
		// The certificate is reloaded when its files are renewed, as the
		// WebSocket side's is.
		r, err := certs.New(g.cfg.Listen.TLSCert, g.cfg.Listen.TLSKey, &certs.Options{Logger: g.log})
		if err != nil {
			return fmt.Errorf("sipgw: listen.tls_cert: %w", err)
		}
		tlsConf = r.Config()
	}
	// Bind first: the advertised port must be known before sipgo builds
	// Via and Contact headers.
	var udp net.PacketConn
	var tcpLn, tlsLn net.Listener
	var err error
	if a := g.cfg.Listen.UDP; a != "" {
		if udp, err = lc.ListenPacket(ctx, "udp", a); err != nil {
			return fmt.Errorf("sipgw: listen.udp: %w", err)
		}
		g.pconns = append(g.pconns, udp)
		g.addrs["udp"] = udp.LocalAddr().String()
	}
	if a := g.cfg.Listen.TCP; a != "" {
		if tcpLn, err = lc.Listen(ctx, "tcp", a); err != nil {
			g.closeListeners()
			return fmt.Errorf("sipgw: listen.tcp: %w", err)
		}
		g.lns = append(g.lns, tcpLn)
		g.addrs["tcp"] = tcpLn.Addr().String()
	}
	if a := g.cfg.Listen.TLS; a != "" {
		ln, err := lc.Listen(ctx, "tcp", a)
		if err != nil {
			g.closeListeners()
			return fmt.Errorf("sipgw: listen.tls: %w", err)
		}
		tlsLn = tls.NewListener(ln, tlsConf)
		g.lns = append(g.lns, tlsLn)
		g.addrs["tls"] = ln.Addr().String()
	}

	uaOpts := []sipgo.UserAgentOption{
		sipgo.WithUserAgent(g.cfg.UserAgent),
		sipgo.WithUserAgentHostname(g.cfg.Domain),
		// sipgo logs what the network sends it (an unparsable message
		// at Error, with its bytes): within budgets, keyed by message.
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerLogger(g.sipgoLog())),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(g.sipgoLog()), sip.WithTransportLayerReadFilter(g.pongs.filter)),
	}
	if tlsConf != nil {
		uaOpts = append(uaOpts, sipgo.WithUserAgenTLSConfig(&tls.Config{MinVersion: tls.VersionTLS12, RootCAs: g.tlsRoots}))
	}
	if g.ua, err = sipgo.NewUA(uaOpts...); err != nil {
		g.closeListeners()
		return fmt.Errorf("sipgw: user agent: %w", err)
	}
	// sipgo reads through the guard, which answers malformed requests
	// (guard.go) and otherwise hands sipgo the bytes unchanged.
	g.guard = newGuard(g.log)
	g.ua.TransportLayer().OnMessage(g.guard.onMessage)
	if udp != nil {
		udp = &guardedPacketConn{PacketConn: udp, gd: g.guard}
	}
	if tcpLn != nil {
		tcpLn = &guardedListener{Listener: tcpLn, gd: g.guard, network: "TCP"}
	}
	if tlsLn != nil {
		tlsLn = &guardedListener{Listener: tlsLn, gd: g.guard, network: "TLS"}
	}
	_, port, _ := net.SplitHostPort(g.addrs[g.cfg.Transport])
	pn, _ := strconv.Atoi(port)
	cliOpts := []sipgo.ClientOption{
		sipgo.WithClientLogger(g.sipgoLog()),
		sipgo.WithClientHostname(g.cfg.AdvertisedHost),
		sipgo.WithClientPort(pn),
	}
	if g.cfg.Transport == "udp" {
		// Send from the listening socket so that replies and in-dialog
		// requests come back where we listen.
		cliOpts = append(cliOpts, sipgo.WithClientConnectionAddr(g.addrs["udp"]))
	}
	if g.cli, err = sipgo.NewClient(g.ua, cliOpts...); err != nil {
		g.closeListeners()
		return fmt.Errorf("sipgw: client: %w", err)
	}
	// Without a UDP transport the requester moves nothing (no tcpPort):
	// it is there for the User-Agent every request gets.
	r := &sizedRequester{txl: g.ua.TransactionLayer(), tpl: g.ua.TransportLayer(), log: g.rlog, udpPort: pn}
	if g.cfg.Transport == "udp" {
		// The address WithClientConnectionAddr gives every request.
		h, _, _ := net.SplitHostPort(g.addrs["udp"])
		r.udpLaddr = sip.Addr{IP: net.ParseIP(h), Port: pn, Hostname: h}
		if _, p, err := net.SplitHostPort(g.addrs["tcp"]); err == nil {
			r.tcpPort, _ = strconv.Atoi(p)
		} else {
			g.log.Warn("sipgw: no TCP listener: requests over 1300 bytes (a browser's SDP offer) go over UDP, as IP fragments, where RFC 3261 18.1.1 wants TCP; set listen.tcp",
				"key", "listen.tcp")
		}
	}
	g.cli.TxRequester = stampRequester{next: r, ua: g.cfg.UserAgent}
	if g.srv, err = sipgo.NewServer(g.ua, sipgo.WithServerLogger(g.sipgoLog())); err != nil {
		g.closeListeners()
		return fmt.Errorf("sipgw: server: %w", err)
	}
	g.dua = &sipgo.DialogUA{Client: g.cli, ContactHDR: g.contactHeader("gw")}
	g.routes()
	g.ctx, g.cancel = context.WithCancel(context.Background())

	serve := func(name string, f func() error) {
		g.wg.Go(func() {
			if err := f(); err != nil && g.ctx.Err() == nil {
				g.log.Error("sipgw: listener stopped", "transport", name, "err", err)
			}
		})
	}
	if udp != nil {
		// sipgo puts the UDP socket in its connection pool only once the
		// read loop started by ServeUDP runs; a request sent before that
		// would make it bind the same address again (EADDRINUSE). Put the
		// socket in the pool ourselves first, so that the client finds it
		// from the moment Start returns. ServeUDP later replaces the entry
		// with its own wrapper of the same socket.
		g.ua.TransportLayer().Pool("udp").Add(g.addrs["udp"], &sip.UDPConnection{
			PacketConn: udp, PacketAddr: g.addrs["udp"], Listener: true,
		})
		serve("udp", func() error { return g.srv.ServeUDP(udp) })
	}
	if tcpLn != nil {
		serve("tcp", func() error { return g.srv.ServeTCP(tcpLn) })
	}
	if tlsLn != nil {
		serve("tls", func() error { return g.srv.ServeTLS(tlsLn) })
	}
	g.mu.Lock()
	g.startHealthChecks(g.trunks.Load())
	g.mu.Unlock()
	g.log.Info("sipgw: started", "udp", g.addrs["udp"], "tcp", g.addrs["tcp"], "tls", g.addrs["tls"])
	return nil
}

// Addr returns the bound address of a listener ("udp", "tcp", "tls"), or
// "" when there is none.
func (g *UserAgent) Addr(transport string) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.addrs[transport]
}

// Stats returns the live counts.
func (g *UserAgent) Stats() Stats {
	g.mu.Lock()
	defer g.mu.Unlock()
	return Stats{Calls: len(g.calls), Dialogs: len(g.dialogs), Transactions: int(g.txs.Load()), Registrations: len(g.regs)}
}

// closeTimeout bounds what Close waits for the hang-ups and
// unregistrations it sends.
const closeTimeout = 5 * time.Second

// Close hangs up every call and removes every registration, for as long
// as ctx allows (at most closeTimeout), gives up what the calls still
// have in flight, then stops the listeners and waits for every
// goroutine. It is safe to call more than once.
func (g *UserAgent) Close(ctx context.Context) error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return nil
	}
	g.closed = true
	calls := make([]*Call, 0, len(g.calls))
	for c := range g.calls {
		calls = append(calls, c)
	}
	regs := make([]*registration, 0, len(g.regs))
	for _, r := range g.regs {
		regs = append(regs, r)
	}
	g.mu.Unlock()
	if !g.started.Load() {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, closeTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, c := range calls {
		wg.Go(func() { _ = c.Hangup(ctx) })
	}
	for _, r := range regs {
		wg.Go(func() { r.stop(ctx, true) })
	}
	wg.Go(func() { g.closeEvents(ctx) })
	wg.Wait()
	g.cancel()
	for _, c := range calls {
		// What a call still has in flight past the bound is given up:
		// a failed adoption's BYE (Adopt) waits up to Timer F, 32 s.
		c.lifeCancel()
		<-c.done
	}
	err := g.ua.Close()
	g.closeListeners()
	g.wg.Wait()
	g.log.Info("sipgw: closed")
	return err
}

func (g *UserAgent) closeListeners() {
	for _, c := range g.pconns {
		_ = c.Close()
	}
	for _, l := range g.lns {
		_ = l.Close()
	}
}

// contactHeader is our Contact for a given user part, on the transport we
// originate on.
func (g *UserAgent) contactHeader(user string) sip.ContactHeader {
	_, port, _ := net.SplitHostPort(g.addrs[g.cfg.Transport])
	pn, _ := strconv.Atoi(port)
	u := sip.Uri{Scheme: "sip", User: user, Host: g.cfg.AdvertisedHost, Port: pn, UriParams: sip.NewParams()}
	if g.cfg.Transport == "tls" {
		u.Scheme = "sips"
	}
	u.UriParams.Add("transport", g.cfg.Transport)
	return sip.ContactHeader{Address: u, Params: sip.NewParams()}
}

// track counts a transaction for Stats until untrack; a pair of calls
// rather than a returned func, which would cost two allocations per
// transaction.
func (g *UserAgent) track() { g.txs.Add(1) }

func (g *UserAgent) untrack() { g.txs.Add(-1) }

// routes installs the request handlers. Each handler runs on a sipgo
// goroutine and returns only when its transaction needs nothing more.
func (g *UserAgent) routes() {
	wrap := func(h sipgo.RequestHandler) sipgo.RequestHandler {
		return func(req *sip.Request, tx sip.ServerTransaction) {
			g.track()
			defer g.untrack()
			h(req, stampedTx{ServerTransaction: tx, server: g.cfg.UserAgent})
		}
	}
	g.srv.OnInvite(wrap(g.handleInvite))
	g.srv.OnAck(g.handleAck) // no transaction
	g.srv.OnBye(wrap(g.inDialog))
	g.srv.OnPrack(wrap(g.inDialog))
	g.srv.OnInfo(wrap(g.inDialog))
	g.srv.OnRefer(wrap(g.inDialog))
	g.srv.OnUpdate(wrap(g.inDialog))
	g.eventRoutes(wrap) // NOTIFY (then calls' inDialog), MESSAGE: events.go
	g.srv.OnCancel(wrap(func(req *sip.Request, tx sip.ServerTransaction) {
		// Matched CANCELs are absorbed by the transaction layer.
		g.respond(tx, req, 481, "Call/Transaction Does Not Exist")
	}))
	g.srv.OnOptions(wrap(func(req *sip.Request, tx sip.ServerTransaction) {
		res := sip.NewResponseFromRequest(req, 200, "OK", nil)
		res.AppendHeader(sip.NewHeader("Allow", g.allow))
		g.setSupported(res, true, true)
		_ = tx.Respond(res)
	}))
	g.srv.OnNoRoute(wrap(func(req *sip.Request, tx sip.ServerTransaction) {
		res := sip.NewResponseFromRequest(req, 405, "Method Not Allowed", nil)
		res.AppendHeader(sip.NewHeader("Allow", g.allow))
		_ = tx.Respond(res)
	}))
	g.allow = allowList(g.srv.RegisteredMethods())
}

func (g *UserAgent) respond(tx sip.ServerTransaction, req *sip.Request, code int, reason string) {
	if err := tx.Respond(sip.NewResponseFromRequest(req, code, reason, nil)); err != nil {
		g.log.Debug("sipgw: respond failed", "code", code, "err", err)
	}
}

// findDialog returns the call an in-dialog request belongs to.
func (g *UserAgent) findDialog(req *sip.Request) *Call {
	g.mu.Lock()
	defer g.mu.Unlock()
	if id, err := sip.DialogIDFromRequestUAS(req); err == nil {
		if c := g.dialogs[id]; c != nil {
			return c
		}
	}
	if id, err := sip.DialogIDFromRequestUAC(req); err == nil {
		if c := g.dialogs[id]; c != nil {
			return c
		}
	}
	return nil
}

func (g *UserAgent) handleInvite(req *sip.Request, tx sip.ServerTransaction) {
	if to := req.To(); to != nil && to.Params.Has("tag") {
		c := g.findDialog(req)
		if c == nil {
			g.respond(tx, req, 481, "Call/Transaction Does Not Exist")
			return
		}
		c.handleReinvite(req, tx)
		return
	}
	g.handleNewInvite(req, tx)
}

func (g *UserAgent) handleAck(req *sip.Request, tx sip.ServerTransaction) {
	if c := g.findDialog(req); c != nil {
		c.handleAck(req)
	}
}

func (g *UserAgent) inDialog(req *sip.Request, tx sip.ServerTransaction) {
	c := g.findDialog(req)
	if c == nil {
		g.respond(tx, req, 481, "Call/Transaction Does Not Exist")
		return
	}
	c.handleInDialog(req, tx)
}

func (g *UserAgent) addCall(c *Call) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return ErrClosed
	}
	if len(g.calls) >= g.cfg.MaxCalls {
		return ErrOverloaded
	}
	g.calls[c] = struct{}{}
	return nil
}

func (g *UserAgent) setDialog(id string, c *Call) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if c == nil {
		delete(g.dialogs, id)
		return
	}
	g.dialogs[id] = c
}

func (g *UserAgent) removeCall(c *Call) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.calls, c)
	for id, d := range g.dialogs {
		if d == c {
			delete(g.dialogs, id)
		}
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%x", b)
}

func randUUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// sipgoLog is the logger sipgo gets: g's, through g's line budgets.
func (g *UserAgent) sipgoLog() *slog.Logger { return slog.New(g.rlog.Handler("sipgo: ")) }

// SetRouting replaces the configuration incoming calls and messages
// take their transformations from (a reload): those already in progress
// keep the one they started with.
func (g *UserAgent) SetRouting(r *routing.Router) { g.routing.Store(r) }

// bindIncoming returns the transformations of an incoming request from
// remote to the web identity, under the configuration of now.
func (g *UserAgent) bindIncoming(kind routing.Kind, identity, remote string) *routing.Transform {
	r := g.routing.Load()
	if r == nil {
		return nil
	}
	return r.Bind(routing.Request{Kind: kind, Identity: identity, Target: remote})
}
