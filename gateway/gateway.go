// Package gateway is the session controller: it accepts WebSocket
// connections, runs one reliability machine per session, authenticates
// and names the session's identity, and dispatches frames to the package
// handlers (calls, messaging), which relay between web sessions.
//
// Start with [New] and [Gateway.Handler]; [Gateway.Shutdown] ends every
// session and waits for every goroutine.
package gateway

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jsonrtc/jsonrtc/auth"
	"github.com/jsonrtc/jsonrtc/call"
	"github.com/jsonrtc/jsonrtc/cluster"
	"github.com/jsonrtc/jsonrtc/endpoint"
	"github.com/jsonrtc/jsonrtc/internal/ratelog"
	"github.com/jsonrtc/jsonrtc/limits"
	"github.com/jsonrtc/jsonrtc/messaging"
	"github.com/jsonrtc/jsonrtc/notification"
	"github.com/jsonrtc/jsonrtc/presence"
	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/routing"
	"github.com/jsonrtc/jsonrtc/store"
	"github.com/jsonrtc/jsonrtc/templates"
	"github.com/jsonrtc/jsonrtc/transport/forwarded"
	"github.com/jsonrtc/jsonrtc/transport/longpoll"
)

// Gateway terminates JSONrtc sessions.
type Gateway struct {
	cfg Config
	// life names this run of the process (reports.go).
	life string
	log  *slog.Logger
	// rlog writes, within a budget per cause, what outsiders can cause
	// at will: refused handshakes and connects, bad frames (ratelog).
	rlog *ratelog.Logger

	// router holds the routing section's rules (route.go). A request is
	// decided once, by the rules loaded then: a reload (the next slice
	// of issue 16) stores a new Router, and requests in flight keep the
	// decision they had.
	router   atomic.Pointer[routing.Router]
	reloadMu sync.Mutex // one Reload at a time: trunks and rules go together
	// tmpl holds the declared actions (templates.go), swapped whole by
	// a reload: a request keeps the action it was checked against.
	tmpl atomic.Pointer[templates.Set]
	// declaredAnswers counts the answers to declared actions' requests
	// (templates.go).
	declaredAnswers declaredAnswers
	// inbound: a SIP peer's requests of declared messaging actions
	// waiting for the web side (declaredin.go).
	inbound inboundDeclared

	calls    *call.Handler
	msgs     *messaging.Handler
	presence *presence.Handler
	notes    *notification.Handler
	sipSide  // the SIP user agent and the sessions' registrations: sip.go
	web      http.Handler
	authn    *auth.Authenticator // nil: the built-in open application
	lim      *limits.Limiter
	guests   *limits.GuestSessions // guest sessions per address: guest.go
	regLim   *limits.Registers     // REGISTERs that connects cause (interwork.Registrations)
	store    store.Store
	// ledger records the calls in rtpengine for a sweep after a crash
	// (medialedger.go); nil without a lasting store or rtpengine.
	ledger *mediaLedger
	// repl keeps the answered web calls hosted here in the store, for
	// another node (or this one's next life) to go on with (callrepl.go);
	// nil without a lasting store.
	repl *callRepl
	// wal: the gateway writes ahead to a store of its own (persist.go).
	// Inbound processing holds walMu shared; the writer takes its cut of
	// the dirty sessions holding it alone.
	wal   bool
	walMu sync.RWMutex
	// forwarded holds the frames forwarded to this node (the host of
	// their interactions) and taken, in order per session.
	forwarded *inboundQueues
	// confirms: the forwarded frames dispatched here, confirmed to
	// their senders' nodes after the writer's next round (takenfwd.go).
	confirms confirmations
	// tickets number the answers to messages taken here for other
	// nodes; answers: those this node's sessions gave, kept until their
	// hosts wrote them (keptanswers.go).
	tickets answerTickets
	answers keptAnswers
	// resumeWait: how long a resume waits for the store (cluster.go),
	// in nanoseconds: atomic, as tests shorten it on a running gateway;
	// writeFailed: a record write failed this round (persist.go).
	resumeWait  atomic.Int64
	writeFailed atomic.Bool
	// testLookup, when set (tests only, on a running gateway), reads
	// the directory bucket in place of the node (lookupDirectory).
	testLookup atomic.Pointer[lookupFunc]
	// noBatch: the store answered store.ErrNoBatch; rounds are written
	// one by one (persist.go writeBatch).
	noBatch atomic.Bool
	// resuming serialises the resumes of a session (serve.go connect);
	// admitting, the admissions of an identity (clusterlimits.go).
	resuming  idLocks
	admitting idLocks
	dirtyMu   sync.Mutex
	dirty     []*Session
	dirtyKick chan struct{}
	// births numbers the sockets in the order they opened (link.born).
	births atomic.Uint64
	// proxies are the trusted reverse proxies (http.trusted_proxies).
	proxies forwarded.Proxies

	// mu guards the session tables. Lock order: a session's inMu, then
	// handler locks, then mu or a session's mu (never both).
	mu         sync.Mutex
	sessions   map[string]*Session
	byIdentity map[string][]*Session
	known      map[string]struct{}
	closed     bool
	// node is the gateway's place in a cluster (cluster.go); nil alone.
	// moved holds the sessions other nodes took over that interactions
	// hosted here still name.
	node  *cluster.Node
	moved map[string]*Session
	// letGo: when this node let each session go to a takeover
	// (letgo.go).
	letGo map[string]time.Time
	// waiting: frames for sessions whose node does not answer
	// (deadsession.go).
	awaitingNode waitingFrames
	// heldSeqs numbers the messages waiting for their sessions' nodes
	// (deadsession.go heldSeq).
	heldSeqs atomic.Uint64
	// kept: messages delivered to sessions on other nodes, kept until
	// answered (keptmsgs.go).
	kept keptDeliveries
	// keptStaleFor, when set (tests), stands for keptStale; below 0,
	// nothing is sent again for being stale.
	keptStaleFor atomic.Int64
	// prepl carries presence between the nodes (presencerepl.go).
	prepl atomic.Pointer[presenceRepl]
	// draining: Drain has begun; no new socket is accepted.
	draining bool
	// cutOff: the node is cut off from its cluster (watchCutOff); no
	// new socket is accepted.
	cutOff bool

	// beforeInbound, when set (by tests), hears of each frame forwarded
	// here before its dispatch; false drops it, as a node dying then.
	beforeInbound atomic.Pointer[func(*protocol.Frame) bool]
	// beforeDeliver, when set (by tests), is called before each frame
	// another node delivers here is handled: a slow node.
	beforeDeliver atomic.Pointer[func()]
	// onSocketLost, when set (by tests), is called when a session's
	// socket goes and the session waits for a resume.
	onSocketLost func(*Session)
	// beforeAttach, when set (by tests), hears of each session a
	// connect starts or resumes, in the tables and without its socket.
	beforeAttach func(*Session)
	// onPushed, when set (by tests), hears the outcome of each push, as
	// counted in jsonrtc_pushes_total.
	onPushed func(outcome string)

	wg       sync.WaitGroup // connection goroutines; added to by goTracked
	waiting  bool           // Shutdown waits on wg: guarded by mu
	shutdown chan struct{}
	ctx      context.Context // cancelled by Shutdown
	// flushWork hands a link to an idle writer goroutine (session.go).
	flushWork chan *link
	// polls holds the long-poll connections by token (longpoll.go).
	polls   *longpoll.Server
	cancel  context.CancelFunc
	metrics *metrics
	// push wakes sessions in standby (push.go); nil when not configured.
	push *pusher
	// ready is Options.Ready (ready.go).
	ready func(ctx context.Context) error
}

