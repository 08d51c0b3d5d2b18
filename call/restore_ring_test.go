package call

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/jsonrtc/jsonrtc/protocol"
)

// ringingElsewhere has alice (a) call bob, who has two sessions (b1,
// b2), on a handler whose ring timer is ring; both ring. The host then
// dies (its copy dropped without a word) a fifth of ring later, and a
// second handler restores the ringing call from what Replicate heard
// last. It returns that handler, the legs, bob's two starts, and what
// the second handler's Replicate hears.
func ringingElsewhere(t *testing.T, ring time.Duration) (e2 *env, a, b1, b2 *fakeEP, st1, st2 *protocol.Frame, r2 *replicas) {
	t.Helper()
	var r1 replicas
	r2 = &replicas{}
	e1 := newEnv(t, ring)
	e1.h.opts.Replicate = r1.hear
	a, b1, b2 = e1.ep("alice@web.example"), e1.ep("bob@web.example"), e1.ep("bob@web.example")
	f := wf{typ: protocol.TypeRequest, act: protocol.ActionStart, sub: "c1", seq: 1, p: protocol.CallPayload{SDP: webOffer}}.frame()
	f.Header.Target = "bob@web.example"
	e1.h.HandleFrame(a, f)
	st1 = b1.expect(t, protocol.TypeRequest, protocol.ActionStart)
	st2 = b2.expect(t, protocol.TypeRequest, protocol.ActionStart)
	sn, n, ended := r1.get()
	if n != 1 || ended || sn.Answered() || len(sn.Ringing) != 2 ||
		sn.Ringing[0].Sub != st1.Control.SubsessionID || sn.Ringing[0].StartCorr != st1.Control.CorrelationID ||
		sn.Ringing[1].Sub != st2.Control.SubsessionID || sn.Caller.StartCorr != "c1" ||
		!sn.RingUntil.Equal(time.Now().Add(ring)) {
		t.Fatalf("at the start Replicate heard %d times (ended %v) %+v, want once the two ringing forks", n, ended, sn)
	}
	time.Sleep(ring / 5)
	e1.h.Drop(a.id, "c1")
	if _, n, _ := r1.get(); n != 1 {
		t.Fatal("the dropped copy replicated its end")
	}
	e2 = newEnv(t, time.Hour)
	e2.h.opts.Replicate = r2.hear
	if err := e2.h.Restore(sn, a, b1); err != ErrRestoreLegs {
		t.Fatalf("a ringing call restored with one of its two forks: %v", err)
	}
	if err := e2.h.Restore(sn, a, b1, b2); err != nil {
		t.Fatal(err)
	}
	return e2, a, b1, b2, st1, st2, r2
}

// TestRestoreRingingAnswered: a ringing call restored on another handler
// is answered there by one fork: the answer reaches the caller on her
// start's correlation, the other fork is cancelled, the answered call
// is replicated and goes on (the hang-up reaches the caller). Before, a
// ringing call was not replicated at all: it ended with its host.
func TestRestoreRingingAnswered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e2, a, b1, b2, st1, st2, r2 := ringingElsewhere(t, 10*time.Second)
		e2.send(b1, wf{typ: protocol.TypeResponse, act: protocol.ActionStart, sub: st1.Control.SubsessionID, seq: 1,
			corr: st1.Control.CorrelationID, state: protocol.StateFinal, code: 200, p: protocol.CallPayload{SDP: webOffer}})
		if ans := a.expect(t, protocol.TypeResponse, protocol.ActionStart); ans.Header.ResponseCode != 200 || ans.Control.CorrelationID != "c1" || ans.Control.SubsessionID != "c1" {
			t.Fatalf("alice's start answered %s", ans.Marshal())
		}
		if c := b2.expect(t, protocol.TypeMessage, protocol.ActionShutdown); c.Control.CorrelationID != st2.Control.CorrelationID {
			t.Fatalf("the other fork cancelled on %q, want %q", c.Control.CorrelationID, st2.Control.CorrelationID)
		}
		if sn, _, ended := r2.get(); ended || !sn.Answered() || sn.Callee.Sub != st1.Control.SubsessionID {
			t.Fatalf("replicated after the answer: %+v (ended %v)", sn, ended)
		}
		hangUp(e2, b1, st1.Control.SubsessionID, 2)
		a.expect(t, protocol.TypeMessage, protocol.ActionShutdown)
		if _, _, ended := r2.get(); !ended {
			t.Fatal("the end of the restored call was not replicated")
		}
	})
}

// TestRestoreRingingCancelled: a ringing call restored on another
// handler is cancelled by its caller (both forks hear it), or declined
// by a fork (603: the caller hears it, the other fork is cancelled).
func TestRestoreRingingCancelled(t *testing.T) {
	t.Run("caller", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			e2, a, b1, b2, st1, st2, r2 := ringingElsewhere(t, 10*time.Second)
			hangUp(e2, a, "c1", 2)
			for i, b := range []*fakeEP{b1, b2} {
				want := []*protocol.Frame{st1, st2}[i].Control.CorrelationID
				if c := b.expect(t, protocol.TypeMessage, protocol.ActionShutdown); c.Control.CorrelationID != want {
					t.Fatalf("fork %d cancelled on %q, want %q", i, c.Control.CorrelationID, want)
				}
			}
			if _, _, ended := r2.get(); !ended {
				t.Fatal("the end of the restored call was not replicated")
			}
		})
	})
	t.Run("declined", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			e2, a, b1, b2, _, st2, _ := ringingElsewhere(t, 10*time.Second)
			e2.send(b2, wf{typ: protocol.TypeError, act: protocol.ActionStart, sub: st2.Control.SubsessionID, seq: 1,
				corr: st2.Control.CorrelationID, code: protocol.CodeDecline})
			if r := a.expect(t, protocol.TypeError, protocol.ActionStart); r.Header.ErrorCode != protocol.CodeDecline || r.Control.CorrelationID != "c1" {
				t.Fatalf("alice's start got %s", r.Marshal())
			}
			b1.expect(t, protocol.TypeMessage, protocol.ActionShutdown)
		})
	})
}

// TestRestoreRingingTimesOut: a ringing call restored on another
// handler ends unanswered when its first host's ring timer would have
// ended it (not a whole ring time after the restore): the caller gets
// 480 "No answer", the forks are cancelled.
func TestRestoreRingingTimesOut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const ring = 10 * time.Second
		_, a, b1, b2, _, _, r2 := ringingElsewhere(t, ring)
		time.Sleep(ring*4/5 - time.Millisecond)
		a.quiet(t)
		time.Sleep(2 * time.Millisecond)
		if r := a.expect(t, protocol.TypeError, protocol.ActionStart); r.Header.ErrorCode != protocol.CodeTemporarilyUnavail || r.Header.Reason != "No answer" {
			t.Fatalf("alice's start got %s", r.Marshal())
		}
		b1.expect(t, protocol.TypeMessage, protocol.ActionShutdown)
		b2.expect(t, protocol.TypeMessage, protocol.ActionShutdown)
		if _, _, ended := r2.get(); !ended {
			t.Fatal("the end of the restored call was not replicated")
		}
	})
}
