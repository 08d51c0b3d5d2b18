package call

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/protocol"
)

// replicas records what Options.Replicate hears.
type replicas struct {
	mu    sync.Mutex
	last  Snapshot
	n     int
	ended bool
}

func (r *replicas) hear(sn Snapshot, ended bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.last, r.ended = sn, ended
	r.n++
}

func (r *replicas) get() (Snapshot, int, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last, r.n, r.ended
}

// TestRestoreGoesOn: a web call is replicated as it changes (its start,
// the answer, each answered re-offer), and a second handler that
// restores the snapshot relays the call on: a re-offer and its answer,
// the complete with the correlation of the offer answered, and the
// hang-up, whose end is replicated too.
func TestRestoreGoesOn(t *testing.T) {
	var r1, r2 replicas
	e1 := newEnv(t, time.Minute)
	e1.h.opts.Replicate = r1.hear
	a, b := e1.ep("alice@web.example"), e1.ep("bob@web.example")
	a.takeOnce() // the answer's relay again at the restore is taken once
	st := e1.webCall(t, a, b, "c1", 1)
	sn, n, ended := r1.get()
	want := Snapshot{Target: "bob@web.example",
		Caller: LegSnapshot{Session: a.id, Identity: a.identity, Sub: "c1", StartCorr: "c1"},
		Callee: LegSnapshot{Session: b.id, Identity: b.identity, Sub: st.Control.SubsessionID, StartCorr: st.Control.CorrelationID, AnswerCorr: st.Control.CorrelationID},
		Answer: &AnswerSnapshot{Seq: 1, Payload: protocol.EncodePayload(protocol.CallPayload{SDP: webOffer})}}
	if n != 2 || ended || !sn.equal(want) {
		t.Fatalf("after the answer Replicate heard %d times (ended %v) %+v, want twice (ringing, answered) %+v", n, ended, sn, want)
	}
	// The host dies: e1's copy ends without a word (a's and b's frames
	// from it are read away), and e2 takes the snapshot.
	e1.send(a, wf{typ: protocol.TypeMessage, act: protocol.ActionShutdown, sub: "c1", seq: 2})
	b.expect(t, protocol.TypeMessage, protocol.ActionShutdown)
	if _, _, ended := r1.get(); !ended {
		t.Fatal("the end of the call was not replicated")
	}
	e2 := newEnv(t, time.Minute)
	e2.h.opts.Replicate = r2.hear
	if err := e2.h.Restore(sn, a, b); err != nil {
		t.Fatal(err)
	}
	if err := e2.h.Restore(sn, a, b); !errors.Is(err, ErrLegTaken) {
		t.Fatalf("a second restore of the call: %v, want ErrLegTaken", err)
	}
	// Bob re-offers: alice gets it, answers, bob gets the answer and
	// completes, alice gets the complete with her answer's correlation.
	e2.send(b, wf{typ: protocol.TypeRequest, act: protocol.ActionStart, sub: sn.Callee.Sub, seq: 2, p: protocol.CallPayload{SDP: webOffer}})
	ro := a.expect(t, protocol.TypeRequest, protocol.ActionStart)
	if ro.Control.SubsessionID != "c1" {
		t.Fatalf("re-offer on %q, want c1", ro.Control.SubsessionID)
	}
	e2.send(a, wf{typ: protocol.TypeResponse, act: protocol.ActionStart, sub: "c1", seq: 3, corr: ro.Control.CorrelationID,
		state: protocol.StateFinal, code: 200, p: protocol.CallPayload{SDP: webOffer}})
	if ans := b.expect(t, protocol.TypeResponse, protocol.ActionStart); ans.Control.CorrelationID != "c2" || ans.Header.ResponseCode != 200 {
		t.Fatalf("bob's re-offer answered %s", ans.Marshal())
	}
	if sn2, _, _ := r2.get(); sn2.Caller.AnswerCorr != ro.Control.CorrelationID {
		t.Fatalf("replicated after the re-offer: %+v, want alice's answer correlation %s", sn2, ro.Control.CorrelationID)
	}
	e2.send(b, wf{typ: protocol.TypeMessage, act: protocol.ActionComplete, sub: sn.Callee.Sub, seq: 3, corr: "c2"})
	if c := a.expect(t, protocol.TypeMessage, protocol.ActionComplete); c.Control.CorrelationID != ro.Control.CorrelationID {
		t.Fatalf("complete to alice on %q, want %q", c.Control.CorrelationID, ro.Control.CorrelationID)
	}
	e2.send(b, wf{typ: protocol.TypeMessage, act: protocol.ActionShutdown, sub: sn.Callee.Sub, seq: 4})
	a.expect(t, protocol.TypeMessage, protocol.ActionShutdown)
	if _, _, ended := r2.get(); !ended {
		t.Fatal("the end of the restored call was not replicated")
	}
}

