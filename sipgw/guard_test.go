package sipgw

import (
	"bufio"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

func startGuarded(t *testing.T) *UserAgent {
	t.Helper()
	return startTest(t, Config{Listen: ListenConfig{UDP: "127.0.0.1:0", TCP: "127.0.0.1:0"}, Domain: "example.com"}, nil)
}

// request is an OPTIONS from the client at local over network, with
// extra fields; id makes its Call-ID and branch.
func request(network, local, id, extra string) string {
	return "OPTIONS sip:gw@example.com SIP/2.0\r\n" +
		"Via: SIP/2.0/" + strings.ToUpper(network) + " " + local + ";branch=z9hG4bK" + id + ";rport\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:probe@example.com>;tag=p1\r\nTo: <sip:gw@example.com>\r\n" +
		"Call-ID: " + id + "\r\nCSeq: 1 OPTIONS\r\n" + extra + "Content-Length: 0\r\n\r\n"
}

// readResponse reads one response (no body) and returns its status line
// and its header section.
func readResponse(t *testing.T, r *bufio.Reader) (status, head string, err error) {
	t.Helper()
	var b strings.Builder
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return "", b.String(), err
		}
		if line == "\r\n" {
			break
		}
		b.WriteString(line)
	}
	head = b.String()
	status, _, _ = strings.Cut(head, "\r\n")
	return status, head, nil
}

