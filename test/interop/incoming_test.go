package interop

import (
	"strings"
	"testing"

	"github.com/jsonrtc/jsonrtc/sipgw"
)

// registered starts a gateway whose incoming calls arrive on the returned
// channel, registered as alice with gateway-held credentials.
func registered(t *testing.T, k *Kamailio) (*sipgw.UserAgent, chan *sipgw.Call) {
	t.Helper()
	calls := make(chan *sipgw.Call, 1)
	g := newGateway(t, k, func(cfg *sipgw.Config) {
		cfg.Credentials = map[string]sipgw.Credential{"alice@" + domain: {Username: "alice", Password: users["alice"]}}
	}, func(c *sipgw.Call) { calls <- c })
	r, err := g.Register(ctxT(t), "alice@"+domain, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Release(ctxT(t)) })
	return g, calls
}

func incoming(t *testing.T, calls chan *sipgw.Call) *sipgw.Call {
	t.Helper()
	select {
	case c := <-calls:
		return c
	case <-ctxT(t).Done():
		t.Fatal("no incoming call")
	}
	return nil
}

func TestIncomingAnswered(t *testing.T) {
	k := startKamailio(t)
	g, calls := registered(t, k)
	uac := startSipp(t, "uac_call.xml", k.Addr)
	c := incoming(t, calls)
	if c.Identity() != "alice@"+domain || !strings.HasPrefix(c.Remote(), "sip:bob@") || c.RemoteDisplayName() != "Bob" {
		t.Fatalf("call %s %s %q", c.Identity(), c.Remote(), c.RemoteDisplayName())
	}
	if !strings.Contains(string(c.Offer()), "m=audio") {
		t.Fatalf("offer %q", c.Offer())
	}
	if err := c.Progress(ctxT(t), 180, nil, false); err != nil {
		t.Fatal(err)
	}
	if err := c.Answer(ctxT(t), []byte(offer)); err != nil {
		t.Fatal(err)
	}
	if err := c.Answer(ctxT(t), []byte(offer)); err == nil {
		t.Fatal("second answer accepted")
	}
	expect(t, c, sipgw.EventConfirmed)
	if ev := ended(t, c); ev.End != sipgw.EndRemoteBye {
		t.Fatalf("end %v %d", ev.End, ev.Code)
	}
	uac.expectSuccess(t)
	assertIdle(t, g)
}

func TestIncomingDeclined(t *testing.T) {
	k := startKamailio(t)
	g, calls := registered(t, k)
	uac := startSipp(t, "uac_declined.xml", k.Addr)
	c := incoming(t, calls)
	if err := c.Reject(ctxT(t), 603, ""); err != nil {
		t.Fatal(err)
	}
	if ev := ended(t, c); ev.End != sipgw.EndRejected || ev.Code != 603 {
		t.Fatalf("end %v %d", ev.End, ev.Code)
	}
	uac.expectSuccess(t)
	assertIdle(t, g)
}