// TestRestoreKeepsSubsessionIDs: a handler that restores a call whose
// callee leg has one of its own ids never hands that id out again (a
// node restarted counts from 1).
func TestRestoreKeepsSubsessionIDs(t *testing.T) {
	e := newEnv(t, time.Minute)
	a, b, c := e.ep("alice@web.example"), e.ep("bob@web.example"), e.ep("carol@web.example")
	sn := Snapshot{Target: "bob@web.example", Caller: LegSnapshot{Session: a.id, Identity: a.identity, Sub: "c1"},
		Callee: LegSnapshot{Session: b.id, Identity: b.identity, Sub: "s7"}}
	if err := e.h.Restore(sn, a, b); err != nil {
		t.Fatal(err)
	}
	f := wf{typ: protocol.TypeRequest, act: protocol.ActionStart, sub: "c2", seq: 1, p: protocol.CallPayload{SDP: webOffer}}.frame()
	f.Header.Target = c.identity
	e.h.HandleFrame(b, f)
	if st := c.expect(t, protocol.TypeRequest, protocol.ActionStart); st.Control.SubsessionID != "s8" {
		t.Fatalf("a new call after the restore got subsession %s, want s8", st.Control.SubsessionID)
	}
	hangUp(e, b, "c2", 2)
	c.expect(t, protocol.TypeMessage, protocol.ActionShutdown)
	hangUp(e, a, "c1", 2)
	b.expect(t, protocol.TypeMessage, protocol.ActionShutdown)
}

// TestAnswerWrittenAhead: Options.WriteAhead hears the answered call
// before the caller has the answer, and Replicate does not hear it
// again; an answer whose write failed still reaches the caller, and
// Replicate hears it then. A hang-up's end is heard before the other
// side hears the hang-up. Before, the answer reached the caller first
// and its record's write followed, out of line: a host dying in between
// left the call ringing in its record (gateway
// TestClusterAnsweredCallRecordedBeforeTheAnswer); so did a hang-up
// (TestClusterEndedCallRecordedBeforeTheHangUp).
func TestAnswerWrittenAhead(t *testing.T) {
	for _, fail := range []bool{false, true} {
		var r replicas
		e := newEnv(t, time.Minute)
		e.h.opts.Replicate = r.hear
		a, b := e.ep("alice@web.example"), e.ep("bob@web.example")
		var ahead []Snapshot
		ends := 0
		e.h.opts.WriteAhead = func(sn Snapshot, ended bool) error {
			if ended {
				b.none(t) // bob has no hang-up yet
				ends++
				return nil
			}
			a.none(t) // the caller has no answer yet
			ahead = append(ahead, sn)
			if fail {
				return errors.New("test: the store is down")
			}
			return nil
		}
		st := e.webCall(t, a, b, "c1", 1)
		want := Snapshot{Target: "bob@web.example",
			Caller: LegSnapshot{Session: a.id, Identity: a.identity, Sub: "c1", StartCorr: "c1"},
			Callee: LegSnapshot{Session: b.id, Identity: b.identity, Sub: st.Control.SubsessionID, StartCorr: st.Control.CorrelationID, AnswerCorr: st.Control.CorrelationID},
			Answer: &AnswerSnapshot{Seq: 1, Payload: protocol.EncodePayload(protocol.CallPayload{SDP: webOffer})}}
		if len(ahead) != 1 || !ahead[0].equal(want) {
			t.Fatalf("written ahead (failing %v): %+v, want the answered call %+v", fail, ahead, want)
		}
		sn, n, ended := r.get()
		if wantN := map[bool]int{false: 1, true: 2}[fail]; n != wantN || ended || fail && !sn.equal(want) {
			t.Fatalf("Replicate (write ahead failing %v) heard %d times (ended %v), last %+v; want %d", fail, n, ended, sn, wantN)
		}
		hangUp(e, a, "c1", 2)
		b.expect(t, protocol.TypeMessage, protocol.ActionShutdown)
		if ends != 1 {
			t.Fatalf("the hang-up's end written ahead %d times, want once", ends)
		}
	}
}

