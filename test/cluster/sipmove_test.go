package cluster

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/client"
)

// This file has what the tests of many SIP calls moving between nodes
// share (issue 15; kamailioCluster and runSipp are the single call's):
// SIPp's users, and strict waits on a web user's call.

// sippUsers writes a SIPp injection file of users, one call each, in
// order, and returns its path.
func sippUsers(t testing.TB, users []string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "users.csv")
	data := "SEQUENTIAL\n" + strings.Join(users, ";\n") + ";\n"
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// nextEvent returns c's next event before deadline; the client's end
// or the deadline fails the test, waiting for what.
func nextEvent(t testing.TB, c *client.Client, deadline <-chan time.Time, what string) client.Event {
	t.Helper()
	select {
	case ev, ok := <-c.Events():
		if !ok || ev.Kind == client.EventClosed {
			t.Fatalf("%s: closed waiting for %s", c.Identity(), what)
		}
		return ev
	case <-deadline:
		t.Fatalf("%s: no %s in time", c.Identity(), what)
	}
	return client.Event{}
}

// callReaches waits for c's call event want, within d; any other call
// event than ringing or figures (the call ended, failed or refused a
// request) fails the test.
func callReaches(t testing.TB, c *client.Client, want client.CallEvent, d time.Duration) client.Event {
	t.Helper()
	deadline := time.After(d)
	for {
		ev := nextEvent(t, c, deadline, "call event "+want.String())
		if ev.Kind != client.EventCall {
			continue
		}
		if ev.CallEvent == want {
			return ev
		}
		if ev.CallEvent != client.CallRinging && ev.CallEvent != client.CallFigures {
			t.Fatalf("%s: call event %v (%d %s) waiting for %v", c.Identity(), ev.CallEvent, ev.Code, ev.Reason, want)
		}
	}
}

// resumedInCall waits, within d, for c to resume its session on
// another node, any call event on the way but figures failing the
// test: the call must not notice the move.
func resumedInCall(t testing.TB, c *client.Client, d time.Duration) {
	t.Helper()
	deadline := time.After(d)
	for {
		ev := nextEvent(t, c, deadline, "the resume")
		switch {
		case ev.Kind == client.EventResumed:
			return
		case ev.Kind == client.EventCall && ev.CallEvent != client.CallFigures:
			t.Fatalf("%s: call event %v (%d %s) waiting for the resume", c.Identity(), ev.CallEvent, ev.Code, ev.Reason)
		}
	}
}
