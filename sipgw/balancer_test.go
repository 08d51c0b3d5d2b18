package sipgw

import (
	"bufio"
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// invite is a new INVITE to ruri from the client at local over UDP.
func invite(ruri, local, id string) string {
	body := "v=0\r\no=bob 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
	return "INVITE " + ruri + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + local + ";branch=z9hG4bK" + id + ";rport\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:bob@example.net>;tag=b1\r\nTo: <" + ruri + ">\r\n" +
		"Call-ID: " + id + "\r\nCSeq: 1 INVITE\r\nContact: <sip:bob@" + local + ">\r\n" +
		"Content-Type: application/sdp\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
}

// TestBalancerAOR (docs/cluster.md, "SIP deployments"): a new INVITE to
// an AOR of our domain, not to a binding's Contact, rings the identity
// when it comes from one of sip.balancers (127.0.0.2 here), a node of the
// sip.identity_domains too; from any other address (127.0.0.1) it is
// refused 404, as without the key, and so is an AOR of another domain
// from the balancer. Its 480 carries Retry-After (aorRetryAfter) unless
// the call rang.
func TestBalancerAOR(t *testing.T) {
	g := startTest(t, Config{Listen: ListenConfig{UDP: "127.0.0.1:0"}, Domain: "example.com",
		IdentityDomains: map[string]string{"corp.test": "sip.corp.test"}, Balancers: []string{"127.0.0.2/32"}}, nil)
	calls := make(chan *Call, 4)
	g.OnIncomingCall(func(c *Call) { calls <- c })
	send := func(from, ruri, id string) (status, head string) {
		t.Helper()
		to, err := net.ResolveUDPAddr("udp", g.Addr("udp"))
		if err != nil {
			t.Fatal(err)
		}
		c, err := net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP(from)}, to)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte(invite(ruri, c.LocalAddr().String(), id))); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		r := bufio.NewReader(c)
		for {
			status, head, err := readResponse(t, r)
			if err != nil {
				t.Fatalf("%s from %s: %v", ruri, from, err)
			}
			if strings.HasPrefix(status, "SIP/2.0 1") {
				continue
			}
			return status, head
		}
	}
	// reject runs beside send: it answers the call send waits on.
	reject := func(want string, code int, ring bool) {
		select {
		case c := <-calls:
			if c.Identity() != want {
				t.Errorf("call for %q, want %q", c.Identity(), want)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if ring {
				if err := c.Progress(ctx, 180, nil, false); err != nil {
					t.Error(err)
				}
			}
			if err := c.Reject(ctx, code, ""); err != nil {
				t.Error(err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("no incoming call for %s", want)
		}
	}
	go reject("alice@example.com", 486, false)
	if got, _ := send("127.0.0.2", "sip:alice@example.com", "b1"); got != "SIP/2.0 486 Busy Here" {
		t.Errorf("AOR from the balancer: %q, want the call's 486", got)
	}
	go reject("carol@corp.test", 486, false)
	if got, _ := send("127.0.0.2", "sip:carol@sip.corp.test", "b2"); got != "SIP/2.0 486 Busy Here" {
		t.Errorf("identity domain's AOR from the balancer: %q, want the call's 486", got)
	}
	if got, _ := send("127.0.0.1", "sip:alice@example.com", "b3"); got != "SIP/2.0 404 Not Found" {
		t.Errorf("AOR from elsewhere: %q, want 404", got)
	}
	if got, _ := send("127.0.0.2", "sip:alice@example.org", "b4"); got != "SIP/2.0 404 Not Found" {
		t.Errorf("another domain's AOR from the balancer: %q, want 404", got)
	}
	// No session to ring (its node died and it has not resumed yet): the
	// 480 says when to try again.
	go reject("alice@example.com", 480, false)
	if got, head := send("127.0.0.2", "sip:alice@example.com", "b5"); got != "SIP/2.0 480 Temporarily Unavailable" ||
		!strings.Contains(head, "\r\nRetry-After: "+aorRetryAfter+"\r\n") {
		t.Errorf("480 to an AOR from the balancer:\n%s\nwant a 480 with Retry-After: %s", head, aorRetryAfter)
	}
	// A call that rang and then ended 480 (no answer) has no retry time.
	go reject("alice@example.com", 480, true)
	if got, head := send("127.0.0.2", "sip:alice@example.com", "b6"); got != "SIP/2.0 480 Temporarily Unavailable" ||
		strings.Contains(head, "Retry-After") {
		t.Errorf("480 after a 180 to an AOR from the balancer:\n%s\nwant a 480 without Retry-After", head)
	}
	select {
	case c := <-calls:
		t.Errorf("a call for %s", c.Identity())
	default:
	}
}

// TestBalancersValidate: each entry is an address or a prefix, named by
// its index.
func TestBalancersValidate(t *testing.T) {
	base := Config{Listen: ListenConfig{UDP: "127.0.0.1:0"}, Domain: "example.com"}
	base.Balancers = []string{"10.0.0.5", "10.1.0.0/16", "::1"}
	if err := base.Validate(); err != nil {
		t.Fatal(err)
	}
	base.Balancers = []string{"10.0.0.5", "lb.example.com"}
	if err := base.Validate(); err == nil || !strings.Contains(err.Error(), "balancers[1]") {
		t.Fatalf("a host name: %v, want balancers[1] named", err)
	}
}
