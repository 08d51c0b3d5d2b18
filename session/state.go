package session

import (
	"errors"
	"fmt"

	"github.com/jsonrtc/jsonrtc/protocol"
)

// Limits bound the retained window (docs/protocol.md §3.3).
type Limits struct {
	WindowFrames int // default 1024
	WindowBytes  int // default 1 MiB
}

// DefaultLimits are the protocol's defaults.
var DefaultLimits = Limits{WindowFrames: 1024, WindowBytes: 1 << 20}

func (l Limits) withDefaults() Limits {
	if l.WindowFrames <= 0 {
		l.WindowFrames = DefaultLimits.WindowFrames
	}
	if l.WindowBytes <= 0 {
		l.WindowBytes = DefaultLimits.WindowBytes
	}
	return l
}

// ErrWindowFull means a frame could not be retained: the peer has left too
// much unacknowledged. The session must end with error 503.
var ErrWindowFull = errors.New("session: retained window full")

// ErrSequenceExhausted means the next frame would take a sequence above
// protocol.MaxSequence, which the peer cannot represent: the session must
// end.
var ErrSequenceExhausted = errors.New("session: sequence numbers exhausted")

// ResumeError says which resume criterion failed.
type ResumeError struct{ Reason string }

func (e *ResumeError) Error() string { return "session: resume refused: " + e.Reason }

// Retained is a sent frame kept until the peer acknowledges it.
type Retained struct {
	Seq uint64 `json:"seq"`
	// Register frames (connect requests and responses) are never resent
	// on a resume: the resume has its own connect exchange.
	Register bool   `json:"register,omitempty"`
	Data     []byte `json:"data"`
}

// State is one end of a session.
type State struct {
	ID string `json:"id"`
	// NextSeq is the sequence the next sent frame takes.
	NextSeq uint64 `json:"next_seq"`
	// Processed is the highest peer sequence processed (the server's sslr,
	// the client's cslr).
	Processed uint64 `json:"processed"`
	// Acked is the highest of our sequences the peer acknowledged.
	Acked uint64 `json:"acked"`
	// Trimmed is the highest non-register sequence dropped by an ack: a
	// resume must not need anything at or below it.
	Trimmed uint64 `json:"trimmed"`
	// AckSent is the highest Processed we have told the peer about.
	AckSent uint64 `json:"ack_sent"`
	// Ahead holds peer sequences processed out of band (a resume's connect
	// response) that Processed has not reached yet.
	Ahead    []uint64   `json:"ahead,omitempty"`
	Retained []Retained `json:"retained,omitempty"`
	// RetainedBytes is the sum of len(Data) over Retained.
	RetainedBytes int `json:"retained_bytes"`
}

// New returns the state of a new session whose peer's last processed
// sequence is processed (the connect's own sequence on the server).
func New(id string, processed uint64) *State {
	return &State{ID: id, NextSeq: 1, Processed: processed}
}

// Send stamps f with the session id, the next sequence and the ack of
// everything processed, encodes it into buf and retains the encoding. An
// acknowledgement frame takes no sequence and is not retained. On
// ErrWindowFull and ErrSequenceExhausted nothing changes.
func (s *State) Send(f *protocol.Frame, lim Limits, buf []byte) ([]byte, error) {
	lim = lim.withDefaults()
	f.Control.SessionID = s.ID
	f.Control.AckSequence = s.Processed
	if f.Control.Version == "" {
		f.Control.Version = protocol.Version
	}
	if f.Control.Type == protocol.TypeAcknowledgement {
		f.Control.Sequence = 0
		s.AckSent = s.Processed
		return f.Append(buf), nil
	}
	if s.NextSeq > protocol.MaxSequence {
		return nil, ErrSequenceExhausted
	}
	if len(s.Retained) >= lim.WindowFrames {
		return nil, ErrWindowFull
	}
	f.Control.Sequence = s.NextSeq
	data := f.Append(buf)
	if s.RetainedBytes+len(data) > lim.WindowBytes {
		return nil, ErrWindowFull
	}
	s.NextSeq++
	s.AckSent = s.Processed
	s.Retained = append(s.Retained, Retained{
		Seq:      f.Control.Sequence,
		Register: f.EffectivePackage() == protocol.PackageRegister,
		Data:     data,
	})
	s.RetainedBytes += len(data)
	return data, nil
}

// Verdict is what to do with a received frame.
type Verdict uint8

const (
	// Deliver: process the frame; it is new and in order (or after a gap).
	Deliver Verdict = iota
	// Duplicate: already processed; drop it without effect.
	Duplicate
	// AckOnly: an acknowledgement; nothing to deliver.
	AckOnly
	// Unsequenced: the frame has no sequence (a reconnect connect); the
	// caller handles it outside the numbering.
	Unsequenced
)

// Receive applies f's acknowledgement and decides whether f is new. gap
// is the number of peer sequences skipped (logged by the caller: the SDK
// jumps after a failed resume).
func (s *State) Receive(f *protocol.Frame) (v Verdict, gap uint64) {
	c := &f.Control
	if c.Type == protocol.TypeAcknowledgement {
		switch {
		case c.AckSequence != 0:
			s.Ack(c.AckSequence)
		case c.Sequence != 0:
			// wsc.js acknowledges one of our frames by putting our
			// sequence in its own sequence field. Frames arrive in
			// order, so everything before it arrived too.
			s.Ack(c.Sequence)
		}
		return AckOnly, 0
	}
	if c.AckSequence != 0 {
		s.Ack(c.AckSequence)
	}
	if c.Sequence == 0 {
		return Unsequenced, 0
	}
	if c.Sequence <= s.Processed {
		return Duplicate, 0
	}
	gap = c.Sequence - s.Processed - 1
	s.Processed = c.Sequence
	s.absorbAhead()
	return Deliver, gap
}

