package interop

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/client"
	"github.com/jsonrtc/jsonrtc/protocol"
)

func startFrame(pkg protocol.Package, sub, initiator, target string) *protocol.Frame {
	return &protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeRequest, Package: pkg, SubsessionID: sub},
		Header:  protocol.Header{Action: protocol.ActionStart, Initiator: initiator, Target: target},
	}
}

func shutdownFrame(pkg protocol.Package, sub, target string) *protocol.Frame {
	return &protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeMessage, Package: pkg, SubsessionID: sub},
		Header:  protocol.Header{Action: protocol.ActionShutdown, Target: target},
	}
}

func response(t *testing.T, c *client.Client, pkg protocol.Package, sub string) *protocol.Frame {
	t.Helper()
	return frame(t, c, pkg, protocol.ActionStart, func(f *protocol.Frame) bool {
		return f.Control.SubsessionID == sub && (f.Control.Type == protocol.TypeResponse || f.Control.Type == protocol.TypeError)
	})
}

// A web user (alice, through the gateway) and a SIP user agent (bob, SIPp)
// watch each other's presence through Kamailio's presence server:
// SUBSCRIBE/NOTIFY with PIDF one way, PUBLISH (with SIP-If-Match) the
// other.
func TestPresenceWebAndSIPWatchEachOther(t *testing.T) {
	env := startEventsEnv(t)
	alice := env.web(t, "alice@"+domain)

	// alice watches bob, who has published nothing yet.
	if _, err := alice.SendFrame(ctxT(t), startFrame(protocol.PackagePresence, "w1", "alice@"+domain, "sip:bob@"+domain)); err != nil {
		t.Fatal(err)
	}
	if r := response(t, alice, protocol.PackagePresence, "w1"); r.Control.Type != protocol.TypeResponse || r.Header.ResponseCode != 200 {
		t.Fatalf("subscribe answered %s %d %s", r.Control.Type, r.Header.ErrorCode, r.Header.Reason)
	}

	bob := startSipp(t, "presence_bob.xml", env.K.Addr, "-s", "bob")
	// bob's PUBLISH reaches alice as a notify.
	n := frame(t, alice, protocol.PackagePresence, protocol.ActionNotify, func(f *protocol.Frame) bool {
		return payload(t, f)["note"] == "at the desk"
	})
	if p := payload(t, n); p["status"] != "open" || p["presentity"] != "sip:bob@"+domain || n.Control.SubsessionID != "w1" {
		t.Fatalf("notify %s on %s", n.Payload, n.Control.SubsessionID)
	}

	// alice publishes; bob's watcher loop ends when it sees her note.
	pub := &protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackagePresence, SubsessionID: "p1"},
		Header:  protocol.Header{Action: protocol.ActionPublish},
		Payload: protocol.EncodePayload(protocol.PresencePayload{Status: "open", Activity: "busy", Note: "in the lab"}),
	}
	if _, err := alice.SendFrame(ctxT(t), pub); err != nil {
		t.Fatal(err)
	}
	// bob goes home (PUBLISH with SIP-If-Match): closed.
	n = frame(t, alice, protocol.PackagePresence, protocol.ActionNotify, func(f *protocol.Frame) bool {
		return payload(t, f)["status"] == "closed"
	})
	if p := payload(t, n); p["note"] != "gone home" {
		t.Fatalf("closed notify %s", n.Payload)
	}
	bob.expectSuccess(t)
	if st := env.G.SIPEventStats(); st.Subscriptions != 1 || st.Publications != 1 {
		t.Fatalf("SIP events %+v, want one subscription and one publication", st)
	}

	// alice stops watching: SUBSCRIBE Expires: 0, the subscription goes.
	if _, err := alice.SendFrame(ctxT(t), shutdownFrame(protocol.PackagePresence, "w1", "sip:bob@"+domain)); err != nil {
		t.Fatal(err)
	}
	until(t, "the SIP subscription to end", func() bool { return env.G.SIPEventStats().Subscriptions == 0 })
}

