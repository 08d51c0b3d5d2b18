package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/call"
	"github.com/jsonrtc/jsonrtc/endpoint"
	"github.com/jsonrtc/jsonrtc/media/rtpengine"
	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/sipgw"
	"github.com/jsonrtc/jsonrtc/store"
)

// sipRecordOf waits until g reads the record of the SIP call of the leg
// (session, sub) satisfying ok, and returns it.
func sipRecordOf(t *testing.T, g *Gateway, session, sub string, ok func(*callRecord) bool) *callRecord {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		rec, _, _, err := g.repl.read(context.Background(), callKey(session, sub))
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			t.Fatal(err)
		}
		if err != nil {
			rec = nil
		}
		if ok(rec) {
			return rec
		}
		if time.Now().After(deadline) {
			t.Fatalf("the SIP call's record is %+v after 15s", rec)
		}
		<-time.After(20 * time.Millisecond)
	}
}

// A SIP call's record: written out of line under its web leg's key,
// naming its host, with the dialog's state; a write-ahead is in the
// store when it returns. When the host dies, of two nodes that adopt the
// call at once exactly one takes the record (compare-and-set); its
// adoption failing (here no SIP user agent: as a refused target
// refresh), the web leg hears the call's end and the record goes.
func TestClusterSIPCallRecordAdoptedOnce(t *testing.T) {
	gs, urls := newClusterGateways(t, 3)
	a := dial(t, urls[0], protocol.SubprotocolOracle, nil)
	a.connect("alice@example.com")
	sn := call.SIPSnapshot{Out: true, Target: "bob@sip.example", Web: call.LegSnapshot{Session: a.sid, Identity: "alice@example.com", Sub: "c9", StartCorr: "c9"}}
	app, _ := json.Marshal(sn)
	st := sipgw.DialogState{Version: sipgw.DialogStateVersion, Role: "uac", CallID: "cid-1", LocalCSeq: 3, App: app}
	gs[2].repl.replicateSIP(sn, st, false)
	sipRecordOf(t, gs[0], a.sid, "c9", func(r *callRecord) bool {
		return r != nil && r.Host == "n3" && r.SIP != nil && r.SIP.LocalCSeq == 3
	})
	st.LocalCSeq = 4
	if err := gs[2].repl.writeAheadSIP(sn, st); err != nil {
		t.Fatal(err)
	}
	rec, _, _, err := gs[0].repl.read(context.Background(), callKey(a.sid, "c9"))
	if err != nil || rec.SIP == nil || rec.SIP.LocalCSeq != 4 {
		t.Fatalf("after the write-ahead the record is %+v (%v), want CSeq 4", rec, err)
	}

	gs[2].node.Close() // n3, the host, dies
	for deadline := time.Now().Add(15 * time.Second); !gs[0].node.Down("n3") || !gs[1].node.Down("n3"); <-time.After(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("n3 not down after 15s")
		}
	}
	var wg sync.WaitGroup
	hosts := make([]string, 2)
	for i := range 2 {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			hosts[i], _ = gs[i].repl.adoptOnce(ctx, a.sid, "c9")
		})
	}
	wg.Wait()
	took := 0
	for i, h := range hosts {
		if h == gs[i].self() {
			took++
		}
	}
	failed := gs[0].repl.sip.adoptFailed.Load() + gs[1].repl.sip.adoptFailed.Load()
	if took != 1 || failed != 1 {
		t.Fatalf("adopters %v, %d failed adoptions: want exactly one", hosts, failed)
	}
	f := a.read()
	expect(t, f, protocol.TypeMessage, protocol.ActionShutdown)
	if f.Control.SubsessionID != "c9" || f.Header.Reason == "" {
		t.Fatalf("alice's end of the call %s", f.Marshal())
	}
	sipRecordOf(t, gs[0], a.sid, "c9", func(r *callRecord) bool { return r == nil })
}

