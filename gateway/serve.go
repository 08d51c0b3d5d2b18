package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/jsonrtc/jsonrtc/auth"
	"github.com/jsonrtc/jsonrtc/interwork"
	"github.com/jsonrtc/jsonrtc/limits"
	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/session"
	"github.com/jsonrtc/jsonrtc/store"
	"github.com/jsonrtc/jsonrtc/transport/longpoll"
	"github.com/jsonrtc/jsonrtc/transport/ws"
)

// maxBadFrames is how many undecodable frames in a row close a socket
// with 1008 (docs/protocol.md §9.3). Spread out in time, fewer do:
// limits.Socket.Malformed.
const maxBadFrames = 10

// hangUp is why a reader closes its socket; the zero value reads on.
type hangUp struct {
	code   websocket.StatusCode
	reason string
	metric string // the jsonrtc_socket_drops_total reason
	// exhausted: the session ends, its sequences used up.
	exhausted bool
}

var (
	hangUpMalformed = hangUp{code: websocket.StatusPolicyViolation, reason: "too many malformed frames", metric: "malformed"}
	hangUpFlood     = hangUp{code: websocket.StatusPolicyViolation, reason: "frame flood", metric: "flood"}
	// A frame was dropped for the rate limit and a later one came: the
	// client resumes, and resends both (see Session.refuse).
	hangUpBehind    = hangUp{code: websocket.StatusTryAgainLater, reason: "rate limited; resume to resend", metric: "rate_limited"}
	hangUpExhausted = hangUp{code: websocket.StatusNormalClosure, reason: reasonSequenceExhausted.String(), metric: "sequence_exhausted", exhausted: true}
)

// errFlood ends a read whose socket exceeded its frame budget for too
// long (from the text ping hook, or the handshake).
var errFlood = errors.New("gateway: frame flood")

func (g *Gateway) serveWS(w http.ResponseWriter, r *http.Request) {
	p, addr, ok := g.admit(w, r, g.authenticateWS)
	if !ok {
		return
	}
	opts := &ws.Options{
		OriginPatterns: g.cfg.WebSocket.AllowedOrigins,
		ReadLimit:      g.cfg.WebSocket.MaxFrameBytes,
		PingInterval:   g.cfg.WebSocket.PingInterval.D(),
		PingTimeout:    g.cfg.WebSocket.PingTimeout.D(),
		IdleAfter:      readerIdleAfter,
	}
	if p != nil {
		// The application's own origin rules were applied by admit.
		opts.OriginPatterns, opts.InsecureSkipVerify = nil, true
	}
	// Numbered before the 101 goes out: before its client can send a
	// connect on it, so before it can give up on it and dial another.
	born := g.births.Add(1)
	c, err := ws.Accept(w, r, opts)
	if err != nil {
		g.metrics.handshakes.WithLabelValues("refused").Inc()
		g.rlog.Info("handshake refused", "handshake refused", "remote", r.RemoteAddr, "origin", r.Header.Get("Origin"), "err", err)
		return
	}
	g.metrics.handshakes.WithLabelValues("accepted").Inc()
	// The socket is served by goroutines of their own so that this handler
	// returns: net/http's connection goroutine, with its deep stack and
	// the request it holds, is freed for the socket's whole life.
	if !g.goTracked(func() { g.serveConn(c, p, addr, born) }) {
		c.Close(websocket.StatusGoingAway, "shutting down")
	}
}

func (g *Gateway) authenticateWS(r *http.Request) (*auth.Principal, error) {
	return g.authn.Authenticate(r)
}

// admit applies to a transport's opening request (a WebSocket handshake,
// a long-poll connect) what every one gets before a session can start:
// shutdown, the address's handshake rate, authentication with its
// cookie, and the session limits. False: it has answered.
func (g *Gateway) admit(w http.ResponseWriter, r *http.Request, authenticate func(*http.Request) (*auth.Principal, error)) (*auth.Principal, netip.Addr, bool) {
	select {
	case <-g.shutdown:
		refuseForNow(w, "jsonrtc: shutting down", retryAfterSoon())
		return nil, netip.Addr{}, false
	default:
	}
	g.mu.Lock()
	draining, cutOff := g.draining, g.cutOff
	g.mu.Unlock()
	if draining {
		refuseForNow(w, "jsonrtc: draining; try another node", retryAfterSoon())
		return nil, netip.Addr{}, false
	}
	if cutOff {
		refuseForNow(w, "jsonrtc: cut off from the cluster; try another node", retryAfterSoon())
		return nil, netip.Addr{}, false
	}
	addr, https := g.clientAddr(r)
	if addr.IsValid() && !g.lim.AllowHandshake(addr) {
		g.metrics.handshakes.WithLabelValues("throttled").Inc()
		w.Header().Set("Retry-After", "1")
		http.Error(w, "jsonrtc: too many handshakes from this address", http.StatusTooManyRequests)
		return nil, addr, false
	}
	if g.authn == nil {
		return nil, addr, true
	}
	p, err := authenticate(r)
	if err != nil {
		g.metrics.handshakes.WithLabelValues("unauthenticated").Inc()
		g.rlog.Info("handshake unauthenticated", "handshake refused", "remote", r.RemoteAddr, "origin", r.Header.Get("Origin"), "path", r.URL.Path, "err", err)
		auth.WriteError(w, err)
		return nil, addr, false
	}
	if p.SetCookie != nil {
		// A page served over https, directly or through a
		// TLS-terminating proxy, gets a Secure cookie.
		ck := *p.SetCookie
		ck.Secure = ck.Secure || https
		http.SetCookie(w, &ck)
	}
	if g.refuseBeforeUpgrade(w, p) {
		return nil, addr, false
	}
	return p, addr, true
}

