package main

import (
	"strings"
	"testing"
)

// Events as go1.26's go test -json writes them: a package without tests, a
// passing, a failing and a skipping test (one of them a subtest).
const sample = `{"Action":"start","Package":"example/none"}
{"Action":"output","Package":"example/none","Output":"?   \texample/none\t[no test files]\n"}
{"Action":"skip","Package":"example/none","Elapsed":0}
{"Action":"start","Package":"example/a"}
{"Action":"run","Package":"example/a","Test":"TestPass"}
{"Action":"output","Package":"example/a","Test":"TestPass","Output":"=== RUN   TestPass\n"}
{"Action":"output","Package":"example/a","Test":"TestPass","Output":"    a_test.go:5: chatter\n"}
{"Action":"output","Package":"example/a","Test":"TestPass","Output":"--- PASS: TestPass (0.00s)\n"}
{"Action":"pass","Package":"example/a","Test":"TestPass","Elapsed":0}
{"Action":"run","Package":"example/a","Test":"TestPeer/kamailio"}
{"Action":"output","Package":"example/a","Test":"TestPeer/kamailio","Output":"=== RUN   TestPeer/kamailio\n"}
{"Action":"output","Package":"example/a","Test":"TestPeer/kamailio","Output":"    harness_test.go:9: missing: executable kamailio on the PATH (apt-get install kamailio)\n"}
{"Action":"output","Package":"example/a","Test":"TestPeer/kamailio","Output":"--- SKIP: TestPeer/kamailio (0.00s)\n"}
{"Action":"skip","Package":"example/a","Test":"TestPeer/kamailio","Elapsed":0}
{"Action":"pass","Package":"example/a","Test":"TestPeer","Elapsed":0}
{"Action":"output","Package":"example/a","Output":"PASS\n"}
{"Action":"output","Package":"example/a","Output":"ok  \texample/a\t0.01s\n"}
{"Action":"pass","Package":"example/a","Elapsed":0.01}
`

const failing = `{"Action":"run","Package":"example/b","Test":"TestFail"}
{"Action":"output","Package":"example/b","Test":"TestFail","Output":"=== RUN   TestFail\n"}
{"Action":"output","Package":"example/b","Test":"TestFail","Output":"    b_test.go:7: boom\n"}
{"Action":"output","Package":"example/b","Test":"TestFail","Output":"--- FAIL: TestFail (0.00s)\n"}
{"Action":"fail","Package":"example/b","Test":"TestFail","Elapsed":0}
{"Action":"output","Package":"example/b","Output":"FAIL\n"}
{"Action":"output","Package":"example/b","Output":"FAIL\texample/b\t0.01s\n"}
{"Action":"fail","Package":"example/b","Elapsed":0.01}
`

func run(t *testing.T, in string, ci bool) (string, int) {
	t.Helper()
	var out strings.Builder
	r := &report{out: &out, running: map[string][]string{}}
	if err := r.read(strings.NewReader(in)); err != nil {
		t.Fatal(err)
	}
	code := r.finish(ci)
	return out.String(), code
}

func TestSkipsCounted(t *testing.T) {
	out, code := run(t, sample, false)
	want := "?   \texample/none\t[no test files]\n" +
		"SKIP example/a TestPeer/kamailio: harness_test.go:9: missing: executable kamailio on the PATH (apt-get install kamailio)\n" +
		"ok  \texample/a\t0.01s\n" +
		"skipped: 1 Go tests\n"
	if out != want || code != 0 {
		t.Fatalf("exit %d, output:\n%s\nwant:\n%s", code, out, want)
	}
}

func TestSkipsFailUnderCI(t *testing.T) {
	out, code := run(t, sample, true)
	if code != 1 || !strings.Contains(out, "FAIL: 1 Go tests skipped under CI") {
		t.Fatalf("exit %d, output:\n%s", code, out)
	}
	if out, code := run(t, strings.ReplaceAll(sample, `"Action":"skip","Package":"example/a"`, `"Action":"pass","Package":"example/a"`), true); code != 0 {
		t.Fatalf("no skip under CI: exit %d\n%s", code, out)
	}
}

func TestFailurePrinted(t *testing.T) {
	out, code := run(t, failing, false)
	want := "=== RUN   TestFail\n    b_test.go:7: boom\n--- FAIL: TestFail (0.00s)\nFAIL\nFAIL\texample/b\t0.01s\n" +
		"failed tests, first reports:\n  example/b TestFail: b_test.go:7: boom\nskipped: 0 Go tests\n"
	if out != want || code != 1 {
		t.Fatalf("exit %d, output:\n%s\nwant:\n%s", code, out, want)
	}
}

// A failed test whose output ends in long dumps (three nodes' logs) has
// its first reports repeated after everything, where the run's tail
// shows them; the dumps' own lines are not.
func TestFirstReportsAtTheEnd(t *testing.T) {
	in := `{"Action":"run","Package":"example/c","Test":"TestNodes"}
{"Action":"output","Package":"example/c","Test":"TestNodes","Output":"=== RUN   TestNodes\n"}
{"Action":"output","Package":"example/c","Test":"TestNodes","Output":"    c_test.go:40: alice to bob: 480\n"}
{"Action":"output","Package":"example/c","Test":"TestNodes","Output":"    harness_test.go:140: g1 log:\n"}
{"Action":"output","Package":"example/c","Test":"TestNodes","Output":"        time=x level=INFO msg=\"from c_test.go:1: quoted\"\n"}
{"Action":"output","Package":"example/c","Test":"TestNodes","Output":"--- FAIL: TestNodes (9.00s)\n"}
{"Action":"fail","Package":"example/c","Test":"TestNodes","Elapsed":9}
{"Action":"run","Package":"example/c","Test":"TestSub/one"}
{"Action":"output","Package":"example/c","Test":"TestSub/one","Output":"        c_test.go:50: deeper\n"}
{"Action":"fail","Package":"example/c","Test":"TestSub/one","Elapsed":1}
{"Action":"fail","Package":"example/c","Elapsed":10}
`
	out, code := run(t, in, false)
	want := "failed tests, first reports:\n" +
		"  example/c TestNodes: c_test.go:40: alice to bob: 480\n" +
		"  example/c TestSub/one: c_test.go:50: deeper\n" +
		"skipped: 0 Go tests\n"
	if code != 1 || !strings.HasSuffix(out, want) {
		t.Fatalf("exit %d, output:\n%s\nwant it to end with:\n%s", code, out, want)
	}
}
