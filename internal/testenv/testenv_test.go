package testenv

import (
	"net"
	"strconv"
	"testing"
)

// fakeTB records what Require does instead of stopping the test.
type fakeTB struct {
	testing.TB
	skipped, failed string
}

func (f *fakeTB) Helper()                        {}
func (f *fakeTB) Skipf(format string, a ...any)  { f.skipped = format }
func (f *fakeTB) Fatalf(format string, a ...any) { f.failed = format }

func TestRequire(t *testing.T) {
	for _, tc := range []struct {
		ci, ok     string
		present    bool
		skip, fail bool
	}{
		{ci: "", present: true},
		{ci: "true", present: true},
		{ci: "", present: false, skip: true},
		{ci: "false", present: false, skip: true},
		{ci: "true", present: false, fail: true},
		{ci: "1", present: false, fail: true},
	} {
		t.Setenv("CI", tc.ci)
		f := &fakeTB{}
		Require(f, "kamailio", "apt-get install kamailio", tc.present)
		if (f.skipped != "") != tc.skip || (f.failed != "") != tc.fail {
			t.Errorf("CI=%q present %v: skipped %q failed %q", tc.ci, tc.present, f.skipped, f.failed)
		}
	}
}

func TestToolMissingFailsUnderCI(t *testing.T) {
	t.Setenv("CI", "true")
	t.Setenv("PATH", t.TempDir())
	f := &fakeTB{}
	Tool(f, "kamailio", "apt-get install kamailio")
	if f.failed == "" || f.skipped != "" {
		t.Fatalf("a missing tool under CI: skipped %q failed %q", f.skipped, f.failed)
	}
}

// Ports are outside the ephemeral range, distinct while held, and locked
// against any other process: the lock listener is what another process
// (or the Node harness) would find taken.
func TestPort(t *testing.T) {
	seen := map[int]bool{}
	for range 50 {
		p := Port(t)
		if p < portBase || p >= portBase+portCount || seen[p] {
			t.Fatalf("port %d (seen before: %v)", p, seen[p])
		}
		seen[p] = true
		if _, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(lockBase+p-portBase)); err == nil {
			t.Fatalf("port %d's lock is not held", p)
		}
		pc, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			t.Fatalf("port %d not free for its user: %v", p, err)
		}
		pc.Close()
	}
}

// A port whose lock is released can be handed out again; one bound by
// something else (a peer still exiting) is not free.
func TestPortReleasedAtCleanup(t *testing.T) {
	var p int
	t.Run("hold", func(t *testing.T) { p = Port(t) })
	lock, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(lockBase+p-portBase))
	if err != nil {
		t.Fatalf("port %d's lock still held after cleanup: %v", p, err)
	}
	lock.Close()
	pc, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(p))
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if bindable(p) {
		t.Fatalf("port %d, bound for UDP, counts as free", p)
	}
}