// Options are the parts of a gateway that are not configuration.
type Options struct {
	Logger *slog.Logger
	// Web serves everything outside /ws/ (the demo page); nil serves 404.
	Web http.Handler
	// Store keeps session records, for resumes across restarts (and
	// nodes). With one, the gateway writes ahead to it: a frame goes out
	// once the state that retains it is stored (persist.go). Nil keeps
	// records in memory, written at socket losses only.
	Store store.Store
	// Cluster makes the gateway a node of a cluster (docs/cluster.md):
	// its sessions are in the cluster's directory, and frames reach
	// sessions owned by other nodes. It needs Store, the cluster's
	// replicated store. Nil: the gateway runs alone.
	Cluster *cluster.Node
	// Ready reports why the store cannot serve sessions now (its
	// connection or its quorum gone), for /readyz; nil: always ready.
	Ready func(ctx context.Context) error
}

// New returns a gateway for cfg, with [Config.WithDefaults] applied (a
// Config built in code needs not have gone through LoadConfig).
func New(cfg Config, o *Options) (*Gateway, error) {
	var opts Options // nil: the defaults
	if o != nil {
		opts = *o
	}
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	pushr, err := newPusher(cfg.Push)
	if err != nil {
		return nil, err
	}
	g := &Gateway{
		life:      newLife(),
		flushWork: make(chan *link),
		polls: longpoll.NewServer(&longpoll.Options{
			Hold: cfg.LongPoll.Hold.D(), IdleTimeout: cfg.LongPoll.IdleTimeout.D(),
			MaxFrameBytes: cfg.WebSocket.MaxFrameBytes, MaxBatch: cfg.LongPoll.MaxBatch,
			MaxPending: cfg.Session.WindowFrames + 16,
		}),
		cfg:        cfg,
		log:        log,
		rlog:       ratelog.New(log, nil),
		web:        opts.Web,
		sessions:   map[string]*Session{},
		byIdentity: map[string][]*Session{},
		known:      map[string]struct{}{},
		shutdown:   make(chan struct{}),
		metrics:    newMetrics(),
		push:       pushr,
		store:      opts.Store,
		wal:        opts.Store != nil,
		dirtyKick:  make(chan struct{}, 1),
		node:       opts.Cluster,
		ready:      opts.Ready,
		moved:      map[string]*Session{},
	}
	g.resumeWait.Store(int64(resumeWait))
	if g.node != nil && !g.wal {
		return nil, errors.New("gateway: a cluster needs a store (Options.Store)")
	}
	if g.store == nil {
		g.store = store.NewMemory()
	}
	if sz, ok := g.store.(store.Sizer); ok && g.wal {
		g.metrics.reg.MustRegister(newSizeCollector(sz))
	}
	sm := newStoreMetrics()
	g.metrics.reg.MustRegister(sm.collectors()...)
	g.store = metered(g.store, sm)
	g.ctx, g.cancel = context.WithCancel(context.Background())
	if g.wal {
		g.goTracked(g.writer)
	}
	proxies, err := forwarded.Parse(cfg.HTTP.TrustedProxies)
	if err != nil {
		return nil, err // Validate has checked it
	}
	g.proxies = proxies
	if len(cfg.Auth.Applications) > 0 {
		a, err := auth.New(cfg.Auth, &auth.Options{Logger: log})
		if err != nil {
			return nil, err
		}
		g.authn = a
	}
	lim, err := limits.New(cfg.limitsConfig(), &limits.Options{Logger: log})
	if err != nil {
		return nil, err
	}
	g.lim = lim
	g.guests = limits.NewGuestSessions(lim)
	g.metrics.reg.MustRegister(lim.Collector())
	if g.regLim, err = limits.NewRegisters(cfg.limitsConfig()); err != nil {
		return nil, err
	}
	g.metrics.reg.MustRegister(g.regLim.Collector())
	router, err := routing.New(cfg.Routing)
	if err != nil {
		return nil, err // Validate has checked it
	}
	g.router.Store(router)
	tmpl, err := templates.New(cfg.Templates)
	if err != nil {
		return nil, err // Validate has checked it
	}
	g.tmpl.Store(tmpl)
	g.declaredAnswers = newDeclaredAnswers()
	g.metrics.reg.MustRegister(g.declaredAnswers)
	g.metrics.reg.MustRegister(newTrunkCollector(g))
	if err := g.newSIP(); err != nil {
		return nil, err
	}
	subPrefix := ""
	if g.node != nil {
		// The start time (ms, base 36) tells this life's ids from an
		// earlier one's: a call of that life, adopted by another node,
		// may still hold its ids for a session (docs/cluster.md
		// "Delivery across nodes").
		subPrefix = "s" + g.node.Name() + "-" + strconv.FormatInt(time.Now().UnixMilli(), 36) + "-"
	}
	co := &call.Options{RingTimeout: cfg.Calls.RingTimeout.D(), SubsessionPrefix: subPrefix, Logger: log}
	if g.wal {
		host := "local"
		if g.node != nil {
			host = g.self()
		}
		g.repl = newCallRepl(g, host)
		co.Replicate, co.WriteAhead = g.repl.replicate, g.repl.writeAhead
		co.ReplicateSIP, co.WriteAheadSIP = g.repl.replicateSIP, g.repl.writeAheadSIP
		g.metrics.reg.MustRegister(g.repl.collectors()...)
		g.metrics.reg.MustRegister(g.repl.sipCollectors()...)
		g.goTracked(func() { g.repl.run(g.ctx) })
	}
	g.calls = call.NewHandler(directory{g}, co)
	g.metrics.reg.MustRegister(g.calls.Collector())
	if err := g.sipCalls(); err != nil {
		return nil, err
	}
	g.msgs = messaging.NewHandler(directory{g}, &messaging.Options{
		Timeout: cfg.Messaging.ReportTimeout.D(), MaxPending: cfg.Messaging.MaxPending, Logger: log,
		Upstream: g.messagingUpstream()})
	g.presence = presence.NewHandler(directory{g}, &presence.Options{Config: cfg.Presence, Logger: log,
		Upstream: g.presenceUpstream(), Local: g.presenceLocal})
	g.notes = notification.NewHandler(&notification.Options{Config: cfg.MessageNotification, Logger: log,
		Upstream: g.notificationUpstream(), Local: g.notesLocal})
	if err := g.startSIP(); err != nil {
		// The pool's pings run from sipCalls on.
		g.closeMedia()
		return nil, err
	}
	if g.node != nil {
		g.metrics.reg.MustRegister(newClusterCollector(g.node))
		g.node.OnNodeDown(func(node string) { g.onNodeDown(node); g.onNodeDownReports() })
		if err := g.startCluster(); err != nil {
			g.Shutdown(context.Background())
			return nil, err
		}
	}
	if g.wal {
		if err := g.restoreAll(); err != nil {
			g.Shutdown(context.Background())
			return nil, fmt.Errorf("gateway: restoring sessions: %w", err)
		}
		// Not waited for: the node listens meanwhile (startadopt.go).
		g.repl.startAdopting()
	}
	return g, nil
}

