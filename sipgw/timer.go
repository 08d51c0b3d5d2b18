package sipgw

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Session timers (RFC 4028): a dialog is refreshed by a re-INVITE or an
// UPDATE every Session-Expires, by the side the negotiation names the
// refresher; a dialog nobody refreshes is over (§10), so that a peer that
// vanished without a BYE does not hold a call forever. The negotiation
// is in pure functions (uasTimer, uacTimer, timerDue), the schedule in
// the call's owner goroutine (Call.loop: armTimer, onTimer).

// SessionTimerConfig is sip.session_timers.
type SessionTimerConfig struct {
	// Enabled offers and honours session timers. Default true.
	Enabled *bool `yaml:"enabled"`
	// Expires is the Session-Expires we ask for, and the most we accept
	// from a peer. Default 1800s (RFC 4028 §4 recommends 30 minutes).
	Expires time.Duration `yaml:"expires"`
	// MinSE is the shortest Session-Expires we accept: a shorter one is
	// answered 422 with this Min-SE. Default 90s, the floor RFC 4028 §4
	// sets for every peer (tests set less).
	MinSE time.Duration `yaml:"min_se"`
}

func (c SessionTimerConfig) withDefaults() SessionTimerConfig {
	if c.Enabled == nil {
		on := true
		c.Enabled = &on
	}
	if c.Expires == 0 {
		c.Expires = 1800 * time.Second
	}
	if c.MinSE == 0 {
		c.MinSE = 90 * time.Second
	}
	return c
}

func (c SessionTimerConfig) validate(bad func(key, format string, a ...any)) {
	c = c.withDefaults()
	if c.MinSE < time.Second || c.MinSE%time.Second != 0 {
		bad("session_timers.min_se", "%v is not a whole number of seconds, at least 1s", c.MinSE)
	}
	if c.Expires%time.Second != 0 {
		bad("session_timers.expires", "%v is not a whole number of seconds", c.Expires)
	}
	if c.Expires < c.MinSE {
		bad("session_timers.expires", "%v is below min_se %v", c.Expires, c.MinSE)
	}
}

// sessionTimer is a negotiated session timer; the zero value is none.
type sessionTimer struct {
	interval  time.Duration // Session-Expires
	weRefresh bool          // we are the refresher
}

// refreshMargin is how long before the expiry the side that is not the
// refresher gives up: RFC 4028 §10, the smaller of 32 seconds and a third
// of the interval.
func refreshMargin(interval time.Duration) time.Duration {
	return min(32*time.Second, interval/3)
}

// timerDue says when, from the last refresh, the timer of st fires, and
// whether we then refresh (at half the interval, §7.4 and §9) or end the
// session (the interval less the margin of §10).
func timerDue(st sessionTimer) (after time.Duration, refresh bool) {
	if st.weRefresh {
		return st.interval / 2, true
	}
	return st.interval - refreshMargin(st.interval), false
}

// deltaHeader reads a Session-Expires or Min-SE: delta-seconds, then
// parameters; ok is false when absent or malformed.
func deltaHeader(m interface{ GetHeader(string) sip.Header }, names ...string) (secs int, params string, ok bool) {
	for _, n := range names {
		h := m.GetHeader(n)
		if h == nil {
			continue
		}
		v, p, _ := strings.Cut(h.Value(), ";")
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n <= 0 {
			return 0, "", false
		}
		return n, p, true
	}
	return 0, "", false
}

func sessionExpires(m interface{ GetHeader(string) sip.Header }) (secs int, refresher string, ok bool) {
	secs, params, ok := deltaHeader(m, "Session-Expires", "x")
	for p := range strings.SplitSeq(params, ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
		if strings.EqualFold(strings.TrimSpace(k), "refresher") {
			refresher = strings.ToLower(strings.TrimSpace(v))
		}
	}
	if refresher != "uac" && refresher != "uas" {
		refresher = ""
	}
	return secs, refresher, ok
}

func minSE(m interface{ GetHeader(string) sip.Header }) int {
	n, _, _ := deltaHeader(m, "Min-SE")
	return n
}

func secs(d time.Duration) int { return int(d / time.Second) }

