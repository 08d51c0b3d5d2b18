package interop

import (
	"bufio"
	"bytes"
	"context"
	"maps"
	"math/rand/v2"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/client"
	"github.com/jsonrtc/jsonrtc/gateway"
	"github.com/jsonrtc/jsonrtc/sipgw"
)

// tortureAnswers is the final status each RFC 4475 message gets over
// UDP, 0 when it must get none. Those the gateway's check answers are
// in sipgw's own table (malformed_test.go) too; the others reach
// sipgo and the gateway's handlers, which answer as a UAS must (RFC
// 3261 8.2): OPTIONS 200, REGISTER and unknown methods 405, an INVITE
// for nobody registered 404, an in-dialog request for no dialog 481.
var tortureAnswers = map[string]int{
	"invalid/badaspec.dat":  400,
	"invalid/badbranch.dat": 200, // RFC 2543 transaction matching, as 3.2.1 allows
	"invalid/baddate.dat":   404,
	"invalid/baddn.dat":     400,
	"invalid/badinv01.dat":  400,
	"invalid/badvers.dat":   505,
	"invalid/bcast.dat":     0, // responses: a UA never answers one
	"invalid/bext01.dat":    420,
	"invalid/bigcode.dat":   0,
	"invalid/clerr.dat":     400,
	"invalid/cparam01.dat":  405,
	"invalid/cparam02.dat":  405,
	"invalid/escruri.dat":   400,
	"invalid/insuf.dat":     400,
	// 3.4.1 asks RFC 2543 syntax to be accepted, but sipgo's transaction
	// layer cannot key a request without branch and From tag: its 400.
	"invalid/inv2543.dat":    400,
	"invalid/invut.dat":      404,
	"invalid/ltgtruri.dat":   400,
	"invalid/lwsruri.dat":    400,
	"invalid/lwsstart.dat":   400,
	"invalid/mcl01.dat":      400,
	"invalid/mismatch01.dat": 400,
	"invalid/mismatch02.dat": 400,
	"invalid/multi01.dat":    400,
	"invalid/ncl.dat":        400,
	"invalid/novelsc.dat":    416,
	"invalid/quotbal.dat":    400,
	"invalid/regaut01.dat":   405,
	"invalid/regbadct.dat":   405,
	"invalid/regescrt.dat":   405,
	"invalid/scalar02.dat":   400,
	"invalid/scalarlg.dat":   0,
	"invalid/sdp01.dat":      404,
	"invalid/test.dat":       0, // no Via: nowhere to answer
	"invalid/trws.dat":       400,
	"invalid/unkscm.dat":     416,
	"invalid/unksm2.dat":     405,
	"invalid/zeromf.dat":     200,
	"valid/dblreq.dat":       405, // the REGISTER; the INVITE after its end is discarded (RFC 3261 18.3)
	"valid/esc01.dat":        404,
	"valid/esc02.dat":        405,
	"valid/escnull.dat":      405,
	"valid/intmeth.dat":      405,
	// The 404 copies this 3.5 KB request's long fields: a response
	// cannot change transport (RFC 3261 18.2.2), so it goes over UDP,
	// fragmented (sipgw.SetProcessDefaults, udp_max_datagram).
	"valid/longreq.dat":    404,
	"valid/lwsdisp.dat":    200,
	"valid/mpart01.dat":    404,
	"valid/noreason.dat":   0,
	"valid/semiuri.dat":    200,
	"valid/transports.dat": 200,
	"valid/unreason.dat":   0,
	// An in-dialog INVITE for no dialog would get 481, but with no
	// z9hG4bK branch sipgo keys the transaction on the From tag, which
	// its parser misses in "tag = 98asjd8": its 400.
	"valid/wsinv.dat": 400,
}

