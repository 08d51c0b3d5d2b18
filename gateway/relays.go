package gateway

import (
	"errors"
	"strconv"

	"github.com/jsonrtc/jsonrtc/endpoint"
	"github.com/jsonrtc/jsonrtc/protocol"
)

// Relays taken (docs/cluster.md, "Delivery across nodes"). A frame
// relayed to a session on another node is in that node's record before
// the sender's state that processed it is written on its own: a
// cluster has no cut across nodes, and on one node too the sender's
// state waits for the frame that acknowledges it (persist.go
// processedLocked). When the sender's node dies in between, the client
// resends the frame where it resumes and it is relayed again. The
// receiving session therefore keeps, per sender session, the highest
// sender sequence it took a relay of, and the sequences its last relays
// got, in its record, written with the frames themselves: a relay whose
// origin it has taken is answered with the sequence it got the first
// time and not sent again. A sender's relays to one session arrive in
// the order its client numbered them (it processes one frame at a time
// and relays synchronously), so a sequence at or under the mark is a
// relay sent again.

// maxRelaySenders bounds the senders a session keeps marks of (the one
// touched longest ago goes), relaysKept the relays of one sender whose
// sequence is kept: a resend spans the frames the sender's node had not
// written when it died, a round of its writer.
const (
	maxRelaySenders = 64
	relaysKept      = 8
)

// relayMark is what a session keeps of the relays from one sender.
type relayMark struct {
	From string `json:"from"`
	// Seq is the highest sender sequence taken; Out pairs the last
	// relays' sender sequences with the sequences they got here.
	Seq uint64      `json:"seq"`
	Out [][2]uint64 `json:"out,omitempty"`
	// used orders marks for eviction (not stored: a restored session
	// keeps the record's order).
	used uint64
}

// errRelayForgotten: a relay sent again whose first sequence is no
// longer kept (older than the last relaysKept of its sender).
var errRelayForgotten = errors.New("gateway: relay taken before, its sequence forgotten")

// Relay implements endpoint.Relayer.
func (s *Session) Relay(f *protocol.Frame, selfCorrelate bool, o endpoint.Origin) (uint64, error) {
	return s.sendOrigin(f, selfCorrelate, "", o)
}

// Relay implements endpoint.Relayer: the owner recognises a relay sent
// again.
func (r *remote) Relay(f *protocol.Frame, selfCorrelate bool, o endpoint.Origin) (uint64, error) {
	return r.send(f, selfCorrelate, o)
}

// takenLocked reports whether s took the relay o already, and the
// sequence it got; s.mu is held.
func (s *Session) takenLocked(o endpoint.Origin) (uint64, bool, error) {
	if o.Session == "" || o.Sequence == 0 {
		return 0, false, nil
	}
	m := s.relays[o.Session]
	if m == nil || o.Sequence > m.Seq {
		return 0, false, nil
	}
	s.relayUse++
	m.used = s.relayUse
	for _, p := range m.Out {
		if p[0] == o.Sequence {
			return p[1], true, nil
		}
	}
	return 0, true, errRelayForgotten
}

// noteRelayLocked records that s took the relay o as sequence seq; s.mu
// is held.
func (s *Session) noteRelayLocked(o endpoint.Origin, seq uint64) {
	if o.Session == "" || o.Sequence == 0 {
		return
	}
	m := s.relays[o.Session]
	if m == nil {
		if s.relays == nil {
			s.relays = map[string]*relayMark{}
		}
		if len(s.relays) >= maxRelaySenders {
			var old *relayMark
			for _, c := range s.relays {
				if old == nil || c.used < old.used {
					old = c
				}
			}
			delete(s.relays, old.From)
		}
		m = &relayMark{From: o.Session}
		s.relays[o.Session] = m
	}
	s.relayUse++
	m.used, m.Seq = s.relayUse, o.Sequence
	if len(m.Out) >= relaysKept {
		m.Out = append(m.Out[:0], m.Out[1:]...)
	}
	m.Out = append(m.Out, [2]uint64{o.Sequence, seq})
}

// answerTakenLocked stamps f as the relay s took already, at sequence
// seq, and notes host as its interaction's: the sender's client resumed
// elsewhere, and the answer to it goes there now. s.mu is held.
func (s *Session) answerTakenLocked(f *protocol.Frame, selfCorrelate bool, host string, seq uint64) {
	if selfCorrelate {
		f.Control.CorrelationID = "s" + strconv.FormatUint(seq, 10)
	}
	f.Control.Sequence = seq
	if s.g.node != nil {
		if host == "" {
			host = s.g.self()
		}
		s.noteRouteLocked(f, host)
	}
	s.g.metrics.cluster.WithLabelValues("relay", "taken_before").Inc()
}

// relaysSnapshotLocked returns s's marks for its record; s.mu is held.
func (s *Session) relaysSnapshotLocked() []relayMark {
	if len(s.relays) == 0 {
		return nil
	}
	out := make([]relayMark, 0, len(s.relays))
	for _, m := range s.relays {
		c := *m
		c.Out = append([][2]uint64(nil), m.Out...)
		out = append(out, c)
	}
	return out
}

// setRelays gives s the marks of its record.
func (s *Session) setRelays(ms []relayMark) {
	if len(ms) == 0 {
		return
	}
	s.relays = make(map[string]*relayMark, len(ms))
	for i := range ms {
		m := ms[i]
		s.relayUse++
		m.used = s.relayUse
		s.relays[m.From] = &m
	}
}
