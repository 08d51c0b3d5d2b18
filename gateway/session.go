package gateway

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/jsonrtc/jsonrtc/auth"
	"github.com/jsonrtc/jsonrtc/endpoint"
	"github.com/jsonrtc/jsonrtc/internal/ratelog"
	"github.com/jsonrtc/jsonrtc/limits"
	"github.com/jsonrtc/jsonrtc/notification"
	"github.com/jsonrtc/jsonrtc/presence"
	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/session"
	"github.com/jsonrtc/jsonrtc/transport/ws"
	"github.com/prometheus/client_golang/prometheus"
)

// endReason says why a session ended.
type endReason int

const (
	reasonLogout endReason = iota
	reasonResumeTimeout
	reasonReplaced // a failed resume of the same identity started anew
	reasonWindowFull
	reasonShutdown
	reasonRegistrationLost  // the SIP registration could not be refreshed
	reasonSequenceExhausted // a side's sequences reached protocol.MaxSequence
)

func (r endReason) String() string {
	switch r {
	case reasonLogout:
		return "logout"
	case reasonResumeTimeout:
		return "resume timeout"
	case reasonReplaced:
		return "superseded by a new session"
	case reasonWindowFull:
		return "retained window full"
	case reasonShutdown:
		return "gateway shutdown"
	case reasonRegistrationLost:
		return "SIP registration lost"
	case reasonSequenceExhausted:
		return "sequence numbers exhausted"
	}
	return "unknown"
}

// Session is one JSONrtc session on the gateway side. It implements
// endpoint.Endpoint.
type Session struct {
	g        *Gateway
	id       string
	identity string
	app      string
	oracle   bool
	log      *slog.Logger
	// rlog is for the lines the client can cause at will (ratelog).
	rlog *ratelog.Logger
	// principal is who authenticated (nil for the built-in open
	// application); quota the session's share of its limits.
	principal *auth.Principal
	quota     *limits.Session
	// admitted: when the session was admitted in its identity's
	// admission record (clusterlimits.go); zero when it was not.
	admitted time.Time
	// callsDirty: a write of the session's calls to the directory is
	// due; pubMu orders those writes (publishCalls).
	callsDirty atomic.Bool
	pubMu      sync.Mutex
	// reserved: when the session last wrote its calls to its identity's
	// call record (callreserve.go), Unix milliseconds; zero: never.
	reserved atomic.Int64
	// guest: an anonymous guest (a guest application's, or a generated
	// identity of the open one); see guest.go. releaseGuest gives back
	// its place among its address's guest sessions (a no-op for others);
	// engaged is set once it takes part in a call.
	guest        bool
	releaseGuest func()
	engaged      atomic.Bool

	// held: call frames waiting for their call's host (callhold.go).
	held callHold

	// inMu serialises the processing of inbound frames: during a socket
	// replacement two readers may briefly run.
	inMu sync.Mutex

	// gone is closed when the session ends.
	gone chan struct{}

	mu        sync.Mutex
	st        *session.State
	conn      *link // current socket, nil while waiting for a resume
	ended     bool
	resume    *time.Timer
	ackTimer  *time.Timer // made once, then reset: most inbound frames arm it
	ackArmed  bool
	lastError int // consecutive undecodable frames

	// resumeDeferred: the resume timer ran out while this node was cut
	// off from its cluster (resumeExpired).
	resumeDeferred bool
	// newest is the highest link.born of a socket attached here: a
	// resume on an older socket is one its client gave up on (serve.go
	// connect).
	newest uint64
	// standby: how to wake the client, which went to standby (push.go);
	// nil when awake. woken: a push went since the socket closed.
	standby *protocol.PushChannel
	woken   bool
	// pendingWake: a call or message went to the socket of a client gone
	// to standby, which may close before reading it (push.go).
	pendingWake *wakeEvent

	// The store (persist.go). pending: frames sent but not yet written
	// ahead; dirty: queued for the writer; unsaved: client frames
	// processed since the last snapshot; snapGen numbers snapshots;
	// lost: another writer owns the record; keepRecord: the session
	// ended for a shutdown and its record stays for the next run;
	// restored: resumed from a record, not yet announced to presence.
	pending    [][]byte
	dirty      bool
	unsaved    int
	snapGen    uint64
	lost       bool
	keepRecord bool
	restored   bool
	// starting: a new session in its connect, its record not written
	// yet. What marks it dirty meanwhile (its presence share) waits for
	// the write its handshake asks for once the session is in the
	// directory, which releases its connect response: one write.
	starting bool
	// hello: a new session's connect response, numbered before the
	// session joined the tables; its handshake queues it first.
	hello []byte
	// unbound: restored at start-up, its connect's bindings (principal,
	// guest place, SIP registration) not yet made again.
	unbound bool
	profile string // the limits profile
	// presence: the session's share in its identity's presence, for its
	// record (presencerepl.go keepPresence).
	presence *presence.RemoteSession
	// notes: its message-summary subscriptions, as its record keeps
	// them (subsrepl.go).
	notes []notification.Saved
	// regInstance is the +sip.instance of the session's SIP binding
	// (regmove.go), under s.mu.
	regInstance string
	// saveMu serialises the session's writes; rev is the record's
	// revision and savedGen the snapshot it holds (both under saveMu).
	saveMu   sync.Mutex
	rev      uint64
	savedGen uint64
	// The cluster (cluster.go). routes: the hosts of the interactions
	// this session's frames belong to; movedTo: the node that took the
	// session over, to which this copy's sends go.
	routes  map[routeKey]string
	movedTo string
	// reportTo: for the messages delivered to this session, by their
	// correlation id here, whom to report an answer to should their
	// host have died (reportdirect.go); kept with their routes.
	reportTo map[string]reportRoute
	// relays: what the session took of each sender's relays
	// (relays.go); relayUse orders them.
	relays   map[relayKey]*relayMark
	relayUse uint64
	// awaiting: the sends owed a delivery report (reports.go); early:
	// reports that came for sends not (yet) awaited (earlyReport).
	awaiting map[string]awaited
	early    []earlyReport
	// answeredFor: the sends this owner answered for their hosts, until
	// a host's own report could still come (reportedTwiceLocked).
	answeredFor map[string]time.Time
	// awaitFullUntil: until then a send may have gone unawaited, the
	// sends owed a report at maxAwaited (hostReportUnawaitedLocked).
	awaitFullUntil time.Time
	// outbox: the messages of this session's client waiting for their
	// receivers, by key (outbox.go); outboxOrder numbers them.
	outbox      map[string]outboxEntry
	outboxOrder uint64
}