// serveConn runs one socket's connect exchange, then hands the socket to
// a goroutine of its own that reads it until it is gone. The handshake
// (session set-up, logging, the store) needs a deep stack; a goroutine's
// stack only shrinks at garbage collection, and only while less than a
// quarter of it is in use, so the reader, which an idle session parks for
// its whole life, starts afresh with the runtime's small initial stack.
// born is the socket's place in the order of opening (link.born).
func (g *Gateway) serveConn(c conn, p *auth.Principal, addr netip.Addr, born uint64) {
	profile := ""
	if p != nil {
		profile = p.Limits
	}
	l := &link{g: g, c: c, addr: addr, born: born, max: g.cfg.Session.WindowFrames + 16, budget: g.lim.NewSocket(profile), transport: transportOf(c)}
	l.frames = g.metrics.frames.WithLabelValues(l.transport)
	l.idle.L = &l.mu
	if wc, ok := c.(*ws.Conn); ok {
		wc.SetTextPing(l.textPing)
	}
	s, err := g.handshake(g.ctx, c, l, p)
	if err != nil {
		c.CloseNow()
		l.stop()
		return
	}
	l.quota = s.quota
	if pc, ok := c.(*longpoll.Conn); ok {
		// Pings come on HTTP requests, not on the reader: set from here on,
		// as l.quota is read by the hook (the budget is safe for
		// concurrent use). Until then pings are answered uncharged.
		pc.SetTextPing(func() (bool, error) {
			ok, err := l.textPing()
			if err != nil {
				// transport/longpoll closes the connection 1008 itself.
				g.metrics.closes.WithLabelValues(hangUpFlood.metric).Inc()
			}
			return ok, err
		})
	}
	if !g.goTracked(func() { g.readLoop(s, l) }) {
		// Shutdown has begun: it ends every session, this one included.
		c.CloseNow()
		s.detach(l, false)
		l.stop()
	}
}

// readLoop reads the session's frames from l until the socket is gone.
// When the socket has been idle for readerIdleAfter, the loop goes on in
// a new goroutine and this one exits: the new one parks with the small
// stack a new goroutine has, which the runtime would not give back to
// this one once a frame had grown it (see ws.Options.IdleAfter).
func (g *Gateway) readLoop(s *Session, l *link) {
	c := l.c
	handedOver := false
	defer func() {
		if !handedOver {
			c.CloseNow()
			l.stop()
		}
	}()
	// The gateway's context: Shutdown cancels it, which closes the socket.
	ctx := g.ctx
	for {
		data, err := c.Read(ctx)
		if errors.Is(err, ws.ErrIdle) {
			if handedOver = g.goTracked(func() { g.readLoop(s, l) }); handedOver {
				return
			}
			continue // Shutdown is under way: it closes the socket.
		}
		if errors.Is(err, errFlood) {
			g.hangUp(c, hangUpFlood)
		}
		if err != nil {
			s.detach(l, ws.CloseStatus(err) == websocket.StatusNormalClosure)
			return
		}
		if h := s.inbound(l, data); h.code != 0 {
			// What was answered goes out before the close: the reason for
			// it, or the burst's answers a client resuming would
			// otherwise get again.
			if h.exhausted {
				// Ended before its last answer goes out: a client that
				// reads it and resumes at once finds no session to take
				// back. The answer is queued on l, which writes it still.
				s.endKeepingSocket(l, reasonSequenceExhausted)
			}
			l.waitWritten()
			g.hangUp(c, h)
			s.detach(l, false)
			return
		}
	}
}

// hangUp closes c for h and counts it. A flooder does not get the close
// handshake's seconds of reading: a client that means well has read the
// close frame within hangUpWait.
func (g *Gateway) hangUp(c conn, h hangUp) {
	g.metrics.closes.WithLabelValues(h.metric).Inc()
	c.CloseWithin(h.code, h.reason, hangUpWait)
}

const hangUpWait = 250 * time.Millisecond

// textPing charges a text ping to the socket's budget (transport/ws calls
// it on the reader's goroutine). A denied ping gets no pong: an error
// frame is no answer to a ping, and clients ping again later anyway.
func (l *link) textPing() (bool, error) {
	switch l.budget.Frame(l.quota) {
	case limits.Allow:
		return true, nil
	case limits.Flood:
		return false, errFlood
	}
	return false, nil
}

// readerIdleAfter is how long a socket has nothing to read before its
// reader moves to a new goroutine. Well under the SDK's 10 s text pings
// and the liveness pings, so that an idle session spends most of its life
// on a small stack; long enough that a busy one never moves.
const readerIdleAfter = 3 * time.Second

