package sipgw

import (
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/emiago/sipgo/sip"
)

func timerConf(expires, minSE time.Duration) SessionTimerConfig {
	return SessionTimerConfig{Expires: expires, MinSE: minSE}.withDefaults()
}

func withHeaders(m interface{ AppendHeader(sip.Header) }, hs ...string) {
	for _, h := range hs {
		k, v, _ := strings.Cut(h, ": ")
		m.AppendHeader(sip.NewHeader(k, v))
	}
}

func TestTimerDue(t *testing.T) {
	for _, tc := range []struct {
		st      sessionTimer
		after   time.Duration
		refresh bool
	}{
		// The refresher refreshes at half the interval (RFC 4028 §7.4, §9).
		{sessionTimer{interval: 90 * time.Second, weRefresh: true}, 45 * time.Second, true},
		{sessionTimer{interval: 1800 * time.Second, weRefresh: true}, 900 * time.Second, true},
		// The other side gives up at the interval less min(32s, interval/3) (§10).
		{sessionTimer{interval: 90 * time.Second}, 60 * time.Second, false},
		{sessionTimer{interval: 1800 * time.Second}, 1768 * time.Second, false},
		{sessionTimer{interval: 96 * time.Second}, 64 * time.Second, false},
		{sessionTimer{interval: 6 * time.Second}, 4 * time.Second, false},
	} {
		after, refresh := timerDue(tc.st)
		if after != tc.after || refresh != tc.refresh {
			t.Errorf("%+v: %v %v, want %v %v", tc.st, after, refresh, tc.after, tc.refresh)
		}
	}
}

// TestUASTimer: how we answer a request's Session-Expires (RFC 4028 §9).
func TestUASTimer(t *testing.T) {
	off := false
	for _, tc := range []struct {
		name    string
		conf    SessionTimerConfig
		headers []string
		st      sessionTimer
		se      string // the 2xx's Session-Expires, "" for none
		require bool   // the 2xx has Require: timer
		tooSmll int
	}{
		{name: "no timer asked, none understood", conf: timerConf(0, 0)},
		{name: "peer supports, leaves it to us", conf: timerConf(0, 0), headers: []string{"Supported: timer"},
			st: sessionTimer{interval: 1800 * time.Second}, se: "1800;refresher=uac", require: true},
		{name: "peer supports, its Min-SE above our expires", conf: timerConf(100*time.Second, 0), headers: []string{"Supported: timer", "Min-SE: 200"},
			st: sessionTimer{interval: 200 * time.Second}, se: "200;refresher=uac", require: true},
		{name: "below our Min-SE", conf: timerConf(0, 0), headers: []string{"Supported: timer", "Session-Expires: 60"}, tooSmll: 90},
		{name: "we are asked to refresh", conf: timerConf(0, 0), headers: []string{"Supported: timer", "Session-Expires: 90;refresher=uas"},
			st: sessionTimer{interval: 90 * time.Second, weRefresh: true}, se: "90;refresher=uas"},
		{name: "peer refreshes", conf: timerConf(0, 0), headers: []string{"Supported: timer", "Session-Expires: 120;refresher=uac"},
			st: sessionTimer{interval: 120 * time.Second}, se: "120;refresher=uac", require: true},
		{name: "compact form", conf: timerConf(0, 0), headers: []string{"k: timer", "x: 120"},
			st: sessionTimer{interval: 120 * time.Second}, se: "120;refresher=uac", require: true},
		{name: "lowered to our expires", conf: timerConf(600*time.Second, 0), headers: []string{"Supported: timer", "Session-Expires: 7200"},
			st: sessionTimer{interval: 600 * time.Second}, se: "600;refresher=uac", require: true},
		{name: "not lowered below the request's Min-SE", conf: timerConf(600*time.Second, 0), headers: []string{"Supported: timer", "Session-Expires: 7200", "Min-SE: 1000"},
			st: sessionTimer{interval: 1000 * time.Second}, se: "1000;refresher=uac", require: true},
		{name: "a proxy's Session-Expires, a UAC without timers: we refresh", conf: timerConf(0, 0), headers: []string{"Session-Expires: 300;refresher=uac"},
			st: sessionTimer{interval: 300 * time.Second, weRefresh: true}, se: "300;refresher=uas"},
		{name: "disabled", conf: SessionTimerConfig{Enabled: &off}.withDefaults(), headers: []string{"Supported: timer", "Session-Expires: 10"}},
		{name: "malformed Session-Expires is none", conf: timerConf(0, 0), headers: []string{"Session-Expires: soon"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := sip.NewRequest(sip.INVITE, sip.Uri{Host: "example.com"})
			withHeaders(req, tc.headers...)
			st, hs, tooSmall := tc.conf.uasTimer(req)
			if st != tc.st || tooSmall != tc.tooSmll {
				t.Fatalf("%+v 422:%d, want %+v 422:%d", st, tooSmall, tc.st, tc.tooSmll)
			}
			res := sip.NewResponse(200, "OK")
			for _, h := range hs {
				res.AppendHeader(h)
			}
			var se string
			if h := res.GetHeader("Session-Expires"); h != nil {
				se = h.Value()
			}
			if se != tc.se || headerHasToken(res, "Require", "timer") != tc.require {
				t.Fatalf("2xx: Session-Expires %q Require %v, want %q %v", se, headerHasToken(res, "Require", "timer"), tc.se, tc.require)
			}
		})
	}
}