// conn is what a link needs of its transport: a WebSocket
// (transport/ws) or a long-poll connection (transport/longpoll). Read
// fails once the transport is gone; ws.CloseStatus of that error is 1000
// for a client's logout.
type conn interface {
	Read(ctx context.Context) ([]byte, error)
	Write(ctx context.Context, data []byte) error
	WriteFrames(ctx context.Context, frames [][]byte) error
	Close(code websocket.StatusCode, reason string) error
	CloseWithin(code websocket.StatusCode, reason string, wait time.Duration) error
	CloseNow() error
	RemoteAddr() string
	Subprotocol() string
}

// link is one socket attached to a session, with its send queue. The
// queue is flushed by a writer goroutine that the link has only while
// there is something to write (see startFlush), so an idle session costs
// one goroutine: its reader.
type link struct {
	g *Gateway
	c conn
	// transport names c's transport for the metrics; frames counts the
	// frames processed on it.
	transport string
	frames    prometheus.Counter
	addr      netip.Addr // the handshake's source (clientAddr)
	max       int        // queue bound
	// born numbers the socket among this gateway's in the order they
	// opened (Gateway.births), taken before its client could send on it.
	born uint64

	mu      sync.Mutex
	queue   [][]byte
	writing bool
	dead    bool
	flusher sync.WaitGroup
	// idle is signalled when the writer stops: the queue is written, or
	// the link died.
	idle sync.Cond

	// budget charges every frame read from the socket (limits.Socket);
	// quota is the session's, once there is one. behind: a new client
	// frame was dropped for the rate limit (Session.refuse). The three
	// belong to the socket's reader.
	budget *limits.Socket
	quota  *limits.Session
	behind bool
}

