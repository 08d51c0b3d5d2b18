package sipgw

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// SIP outbound (RFC 5626) on the registrar's flow. With sip.outbound on,
// each REGISTER carries reg-id=1 next to the identity's +sip.instance
// (section 4.2) and Supported: outbound; when the registrar's 200 says
// Require: outbound, the registration keeps its flow alive with CRLF
// keepalives (section 4.4.1) and, when a pong does not come, takes the
// flow for dead and registers again at once over a new connection, with
// the backoff of section 4.5 while that fails.
//
// Only connection-oriented flows (tcp, tls) are kept alive: the STUN
// keepalive of UDP (section 4.4.2) is not implemented (docs/protocol.md
// §10.1 says why), so sip.outbound cannot be on with transport udp.

// regID is the reg-id of every binding: one flow per registration.
const regID = "1"

// pongTimeout is how long a CRLF ping waits for its pong before the flow
// is taken for dead (RFC 5626 section 4.4.1: 10 seconds).
const pongTimeout = 10 * time.Second

// Flow recovery backoff (RFC 5626 section 4.5): base-time when all flows
// failed (the gateway has one per registration) and max-time.
const (
	recoveryBase = 30 * time.Second
	recoveryMax  = 1800 * time.Second
)

// Outbound modes of Config.Outbound.
const (
	OutboundAuto = "auto"
	OutboundOn   = "on"
	OutboundOff  = "off"
)

// outboundOn says whether registrations use SIP outbound under c (with
// its defaults applied).
func (c Config) outboundOn() bool {
	switch c.Outbound {
	case OutboundOn:
		return true
	case OutboundAuto:
		return c.Transport == "tcp" || c.Transport == "tls"
	}
	return false
}

// parseFlowTimer reads the registrar's Flow-Timer (RFC 5626 section 11.3):
// the seconds within which the server wants a keepalive. ok is false
// when the header is absent or not a positive number of seconds.
func parseFlowTimer(res *sip.Response) (d time.Duration, ok bool) {
	h := res.GetHeader("Flow-Timer")
	if h == nil {
		return 0, false
	}
	n, err := strconv.Atoi(strings.TrimSpace(h.Value()))
	if err != nil || n <= 0 || n > 86400 {
		return 0, false
	}
	return time.Duration(n) * time.Second, true
}

// requiresOutbound reports whether res carries the option tag outbound in
// Require: the registrar applied RFC 5626 to the binding (section 6).
func requiresOutbound(res *sip.Response) bool {
	for _, h := range res.GetHeaders("Require") {
		for tag := range strings.SplitSeq(h.Value(), ",") {
			if strings.EqualFold(strings.TrimSpace(tag), "outbound") {
				return true
			}
		}
	}
	return false
}

// keepaliveInterval is the wait before the next CRLF ping (RFC 5626
// section 4.4.1): with a Flow-Timer, uniformly between 80% and 100% of
// it; without one, fixed (sip.keepalive_interval) when set, else
// uniformly between 95 and 120 seconds. The jitter keeps many bindings
// from pinging in step. r returns a number in [0, 1).
func keepaliveInterval(flowTimer, fixed time.Duration, r func() float64) time.Duration {
	switch {
	case flowTimer > 0:
		return flowTimer*4/5 + time.Duration(r()*float64(flowTimer/5))
	case fixed > 0:
		return fixed
	}
	return 95*time.Second + time.Duration(r()*float64(25*time.Second))
}

// recoveryWait is the wait before flow recovery attempt n+1 after n
// consecutive failures (RFC 5626 section 4.5): min(max-time, base-time *
// 2^n), times a random factor between 50% and 100%.
func recoveryWait(failures int, r func() float64) time.Duration {
	w := recoveryMax
	if failures < 16 {
		w = min(recoveryMax, recoveryBase<<failures)
	}
	return w/2 + time.Duration(r()*float64(w/2))
}

// flowKey names a connection as sipgo's transports name their reads:
// the network and the remote address.
func flowKey(network, raddr string) string {
	return strings.ToLower(network) + " " + raddr
}

// pongs wakes the pings waiting on a flow when its CRLF pong arrives.
// Its filter sees every read of sipgo's transports before they parse it.
type pongs struct {
	mu      sync.Mutex
	waiting map[string]chan struct{} // by flowKey; closed on the next pong
}

// next returns a channel closed by the next pong on the flow key; the
// pings of the registrations sharing a flow share it.
func (p *pongs) next(key string) <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.waiting == nil {
		p.waiting = map[string]chan struct{}{}
	}
	ch := p.waiting[key]
	if ch == nil {
		ch = make(chan struct{})
		p.waiting[key] = ch
	}
	return ch
}

// filter is sipgo's read filter: a read of one bare CRLF on a stream is
// a pong (RFC 5626 section 3.5.1; sipgo drops it after the filter). The
// data always goes on unchanged.
func (p *pongs) filter(info sip.TransportReadProps, data []byte) ([]byte, error) {
	if string(data) != "\r\n" || info.RemoteAddr == nil {
		return data, nil
	}
	key := flowKey(info.Transport, info.RemoteAddr.String())
	p.mu.Lock()
	ch := p.waiting[key]
	delete(p.waiting, key)
	p.mu.Unlock()
	if ch != nil {
		close(ch)
	}
	return data, nil
}

// errFlowDead: a ping went unanswered, or the flow's connection is gone.
var errFlowDead = errors.New("sipgw: outbound flow dead")

// flow is the connection a registration's last accepted REGISTER came
// back on: its network, remote address and sipgo connection.
type flow struct {
	network, raddr string
	conn           sip.Connection
}

