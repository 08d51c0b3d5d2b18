package testenv

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
)

// Kamailio and SIPp take a port number on their command line and bind it
// themselves, so a test must pick a number that stays free until they do.
// A number the kernel handed out for port 0 and then freed is in its
// ephemeral range, where the next outgoing connection of any process may
// take it, and two test processes (go test runs packages in parallel) may
// pick the same one: two interop tests of one run failed with "Address
// already in use".
//
// Port therefore picks from a range below the ephemeral range, which the
// kernel never assigns by itself, and locks the number for the test's
// lifetime with a TCP listener on its twin in the lock range: a listener
// is a lock any process takes atomically (the SDK's Node harness,
// sdk/js/e2e/sip.mjs, takes the same locks) and the kernel releases when
// its holder exits, even by a crash.
const (
	portBase  = 20000 // ports handed out: [portBase, portBase+portCount)
	portCount = 5000
	lockBase  = portBase + portCount // port p's lock: a listener on lockBase+(p-portBase)
)

// Port returns a port on 127.0.0.1, free for UDP and TCP, that no other
// caller of Port (in any process) gets until t's cleanup: for a peer
// started by the test (register its cleanup after calling Port, so that
// the peer is stopped before the port is released). It fails t if the
// kernel's ephemeral range overlaps the reserved ranges or every port is
// taken.
func Port(t testing.TB) int {
	t.Helper()
	return Ports(t, 1)
}

// Ports is Port for n consecutive ports, returning the first: for a peer
// that binds a port next to the one it is given (baresip listens for TLS
// on its SIP port plus one).
func Ports(t testing.TB, n int) int {
	t.Helper()
	if err := checkEphemeral(); err != nil {
		t.Fatal(err)
	}
	first := rand.IntN(portCount - n + 1)
	for i := range portCount - n + 1 {
		off := (first + i) % (portCount - n + 1)
		if locks, ok := reserve(off, n); ok {
			t.Cleanup(func() {
				for _, l := range locks {
					l.Close()
				}
			})
			return portBase + off
		}
	}
	t.Fatalf("no %d free consecutive ports in %d-%d", n, portBase, portBase+portCount-1)
	return 0
}

// reserve takes the locks of the n ports from portBase+off, all bindable,
// or none.
func reserve(off, n int) ([]net.Listener, bool) {
	locks := make([]net.Listener, 0, n)
	for k := range n {
		lock, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(lockBase+off+k))
		if err == nil && !bindable(portBase+off+k) {
			// In use by something else, or its last user still exiting.
			lock.Close()
			err = net.ErrClosed
		}
		if err != nil {
			for _, l := range locks {
				l.Close()
			}
			return nil, false
		}
		locks = append(locks, lock)
	}
	return locks, true
}

// bindable reports whether port is free on 127.0.0.1 for UDP and TCP
// (Kamailio listens on both with one number).
func bindable(port int) bool {
	addr := "127.0.0.1:" + strconv.Itoa(port)
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return false
	}
	pc.Close()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

// checkEphemeral makes sure the kernel's ephemeral range (Linux's
// ip_local_port_range) stays clear of the ports and locks Port uses.
func checkEphemeral() error {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return nil // not Linux: nothing to check against
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return nil
	}
	lo, err1 := strconv.Atoi(f[0])
	hi, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil {
		return nil
	}
	if lo < lockBase+portCount && hi >= portBase {
		return fmt.Errorf("the ephemeral port range %d-%d (net.ipv4.ip_local_port_range) overlaps the test ports %d-%d", lo, hi, portBase, lockBase+portCount-1)
	}
	return nil
}
