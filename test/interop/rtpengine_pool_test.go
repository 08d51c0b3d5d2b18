package interop

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/client"
	"github.com/jsonrtc/jsonrtc/gateway"
	"github.com/jsonrtc/jsonrtc/media/rtpengine"
)

// TestRTPEnginePool: a gateway with a pool of two real rtpengines.
// Two calls go one to each; the one holding the second is killed; a
// third call, once the pings found it down, goes to the survivor,
// and the first call, on the survivor, goes on
// and ends cleanly there; the killed instance shows down in the metrics,
// and the call it held still hangs up (its delete unanswered).
func TestRTPEnginePool(t *testing.T) {
	e1, addr1, p1 := startRTPEngineProc(t, 40)
	e2, addr2, p2 := startRTPEngineProc(t, 40)
	k := startKamailio(t)
	w := startWebGateway(t, k, func(c *gateway.Config) {
		c.Media = rtpengine.Config{RTPEngine: []string{addr1, addr2}, Policy: rtpengine.PolicyAuto,
			Timeout: time.Second, Retransmit: 200 * time.Millisecond, PingInterval: 100 * time.Millisecond}
	})
	engines := map[string]*rtpengine.Client{addr1: e1, addr2: e2}
	procs := map[string]*proc{addr1: p1, addr2: p2}
	dead := ""
	// dial makes an anchored call to a fresh SIPp UAS and returns the
	// caller, its call, the UAS, and the instance that holds the call.
	dial := func() (*client.Client, *client.Call, *Sipp, string) {
		t.Helper()
		uas := startSipp(t, "uas_answer.xml", "")
		a := w.connect(t, "open@"+domain, nil)
		before := map[string][]string{}
		for addr, e := range engines {
			if addr != dead {
				before[addr] = liveCalls(t, e)
			}
		}
		out, err := a.StartCall(ctxT(t), uasTarget(uas), chromeSDP(t, "chrome_offer.sdp"))
		if err != nil {
			t.Fatal(err)
		}
		webAnswered(t, a)
		webExpect(t, a, client.CallEstablished)
		for addr := range before {
			if ids := liveCalls(t, engines[addr]); len(ids) == len(before[addr])+1 {
				return a, out, uas, addr
			}
		}
		t.Fatal("no rtpengine took the call")
		return nil, nil, nil, ""
	}
	_, c1, uas1, on1 := dial()
	_, c2, uas2, on2 := dial()
	if on1 == on2 {
		t.Fatalf("both calls on %s: the pool puts a new call on the least busy", on1)
	}
	dead = on2
	if err := procs[dead].cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-procs[dead].done

	// Its pings (every 100ms, each given up after 1s) find it down.
	for deadline := time.Now().Add(10 * time.Second); w.metric(t, `jsonrtc_rtpengine_up{instance="`+dead+`"}`) != "0"; {
		if time.Now().After(deadline) {
			t.Fatal("the killed instance is still up in the metrics")
		}
		<-time.After(50 * time.Millisecond)
	}
	_, c3, uas3, on3 := dial()
	if on3 != on1 {
		t.Fatalf("third call on %s, want the survivor %s", on3, on1)
	}
	if got := w.metric(t, `jsonrtc_rtpengine_calls{instance="`+on1+`"}`); got != "2" {
		t.Errorf("survivor calls = %s, want 2", got)
	}
	// The first call, on the survivor, is unaffected: its media is still
	// there, and its hang-up deletes it there.
	ids := liveCalls(t, engines[on1])
	if len(ids) != 2 {
		t.Fatalf("survivor holds %v, want two calls", ids)
	}
	for _, hang := range []struct {
		c *client.Call
		u *Sipp
	}{{c1, uas1}, {c3, uas3}} {
		if err := hang.c.Hangup(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		hang.u.expectSuccess(t)
	}
	left := liveCalls(t, engines[on1])
	if slices.ContainsFunc(ids, func(id string) bool { return slices.Contains(left, id) }) {
		t.Fatalf("survivor still holds %v after the hang-ups", left)
	}
	// The call on the killed instance ends too: its delete goes
	// unanswered (counted), the SIP side hangs up all the same.
	if err := c2.Hangup(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	uas2.expectSuccess(t)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := w.g.WaitIdle(ctx); err != nil {
		t.Fatalf("calls left: %+v", w.g.Stats())
	}
	if got := w.metric(t, "jsonrtc_call_media_failed_total"); got != "1" {
		t.Errorf("media commands failed: %s, want 1 (the killed instance's delete)", got)
	}
	if got := w.metric(t, `jsonrtc_rtpengine_calls{instance="`+on1+`"}`); got != "0" {
		t.Errorf("survivor calls after the hang-ups = %s", got)
	}
}