// TestSessionEndWrittenAhead: the end of a call by its caller's
// session's end, and by its answered callee's, is heard by
// Options.WriteAhead before the peer hears the shutdown, once; a ringing
// fork's session ending ends no call and writes nothing ahead. Before,
// the peer heard it first and the end's write followed, out of line
// (docs/cluster.md "What is not there yet").
func TestSessionEndWrittenAhead(t *testing.T) {
	for _, caller := range []bool{true, false} {
		e := newEnv(t, time.Minute)
		e.h.opts.Replicate = (&replicas{}).hear
		a, b := e.ep("alice@web.example"), e.ep("bob@web.example")
		ends := 0
		peer := b
		if !caller {
			peer = a
		}
		e.h.opts.WriteAhead = func(sn Snapshot, ended bool) error {
			if ended {
				peer.none(t) // the peer has no shutdown yet
				ends++
			}
			return nil
		}
		e.webCall(t, a, b, "c1", 1)
		gone := a
		if !caller {
			gone = b
		}
		e.h.SessionEnded(gone)
		peer.expect(t, protocol.TypeMessage, protocol.ActionShutdown)
		if ends != 1 {
			t.Fatalf("ended by the caller's session %v: the end written ahead %d times, want once", caller, ends)
		}
	}
}

// TestRestoreRelaysTheAnswerAgain: an answered call's adopter relays the
// callee's answer to the caller again, under the answer's origin: a
// caller whose host died between writing the answered record and her
// having the 200 gets it (before, she rang on an answered call until
// she cancelled: docs/cluster.md "What is not there yet"); one who had
// it gets nothing.
func TestRestoreRelaysTheAnswerAgain(t *testing.T) {
	var r replicas
	e1 := newEnv(t, time.Minute)
	e1.h.opts.Replicate = r.hear
	a, b := e1.ep("alice@web.example"), e1.ep("bob@web.example")
	a.takeOnce()
	e1.webCall(t, a, b, "c1", 1)
	sn, _, _ := r.get()
	// The host died here: its copy is dropped without a word.
	e1.h.Drop(a.id, "c1")
	adoptedTwice(t, sn, a, b, func(had bool) {
		if had {
			a.none(t)
			b.none(t)
		} else {
			ans := a.expect(t, protocol.TypeResponse, protocol.ActionStart)
			var p protocol.CallPayload
			if ans.Header.ResponseCode != 200 || ans.Control.SubsessionID != "c1" || ans.Control.CorrelationID != "c1" ||
				protocol.DecodePayload(ans.Payload, &p) != nil || p.SDP != webOffer {
				t.Fatalf("alice's answer again: %s", ans.Marshal())
			}
			b.none(t)
		}
	})
}

