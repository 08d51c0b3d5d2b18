package messaging

import (
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jsonrtc/jsonrtc/protocol"
)

// benchEP is a session that encodes what it is sent under its lock, as
// the gateway's does, and keeps only the last frame.
type benchEP struct {
	id, identity string
	mu           sync.Mutex
	seq          uint64
	last         *protocol.Frame
	buf          []byte
}

func (e *benchEP) ID() string       { return e.id }
func (e *benchEP) Identity() string { return e.identity }
func (e *benchEP) Oracle() bool     { return false }

func (e *benchEP) Send(f *protocol.Frame, selfCorrelate bool) (uint64, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.seq++
	if selfCorrelate {
		f.Control.CorrelationID = "s" + strconv.FormatUint(e.seq, 10)
	}
	f.Control.Sequence = e.seq
	e.buf = f.Append(e.buf[:0])
	e.last = f
	return e.seq, nil
}

// BenchmarkRelayParallel relays messages between pairs of sessions from
// every P at once: a message, its answer and the report per op.
func BenchmarkRelayParallel(b *testing.B) {
	h, d := newHandler(b, Options{})
	var next atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := next.Add(1)
		a := &benchEP{id: fmt.Sprint("a", i), identity: fmt.Sprint("a", i, "@x")}
		t := &benchEP{id: fmt.Sprint("b", i), identity: fmt.Sprint("b", i, "@x")}
		d.mu.Lock()
		d.sessions[t.identity] = append(d.sessions[t.identity], t)
		d.mu.Unlock()
		f := sendFrame(1, t.identity, `{"content_type":"text/plain","body":"hello"}`)
		for pb.Next() {
			g := *f
			h.HandleFrame(a, &g)
			h.HandleFrame(t, answerFrame(t.last, 200, ""))
		}
	})
	if n := h.Pending(); n != 0 {
		b.Fatalf("Pending = %d", n)
	}
}
