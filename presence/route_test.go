package presence

import (
	"testing"

	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/routing"
)

func routedBy(d routing.Decision) func(*fakeEP) { return func(e *fakeEP) { e.route = &d } }

// Routing rules decide watches too: a rejection answers the start, a
// trunk sends even a web user's presence upstream with the rewritten
// target and the decision, and web keeps a target off the upstream.
func TestRoutedWatches(t *testing.T) {
	up := &fakeUpstream{}
	w := newWorld(t, Options{Upstream: up})
	w.connect("bob@example.com")

	rejected := w.connect("alice@example.com", routedBy(routing.Decision{Action: routing.ActionReject, Code: 403, Reason: "no"}))
	w.watch(rejected, "c2", "sip:bob@example.com", 0)
	expectError(t, rejected.take(), protocol.ActionStart, 403)

	d := routing.Decision{Action: routing.ActionSIP, Trunk: "ims", Target: "sip:bob@ims.example.com",
		Sender: routing.Sender{AssertedIdentity: "sip:carol@ims.example.com"}}
	trunked := w.connect("carol@example.com", routedBy(d))
	w.watch(trunked, "c2", "sip:bob@example.com", 0)
	expectNothing(t, trunked)
	if len(up.reqs) != 1 || up.reqs[0].Presentity != "sip:bob@ims.example.com" || up.reqs[0].Route.Trunk != "ims" ||
		up.reqs[0].Route.Sender != d.Sender {
		t.Fatalf("upstream requests %+v", up.reqs)
	}
	up.ev(0).Accepted()
	if f := trunked.take(); len(f) != 1 || f[0].Header.ResponseCode != 200 {
		t.Fatalf("got %s", dump(f))
	}

	web := w.connect("dave@example.com", routedBy(routing.Decision{Action: routing.ActionWeb, Target: "sip:bob@example.com"}))
	w.watch(web, "c2", "pres:bob@example.com", 0)
	expectAccepted(t, web.take(), "c2", 3600, open("pres:bob@example.com"))
	if len(up.reqs) != 1 {
		t.Fatalf("a watch routed to the web went upstream: %+v", up.reqs)
	}
}
