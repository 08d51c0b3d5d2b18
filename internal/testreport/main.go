// Command testreport reads `go test -json` on its standard input and
// prints what `go test` prints without -json (the output of failing tests,
// build errors, each package's ok/FAIL line) and each skipped test with its
// reason, then a summary line:
//
//	skipped: 2 Go tests
//
// It exits 1 when a test or build failed, and also when a test was
// skipped under CI (testenv.CI): a skip there means a dependency the run
// should have had is missing. scripts/test runs it as
//
//	go test -race -json ./... | go run ./internal/testreport
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/jsonrtc/jsonrtc/internal/testenv"
)

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Action     string
	Package    string
	ImportPath string // build events
	Test       string
	Output     string
}

// skip is a skipped test and the reason it logged.
type skip struct{ pkg, test, reason string }

// report is what has been read so far.
type report struct {
	out     io.Writer
	running map[string][]string // package + "\x00" + test -> its output so far
	skips   []skip
	failed  bool
	// firsts is each failed test's first report lines, repeated at the
	// end: a failing test's output (three nodes' logs, say) can be long,
	// and a reader of the run's tail should still see why it failed.
	firsts []string
}

func main() {
	r := &report{out: os.Stdout, running: map[string][]string{}}
	if err := r.read(os.Stdin); err != nil {
		fmt.Fprintln(os.Stderr, "testreport:", err)
		os.Exit(2)
	}
	os.Exit(r.finish(testenv.CI()))
}

// read handles every event of in.
func (r *report) read(in io.Reader) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64*1024), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var ev event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &ev) != nil {
			// Not an event (go vet's or the toolchain's own output): as is.
			fmt.Fprintf(r.out, "%s\n", line)
			continue
		}
		r.handle(ev)
	}
	return sc.Err()
}

func (r *report) handle(ev event) {
	key := ev.Package + "\x00" + ev.Test
	switch {
	case ev.Action == "build-output":
		fmt.Fprint(r.out, ev.Output)
	case ev.Action == "build-fail":
		r.failed = true
	case ev.Test == "" && ev.Action == "output":
		// Package lines: "ok  pkg 1.2s", "FAIL pkg", a panic outside a
		// test. go test without -v prints no bare PASS.
		if ev.Output != "PASS\n" {
			fmt.Fprint(r.out, ev.Output)
		}
	case ev.Test == "" && ev.Action == "fail":
		r.failed = true
		// Tests cut short (a timeout, a panic elsewhere) have no end event.
		for k, out := range r.running {
			if strings.HasPrefix(k, ev.Package+"\x00") {
				fmt.Fprint(r.out, strings.Join(out, ""))
				delete(r.running, k)
			}
		}
	case ev.Test == "":
	case ev.Action == "output":
		r.running[key] = append(r.running[key], ev.Output)
	case ev.Action == "fail":
		r.failed = true
		fmt.Fprint(r.out, strings.Join(r.running[key], ""))
		r.firsts = append(r.firsts, firstReports(ev.Package, ev.Test, r.running[key])...)
		delete(r.running, key)
	case ev.Action == "skip":
		s := skip{pkg: ev.Package, test: ev.Test, reason: reason(r.running[key])}
		r.skips = append(r.skips, s)
		delete(r.running, key)
		// Where go test -v would show it, above its package's line, so
		// that the last lines stay go test's own and the summary.
		fmt.Fprintf(r.out, "SKIP %s %s: %s\n", s.pkg, s.test, s.reason)
	case ev.Action == "pass":
		delete(r.running, key)
	}
}

// reason is what a skipped test logged, without the framing lines.
func reason(out []string) string {
	var lines []string
	for _, l := range out {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "=== ") || strings.HasPrefix(l, "--- SKIP") {
			continue
		}
		lines = append(lines, l)
	}
	return strings.Join(lines, "; ")
}

// maxFirsts bounds the report lines kept of one failed test.
const maxFirsts = 3

// firstReports is the first lines a failed test reported with t.Error,
// t.Fatal or t.Log ("    file_test.go:12: text": its own, at the
// indent of its level), without those that introduce a dump ("...
// log:"), prefixed with the test's name.
func firstReports(pkg, test string, out []string) []string {
	indent := strings.Repeat("    ", strings.Count(test, "/")+1)
	var firsts []string
	for _, l := range out {
		rest, ok := strings.CutPrefix(l, indent)
		if !ok || strings.HasPrefix(rest, " ") || !strings.Contains(rest, "_test.go:") {
			continue
		}
		rest = strings.TrimRight(rest, "\n")
		if strings.HasSuffix(rest, ":") {
			continue
		}
		firsts = append(firsts, fmt.Sprintf("%s %s: %s", pkg, test, rest))
		if len(firsts) == maxFirsts {
			break
		}
	}
	return firsts
}

// finish prints the failures' first reports and the summary line and
// returns the exit code.
func (r *report) finish(ci bool) int {
	if len(r.firsts) > 0 {
		fmt.Fprintf(r.out, "failed tests, first reports:\n")
		for _, f := range r.firsts {
			fmt.Fprintf(r.out, "  %s\n", f)
		}
	}
	fmt.Fprintf(r.out, "skipped: %d Go tests\n", len(r.skips))
	switch {
	case r.failed:
		return 1
	case ci && len(r.skips) > 0:
		fmt.Fprintf(r.out, "FAIL: %d Go tests skipped under CI (CI=%s): each must run\n", len(r.skips), os.Getenv("CI"))
		return 1
	}
	return 0
}