// uasTimer is the session timer of our 2xx to req (an INVITE, re-INVITE
// or UPDATE), RFC 4028 §9. tooSmall > 0: answer 422 with Min-SE
// tooSmall instead. hs are the headers of the 2xx.
func (c SessionTimerConfig) uasTimer(req *sip.Request) (st sessionTimer, hs []sip.Header, tooSmall int) {
	if !*c.Enabled {
		return st, nil, 0
	}
	peerTimer := headerHasToken(req, "Supported", "timer") || headerHasToken(req, "k", "timer") || headerHasToken(req, "Require", "timer")
	se, refresher, has := sessionExpires(req)
	ours := secs(c.MinSE)
	switch {
	case has && se < ours:
		return st, nil, ours
	case has:
		// §9: we may lower it, never below either Min-SE.
		se = min(se, max(secs(c.Expires), minSE(req), ours))
	case peerTimer:
		se = max(secs(c.Expires), minSE(req))
	default:
		return st, nil, 0 // no timer asked for, none understood
	}
	if refresher == "" || !peerTimer {
		// §9: a UAC that does not support timers cannot refresh; one
		// that does and left us the choice keeps the work.
		refresher = "uas"
		if peerTimer {
			refresher = "uac"
		}
	}
	st = sessionTimer{interval: time.Duration(se) * time.Second, weRefresh: refresher == "uas"}
	hs = []sip.Header{sip.NewHeader("Session-Expires", strconv.Itoa(se)+";refresher="+refresher)}
	if refresher == "uac" {
		hs = append(hs, sip.NewHeader("Require", "timer"))
	}
	return st, hs, 0
}

// uacHeaders are the session timer headers of a request we send (§7.1,
// §7.4): interval 0 asks for Expires; refresher names us when we refresh.
func (c SessionTimerConfig) uacHeaders(interval time.Duration, floor int, weRefresh bool) []sip.Header {
	if !*c.Enabled {
		return nil
	}
	if interval == 0 {
		interval = c.Expires
	}
	m := max(secs(c.MinSE), floor)
	se := strconv.Itoa(max(secs(interval), m))
	if weRefresh {
		se += ";refresher=uac"
	}
	return []sip.Header{sip.NewHeader("Session-Expires", se), sip.NewHeader("Min-SE", strconv.Itoa(m))}
}

// uacTimer is the session timer a 2xx to our request sets (§7.2): none
// when the 2xx has no Session-Expires (the peer does not do timers).
func (c SessionTimerConfig) uacTimer(res *sip.Response) sessionTimer {
	if !*c.Enabled {
		return sessionTimer{}
	}
	se, refresher, ok := sessionExpires(res)
	if !ok {
		return sessionTimer{}
	}
	return sessionTimer{interval: time.Duration(se) * time.Second, weRefresh: refresher != "uas"}
}

// refuseShortTimer answers req 422 with our Min-SE when its
// Session-Expires is below it (§8.1, §9), and says so.
func (g *UserAgent) refuseShortTimer(req *sip.Request, tx sip.ServerTransaction) bool {
	_, _, tooSmall := g.cfg.SessionTimers.uasTimer(req)
	if tooSmall == 0 {
		return false
	}
	res := sip.NewResponseFromRequest(req, 422, "Session Interval Too Small", nil)
	res.AppendHeader(sip.NewHeader("Min-SE", strconv.Itoa(tooSmall)))
	_ = tx.Respond(res)
	return true
}

// timerAnswer puts on res, our 2xx to req, Supported and the session
// timer it settles, which it returns: every 2xx to an INVITE, re-INVITE
// or UPDATE (re)starts the timer (RFC 4028 §9).
func (c *Call) timerAnswer(req *sip.Request, res *sip.Response) sessionTimer {
	trickle := c.trickles()
	if trickle {
		advertiseTrickle(res)
	}
	c.g.setSupported(res, true, trickle)
	st, hs, _ := c.g.cfg.SessionTimers.uasTimer(req)
	for _, h := range hs {
		res.AppendHeader(h)
	}
	return st
}

// armTimer (re)starts the session timer from now. Owner goroutine only.
func (c *Call) armTimer(st sessionTimer) {
	if c.stTimer != nil {
		c.stTimer.Stop()
		c.stTimer = nil
	}
	c.st = st
	c.mu.Lock()
	c.stSnap = st
	c.mu.Unlock()
	c.changed()
	if st.interval <= 0 {
		return
	}
	after, _ := timerDue(st)
	c.stTimer = time.NewTimer(after)
}