// keepSIPMedia stores the ledger record of an earlier life's call
// callID on the rtpengine at addr, and a SIP call record whose media it
// is; it returns the ledger record's key.
func keepSIPMedia(t *testing.T, st store.Store, callID, addr string) string {
	t.Helper()
	ctx := context.Background()
	led, _ := json.Marshal(ledgerRecord{CallID: callID, FromTag: "ft", Addr: addr, Life: "dead"})
	key := ledgerKey("media.local.", callID)
	if _, err := st.Create(ctx, key, led); err != nil {
		t.Fatal(err)
	}
	app, _ := json.Marshal(call.SIPSnapshot{Web: call.LegSnapshot{Session: "gone", Sub: "c1"},
		Media: &rtpengine.SessionState{Addr: addr, Anchored: true, Keys: rtpengine.Keys{CallID: callID, FromTag: "ft"}}})
	rec, _ := json.Marshal(callRecord{Host: "n9", SIP: &sipgw.DialogState{Version: sipgw.DialogStateVersion, CallID: callID, App: app}})
	if _, err := st.Create(ctx, callKey("gone", "c1"), rec); err != nil {
		t.Fatal(err)
	}
	return key
}

// stalledWriteStore, once armed, leaves the next update of a call record
// unanswered until its deadline, unapplied: a write sent to a stream
// leader that hands its leadership over (a drain) or dies meanwhile.
type stalledWriteStore struct {
	store.Store
	armed atomic.Bool
}

func (s *stalledWriteStore) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	if strings.HasPrefix(key, callPrefix) && s.armed.CompareAndSwap(true, false) {
		<-ctx.Done()
		return 0, ctx.Err()
	}
	return s.Store.Update(ctx, key, value, rev)
}

// recordedSIPCall starts a gateway on st with a SIP call of the leg
// (S1, c9) recorded at CSeq 3: the call's snapshot and dialog state.
func recordedSIPCall(t *testing.T, st store.Store) (*Gateway, call.SIPSnapshot, sipgw.DialogState) {
	t.Helper()
	g, _ := newGatewayOpts(t, nil, Options{Store: st})
	sn := call.SIPSnapshot{Out: true, Target: "bob@sip.example", Web: call.LegSnapshot{Session: "S1", Identity: "alice@example.com", Sub: "c9", StartCorr: "c9"}}
	app, _ := json.Marshal(sn)
	ds := sipgw.DialogState{Version: sipgw.DialogStateVersion, Role: "uac", CallID: "cid-1", LocalCSeq: 3, App: app}
	g.repl.replicateSIP(sn, ds, false)
	sipRecordOf(t, g, "S1", "c9", func(r *callRecord) bool { return r != nil && r.SIP != nil && r.SIP.LocalCSeq == 3 })
	return g, sn, ds
}

// A SIP call's write-ahead whose first write the store leaves unanswered
// (a leader change) is made again at once, to the new leader: the
// request waits about one attempt, not the store's whole timeout, and
// leaves with its CSeq written (before, the write waited out 5 s and the
// request left without it; a drain took 5.2 s).
func TestSIPWriteAheadRetriedOnLeaderChange(t *testing.T) {
	st := &stalledWriteStore{Store: store.NewMemory()}
	g, sn, ds := recordedSIPCall(t, st)

	st.armed.Store(true)
	ds.LocalCSeq = 4
	start := time.Now()
	if err := g.repl.writeAheadSIP(sn, ds); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if st.armed.Load() {
		t.Fatal("no record update was made")
	}
	if n := g.repl.sip.aheadFailed.Load(); n != 0 || took >= storeTimeout/2 {
		t.Fatalf("the write-ahead took %v, %d failed: want one attempt's wait and none failed", took, n)
	}
	rec, _, _, err := g.repl.read(context.Background(), callKey("S1", "c9"))
	if err != nil || rec.SIP == nil || rec.SIP.LocalCSeq != 4 {
		t.Fatalf("after the write-ahead the record is %+v (%v), want CSeq 4", rec, err)
	}
}

// refusingStore refuses the updates of call records with a failure
// answered at once (not a timeout): refuse of them, or all while down.
type refusingStore struct {
	store.Store
	refuse atomic.Int32
	down   atomic.Bool
}

func (s *refusingStore) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	if strings.HasPrefix(key, callPrefix) && (s.down.Load() || s.refuse.Add(-1) >= 0) {
		return 0, store.ErrNotFound
	}
	return s.Store.Update(ctx, key, value, rev)
}

