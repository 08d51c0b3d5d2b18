package gateway

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/store"
)

// answerGate is a host's store that holds the write of a call's answered
// record made once the answer was relayed to the caller (relayed says
// so), until the host is killed (kill); killed, it takes no write: the
// host died between the relay and the record.
type answerGate struct {
	killedStore
	relayed atomic.Pointer[func() bool]
	held    chan struct{} // closed when a write is held
	once    sync.Once
	dead    chan struct{}
}

func newAnswerGate(st store.Store) *answerGate {
	return &answerGate{killedStore: killedStore{Store: st}, held: make(chan struct{}), dead: make(chan struct{})}
}

func (g *answerGate) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	if relayed := g.relayed.Load(); relayed != nil && strings.HasPrefix(key, callPrefix) {
		var rec callRecord
		if json.Unmarshal(value, &rec) == nil && rec.Call != nil && rec.Call.Answered() && (*relayed)() {
			g.once.Do(func() { close(g.held) })
			<-g.dead
		}
	}
	return g.killedStore.Update(ctx, key, value, rev)
}

// kill kills the host as far as the store can tell.
func (g *answerGate) kill() {
	g.killed.Store(true)
	close(g.dead)
}

// TestClusterAnsweredCallRecordedBeforeTheAnswer: alice on n1 calls bob
// on n2, bob answers, and n1, the call's host, dies as alice has the
// answer. n2 adopts the call answered: bob's re-offer reaches alice,
// resumed on n3, and her hang-up reaches bob. Before, the answer was
// relayed before the record was written: n1 dying in between, n2 adopted
// the call ringing (the record held back here until the kill; 1 run of 1
// on the old code), bob's re-offer got 491 and the ring timer would have
// failed the call under both.
func TestClusterAnsweredCallRecordedBeforeTheAnswer(t *testing.T) {
	var host *answerGate
	gs, urls := newClusterGatewaysOn(t, 3, func(st store.Store) store.Store {
		if host != nil {
			return st
		}
		host = newAnswerGate(st)
		return host
	})
	a, b := aliceAndBob(t, urls)
	in := ringBob(t, a, b)
	bsub := in.Control.SubsessionID
	callHost(t, gs[1], b.sid, bsub, "n1")
	relayed := func() bool {
		s := gs[0].lookup(a.sid)
		if s == nil {
			return false
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.relays[relayKey{b.sid, bsub}] != nil
	}
	host.relayed.Store(&relayed)
	answer(b, in)
	if r := a.read(); r.Control.Type != protocol.TypeResponse || r.Header.ResponseCode != 200 || r.Control.SubsessionID != "c1" {
		t.Fatalf("alice's start answered %s", r.Marshal())
	}
	select {
	case <-host.held:
		t.Log("the answered record's write was held: the answer was relayed before it")
	default:
	}
	host.kill()
	gs[0].node.Close()
	a.c.CloseNow()
	callHost(t, gs[1], b.sid, bsub, "n2")
	if rec, _, _, err := gs[1].repl.read(context.Background(), callKey(a.sid, "c1")); err != nil || rec.Call == nil || !rec.Call.Answered() {
		t.Fatalf("the adopted call's record: %+v, %v; want the call answered", rec, err)
	}
	w := resumeWS(t, urls[2], "alice@example.com", a.sid, a.seq+1, a.last)
	waitFor(t, "n2 and n3 to see n1 down", func() bool { return gs[2].node.Down("n1") && gs[1].node.Down("n1") })
	bobReoffers(t, b, w, bsub)
	aliceHangsUp(w)
	expect(t, b.read(), protocol.TypeMessage, protocol.ActionShutdown)
	callHost(t, gs[1], a.sid, "c1", "")
}
