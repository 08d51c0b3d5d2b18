package gateway

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"github.com/coder/websocket"
	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/store"
)

// updateHook calls before, once, ahead of the first compare-and-set of
// key.
type updateHook struct {
	store.Store
	mu     sync.Mutex
	key    string
	before func()
}

func (u *updateHook) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	u.mu.Lock()
	fn := u.before
	if key == u.key {
		u.before = nil
	}
	u.mu.Unlock()
	if fn != nil && key == u.key {
		fn()
	}
	return u.Store.Update(ctx, key, value, rev)
}

// copyGone starts two nodes, node hooked's store an updateHook, and
// connects alice on n1, which then forgets her session without a word
// (a node started again, whose start-up has not restored her record
// yet): the record names n1, her socket is closed.
func copyGone(t *testing.T, hooked int) ([]*Gateway, []string, *updateHook, *peer) {
	t.Helper()
	hook := &updateHook{}
	next := 0
	gs, urls := newClusterGatewaysOn(t, 2, func(s store.Store) store.Store {
		if next++; next == hooked {
			hook.Store = s
			return hook
		}
		return s
	})
	a := dial(t, urls[0], protocol.SubprotocolJSONrtc, nil)
	a.connect("alice@example.com")
	s := gs[0].lookup(a.sid)
	s.mu.Lock()
	s.lost = true
	s.mu.Unlock()
	gs[0].remove(s)
	a.c.CloseNow()
	return gs, urls, hook, a
}

// TestTakeoverAsksARestoringOwnerAgain: alice's record names n1, which
// has no copy of her session (a node started again, its start-up's
// restore not yet at her record), and her client resumes on n2: n1
// answers the takeover "not here", then restores her record by
// compare-and-set before n2's own. n2 asks n1 again, and n1 lets go of
// the copy it restored: her next resume on n1, with the frames n2 sent
// her, resumes the same session. Before, n2 took the record over
// without asking, n1 kept a copy behind what the client had received,
// and her resume on n1 ended the session there ("cslr 20 is outside the
// retained window (16..18)": the cluster chaos test under node kills).
func TestTakeoverAsksARestoringOwnerAgain(t *testing.T) {
	gs, urls, n2, a := copyGone(t, 2)
	n2.mu.Lock()
	n2.key = recordKey(a.sid)
	n2.before = func() {
		// n1's start-up reaches her record: after it answered n2's
		// takeover, before n2's compare-and-set.
		if ok, err := gs[0].restoreOne(a.sid); !ok || err != nil {
			t.Errorf("n1 did not restore alice: %v", err)
		}
	}
	n2.mu.Unlock()
	a2 := resumeWS(t, urls[1], "alice@example.com", a.sid, a.seq+1, a.last)
	if gs[0].lookup(a.sid) != nil {
		t.Error("n1 kept a copy of alice's session taken over by n2")
	}
	a2.c.CloseNow()
	a3 := resumeWS(t, urls[0], "alice@example.com", a.sid, a2.seq+1, a2.last)
	a3.c.CloseNow()
}

// TestTakeoverWhileRestoring: a takeover asked of a node whose start-up
// is restoring the session (its compare-and-set on the record made, the
// session not yet in its tables) is answered "resuming", for the asker's
// client to resume again. Before, it was answered "not here", the asker
// took the record over, and the restored copy stayed behind it.
func TestTakeoverWhileRestoring(t *testing.T) {
	gs, _, n1, a := copyGone(t, 1)
	var answer string
	n1.mu.Lock()
	n1.key = recordKey(a.sid)
	n1.before = func() {
		req, _ := json.Marshal(sessionReq{Session: a.sid, Owner: "n2"})
		answer = string(gs[0].onTakeover(req))
	}
	n1.mu.Unlock()
	if ok, err := gs[0].restoreOne(a.sid); !ok || err != nil {
		t.Fatalf("n1 did not restore alice: %v", err)
	}
	if answer != refusedResuming {
		t.Fatalf("a takeover during the restore answered %q, want %q", answer, refusedResuming)
	}
}

// TestTakeoverOfASilentSocket: a takeover asked while the session's
// socket is open and does not answer a ping in time (a client there on
// a loaded machine; here it does not read) moves the session, and that
// socket closes with 1013: a client still on it resumes again, where
// the session now is. Before, it closed with 4000, which ends the
// session at a client still on it (the cluster chaos test at load 18).
func TestTakeoverOfASilentSocket(t *testing.T) {
	gs, urls := newClusterGateways(t, 2)
	a := dial(t, urls[0], protocol.SubprotocolJSONrtc, nil)
	a.connect("alice@example.com")
	req, _ := json.Marshal(sessionReq{Session: a.sid, Owner: "n2"})
	if got := string(gs[0].onTakeover(req)); !strings.HasPrefix(got, "ok") {
		t.Fatalf("takeover of a session whose socket is silent: %q", got)
	}
	if code := a.closeCode(); code != websocket.StatusTryAgainLater {
		t.Fatalf("the silent socket closed with %d, want 1013", code)
	}
	a2 := resumeWS(t, urls[1], "alice@example.com", a.sid, a.seq+1, a.last)
	a2.c.CloseNow()
}

// TestResumeBesideASilentSocket: a resume on the node whose socket of
// the session is open and silent (TestTakeoverOfASilentSocket) takes the
// session, and the silent socket closes with 1013. Before, with 4000.
func TestResumeBesideASilentSocket(t *testing.T) {
	_, urls := newClusterGateways(t, 2)
	a := dial(t, urls[0], protocol.SubprotocolJSONrtc, nil)
	a.connect("alice@example.com")
	a2 := resumeWS(t, urls[0], "alice@example.com", a.sid, a.seq+1, a.last)
	if code := a.closeCode(); code != websocket.StatusTryAgainLater {
		t.Fatalf("the silent socket closed with %d, want 1013", code)
	}
	a2.c.CloseNow()
}
