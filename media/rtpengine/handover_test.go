package rtpengine

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"
)

// A session handed over: the process that made it forgets it without a
// delete, the one that resumes it from its state (through JSON, as the
// store carries it) holds it on the same instance, and its re-offers and
// delete go there with the call's keys.
func TestSessionHandover(t *testing.T) {
	f := newFakeNG(t, ok)
	ledA, ledB := &ledgerLog{}, &ledgerLog{}
	inst := []Instance{{Addr: "a", Ctl: dialFake(t, f, fastRetry)}}
	pa := NewPool(inst, &PoolOptions{Ledger: ledA})
	pb := NewPool(inst, &PoolOptions{Ledger: ledB})
	a, _ := NewPoolAdapter(pa, PolicyAlways)
	b, _ := NewPoolAdapter(pb, PolicyAlways)
	s, _, err := a.OfferRoute(t.Context(), WebToSIP, Keys{CallID: "c1", FromTag: "f1"}, webrtcSDP, Route{SDES: true})
	if err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(s.State())
	s.Forget()
	var st SessionState
	if err := json.Unmarshal(data, &st); err != nil {
		t.Fatal(err)
	}
	r, err := b.Resume(st)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Anchored() || !r.sdes.Load() || pb.members[0].calls.Load() != 1 || pa.members[0].calls.Load() != 0 {
		t.Fatalf("resumed %+v: calls on a %d, on b %d", st, pa.members[0].calls.Load(), pb.members[0].calls.Load())
	}
	if _, err := r.Reoffer(t.Context(), webrtcSDP); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Delete(t.Context()); err != nil {
		t.Fatal(err)
	}
	if want := []string{"hold c1 f1 a", "release c1"}; !slices.Equal(ledA.ops, want) || !slices.Equal(ledB.ops, want) {
		t.Fatalf("ledgers %q and %q, want %q each", ledA.ops, ledB.ops, want)
	}
	f.mu.Lock()
	var cmds []string
	for _, q := range f.reqs {
		cmds = append(cmds, q["command"].(string)+" "+q["call-id"].(string))
	}
	f.mu.Unlock()
	if want := []string{"offer c1", "offer c1", "delete c1"}; !slices.Equal(cmds, want) {
		t.Fatalf("rtpengine heard %q, want %q (no delete at the handover)", cmds, want)
	}
	if _, err := b.Resume(SessionState{Anchored: true, Addr: "gone"}); !errors.Is(err, ErrNoInstance) {
		t.Fatalf("resume on an instance not in the pool: %v", err)
	}
}
