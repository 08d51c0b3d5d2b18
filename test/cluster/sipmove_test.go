package cluster

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/client"
	"github.com/jsonrtc/jsonrtc/internal/testenv"
)

// This file has what the tests of SIP calls moving between nodes share
// (issue 15): a cluster whose SIP sides register their web users at a
// real Kamailio and send their calls through it, SIPp runs, and strict
// waits on a web user's call.

// callMoveCluster starts Kamailio and three nodes whose web users register
// there and whose calls go through it; it returns Kamailio's address.
func callMoveCluster(t testing.TB) (string, []*node) {
	t.Helper()
	testenv.Tool(t, "kamailio", "apt-get install kamailio")
	testenv.Tool(t, "sipp", "apt-get install sip-tester")
	kaddr := startKamailio(t)
	nodes := newClusterWith(t, fmt.Sprintf(`sip:
  domain: example.com
  registrar: sip:%[1]s
  outbound_proxy: sip:%[1]s
  instance_id: urn:jsonrtc:{node}
  listen: {udp: "127.0.0.1:0"}
`, kaddr))
	return kaddr, nodes
}

// sippRun is one SIPp process of a test, killed at its end.
type sippRun struct {
	port int
	dir  string
	cmd  *exec.Cmd
	out  bytes.Buffer
	done chan error
}

// runSipp runs SIPp on scenario (in testdata) on a port of its own,
// with args after the common ones; its errors go to a log in its
// directory, shown when it fails.
func runSipp(t testing.TB, scenario string, args ...string) *sippRun {
	t.Helper()
	path, err := filepath.Abs(filepath.Join("testdata", scenario))
	if err != nil {
		t.Fatal(err)
	}
	s := &sippRun{port: testenv.Port(t), dir: t.TempDir(), done: make(chan error, 1)}
	all := append([]string{"-sf", path, "-i", "127.0.0.1", "-p", strconv.Itoa(s.port), "-nostdin", "-trace_err"}, args...)
	s.cmd = exec.Command("sipp", all...)
	s.cmd.Dir = s.dir
	s.cmd.Stdout, s.cmd.Stderr = &s.out, &s.out
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.done <- s.cmd.Wait() }()
	t.Cleanup(func() {
		if s.cmd.ProcessState == nil {
			s.cmd.Process.Kill()
			<-s.done
		}
	})
	return s
}

// expectSuccess waits up to d for SIPp to exit having completed every
// call (its exit status 0: no call failed, none unexpected).
func (s *sippRun) expectSuccess(t testing.TB, d time.Duration) {
	t.Helper()
	select {
	case err := <-s.done:
		s.done <- err // for the cleanup's check
		if err != nil {
			t.Errorf("sipp: %v\n%s\n%s", err, logTail(s.out.String(), 4000), s.errors())
		}
	case <-time.After(d):
		s.cmd.Process.Kill()
		err := <-s.done
		s.done <- err
		t.Errorf("sipp still running after %v\n%s\n%s", d, logTail(s.out.String(), 4000), s.errors())
	}
}

// errors is SIPp's error log (-trace_err).
func (s *sippRun) errors() string {
	logs, _ := filepath.Glob(filepath.Join(s.dir, "*_errors.log"))
	var b strings.Builder
	for _, l := range logs {
		data, _ := os.ReadFile(l)
		b.WriteString(logTail(string(data), 8000))
	}
	return b.String()
}

func logTail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

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
