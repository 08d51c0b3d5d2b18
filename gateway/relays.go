package gateway

import (
	"errors"
	"strconv"
	"time"

	"github.com/jsonrtc/jsonrtc/endpoint"
	"github.com/jsonrtc/jsonrtc/protocol"
)

// Relays taken (docs/cluster.md, "A relay is taken once"). A frame
// relayed to a session on another node is in that node's record before
// the sender's state that processed it is written on its own: a
// cluster has no cut across nodes, and on one node too the sender's
// state waits for the frame that acknowledges it (persist.go
// processedLocked). When the sender's node dies in between, the client
// resends the frame where it resumes and it is relayed again. The
// receiving session therefore keeps, per sender stream, the highest
// sender sequence it took a relay of, and the sequences its last relays
// got, in its record, written with the frames themselves: a relay whose
// origin it has taken is answered with the sequence it got the first
// time and not sent again. The mark is kept per stream of the sender
// (endpoint.Origin): its messages and starts, relayed by its own node
// as its client sends them, and each of its calls, whose frames the
// call's host relays, perhaps another node, taking them off a queue
// (onInbound). Within a stream a sender's relays to one session arrive
// in the order its client numbered them (one frame at a time, each
// relayed before the next is taken), so a sequence at or under the mark
// is a relay sent again; across streams they do not (a candidate
// queued on the call's host behind a message relayed at once), and one
// mark for all would drop the later relay as taken.

// maxRelayStreams bounds the streams a session keeps marks of (the one
// touched longest ago goes), relaysKept the relays of one stream whose
// sequence is kept: a resend spans the frames the sender's node had not
// written when it died, a round of its writer.
const (
	maxRelayStreams = 64
	relaysKept      = 8
)

// A call's stream ends with the call, for the session: once its leg has
// ended (a shutdown or a failed start, to or from its client), the
// stream's mark goes after markGrace. No relay of the stream can come
// later than that: a relay sent again comes from a sender's client
// resuming after its node died before writing the state that processed
// the frame, within its record's age limit (config.RecordTTL) of that
// state, which the call's end followed; a node adopting the call relays
// again only from the call's record, which expires within the age limit
// of its last write, before the end; frames waiting for a dead node's
// session wait less. Before, a session kept the marks of its last 64
// calls for its whole life: an agent's session, taking call after call,
// wrote about 7 KB of them with every record (docs/benchmarks.md "Call
// records in batches").

// markGraceSlack is added to the records' age limit in markGrace: clocks
// of the store's leader and of this node may differ a little.
const markGraceSlack = 10 * time.Second

// markGrace is how long the mark of a call's stream outlives the call's
// end for the session.
func (g *Gateway) markGrace() time.Duration { return g.cfg.RecordTTL() + markGraceSlack }

// relayKey names a stream of a sender's relays.
type relayKey struct{ from, stream string }

// relayMark is what a session keeps of the relays of one stream.
type relayMark struct {
	From   string `json:"from"`
	Stream string `json:"stream,omitempty"`
	// Seq and Part are the highest origin taken (a sequence, then the
	// relays of its frame, endpoint.Origin.Part); Out holds the last
	// relays' sender sequences, the sequences they got here, and their
	// parts (a record of an earlier version has none: part 0).
	Seq  uint64      `json:"seq"`
	Part uint64      `json:"part,omitempty"`
	Out  [][3]uint64 `json:"out,omitempty"`
	// Sub is the session's subsession of the call a call's stream is
	// of, and Ended when the session's leg of it ended (Unix
	// milliseconds; 0 while it lasts): the mark then goes after
	// markGrace.
	Sub   string `json:"sub,omitempty"`
	Ended int64  `json:"ended,omitempty"`
	// used orders marks for eviction (not stored: a restored session
	// keeps the record's order).
	used uint64
}

func (m *relayMark) key() relayKey { return relayKey{m.From, m.Stream} }

func keyOf(o endpoint.Origin) relayKey { return relayKey{o.Session, o.Stream} }

// errRelayForgotten: a relay sent again whose first sequence is no
// longer kept (older than the last relaysKept of its sender): most
// likely taken before, though one a later relay of its stream overtook
// so long ago looks the same.
var errRelayForgotten = errors.New("gateway: relay taken before, its sequence forgotten")

