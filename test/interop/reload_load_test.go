package interop

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/jsonrtc/jsonrtc/client"
	"github.com/jsonrtc/jsonrtc/gateway"
	"github.com/jsonrtc/jsonrtc/routing"
)

// genRules is the header rules of configuration generation gen: X-Call
// carries the client's call tag on the INVITE and the BYE, so that
// SIPp's log can be joined with the calls placed, and X-Gen names the
// generation the call started under.
func genRules(gen int) []routing.HeaderRuleConfig {
	return []routing.HeaderRuleConfig{
		{Header: "X-Call", Value: "{ext:x-call}", Methods: []string{"INVITE", "BYE"}},
		{Header: "X-Gen", Value: "g" + strconv.Itoa(gen), Methods: []string{"INVITE", "BYE"}},
	}
}

// loadCall is one call a client placed: its tag and the reloads done
// before its start.
type loadCall struct {
	tag   string
	after int
}

// A reload under load (docs/routing.md, Reload; issue 16): clients
// place calls to SIPp one after another while the header rules change
// five times. No session is dropped or resumed, no call fails, every
// call's INVITE carries the generation it started under or a later one
// (never one older than the reloads done before its start), its BYE the
// same as its INVITE, and a call held across every reload ends with
// the first generation's header.
func TestReloadUnderLoad(t *testing.T) {
	const clients, perClient, reloads = 3, 8, 5
	k := startKamailio(t)
	total := clients*perClient + 1
	uas := startSipp(t, "uas_answer.xml", "", "-m", strconv.Itoa(total))
	var cfg gateway.Config
	w := startWebGateway(t, k, func(c *gateway.Config) { c.Routing.Headers = genRules(0) },
		func(c *gateway.Config) { cfg = *c })

	// The call held across every reload, on a session of its own.
	holder := w.connect(t, "open@"+domain, nil)
	held, err := holder.StartCall(ctxT(t), uasTarget(uas), offer, ext("x-call", "held"))
	if err != nil {
		t.Fatal(err)
	}
	webAnswered(t, holder)
	webExpect(t, holder, client.CallEstablished)

	var (
		mu    sync.Mutex
		done  int // reloads applied
		calls []loadCall
		wg    sync.WaitGroup
	)
	finished := make(chan struct{}, clients*perClient)
	errs := make(chan error, clients)
	cs := make([]*client.Client, clients)
	for i := range cs {
		cs[i] = w.connect(t, "open@"+domain, nil)
	}
	for i, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range perClient {
				tag := fmt.Sprintf("c%d-%d", i, n)
				mu.Lock()
				calls = append(calls, loadCall{tag: tag, after: done})
				mu.Unlock()
				if err := loadCallOnce(t, c, uasTarget(uas), tag); err != nil {
					errs <- fmt.Errorf("client %d call %s: %w", i, tag, err)
					return
				}
				finished <- struct{}{}
			}
		}()
	}
	// Reload after every few calls end, so that reloads fall between
	// calls of every client and while others are being set up.
	every := clients * perClient / (reloads + 1)
	for r := 1; r <= reloads; r++ {
		for range every {
			select {
			case <-finished:
			case err := <-errs:
				t.Fatal(err)
			}
		}
		cfg.Routing.Headers = genRules(r)
		if restart, err := w.g.Reload(cfg); err != nil || len(restart) > 0 {
			t.Fatalf("reload %d: %v (restart-only sections changed: %v)", r, err, restart)
		}
		mu.Lock()
		done = r
		mu.Unlock()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err := held.Hangup(ctxT(t), ext("x-call", "held")); err != nil {
		t.Fatal(err)
	}
	uas.expectSuccess(t) // every call answered, every BYE answered
	if st := w.g.Stats(); st.Sessions != clients+1 {
		t.Errorf("sessions %d after the reloads, want %d", st.Sessions, clients+1)
	}
	for _, c := range append(cs, holder) {
		drainNoLoss(t, c)
	}

	invites, byes := sippCalls(t, uas)
	check := func(tag string, min, max int) {
		t.Helper()
		inv, bye := invites[tag], byes[tag]
		g, err := strconv.Atoi(strings.TrimPrefix(inv, "g"))
		if err != nil || g < min || g > max {
			t.Errorf("call %s: INVITE X-Gen %q, want g%d..g%d", tag, inv, min, max)
		}
		if bye != inv {
			t.Errorf("call %s: BYE X-Gen %q, INVITE's %q: a call keeps the rules it started with", tag, bye, inv)
		}
	}
	check("held", 0, 0)
	for _, c := range calls {
		check(c.tag, c.after, reloads)
	}
	if len(invites) != total || len(byes) != total {
		t.Errorf("SIPp saw %d INVITEs and %d BYEs, want %d each", len(invites), len(byes), total)
	}
}

// loadCallOnce places a call, waits for its answer and hangs up, failing
// on anything but the call's progress: a lost socket, a resume, a
// failed call.
func loadCallOnce(t *testing.T, c *client.Client, target, tag string) error {
	out, err := c.StartCall(ctxT(t), target, offer, ext("x-call", tag))
	if err != nil {
		return err
	}
	for {
		var ev client.Event
		select {
		case ev = <-c.Events():
		case <-ctxT(t).Done():
			return fmt.Errorf("no answer")
		}
		switch {
		case ev.Kind == client.EventConnected: // the session's first, from Dial
		case ev.Kind == client.EventCall && (ev.CallEvent == client.CallRinging || ev.CallEvent == client.CallEarlyMedia || ev.CallEvent == client.CallAnswered):
		case ev.Kind == client.EventCall && ev.CallEvent == client.CallEstablished:
			return out.Hangup(ctxT(t), ext("x-call", tag))
		default:
			return fmt.Errorf("event %v (call event %v, code %d %s, err %v)", ev.Kind, ev.CallEvent, ev.Code, ev.Reason, ev.Err)
		}
	}
}

// drainNoLoss fails on any event left on c: every call's events were
// read, so anything here is a reconnect or a close.
func drainNoLoss(t *testing.T, c *client.Client) {
	t.Helper()
	for {
		select {
		case ev := <-c.Events():
			t.Errorf("event %v left (err %v): the session was disturbed", ev.Kind, ev.Err)
		default:
			return
		}
	}
}

// sippCalls reads the X-Gen of every INVITE and BYE in SIPp's log, by
// the call's X-Call tag.
func sippCalls(t *testing.T, s *Sipp) (invites, byes map[string]string) {
	t.Helper()
	log, err := readLog(s.Dir, "*messages.log")
	if err != nil {
		t.Fatal(err)
	}
	invites, byes = map[string]string{}, map[string]string{}
	for _, block := range strings.Split(log, "\n\n") {
		block = strings.TrimSpace(block)
		var into map[string]string
		switch {
		case strings.HasPrefix(block, "INVITE sip:"):
			into = invites
		case strings.HasPrefix(block, "BYE sip:"):
			into = byes
		default:
			continue
		}
		var tag, gen string
		for _, line := range strings.Split(block, "\n") {
			name, value, _ := strings.Cut(line, ":")
			switch strings.ToLower(strings.TrimSpace(name)) {
			case "x-call":
				tag = strings.TrimSpace(value)
			case "x-gen":
				gen = strings.TrimSpace(value)
			}
		}
		if _, dup := into[tag]; dup || tag == "" {
			t.Errorf("request without a tag or twice:\n%s", block)
		}
		into[tag] = gen
	}
	return invites, byes
}