// handshake waits for the connect request and starts or resumes a session.
func (g *Gateway) handshake(ctx context.Context, c conn, l *link, p *auth.Principal) (*Session, error) {
	ctx, cancel := context.WithTimeout(ctx, g.cfg.WebSocket.HandshakeTimeout.D())
	defer cancel()
	held := func() {} // releases a resume's lock (below)
	for {
		data, err := c.Read(ctx)
		if errors.Is(err, errFlood) {
			g.hangUp(c, hangUpFlood)
		}
		if err != nil {
			return nil, err
		}
		// Before a session exists, the socket's own budget is all there
		// is: a connect flood must not cost a log line or an answer per
		// frame.
		switch l.budget.Frame(nil) {
		case limits.Flood:
			g.hangUp(c, hangUpFlood)
			return nil, errFlood
		case limits.DenyAnswer:
			writeNow(ctx, c, connectError(nil, protocol.CodeServiceUnavailable, "rate limited"))
			continue
		case limits.Deny:
			continue
		}
		f, err := protocol.Decode(data)
		if err == nil {
			err = protocol.Validate(f)
		}
		if err == nil && (f.Header.Action != protocol.ActionConnect || f.Control.Type != protocol.TypeRequest) {
			err = &protocol.Error{Code: protocol.CodeForbidden, Reason: "the first frame must be a connect request"}
		}
		if err != nil {
			writeNow(ctx, c, connectError(f, protocol.CodeOf(err), protocol.ReasonOf(err)))
			if !l.budget.Malformed() {
				g.hangUp(c, hangUpMalformed)
				return nil, err
			}
			continue
		}
		if id := f.Control.SessionID; id != "" {
			// One resume of a session at a time here, from the read of
			// its state to the attach of its socket: two at once (a
			// connect the client gave up on and its next, read late)
			// both found it missing from the tables, both rebuilt it
			// from the record, and the first copy, orphaned, wrote over
			// the second's record; or, the session here, the first
			// attached its socket after the second's probe found none,
			// and the second's attach closed it with 4000 "replaced"
			// (the cluster chaos test).
			unlock := sync.OnceFunc(g.resuming.lock(id))
			defer unlock()
			held = unlock
		}
		s, resumed, err := g.connect(c, l, f, p)
		if errors.Is(err, errResumeAgain) {
			// The record may well be there: the client keeps its session
			// and resumes again (docs/protocol.md §1.5, 1013).
			c.Close(websocket.StatusTryAgainLater, "session store busy; resume again")
			return nil, err
		}
		if errors.Is(err, errStaleConnect) {
			// Nobody listens, most likely; if somebody does, it resumes
			// again once its other socket is gone.
			reason := "the session's socket answers; resume again"
			if errors.Is(err, errOlderSocket) {
				reason = reasonOlderSocket
			}
			c.Close(websocket.StatusTryAgainLater, reason)
			return nil, err
		}
		if err != nil {
			held()
			writeNow(ctx, c, connectErrorFor(f, err))
			continue
		}
		// A session restored from the store is new to the handlers.
		if !resumed || s.takeRestored() {
			// Before the client hears it is connected: a watcher who
			// learns of it and subscribes at once must find it online.
			g.presence.SessionStarted(s)
			g.adoptNotes(s)
		}
		if g.beforeAttach != nil {
			g.beforeAttach(s)
		}
		s.inMu.Lock()
		s.mu.Lock()
		if s.ended || s.movedTo != "" {
			moved := s.movedTo != ""
			s.mu.Unlock()
			s.inMu.Unlock()
			if moved {
				// Another resume, on another node, took it between this
				// connect's read and its attach. One client has one
				// socket: one of the two connects is one it gave up on,
				// and it may be the other. 1013 has this client resume
				// again (where the other's socket, dead, lets go, and a
				// live one refuses: cluster.go onTakeover); 4000 ended
				// the session of a client that was still here.
				c.Close(websocket.StatusTryAgainLater, "resumed on another node meanwhile; resume again")
			}
			return nil, errEnded
		}
		s.attachLocked(l)
		var data2 []byte
		var resend [][]byte
		if resumed {
			resp := g.connectResponse(s)
			resend = s.st.Resume(f.Header.CSLR.V)
			resp.Header.SSLR = protocol.Seq(s.st.Processed)
			if data2, err = s.st.Send(resp, s.limits(), nil); err != nil {
				s.mu.Unlock()
				s.inMu.Unlock()
				s.end(reasonWindowFull)
				return nil, err
			}
		} else {
			// What was sent to the session from its joining the tables
			// to now (a relayed message, a notify, a call) is retained
			// but went to no socket: it follows the response, numbered
			// 1 (connect), in order. Unpushed, the client saw a gap it
			// never asks to fill, and acknowledged the frames away.
			data2, s.hello = s.hello, nil
			resend = s.st.Unsent(0)
		}
		s.queueLocked(data2)
		for _, d := range resend {
			s.queueLocked(d)
		}
		s.mu.Unlock()
		s.inMu.Unlock()
		if !resumed {
			// In the directory before the client hears it is connected:
			// a peer it tells at once finds it from every node. Then one
			// write of the record releases the response (starting): a
			// save here as well wrote it twice, the writer's round asked
			// for by the response's queueing writing it before or after,
			// the response released maybe before the directory's write;
			// in a cluster the presence share SessionStarted made was a
			// write of its own before.
			g.publish(s)
			if g.wal {
				s.mu.Lock()
				s.starting = false
				if !s.ended {
					s.markDirtyLocked()
				}
				s.mu.Unlock()
			} else {
				g.save(s)
			}
		}
		if resumed {
			g.metrics.resumes.WithLabelValues("ok").Inc()
			s.log.Info("session resumed", "resent", len(resend))
		} else {
			s.log.Info("session started", "subprotocol", c.Subprotocol())
		}
		return s, nil
	}
}

// errOlderSocket is errStaleConnect for a resume on a socket that opened
// before one the session has taken since (connect; docs/protocol.md §4.4
// "Stale connects").
var errOlderSocket = fmt.Errorf("%w: a newer socket resumed the session", errStaleConnect)

// reasonOlderSocket closes the socket of errOlderSocket's connect.
const reasonOlderSocket = "a newer socket resumed this session; resume again"

