package interop

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/internal/kamailio"
	"github.com/jsonrtc/jsonrtc/internal/testenv"
	"github.com/jsonrtc/jsonrtc/sipgw"
)

// domain is the SIP domain Kamailio serves in every test.
const domain = "example.com"

// users and their digest passwords at Kamailio; "" registers without auth.
var users = map[string]string{"alice": "alicepw", "carol": "carolpw", "open": ""}

// packages names the Debian package that provides each executable and
// Kamailio module the suites use (scripts/deps installs them all).
var packages = map[string]string{
	"kamailio":        "kamailio",
	"sipp":            "sip-tester",
	"sqlite3":         "sqlite3",
	"db_sqlite.so":    "kamailio-sqlite-modules",
	"presence.so":     "kamailio-presence-modules",
	"presence_xml.so": "kamailio-presence-modules",
	"baresip":         "baresip-core",
	"rtpengine":       "rtpengine-daemon",
}

// install says how to get an executable or a Kamailio module: the
// kamailio package has the modules packages does not name.
func install(name string) string {
	if p, ok := packages[name]; ok {
		return "apt-get install " + p
	}
	return "apt-get install kamailio"
}

// need requires the executables bins: a test without them skips on a
// developer's machine and fails under CI (testenv.Require).
func need(t testing.TB, bins ...string) {
	t.Helper()
	for _, b := range bins {
		testenv.Tool(t, b, install(b))
	}
}

// kamailioModules returns Kamailio's module directory and requires the
// modules mods in it (as need does), beyond those of the kamailio package.
func kamailioModules(t testing.TB, mods ...string) string {
	t.Helper()
	dir := kamailio.ModulesDir()
	for _, m := range append([]string{"tm.so"}, mods...) {
		testenv.File(t, filepath.Join(dir, m), install(m))
	}
	return dir
}

// freePort returns a port on 127.0.0.1, free for UDP and TCP, for a
// Kamailio or SIPp the test starts after the call: Kamailio and SIPp
// cannot be handed a bound socket. The port is reserved against every
// other test process until t's cleanup (testenv.Port).
func freePort(t testing.TB) int {
	t.Helper()
	return testenv.Port(t)
}

// proc is a child process whose output is kept for failure reports.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *lockedBuffer
	done chan struct{}
	err  error
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func start(t testing.TB, name string, dir string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, out: &lockedBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(args[0], args[1:]...)
	p.cmd.Dir = dir
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.Stdin = nil
	// A process group of its own: Kamailio forks workers, which a kill of
	// the main process alone would leave running.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Signal(os.Interrupt)
			select {
			case <-p.done:
			case <-time.After(5 * time.Second):
				_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
				<-p.done
			}
		}
		if t.Failed() {
			t.Logf("--- %s output ---\n%s", name, tail(p.out.String(), 6000))
		}
	})
	return p
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// wait waits for the process to exit and returns its exit code.
func (p *proc) wait(t testing.TB, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("%s still running after %v", p.name, timeout)
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	if p.err != nil {
		t.Fatalf("%s: %v", p.name, p.err)
	}
	return 0
}

// Kamailio is a running proxy/registrar on 127.0.0.1:Port (UDP and TCP).
type Kamailio struct {
	Port int
	Addr string
	proc *proc // its output; with logRequests, a line per REGISTER (seen.go)
}

// startKamailio starts the Kamailio of the functional tests, with one UDP
// worker: it forwards messages in the order they came, as SIPp's
// scenarios need (with two, an ACK and the BYE or re-INVITE sent right
// after it may reach SIPp the other way round, which a scenario takes
// for an unexpected message).
func startKamailio(t testing.TB) *Kamailio {
	t.Helper()
	return startKamailioWorkers(t, 1)
}

// startKamailioWorkers starts Kamailio with workers UDP worker processes.
func startKamailioWorkers(t testing.TB, workers int) *Kamailio {
	t.Helper()
	return startKamailioWith(t, workers, false)
}

// startKamailioWith starts Kamailio; logRequests logs every REGISTER and
// OPTIONS it receives (see Kamailio.registers).
func startKamailioWith(t testing.TB, workers int, logRequests bool) *Kamailio {
	t.Helper()
	return startKamailioOpts(t, kamailioOpts{Workers: workers, LogRequests: logRequests})
}

