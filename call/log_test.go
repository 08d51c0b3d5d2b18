package call

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/sipgw"
)

// logBuffer keeps JSON log records.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) records(t *testing.T) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(b.buf.String()), "\n") {
		if line == "" {
			continue
		}
		var r map[string]any
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

// A SIP call's log lines name the web session it belongs to (the caller,
// or the callee once one answered) and the SIP call.
func TestSIPLogsNameTheSession(t *testing.T) {
	e := newEnv(t, time.Minute)
	var lb logBuffer
	e.h.log = slog.New(slog.NewJSONHandler(&lb, &slog.HandlerOptions{Level: slog.LevelDebug}))

	a, fc := e.outgoing(t)
	fc.push(sipgw.Event{Kind: sipgw.EventProgress, Code: 183, SDP: []byte(brokenSDP)})
	expect488(t, a, protocol.ActionStart, "c1")
	fc.expectOp(t, "hangup")
	e.assertIdle(t)

	in, eps, st := e.incoming(t, 1)
	e.answerIn(t, in, eps[0], st[0])
	in.pushReoffer(brokenSDP)
	in.expectOp(t, "ro-reject")
	e.send(eps[0], wf{typ: protocol.TypeMessage, act: protocol.ActionShutdown, sub: st[0].Control.SubsessionID, seq: 9})
	in.expectOp(t, "hangup")
	e.assertIdle(t)

	want := map[string]string{
		"SIP call started":                             a.id,
		"SIP call ended: its SDP does not parse":       a.id,
		"SIP re-offer refused: its SDP does not parse": eps[0].id,
	}
	for _, r := range lb.records(t) {
		msg, _ := r["msg"].(string)
		id, ok := want[msg]
		if !ok {
			continue
		}
		delete(want, msg)
		if r["session_id"] != id || r["call"] == nil && msg != "SIP call started" {
			t.Errorf("%q: session_id %v call %v, want session %s", msg, r["session_id"], r["call"], id)
		}
	}
	for msg := range want {
		t.Errorf("no %q logged", msg)
	}
}