// TestGuardUDP: over UDP a malformed request is answered at its source
// (rport), garbage is dropped, a request only sipgo refuses is answered
// from its bytes, and good requests still reach sipgo, in order.
func TestGuardUDP(t *testing.T) {
	g := startGuarded(t)
	c, err := net.Dial("udp", g.Addr("udp"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	local := c.LocalAddr().String()
	r := bufio.NewReader(c)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	expect := func(send, wantStatus, wantCallID string) string {
		t.Helper()
		if _, err := c.Write([]byte(send)); err != nil {
			t.Fatal(err)
		}
		status, head, err := readResponse(t, r)
		if err != nil {
			t.Fatalf("waiting for %q: %v", wantStatus, err)
		}
		if status != wantStatus || !strings.Contains(head, "Call-ID: "+wantCallID+"\r\n") {
			t.Fatalf("got %q, want %q for %s:\n%s", status, wantStatus, wantCallID, head)
		}
		return head
	}
	head := expect(strings.Replace(request("udp", local, "u1", ""), "Content-Length: 0", "Content-Length: 10", 1),
		"SIP/2.0 400 Bad Request (Content-Length exceeds the datagram)", "u1")
	_, port, _ := net.SplitHostPort(local)
	if !strings.Contains(head, ";rport="+port+";received=127.0.0.1") {
		t.Errorf("no rport in\n%s", head)
	}
	// Garbage, then a good OPTIONS: the next answer is the OPTIONS's.
	if _, err := c.Write([]byte("\x16\x03\x01 not SIP\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	expect(request("udp", local, "u2", ""), "SIP/2.0 200 OK", "u2")
	// Only sipgo's parser refuses this Contact.
	expect(request("udp", local, "u3", "Contact: <sip:probe@example.com\r\n"), "SIP/2.0 400 Bad Request (malformed Contact)", "u3")
	expect(request("udp", local, "u4", ""), "SIP/2.0 200 OK", "u4")
	expect(request("udp", local, "u5", "Require: nosuchthing\r\n"), "SIP/2.0 420 Bad Extension", "u5")
	if a, d := g.guard.answered.Load(), g.guard.dropped.Load(); a != 3 || d != 1 {
		t.Errorf("answered %d, dropped %d; want 3, 1", a, d)
	}
}

// TestGuardTCP: over TCP the answer comes on the same connection; a
// broken framing, or a request sipgo cannot parse, costs only that
// connection; other rejections keep it.
func TestGuardTCP(t *testing.T) {
	g := startGuarded(t)
	dial := func() (net.Conn, *bufio.Reader, string) {
		t.Helper()
		c, err := net.Dial("tcp", g.Addr("tcp"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		return c, bufio.NewReader(c), c.LocalAddr().String()
	}
	expect := func(r *bufio.Reader, wantStatus string) {
		t.Helper()
		status, head, err := readResponse(t, r)
		if err != nil || status != wantStatus {
			t.Fatalf("got %q (%v), want %q\n%s", status, err, wantStatus, head)
		}
	}
	expectClosed := func(r *bufio.Reader) {
		t.Helper()
		if b, err := r.ReadByte(); !errors.Is(err, io.EOF) {
			t.Fatalf("connection still open: %q %v", b, err)
		}
	}

	// Two requests in one write, one of them refused with 420: the
	// connection serves both, then a keep-alive ping (RFC 5626), then
	// another request.
	c1, r1, l1 := dial()
	if _, err := c1.Write([]byte(request("tcp", l1, "t1", "") + request("tcp", l1, "t2", "Require: nosuchthing\r\n"))); err != nil {
		t.Fatal(err)
	}
	// The 420 is written as the request is read, the 200 once sipgo's
	// handler ran: either may come first.
	first, _, _ := readResponse(t, r1)
	second, _, _ := readResponse(t, r1)
	if got := first + " | " + second; got != "SIP/2.0 200 OK | SIP/2.0 420 Bad Extension" && got != "SIP/2.0 420 Bad Extension | SIP/2.0 200 OK" {
		t.Fatalf("answers %s", got)
	}
	if _, err := c1.Write([]byte("\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	if pong, err := r1.Peek(2); err != nil || string(pong) != "\r\n" {
		t.Fatalf("keep-alive answered %q %v", pong, err)
	}
	_, _ = r1.Discard(2)
	if _, err := c1.Write([]byte(request("tcp", l1, "t3", ""))); err != nil {
		t.Fatal(err)
	}
	expect(r1, "SIP/2.0 200 OK")

	// A bad Content-Length loses the framing: 400, then the close.
	c2, r2, l2 := dial()
	if _, err := c2.Write([]byte(strings.Replace(request("tcp", l2, "t4", ""), "Content-Length: 0", "Content-Length: -1", 1))); err != nil {
		t.Fatal(err)
	}
	expect(r2, "SIP/2.0 400 Bad Request (malformed Content-Length)")
	expectClosed(r2)

	// sipgo cannot parse this one and closes; the answer goes first.
	c3, r3, l3 := dial()
	if _, err := c3.Write([]byte(request("tcp", l3, "t5", "Contact: \"x <sip:a@example.com>\r\n"))); err != nil {
		t.Fatal(err)
	}
	expect(r3, "SIP/2.0 400 Bad Request (malformed Contact)")
	expectClosed(r3)

	// A message longer than sipgo's read buffer goes to it in pieces.
	big := strings.Replace(request("tcp", l1, "t7", "Content-Type: text/plain\r\n"), "Content-Length: 0", "Content-Length: 40000", 1) + strings.Repeat("x", 40000)
	if _, err := c1.Write([]byte(big)); err != nil {
		t.Fatal(err)
	}
	expect(r1, "SIP/2.0 200 OK")

	// sipgo gives up on the first piece of a long one: answered all the same.
	c4, r4, l4 := dial()
	bad := strings.Replace(request("tcp", l4, "t8", "Contact: <sip:x@example.com\r\nContent-Type: text/plain\r\n"), "Content-Length: 0", "Content-Length: 40000", 1) + strings.Repeat("x", 40000)
	if _, err := c4.Write([]byte(bad)); err != nil {
		t.Fatal(err)
	}
	expect(r4, "SIP/2.0 400 Bad Request (malformed Contact)")
	expectClosed(r4)

	// The first connection is still served.
	if _, err := c1.Write([]byte(request("tcp", l1, "t6", ""))); err != nil {
		t.Fatal(err)
	}
	expect(r1, "SIP/2.0 200 OK")
}