// A SIP call's write-ahead whose write the store refuses is made again
// within its bound, and passes once the store takes it; one the store
// refuses to the end fails, and the request is refused (sipgw
// ErrNotRecorded), counted. Before, a refused write counted as done:
// the request left with a CSeq the record lacked, and no error.
func TestSIPWriteAheadRefusedWrite(t *testing.T) {
	st := &refusingStore{Store: store.NewMemory()}
	g, sn, ds := recordedSIPCall(t, st)

	st.refuse.Store(2)
	ds.LocalCSeq = 4
	if err := g.repl.writeAheadSIP(sn, ds); err != nil {
		t.Fatalf("a write-ahead refused twice, then taken: %v", err)
	}
	rec, _, _, err := g.repl.read(context.Background(), callKey("S1", "c9"))
	if err != nil || rec.SIP == nil || rec.SIP.LocalCSeq != 4 {
		t.Fatalf("after the write-ahead the record is %+v (%v), want CSeq 4", rec, err)
	}

	st.down.Store(true)
	ds.LocalCSeq = 5
	start := time.Now()
	err = g.repl.writeAheadSIP(sn, ds)
	if err == nil || time.Since(start) > storeTimeout+2*time.Second {
		t.Fatalf("a write-ahead the store refuses: %v after %v, want an error within %v", err, time.Since(start), storeTimeout)
	}
	if n := g.repl.sip.aheadFailed.Load(); n != 1 {
		t.Fatalf("%d failed write-aheads counted, want 1", n)
	}
	st.down.Store(false)
}

// An update the store applied but whose answer was lost is made again,
// meets a conflict with our own write, and is taken as done.
func TestCallRecordUpdateLostAnswer(t *testing.T) {
	st := &lostTimeoutStore{Store: store.NewMemory()}
	ctx := context.Background()
	rev, err := st.Create(ctx, "call.k", []byte("one"))
	if err != nil {
		t.Fatal(err)
	}
	st.armed.Store(true)
	n, err := updateRetrying(ctx, st, "call.k", []byte("two"), rev)
	if err != nil || n <= rev {
		t.Fatalf("update: revision %d, %v; want done over %d", n, err, rev)
	}
}

// A frame for a session whose owner is resuming it (its record names the
// owner, whose tables do not have it yet) waits for the resume and is
// delivered, into the session's window. The case: a drained node's SIP
// call adopted by the node where its client resumed, the client then
// resuming once more on a third node; the adopter, host of the call,
// sends the phone's INFO through the cluster to the third node before
// that one's resume put the session in its tables. Tried six times in
// 0.55 s and dropped before, the DTMF never reached the user.
func TestClusterDeliverWaitsForResume(t *testing.T) {
	gs, urls := newClusterGateways(t, 2)
	a := dial(t, urls[1], protocol.SubprotocolOracle, nil)
	a.connect("alice@example.com")
	s := gs[1].lookup(a.sid)
	unlock := gs[1].resuming.lock(a.sid) // a resume of alice's under way on n2...
	gs[1].remove(s)                      // ...that has not put her session in its tables
	resumed := make(chan struct{})
	go func() {
		defer close(resumed)
		defer unlock()
		<-time.After(2 * time.Second) // the resume's own duration
		if err := gs[1].add(s); err != nil {
			t.Error(err)
		}
	}()
	f := &protocol.Frame{Control: protocol.Control{Type: protocol.TypeMessage, Package: protocol.PackageCall, SubsessionID: "c9"},
		Header: protocol.Header{Action: protocol.ActionDTMF, Initiator: "bob@sip.example", Target: "alice@example.com"}}
	_, _, err := gs[0].sendVia(a.sid, "n2", f, false, endpoint.Origin{})
	<-resumed
	if err != nil {
		t.Fatalf("a frame for a session being resumed: %v", err)
	}
	if got := a.read(); got.Header.Action != protocol.ActionDTMF || got.Control.SubsessionID != "c9" {
		t.Fatalf("alice read %s", got.Marshal())
	}
}
