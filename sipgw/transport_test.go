package sipgw

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// hop is a SIP next hop on loopback: a UDP socket and, when asked, a TCP
// listener on the same port. It answers nothing by itself; the test
// reads what arrives and replies.
type hop struct {
	port int
	udp  net.PacketConn
	tcp  net.Listener
	got  chan hopMsg
	stop chan struct{}
	wg   sync.WaitGroup
	mu   sync.Mutex
	cs   []net.Conn
}

// hopMsg is one request received, over "udp" or "tcp", with a way to
// answer it where it came from.
type hopMsg struct {
	network string
	req     *sip.Request
	size    int
	reply   func(res *sip.Response)
}

func newHop(t *testing.T, withTCP bool) *hop {
	t.Helper()
	h := &hop{got: make(chan hopMsg, 16), stop: make(chan struct{})}
	for try := 0; ; try++ {
		udp, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		h.udp, h.port = udp, udp.LocalAddr().(*net.UDPAddr).Port
		if !withTCP {
			// Nothing may listen on TCP there, so that a connection is
			// refused: the port is held by a socket bound, not
			// listening. Left free, another process's listener took it
			// now and then, and the large INVITE went there.
			if err = holdTCP(t, h.port); err == nil {
				break
			}
		} else if h.tcp, err = net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(h.port)); err == nil {
			break
		}
		udp.Close()
		if try == 10 {
			t.Fatal(err)
		}
	}
	h.wg.Go(h.readUDP)
	if h.tcp != nil {
		h.wg.Go(h.accept)
	}
	t.Cleanup(func() {
		close(h.stop)
		h.udp.Close()
		if h.tcp != nil {
			h.tcp.Close()
		}
		h.mu.Lock()
		for _, c := range h.cs {
			c.Close()
		}
		h.mu.Unlock()
		h.wg.Wait()
	})
	return h
}

// holdTCP binds a TCP socket to port on loopback without listening, until
// the test's end: a connection there is refused and no other socket may
// bind the port (no SO_REUSEADDR, which net.Listen would set).
func holdTCP(t *testing.T, port int) error {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		syscall.Close(fd)
		return err
	}
	t.Cleanup(func() { syscall.Close(fd) })
	return nil
}

func (h *hop) deliver(m hopMsg) {
	select {
	case h.got <- m:
	case <-h.stop:
	}
}

func (h *hop) readUDP() {
	buf := make([]byte, 1<<16)
	for {
		n, from, err := h.udp.ReadFrom(buf)
		if err != nil {
			return
		}
		msg, err := sip.ParseMessage(bytes.Clone(buf[:n]))
		req, ok := msg.(*sip.Request)
		if err != nil || !ok {
			continue
		}
		h.deliver(hopMsg{network: "udp", req: req, size: n, reply: func(res *sip.Response) {
			_, _ = h.udp.WriteTo([]byte(res.String()), from)
		}})
	}
}

func (h *hop) accept() {
	for {
		c, err := h.tcp.Accept()
		if err != nil {
			return
		}
		h.mu.Lock()
		h.cs = append(h.cs, c)
		h.mu.Unlock()
		h.wg.Go(func() { h.readTCP(c) })
	}
}

func (h *hop) readTCP(c net.Conn) {
	r := bufio.NewReader(c)
	for {
		var head bytes.Buffer
		length := 0
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			if line == "\r\n" && head.Len() == 0 {
				continue // keep-alive
			}
			head.WriteString(line)
			if line == "\r\n" {
				break
			}
			if name, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(strings.TrimSpace(name), "Content-Length") {
				length, _ = strconv.Atoi(strings.TrimSpace(v))
			}
		}
		body := make([]byte, length)
		if _, err := io.ReadFull(r, body); err != nil {
			return
		}
		data := append(head.Bytes(), body...)
		msg, err := sip.ParseMessage(data)
		req, ok := msg.(*sip.Request)
		if err != nil || !ok {
			continue
		}
		h.deliver(hopMsg{network: "tcp", req: req, size: len(data), reply: func(res *sip.Response) {
			_, _ = c.Write([]byte(res.String()))
		}})
	}
}

// next returns the next request of method m, skipping others (ACKs).
func (h *hop) next(t *testing.T, m sip.RequestMethod) hopMsg {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case msg := <-h.got:
			if msg.req.Method == m {
				return msg
			}
		case <-timeout:
			t.Fatalf("no %s at the next hop", m)
		}
	}
}