// connect applies docs/protocol.md §4.4 and §4.5 to a connect request:
// resume the named session if all three criteria hold, else start a new
// one.
func (g *Gateway) connect(c conn, l *link, f *protocol.Frame, p *auth.Principal) (*Session, bool, error) {
	addr := l.addr
	oracle := c.Subprotocol() == protocol.SubprotocolOracle
	identity, app, err := g.identify(f, p)
	if err != nil {
		return nil, false, err
	}
	processed := f.Control.Sequence
	if id := f.Control.SessionID; id != "" {
		// The caller holds the id's resuming lock (handshake).
		if old := g.lookup(id); old != nil {
			if old.identity != identity || old.app != app {
				// A session id alone never grants access: the victim's
				// session is left untouched.
				g.metrics.resumes.WithLabelValues("identity_mismatch").Inc()
				g.rlog.Warn("resume identity mismatch", "resume refused: another identity", "session_id", id, "identity", identity, "remote", c.RemoteAddr())
			} else {
				old.mu.Lock()
				err := old.st.CheckResume(&f.Header)
				ended := old.ended
				stale := outgrown(old.st, &f.Header, old.oracle)
				older := l.born < old.newest
				old.mu.Unlock()
				if stale && !ended {
					// The session has taken frames its client sent after
					// this connect: a connect it gave up on, read late.
					// Refused as a resume that does not fit, it ended the
					// session the client goes on with, on its socket here
					// (4000 "replaced"; the cluster chaos test).
					g.metrics.resumes.WithLabelValues("stale").Inc()
					old.rlog.Info("resume refused", "resume refused: the session has outgrown this connect")
					return nil, false, errStaleConnect
				}
				if older && !ended {
					// Nothing moved since (the client's first frame or
					// ack on its new socket not read yet), but a socket
					// that opened after this one resumed the session: a
					// client has one socket at a time and gives one up
					// before it dials the next, so this connect is one it
					// gave up on, read late. Taken, it closed the socket
					// the client went on with with 4000, which ends the
					// session there (TestChaosMixed). Evidence, not a
					// probe: a resume on a newer socket, the common case,
					// waits for nothing.
					g.metrics.resumes.WithLabelValues("stale").Inc()
					old.rlog.Info("resume refused", "resume refused: a newer socket resumed the session")
					return nil, false, errOlderSocket
				}
				if err == nil && !ended && g.node != nil {
					switch probed, perr := old.probe(); {
					case perr == nil:
						// The socket the session has here answers: this
						// connect is one its client gave up on (it drops
						// a socket before it dials another), read late (a
						// node slow in an election, under node kills).
						// Taken, it closed the client's live socket with
						// 4000, which ends the session (cluster.go
						// onTakeover refuses the same from another node).
						g.metrics.resumes.WithLabelValues("stale").Inc()
						old.rlog.Info("resume refused", "resume refused: the session's socket here answers")
						return nil, false, errStaleConnect
					case inDoubt(probed, perr):
						// Silent, and open: it goes with 1013, not the
						// attach's 4000, should its client be there
						// (cluster.go closeInDoubt).
						old.mu.Lock()
						if old.conn == probed {
							old.setConnLocked(nil)
							g.closeInDoubt(probed, reasonSilent)
						}
						old.mu.Unlock()
					}
				}
				if err == nil && !ended {
					if err := g.completeRestore(old, c, f, p, addr); err != nil {
						return nil, false, err
					}
					return old, true, nil
				}
				g.metrics.resumes.WithLabelValues("refused").Inc()
				old.rlog.Info("resume refused", "resume refused; starting anew", "err", err)
				old.end(reasonReplaced)
			}
		} else if s, err := g.resumeStored(c, f, p, addr, identity, app, oracle); s != nil || err != nil {
			return s, err == nil, err
		}
		if processed == 0 {
			// The SDK numbers its next frame 2 after a failed resume: the
			// reconnect connect stands for its sequence 1.
			processed = 1
		}
	}
	// A guest costs the SIP network nothing until it calls: it neither
	// registers nor (presence.Guest) publishes.
	guest := (p != nil && p.Guest) || (p == nil && f.Header.Initiator == "")
	s := g.newSession(identity, oracle, processed)
	s.starting = true
	// The response takes the first sequence before anything can be
	// sent to the session: the SDKs take a new session's response as
	// in order, so one numbered after frames sent meanwhile would have
	// them dropped as duplicates when they follow it (handshake).
	if s.hello, err = s.st.Send(g.connectResponse(s), s.limits(), nil); err != nil {
		return nil, false, err
	}
	s, err = g.open(c, f, p, addr, guest, s, true)
	return s, false, err
}

// connectResponse is the 200 to s's connect (a resume adds its sslr).
func (g *Gateway) connectResponse(s *Session) *protocol.Frame {
	return &protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeResponse, Package: protocol.PackageRegister, MessageState: protocol.StateFinal},
		Header: protocol.Header{Action: protocol.ActionConnect, Initiator: s.identity, Target: s.identity,
			ResponseCode: protocol.CodeOK, Reason: "OK", Ext: g.iceExt(s.identity)},
	}
}

