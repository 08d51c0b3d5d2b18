package integration

import (
	"errors"
	"testing"

	"github.com/jsonrtc/jsonrtc/client"
	"github.com/jsonrtc/jsonrtc/protocol"
)

// TestAttendedTransfer: alice, in a call with bob and a consult call with
// carol, transfers bob to carol (docs/protocol.md §5.12) through a real
// gateway, with the Go client on each side. Bob's new call reaches carol
// marked as replacing her call with alice; carol answers it and hangs up
// the old one; alice's calls end.
func TestAttendedTransfer(t *testing.T) {
	g, url := startGateway(t, nil)
	a := connect(t, url, "alice@example.com", nil)
	b := connect(t, url, "bob@example.com", nil)
	c := connect(t, url, "carol@example.com", nil)
	ab, ba := call(t, a, b)
	ac, ca := call(t, a, c)

	// A subsession of another session is unknown in alice's.
	var fe *client.FrameError
	if _, err := ab.TransferReplacing(ctx(t), c.Identity(), ca); !errors.As(err, &fe) || fe.Code != protocol.CodeNoSuchCall {
		t.Fatalf("transfer naming carol's subsession: %v", err)
	}

	done := make(chan error, 1)
	go func() {
		_, err := ab.TransferReplacing(ctx(t), c.Identity(), ac)
		done <- err
	}()
	tr := expectCall(t, b, client.CallTransfer)
	if tr.ReferTo != c.Identity() || tr.Replaces == "" || tr.Replaces == ac.ID() {
		t.Fatalf("bob's transfer request: refer_to %q replaces %q", tr.ReferTo, tr.Replaces)
	}
	if err := ba.RespondTransfer(ctx(t), protocol.CodeAccepted); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	bc, err := b.StartCallReplacing(ctx(t), tr.ReferTo, offer, tr.Replaces)
	if err != nil {
		t.Fatal(err)
	}
	in := next(t, c, client.EventIncomingCall)
	if in.Replaces != ca.ID() || in.Call.Replaces() != ca.ID() || in.Call.Peer() != b.Identity() {
		t.Fatalf("carol's new call replaces %q (want %q), from %q", in.Replaces, ca.ID(), in.Call.Peer())
	}
	if err := in.Call.Answer(ctx(t), answer); err != nil {
		t.Fatal(err)
	}
	expectCall(t, b, client.CallAnswered)
	expectCall(t, b, client.CallEstablished)
	expectCall(t, c, client.CallEstablished)
	if err := ca.Hangup(ctx(t)); err != nil {
		t.Fatal(err)
	}
	expectCall(t, a, client.CallEnded) // the consult call
	if err := ba.ReportTransfer(ctx(t), protocol.CodeOK); err != nil {
		t.Fatal(err)
	}
	if ev := expectCall(t, a, client.CallTransferProgress); ev.Code != 200 {
		t.Fatalf("progress %d", ev.Code)
	}
	if err := ab.Hangup(ctx(t)); err != nil {
		t.Fatal(err)
	}
	expectCall(t, b, client.CallEnded)
	if err := bc.Hangup(ctx(t)); err != nil {
		t.Fatal(err)
	}
	expectCall(t, c, client.CallEnded)
	if s := g.Stats(); s.Calls != 0 {
		t.Fatalf("calls left: %d", s.Calls)
	}
}