// kamailioOpts are the variants of the configuration; startKamailioOpts
// sets the domain, port, modules and users.
type kamailioOpts = kamailio.Options

// startKamailioOpts starts Kamailio with the variant o of the configuration.
func startKamailioOpts(t testing.TB, o kamailioOpts) *Kamailio {
	t.Helper()
	need(t, "kamailio")
	modPath := kamailioModules(t)
	dir := t.TempDir()
	port := freePort(t)
	o.Domain, o.Port, o.ModPath, o.Users = domain, port, modPath, users
	cfg, err := kamailio.Config(o)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "kamailio.cfg")
	if err := os.WriteFile(path, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	p := start(t, "kamailio", dir, "kamailio", "-DD", "-E", "-f", path, "-P", filepath.Join(dir, "kamailio.pid"),
		"-Y", dir, "-w", dir, "-m", "256", "-M", "8") // shm: transactions linger 5 s (wait timer), ~10k of them at 1000 calls/s
	k := &Kamailio{Port: port, Addr: "127.0.0.1:" + strconv.Itoa(port), proc: p}
	// Ready when it answers OPTIONS.
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-p.done:
			t.Fatalf("kamailio exited: %v\n%s", p.err, tail(p.out.String(), 4000))
		default:
		}
		if optionsPing(k.Addr, 200*time.Millisecond) {
			return k
		}
		if time.Now().After(deadline) {
			t.Fatalf("kamailio not answering on %s", k.Addr)
		}
	}
}

// optionsPing sends one OPTIONS over UDP and reports a 200 within timeout.
func optionsPing(addr string, timeout time.Duration) bool {
	code, err := optionsStatus(addr, "sip:"+addr, timeout)
	return err == nil && code == 200
}

// optionsStatus sends one OPTIONS for ruri to addr over UDP and returns
// the status code of the final response that arrives within timeout.
// Sent to Kamailio for sip:user@domain, 404 says user has no binding.
func optionsStatus(addr, ruri string, timeout time.Duration) (int, error) {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	la := c.LocalAddr().String()
	msg := "OPTIONS " + ruri + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + la + ";branch=z9hG4bK" + strconv.FormatInt(time.Now().UnixNano(), 36) + ";rport\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=p1\r\nTo: <" + ruri + ">\r\n" +
		"Call-ID: probe-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
	if _, err := c.Write([]byte(msg)); err != nil {
		return 0, err
	}
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return 0, err
		}
		line := buf[:n]
		if i := bytes.IndexByte(line, '\r'); i > 0 {
			line = line[:i]
		}
		f := strings.Fields(string(line))
		if len(f) < 2 || f[0] != "SIP/2.0" {
			return 0, fmt.Errorf("not a response: %q", line)
		}
		code, err := strconv.Atoi(f[1])
		if err != nil {
			return 0, err
		}
		if code >= 200 {
			return code, nil
		}
	}
}

// Sipp is one SIPp run.
type Sipp struct {
	*proc
	Port int
	Dir  string // where it runs and writes its logs
}

// startSipp runs SIPp with scenario (under scenarios/) on a free port.
// remote is "" for a UAS. The process is bounded by -timeout.
func startSipp(t *testing.T, scenario string, remote string, extra ...string) *Sipp {
	t.Helper()
	need(t, "sipp")
	dir := t.TempDir()
	// SIPp writes its logs next to the scenario: run a copy in a temp dir.
	b, err := os.ReadFile(filepath.Join("scenarios", scenario))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, scenario), b, 0o600); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	args := []string{"sipp", "-sf", scenario, "-i", "127.0.0.1", "-p", strconv.Itoa(port), "-m", "1",
		"-buff_size", "1048576", "-nostdin", "-timeout", "30s", "-timeout_error", "-trace_err", "-trace_msg",
		"-max_recv_loops", "1000"}
	args = append(args, extra...)
	if remote != "" {
		args = append(args, remote)
	}
	s := &Sipp{proc: start(t, "sipp "+scenario, dir, args...), Port: port, Dir: dir}
	t.Cleanup(func() {
		if t.Failed() {
			if b, err := readLog(dir, "*errors.log"); err == nil {
				t.Logf("--- sipp %s errors ---\n%s", scenario, tail(b, 4000))
			}
			if b, err := readLog(dir, "*messages.log"); err == nil {
				t.Logf("--- sipp %s messages ---\n%s", scenario, tail(b, 12000))
			}
		}
	})
	if remote == "" {
		waitUDPBound(t, s.proc, port)
	}
	return s
}