// A SIPp notifier sends message-summary NOTIFYs that reach the web
// session in the format of docs/protocol.md §7.2; a malformed summary is answered 400
// without harm; the subscription is refreshed before its 2 s expire,
// survives a socket drop and resume untouched (SIPp would fail on a new
// SUBSCRIBE), and ends with Expires: 0.
func TestMessageSummaryFromSIPNotifier(t *testing.T) {
	env := startEventsEnv(t)
	notifier := startSipp(t, "mwi_notifier.xml", "")
	alice := env.web(t, "alice@"+domain)
	mailbox := "sip:uas-" + strconv.Itoa(notifier.Port) + "@" + domain

	if _, err := alice.SendFrame(ctxT(t), startFrame(protocol.PackageMessageNotification, "m1", "alice@"+domain, mailbox)); err != nil {
		t.Fatal(err)
	}
	if r := response(t, alice, protocol.PackageMessageNotification, "m1"); r.Control.Type != protocol.TypeResponse || r.Header.ResponseCode != 200 {
		t.Fatalf("subscribe answered %s %d %s", r.Control.Type, r.Header.ErrorCode, r.Header.Reason)
	}
	n := frame(t, alice, protocol.PackageMessageNotification, protocol.ActionNotify, nil)
	want := `{"messages_waiting":"yes","message_account":"sip:alice@example.com","voice-message":"2/8 (0/2)"}`
	if !sameJSON(t, n.Payload, want) || n.Control.SubsessionID != "m1" || n.Header.Initiator != mailbox {
		t.Fatalf("notify %s on %s from %s, want %s", n.Payload, n.Control.SubsessionID, n.Header.Initiator, want)
	}

	// The socket drops; the session resumes; nothing SIP-side moves. The
	// malformed summary was refused meanwhile; the next one (after the
	// refresh) still arrives on the same subscription, before or after
	// the resume.
	alice.Kill()
	want = `{"messages_waiting":"yes","message_account":"sip:alice@example.com","voice-message":"3/8 (1/2)"}`
	resumed, second := false, false
	for !resumed || !second {
		ev := waitAny(t, alice)
		switch {
		case ev.Kind == client.EventResumed:
			resumed = true
			if st := env.G.SIPEventStats(); st.Subscriptions != 1 {
				t.Fatalf("SIP subscriptions after resume: %d", st.Subscriptions)
			}
		case ev.Kind == client.EventSessionLost || ev.Kind == client.EventClosed:
			t.Fatalf("%s", ev)
		case ev.Frame != nil && ev.Frame.Header.Action == protocol.ActionNotify:
			if !sameJSON(t, ev.Frame.Payload, want) || ev.Frame.Control.SubsessionID != "m1" {
				t.Fatalf("second notify %s, want %s", ev.Frame.Payload, want)
			}
			second = true
		}
	}
	if _, err := alice.SendFrame(ctxT(t), shutdownFrame(protocol.PackageMessageNotification, "m1", mailbox)); err != nil {
		t.Fatal(err)
	}
	notifier.expectSuccess(t)
	until(t, "the SIP subscription to end", func() bool { return env.G.SIPEventStats().Subscriptions == 0 })
	if st := env.G.Stats(); st.Subscriptions != 0 {
		t.Fatalf("web subscriptions left: %d", st.Subscriptions)
	}
}

// MESSAGE both ways through Kamailio: a web send to a SIP user gets the
// SIP final response (202) as its delivery report; a SIP MESSAGE to the
// web user reaches its session as request/send and its answer (200)
// goes back as the SIP response.
func TestInstantMessagesBothWays(t *testing.T) {
	env := startEventsEnv(t)
	alice := env.web(t, "alice@"+domain)

	uas := startSipp(t, "uas_message.xml", "")
	code, err := alice.Send(ctxT(t), "uas-"+strconv.Itoa(uas.Port)+"@"+domain, "text/plain", "hello sip")
	if err != nil || code != 202 {
		t.Fatalf("send to SIP: %d %v", code, err)
	}
	uas.expectSuccess(t)

	uac := startSipp(t, "uac_message.xml", env.K.Addr, "-s", "alice")
	ev := waitKind(t, alice, client.EventMessage)
	m := ev.Message
	if m.From != "sip:bob@"+domain || !strings.Contains(m.Body, "hello web") || m.ContentType != "text/plain" {
		t.Fatalf("incoming message from %q (%s): %q", m.From, m.ContentType, m.Body)
	}
	if err := m.Reply(ctxT(t), 200); err != nil {
		t.Fatal(err)
	}
	uac.expectSuccess(t)
}

func waitAny(t *testing.T, c *client.Client) client.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	select {
	case ev, ok := <-c.Events():
		if !ok {
			t.Fatal("events closed")
		}
		return ev
	case <-ctx.Done():
		t.Fatal("no event")
	}
	return client.Event{}
}

func waitKind(t *testing.T, c *client.Client, k client.EventKind) client.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		select {
		case ev, ok := <-c.Events():
			if !ok {
				t.Fatalf("events closed waiting for %s", k)
			}
			if ev.Kind == k {
				return ev
			}
			if ev.Kind == client.EventClosed || ev.Kind == client.EventSessionLost {
				t.Fatalf("%s waiting for %s", ev, k)
			}
		case <-ctx.Done():
			t.Fatalf("no %s event", k)
		}
	}
}