// TestTorture sends every RFC 4475 torture message to the gateway's SIP
// port, over UDP and over TCP. Over UDP each gets the answer of the
// table above, or none; the messages go out unchanged, from sockets on
// a loopback address of the test's own bound to the ports their Vias
// name, which is where RFC 3261 18.2.2 sends the answer. Over TCP the
// gateway must survive them all. Then it still answers OPTIONS on both
// transports, still serves web sessions, is left with no call or
// dialog, and shuts down cleanly.
func TestTorture(t *testing.T) {
	cfg := gateway.DefaultConfig()
	cfg.SIP = sipgw.Config{
		Listen:    sipgw.ListenConfig{UDP: "127.0.0.1:0", TCP: "127.0.0.1:0"},
		Domain:    domain,
		UserAgent: "jsonrtc-torture",
	}
	g, err := gateway.New(cfg, &gateway.Options{Logger: newTestLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g.Handler())
	defer srv.Close()
	var conns []net.Conn
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := g.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		for _, c := range conns {
			c.Close()
		}
	}()

	files, _ := filepath.Glob(filepath.Join("testdata", "torture", "*", "*.dat"))
	if len(files) < 40 {
		t.Fatalf("only %d torture messages", len(files))
	}
	msgs := map[string][]byte{}
	for _, f := range files {
		msg, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.ToSlash(strings.TrimPrefix(f, filepath.Join("testdata", "torture")+string(filepath.Separator)))
		if _, ok := tortureAnswers[name]; !ok {
			t.Fatalf("%s has no expected answer", name)
		}
		msgs[name] = msg
	}
	// RFC 4475 reuses branches (z9hG4bKkdjuw above all): sent in one run,
	// its messages would be retransmissions of each other's transactions
	// (RFC 3261 17.2.3) and get each other's answers. A branch seen
	// before gets a suffix; nothing else of a message is changed.
	branches := map[string]int{}
	for _, name := range slices.Sorted(maps.Keys(msgs)) {
		m := topBranch.FindSubmatchIndex(msgs[name])
		if m == nil {
			continue
		}
		b := string(msgs[name][m[2]:m[3]])
		if n := branches[b]; n > 0 {
			msgs[name] = slices.Concat(msgs[name][:m[3]], []byte("-"+strconv.Itoa(n)), msgs[name][m[3]:])
		}
		branches[b]++
	}

	u := newTortureUDP(t, g.SIPAddr("udp"), msgs)
	for _, name := range slices.Sorted(maps.Keys(msgs)) {
		u.check(t, name, msgs[name], tortureAnswers[name])
	}
	u.noStrayAnswers(t)

	for _, name := range slices.Sorted(maps.Keys(msgs)) {
		// Over TCP, one connection per message: a broken framing must
		// cost only its own connection. Each stays open until the gateway
		// is shut down.
		tc, err := net.Dial("tcp", g.SIPAddr("tcp"))
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, tc)
		if _, err := tc.Write(msgs[name]); err != nil {
			t.Fatalf("%s over TCP: %v", name, err)
		}
	}

	// Still alive: OPTIONS over both transports, in order after the
	// torture on UDP.
	for _, network := range []string{"udp", "tcp"} {
		if !optionsOver(t, network, g.SIPAddr(network)) {
			t.Fatalf("no 200 to OPTIONS over %s after the torture", network)
		}
	}
	c, err := client.Dial(ctxT(t), client.Options{URL: "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws/webrtc/test", Identity: "bob@web.example"})
	if err != nil {
		t.Fatalf("web session after the torture: %v", err)
	}
	c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := g.WaitIdle(ctx); err != nil {
		t.Fatalf("calls left: %+v", g.Stats())
	}
	if st := g.SIPStats(); st.Calls != 0 || st.Dialogs != 0 {
		t.Fatalf("SIP side left behind: %+v", st)
	}
}

// tortureUDP sends the torture messages over UDP and collects every
// answer, by the Call-ID (or, lacking one, the CSeq) it carries.
type tortureUDP struct {
	gw      *net.UDPAddr
	socks   map[int]*net.UDPConn // by local port
	answers chan tortureAnswer
	seen    map[string][]int // every final status received, by key
}

type tortureAnswer struct {
	key    string
	status int
}

