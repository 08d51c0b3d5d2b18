package gateway

import (
	"fmt"
	"sync"
	"testing"

	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/store"
)

// holdAttach stops the first connect of identity on g once its session
// is in the tables and before its socket is attached: the session comes
// on held, and the connect goes on at attach (or at the test's end).
func holdAttach(t *testing.T, g *Gateway, identity string) (held <-chan *Session, attach func()) {
	h, a := make(chan *Session, 1), make(chan struct{})
	var once sync.Once
	g.beforeAttach = func(s *Session) {
		if s.identity != identity {
			return
		}
		once.Do(func() {
			h <- s
			<-a
		})
	}
	attach = sync.OnceFunc(func() { close(a) })
	t.Cleanup(attach)
	return h, attach
}

func bodyOf(f *protocol.Frame) string {
	var m protocol.MessagePayload
	protocol.DecodePayload(f.Payload, &m)
	return m.Body
}

// nextSeq is the sequence s's next frame takes.
func nextSeq(s *Session) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st.NextSeq
}

// readInOrder reads the connect response and then the frames wants
// names (their action and, for a message, its body), each numbered one
// above the one before, and returns the last one's sequence.
func readInOrder(t *testing.T, p *peer, wants ...string) uint64 {
	t.Helper()
	r := p.read()
	if r.Control.Type != protocol.TypeResponse || r.Header.Action != protocol.ActionConnect {
		t.Fatalf("first frame %s, want the connect response", r.Marshal())
	}
	p.sid = r.Control.SessionID
	seq := r.Control.Sequence
	for i, want := range wants {
		f := p.read()
		got := string(f.Header.Action)
		if f.Header.Action == protocol.ActionSend {
			got += " " + bodyOf(f)
		}
		if got != want || f.Control.Type != protocol.TypeRequest {
			t.Fatalf("frame %d after the connect response: %s, want %q", i+1, f.Marshal(), want)
		}
		// A client takes a frame numbered above the next as a gap it
		// never asks to fill (docs/protocol.md §3).
		if f.Control.Sequence != seq+1 {
			t.Fatalf("frame %d numbered %d after %d", i+1, f.Control.Sequence, seq)
		}
		seq = f.Control.Sequence
	}
	return seq
}

// TestFramesBeforeAttachFollowConnectResponse: what is sent to a new
// session between its joining the tables and the attach of its socket
// (a message relayed from another session, a call start) reaches the
// client right after the connect response, numbered in order after it.
// Before, it was retained but pushed to no socket (the response,
// numbered after it, went alone), and the client took the next frame's
// number as a gap and acknowledged it away (issue 13), with a store or
// without.
func TestFramesBeforeAttachFollowConnectResponse(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
	}{{"in memory", Options{}}, {"written ahead", Options{Store: store.NewMemory()}}} {
		t.Run(tc.name, func(t *testing.T) {
			g, url := newGatewayOpts(t, nil, tc.opts)
			held, attach := holdAttach(t, g, "bob@example.com")
			a := dial(t, url, protocol.SubprotocolJSONrtc, nil)
			a.connect("alice@example.com")
			b := dial(t, url, protocol.SubprotocolJSONrtc, nil)
			b.send(&protocol.Frame{
				Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageRegister},
				Header:  protocol.Header{Action: protocol.ActionConnect, Initiator: "bob@example.com", Target: "bob@example.com"},
			})
			s := <-held
			next := nextSeq(s)
			a.send(message("bob@example.com", "before your socket"))
			a.send(&protocol.Frame{
				Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageCall, SubsessionID: "c3", CorrelationID: "c3"},
				Header:  protocol.Header{Action: protocol.ActionStart, Initiator: "alice@example.com", Target: "bob@example.com"},
				Payload: sdpPayload(sdpOffer),
			})
			// Alice's socket is read in order: its pong proves both
			// frames were sent to bob's session.
			a.pingPong()
			if n := nextSeq(s) - next; n != 2 {
				t.Fatalf("bob's session took %d frames before its socket, want 2", n)
			}
			attach()
			last := readInOrder(t, b, "send before your socket", "start")
			// And what comes after goes on from there.
			a.send(message("bob@example.com", "after"))
			if m := b.read(); bodyOf(m) != "after" || m.Control.Sequence != last+1 {
				t.Fatalf("next frame %s", m.Marshal())
			}
		})
	}
}

// TestFramesBeforeAttachFollowResumeResponse: the same window on a
// resume that takes the session over from another node: what is sent to
// the session between its takeover and the attach of its socket follows
// the resume's response. (This held before too: the resume's resend
// takes every retained frame above the client's cslr.)
func TestFramesBeforeAttachFollowResumeResponse(t *testing.T) {
	gs, urls := newClusterGateways(t, 2)
	lost := make(chan string, 1)
	gs[0].onSocketLost = func(s *Session) {
		select {
		case lost <- s.id:
		default: // bob's, as the test ends
		}
	}
	held, attach := holdAttach(t, gs[1], "alice@example.com")
	a := dial(t, urls[0], protocol.SubprotocolJSONrtc, nil)
	a.connect("alice@example.com")
	b := dial(t, urls[0], protocol.SubprotocolJSONrtc, nil)
	b.connect("bob@example.com")
	a.c.CloseNow()
	if id := <-lost; id != a.sid {
		t.Fatalf("lost the socket of %s", id)
	}
	a2 := dial(t, urls[1], protocol.SubprotocolJSONrtc, nil)
	a2.seq, a2.last = a.seq, a.last
	a2.write(fmt.Sprintf(`{"control":{"type":"request","package_type":"register","session_id":%q,"version":"1.0"},"header":{"action":"connect","initiator":"alice@example.com","target":"alice@example.com","cslr":%d,"cslw":%d,"csuw":%d},"payload":{}}`,
		a.sid, a.last, a.seq+1, a.seq))
	s := <-held
	next := nextSeq(s)
	b.send(message("alice@example.com", "before your socket"))
	b.pingPong()
	if n := nextSeq(s) - next; n != 1 {
		t.Fatalf("alice's session took %d frames before its socket, want 1", n)
	}
	attach()
	r := a2.read()
	if r.Control.SessionID != a.sid || r.Control.Type != protocol.TypeResponse || r.Header.Action != protocol.ActionConnect {
		t.Fatalf("resume response %s", r.Marshal())
	}
	m := a2.read()
	if m.Header.Action != protocol.ActionSend || bodyOf(m) != "before your socket" {
		t.Fatalf("after the resume response: %s", m.Marshal())
	}
}