// resumeStored applies docs/protocol.md §4.4 to the record of a session
// that is not live here (§4.6: it lived in this gateway's previous run).
// When the record exists, names the connect's identity and application,
// and passes the resume criteria, the session is rebuilt from it and owned
// by compare-and-set; nil, nil otherwise: the connect starts anew.
func (g *Gateway) resumeStored(c conn, f *protocol.Frame, p *auth.Principal, addr netip.Addr, identity, app string, oracle bool) (*Session, error) {
	id := f.Control.SessionID
	// The store is waited for, not taken for an answer: a resume is
	// refused only when the record is gone or does not fit (cluster.go,
	// resumeWait).
	deadline := time.Now().Add(g.resumeBudget())
	r, rev, err := g.restoreWaiting(id, deadline)
	switch {
	case err != nil:
		g.metrics.resumes.WithLabelValues("store_error").Inc()
		g.rlog.Warn("resume store", "reading a session record; the client resumes again", "session_id", id, "err", err)
		return nil, errResumeAgain
	case r == nil:
		g.metrics.resumes.WithLabelValues("unknown").Inc()
		return nil, nil
	case r.Identity != identity || r.App != app:
		g.metrics.resumes.WithLabelValues("identity_mismatch").Inc()
		g.rlog.Warn("resume identity mismatch", "resume refused: another identity", "session_id", id, "identity", identity, "remote", c.RemoteAddr())
		return nil, nil
	}
	if outgrown(r.State, &f.Header, r.Oracle || oracle) {
		// Its record has frames the client sent after this connect: the
		// client gave up on it and resumed elsewhere (it is read late).
		// A new session for it would be one the client never uses.
		g.metrics.resumes.WithLabelValues("stale").Inc()
		g.rlog.Info("resume refused", "resume refused: the session has outgrown this connect", "session_id", id)
		return nil, errStaleConnect
	}
	if behind(r.State, &f.Header) && g.node != nil {
		// The client has frames the record does not: a record read
		// behind its last write (a replica a moment behind, a leader
		// just elected). Refused, the session was lost at the client
		// (the cluster chaos test: "cslr 52 is outside the retained
		// window (49..51)"): the client resumes again, and reads again.
		g.metrics.resumes.WithLabelValues("store_error").Inc()
		g.rlog.Warn("resume store", "the session record is behind its client; the client resumes again", "session_id", id, "cslr", f.Header.CSLR.V, "next", r.State.NextSeq)
		return nil, errResumeAgain
	}
	if err := r.State.CheckResume(&f.Header); err != nil {
		g.metrics.resumes.WithLabelValues("refused").Inc()
		g.rlog.Info("resume refused", "resume refused; starting anew", "session_id", id, "err", err)
		return nil, nil
	}
	prev := r.Owner
	elsewhere := g.node != nil && prev != "" && prev != g.self()
	landed := false // the session is in the tables here
	// released is the revision of prev's last write as it let go, or,
	// when prev had no copy to let go of (not in its tables, or dead),
	// the revision read as it was asked: a record prev writes after it
	// is prev's own resume or restore of the session, asked again below.
	// Taken without asking (prev answered "not here", then its start-up
	// restored the record by compare-and-set before this node's), prev
	// kept a copy behind what the client received here, and the
	// client's next resume there ended the session ("cslr 20 is outside
	// the retained window (16..18)": the cluster chaos test).
	var released uint64
	release := func() (err error) {
		if released, err = g.releaseAt(prev, id, &f.Header, deadline); err == nil && released == 0 {
			released = rev
		}
		return err
	}
	if elsewhere {
		// Another node owns it: it writes its last state and lets go
		// first (cluster.go), unless its live state says this connect
		// is stale.
		if err = release(); err != nil {
			// Refused as stale by a live owner: a connect the client
			// gave up on, which a new session would not serve either;
			// should the client be there, it resumes again. Or the owner
			// is alive and has not let go within the budget: the client
			// resumes again too.
			return nil, releaseErr(err)
		}
		// prev has let the session go for this resume: should the resume
		// fail from here on (the store not taking the record over within
		// the budget), no node has the session until its client resumes
		// again, and frames for it here wait for that (letgo.go).
		defer func() {
			if !landed {
				g.mu.Lock()
				g.noteLetGoLocked(id)
				g.mu.Unlock()
			}
		}()
	}
	s := g.sessionOf(identity, r.Oracle || oracle, r.State)
	s.restored = true
	s.setRoutes(r.Routes)
	s.setRelays(r.Relays)
	s.setOwed(r)
	for try := 0; ; try++ {
		if try > 0 || elsewhere {
			// The record as the previous owner left it. A replica may
			// serve a read a moment behind the last write (JetStream's
			// direct gets): a compare-and-set over it fails, and the
			// read is made again.
			if r, rev, err = g.restoreWaiting(id, deadline); err != nil {
				g.metrics.resumes.WithLabelValues("store_error").Inc()
				g.rlog.Warn("resume store", "reading a session record in a takeover; the client resumes again", "session_id", id, "err", err)
				return nil, errResumeAgain
			}
			if r != nil && r.Identity == identity && r.App == app {
				// As at the first read: a record read behind the client
				// is read again, one past this connect refuses it stale,
				// rather than lose the session (the chaos test).
				switch {
				case behind(r.State, &f.Header):
					g.metrics.resumes.WithLabelValues("store_error").Inc()
					return nil, errResumeAgain
				case outgrown(r.State, &f.Header, r.Oracle || oracle):
					g.metrics.resumes.WithLabelValues("stale").Inc()
					return nil, errStaleConnect
				}
			}
			if r == nil || r.Identity != identity || r.App != app || r.State.CheckResume(&f.Header) != nil {
				g.metrics.resumes.WithLabelValues("refused").Inc()
				g.rlog.Info("resume refused", "session record gone or changed in the takeover", "session_id", id, "err", err)
				return nil, nil
			}
			if elsewhere && r.Owner == prev && rev > released && try < 16 {
				// Written by prev after its last write as it let go:
				// prev took the session back (its client's resume
				// there, this connect one it gave up on, or its
				// start-up's restore). Taken over without asking, the
				// session prev serves lost its socket with 4000 (the
				// cluster chaos test): prev is asked again, and refuses
				// if its socket is the client's.
				if err = release(); err != nil {
					return nil, releaseErr(err)
				}
				continue
			}
			if r.Owner != prev && r.Owner != "" && r.Owner != g.self() {
				// Another resume took it meanwhile (the last one wins,
				// as on one node): that owner lets go in turn.
				prev = r.Owner
				if err = release(); err != nil {
					return nil, releaseErr(err)
				}
				continue
			}
			s = g.sessionOf(identity, r.Oracle || oracle, r.State)
			s.restored = true
			s.setRoutes(r.Routes)
			s.setRelays(r.Relays)
			s.setOwed(r)
		}
		err := g.ownBy(s, r, rev, deadline)
		if err == nil {
			break
		}
		if !errors.Is(err, store.ErrConflict) {
			// The store did not take the write (no leader, or it timed
			// out): it is made again, from a fresh read, until deadline.
			if time.Until(deadline) < 100*time.Millisecond || !g.pause(100*time.Millisecond) {
				g.metrics.resumes.WithLabelValues("store_error").Inc()
				g.rlog.Warn("resume store", "taking a session record over; the client resumes again", "session_id", id, "err", err)
				return nil, errResumeAgain
			}
			continue
		}
		if try >= 8 || g.node == nil {
			// Another connect took the record first (or it expired).
			g.metrics.resumes.WithLabelValues("refused").Inc()
			g.rlog.Info("resume refused", "session record taken by another resume", "session_id", id, "err", err)
			return nil, nil
		}
		time.Sleep(time.Duration(try+1) * 10 * time.Millisecond) // a replica catching up: no event to wait on
	}
	s.log.Info("session restored from the store", "previous_owner", prev)
	s, err = g.open(c, f, p, addr, r.Guest, s, false)
	landed = err == nil
	if err == nil {
		g.restorePresence(s, r.Presence)
		g.restoreNotes(s, r.Notes)
		g.tookOver(s)
		s.takeAwaiting()
		if !elsewhere || g.node.Down(prev) {
			// A live owner that let go goes on with the waits it
			// holds (outbox.go).
			s.takeOutbox()
		}
	}
	return s, err
}

// outgrown reports whether st has processed frames beyond the last one
// the client had sent when it made connect h (its csuw), or has had
// frames acknowledged beyond the last one it had received then (its
// cslr, below the frames trimmed: register frames aside, what a client
// processed only grows): the client sent or acknowledged them after h,
// on another socket, so h is a connect it gave up on. This is evidence,
// not a guess on timing. The SDKs' cslr never goes back, so a cslr
// below what the client has acknowledged since (a connect response, a
// register frame: not trimmed) is outgrown too; wsc.js's (oracle) goes
// back below its connect response's when older frames are resent after
// it, so for it only the trimmed frames count.
func outgrown(st *session.State, h *protocol.Header, oracle bool) bool {
	if h.CSUW.IsNumber() && st.Processed > h.CSUW.V {
		return true
	}
	if !h.CSLR.IsNumber() {
		return false
	}
	return h.CSLR.V < st.Trimmed || !oracle && h.CSLR.V < st.Acked
}

// behind reports whether connect h says the client received a frame
// beyond the last one st sent.
func behind(st *session.State, h *protocol.Header) bool {
	return h.CSLR.IsNumber() && h.CSLR.V+1 > st.NextSeq
}

