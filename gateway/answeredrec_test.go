package gateway

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/store"
	"github.com/jsonrtc/jsonrtc/store/natsstore"
)

// hostGate is a host's store that holds the writes hold picks once the
// frame under test was relayed (relayed says so), until the host is
// killed (kill); killed, it takes no write: the host died between the
// relay and those writes.
type hostGate struct {
	killedStore
	relayed atomic.Pointer[func() bool]
	hold    func(key string, value []byte) bool
	held    chan struct{} // closed when a write is held
	once    sync.Once
	dead    chan struct{}
}

func newHostGate(st store.Store, hold func(key string, value []byte) bool) *hostGate {
	return &hostGate{killedStore: killedStore{Store: st}, hold: hold, held: make(chan struct{}), dead: make(chan struct{})}
}

// wait holds the write of key when the gate says so.
func (g *hostGate) wait(key string, value []byte) {
	if relayed := g.relayed.Load(); relayed != nil && g.hold(key, value) && (*relayed)() {
		g.once.Do(func() { close(g.held) })
		<-g.dead
	}
}

func (g *hostGate) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	g.wait(key, value)
	return g.killedStore.Update(ctx, key, value, rev)
}

func (g *hostGate) Delete(ctx context.Context, key string) error {
	g.wait(key, nil)
	return g.killedStore.Delete(ctx, key)
}

// kill kills the host as far as the store can tell.
func (g *hostGate) kill() {
	g.killed.Store(true)
	close(g.dead)
}

// firstGated runs a cluster of three whose first node's store is a
// hostGate holding what hold picks.
func firstGated(t *testing.T, hold func(key string, value []byte) bool) ([]*Gateway, []string, *hostGate) {
	t.Helper()
	var host *hostGate
	gs, urls := newClusterGatewaysOn(t, 3, func(st store.Store) store.Store {
		if host != nil {
			return st
		}
		host = newHostGate(st, hold)
		return host
	})
	return gs, urls, host
}

// relayedTo returns whether the session to, on g, took the relay of the
// frame seq of from's stream, or a later one.
func relayedTo(g *Gateway, to, from, stream string, seq uint64) func() bool {
	return func() bool {
		s := g.lookup(to)
		if s == nil {
			return false
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		m := s.relays[relayKey{from, stream}]
		return m != nil && m.Seq >= seq
	}
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
	gs, urls, host := firstGated(t, func(key string, value []byte) bool {
		var rec callRecord
		return strings.HasPrefix(key, callPrefix) && json.Unmarshal(value, &rec) == nil && rec.Call != nil && rec.Call.Answered()
	})
	a, b := aliceAndBob(t, urls)
	in := ringBob(t, a, b)
	bsub := in.Control.SubsessionID
	callHost(t, gs[1], b.sid, bsub, "n1")
	relayed := relayedTo(gs[0], a.sid, b.sid, bsub, b.seq+1) // bob's answer
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

// TestClusterEndedCallRecordedBeforeTheHangUp: alice on n1 calls bob on
// n2 and bob hangs up; n1, the call's host, dies before alice's session
// has the hang-up written. Alice resumes on n3, which finds no call for
// her route to n1 and tells her it is over. Before, the hang-up was
// relayed before the record's deletion: n1 dying in between, n3 adopted
// the call as alive for alice, while bob had ended it (the deletion and
// alice's record held back here until the kill; 1 run of 1 on the old
// code).
func TestClusterEndedCallRecordedBeforeTheHangUp(t *testing.T) {
	var alice atomic.Value // her session's record key
	gs, urls, host := firstGated(t, func(key string, _ []byte) bool {
		return strings.HasPrefix(key, callPrefix) || key == alice.Load()
	})
	a, b, bsub := aliceCallsBobAcross(t, gs[0], urls[0], urls[1])
	alice.Store(recordKey(a.sid))
	callAnswered(t, gs[1], a.sid, "c1")
	relayed := relayedTo(gs[0], a.sid, b.sid, bsub, b.seq+1) // bob's hang-up
	host.relayed.Store(&relayed)
	b.send(&protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeMessage, Package: protocol.PackageCall, SubsessionID: bsub},
		Header:  protocol.Header{Action: protocol.ActionShutdown, Initiator: "bob@example.com", Target: "alice@example.com"},
	})
	select {
	case <-host.held: // alice's record with the hang-up
	case <-time.After(10 * time.Second):
		t.Fatal("n1 wrote no record of alice's after the hang-up's relay within 10s")
	}
	host.kill()
	gs[0].node.Close()
	a.c.CloseNow()
	w := resumeWS(t, urls[2], "alice@example.com", a.sid, a.seq+1, a.last)
	bye := w.readWithin(15 * time.Second)
	expect(t, bye, protocol.TypeMessage, protocol.ActionShutdown)
	if bye.Control.SubsessionID != "c1" {
		t.Fatalf("alice's shutdown is of %q, want c1", bye.Control.SubsessionID)
	}
	callHost(t, gs[2], a.sid, "c1", "")
	if n := gs[2].calls.Active(); n != 0 {
		t.Fatalf("n3 has %d calls, want none", n)
	}
}