func readLog(dir, pattern string) (string, error) {
	m, _ := filepath.Glob(filepath.Join(dir, pattern))
	if len(m) == 0 {
		return "", os.ErrNotExist
	}
	b, err := os.ReadFile(m[0])
	return string(b), err
}

// waitUDPBound waits until some process has bound 127.0.0.1:port (UDP),
// reading /proc/net/udp so as not to disturb the socket.
func waitUDPBound(t testing.TB, p *proc, port int) {
	t.Helper()
	want := fmt.Sprintf("0100007F:%04X", port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		f, err := os.Open("/proc/net/udp")
		if err != nil {
			t.Fatal(err)
		}
		found := false
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) > 1 && fields[1] == want {
				found = true
				break
			}
		}
		f.Close()
		if found {
			return
		}
		select {
		case <-p.done:
			t.Fatalf("%s exited early: %v\n%s", p.name, p.err, tail(p.out.String(), 3000))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not bind port %d", p.name, port)
		}
	}
}

// expectSuccess waits for SIPp to end and checks it counted one
// successful call and no failure (exit code 0).
func (s *Sipp) expectSuccess(t *testing.T) {
	t.Helper()
	if code := s.wait(t, 40*time.Second); code != 0 {
		t.Fatalf("%s exit code %d\n%s", s.name, code, tail(s.out.String(), 3000))
	}
}

// newGateway starts a sipgw on loopback UDP pointed at k and closes it,
// checking nothing is left, in Cleanup.
func newGateway(t *testing.T, k *Kamailio, mod func(*sipgw.Config), onCall ...func(*sipgw.Call)) *sipgw.UserAgent {
	t.Helper()
	cfg := sipgw.Config{
		Listen:        sipgw.ListenConfig{UDP: "127.0.0.1:0", TCP: "127.0.0.1:0"},
		Domain:        domain,
		OutboundProxy: "sip:" + k.Addr,
		Registrar:     "sip:" + k.Addr,
		UserAgent:     "jsonrtc-interop",
	}
	if mod != nil {
		mod(&cfg)
	}
	level := slog.LevelWarn
	if os.Getenv("SIPGW_DEBUG") != "" {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: level}))
	g, err := sipgw.New(cfg, &sipgw.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range onCall {
		g.OnIncomingCall(f)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := g.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := g.Close(context.Background()); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return g
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

var _ io.Writer = testWriter{}

// assertIdle checks that nothing is left of the calls. A transaction's
// count drops when its handler returns, which may be just after the last
// event the test saw, so the check allows it to settle.
func assertIdle(t *testing.T, g *sipgw.UserAgent) {
	t.Helper()
	until(t, "the SIP side to be idle", func() bool {
		st := g.Stats()
		return st.Calls == 0 && st.Dialogs == 0 && st.Transactions == 0
	})
}

// next waits for the call's next event.
func next(t *testing.T, c *sipgw.Call) sipgw.Event {
	t.Helper()
	select {
	case ev, ok := <-c.Events():
		if !ok {
			t.Fatal("events closed")
		}
		return ev
	case <-time.After(30 * time.Second):
		t.Fatal("no event within 30s")
	}
	return sipgw.Event{}
}

func expect(t *testing.T, c *sipgw.Call, kind sipgw.EventKind) sipgw.Event {
	t.Helper()
	ev := next(t, c)
	if ev.Kind != kind {
		t.Fatalf("event %v (code %d, end %v), want %v", ev.Kind, ev.Code, ev.End, kind)
	}
	return ev
}

// ended waits for EventEnded, skipping other events, and for Done.
func ended(t *testing.T, c *sipgw.Call) sipgw.Event {
	t.Helper()
	for {
		ev := next(t, c)
		if ev.Kind == sipgw.EventEnded {
			select {
			case <-c.Done():
			case <-time.After(10 * time.Second):
				t.Fatal("call not done after EventEnded")
			}
			return ev
		}
	}
}

const offer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"

// goroutines is every goroutine's stack, for a shutdown that hangs.
func goroutines() string {
	var b strings.Builder
	pprof.Lookup("goroutine").WriteTo(&b, 1)
	return b.String()
}
