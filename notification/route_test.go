package notification

import (
	"testing"

	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/routing"
)

// routedEP is a session whose subscriptions a fixed routing decision
// routes.
type routedEP struct {
	*fakeEP
	d routing.Decision
}

func (r routedEP) Route(routing.Kind, string, []protocol.Ext) routing.Decision { return r.d }

func subscribeAs(h *Handler, e routedEP, sub, target string) {
	e.in++
	h.HandleFrame(e, &protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageMessageNotification,
			SessionID: e.id, SubsessionID: sub, Sequence: e.in, CorrelationID: sub, Version: "1.0"},
		Header: protocol.Header{Action: protocol.ActionStart, Initiator: e.identity, Target: target},
	})
}

func TestRoutedMailboxes(t *testing.T) {
	up := &fakeUpstream{}
	h, bob := setup(t, Options{Upstream: up})
	for _, c := range []struct {
		d    routing.Decision
		code int
	}{
		{routing.Decision{Action: routing.ActionReject, Code: 403, Reason: "no"}, 403},
		{routing.Decision{Action: routing.ActionWeb, Target: "voicemail@example.com"}, 404},
	} {
		subscribeAs(h, routedEP{bob, c.d}, "c2", "sip:voicemail@example.com")
		if f := bob.take(); len(f) != 1 || f[0].Header.ErrorCode != c.code {
			t.Fatalf("%v: got %s", c.d.Action, dump(f))
		}
	}
	d := routing.Decision{Action: routing.ActionSIP, Trunk: "vm", Target: "sip:vm@vm.example.com"}
	subscribeAs(h, routedEP{bob, d}, "c3", "sip:voicemail@example.com")
	if len(up.reqs) != 1 || up.reqs[0].Mailbox != "sip:vm@vm.example.com" || up.reqs[0].Route.Trunk != "vm" {
		t.Fatalf("upstream requests %+v", up.reqs)
	}
	up.ev(0).Accepted()
	if f := bob.take(); len(f) != 1 || f[0].Header.ResponseCode != 200 || f[0].Header.Target != "sip:voicemail@example.com" {
		t.Fatalf("got %s", dump(f))
	}
}
