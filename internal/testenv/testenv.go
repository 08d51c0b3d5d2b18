// Package testenv holds the rules every test suite follows about its
// environment, so that they are decided once:
//
//   - Require: a test whose dependency (Kamailio, SIPp, a Kamailio module,
//     a file-descriptor limit) is missing skips on a developer's machine
//     but fails under CI (CI=true), naming what is missing and the
//     package that provides it. A CI run that skips is a run that tested
//     nothing while reporting "ok".
//   - Port: a loopback port for a peer that cannot be handed a bound
//     socket (Kamailio, SIPp), reserved across the processes that
//     `go test ./...` runs in parallel (see port.go).
//
// Start with Require and Tool.
package testenv

import (
	"os"
	"os/exec"
	"strconv"
	"testing"
)

// CI reports whether the tests run under continuous integration: the CI
// environment variable set to a true value ("true", "1"), as GitHub
// Actions, GitLab CI and most others set it.
func CI() bool {
	ok, _ := strconv.ParseBool(os.Getenv("CI"))
	return ok
}

// Require stops t unless ok: under CI it fails (Fatalf), elsewhere it
// skips. what names the missing dependency, hint how to get it (for
// example "apt-get install kamailio").
func Require(t testing.TB, what, hint string, ok bool) {
	t.Helper()
	if ok {
		return
	}
	if CI() {
		t.Fatalf("missing: %s (%s); under CI a missing dependency fails the test instead of skipping it", what, hint)
	} else {
		t.Skipf("missing: %s (%s)", what, hint)
	}
}

// Tool requires the executable bin on the PATH (see Require) and returns
// its path.
func Tool(t testing.TB, bin, hint string) string {
	t.Helper()
	path, err := exec.LookPath(bin)
	Require(t, "executable "+bin+" on the PATH", hint, err == nil)
	return path
}

// File requires the file at path (see Require).
func File(t testing.TB, path, hint string) {
	t.Helper()
	_, err := os.Stat(path)
	Require(t, path, hint, err == nil)
}
