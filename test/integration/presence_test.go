package integration

import (
	"errors"
	"testing"

	"github.com/jsonrtc/jsonrtc/client"
	"github.com/jsonrtc/jsonrtc/protocol"
)

func presenceStart(sub, target string) *protocol.Frame {
	return &protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackagePresence, SubsessionID: sub},
		Header:  protocol.Header{Action: protocol.ActionStart, Target: target},
	}
}

func presencePublish(st protocol.PresencePayload) *protocol.Frame {
	return &protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackagePresence, SubsessionID: "pub"},
		Header:  protocol.Header{Action: protocol.ActionPublish},
		Payload: protocol.EncodePayload(st),
	}
}

// presenceFrame returns c's next presence frame with action act (and,
// for answers, on subsession sub), skipping other frames.
func presenceFrame(t *testing.T, c *client.Client, act protocol.Action, sub string) *protocol.Frame {
	t.Helper()
	for {
		ev := next(t, c, client.EventFrame)
		f := ev.Frame
		if f.EffectivePackage() == protocol.PackagePresence && f.Header.Action == act && (sub == "" || f.Control.SubsessionID == sub) {
			return f
		}
	}
}

func presenceState(t *testing.T, f *protocol.Frame) protocol.PresencePayload {
	t.Helper()
	var p protocol.PresencePayload
	if err := protocol.DecodePayload(f.Payload, &p); err != nil {
		t.Fatal(err)
	}
	return p
}

// Three web users: alice and bob watch carol, carol publishes, every
// change reaches both watchers on their own subscriptions, carol's
// logout shows her closed, and an unsubscribed watcher hears no more.
func TestPresenceAcrossThreeWebUsers(t *testing.T) {
	g, url := startGateway(t, nil)
	alice := connect(t, url, "alice@example.com", nil)
	bob := connect(t, url, "bob@example.com", nil)
	carol := connect(t, url, "carol@example.com", nil)

	for _, w := range []struct {
		c   *client.Client
		sub string
	}{{alice, "a1"}, {bob, "b1"}} {
		if _, err := w.c.SendFrame(ctx(t), presenceStart(w.sub, "carol@example.com")); err != nil {
			t.Fatal(err)
		}
		r := presenceFrame(t, w.c, protocol.ActionStart, w.sub)
		if r.Control.Type != protocol.TypeResponse || r.Header.ResponseCode != 200 || r.Header.Expiry <= 0 {
			t.Fatalf("%s: subscribe answered %s %d expiry %d", w.c.Identity(), r.Control.Type, r.Header.ErrorCode, r.Header.Expiry)
		}
		if st := presenceState(t, presenceFrame(t, w.c, protocol.ActionNotify, w.sub)); st.Status != "open" || st.Presentity != "carol@example.com" {
			t.Fatalf("%s: initial state %+v", w.c.Identity(), st)
		}
	}

	if _, err := carol.SendFrame(ctx(t), presencePublish(protocol.PresencePayload{Status: "open", Activity: "meeting", Note: "until 3"})); err != nil {
		t.Fatal(err)
	}
	for _, w := range []*client.Client{alice, bob} {
		st := presenceState(t, presenceFrame(t, w, protocol.ActionNotify, ""))
		if st.Activity != "meeting" || st.Note != "until 3" {
			t.Fatalf("%s: published state %+v", w.Identity(), st)
		}
	}
	// A publication for someone else is refused.
	if _, err := alice.SendFrame(ctx(t), presencePublish(protocol.PresencePayload{Presentity: "carol@example.com", Status: "closed"})); err != nil {
		t.Fatal(err)
	}
	if e := next(t, alice, client.EventError); e.Code != 403 {
		t.Fatalf("publishing for carol: %d", e.Code)
	}

	// bob stops watching; carol logs out: alice sees her closed.
	if _, err := bob.SendFrame(ctx(t), &protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeMessage, Package: protocol.PackagePresence, SubsessionID: "b1"},
		Header:  protocol.Header{Action: protocol.ActionShutdown},
	}); err != nil {
		t.Fatal(err)
	}
	// bob's frames are processed in order: once his publish is answered,
	// his shutdown was processed, before carol leaves.
	if _, err := bob.SendFrame(ctx(t), presencePublish(protocol.PresencePayload{Status: "open", Note: "here"})); err != nil {
		t.Fatal(err)
	}
	if r := presenceFrame(t, bob, protocol.ActionPublish, ""); r.Header.ResponseCode != 200 {
		t.Fatalf("bob's publish: %d %s", r.Header.ErrorCode, r.Header.Reason)
	}
	carol.Close()
	if st := presenceState(t, presenceFrame(t, alice, protocol.ActionNotify, "a1")); st.Status != "closed" {
		t.Fatalf("after logout: %+v", st)
	}
	if s := g.Stats(); s.Subscriptions != 1 {
		t.Fatalf("subscriptions %d, want alice's only", s.Subscriptions)
	}
	// Nothing more came to bob's subscription.
	for {
		select {
		case ev := <-bob.Events():
			if ev.Frame != nil && ev.Frame.EffectivePackage() == protocol.PackagePresence {
				t.Fatalf("bob got %s after unsubscribing", ev.Frame.Marshal())
			}
			continue
		default:
		}
		break
	}
}