// waitWritten waits until what is queued on l has been written, or l
// died. A write is bounded by the transport's write timeout.
func (l *link) waitWritten() {
	l.mu.Lock()
	for l.writing && !l.dead {
		l.idle.Wait()
	}
	l.mu.Unlock()
}

// push queues data; false means the queue is full (the socket cannot keep
// up) or the link is dead.
func (l *link) push(data []byte) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.dead || len(l.queue) >= l.max {
		return false
	}
	l.queue = append(l.queue, data)
	if !l.writing {
		l.writing = true
		l.flusher.Add(1)
		l.g.startFlush(l)
	}
	return true
}

// flusherLinger is how long a writer goroutine waits for another link to
// flush before it exits.
const flusherLinger = time.Second

// startFlush has l's queue written by an idle writer goroutine, or by a
// new one. Writers outlive the burst they were made for: a goroutine made
// per burst pays, on nearly every relayed frame, for its creation and for
// growing its stack (the write path is deeper than a new goroutine's
// 2 KiB) — a tenth of the gateway's CPU under relay load.
func (g *Gateway) startFlush(l *link) {
	select {
	case g.flushWork <- l:
		return
	default:
	}
	if !g.goTracked(func() { g.flushWorker(l) }) {
		// Shutdown is waiting: l.stop waits for this one.
		go l.flush()
	}
}

func (g *Gateway) flushWorker(l *link) {
	t := time.NewTimer(flusherLinger)
	defer t.Stop()
	for {
		l.flush()
		t.Reset(flusherLinger)
		select {
		case l = <-g.flushWork:
		case <-t.C:
			return
		case <-g.ctx.Done():
			return
		}
	}
}

func (l *link) flush() {
	defer l.flusher.Done()
	ctx := context.Background()
	var batch [][]byte
	for {
		l.mu.Lock()
		// The two slices alternate between the queue and the batch being
		// written while this flusher lives; both go when it exits.
		batch, l.queue = l.queue, batch[:0]
		if len(batch) == 0 || l.dead {
			l.writing = false
			l.queue = nil
			l.idle.Broadcast()
			l.mu.Unlock()
			return
		}
		l.mu.Unlock()
		// Whatever queued while the last batch was being written goes out
		// in one system call.
		if err := l.c.WriteFrames(ctx, batch); err != nil {
			l.kill()
		}
		clear(batch)
	}
}

// kill marks the link dead and drops its socket.
func (l *link) kill() {
	l.mu.Lock()
	l.dead = true
	l.queue = nil
	l.mu.Unlock()
	l.c.CloseNow()
}

// stop waits for the flusher after the socket is gone.
func (l *link) stop() {
	l.mu.Lock()
	l.dead = true
	l.mu.Unlock()
	l.flusher.Wait()
}

func (g *Gateway) newSession(identity string, oracle bool, processed uint64) *Session {
	id := newID()
	return g.sessionOf(identity, oracle, session.New(id, processed))
}

// sessionOf returns a session of st (new, or read from the store).
func (g *Gateway) sessionOf(identity string, oracle bool, st *session.State) *Session {
	id := st.ID
	return &Session{
		g: g, id: id, identity: identity, oracle: oracle,
		st:   st,
		gone: make(chan struct{}),
		log:  g.log.With("session_id", id, "identity", identity),
		// connect sets the guest's own.
		releaseGuest: func() {},
		rlog:         g.rlog.With("session_id", id, "identity", identity),
	}
}

// AcquireCall implements endpoint.Quota. A guest that takes part in a call
// has something to resume from then on (see resumeTimeout).
func (s *Session) AcquireCall() bool {
	if !s.g.acquireCall(s) {
		return false
	}
	s.engaged.Store(true)
	s.g.publishCalls(s)
	return true
}

// RecountCall implements endpoint.Recounter: a call adopted here counts
// in s's quota (over it, it goes on uncounted), from the directory's
// count alone: it was admitted where it began, and an adoption waits on
// no reservation in the store.
func (s *Session) RecountCall() bool {
	if !s.quota.AcquireCallBeside(s.g.callsElsewhere(s.identity)) {
		return false
	}
	s.engaged.Store(true)
	s.g.publishCalls(s)
	return true
}