// BenchmarkWebCallAnswer: what the answer and the hang-up of a call
// between two web sessions cost their relay on one node with its
// embedded store (jsonrtcd's default, on files): from bob's answer sent
// to alice's 200 read, and from alice's hang-up sent to bob's shutdown
// read. Each waits for the call's record (written ahead of the relay)
// besides the receiving session's. Reports p50/p99 of each.
func BenchmarkWebCallAnswer(b *testing.B) {
	e, err := natsstore.Start(context.Background(), &natsstore.EmbeddedOptions{Dir: b.TempDir(), Store: natsstore.Options{TTL: time.Minute}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(e.Close) // after the gateway's cleanup
	_, url := newGatewayOpts(b, nil, Options{Store: e})
	a := dial(b, url, protocol.SubprotocolOracle, nil)
	a.connect("alice@example.com")
	bob := dial(b, url, protocol.SubprotocolOracle, nil)
	bob.connect("bob@example.com")
	answers := make([]time.Duration, 0, b.N)
	hangUps := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		sub := "c" + strconv.Itoa(i)
		a.send(&protocol.Frame{
			Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageCall, SubsessionID: sub},
			Header:  protocol.Header{Action: protocol.ActionStart, Initiator: "alice@example.com", Target: "bob@example.com"},
			Payload: protocol.EncodePayload(protocol.CallPayload{SDP: sdpOffer}),
		})
		in := bob.read()
		start := time.Now()
		answer(bob, in)
		if r := a.read(); r.Header.ResponseCode != 200 {
			b.Fatalf("alice's start answered %s", r.Marshal())
		}
		answers = append(answers, time.Since(start))
		start = time.Now()
		a.send(&protocol.Frame{
			Control: protocol.Control{Type: protocol.TypeMessage, Package: protocol.PackageCall, SubsessionID: sub},
			Header:  protocol.Header{Action: protocol.ActionShutdown, Initiator: "alice@example.com", Target: "bob@example.com"},
		})
		if r := bob.read(); r.Header.Action != protocol.ActionShutdown {
			b.Fatalf("bob got %s, want alice's hang-up", r.Marshal())
		}
		hangUps = append(hangUps, time.Since(start))
	}
	b.StopTimer()
	for _, m := range []struct {
		name string
		lat  []time.Duration
	}{{"answer", answers}, {"hangup", hangUps}} {
		slices.Sort(m.lat)
		b.ReportMetric(float64(m.lat[len(m.lat)/2].Microseconds())/1000, m.name+"-p50-ms")
		b.ReportMetric(float64(m.lat[len(m.lat)*99/100].Microseconds())/1000, m.name+"-p99-ms")
	}
}

// deadAfterWrite is a host's store that, once armed, dies right after
// applying the write pick chooses: what it wrote is in the store, and
// nothing after it happens.
type deadAfterWrite struct {
	killedStore
	pick func(key string, value []byte) bool
	held chan struct{} // closed once the write picked is applied
	once sync.Once
	dead chan struct{}
}

func (d *deadAfterWrite) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	n, err := d.killedStore.Update(ctx, key, value, rev)
	if err == nil && d.pick(key, value) {
		d.once.Do(func() { close(d.held) })
		<-d.dead
		return 0, errKilled
	}
	return n, err
}

// bobAnswersAcross: alice on n1 (gs[0]) calls bob on n2, and bob
// answers; it returns once reached is closed (or fails with why after
// 10 s), with alice, bob and bob's subsession of the call.
func bobAnswersAcross(t *testing.T, gs []*Gateway, urls []string, reached <-chan struct{}, why string) (a, b *peer, bsub string) {
	t.Helper()
	a, b = aliceAndBob(t, urls)
	in := ringBob(t, a, b)
	bsub = in.Control.SubsessionID
	callHost(t, gs[1], b.sid, bsub, "n1")
	answer(b, in)
	select {
	case <-reached:
	case <-time.After(10 * time.Second):
		t.Fatal(why)
	}
	return a, b, bsub
}

// TestClusterAnswerRelayedAgainByTheAdopter: alice on n1 calls bob on
// n2, bob answers, and n1, the call's host, dies once the answered record
// is written, before alice's session has the 200. n2 adopts the call
// answered and relays bob's answer again: alice, resumed on n3, gets it.
// Before, the record held no answer to relay again and bob's client did
// not send it again (n2 had acknowledged it): alice rang on an answered
// call until she cancelled.
func TestClusterAnswerRelayedAgainByTheAdopter(t *testing.T) {
	var host *deadAfterWrite
	gs, urls := newClusterGatewaysOn(t, 3, func(st store.Store) store.Store {
		if host != nil {
			return st
		}
		host = &deadAfterWrite{killedStore: killedStore{Store: st}, held: make(chan struct{}), dead: make(chan struct{})}
		host.pick = func(key string, value []byte) bool {
			var rec callRecord
			return strings.HasPrefix(key, callPrefix) && json.Unmarshal(value, &rec) == nil && rec.Call != nil && rec.Call.Answered()
		}
		return host
	})
	a, b, bsub := bobAnswersAcross(t, gs, urls, host.held, "n1 wrote no answered record")
	host.killed.Store(true)
	close(host.dead)
	gs[0].node.Close()
	a.c.CloseNow()
	callHost(t, gs[1], b.sid, bsub, "n2")
	w := resumeWS(t, urls[2], "alice@example.com", a.sid, a.seq+1, a.last)
	if r := w.readWithin(10 * time.Second); r.Control.Type != protocol.TypeResponse || r.Header.ResponseCode != 200 || r.Control.SubsessionID != "c1" {
		t.Fatalf("alice read %s, want her start's 200", r.Marshal())
	}
	bobReoffers(t, b, w, bsub)
	aliceHangsUp(w)
	expect(t, b.read(), protocol.TypeMessage, protocol.ActionShutdown)
}