// TestRestoreRelaysTheRingingCandidatesAgain: the candidates a callee
// sent while its fork rang, relayed to the caller after the answer, are
// in the answered record and relayed again by an adopter after the
// answer, under the answer's origin: a caller who had them gets
// nothing, one who did not gets the answer and then them. Before, the
// adopter relayed the answer alone.
func TestRestoreRelaysTheRingingCandidatesAgain(t *testing.T) {
	var r replicas
	e1 := newEnv(t, time.Minute)
	e1.h.opts.Replicate = r.hear
	a, b1, b2 := e1.ep("alice@web.example"), e1.ep("bob@web.example"), e1.ep("bob@web.example")
	a.takeOnce()
	st := forkedToBob(t, e1, a, b1, b2)
	cands := []string{"a=candidate:1 1 udp 1 192.0.2.1 1000 typ host", "a=candidate:2 1 udp 1 192.0.2.1 1001 typ host"}
	for i, c := range cands {
		e1.send(b1, wf{typ: protocol.TypeMessage, act: protocol.ActionTrickle, sub: st.Control.SubsessionID, seq: uint64(i + 1),
			p: protocol.CallPayload{Candidates: c}})
	}
	a.none(t) // buffered while the fork rings
	e1.send(b1, wf{typ: protocol.TypeResponse, act: protocol.ActionStart, sub: st.Control.SubsessionID, seq: 3,
		corr: st.Control.CorrelationID, state: protocol.StateFinal, code: 200, p: protocol.CallPayload{SDP: webOffer}})
	a.expect(t, protocol.TypeResponse, protocol.ActionStart)
	for range cands {
		a.expect(t, protocol.TypeMessage, protocol.ActionTrickle)
	}
	b2.expect(t, protocol.TypeMessage, protocol.ActionShutdown)
	sn, _, _ := r.get()
	if sn.Answer == nil || len(sn.Answer.Trickle) != len(cands) {
		t.Fatalf("the answered record's answer: %+v, want the %d candidates", sn.Answer, len(cands))
	}
	e1.h.Drop(a.id, "c1")
	adoptedTwice(t, sn, a, b1, func(had bool) {
		if had {
			a.none(t)
		} else {
			a.expect(t, protocol.TypeResponse, protocol.ActionStart)
			for _, c := range cands {
				tr := a.expect(t, protocol.TypeMessage, protocol.ActionTrickle)
				var p protocol.CallPayload
				if protocol.DecodePayload(tr.Payload, &p) != nil || p.Candidates != c || tr.Control.SubsessionID != "c1" {
					t.Fatalf("alice's candidate again: %s, want %q", tr.Marshal(), c)
				}
			}
			a.none(t)
		}
		b1.none(t)
	})
}

// adoptedTwice has a new handler adopt the answered call sn of caller a
// (on "c1") and callee b twice, checking each adoption with check: first
// with a session that took the relays of the dead host, then with one
// that never took them.
func adoptedTwice(t *testing.T, sn Snapshot, a, b *fakeEP, check func(had bool)) {
	t.Helper()
	for _, had := range []bool{true, false} {
		if !had {
			a.takeOnce() // a session that never took the answer
		}
		e := newEnv(t, time.Minute)
		if err := e.h.Restore(sn, a, b); err != nil {
			t.Fatal(err)
		}
		check(had)
		e.h.Drop(a.id, "c1")
	}
}

// recordedCall is a web call from alice to bob, answered, whose changes
// the returned replicas hear; it returns bob's subsession too.
func recordedCall(t *testing.T) (e *env, r *replicas, a, b *fakeEP, bsub string) {
	t.Helper()
	r = &replicas{}
	e = newEnv(t, time.Minute)
	e.h.opts.Replicate = r.hear
	a, b = e.ep("alice@web.example"), e.ep("bob@web.example")
	a.takeOnce()
	st := e.webCall(t, a, b, "c1", 1)
	return e, r, a, b, st.Control.SubsessionID
}

// adoptedElsewhere has the host e1 of alice's call c1 die (its copy
// dropped without a word) and another handler adopt the call from sn.
func adoptedElsewhere(t *testing.T, e1 *env, sn Snapshot, a, b *fakeEP) *env {
	t.Helper()
	e1.h.Drop(a.id, "c1")
	e2 := newEnv(t, time.Minute)
	if err := e2.h.Restore(sn, a, b); err != nil {
		t.Fatal(err)
	}
	return e2
}