// newTortureUDP binds, on a random 127/8 address, one socket per port
// the messages' top Vias name (5060 when they name none).
func newTortureUDP(t *testing.T, gw string, msgs map[string][]byte) *tortureUDP {
	t.Helper()
	gwAddr, err := net.ResolveUDPAddr("udp", gw)
	if err != nil {
		t.Fatal(err)
	}
	ports := map[int]bool{}
	for _, msg := range msgs {
		ports[viaPort(msg)] = true
	}
	u := &tortureUDP{gw: gwAddr, answers: make(chan tortureAnswer, 256), seen: map[string][]int{}}
	for attempt := 0; u.socks == nil; attempt++ {
		if attempt == 20 {
			t.Fatal("no free loopback address for the torture sockets")
		}
		ip := net.IPv4(127, byte(1+rand.IntN(254)), byte(rand.IntN(256)), byte(1+rand.IntN(254)))
		socks := map[int]*net.UDPConn{}
		for port := range ports {
			c, err := net.ListenUDP("udp", &net.UDPAddr{IP: ip, Port: port})
			if err != nil {
				break
			}
			socks[port] = c
		}
		if len(socks) == len(ports) {
			u.socks = socks
			break
		}
		for _, c := range socks {
			c.Close()
		}
	}
	var wg sync.WaitGroup
	done := make(chan struct{})
	for _, c := range u.socks {
		wg.Go(func() {
			buf := make([]byte, 65536)
			for {
				n, _, err := c.ReadFromUDP(buf)
				if err != nil {
					return
				}
				if a, ok := parseTortureAnswer(buf[:n]); ok {
					select {
					case u.answers <- a:
					case <-done:
						return
					}
				}
			}
		})
	}
	t.Cleanup(func() {
		close(done)
		for _, c := range u.socks {
			c.Close()
		}
		wg.Wait()
	})
	return u
}

// check sends one message and waits for its final answer (resending it
// every second, as a UDP client would), or, when none is expected, for
// the answer to an OPTIONS sent after it: answers the gateway writes
// itself are written before it reads the next datagram.
func (u *tortureUDP) check(t *testing.T, name string, msg []byte, want int) {
	t.Helper()
	port := viaPort(msg)
	sock := u.socks[port]
	key := messageKey(msg)
	send := func(b []byte) {
		if _, err := sock.WriteToUDP(b, u.gw); err != nil && !strings.Contains(err.Error(), "message too long") {
			t.Fatalf("%s over UDP: %v", name, err)
		}
	}
	if want == 0 {
		send(msg)
		probe := "probe-" + strings.NewReplacer("/", "-", ".", "-").Replace(name)
		send([]byte(optionsFrom(sock.LocalAddr().String(), probe)))
		if got := u.wait(t, probe, func() {}); got != 200 {
			t.Fatalf("%s: probe answered %d", name, got)
		}
		if got := u.seen[key]; len(got) > 0 {
			t.Errorf("%s: answered %v, want no answer", name, got)
		}
		return
	}
	send(msg)
	if got := u.wait(t, key, func() { send(msg) }); got != want {
		t.Errorf("%s: answered %d, want %d", name, got, want)
	}
}

// wait returns the first final status for key, calling resend every
// second, or fails after 5 s.
func (u *tortureUDP) wait(t *testing.T, key string, resend func()) int {
	t.Helper()
	if got := u.seen[key]; len(got) > 0 {
		return got[0]
	}
	deadline := time.After(5 * time.Second)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case a := <-u.answers:
			u.seen[a.key] = append(u.seen[a.key], a.status)
			if a.key == key {
				return a.status
			}
		case <-tick.C:
			resend()
		case <-deadline:
			t.Fatalf("no answer for %s", key)
		}
	}
}

// noStrayAnswers: whatever arrived meanwhile was for a message that
// expects an answer.
func (u *tortureUDP) noStrayAnswers(t *testing.T) {
	t.Helper()
	for {
		select {
		case a := <-u.answers:
			u.seen[a.key] = append(u.seen[a.key], a.status)
			continue
		default:
		}
		break
	}
	expected := map[string]bool{}
	for name, want := range tortureAnswers {
		if want != 0 {
			msg, err := os.ReadFile(filepath.Join("testdata", "torture", filepath.FromSlash(name)))
			if err != nil {
				t.Fatal(err)
			}
			expected[messageKey(msg)] = true
		}
	}
	for key, statuses := range u.seen {
		if !expected[key] && !strings.HasPrefix(key, "probe-") {
			t.Errorf("stray answers %v for %q", statuses, key)
		}
	}
}