// Handler returns the public HTTP handler: WebSocket upgrades under
// /ws/, a liveness answer at /healthz, the demo page elsewhere. The
// metrics are apart: [Gateway.MetricsHandler].
func (g *Gateway) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/ws/", g.serveWS)
	if !g.cfg.LongPoll.Disabled {
		mux.HandleFunc("/poll/", g.servePoll)
	}
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("/readyz", g.serveReady)
	if g.web != nil {
		mux.Handle("/", g.web)
	}
	return mux
}

// Shutdown tells every session to go (close 1001, so clients resume
// elsewhere), ends the sessions and waits for their goroutines, or for
// ctx.
func (g *Gateway) Shutdown(ctx context.Context) error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return nil
	}
	g.closed = true
	close(g.shutdown)
	g.mu.Unlock()
	all := g.liveSessions()
	// With a store of its own the records stay, for the clients to
	// resume on the next run; no frame is half processed meanwhile
	// (persist.go's cut).
	if g.wal {
		g.walMu.Lock()
	}
	for _, s := range all {
		s.end(reasonShutdown)
	}
	if g.wal {
		g.walMu.Unlock()
	}
	// Each step gives up when ctx ends, and the next still runs.
	g.closeSIP(ctx)
	_ = g.calls.WaitSIP(ctx)
	// After the calls, whose ends delete their media in rtpengine.
	g.closeMedia()
	// Sockets still in their handshake close with the context.
	g.cancel()
	g.mu.Lock()
	g.waiting = true // no goroutine is added to g.wg from here on
	g.mu.Unlock()
	return waitGroup(ctx, &g.wg)
}