// TestRestoreAnswersAnOutstandingReoffer: a re-offer relayed and not
// yet answered is in the call's snapshot; the adopter relays its answer
// to the side that made it, with that side's correlation, and a resend
// of the re-offer (its node died before writing its state) is not
// relayed again. Before, the answer found nothing to go to and the
// re-offer never got one (the SDKs' request timeout ended the wait).
func TestRestoreAnswersAnOutstandingReoffer(t *testing.T) {
	e1, r, a, b, bsub := recordedCall(t)
	reoffer := wf{typ: protocol.TypeRequest, act: protocol.ActionStart, sub: bsub, seq: 2, p: protocol.CallPayload{SDP: webOffer}}
	e1.send(b, reoffer)
	ro := a.expect(t, protocol.TypeRequest, protocol.ActionStart)
	sn, _, _ := r.get()
	if sn.Callee.ReofferHere != "c2" || sn.Callee.ReofferThere != ro.Control.CorrelationID || sn.Caller.ReofferHere != "" {
		t.Fatalf("replicated after the re-offer: %+v, want bob's re-offer c2 / %s", sn, ro.Control.CorrelationID)
	}
	e2 := adoptedElsewhere(t, e1, sn, a, b)
	e2.send(b, reoffer)
	a.none(t)
	b.none(t)
	e2.send(a, wf{typ: protocol.TypeResponse, act: protocol.ActionStart, sub: "c1", seq: 2, corr: ro.Control.CorrelationID,
		state: protocol.StateFinal, code: 200, p: protocol.CallPayload{SDP: webOffer}})
	if ans := b.expect(t, protocol.TypeResponse, protocol.ActionStart); ans.Control.CorrelationID != "c2" || ans.Header.ResponseCode != 200 || ans.Control.SubsessionID != bsub {
		t.Fatalf("bob's re-offer answered %s, want 200 on c2", ans.Marshal())
	}
	hangUp(e2, b, bsub, 3)
	a.expect(t, protocol.TypeMessage, protocol.ActionShutdown)
}

// TestRestoreRelaysAnOutstandingTransfer: a transfer relayed and not yet
// over is in the call's snapshot; the adopter relays the transferee's
// answer and progress to the transferor, with the transferor's
// correlation. Before, they found nothing to go to.
func TestRestoreRelaysAnOutstandingTransfer(t *testing.T) {
	e1, r, a, b, bsub := recordedCall(t)
	f := wf{typ: protocol.TypeRequest, act: protocol.ActionTransfer, sub: "c1", seq: 2}.frame()
	f.Header.ReferTo = "carol@web.example"
	e1.h.HandleFrame(a, f)
	tr := b.expect(t, protocol.TypeRequest, protocol.ActionTransfer)
	sn, _, _ := r.get()
	if sn.Caller.TransferHere != "c2" || sn.Caller.TransferThere != tr.Control.CorrelationID {
		t.Fatalf("replicated after the transfer: %+v, want alice's transfer c2 / %s", sn.Caller, tr.Control.CorrelationID)
	}
	e2 := adoptedElsewhere(t, e1, sn, a, b)
	e2.send(b, wf{typ: protocol.TypeResponse, act: protocol.ActionTransfer, sub: bsub, seq: 2,
		corr: tr.Control.CorrelationID, state: protocol.StateFinal, code: 202})
	if ans := a.expect(t, protocol.TypeResponse, protocol.ActionTransfer); ans.Header.ResponseCode != 202 || ans.Control.CorrelationID != "c2" {
		t.Fatalf("alice's transfer answered %s, want 202 on c2", ans.Marshal())
	}
	e2.send(b, wf{typ: protocol.TypeMessage, act: protocol.ActionTransfer, sub: bsub, seq: 3, corr: tr.Control.CorrelationID, code: 200})
	if p := a.expect(t, protocol.TypeMessage, protocol.ActionTransfer); p.Header.ResponseCode != 200 || p.Control.CorrelationID != "c2" {
		t.Fatalf("alice's transfer progress %s, want 200 on c2", p.Marshal())
	}
	hangUp(e2, a, "c1", 3)
	b.expect(t, protocol.TypeMessage, protocol.ActionShutdown)
}
