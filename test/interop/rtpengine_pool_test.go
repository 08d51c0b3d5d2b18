package interop

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/client"
	"github.com/jsonrtc/jsonrtc/gateway"
	"github.com/jsonrtc/jsonrtc/internal/testenv"
	"github.com/jsonrtc/jsonrtc/media/rtpengine"
)

// TestRTPEnginePool: a gateway with a pool of two real rtpengines.
// Two calls go one to each; the one holding the second is killed
// (SIGKILL) once the pool queried its call's figures; at its second
// failed ping (media.lost_after) the call it held ends on both sides
// with "media relay lost" (the browser's shutdown reason, with the last
// query's figures of both legs as of before the kill, and the BYE's
// Reason header, which the SIPp phone checks),
// within a few pings, and without a delete sent to the dead instance; a
// third call goes to the survivor, and the first call, on the survivor,
// goes on and ends cleanly there.
func TestRTPEnginePool(t *testing.T) {
	e1, addr1, p1 := startRTPEngineProc(t, 40)
	e2, addr2, p2 := startRTPEngineProc(t, 40)
	k := startKamailio(t)
	w := startWebGateway(t, k, func(c *gateway.Config) {
		c.Media = rtpengine.Config{RTPEngine: []string{addr1, addr2}, Policy: rtpengine.PolicyAuto,
			Timeout: time.Second, Retransmit: 200 * time.Millisecond, PingInterval: 100 * time.Millisecond,
			FiguresInterval: 200 * time.Millisecond}
	})
	engines := map[string]*rtpengine.Client{addr1: e1, addr2: e2}
	procs := map[string]*proc{addr1: p1, addr2: p2}
	dead := ""
	// dial makes an anchored call to a fresh SIPp UAS and returns the
	// caller, its call, the UAS, and the instance that holds the call.
	dial := func(scenario string) (*client.Client, *client.Call, *Sipp, string) {
		t.Helper()
		uas := startSipp(t, scenario, "")
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
	_, c1, uas1, on1 := dial("uas_answer.xml")
	a2, _, uas2, on2 := dial("uas_answer_lost.xml")
	if on1 == on2 {
		t.Fatalf("both calls on %s: the pool puts a new call on the least busy", on1)
	}
	dead = on2
	// The pool's periodic query (media.figures_interval) has asked the
	// instance for the call's figures: what the call's end will carry.
	// Its log shows the command (its statistics lag by seconds).
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(procs[dead].out.String(), "Received command 'query'"); {
		if time.Now().After(deadline) {
			t.Fatal("no query of the call's figures within 20s")
		}
		<-time.After(50 * time.Millisecond)
	}
	if err := procs[dead].cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	<-procs[dead].done

	// Two pings, each given up after media.timeout (1s), find it lost:
	// its call ends on both sides with the reason.
	ev := webExpect(t, a2, client.CallEnded)
	if ev.Reason != "media relay lost" {
		t.Fatalf("the lost call ended with %q", ev.Reason)
	}
	// Its shutdown carries the last query's figures, as of then (before
	// the kill): rtpengine is gone with its counters (docs/protocol.md
	// §5.8).
	if len(ev.Media) != 2 || ev.Media[0].Side != "web" || ev.Media[1].Side != "sip" {
		t.Fatalf("the lost call's shutdown media %+v, want the web and sip legs' figures", ev.Media)
	}
	for _, m := range ev.Media {
		at, err := time.Parse(time.RFC3339Nano, m.AsOf)
		if err != nil || at.After(killed) || killed.Sub(at) > 10*time.Second {
			t.Fatalf("%s leg's figures as of %q (%v), want a time before the kill at %s", m.Side, m.AsOf, err, killed.UTC().Format(time.RFC3339Nano))
		}
	}
	t.Logf("the call on the killed instance ended %v after the kill", time.Since(killed).Round(time.Millisecond))
	if d := time.Since(killed); d > 5*time.Second {
		t.Errorf("the lost call ended %v after the kill, want within 5s (two pings of 1s)", d)
	}
	uas2.expectSuccess(t)
	if got := w.metric(t, `jsonrtc_rtpengine_calls_lost_total{instance="`+dead+`"}`); got != "1" {
		t.Errorf("calls lost on the killed instance = %s, want 1", got)
	}

	// Its pings (every 100ms, each given up after 1s) find it down.
	for deadline := time.Now().Add(10 * time.Second); w.metric(t, `jsonrtc_rtpengine_up{instance="`+dead+`"}`) != "0"; {
		if time.Now().After(deadline) {
			t.Fatal("the killed instance is still up in the metrics")
		}
		<-time.After(50 * time.Millisecond)
	}
	_, c3, uas3, on3 := dial("uas_answer.xml")
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
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := w.g.WaitIdle(ctx); err != nil {
		t.Fatalf("calls left: %+v", w.g.Stats())
	}
	// The lost call's delete waits for the dead instance to answer
	// again: no command failed.
	if got := w.metric(t, "jsonrtc_call_media_failed_total"); got != "0" {
		t.Errorf("media commands failed: %s, want 0", got)
	}
	if got := w.metric(t, `jsonrtc_rtpengine_calls{instance="`+on1+`"}`); got != "0" {
		t.Errorf("survivor calls after the hang-ups = %s", got)
	}
}

// TestRTPEngineRestart: the rtpengine holding a call restarts (SIGKILL,
// then started again on the same ports, as a supervisor would) faster
// than media.lost_after failed pings: pings alone cannot show it, yet
// the call's media is gone. Its uptime shows the restart; the call,
// which the new process does not know, ends on both sides with "media
// relay lost" (the SIPp phone checks the BYE's Reason).
func TestRTPEngineRestart(t *testing.T) {
	const ports = 40
	ng, media := testenv.Port(t), testenv.Ports(t, ports)
	eng, p := startRTPEngineOn(t, ng, media, ports)
	addr := "127.0.0.1:" + strconv.Itoa(ng)
	k := startKamailio(t)
	w := startWebGateway(t, k, func(c *gateway.Config) {
		c.Media = rtpengine.Config{RTPEngine: []string{addr}, Policy: rtpengine.PolicyAuto,
			Timeout: time.Second, Retransmit: 200 * time.Millisecond, PingInterval: 100 * time.Millisecond,
			LostAfter: 1000}
	})
	a, uas := webCallAnchored(t, w, eng, "uas_answer_lost.xml")
	// The pool reads uptime in whole seconds: a restart shows once the
	// first process has run past the pool's slack.
	for {
		up, err := eng.Uptime(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if up >= 3*time.Second {
			break
		}
		<-time.After(200 * time.Millisecond)
	}
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-p.done
	restarted := time.Now()
	eng2, _ := startRTPEngineOn(t, ng, media, ports)
	if ev := webExpect(t, a, client.CallEnded); ev.Reason != "media relay lost" {
		t.Fatalf("the call ended with %q", ev.Reason)
	}
	t.Logf("the call ended %v after the restart began", time.Since(restarted).Round(time.Millisecond))
	uas.expectSuccess(t)
	if got := w.metric(t, `jsonrtc_rtpengine_calls_lost_total{instance="`+addr+`"}`); got != "1" {
		t.Errorf("calls lost = %s, want 1", got)
	}
	if ids := liveCalls(t, eng2); len(ids) != 0 {
		t.Errorf("the restarted rtpengine holds %v", ids)
	}
}