// timerC is the session timer's channel, nil when none is armed.
func (c *Call) timerC() <-chan time.Time {
	if c.stTimer == nil {
		return nil
	}
	return c.stTimer.C
}

func (c *Call) stopTimer() {
	if c.stTimer != nil {
		c.stTimer.Stop()
		c.stTimer = nil
	}
}

// onTimer runs on the owner goroutine when the session timer fires.
func (c *Call) onTimer() {
	c.stTimer = nil
	if _, refresh := timerDue(c.st); !refresh {
		// §10: no refresh came in time.
		c.g.log.Debug("sipgw: session expired", "call", c.id)
		c.endSession(408, "Session expired")
		return
	}
	st := c.st
	c.g.wg.Go(func() {
		ctx, cancel := context.WithTimeout(c.life, st.interval/2)
		defer cancel()
		next, err := c.refresh(ctx, st)
		c.deliver(func() {
			if err != nil {
				code := ResponseCode(err)
				c.g.log.Debug("sipgw: session refresh failed", "call", c.id, "code", code, "err", err)
				c.endSession(code, fmt.Sprintf("Session refresh failed: %d", code))
				return
			}
			c.armTimer(next)
		})
	})
}

// endSession sends BYE (RFC 4028 §10) and ends the call with
// EndSessionExpired. Owner goroutine only.
func (c *Call) endSession(code int, reason string) {
	ctx, cancel := context.WithTimeout(c.life, sip.Timer_F)
	defer cancel()
	if err := c.bye(ctx, nil); err != nil {
		c.g.log.Debug("sipgw: BYE after session expiry failed", "call", c.id, "err", err)
	}
	c.endForced = &Event{End: EndSessionExpired, Code: code, Reason: reason}
}

// refresh sends one session refresh (§7.4): UPDATE without a body when
// the peer allows UPDATE, else a re-INVITE with our current SDP, which
// is no new offer: the web side hears nothing of it. A 422 is retried
// once with the larger Min-SE, an UPDATE refused as unknown becomes a
// re-INVITE, a glare (491) is retried after RFC 3261 14.1's wait.
func (c *Call) refresh(ctx context.Context, st sessionTimer) (sessionTimer, error) {
	useUpdate := c.peerAllows(sip.UPDATE)
	floor, retried422, retried491 := 0, false, false
	for {
		c.mu.Lock()
		confirmed, sdp := c.state == stateConfirmed, c.localSDP
		c.mu.Unlock()
		if !confirmed {
			return st, nil // not ours to refresh yet: the next tick
		}
		method := sip.INVITE
		if useUpdate {
			method = sip.UPDATE
		}
		hs := c.g.cfg.SessionTimers.uacHeaders(st.interval, floor, true)
		var res *sip.Response
		var err error
		if method == sip.UPDATE {
			res, err = c.update(ctx, hs)
		} else {
			res, err = c.reinvite(ctx, sdp, hs)
		}
		if err != nil {
			return st, err
		}
		switch {
		case res.IsSuccess():
			next := c.g.cfg.SessionTimers.uacTimer(res)
			if next.interval == 0 {
				// A 2xx without Session-Expires: the peer took the
				// refresh but no longer keeps a timer; we still refresh.
				next = st
			}
			return next, nil
		case res.StatusCode == 422 && !retried422:
			retried422, floor = true, minSE(res)
		case (res.StatusCode == 405 || res.StatusCode == 501) && useUpdate:
			useUpdate = false
		case res.StatusCode == 491 && !retried491:
			retried491 = true
			t := time.NewTimer(2*time.Second + rand.N(2*time.Second))
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return st, ctx.Err()
			}
		default:
			return st, &ResponseError{Code: res.StatusCode, Reason: res.Reason}
		}
	}
}

// peerAllows: the peer's Allow (its INVITE, or its 2xx to ours) lists m.
func (c *Call) peerAllows(m sip.RequestMethod) bool {
	if c.uac != nil {
		return c.uac.InviteResponse != nil && headerHasToken(c.uac.InviteResponse, "Allow", string(m))
	}
	return headerHasToken(c.uas.InviteRequest, "Allow", string(m))
}