// Messaging between web users: the delivery report is the recipient's
// answer (200, 202 or an error code); an offline known user gives 480,
// an unknown one 404; a message to a user whose socket dropped is
// delivered after the resume and reported then.
func TestMessagingDeliveryCodesOfflineAndResume(t *testing.T) {
	g, url := startGateway(t, nil)
	alice := connect(t, url, "alice@example.com", nil)
	bob := connect(t, url, "bob@example.com", nil)

	for _, want := range []int{200, 202, 486} {
		res := make(chan error, 1)
		var code int
		go func() {
			var err error
			code, err = alice.Send(ctx(t), "bob@example.com", "text/plain", "hi")
			res <- err
		}()
		m := next(t, bob, client.EventMessage).Message
		if m.From != "alice@example.com" || m.Body != "hi" {
			t.Fatalf("bob got %q from %q", m.Body, m.From)
		}
		if err := m.Reply(ctx(t), want); err != nil {
			t.Fatal(err)
		}
		err := <-res
		var fe *client.FrameError
		switch {
		case want < 300 && (err != nil || code != want):
			t.Fatalf("report %d %v, want %d", code, err, want)
		case want >= 300 && (!errors.As(err, &fe) || fe.Code != want):
			t.Fatalf("report %v, want error %d", err, want)
		}
	}

	// Unknown and offline.
	var fe *client.FrameError
	if _, err := alice.Send(ctx(t), "nobody@example.com", "text/plain", "hi"); !errors.As(err, &fe) || fe.Code != 404 {
		t.Fatalf("to an unknown user: %v", err)
	}
	carol := connect(t, url, "carol@example.com", nil)
	carol.Close()
	if _, err := alice.Send(ctx(t), "carol@example.com", "text/plain", "hi"); !errors.As(err, &fe) || fe.Code != 480 {
		t.Fatalf("to an offline user: %v", err)
	}

	// bob's socket drops; the message waits in his session and is
	// delivered once he resumes.
	bob.Kill()
	next(t, bob, client.EventReconnecting)
	res := make(chan int, 1)
	go func() {
		code, err := alice.Send(ctx(t), "bob@example.com", "text/plain", "while you were away")
		if err != nil {
			code = -1
		}
		res <- code
	}()
	m := next(t, bob, client.EventMessage).Message
	if m.Body != "while you were away" {
		t.Fatalf("after resume bob got %q", m.Body)
	}
	if err := m.Reply(ctx(t), 200); err != nil {
		t.Fatal(err)
	}
	if code := <-res; code != 200 {
		t.Fatalf("report after resume %d", code)
	}
	if s := g.Stats(); s.PendingMessages != 0 {
		t.Fatalf("pending messages %d", s.PendingMessages)
	}
}
