package connlimit

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"
)

// serve accepts from l until it is closed, handing each connection to
// the test.
func serve(t *testing.T, opts *Options) (*Listener, <-chan net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := New(ln, opts)
	ch := make(chan net.Conn, 64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			ch <- c
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		close(ch)
		for c := range ch {
			c.Close()
		}
	})
	return l, ch
}

// dialFrom connects from the loopback address src (127.0.0.x needs no
// set-up on Linux).
func dialFrom(t *testing.T, l net.Listener, src string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// refused reports whether the listener closed c without a byte.
func refused(t *testing.T, c net.Conn) bool {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("connection neither accepted nor refused")
	}
	return err != nil
}

func accepted(t *testing.T, ch <-chan net.Conn) net.Conn {
	t.Helper()
	select {
	case c := <-ch:
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("no connection accepted")
		return nil
	}
}

func TestPerAddressCap(t *testing.T) {
	l, ch := serve(t, &Options{MaxPerAddress: 2})
	var held []net.Conn
	for range 2 {
		dialFrom(t, l, "127.0.0.2")
		held = append(held, accepted(t, ch))
	}
	over := dialFrom(t, l, "127.0.0.2")
	if !refused(t, over) {
		t.Fatal("third connection from one address was not refused")
	}
	// Another address is not affected.
	dialFrom(t, l, "127.0.0.3")
	accepted(t, ch)
	if got := l.Refused(ReasonAddress); got != 1 {
		t.Fatalf("address refusals %d, want 1", got)
	}
	// A closed connection gives its slot back, once.
	held[0].Close()
	held[0].Close()
	dialFrom(t, l, "127.0.0.2")
	accepted(t, ch)
	if n := l.Open(); n != 3 {
		t.Fatalf("open %d, want 3", n)
	}
}

func TestTotalCapAndExempt(t *testing.T) {
	l, ch := serve(t, &Options{Max: 3, MaxPerAddress: 1, Exempt: []netip.Prefix{netip.MustParsePrefix("127.0.0.4/32")}})
	for range 3 {
		// An exempt proxy may exceed the per-address cap...
		dialFrom(t, l, "127.0.0.4")
		accepted(t, ch)
	}
	// ...but not the total.
	if c := dialFrom(t, l, "127.0.0.5"); !refused(t, c) {
		t.Fatal("connection over the total cap was not refused")
	}
	if l.Refused(ReasonTotal) != 1 || l.Refused(ReasonAddress) != 0 {
		t.Fatalf("refusals total %d address %d", l.Refused(ReasonTotal), l.Refused(ReasonAddress))
	}
}

func TestAcceptedConnWorks(t *testing.T) {
	l, ch := serve(t, &Options{Max: 1})
	c := dialFrom(t, l, "127.0.0.1")
	s := accepted(t, ch)
	// transport/ws needs the descriptor for its buffer-free idle reads.
	if sc, ok := s.(syscall.Conn); !ok {
		t.Fatal("accepted connection hides its descriptor")
	} else if _, err := sc.SyscallConn(); err != nil {
		t.Fatal(err)
	}
	go func() { s.Write([]byte("hi")); s.(interface{ CloseWrite() error }).CloseWrite() }()
	b, err := io.ReadAll(c)
	if err != nil || string(b) != "hi" {
		t.Fatalf("read %q, %v", b, err)
	}
}

func TestCapacity(t *testing.T) {
	cases := []struct {
		soft    uint64
		reserve int
		want    int
		err     bool
	}{
		{20000, 0, 20000 - 2500, false},
		{1024, 0, 1024 - 128, false},
		{1 << 20, 0, 1<<20 - 4096, false},
		{256, 0, 256 - 64, false},
		{20000, 1000, 19000, false},
		{70, 0, 0, true},
		{1000, 990, 0, true},
	}
	for _, c := range cases {
		got, err := Capacity(c.soft, c.reserve)
		if (err != nil) != c.err || got != c.want {
			t.Errorf("Capacity(%d, %d) = %d, %v; want %d (error %v)", c.soft, c.reserve, got, err, c.want, c.err)
		}
	}
	if _, err := DescriptorLimit(); err != nil {
		t.Fatal(err)
	}
}

// TestKeys: the per-address cap counts an IPv6 client by its /64 (one
// host has a whole /64) and an IPv4-mapped address as IPv4.
func TestKeys(t *testing.T) {
	l := New(nil, &Options{MaxPerAddress: 1})
	key := func(ip string) netip.Addr {
		k, ok := l.key(&net.TCPAddr{IP: net.ParseIP(ip), Port: 1})
		if !ok {
			t.Fatalf("%s: not keyed", ip)
		}
		return k
	}
	if key("2001:db8:1:2::1") != key("2001:db8:1:2:ffff::9") {
		t.Error("one /64, two keys")
	}
	if key("2001:db8:1:2::1") == key("2001:db8:1:3::1") {
		t.Error("two /64s, one key")
	}
	if key("::ffff:192.0.2.1") != key("192.0.2.1") || key("192.0.2.1") == key("192.0.2.2") {
		t.Error("IPv4 keys")
	}
}
