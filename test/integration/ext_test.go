package integration

import (
	"testing"

	"github.com/jsonrtc/jsonrtc/client"
	"github.com/jsonrtc/jsonrtc/protocol"
)

// wantTag checks that an event's frame carried x-tag: want.
func wantTag(t *testing.T, ev client.Event, want string) {
	t.Helper()
	if ev.Header == nil {
		t.Fatalf("%v: no header", ev.Kind)
	}
	if e, ok := ev.Header.ExtValue("x-tag"); !ok || e.Value != want {
		t.Fatalf("%v extension headers %+v, want x-tag %q", ev.Kind, ev.Header.Ext, want)
	}
}

// Issue 16: the extension headers the Go client's Send, DTMF, Trickle,
// Transfer, ReportTransfer and Hangup put on their frames reach the peer
// web client through the gateway (docs/protocol.md §2.4).
func TestExtensionHeadersWebToWeb(t *testing.T) {
	_, url := startGateway(t, nil)
	a := connect(t, url, "alice@example.com", nil)
	b := connect(t, url, "bob@example.com", nil)
	tag := func(v string) protocol.Ext { return protocol.Ext{Name: "x-tag", Value: v} }

	done := make(chan error, 1)
	go func() {
		_, err := a.Send(ctx(t), "bob@example.com", "text/plain", "hi", tag("send"))
		done <- err
	}()
	ev := next(t, b, client.EventMessage)
	wantTag(t, ev, "send")
	if err := ev.Message.Reply(ctx(t), 200, tag("reply")); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	out, in := call(t, a, b)
	if err := out.DTMF(ctx(t), "5", 0, tag("dtmf")); err != nil {
		t.Fatal(err)
	}
	wantTag(t, expectCall(t, b, client.CallDTMF), "dtmf")
	if err := in.Trickle(ctx(t), "a=mid:0\r\na=candidate:1 1 udp 1 127.0.0.1 9 typ host\r\n", tag("trickle")); err != nil {
		t.Fatal(err)
	}
	wantTag(t, expectCall(t, a, client.CallTrickle), "trickle")

	// A transfer, its answer and its progress, and the hang-up.
	done = make(chan error, 1)
	go func() {
		_, err := out.Transfer(ctx(t), "carol@example.com", tag("transfer"))
		done <- err
	}()
	wantTag(t, expectCall(t, b, client.CallTransfer), "transfer")
	if err := in.RespondTransfer(ctx(t), protocol.CodeAccepted, tag("accepted")); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := in.ReportTransfer(ctx(t), protocol.CodeOK, tag("progress")); err != nil {
		t.Fatal(err)
	}
	wantTag(t, expectCall(t, a, client.CallTransferProgress), "progress")
	if err := out.Hangup(ctx(t), tag("bye")); err != nil {
		t.Fatal(err)
	}
	wantTag(t, expectCall(t, b, client.CallEnded), "bye")
}