// ReleaseCall implements endpoint.Quota.
func (s *Session) ReleaseCall() {
	s.quota.ReleaseCall()
	s.g.publishCalls(s)
	s.g.unreserveCall(s)
}

// AcquireSubscription implements subscription.Quota: presence and
// voicemail subscriptions count against the identity's and the
// application's subscriptions limit.
func (s *Session) AcquireSubscription() bool { return s.quota.AcquireSubscription() }

// ReleaseSubscription implements subscription.Quota.
func (s *Session) ReleaseSubscription() { s.quota.ReleaseSubscription() }

func (s *Session) ID() string       { return s.id }
func (s *Session) Identity() string { return s.identity }
func (s *Session) Oracle() bool     { return s.oracle }

func (s *Session) limits() session.Limits {
	return session.Limits{WindowFrames: s.g.cfg.Session.WindowFrames, WindowBytes: s.g.cfg.Session.WindowBytes}
}

var errEnded = errors.New("gateway: session ended")

// errDetached: the session has no socket, and the frame is not one that
// a resume resends.
var errDetached = errors.New("gateway: session detached")

// Send implements endpoint.Endpoint: it stamps, retains and queues f.
func (s *Session) Send(f *protocol.Frame, selfCorrelate bool) (uint64, error) {
	return s.sendOrigin(f, selfCorrelate, "", endpoint.Origin{})
}

// sendOrigin is Send for a handler on node host ("": this one), whose
// interaction f belongs to (cluster.go), of a relay of the client frame
// o names (relays.go; zero: not a relay). A session taken over by
// another node has its new owner send f.
func (s *Session) sendOrigin(f *protocol.Frame, selfCorrelate bool, host string, o endpoint.Origin) (uint64, error) {
	s.mu.Lock()
	if to := s.movedTo; to != "" {
		s.mu.Unlock()
		if host != "" && host != s.g.self() {
			// A request from another node: it looks the owner up itself.
			return 0, errMovedAway
		}
		seq, owner, err := s.g.sendVia(s.id, to, f, selfCorrelate, o)
		s.mu.Lock()
		if owner != "" && owner != s.g.self() {
			s.movedTo = owner
		}
		s.mu.Unlock()
		return seq, err
	}
	defer s.mu.Unlock()
	if s.ended {
		return 0, errEnded
	}
	if s.reportedTwiceLocked(f) {
		s.g.metrics.cluster.WithLabelValues(kindReport, "twice").Inc()
		return 0, nil
	}
	if host != "" && s.hostReportUnawaitedLocked(f) {
		s.g.metrics.cluster.WithLabelValues(kindReport, "unawaited").Inc()
		return 0, nil
	}
	if seq, taken, err := s.takenLocked(o); taken {
		if err == nil {
			s.answerTakenLocked(f, selfCorrelate, host, seq)
		}
		return seq, err
	}
	if selfCorrelate {
		f.Control.CorrelationID = "s" + strconv.FormatUint(s.st.NextSeq, 10)
	}
	data, err := s.st.Send(f, s.limits(), nil)
	if err != nil {
		// The peer left too much unacknowledged, or (after 2^53-1
		// frames) there is no sequence left. End the session out of
		// line: the caller holds handler locks that ending needs.
		r, metric := reasonWindowFull, "window_full"
		if errors.Is(err, session.ErrSequenceExhausted) {
			r, metric = reasonSequenceExhausted, "sequence_exhausted"
		}
		s.log.Warn("ending session", "reason", r.String())
		s.g.metrics.closes.WithLabelValues(metric).Inc()
		if s.conn != nil {
			s.conn.c.CloseNow()
		}
		// (When Shutdown is already waiting, it has ended the session.)
		s.g.goTracked(func() { s.end(r) })
		return 0, err
	}
	if s.g.node != nil {
		if host == "" {
			host = s.g.self()
		}
		s.noteRouteLocked(f, host)
	}
	s.noteRelayLocked(o, f.Control.Sequence, f.Control.SubsessionID)
	s.noteReportLocked(f, o)
	s.endCallLocked(f)
	s.reportedLocked(f)
	s.queueLocked(data)
	s.stopAckTimerLocked()
	s.wakeLocked(f)
	return f.Control.Sequence, nil
}