// releaseErr is the connect's error for release's: errResumeAgain as it
// is, errStaleConnect for a stale resume.
func releaseErr(err error) error {
	if errors.Is(err, errResumeAgain) {
		return err
	}
	return errStaleConnect
}

// completeRestore gives a session restored at start-up what its connect
// gave it in the previous run: the principal, the guest place, the SIP
// registration. A no-op for any other session.
func (g *Gateway) completeRestore(s *Session, c conn, f *protocol.Frame, p *auth.Principal, addr netip.Addr) error {
	s.mu.Lock()
	unbound := s.unbound
	s.unbound = false
	s.mu.Unlock()
	if !unbound {
		return nil
	}
	undo := func() { s.mu.Lock(); s.unbound = true; s.mu.Unlock() }
	release, err := g.openGuest(p, addr)
	if err != nil {
		undo()
		return err
	}
	var reg *interwork.Binding
	if !s.guest {
		if reg, err = g.registerSession(f, s, c, addr, p); err != nil {
			release()
			undo()
			return err
		}
	}
	s.mu.Lock()
	s.principal, s.releaseGuest = p, release
	s.mu.Unlock()
	g.regs.Attach(regSession{s}, reg)
	return nil
}

// open gives s, a new (admit) or restored session, its limits quota, its
// guest place and SIP registration, and a place in the session tables.
func (g *Gateway) open(c conn, f *protocol.Frame, p *auth.Principal, addr netip.Addr, guest bool, s *Session, admit bool) (*Session, error) {
	identity, app := s.identity, ""
	if p != nil {
		app = p.Application
	}
	profile := ""
	if p != nil {
		profile = p.Limits
	}
	releaseGuest, err := g.openGuest(p, addr)
	if err != nil {
		return nil, err
	}
	s.app = app
	quota, err := g.openQuota(app, profile, s, admit && !guest)
	if errors.Is(err, errAdmission) {
		releaseGuest()
		g.rlog.Warn("session admission", "session refused: its admission not written", "identity", identity, "err", err)
		return nil, unavailable("session admission failed", retryAfterSoon())
	}
	if err != nil {
		releaseGuest()
		g.rlog.Info("session limits", "session refused by limits", "identity", identity, "err", err)
		return nil, unavailable("limit reached: "+err.Error(), retryAfterFull)
	}
	var reg *interwork.Binding
	if !guest {
		if reg, err = g.registerSession(f, s, c, addr, p); err != nil {
			quota.Close()
			releaseGuest()
			g.forgetAdmission(s)
			return nil, err
		}
	}
	s.principal, s.quota, s.guest, s.releaseGuest, s.profile = p, quota, guest, releaseGuest, profile
	s.unbound = false
	if err := g.add(s); err != nil {
		quota.Close()
		releaseGuest()
		g.forgetAdmission(s)
		g.regs.Release(reg)
		if errors.Is(err, errTooMany) {
			return nil, unavailable("too many sessions", retryAfterFull)
		}
		return nil, unavailable("shutting down", retryAfterSoon())
	}
	g.regs.Attach(regSession{s}, reg)
	return s, nil
}

// identify names the identity and application a connect runs as. For a
// configured application that is the authenticated principal (a contrary
// initiator is refused with 403); for the built-in open application it is
// the initiator the client claims, or a generated guest identity.
func (g *Gateway) identify(f *protocol.Frame, p *auth.Principal) (identity, app string, err error) {
	if p != nil {
		b, err := auth.Bind(p, f.Header.Initiator)
		if err != nil {
			return "", "", &protocol.Error{Code: auth.Status(err), Reason: authReason(err)}
		}
		*p = *b
		return b.Identity, b.Application, nil
	}
	if f.Header.Initiator == "" {
		return g.guestIdentity(), "", nil
	}
	if !validIdentity(f.Header.Initiator) {
		return "", "", &protocol.Error{Code: protocol.CodeBadRequest, Reason: "initiator is not a valid identity"}
	}
	return f.Header.Initiator, "", nil
}

// authReason is the client-facing text of an auth error: its body, which
// auth keeps free of secrets.
func authReason(err error) string {
	var e *auth.Error
	if errors.As(err, &e) {
		return e.Body
	}
	return "forbidden"
}

func validIdentity(s string) bool {
	if len(s) == 0 || len(s) > 256 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c == 0x7f || c == '<' || c == '>' || c == '"' || c == ',' || c == ';' || c == '\\' {
			return false
		}
	}
	return true
}

// connectErrorFor answers a failed connect, with header.authenticate for
// a registrar challenge and header.retry_after for a connect refused for
// a while.
func connectErrorFor(f *protocol.Frame, err error) []byte {
	var ce *interwork.ChallengeError
	var re *interwork.RetryError
	var rl *retryLater
	switch {
	case errors.As(err, &ce):
		out := registerError(f, ce.Code, protocol.Reason(ce.Code))
		out.Header.Authenticate = ce.Authenticate
		return out.Marshal()
	case errors.As(err, &re):
		return retryAfterError(f, re.Reason, int64(re.After/time.Second))
	case errors.As(err, &rl):
		return retryAfterError(f, rl.err.Reason, int64(rl.after))
	}
	return connectError(f, protocol.CodeOf(err), protocol.ReasonOf(err))
}

// retryAfterError is the 503 answering connect f that a client may try
// again after secs seconds (header.retry_after).
func retryAfterError(f *protocol.Frame, reason string, secs int64) []byte {
	out := registerError(f, protocol.CodeServiceUnavailable, reason)
	out.Header.Ext = []protocol.Ext{{Name: "retry_after", Kind: protocol.ExtNumber, Value: strconv.FormatInt(secs, 10)}}
	return out.Marshal()
}

// registerError is the error frame answering connect f.
func registerError(f *protocol.Frame, code int, reason string) *protocol.Frame {
	out := &protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeError, Package: protocol.PackageRegister},
		Header:  protocol.Header{Action: protocol.ActionConnect, ErrorCode: code, Reason: reason},
	}
	if f != nil {
		out.Control.AckSequence = f.Control.Sequence
		out.Control.CorrelationID = protocol.ClientCorrelation(f)
	}
	return out
}

