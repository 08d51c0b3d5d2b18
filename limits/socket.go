package limits

import (
	"sync"
	"sync/atomic"
	"time"
)

// Socket is the frame budget of one WebSocket. Every frame read from the
// socket counts against it, from the first connect on (before a session
// exists, so before the identity's bucket can be charged): text pings,
// acknowledgements, duplicates and malformed frames included, since each
// costs the gateway a read, a parse and possibly a log line. Its bucket
// has the identity frame rate of the socket's profile.
//
// Beyond the budget, Frame says whether to answer (at most one denial per
// AnswerEvery, so that a flood is not answered frame for frame) and, when
// the flood goes on, to close the socket. Malformed frames have a budget
// of their own, over a window: a valid frame between two bad ones does
// not reset it.
//
// A Socket is used by its socket's reader; its methods are nonetheless
// safe for concurrent use.
type Socket struct {
	l      *Limiter
	frames bucket
	tat    atomic.Int64
	bad    atomic.Int64 // GCRA TAT of the malformed-frame budget
	// floodAfter is how many denials within FloodWindow close the socket.
	floodAfter int64

	mu         sync.Mutex
	answered   int64 // clock reading of the last answered denial
	windowFrom int64 // start of the current flood window
	denied     int64 // denials in it
}

// Verdict is what to do with a frame.
type Verdict uint8

const (
	// Allow: process the frame.
	Allow Verdict = iota
	// DenyAnswer: over the budget; do not process the frame, answer it
	// with error 503 ("rate limited").
	DenyAnswer
	// Deny: over the budget; do not process the frame and send nothing.
	Deny
	// Flood: denials have gone on too long; close the socket (1008).
	Flood
)

const (
	// AnswerEvery is the least time between two answered denials of a
	// socket.
	AnswerEvery = time.Second
	// FloodWindow and floodFactor: more than floodFactor times the
	// bucket's burst of denials within FloodWindow is a flood. A client
	// that overshoots its rate a little is throttled for as long as it
	// does; one that sends as fast as it can is closed within
	// milliseconds.
	FloodWindow = 10 * time.Second
	floodFactor = 4
	// MaxMalformed malformed frames close the socket, in a bucket that
	// refills one every MalformedWindow/MaxMalformed (docs/protocol.md
	// §9.3 says 10 in a row; counting in time also catches bad
	// frames interleaved with good ones).
	MaxMalformed    = 10
	MalformedWindow = time.Minute
)

// NewSocket returns the frame budget of a new socket whose principal
// uses profile ("" or an unknown name: the default profile's).
func (l *Limiter) NewSocket(profileName string) *Socket {
	p := l.profiles[profileName]
	if p == nil {
		p = l.profiles[DefaultProfile]
	}
	s := &Socket{l: l, frames: p.identity.frames}
	if s.frames.interval > 0 {
		burst := s.frames.tolerance/s.frames.interval + 1
		s.floodAfter = floodFactor * burst
	}
	return s
}

// Frame takes one frame from the socket's bucket and, once the socket
// has a session (q non-nil), from its identity's and application's. A
// frame that is not allowed must not be processed.
func (s *Socket) Frame(q *Session) Verdict {
	now := s.l.now()
	if s.frames.take(&s.tat, now) {
		if q == nil || q.AllowFrame() {
			return Allow
		}
	} else {
		s.l.deny(LimitFrames, ScopeSocket)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.windowFrom == 0 || now-s.windowFrom >= int64(FloodWindow) {
		s.windowFrom, s.denied = now, 0
	}
	s.denied++
	if s.floodAfter > 0 && s.denied > s.floodAfter {
		return Flood
	}
	if s.answered == 0 || now-s.answered >= int64(AnswerEvery) {
		s.answered = now
		return DenyAnswer
	}
	return Deny
}

// Malformed counts one malformed frame; false means the socket has sent
// MaxMalformed within MalformedWindow and must be closed (1008), after
// this frame is answered.
func (s *Socket) Malformed() bool {
	const interval = int64(MalformedWindow / MaxMalformed)
	return gcra(&s.bad, s.l.now(), interval, interval*(MaxMalformed-2))
}
