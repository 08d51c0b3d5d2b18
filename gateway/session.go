package gateway

import (
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/session"
	"github.com/jsonrtc/jsonrtc/transport/ws"
)

// endReason says why a session ended.
type endReason int

const (
	reasonLogout endReason = iota
	reasonResumeTimeout
	reasonReplaced // a failed resume of the same identity started anew
	reasonWindowFull
	reasonShutdown
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
	}
	return "unknown"
}

// Session is one JSONrtc session on the gateway side. It implements
// call.Endpoint.
type Session struct {
	g        *Gateway
	id       string
	identity string
	oracle   bool
	log      *slog.Logger

	// inMu serialises the processing of inbound frames: during a socket
	// replacement two readers may briefly run.
	inMu sync.Mutex

	mu        sync.Mutex
	st        *session.State
	conn      *link // current socket, nil while waiting for a resume
	ended     bool
	resume    *time.Timer
	ackTimer  *time.Timer
	lastError int // consecutive undecodable frames
}

// link is one socket attached to a session, with its writer.
type link struct {
	c    *ws.Conn
	out  chan []byte
	done chan struct{} // closed when the writer exits
}

func (g *Gateway) newSession(identity string, oracle bool, processed uint64) *Session {
	id := newID()
	return &Session{
		g: g, id: id, identity: identity, oracle: oracle,
		st:  session.New(id, processed),
		log: g.log.With("session_id", id, "identity", identity),
	}
}

func (s *Session) ID() string       { return s.id }
func (s *Session) Identity() string { return s.identity }
func (s *Session) Oracle() bool     { return s.oracle }

func (s *Session) limits() session.Limits {
	return session.Limits{WindowFrames: s.g.cfg.Session.WindowFrames, WindowBytes: s.g.cfg.Session.WindowBytes}
}

var errEnded = errors.New("gateway: session ended")

// Send implements call.Endpoint: it stamps, retains and queues f.
func (s *Session) Send(f *protocol.Frame, selfCorrelate bool) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return 0, errEnded
	}
	if selfCorrelate {
		f.Control.CorrelationID = "s" + strconv.FormatUint(s.st.NextSeq, 10)
	}
	data, err := s.st.Send(f, s.limits(), nil)
	if err != nil {
		// The peer left too much unacknowledged. End the session out of
		// line: the caller holds handler locks that ending needs.
		s.log.Warn("retained window full; ending session")
		s.g.metrics.closes.WithLabelValues("window_full").Inc()
		if s.conn != nil {
			s.conn.c.CloseNow()
		}
		go s.end(reasonWindowFull)
		return 0, err
	}
	s.queueLocked(data)
	s.stopAckTimerLocked()
	return f.Control.Sequence, nil
}

// queueLocked hands data to the current socket's writer. A writer that
// cannot keep up has its socket dropped: the frames stay retained and
// the client gets them when it resumes, so nothing is lost.
func (s *Session) queueLocked(data []byte) {
	if s.conn == nil {
		return
	}
	select {
	case s.conn.out <- data:
	default:
		s.log.Warn("socket too slow; dropping it for a resume")
		s.g.metrics.closes.WithLabelValues("slow_socket").Inc()
		s.conn.c.CloseNow()
		s.conn = nil
		s.startResumeTimerLocked()
	}
}

// sendUnsequenced queues a frame outside the numbering (an error to a
// frame that could not be decoded is still numbered; this is for acks).
func (s *Session) sendAckLocked() {
	if s.oracle || s.conn == nil || !s.st.AckOwed() {
		return
	}
	f := &protocol.Frame{Control: protocol.Control{Type: protocol.TypeAcknowledgement, Package: protocol.PackageRegister}}
	data, _ := s.st.Send(f, s.limits(), nil)
	s.queueLocked(data)
}

func (s *Session) scheduleAckLocked() {
	if s.oracle || s.ackTimer != nil || s.ended {
		return
	}
	s.ackTimer = time.AfterFunc(s.g.cfg.Session.AckDelay.D(), func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.ackTimer = nil
		if !s.ended {
			s.sendAckLocked()
		}
	})
}

func (s *Session) stopAckTimerLocked() {
	if s.ackTimer != nil {
		s.ackTimer.Stop()
		s.ackTimer = nil
	}
}

func (s *Session) startResumeTimerLocked() {
	if s.resume != nil {
		s.resume.Stop()
	}
	s.resume = time.AfterFunc(s.g.cfg.Session.ResumeTimeout.D(), func() {
		s.mu.Lock()
		waiting := s.conn == nil && !s.ended
		s.mu.Unlock()
		if waiting {
			s.end(reasonResumeTimeout)
		}
	})
}

// attach makes l the session's socket, replacing (close 4000) a still
// open one, and queues first the frames in pre.
func (s *Session) attachLocked(l *link) {
	if old := s.conn; old != nil {
		s.g.wg.Go(func() { old.c.Close(ws.StatusReplaced, "replaced") })
	}
	s.conn = l
	if s.resume != nil {
		s.resume.Stop()
		s.resume = nil
	}
}

// detach is called when l's reader ends. A logout (close 1000) ends the
// session; any other loss waits for a resume.
func (s *Session) detach(l *link, logout bool) {
	s.mu.Lock()
	if s.conn != l || s.ended {
		s.mu.Unlock()
		return
	}
	s.conn = nil
	if !logout {
		s.startResumeTimerLocked()
		s.mu.Unlock()
		s.log.Info("socket lost; waiting for resume")
		return
	}
	s.mu.Unlock()
	s.end(reasonLogout)
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
	if s.resume != nil {
		s.resume.Stop()
	}
	s.stopAckTimerLocked()
	conn := s.conn
	s.conn = nil
	s.mu.Unlock()
	s.g.remove(s)
	s.g.calls.SessionEnded(s)
	s.g.msgs.SessionEnded(s)
	s.inMu.Unlock()
	if conn != nil {
		code := websocket.StatusGoingAway
		if r == reasonWindowFull {
			code = websocket.StatusTryAgainLater
		}
		s.g.wg.Go(func() { conn.c.Close(code, r.String()) })
	}
	s.g.metrics.ended.WithLabelValues(r.String()).Inc()
	s.log.Info("session ended", "reason", r.String())
}