// connectError answers a connect that failed. wsc.js needs package_type
// register on it.
func connectError(f *protocol.Frame, code int, reason string) []byte {
	out := registerError(f, code, reason)
	if f != nil && f.Header.Action != "" && f.Header.Action != protocol.ActionConnect {
		out.Header.Action = f.Header.Action
		out.Control.Package = f.EffectivePackage()
	}
	return out.Marshal()
}

func writeNow(ctx context.Context, c conn, data []byte) {
	c.Write(ctx, data)
}

// inbound processes one frame from the session's socket l. Every frame
// is charged to the socket's budget (and the identity's and
// application's) before anything else is done with it. A non-zero hangUp
// closes the socket.
func (s *Session) inbound(l *link, data []byte) hangUp {
	if s.g.wal {
		// No frame is half processed in the writer's cut (persist.go).
		s.g.walMu.RLock()
		defer s.g.walMu.RUnlock()
	}
	s.inMu.Lock()
	defer s.inMu.Unlock()
	verdict := l.budget.Frame(s.quota)
	if verdict == limits.Flood {
		return hangUpFlood
	}
	f, err := protocol.Decode(data)
	if verdict != limits.Allow {
		if err == nil {
			s.refuse(l, f, verdict == limits.DenyAnswer)
		}
		return hangUp{}
	}
	if err != nil {
		return s.undecodable(l, data, err)
	}
	s.mu.Lock()
	if s.ended || s.conn != l {
		s.mu.Unlock()
		return hangUp{}
	}
	s.lastError = 0
	if f.Control.SessionID != "" && f.Control.SessionID != s.id {
		// A stale frame from before a failed resume (the SDK keeps its
		// old resend queue): it belongs to no live session here.
		s.mu.Unlock()
		s.log.Debug("dropping frame of another session", "frame_session", f.Control.SessionID)
		return hangUp{}
	}
	if l.behind && s.newSequence(f) {
		s.mu.Unlock()
		return hangUpBehind
	}
	v, gap := s.st.Receive(f)
	if v == session.Deliver {
		s.processedLocked()
	}
	switch v {
	case session.Duplicate:
		s.scheduleAckLocked()
		s.mu.Unlock()
		return hangUp{}
	case session.AckOnly:
		s.mu.Unlock()
		return hangUp{}
	case session.Unsequenced:
		s.mu.Unlock()
		if f.Header.Action == protocol.ActionConnect {
			s.Send(errorFor(f, protocol.CodeMethodNotAllowed, "already connected"), false)
		} else {
			s.Send(errorFor(f, protocol.CodeBadRequest, "control.sequence is missing"), false)
		}
		return hangUp{}
	}
	s.scheduleAckLocked()
	s.mu.Unlock()
	if gap > 0 {
		s.rlog.Info("sequence gap", "sequence gap", "missing", gap, "sequence", f.Control.Sequence)
	}
	l.frames.Inc()
	if f.Control.Sequence == protocol.MaxSequence {
		return s.exhausted(f.Control.Sequence, errorFor(f, 0, ""))
	}
	if err := protocol.ValidateDeclared(f, s.g.tmpl.Load().Declared); err != nil {
		s.Send(errorFor(f, protocol.CodeOf(err), protocol.ReasonOf(err)), false)
		return hangUp{}
	}
	s.dispatch(f)
	return hangUp{}
}

// newSequence reports whether f takes a client sequence not yet
// processed; s.mu is held.
func (s *Session) newSequence(f *protocol.Frame) bool {
	return f.Control.Type != protocol.TypeAcknowledgement && f.Control.Sequence > s.st.Processed
}

// refuse handles a frame over the budget, which is not processed. When
// answer is set (at most once a second per socket) a request without a
// sequence and a new sequenced frame get error 503, and the sequenced
// frame counts as processed: the error is its outcome, as docs/protocol.md
// §9.3 has it, and the client does not resend it. Any other denied
// frame gets nothing, and a new sequenced one is not acknowledged either:
// nothing is lost, but nothing above it can be processed without
// skipping it, so the socket is behind, and the next new sequenced frame
// the budget allows closes it (1013, hangUpBehind) for the client to
// resume and resend from the last frame processed. Acknowledgements and
// duplicates dropped cost nothing: acks are cumulative.
func (s *Session) refuse(l *link, f *protocol.Frame, answer bool) {
	s.mu.Lock()
	if s.ended || s.conn != l || f.Control.SessionID != "" && f.Control.SessionID != s.id {
		s.mu.Unlock()
		return
	}
	fresh := s.newSequence(f)
	unsequencedRequest := f.Control.Type == protocol.TypeRequest && f.Control.Sequence == 0
	switch {
	case fresh && (!answer || l.behind):
		l.behind = true
		s.mu.Unlock()
		return
	case fresh:
		s.st.Receive(f)
		s.scheduleAckLocked()
	case !answer || !unsequencedRequest:
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	s.Send(errorFor(f, protocol.CodeServiceUnavailable, "rate limited"), false)
}

// exhausted answers the frame that took the last client sequence there
// is with error 500, which ends the session on the SDK's side too: no
// later frame could be numbered. out is the error frame, addressed.
func (s *Session) exhausted(seq uint64, out *protocol.Frame) hangUp {
	out.Header.ErrorCode = protocol.CodeServerError
	out.Header.Reason = "sequence numbers exhausted; start a new session"
	s.Send(out, false)
	s.rlog.Info("sequence exhausted", "client sequence numbers exhausted; ending the session", "sequence", seq)
	return hangUpExhausted
}

// undecodable answers a frame that is not a valid JSONrtc frame with
// error 400. When its sequence can still be read, it counts as processed,
// so that the client does not resend it after a resume. Too many of them
// close the socket.
func (s *Session) undecodable(l *link, data []byte, err error) hangUp {
	var loose struct {
		Control struct {
			Type         any `json:"type"`
			Sequence     any `json:"sequence"`
			SubsessionID any `json:"subsession_id"`
			Package      any `json:"package_type"`
		} `json:"control"`
		Header struct {
			Action any `json:"action"`
		} `json:"header"`
	}
	out := &protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeError, Package: protocol.PackageCall},
		Header:  protocol.Header{ErrorCode: protocol.CodeBadRequest, Reason: protocol.ReasonOf(err)},
	}
	var seq uint64
	isObject := json.Unmarshal(data, &loose) == nil
	if isObject {
		if v, ok := loose.Control.SubsessionID.(string); ok && len(v) <= 128 {
			out.Control.SubsessionID = v
		}
		if v, ok := loose.Control.Package.(string); ok && protocol.KnownPackage(protocol.Package(v)) {
			out.Control.Package = protocol.Package(v)
		}
		if v, ok := loose.Header.Action.(string); ok && len(v) <= 32 && validIdentity(v) {
			out.Header.Action = protocol.Action(v)
		}
		if n, ok := loose.Control.Sequence.(float64); ok && n >= 1 && n <= protocol.MaxSequence && n == float64(uint64(n)) {
			seq = uint64(n)
			out.Control.CorrelationID = "c" + strconv.FormatUint(seq, 10)
		}
	}
	s.mu.Lock()
	if seq != 0 && l.behind && seq > s.st.Processed {
		// Answering it would process it past a frame dropped for the
		// rate limit: refuse's rule.
		s.mu.Unlock()
		return hangUpBehind
	}
	if seq != 0 {
		s.st.Receive(&protocol.Frame{Control: protocol.Control{Type: protocol.TypeMessage, Sequence: seq}})
	}
	s.lastError++
	n := s.lastError
	s.mu.Unlock()
	s.g.metrics.badFrames.Inc()
	if seq == protocol.MaxSequence {
		return s.exhausted(seq, out)
	}
	s.Send(out, false)
	if n >= maxBadFrames || !l.budget.Malformed() {
		return hangUpMalformed
	}
	return hangUp{}
}

