package interop

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/client"
	"github.com/jsonrtc/jsonrtc/gateway"
	"github.com/jsonrtc/jsonrtc/sipgw"
)

// TestTorture sends every RFC 4475 torture message to the gateway's SIP
// port, over UDP and over TCP. The gateway must survive them all: it
// still answers OPTIONS on both transports, still serves web sessions,
// is left with no call or dialog, and shuts down cleanly. (What it
// answers to each is sipgo's parser's business: sipgo drops what it
// cannot parse, as RFC 3261 section 16.3 allows a UA to, and answers
// the rest.)
func TestTorture(t *testing.T) {
	cfg := gateway.DefaultConfig()
	cfg.SIP = sipgw.Config{
		Listen:    sipgw.ListenConfig{UDP: "127.0.0.1:0", TCP: "127.0.0.1:0"},
		Domain:    domain,
		UserAgent: "jsonrtc-torture",
	}
	g, err := gateway.New(cfg, gateway.Options{Logger: newTestLogger(t)})
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
	udp, err := net.Dial("udp", g.SIPAddr("udp"))
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	for _, f := range files {
		msg, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := udp.Write(msg); err != nil && !strings.Contains(err.Error(), "message too long") {
			t.Fatalf("%s over UDP: %v", f, err)
		}
		// Over TCP, one connection per message: a broken framing must
		// cost only its own connection. Each stays open until the gateway
		// is shut down:
		// the answer to a request whose connection is gone would go to
		// its Via (RFC 3261 18.2.2), which names hosts off loopback.
		tc, err := net.Dial("tcp", g.SIPAddr("tcp"))
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, tc)
		if _, err := tc.Write(msg); err != nil {
			t.Fatalf("%s over TCP: %v", f, err)
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
