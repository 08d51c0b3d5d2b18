package interop

import (
	"sync/atomic"
	"testing"

	"github.com/jsonrtc/jsonrtc/client"
	"github.com/jsonrtc/jsonrtc/protocol"
)

// webToWeb makes a call from the web user a to the web user c, answered; it
// returns a's call and c's incoming call event.
func webToWeb(t *testing.T, a, c *client.Client) (*client.Call, client.Event) {
	t.Helper()
	out, err := a.StartCall(ctxT(t), c.Identity(), offer)
	if err != nil {
		t.Fatal(err)
	}
	in := webNext(t, c, client.EventIncomingCall)
	if err := in.Call.Answer(ctxT(t), offer); err != nil {
		t.Fatal(err)
	}
	webAnswered(t, a)
	webExpect(t, a, client.CallEstablished)
	webExpect(t, c, client.CallEstablished)
	return out, in
}

// Attended transfer (docs/protocol.md §5.12, RFC 5589 section 7) with a
// real proxy and SIP peer. The web user open, in a call with SIPp and in
// a consult call with the web user carol, transfers SIPp to carol: SIPp
// gets a REFER whose Refer-To carries Replaces (URI-escaped), calls carol
// through Kamailio with that Replaces, and carol's client gets the call
// marked as replacing her consult call; SIPp's NOTIFY 200 then ends
// open's call with it.
func TestWebAttendedTransferOfSIP(t *testing.T) {
	k := startKamailio(t)
	w := startWebGateway(t, k)
	uas := startSipp(t, "uas_attended_transferee.xml", "")
	a := w.connect(t, "open@"+domain, nil)
	var n atomic.Int32
	c := w.connect(t, "carol@"+domain, func(o *client.Options) { o.Authorize = ha1Authorizer("carol", users["carol"], &n) })
	ab, err := a.StartCall(ctxT(t), uasTarget(uas), offer)
	if err != nil {
		t.Fatal(err)
	}
	webAnswered(t, a)
	webExpect(t, a, client.CallEstablished)
	// The consult call, web to web.
	ac, in := webToWeb(t, a, c)

	if code, err := ab.TransferReplacing(ctxT(t), "sip:carol@"+domain, ac); err != nil || code != 202 {
		t.Fatalf("transfer: %d %v", code, err)
	}
	if ev := webExpect(t, a, client.CallTransferProgress); ev.Code != 100 || ev.Call != ab {
		t.Fatalf("progress %d", ev.Code)
	}
	nc := webNext(t, c, client.EventIncomingCall)
	if nc.Replaces != in.Call.ID() || nc.Call.Replaces() != in.Call.ID() {
		t.Fatalf("carol's new call replaces %q, want %q", nc.Replaces, in.Call.ID())
	}
	if err := nc.Call.Answer(ctxT(t), offer); err != nil {
		t.Fatal(err)
	}
	webExpect(t, c, client.CallEstablished) // SIPp's ACK
	// Carol ends the call the new one replaced, as the SDKs do.
	if err := in.Call.Hangup(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	// The consult call's end (carol's hang-up, web to web) and SIPp's
	// NOTIFY 200 (sent once carol answered its INVITE) race; the
	// transferred call ends after that NOTIFY.
	var consultEnded, notified, transferredEnded bool
	for !consultEnded || !transferredEnded {
		switch ev := webNext(t, a, client.EventCall); {
		case ev.CallEvent == client.CallEnded && ev.Call == ac && !consultEnded:
			consultEnded = true
		case ev.CallEvent == client.CallTransferProgress && ev.Call == ab && ev.Code == 200 && !notified:
			notified = true
		case ev.CallEvent == client.CallEnded && ev.Call == ab && notified:
			transferredEnded = true
		default:
			t.Fatalf("call event %v (code %d %s) on %p; consult ended %v, NOTIFY 200 %v", ev.CallEvent, ev.Code, ev.Reason, ev.Call, consultEnded, notified)
		}
	}
	if err := nc.Call.Hangup(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	uas.expectSuccess(t)
}

// The web user open transfers the web user alice to SIPp, whom open
// consulted: alice's new call is an INVITE whose Replaces names open's
// dialog with SIPp (to-tag SIPp's, checked by SIPp), and SIPp answers
// it.
func TestWebAttendedTransferToSIP(t *testing.T) {
	k := startKamailio(t)
	w := startWebGateway(t, k)
	uas := startSipp(t, "uas_replaced.xml", "", "-m", "2")
	a := w.connect(t, "open@"+domain, nil)
	b := w.alice(t, nil)
	ab, in := webToWeb(t, a, b)
	ac, err := a.StartCall(ctxT(t), uasTarget(uas), offer, protocol.Ext{Name: "X-App", Value: "consult"})
	if err != nil {
		t.Fatal(err)
	}
	webAnswered(t, a)
	webExpect(t, a, client.CallEstablished)

	done := make(chan error, 1)
	go func() {
		_, err := ab.TransferReplacing(ctxT(t), uasTarget(uas), ac)
		done <- err
	}()
	tr := webExpect(t, b, client.CallTransfer)
	if tr.Replaces == "" {
		t.Fatal("no replaces token")
	}
	if err := in.Call.RespondTransfer(ctxT(t), 202); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	bc, err := b.StartCallReplacing(ctxT(t), tr.ReferTo, offer, tr.Replaces)
	if err != nil {
		t.Fatal(err)
	}
	webAnswered(t, b)
	webExpect(t, b, client.CallEstablished)
	// SIPp does not end the replaced dialog itself: open does.
	if err := ac.Hangup(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if err := in.Call.ReportTransfer(ctxT(t), 200); err != nil {
		t.Fatal(err)
	}
	if ev := webExpect(t, a, client.CallTransferProgress); ev.Code != 200 {
		t.Fatalf("progress %d", ev.Code)
	}
	if err := ab.Hangup(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	webExpect(t, b, client.CallEnded)
	if err := bc.Hangup(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	uas.expectSuccess(t)
}