// errorFor builds the error frame that answers f.
func errorFor(f *protocol.Frame, code int, reason string) *protocol.Frame {
	return &protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeError, Package: f.EffectivePackage(),
			SubsessionID: f.Control.SubsessionID, CorrelationID: protocol.ClientCorrelation(f)},
		Header: protocol.Header{Action: f.Header.Action, ErrorCode: code, Reason: reason},
	}
}

// dispatch hands a new, valid frame to its package handler.
func (s *Session) dispatch(f *protocol.Frame) {
	if f.Control.Type == protocol.TypeRequest && s.principal != nil {
		if err := auth.CheckInitiator(s.principal, f.Header.Initiator); err != nil {
			s.rlog.Warn("initiator refused", "initiator contradicts the identity", "initiator", f.Header.Initiator)
			s.Send(errorFor(f, protocol.CodeForbidden, "initiator is not you"), false)
			return
		}
	}
	if err := s.checkDestinations(f); err != nil {
		s.Send(errorFor(f, protocol.CodeOf(err), protocol.ReasonOf(err)), false)
		return
	}
	if f.Control.Type == protocol.TypeRequest && f.Header.Action == protocol.ActionSend && !s.quota.AllowMessage() {
		s.Send(errorFor(f, protocol.CodeServiceUnavailable, "message rate limited"), false)
		return
	}
	if s.g.behindAdoption(s, f, func() { s.handleLater(f) }) {
		return
	}
	s.handle(f)
}

// handleLater is handle off the session's reader: a frame that waited
// for its call's adoption (startadopt.go).
func (s *Session) handleLater(f *protocol.Frame) {
	if s.g.wal {
		s.g.walMu.RLock()
		defer s.g.walMu.RUnlock()
	}
	s.handle(f)
}

// handle hands a frame dispatch checked to its package handler, or to
// the node hosting its interaction.
func (s *Session) handle(f *protocol.Frame) {
	if f.Control.Type == protocol.TypeRequest && s.declared(f) {
		return
	}
	if f.EffectivePackage() == protocol.PackageMessaging && s.g.inboundAnswer(s, f) {
		return
	}
	here := s.routedHere(f)
	if endsLeg(f) {
		s.mu.Lock()
		s.endCallLocked(f)
		s.mu.Unlock()
	}
	rt, reported := s.reportRouteOf(f)
	if host := s.hostOf(f); host != "" {
		if reported {
			// An answer to a message (reportdirect.go).
			s.forwardAnswer(host, f, rt)
			return
		}
		s.forward(host, f)
		return
	}
	if reported && !s.g.msgs.Holds(s.id, f.Control.CorrelationID) {
		// An answer to a message an earlier life of this node delivered
		// (a restart on its store), as dispatchInbound's.
		s.g.reportAnswer(f, rt)
		return
	}
	switch f.EffectivePackage() {
	case protocol.PackageCall:
		if here && s.astray(f) {
			return
		}
		s.routeNewCall(f)
		s.g.calls.HandleFrame(s, f)
	case protocol.PackageMessaging:
		if s.answeredEarly(f) {
			return
		}
		s.awaitReport(f)
		s.g.msgs.HandleFrame(s, f)
	case protocol.PackagePresence:
		s.g.presence.HandleFrame(s, f)
	case protocol.PackageMessageNotification:
		s.g.notes.HandleFrame(s, f)
	case protocol.PackageRegister:
		s.onRegisterFrame(f)
	default:
		if f.Control.Type == protocol.TypeRequest {
			s.Send(errorFor(f, protocol.CodeMethodNotAllowed, "package "+string(f.EffectivePackage())+" is not served by this gateway"), false)
		}
	}
}

// onRegisterFrame handles a register-package frame on a live session:
// the answer to an authenticate request (interwork.Registrations asked
// it), a standby request (push.go), an ice_servers request (turn.go), or
// a connect (405).
func (s *Session) onRegisterFrame(f *protocol.Frame) {
	if f.Header.Action == protocol.ActionStandby && f.Control.Type == protocol.TypeRequest {
		s.onStandby(f)
		return
	}
	if f.Header.Action == protocol.ActionICEServers && f.Control.Type == protocol.TypeRequest {
		s.onICEServers(f)
		return
	}
	if f.Header.Action != protocol.ActionAuthenticate {
		s.Send(errorFor(f, protocol.CodeMethodNotAllowed, "already connected"), false)
		return
	}
	if f.Control.Type == protocol.TypeRequest {
		s.Send(errorFor(f, protocol.CodeMethodNotAllowed, "only the gateway sends authenticate"), false)
		return
	}
	if !s.g.regs.Answered(s.id, f) {
		// Late (after the bound) or unsolicited: nothing waits for it.
		s.log.Debug("authenticate answer nobody waits for", "correlation_id", f.Control.CorrelationID)
	}
}