// TestUACTimer: what a 2xx to our request sets (§7.2), and what our
// requests ask for (§7.1, §7.4).
func TestUACTimer(t *testing.T) {
	conf := timerConf(0, 0)
	for _, tc := range []struct {
		se string
		st sessionTimer
	}{
		{"", sessionTimer{}},
		{"90;refresher=uac", sessionTimer{interval: 90 * time.Second, weRefresh: true}},
		{"90;refresher=uas", sessionTimer{interval: 90 * time.Second}},
		{"1800", sessionTimer{interval: 1800 * time.Second, weRefresh: true}},
	} {
		res := sip.NewResponse(200, "OK")
		if tc.se != "" {
			withHeaders(res, "Session-Expires: "+tc.se)
		}
		if st := conf.uacTimer(res); st != tc.st {
			t.Errorf("%q: %+v, want %+v", tc.se, st, tc.st)
		}
	}
	for _, tc := range []struct {
		interval  time.Duration
		floor     int
		weRefresh bool
		se, minSE string
	}{
		{0, 0, false, "1800", "90"},
		{90 * time.Second, 0, true, "90;refresher=uac", "90"},
		// A 422's Min-SE raises both (§7.4).
		{0, 3600, false, "3600", "3600"},
		{200 * time.Second, 150, true, "200;refresher=uac", "150"},
	} {
		req := sip.NewRequest(sip.UPDATE, sip.Uri{Host: "example.com"})
		for _, h := range conf.uacHeaders(tc.interval, tc.floor, tc.weRefresh) {
			req.AppendHeader(h)
		}
		if se, m := req.GetHeader("Session-Expires").Value(), req.GetHeader("Min-SE").Value(); se != tc.se || m != tc.minSE {
			t.Errorf("%+v: Session-Expires %q Min-SE %q", tc, se, m)
		}
	}
}

func TestSessionTimerConfig(t *testing.T) {
	for _, tc := range []struct {
		conf SessionTimerConfig
		want string
	}{
		{SessionTimerConfig{}, ""},
		{SessionTimerConfig{Expires: 4 * time.Second, MinSE: 2 * time.Second}, ""},
		{SessionTimerConfig{Expires: 60 * time.Second}, "session_timers.expires"},
		{SessionTimerConfig{MinSE: 1500 * time.Millisecond}, "session_timers.min_se"},
		{SessionTimerConfig{Expires: 1500 * time.Millisecond, MinSE: time.Second}, "session_timers.expires"},
	} {
		var got []string
		tc.conf.validate(func(key, format string, a ...any) { got = append(got, key) })
		if (tc.want == "") != (len(got) == 0) || (tc.want != "" && got[0] != tc.want) {
			t.Errorf("%+v: %v, want %q", tc.conf, got, tc.want)
		}
	}
}

// TestTimerSchedule: the owner goroutine's timer fires at the due time
// and a refresh that arrives re-arms it from then (fake time).
func TestTimerSchedule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := &Call{}
		start := time.Now()
		c.armTimer(sessionTimer{interval: 90 * time.Second})
		// A refresh from the peer after 50s restarts the 60s wait.
		time.Sleep(50 * time.Second)
		c.armTimer(sessionTimer{interval: 90 * time.Second})
		fired := <-c.timerC()
		if got := fired.Sub(start); got != 110*time.Second {
			t.Fatalf("expiry after %v, want 110s", got)
		}
		c.armTimer(sessionTimer{interval: 90 * time.Second, weRefresh: true})
		fired = <-c.timerC()
		if got := fired.Sub(start); got != 155*time.Second {
			t.Fatalf("refresh at %v, want 155s", got)
		}
		c.armTimer(sessionTimer{})
		if c.timerC() != nil {
			t.Fatal("no session timer, yet a channel")
		}
	})
}