var (
	callIDField = regexp.MustCompile(`(?im)^(?:call-id|i)[ \t]*:[ \t]*(\S+)`)
	cseqField   = regexp.MustCompile(`(?im)^cseq[ \t]*:[ \t]*(\d+)\s+(\S+)`)
	topBranch   = regexp.MustCompile(`(?i)branch\s*=\s*(z9hG4bK[^\s;,]+)`)
	viaField    = regexp.MustCompile(`(?i)^(?:via|v)\s*:\s*SIP\s*/\s*[\d.]+\s*/\s*\w+\s+(?:\[[^\]]*\]|[^\s;:,]+)(?:\s*:\s*(\d+))?`)
)

// messageKey names a request or response by its Call-ID, or its CSeq
// when it has no Call-ID.
func messageKey(msg []byte) string {
	if m := callIDField.FindSubmatch(msg); m != nil {
		return string(m[1])
	}
	if m := cseqField.FindSubmatch(msg); m != nil {
		return "cseq:" + string(m[1]) + " " + string(m[2])
	}
	return ""
}

// viaPort is the port of the message's top Via, 5060 when it names none.
func viaPort(msg []byte) int {
	head, _, _ := bytes.Cut(msg, []byte("\r\n\r\n"))
	unfolded := regexp.MustCompile(`\r\n[ \t]+`).ReplaceAll(head, []byte(" "))
	for _, line := range bytes.Split(unfolded, []byte("\r\n")) {
		if m := viaField.FindSubmatch(line); m != nil {
			if p, err := strconv.Atoi(string(m[1])); err == nil {
				return p
			}
			return 5060
		}
	}
	return 5060
}

func parseTortureAnswer(b []byte) (tortureAnswer, bool) {
	rest, ok := bytes.CutPrefix(b, []byte("SIP/2.0 "))
	if !ok || len(rest) < 3 {
		return tortureAnswer{}, false
	}
	status, err := strconv.Atoi(string(rest[:3]))
	if err != nil || status < 200 {
		return tortureAnswer{}, false
	}
	return tortureAnswer{key: messageKey(b), status: status}, true
}

// optionsFrom is an OPTIONS whose Via names the sending socket.
func optionsFrom(local, callID string) string {
	return "OPTIONS sip:gw@" + domain + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + local + ";branch=z9hG4bK" + callID + "\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=p1\r\nTo: <sip:gw@" + domain + ">\r\n" +
		"Call-ID: " + callID + "\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
}

// optionsOver sends one OPTIONS and reports a 200, waiting up to 5 s
// (UDP: retransmitted every 500 ms, as a SIP client would).
func optionsOver(t *testing.T, network, addr string) bool {
	t.Helper()
	c, err := net.Dial(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	la := c.LocalAddr().String()
	id := strconv.FormatInt(time.Now().UnixNano(), 36)
	msg := "OPTIONS sip:" + addr + " SIP/2.0\r\n" +
		"Via: SIP/2.0/" + strings.ToUpper(network) + " " + la + ";branch=z9hG4bK" + id + ";rport\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=p1\r\nTo: <sip:" + addr + ">\r\n" +
		"Call-ID: torture-" + id + "\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
	deadline := time.Now().Add(5 * time.Second)
	r := bufio.NewReader(c)
	for time.Now().Before(deadline) {
		if _, err := c.Write([]byte(msg)); err != nil {
			return false
		}
		_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		if network == "udp" {
			buf := make([]byte, 4096)
			n, err := c.Read(buf)
			if err == nil && bytes.HasPrefix(buf[:n], []byte("SIP/2.0 200")) {
				return true
			}
			continue
		}
		line, err := r.ReadString('\n')
		return err == nil && strings.HasPrefix(line, "SIP/2.0 200")
	}
	return false
}