// largeSDP is an offer of the size a browser makes (about 4 KB), so
// that the INVITE carrying it is well over 1300 bytes.
func largeSDP() []byte {
	var b strings.Builder
	b.WriteString("v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n")
	b.WriteString("m=audio 9 UDP/TLS/RTP/SAVPF 111 0 8\r\nc=IN IP4 0.0.0.0\r\n")
	for i := range 40 {
		fmt.Fprintf(&b, "a=candidate:%d 1 udp %d 192.0.2.%d 5%04d typ host generation 0\r\n", 1000+i, 2122260223-i, i+1, i)
	}
	b.WriteString("a=end-of-offer\r\n")
	return []byte(b.String())
}

const smallSDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\n"

func startToward(t *testing.T, h *hop, listen ListenConfig, log *slog.Logger) *UserAgent {
	t.Helper()
	return startTest(t, Config{Listen: listen, Domain: "example.com", OutboundProxy: "sip:127.0.0.1:" + strconv.Itoa(h.port)}, log)
}

// dialBusy sends an INVITE with sdp, answers it 486 at the hop and
// returns what the hop received, once the call has ended.
func dialBusy(t *testing.T, g *UserAgent, h *hop, sdp []byte) hopMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := g.Dial(ctx, DialOptions{Identity: "alice@example.com", Target: "bob", SDP: sdp})
	if err != nil {
		t.Fatal(err)
	}
	m := h.next(t, sip.INVITE)
	m.reply(sip.NewResponseFromRequest(m.req, 486, "Busy Here", nil))
	for ev := range c.Events() {
		if ev.Kind == EventEnded && ev.Code != 486 {
			t.Fatalf("call ended with %d, want 486", ev.Code)
		}
	}
	if !bytes.Equal(m.req.Body(), sdp) {
		t.Fatalf("the hop got %d bytes of SDP, want %d", len(m.req.Body()), len(sdp))
	}
	return m
}

func port(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return n
}

// TestLargeRequestOverTCP: with transport udp and a TCP listener, an
// INVITE over 1300 bytes goes over TCP to the same next hop, its top Via
// saying TCP and our TCP port (RFC 3261 18.1.1); a small one stays on UDP.
func TestLargeRequestOverTCP(t *testing.T) {
	h := newHop(t, true)
	g := startToward(t, h, ListenConfig{UDP: "127.0.0.1:0", TCP: "127.0.0.1:0"}, nil)

	m := dialBusy(t, g, h, largeSDP())
	via := m.req.Via()
	if m.network != "tcp" || via.Transport != "TCP" || via.Port != port(t, g.Addr("tcp")) || m.size <= udpRequestMax {
		t.Fatalf("%d-byte INVITE over %s with Via %s, want TCP to our port %s", m.size, m.network, via.Value(), g.Addr("tcp"))
	}
	m = dialBusy(t, g, h, []byte(smallSDP))
	via = m.req.Via()
	if m.network != "udp" || !strings.EqualFold(via.Transport, "UDP") || via.Port != port(t, g.Addr("udp")) {
		t.Fatalf("%d-byte INVITE over %s with Via %s, want UDP", m.size, m.network, via.Value())
	}
}

// TestLargeRequestNextHopWithoutTCP: a next hop that refuses TCP gets the
// large INVITE over UDP, in one datagram, fragmented by IP if need be.
func TestLargeRequestNextHopWithoutTCP(t *testing.T) {
	h := newHop(t, false)
	g := startToward(t, h, ListenConfig{UDP: "127.0.0.1:0", TCP: "127.0.0.1:0"}, nil)
	m := dialBusy(t, g, h, largeSDP())
	if via := m.req.Via(); m.network != "udp" || !strings.EqualFold(via.Transport, "UDP") || via.Port != port(t, g.Addr("udp")) {
		t.Fatalf("INVITE over %s with Via %s, want UDP", m.network, via.Value())
	}
}

// TestLargeRequestWithoutTCPListener: with no TCP listener the gateway
// warns at start, naming the key, and sends large requests over UDP.
func TestLargeRequestWithoutTCPListener(t *testing.T) {
	var logs lockedBuf
	h := newHop(t, true)
	g := startToward(t, h, ListenConfig{UDP: "127.0.0.1:0"}, slog.New(slog.NewTextHandler(&logs, nil)))
	if s := logs.String(); !strings.Contains(s, "level=WARN") || !strings.Contains(s, "listen.tcp") {
		t.Fatalf("no start-up warning naming listen.tcp in %q", s)
	}
	if m := dialBusy(t, g, h, largeSDP()); m.network != "udp" {
		t.Fatalf("INVITE over %s, want UDP", m.network)
	}
}

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestUDPMaxDatagramValidated(t *testing.T) {
	for _, n := range []int{1299, 65508} {
		err := Config{Listen: ListenConfig{UDP: "127.0.0.1:0"}, Domain: "example.com", UDPMaxDatagram: n}.Validate()
		if err == nil || !strings.Contains(err.Error(), "udp_max_datagram") {
			t.Errorf("udp_max_datagram %d: %v", n, err)
		}
	}
}