// queueLocked hands data to the current socket's writer, or, when the
// gateway writes ahead (persist.go), to the store's writer, which hands
// it on once the state that retains it is stored.
func (s *Session) queueLocked(data []byte) {
	if s.g.wal {
		if s.conn != nil {
			s.pending = append(s.pending, data)
		}
		s.markDirtyLocked()
		return
	}
	s.pushLocked(data)
}

// pushLocked queues data on the socket. A writer that cannot keep up has
// its socket dropped: the frames stay retained and the client gets them
// when it resumes, so nothing is lost. False: there is no socket (any
// more).
func (s *Session) pushLocked(data []byte) bool {
	if s.conn == nil {
		return false
	}
	if !s.conn.push(data) {
		s.log.Warn("socket too slow or gone; dropping it for a resume")
		s.g.metrics.closes.WithLabelValues("slow_socket").Inc()
		s.conn.kill()
		s.setConnLocked(nil)
		s.startResumeTimerLocked()
		s.wakePendingLocked()
		return false
	}
	return true
}

// sendAckLocked queues an acknowledgement of what the peer sent, when
// one is owed and a socket is attached (never to a webrtc.oracle.com
// client).
func (s *Session) sendAckLocked() {
	if s.oracle || s.conn == nil || !s.st.AckOwed() {
		return
	}
	f := &protocol.Frame{Control: protocol.Control{Type: protocol.TypeAcknowledgement, Package: protocol.PackageRegister}}
	data, _ := s.st.Send(f, s.limits(), nil)
	s.queueLocked(data)
}

func (s *Session) scheduleAckLocked() {
	if s.oracle || s.ackArmed || s.ended {
		return
	}
	s.ackArmed = true
	if s.ackTimer == nil {
		s.ackTimer = time.AfterFunc(s.g.cfg.Session.AckDelay.D(), s.onAckTimer)
		return
	}
	s.ackTimer.Reset(s.g.cfg.Session.AckDelay.D())
}

// onAckTimer may run after a Stop that came too late, even once the
// timer was armed again: it then acknowledges early, which is harmless.
func (s *Session) onAckTimer() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.ackArmed {
		return
	}
	s.ackArmed = false
	if !s.ended {
		s.sendAckLocked()
	}
}

func (s *Session) stopAckTimerLocked() {
	if s.ackArmed {
		s.ackTimer.Stop()
		s.ackArmed = false
	}
}

func (s *Session) startResumeTimerLocked() {
	if s.resume != nil {
		s.resume.Stop()
	}
	s.resumeDeferred = false
	s.resume = time.AfterFunc(s.resumeTimeout(), s.resumeExpired)
}

