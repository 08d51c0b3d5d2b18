package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/media/rtpengine"
	"github.com/jsonrtc/jsonrtc/store"
)

// fakeNG is a fake rtpengine on UDP: it answers an ng ping with pong,
// a statistics request and every other command with ok, and hands each
// request but pings and statistics to reqs (dropped when full), until
// the test ends.
func fakeNG(t *testing.T) (string, <-chan string) {
	t.Helper()
	reqs := make(chan string, 64)
	// As rtpengine, which caches its replies by cookie, a request is
	// taken once: its copies, retransmitted when the answer is slow (a
	// loaded machine, past the tests' 200 ms), only get the answer
	// again. Counted, they made TestMediaLedgerDeadPeer see one call
	// deleted twice.
	seen := map[string]bool{}
	return serveUDP(t, func(msg []byte) []byte {
		cookie, body, _ := strings.Cut(string(msg), " ")
		reply := "d6:result2:oke"
		switch {
		case strings.Contains(body, "7:command4:ping"):
			reply = "d6:result4:ponge"
		case strings.Contains(body, "7:command10:statistics"):
		case seen[cookie]:
		default:
			seen[cookie] = true
			select {
			case reqs <- body:
			default:
			}
		}
		return []byte(cookie + " " + reply)
	}), reqs
}

// TestMediaLedgerSweep: a call an earlier life of the node left in
// rtpengine (its record in the store, made by a process that died) is
// deleted there when the gateway starts, and its record goes; a record
// of this life is left alone, and the ledger records and forgets the
// calls of this life as the pool takes and deletes them.
func TestMediaLedgerSweep(t *testing.T) {
	addr, reqs := fakeNG(t)
	st := store.NewMemory()
	ctx := context.Background()
	old, _ := json.Marshal(ledgerRecord{CallID: "left@crash", FromTag: "ft", Addr: addr, Life: "dead"})
	oldKey := ledgerKey("media.local.", "left@crash")
	if _, err := st.Create(ctx, oldKey, old); err != nil {
		t.Fatal(err)
	}
	// A SIP call of the earlier life with a record: its adopter goes on
	// with its media, which the sweep leaves (before, it deleted it).
	sipKey := keepSIPMedia(t, st, "sip@crash", addr)
	cfg := DefaultConfig()
	cfg.SIP.Listen.UDP, cfg.SIP.Domain = "127.0.0.1:0", "example.com"
	cfg.Media = rtpengine.Config{RTPEngine: []string{addr}, Timeout: time.Second, Retransmit: 200 * time.Millisecond, PingInterval: time.Hour}
	g, err := New(cfg, &Options{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Shutdown(context.Background()) })
	select {
	case r := <-reqs:
		if !strings.Contains(r, "6:delete") || !strings.Contains(r, "7:call-id10:left@crash") || !strings.Contains(r, "8:from-tag2:ft") {
			t.Fatalf("first request to rtpengine %q, want the left call's delete", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no delete of the left call within 10s")
	}
	waitFor(t, "delete of the left call's record", func() bool {
		_, _, err := st.Get(ctx, oldKey)
		return errors.Is(err, store.ErrNotFound)
	})
	if _, _, err := st.Get(ctx, sipKey); err != nil {
		t.Fatalf("the recorded SIP call's ledger record: %v", err)
	}
	select {
	case r := <-reqs:
		t.Fatalf("rtpengine heard %q after the sweep", r)
	default:
	}
	_ = st.Delete(ctx, sipKey)
	rec := httptest.NewRecorder()
	g.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if !strings.Contains(rec.Body.String(), "jsonrtc_rtpengine_swept_total 1") {
		t.Errorf("metrics:\n%s", grepLines(rec.Body.String(), "swept", "ledger"))
	}

	// This life's calls: recorded while held, forgotten when deleted.
	l := g.ledger
	keys := func() []string {
		ks, err := st.Keys(ctx, "media.local.")
		if err != nil {
			t.Fatal(err)
		}
		return ks
	}
	l.Hold(rtpengine.Keys{CallID: "now@here", FromTag: "t1"}, addr)
	waitFor(t, "the call's record", func() bool { return len(keys()) == 1 })
	data, _, err := st.Get(ctx, ledgerKey("media.local.", "now@here"))
	var got ledgerRecord
	if err != nil || json.Unmarshal(data, &got) != nil || got.Life != l.life || got.Addr != addr || got.FromTag != "t1" {
		t.Fatalf("record %s (%v)", data, err)
	}
	// A refresh writes a live record again (a long call outlives the
	// store's age limit otherwise), unchanged: on a ledger of its own,
	// whose writes this goroutine makes (drain, refresh: run's work).
	l2 := newMediaLedger(g, "n9")
	l2.Hold(rtpengine.Keys{CallID: "long@here", FromTag: "t2"}, addr)
	l2.drain(ctx)
	key2 := ledgerKey("media.n9.", "long@here")
	held, rev0, err := st.Get(ctx, key2)
	if err != nil {
		t.Fatal(err)
	}
	l2.refresh(ctx)
	again, rev1, err := st.Get(ctx, key2)
	if err != nil || rev1 <= rev0 || string(again) != string(held) {
		t.Fatalf("refreshed record %s rev %d after %d (%v)", again, rev1, rev0, err)
	}
	l2.Release("long@here")
	l2.drain(ctx)
	// A sweep of this node now leaves this life's record.
	l.sweep(ctx, "local")
	if len(keys()) != 1 {
		t.Fatal("a sweep took this life's record")
	}
	if n := g.Stats().StoredSessions; n != 0 {
		t.Fatalf("stored sessions %d with no session (a media record counted)", n)
	}
	l.Release("now@here")
	waitFor(t, "the record's delete", func() bool { return len(keys()) == 0 })
}

// waitFor polls cond, which a goroutine of the gateway makes true (a
// store write queued behind others: no event to wait on).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); <-time.After(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within 10s", what)
		}
	}
}