// waitGroup waits for wg, or returns ctx's error when ctx ends first
// (the waiting goroutine then ends with wg).
func waitGroup(ctx context.Context, wg *sync.WaitGroup) error {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// goTracked runs f in a goroutine that Shutdown waits for. Once Shutdown
// has begun waiting it runs nothing and returns false: adding to a
// WaitGroup that is being waited on is a race.
func (g *Gateway) goTracked(f func()) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.waiting {
		return false
	}
	g.wg.Go(f)
	return true
}

// WaitIdle returns once no call is in progress, SIP legs included (both
// sides over), or with ctx's error. Tests use it before leak checks.
func (g *Gateway) WaitIdle(ctx context.Context) error { return g.calls.WaitIdle(ctx) }

// Stats reports what is live, for tests and leak checks.
type Stats struct {
	Sessions, Calls, PendingMessages, StoredSessions, Subscriptions int
}

// Stats returns the current counts.
func (g *Gateway) Stats() Stats {
	g.mu.Lock()
	n := len(g.sessions)
	g.mu.Unlock()
	// Session records only: the store holds other records too (the
	// media ledger's).
	stored, _ := g.store.Keys(context.Background(), recordKey(""))
	return Stats{Sessions: n, Calls: g.calls.Active(), PendingMessages: g.msgs.Pending(), StoredSessions: len(stored),
		Subscriptions: g.presence.Subscriptions() + g.notes.Subscriptions()}
}