// ReceivedOutOfBand records a peer sequence processed outside Receive (the
// connect response of a resume, which precedes the resent frames it
// numbers above).
func (s *State) ReceivedOutOfBand(seq uint64) {
	if seq <= s.Processed {
		return
	}
	if seq == s.Processed+1 {
		s.Processed = seq
		s.absorbAhead()
		return
	}
	for _, a := range s.Ahead {
		if a == seq {
			return
		}
	}
	s.Ahead = append(s.Ahead, seq)
}

func (s *State) absorbAhead() {
	for changed := true; changed && len(s.Ahead) > 0; {
		changed = false
		kept := s.Ahead[:0]
		for _, a := range s.Ahead {
			switch {
			case a == s.Processed+1:
				s.Processed = a
				changed = true
			case a > s.Processed:
				kept = append(kept, a)
			}
		}
		s.Ahead = kept
	}
	if len(s.Ahead) == 0 {
		s.Ahead = nil
	}
}

// Ack drops retained frames up to n. An ack below the window is stale
// (wsc.js's ack is a last-seen value that can go backwards) and an ack
// beyond what was sent is bogus; both are ignored.
func (s *State) Ack(n uint64) bool {
	if n <= s.Acked || n >= s.NextSeq {
		return false
	}
	s.Acked = n
	i := 0
	for i < len(s.Retained) && s.Retained[i].Seq <= n {
		if !s.Retained[i].Register {
			s.Trimmed = s.Retained[i].Seq
		}
		s.RetainedBytes -= len(s.Retained[i].Data)
		s.Retained[i] = Retained{}
		i++
	}
	s.Retained = s.Retained[i:]
	if len(s.Retained) == 0 {
		s.Retained = nil
	}
	return true
}

// AckOwed reports whether the peer has not been told of everything
// processed.
func (s *State) AckOwed() bool { return s.Processed > s.AckSent }

// Unsent returns, in order, the retained frames above seq other than
// register frames: what to resend after a resume.
func (s *State) Unsent(seq uint64) [][]byte {
	var out [][]byte
	for _, r := range s.Retained {
		if r.Seq > seq && !r.Register {
			out = append(out, r.Data)
		}
	}
	return out
}

// CheckResume applies resume criteria 2 and 3 of docs/protocol.md §4.4 to
// the reconnect headers of h (criterion 1, identity, is the caller's).
func (s *State) CheckResume(h *protocol.Header) error {
	if !h.CSLR.IsNumber() {
		return &ResumeError{"cslr is missing"}
	}
	cslr := h.CSLR.V
	// cslr+1 must still be sendable: retained (everything above Acked is)
	// or the next unsent sequence. A cslr below Acked is fine when only
	// register frames lie between: wsc.js's last-seen sequence goes back
	// below the connect response's when older frames are resent after it.
	if cslr < s.Trimmed || cslr+1 > s.NextSeq {
		return &ResumeError{fmt.Sprintf("cslr %d is outside the retained window (%d..%d)", cslr, s.Trimmed, s.NextSeq-1)}
	}
	lw, uw := h.CSLW, h.CSUW
	if (!lw.Present || lw.Null) && (!uw.Present || uw.Null) {
		return nil
	}
	if !lw.IsNumber() || !uw.IsNumber() {
		return &ResumeError{"cslw and csuw must both be numbers or both null"}
	}
	if lw.V == 0 || s.Processed < lw.V-1 || s.Processed > uw.V {
		return &ResumeError{fmt.Sprintf("sslr %d is outside [cslw-1, csuw] = [%d, %d]", s.Processed, int64(lw.V)-1, uw.V)}
	}
	return nil
}

// Resume completes a resume the server accepted: everything up to cslr
// is acknowledged, and the frames to resend after the connect response
// are returned.
func (s *State) Resume(cslr uint64) [][]byte {
	s.Ack(cslr)
	return s.Unsent(cslr)
}

// ResumeHeaders returns the cslr, cslw and csuw a client sends to resume.
func (s *State) ResumeHeaders() (cslr, cslw, csuw protocol.OptSeq) {
	cslr = protocol.Seq(s.Processed)
	var lo, hi uint64
	for _, r := range s.Retained {
		if r.Register {
			continue
		}
		if lo == 0 {
			lo = r.Seq
		}
		hi = r.Seq
	}
	if lo == 0 {
		// Nothing retained: cslw = csuw + 1, csuw = our last sequence.
		return cslr, protocol.Seq(s.NextSeq), protocol.Seq(s.NextSeq - 1)
	}
	return cslr, protocol.Seq(lo), protocol.Seq(hi)
}

// Resumed completes a resume on the client's side: the server processed
// up to sslr, so the frames above it are returned for resending.
func (s *State) Resumed(sslr uint64) ([][]byte, error) {
	if sslr+1 < s.Acked+1 || sslr >= s.NextSeq {
		return nil, &ResumeError{fmt.Sprintf("sslr %d is outside our window (%d..%d)", sslr, s.Acked, s.NextSeq-1)}
	}
	s.Ack(sslr)
	return s.Unsent(sslr), nil
}

// Clone returns a deep copy, for stores that keep snapshots.
func (s *State) Clone() *State {
	c := *s
	c.Ahead = append([]uint64(nil), s.Ahead...)
	c.Retained = make([]Retained, len(s.Retained))
	for i, r := range s.Retained {
		r.Data = append([]byte(nil), r.Data...)
		c.Retained[i] = r
	}
	return &c
}