// ping sends a CRLF keepalive on f's connection and waits for its pong.
// A connection that is gone or replaced (another registration on the same
// flow found it dead and recovered on a new one: the registrar still ties
// this binding to the old one), a failed write or a missing pong is
// errFlowDead; a dead connection is closed, so that the REGISTER that
// recovers the flow dials a new one.
func (g *UserAgent) ping(ctx context.Context, f flow) error {
	pool := g.ua.TransportLayer().Pool(f.network)
	if pool == nil {
		return fmt.Errorf("%w: no %s transport", errFlowDead, f.network)
	}
	c := pool.Get(f.raddr)
	if c == nil {
		return fmt.Errorf("%w: no %s connection to %s", errFlowDead, f.network, f.raddr)
	}
	w, ok := c.(io.Writer)
	if c != f.conn || !ok {
		_, _ = c.TryClose()
		return fmt.Errorf("%w: the %s connection to %s was replaced", errFlowDead, f.network, f.raddr)
	}
	err := pingFlow(ctx, w, g.pongs.next(flowKey(f.network, f.raddr)))
	if err != nil && ctx.Err() == nil {
		// Closing drops every reference, ours (Get) included.
		_ = pool.CloseAndDelete(c, f.raddr)
		return fmt.Errorf("%w (%s %s)", err, f.network, f.raddr)
	}
	_, _ = c.TryClose()
	return err
}

// pingFlow writes a CRLF ping (a double CRLF) to w and waits up to
// pongTimeout for pong to close: errFlowDead when the write fails or no
// pong comes in time.
func pingFlow(ctx context.Context, w io.Writer, pong <-chan struct{}) error {
	if _, err := w.Write([]byte("\r\n\r\n")); err != nil {
		return fmt.Errorf("%w: %w", errFlowDead, err)
	}
	t := time.NewTimer(pongTimeout)
	defer t.Stop()
	select {
	case <-pong:
		return nil
	case <-t.C:
		return fmt.Errorf("%w: no pong within %v", errFlowDead, pongTimeout)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// noteFlow records the flow a REGISTER's 200 came on, and whether the
// registrar took it as an outbound flow (Require: outbound, with its
// Flow-Timer if any).
func (r *registration) noteFlow(res *sip.Response) {
	ft, _ := parseFlowTimer(res)
	f := flow{network: strings.ToLower(res.Transport()), raddr: res.Source()}
	on := r.g.outbound && requiresOutbound(res) && (f.network == "tcp" || f.network == "tls")
	if on {
		if pool := r.g.ua.TransportLayer().Pool(f.network); pool != nil {
			if f.conn = pool.Get(f.raddr); f.conn != nil {
				_, _ = f.conn.TryClose()
			}
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.flow, r.outbound, r.flowTimer, r.okAt = f, on, ft, time.Now()
}

// keepaliveIn is the wait before the next ping of the registration's
// flow, and the flow; 0 when the flow is not kept alive.
func (r *registration) keepaliveIn() (time.Duration, flow) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.outbound {
		return 0, flow{}
	}
	return keepaliveInterval(r.flowTimer, r.g.cfg.KeepaliveInterval, rand.Float64), r.flow
}

// recoverFlow registers again after the flow died (RFC 5626 section
// 4.4.1): at once, then, while that fails, after the waits of section
// 4.5, as long as the binding the registrar holds lasts; past it, or
// when the registrar refuses, the registration is lost. It reports
// whether the registration goes on (false also when it is stopped: ctx
// ends).
func (r *registration) recoverFlow(ctx context.Context) bool {
	r.mu.Lock()
	expiresAt := r.okAt.Add(r.granted)
	r.mu.Unlock()
	for failures := 0; ; failures++ {
		tctx, cancel := context.WithTimeout(ctx, sip.Timer_F)
		granted, err := r.send(tctx, r.g.cfg.RegisterExpiry, nil)
		cancel()
		if err == nil {
			r.mu.Lock()
			r.granted = granted
			r.flowStats.Recovered++
			r.mu.Unlock()
			r.g.rlog.Info("outbound recovered", "sipgw: outbound flow recovered", "identity", r.identity, "attempts", failures+1)
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		var re *ResponseError
		var ce *ChallengeError
		if errors.As(err, &ce) || errors.Is(err, ErrCredentialsRejected) || (errors.As(err, &re) && re.Code < 500) {
			// The registrar answered and refused: waiting changes nothing.
			r.lose(err)
			return false
		}
		wait := recoveryWait(failures, rand.Float64)
		if time.Now().Add(wait).After(expiresAt) {
			r.lose(err)
			return false
		}
		r.g.rlog.Info("outbound recovery failed", "sipgw: outbound flow recovery failed, retrying", "identity", r.identity, "in", wait, "err", err)
		if !r.sleep(wait) {
			return false
		}
	}
}

// Outbound reports whether the registration's flow is an RFC 5626
// outbound flow, kept alive by the gateway: sip.outbound was on and the
// registrar's 200 said Require: outbound.
func (h *Registration) Outbound() bool {
	h.r.mu.Lock()
	defer h.r.mu.Unlock()
	return h.r.outbound
}

// FlowStats counts what happened on an outbound registration's flow.
type FlowStats struct {
	Answered  int // keepalives that got their pong
	Failed    int // flows taken for dead (no pong, or the connection gone)
	Recovered int // of those, the ones re-registered on a new flow
}

// FlowStats counts the keepalives and recoveries of the registration.
func (h *Registration) FlowStats() FlowStats {
	h.r.mu.Lock()
	defer h.r.mu.Unlock()
	return h.r.flowStats
}

// FlowTimer is the registrar's Flow-Timer for the registration's flow, 0
// when it sent none.
func (h *Registration) FlowTimer() time.Duration {
	h.r.mu.Lock()
	defer h.r.mu.Unlock()
	return h.r.flowTimer
}