func sameJSON(t *testing.T, got json.RawMessage, want string) bool {
	t.Helper()
	var a, b any
	if json.Unmarshal(got, &a) != nil || json.Unmarshal([]byte(want), &b) != nil {
		return false
	}
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// A SIP presentity's notifier sends a malformed PIDF document between two
// good ones: it is refused with 400, and the watcher sees only the good
// states, on the same subscription.
func TestMalformedPIDFRefused(t *testing.T) {
	env := startEventsEnv(t)
	notifier := startSipp(t, "presence_notifier.xml", "")
	alice := env.web(t, "alice@"+domain)
	carol := "sip:uas-" + strconv.Itoa(notifier.Port) + "@" + domain

	if _, err := alice.SendFrame(ctxT(t), startFrame(protocol.PackagePresence, "p1", "alice@"+domain, carol)); err != nil {
		t.Fatal(err)
	}
	if r := response(t, alice, protocol.PackagePresence, "p1"); r.Control.Type != protocol.TypeResponse || r.Header.ResponseCode != 200 {
		t.Fatalf("subscribe answered %s %d %s", r.Control.Type, r.Header.ErrorCode, r.Header.Reason)
	}
	// The watcher may first be told "closed" (nothing known yet), then
	// the notifier's states arrive.
	var p protocol.PresencePayload
	n := frame(t, alice, protocol.PackagePresence, protocol.ActionNotify, nil)
	if protocol.DecodePayload(n.Payload, &p); p.Status == "closed" && p.Note == "" {
		n = frame(t, alice, protocol.PackagePresence, protocol.ActionNotify, nil)
		protocol.DecodePayload(n.Payload, &p)
	}
	if p.Status != "open" || p.Note != "at the desk" {
		t.Fatalf("first state %s", n.Payload)
	}
	p = protocol.PresencePayload{}
	n = frame(t, alice, protocol.PackagePresence, protocol.ActionNotify, nil)
	protocol.DecodePayload(n.Payload, &p)
	if p.Status != "closed" || p.Note != "gone home" || n.Control.SubsessionID != "p1" {
		t.Fatalf("after the malformed document: %s on %s", n.Payload, n.Control.SubsessionID)
	}
	if _, err := alice.SendFrame(ctxT(t), shutdownFrame(protocol.PackagePresence, "p1", carol)); err != nil {
		t.Fatal(err)
	}
	notifier.expectSuccess(t)
	until(t, "the SIP subscription to end", func() bool { return env.G.SIPEventStats().Subscriptions == 0 })
}

// The gateway publishes a web user's presence only once she published
// (docs/protocol.md §6.3): carol, who only watches, puts no tuple next to
// those of her SIP phone. dave publishes; when his session ends the
// gateway withdraws his publication (PUBLISH Expires: 0 with SIP-If-Match:
// the entity tag, which Kamailio needs to find it) instead of leaving a
// closed tuple to lapse.
func TestPresencePublishedOnlyWhenAsked(t *testing.T) {
	env := startEventsEnv(t)
	carol := env.web(t, "carol@"+domain)
	dave := env.web(t, "dave@"+domain)
	pub := &protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackagePresence, SubsessionID: "p1"},
		Header:  protocol.Header{Action: protocol.ActionPublish},
		Payload: protocol.EncodePayload(protocol.PresencePayload{Status: "open", Note: "at the desk"}),
	}
	if _, err := dave.SendFrame(ctxT(t), pub); err != nil {
		t.Fatal(err)
	}
	until(t, "dave's publication at the presence server", func() bool { return len(env.presentity(t, "dave")) == 1 })
	// carol's watch of dave is answered after her session start was
	// handled, which is when the gateway used to publish her.
	if _, err := carol.SendFrame(ctxT(t), startFrame(protocol.PackagePresence, "w1", "carol@"+domain, "dave@"+domain)); err != nil {
		t.Fatal(err)
	}
	if r := response(t, carol, protocol.PackagePresence, "w1"); r.Header.ResponseCode != 200 {
		t.Fatalf("watch answered %s %d", r.Control.Type, r.Header.ErrorCode)
	}
	if st := env.G.SIPEventStats(); st.Publications != 1 {
		t.Fatalf("SIP publications %+v, want dave's only", st)
	}
	if tags := env.presentity(t, "carol"); len(tags) != 0 {
		t.Fatalf("carol published %v without asking", tags)
	}
	if err := dave.Close(); err != nil {
		t.Fatal(err)
	}
	until(t, "dave's publication to be withdrawn", func() bool { return len(env.presentity(t, "dave")) == 0 })
	until(t, "the SIP publication to end", func() bool { return env.G.SIPEventStats().Publications == 0 })
}