// resumeExpired ends s, whose client did not resume within its time,
// unless this node is cut off from its cluster. There the end could not
// be made durable (its record is not deleted), yet its calls' ends would
// reach their peers after the heal, while the client, which could reach
// no node with a quorum (every link cut: test/cluster
// TestClusterPartitionEveryLink), resumes the record left: a call ended
// on one side only. A cut-off node waits instead, checking every round
// of watchCutOff; back in the cluster, the client gets the whole resume
// timeout again (the time no node could serve it does not count), and a
// copy another node took over meanwhile goes as superseded copies do.
func (s *Session) resumeExpired() {
	cut := s.g.isCutOff()
	s.mu.Lock()
	if s.conn != nil || s.ended {
		s.mu.Unlock()
		return
	}
	switch {
	case cut:
		if !s.resumeDeferred {
			s.g.metrics.cluster.WithLabelValues("resume_wait", "cut_off").Inc()
		}
		s.resumeDeferred = true
		s.resume = time.AfterFunc(cutOffRound(s.g.node.LeaseTTL()), s.resumeExpired)
		s.mu.Unlock()
		return
	case s.resumeDeferred:
		s.resumeDeferred = false
		s.resume = time.AfterFunc(s.resumeTimeout(), s.resumeExpired)
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	s.end(reasonResumeTimeout)
}

// attachLocked makes l the session's socket, replacing (close 4000) a
// still open one, and stops the resume timer.
func (s *Session) attachLocked(l *link) {
	if old := s.conn; old != nil {
		if !s.g.goTracked(func() { old.c.Close(ws.StatusReplaced, "replaced") }) {
			old.c.CloseNow()
		}
	}
	s.setConnLocked(l)
	s.newest = max(s.newest, l.born)
	s.standby, s.pendingWake = nil, nil // awake again
	if s.resume != nil {
		s.resume.Stop()
		s.resume = nil
	}
}

// setConnLocked makes l (nil: none) the session's connection, and
// keeps jsonrtc_sessions_attached counting it; s.mu is held.
func (s *Session) setConnLocked(l *link) {
	if s.conn != nil {
		s.g.metrics.attached.WithLabelValues(s.conn.transport).Dec()
	}
	if l != nil {
		s.g.metrics.attached.WithLabelValues(l.transport).Inc()
	}
	s.conn = l
}

// detach is called when l's reader ends. A logout (close 1000) ends the
// session; any other loss waits for a resume.
func (s *Session) detach(l *link, logout bool) {
	s.mu.Lock()
	if s.conn != l || s.ended {
		s.mu.Unlock()
		return
	}
	s.setConnLocked(nil)
	if !logout {
		s.startResumeTimerLocked()
		s.wakePendingLocked()
		s.mu.Unlock()
		s.g.save(s)
		s.log.Info("socket lost; waiting for resume")
		if s.g.onSocketLost != nil {
			s.g.onSocketLost(s)
		}
		return
	}
	s.mu.Unlock()
	if s.g.authn != nil {
		// With jwt.revoke_on_logout, the token cannot open a session again.
		s.g.authn.Logout(s.principal)
	}
	s.end(reasonLogout)
}

// endKeepingSocket ends the session whose reader l is, leaving l's socket
// for that reader to close with its own code.
func (s *Session) endKeepingSocket(l *link, r endReason) {
	s.mu.Lock()
	if s.conn == l {
		s.setConnLocked(nil)
	}
	s.mu.Unlock()
	s.end(r)
}

// end ends the session: its calls are shut down toward their peers, its
// pending messages answered, its socket closed.
func (s *Session) end(r endReason) {
	s.inMu.Lock()
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		s.inMu.Unlock()
		return
	}
	s.ended = true
	s.keepRecord = r == reasonShutdown && s.g.wal
	// The address's guest place and the session's share of its limits go
	// first: whoever hears of the end may connect again at once. Calls
	// and subscriptions released later by the handlers find the quota
	// closed and release nothing twice.
	s.releaseGuest()
	s.quota.Close()
	close(s.gone)
	if s.resume != nil {
		s.resume.Stop()
	}
	s.stopAckTimerLocked()
	conn := s.conn
	s.setConnLocked(nil)
	s.mu.Unlock()
	s.g.remove(s)
	if s.keepRecord {
		// The last state, with the frames not yet written ahead.
		s.g.save(s)
	} else {
		// The record goes first: whoever hears of the end finds it gone.
		s.g.deleteRecord(s)
		if s.g.node != nil {
			s.g.forgetAdmission(s)
			s.g.unpublish(s)
			s.mu.Lock()
			routes := s.routesSnapshotLocked()
			s.mu.Unlock()
			s.g.announceEnd(s, routes)
		}
	}
	s.g.callsOfEnded(s, s.keepRecord)
	s.g.endedBehindAdoption(s, s.keepRecord)
	s.g.msgs.SessionEnded(s)
	s.g.presence.SessionEnded(s)
	s.g.notes.SessionEnded(s)
	s.g.inboundEnded(s)
	s.g.endRegistration(s)
	s.inMu.Unlock()
	if conn != nil {
		code := websocket.StatusGoingAway
		switch r {
		case reasonWindowFull:
			code = websocket.StatusTryAgainLater
		case reasonSequenceExhausted:
			code = websocket.StatusNormalClosure // nothing to resume
		}
		if !s.g.goTracked(func() { conn.c.Close(code, r.String()) }) {
			conn.c.CloseNow()
		}
	}
	s.g.metrics.ended.WithLabelValues(r.String()).Inc()
	s.log.Info("session ended", "reason", r.String())
}
