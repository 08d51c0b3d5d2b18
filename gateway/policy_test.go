package gateway

import (
	"strings"

	"github.com/coder/websocket"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/protocol"
)

// guestCallsSales has a guest call sales@example.com, which answers, and
// returns both with the call established (guest subsession "c1").
func guestCallsSales(t *testing.T, url string) (guest, sales *peer, salesSub string) {
	t.Helper()
	sales = dial(t, appURL(url, "web"), protocol.SubprotocolJSONrtc, bearer(token(t, "sales@example.com", time.Now().Add(time.Hour))))
	sales.connect("")
	guest = dial(t, appURL(url, "support"), protocol.SubprotocolJSONrtc, nil)
	guest.connect("")
	guest.send(&protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageCall, SubsessionID: "c1"},
		Header:  protocol.Header{Action: protocol.ActionStart, Target: "sales@example.com"},
		Payload: sdpPayload(sdpOffer),
	})
	in := sales.read()
	expect(t, in, protocol.TypeRequest, protocol.ActionStart)
	sales.send(&protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeResponse, Package: protocol.PackageCall, SubsessionID: in.Control.SubsessionID,
			CorrelationID: in.Control.CorrelationID, MessageState: protocol.StateFinal},
		Header:  protocol.Header{Action: protocol.ActionStart, ResponseCode: 200},
		Payload: sdpPayload(sdpOffer),
	})
	expect(t, guest.read(), protocol.TypeResponse, protocol.ActionStart)
	guest.send(&protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeMessage, Package: protocol.PackageCall, SubsessionID: "c1"},
		Header:  protocol.Header{Action: protocol.ActionComplete},
	})
	expect(t, sales.read(), protocol.TypeMessage, protocol.ActionComplete)
	return guest, sales, in.Control.SubsessionID
}

// TestGuestTransferRefused: a guest allowed to call only sales cannot
// have sales' browser (or a SIP peer) call a premium number by
// transferring the call: refer_to goes through the guest's allowed
// targets like a start's target, and nothing reaches the peer.
func TestGuestTransferRefused(t *testing.T) {
	_, url := newGateway(t, secured)
	guest, sales, _ := guestCallsSales(t, url)
	transfer := func(referTo string, ext ...protocol.Ext) {
		guest.send(&protocol.Frame{
			Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageCall, SubsessionID: "c1"},
			Header:  protocol.Header{Action: protocol.ActionTransfer, Target: "sales@example.com", ReferTo: referTo, Ext: ext},
		})
	}
	for _, c := range []struct {
		referTo string
		ext     []protocol.Ext
		reason  string
	}{
		{"tel:+19005550100", nil, "refer_to not allowed"},
		{"+19005550100", nil, "refer_to not allowed"},
		{"sip:sales@example.com;transport=tcp", nil, "refer_to not allowed"},
		{"sales@example.com", []protocol.Ext{{Name: "Referred-By", Value: "tel:+19005550100"}}, "Referred-By not allowed"},
	} {
		transfer(c.referTo, c.ext...)
		r := guest.read()
		if r.Control.Type != protocol.TypeError || r.Header.ErrorCode != protocol.CodeForbidden || r.Header.Reason != c.reason {
			t.Fatalf("guest transfer to %q %v: %s", c.referTo, c.ext, r.Marshal())
		}
		// Nothing reached sales: the pong is the next thing it reads.
		sales.pingPong()
	}
	// An allowed refer_to is relayed as before.
	transfer("sales@example.com")
	if in := sales.read(); in.Header.Action != protocol.ActionTransfer || in.Header.ReferTo != "sales@example.com" {
		t.Fatalf("allowed transfer: %s", in.Marshal())
	}
}

// TestDestinationSyntax: whoever names it, a destination that is no
// address is refused with 400 before any handler relays it.
func TestDestinationSyntax(t *testing.T) {
	_, url := newGateway(t, nil)
	a := dial(t, url, protocol.SubprotocolJSONrtc, nil)
	b := dial(t, url, protocol.SubprotocolJSONrtc, nil)
	a.connect("alice@example.com")
	b.connect("bob@example.com")
	establish(t, a, b)
	a.send(&protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageCall, SubsessionID: "c9"},
		Header:  protocol.Header{Action: protocol.ActionTransfer, ReferTo: `<sip:carol@example.com>`},
	})
	if r := a.read(); r.Control.Type != protocol.TypeError || r.Header.ErrorCode != protocol.CodeBadRequest {
		t.Fatalf("transfer to a non-address: %s", r.Marshal())
	}
	b.pingPong()
}

// TestSubscriptionLimit: with a limit of 3 subscriptions per identity,
// the 4th presence watch of a session is refused with 503, an unwatch
// makes room, and a session's end gives back all it held.
func TestSubscriptionLimit(t *testing.T) {
	_, url := newGateway(t, func(c *Config) {
		secured(c)
		p := c.Limits.Profiles["default"]
		p.Identity.Subscriptions = 3
		c.Limits.Profiles["default"] = p
	})
	web := appURL(url, "web")
	exp := time.Now().Add(time.Hour)
	join := func(id string) *peer {
		p := dial(t, web, protocol.SubprotocolJSONrtc, bearer(token(t, id, exp)))
		p.connect("")
		return p
	}
	watch := func(p *peer, sub, target string) *protocol.Frame {
		p.send(&protocol.Frame{
			Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackagePresence, SubsessionID: sub},
			Header:  protocol.Header{Action: protocol.ActionStart, Target: target},
		})
		r := p.read()
		if r.Control.Type == protocol.TypeResponse {
			expect(t, p.read(), protocol.TypeMessage, protocol.ActionNotify)
		}
		return r
	}
	watchN := func(p *peer, n int) {
		for i := range n {
			if r := watch(p, "w"+string(rune('a'+i)), "b"+string(rune('1'+i))+"@example.com"); r.Header.ResponseCode != 200 {
				t.Fatalf("watch %d: %s", i+1, r.Marshal())
			}
		}
	}
	bob := join("bob@example.com")
	a := join("alice@example.com")
	watchN(a, 3)
	if r := watch(a, "wd", "b4@example.com"); r.Header.ErrorCode != 503 || r.Header.Reason != "subscription limit reached" {
		t.Fatalf("4th watch: %s", r.Marshal())
	}
	// Another session of alice shares her budget.
	a2 := join("alice@example.com")
	if r := watch(a2, "wa", "b4@example.com"); r.Header.ErrorCode != 503 {
		t.Fatalf("watch from alice's second session: %s", r.Marshal())
	}
	a.send(&protocol.Frame{Control: protocol.Control{Type: protocol.TypeMessage, Package: protocol.PackagePresence, SubsessionID: "wa"},
		Header: protocol.Header{Action: protocol.ActionShutdown}})
	if r := watch(a, "wd", "b4@example.com"); r.Header.ResponseCode != 200 {
		t.Fatalf("watch after an unwatch: %s", r.Marshal())
	}
	// Bob hears alice's presence close when her last session ends; by
	// then her subscriptions are given back.
	if r := watch(bob, "wa", "alice@example.com"); r.Header.ResponseCode != 200 {
		t.Fatalf("bob's watch: %s", r.Marshal())
	}
	a2.c.Close(websocket.StatusNormalClosure, "")
	a.c.Close(websocket.StatusNormalClosure, "")
	for {
		n := bob.read()
		expect(t, n, protocol.TypeMessage, protocol.ActionNotify)
		if strings.Contains(string(n.Payload), `"closed"`) {
			break
		}
	}
	watchN(join("alice@example.com"), 3)
}