// errRelayOvertaken: a relay never taken, which a later relay of its
// stream overtook (its sender's client moved to another node, whose
// relay reached the session before this one was sent again): within
// the relays its stream's mark keeps, and not among them. Taken now,
// it would reach the client after the later one. Before, it was taken
// for errRelayForgotten: a call frame so lost counted as delivered.
var errRelayOvertaken = errors.New("gateway: relay overtaken by a later one of its stream")

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
	m := s.relays[keyOf(o)]
	if m == nil || o.Sequence > m.Seq || o.Sequence == m.Seq && o.Part > m.Part {
		return 0, false, nil
	}
	s.relayUse++
	m.used = s.relayUse
	for _, p := range m.Out {
		if p[0] == o.Sequence && p[2] == o.Part {
			return p[1], true, nil
		}
	}
	// Out holds every relay taken since its first, in order.
	if len(m.Out) > 0 && (o.Sequence > m.Out[0][0] || o.Sequence == m.Out[0][0] && o.Part > m.Out[0][2]) {
		return 0, true, errRelayOvertaken
	}
	return 0, true, errRelayForgotten
}

// noteRelayLocked records that s took the relay o as sequence seq, on its
// subsession sub (a call's stream); s.mu is held.
func (s *Session) noteRelayLocked(o endpoint.Origin, seq uint64, sub string) {
	if o.Session == "" || o.Sequence == 0 {
		return
	}
	k := keyOf(o)
	m := s.relays[k]
	if m == nil {
		if s.relays == nil {
			s.relays = map[relayKey]*relayMark{}
		}
		if len(s.relays) >= maxRelayStreams {
			var old *relayMark
			for _, c := range s.relays {
				if old == nil || c.used < old.used {
					old = c
				}
			}
			delete(s.relays, old.key())
		}
		m = &relayMark{From: o.Session, Stream: o.Stream}
		s.relays[k] = m
	}
	s.relayUse++
	m.used, m.Seq, m.Part = s.relayUse, o.Sequence, o.Part
	if o.Stream != "" {
		m.Sub = sub
	}
	if len(m.Out) >= relaysKept {
		m.Out = append(m.Out[:0], m.Out[1:]...)
	}
	m.Out = append(m.Out, [3]uint64{o.Sequence, seq, o.Part})
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

// endCallLocked notes the end of s's leg of a call when f, a frame to or
// from its client, ends it (endsLeg): the marks of the streams of the
// call on f's subsession go after markGrace. s.mu is held.
func (s *Session) endCallLocked(f *protocol.Frame) {
	if len(s.relays) == 0 || !endsLeg(f) {
		return
	}
	now := time.Now().UnixMilli()
	for _, m := range s.relays {
		if m.Stream != "" && m.Sub == f.Control.SubsessionID && m.Ended == 0 {
			m.Ended = now
		}
	}
}

// endsLeg reports whether f ends its session's leg of a call: a
// shutdown, or a failed start.
func endsLeg(f *protocol.Frame) bool {
	return f.EffectivePackage() == protocol.PackageCall &&
		(f.Header.Action == protocol.ActionShutdown || f.Control.Type == protocol.TypeError && f.Header.Action == protocol.ActionStart)
}

// retireMarksLocked drops the marks of calls that ended longer than grace
// before now; s.mu is held.
func (s *Session) retireMarksLocked(now time.Time, grace time.Duration) {
	before := now.Add(-grace).UnixMilli()
	for k, m := range s.relays {
		if m.Ended != 0 && m.Ended < before {
			delete(s.relays, k)
		}
	}
}

// relaysSnapshotLocked returns s's marks for its record, the marks of
// calls ended past markGrace gone; s.mu is held.
func (s *Session) relaysSnapshotLocked() []relayMark {
	if len(s.relays) == 0 {
		return nil
	}
	if s.g != nil {
		s.retireMarksLocked(time.Now(), s.g.markGrace())
	}
	out := make([]relayMark, 0, len(s.relays))
	for _, m := range s.relays {
		c := *m
		c.Out = append([][3]uint64(nil), m.Out...)
		out = append(out, c)
	}
	return out
}

// setRelays gives s the marks of its record.
func (s *Session) setRelays(ms []relayMark) {
	if len(ms) == 0 {
		return
	}
	s.relays = make(map[relayKey]*relayMark, len(ms))
	for i := range ms {
		m := ms[i]
		s.relayUse++
		m.used = s.relayUse
		s.relays[m.key()] = &m
	}
}