// newID returns 128 random bits, URL-safe: session ids must be
// unguessable and unique across nodes.
func newID() string {
	var b [16]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func (g *Gateway) guestIdentity() string {
	var b [6]byte
	rand.Read(b[:])
	return "guest-" + strings.ToLower(base64.RawURLEncoding.EncodeToString(b[:])) + "@" + g.cfg.Domain
}

var errClosed = errors.New("gateway: shutting down")

// add registers a new session.
func (g *Gateway) add(s *Session) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return errClosed
	}
	if len(g.sessions) >= g.cfg.Session.MaxSessions {
		return errTooMany
	}
	g.sessions[s.id] = s
	delete(g.letGo, s.id)
	g.byIdentity[s.identity] = append(g.byIdentity[s.identity], s)
	if !s.guest {
		// Generated guest identities are new with every visitor: kept
		// here they would grow the table without bound. A call to a guest
		// who left gets 404 rather than 480.
		g.known[s.identity] = struct{}{}
	}
	g.metrics.sessions.Inc()
	return nil
}

var errTooMany = errors.New("gateway: too many sessions")

func (g *Gateway) remove(s *Session) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.sessions[s.id] != s {
		return
	}
	delete(g.sessions, s.id)
	list := g.byIdentity[s.identity]
	for i, x := range list {
		if x == s {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(g.byIdentity, s.identity)
	} else {
		g.byIdentity[s.identity] = list
	}
	g.metrics.sessions.Dec()
}

func (g *Gateway) lookup(id string) *Session {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.sessions[id]
}

// directory is the endpoint.Directory view of the session tables.
type directory struct{ g *Gateway }

// Sessions returns identity's sessions here and, in a cluster, those
// other live nodes own (cluster.go).
func (d directory) Sessions(identity string) []endpoint.Endpoint {
	out, _ := d.Find(identity)
	return out
}

// Find is Sessions with the error of a cluster's directory read: the
// view had none of identity's sessions and the bucket did not answer.
func (d directory) Find(identity string) ([]endpoint.Endpoint, error) {
	return d.find(identity, false)
}

// FindHeld is Find with the sessions of dead nodes that their clients
// have not resumed elsewhere yet: a message to them waits for the resume
// (deadsession.go).
func (d directory) FindHeld(identity string) ([]endpoint.Endpoint, error) {
	return d.find(identity, true)
}

// find is Find, and FindHeld with held.
func (d directory) find(identity string, held bool) ([]endpoint.Endpoint, error) {
	d.g.mu.Lock()
	list := d.g.byIdentity[identity]
	out := make([]endpoint.Endpoint, 0, len(list))
	for _, s := range list {
		out = append(out, s)
	}
	d.g.mu.Unlock()
	return d.g.remoteSessions(identity, out, held)
}

// Known reports whether identity is a web identity that only web
// sessions reach: one that has had a session here and that the SIP side
// does not serve. An identity of a SIP domain is never Known: it
// registered over SIP while on the web, and once its last session is gone
// the handlers, which ask Sessions first, send its calls, messages and
// presence subscriptions to SIP, where its phone may be (a sign-out once
// made it 480 here for the life of the process). What is left Known keeps
// 480 (offline) apart from 404 (unknown).
func (d directory) Known(identity string) bool {
	if d.g.sipReaches(identity) {
		return false
	}
	d.g.mu.Lock()
	_, ok := d.g.known[identity]
	d.g.mu.Unlock()
	// In a cluster, a session in the directory makes it known too, its
	// node down or not: under node kills, a message to a user whose
	// node died was "404 Not Found" on a node that never served the
	// user (the chaos test), while the session waits for its resume.
	return ok || d.g.node != nil && len(d.g.node.Remote(identity)) > 0
}

// sipReaches reports whether the SIP side serves identity (a user@domain
// that a connect registers) when it has no live web session. Bare names
// are left to the web side, as call routing leaves them.
func (g *Gateway) sipReaches(identity string) bool {
	return strings.Contains(identity, "@") && g.regs.Registers(identity)
}
