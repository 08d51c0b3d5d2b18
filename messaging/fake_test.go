package messaging

import (
	"encoding/json"
	"errors"
	"strconv"
	"sync"
	"testing"

	"github.com/jsonrtc/jsonrtc/endpoint"
	"github.com/jsonrtc/jsonrtc/protocol"
)

var errEnded = errors.New("session ended")

// fakeEP is a session: it numbers what it is sent and keeps it.
type fakeEP struct {
	id, identity string

	mu   sync.Mutex
	seq  uint64
	sent []*protocol.Frame
	fail bool
	// onSend runs inside Send, after the frame is queued and before Send
	// returns: what a fast peer can do before the relay gets on.
	onSend func(f *protocol.Frame)
}

func (e *fakeEP) ID() string       { return e.id }
func (e *fakeEP) Identity() string { return e.identity }
func (e *fakeEP) Oracle() bool     { return false }

func (e *fakeEP) Send(f *protocol.Frame, selfCorrelate bool) (uint64, error) {
	e.mu.Lock()
	if e.fail {
		e.mu.Unlock()
		return 0, errEnded
	}
	e.seq++
	if selfCorrelate {
		f.Control.CorrelationID = "s" + strconv.FormatUint(e.seq, 10)
	}
	f.Control.Sequence = e.seq
	e.sent = append(e.sent, f)
	hook := e.onSend
	e.mu.Unlock()
	if hook != nil {
		hook(f)
	}
	return f.Control.Sequence, nil
}

func (e *fakeEP) frames() []*protocol.Frame {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]*protocol.Frame(nil), e.sent...)
}

// only returns the one frame e was sent since the last call.
func (e *fakeEP) only(t *testing.T) *protocol.Frame {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.sent) != 1 {
		t.Fatalf("%s was sent %d frames, want 1: %v", e.id, len(e.sent), e.sent)
	}
	f := e.sent[0]
	e.sent = nil
	return f
}

func (e *fakeEP) none(t *testing.T) {
	t.Helper()
	if fs := e.frames(); len(fs) != 0 {
		t.Fatalf("%s was sent %d frames, want none: %+v", e.id, len(fs), fs[0])
	}
}

// fakeDir is a directory of sessions by identity.
type fakeDir struct {
	mu       sync.Mutex
	sessions map[string][]endpoint.Endpoint
	known    map[string]bool
	fail     map[string]error // identities whose lookup fails (a cluster's store that did not answer)
}

func (d *fakeDir) Find(id string) ([]endpoint.Endpoint, error) {
	d.mu.Lock()
	err := d.fail[id]
	d.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return d.Sessions(id), nil
}

func (d *fakeDir) Sessions(id string) []endpoint.Endpoint {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]endpoint.Endpoint(nil), d.sessions[id]...)
}

func (d *fakeDir) Known(id string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.known[id]
}

func (d *fakeDir) add(id, identity string) *fakeEP {
	d.mu.Lock()
	defer d.mu.Unlock()
	e := &fakeEP{id: id, identity: identity}
	d.sessions[identity] = append(d.sessions[identity], e)
	d.known[identity] = true
	return e
}

// fakeUpstream records what it is asked to send.
type fakeUpstream struct {
	mu      sync.Mutex
	routes  bool
	err     error
	sent    []Outgoing
	reports []func(int, string, []protocol.Ext)
}

func (u *fakeUpstream) Routes(string) bool { return u.routes }

func (u *fakeUpstream) Send(m Outgoing, report func(int, string, []protocol.Ext)) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.sent = append(u.sent, m)
	u.reports = append(u.reports, report)
	return u.err
}

func newHandler(t testing.TB, opts Options) (*Handler, *fakeDir) {
	t.Helper()
	d := &fakeDir{sessions: map[string][]endpoint.Endpoint{}, known: map[string]bool{}}
	return NewHandler(d, &opts), d
}

// aliceAndBob returns a handler whose directory has a session of
// alice@x and two of bob@x.
func aliceAndBob(t *testing.T, opts Options) (h *Handler, d *fakeDir, a, b1, b2 *fakeEP) {
	t.Helper()
	h, d = newHandler(t, opts)
	return h, d, d.add("a", "alice@x"), d.add("b1", "bob@x"), d.add("b2", "bob@x")
}

// idle fails unless h holds nothing: no pending count, no inbox.
func idle(t *testing.T, h *Handler) {
	t.Helper()
	if n := h.Pending(); n != 0 {
		t.Fatalf("Pending = %d, want 0", n)
	}
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.Lock()
		n := len(sh.to)
		sh.mu.Unlock()
		if n != 0 {
			t.Fatalf("shard %d holds %d inboxes", i, n)
		}
	}
}

// earlyKept returns how many answers h keeps for session that came
// before their delivery was recorded.
func earlyKept(h *Handler, session string) int {
	sh := h.shard(session)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if in := sh.to[session]; in != nil {
		return len(in.early)
	}
	return 0
}

func sendFrame(seq uint64, target, payload string) *protocol.Frame {
	f := &protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageMessaging,
			Sequence: seq, SubsessionID: "m" + strconv.FormatUint(seq, 10)},
		Header: protocol.Header{Action: protocol.ActionSend, Initiator: "alice@x", Target: target},
	}
	if payload != "" {
		f.Payload = json.RawMessage(payload)
	}
	return f
}

// answerFrame is the answer of a session to the request r it was sent:
// a response with code, or an error for codes of 300 and up.
func answerFrame(r *protocol.Frame, code int, reason string) *protocol.Frame {
	f := &protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeResponse, Package: protocol.PackageMessaging,
			CorrelationID: r.Control.CorrelationID},
		Header: protocol.Header{Action: protocol.ActionSend, ResponseCode: code, Reason: reason},
	}
	if code >= 300 {
		f.Control.Type, f.Header.ResponseCode, f.Header.ErrorCode = protocol.TypeError, 0, code
	}
	return f
}

// wantReport checks the frame the sender got for the message it sent as
// c<seq> to target.
func wantReport(t *testing.T, f *protocol.Frame, typ protocol.Type, seq uint64, target string, code int, reason string) {
	t.Helper()
	got := code
	if typ == protocol.TypeError {
		got = f.Header.ErrorCode
		if f.Header.ResponseCode != 0 {
			t.Errorf("error frame has response_code %d", f.Header.ResponseCode)
		}
	} else {
		got = f.Header.ResponseCode
	}
	corr := "c" + strconv.FormatUint(seq, 10)
	if f.Control.Type != typ || got != code || f.Header.Reason != reason || f.Control.CorrelationID != corr ||
		f.Control.Package != protocol.PackageMessaging || f.Header.Action != protocol.ActionSend ||
		f.Header.Target != target || f.Control.SubsessionID != "m"+strconv.FormatUint(seq, 10) {
		t.Fatalf("report %+v %+v, want %s %d %q correlation %s target %s", f.Control, f.Header, typ, code, reason, corr, target)
	}
}
