// Package connlimit guards a net.Listener against descriptor exhaustion.
// It caps the connections open at once, in total and per source address
// (an IPv4 address, an IPv6 /64), and closes a connection over a cap the
// moment it is accepted, before TLS or HTTP spend anything on it. A
// connection counts until it is closed, whoever closes it: net/http after
// an idle timeout, or coder/websocket when a hijacked WebSocket ends.
//
// Start with [New]; [Capacity] derives a total cap from the process's
// descriptor limit ([DescriptorLimit]).
package connlimit

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
)

// Options configure a Listener; nil means no caps.
type Options struct {
	// Max is the most connections open at once; <= 0: no cap.
	Max int
	// MaxPerAddress is the most connections open at once from one source
	// address (IPv4 /32, IPv6 /64); <= 0: no cap.
	MaxPerAddress int
	// Exempt lists source prefixes that MaxPerAddress does not apply to:
	// trusted reverse proxies, which carry many clients on one address.
	// Max still applies to them.
	Exempt []netip.Prefix
	// Logger hears of refusals, at most logarithmically often. Default:
	// discard.
	Logger *slog.Logger
}

// Reason says which cap refused a connection; it is the "reason" label of
// the refusal counter.
type Reason uint8

const (
	// ReasonTotal: the listener had Max connections open.
	ReasonTotal Reason = iota
	// ReasonAddress: the source address had MaxPerAddress open.
	ReasonAddress
	numReasons
)

func (r Reason) String() string {
	switch r {
	case ReasonTotal:
		return "total"
	case ReasonAddress:
		return "address"
	}
	return fmt.Sprintf("Reason(%d)", uint8(r))
}

// Listener is a net.Listener whose Accept returns only connections within
// the caps; the others it closes at once and counts. It is safe for
// concurrent use.
type Listener struct {
	net.Listener
	max, perAddr int
	exempt       []netip.Prefix
	log          *slog.Logger

	mu     sync.Mutex
	open   int
	byAddr map[netip.Addr]int

	refused [numReasons]atomic.Uint64
}

// New wraps ln. Closing the Listener closes ln; connections already
// accepted stay open and keep counting until they close.
func New(ln net.Listener, opts *Options) *Listener {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Listener{Listener: ln, max: o.Max, perAddr: o.MaxPerAddress, exempt: o.Exempt, log: o.Logger,
		byAddr: map[netip.Addr]int{}}
}

// Accept waits for a connection within the caps. Connections over a cap
// are closed without a byte written (answering them, say with an HTTP 503,
// would need a TLS handshake and a request read first: the very work a
// flood wants us to do) and never returned.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key, keyed := l.key(c.RemoteAddr())
		if r, ok := l.take(key, keyed); !ok {
			// Counted before the close, so that whoever sees the close
			// also sees the count.
			l.refuse(r, key)
			c.Close()
			continue
		}
		return &conn{Conn: c, l: l, key: key, keyed: keyed}, nil
	}
}

// key is the per-address key of a remote address; keyed is false when the
// per-address cap does not apply (no cap, an exempt proxy, or not IP).
func (l *Listener) key(a net.Addr) (netip.Addr, bool) {
	if l.perAddr <= 0 {
		return netip.Addr{}, false
	}
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return netip.Addr{}, false
	}
	ip, ok := netip.AddrFromSlice(ta.IP)
	if !ok {
		return netip.Addr{}, false
	}
	ip = ip.Unmap().WithZone("")
	for _, p := range l.exempt {
		if p.Contains(ip) {
			return netip.Addr{}, false
		}
	}
	if ip.Is6() {
		p, _ := ip.Prefix(64) // cannot fail: 64 bits of an IPv6 address
		ip = p.Addr()
	}
	return ip, true
}

func (l *Listener) take(key netip.Addr, keyed bool) (Reason, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.max > 0 && l.open >= l.max {
		return ReasonTotal, false
	}
	if keyed {
		if l.byAddr[key] >= l.perAddr {
			return ReasonAddress, false
		}
		l.byAddr[key]++
	}
	l.open++
	return 0, true
}

func (l *Listener) release(key netip.Addr, keyed bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if keyed {
		if n := l.byAddr[key] - 1; n > 0 {
			l.byAddr[key] = n
		} else {
			delete(l.byAddr, key)
		}
	}
}

func (l *Listener) refuse(r Reason, key netip.Addr) {
	n := l.refused[r].Add(1)
	if n&(n-1) == 0 {
		// Logged at 1, 2, 4, 8... refusals: a flood cannot flood the log.
		l.log.Warn("connection refused: cap reached", "reason", r.String(), "address", key, "refusals", n)
	}
}

// Open returns how many accepted connections are open.
func (l *Listener) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open
}

// Refused returns how many connections the cap named by r has refused.
func (l *Listener) Refused(r Reason) uint64 { return l.refused[r].Load() }

// conn gives its slot back when closed, once.
type conn struct {
	net.Conn
	l      *Listener
	key    netip.Addr
	keyed  bool
	closed atomic.Bool
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	if c.closed.CompareAndSwap(false, true) {
		c.l.release(c.key, c.keyed)
	}
	return err
}

// CloseWrite lets net/http half-close a TCP connection before closing it
// (its lingering close), as it does on a bare *net.TCPConn.
func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// SyscallConn exposes the descriptor, as *net.TCPConn does:
// transport/ws reads a WebSocket through it so that an idle one holds no
// read buffer.
func (c *conn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errNotSyscall
}

var errNotSyscall = errors.New("connlimit: connection has no descriptor")

// ErrNoRoom is returned by Capacity when the descriptor limit leaves no
// room for connections after the reserve.
var ErrNoRoom = errors.New("connlimit: descriptor limit leaves no room for connections")

// minConns is the least total cap Capacity returns: fewer connections
// than this is a misconfigured machine, better refused at start-up.
const minConns = 16

// Capacity returns the total cap that keeps reserve descriptors of a soft
// limit of soft free for everything else of the process (SIP sockets, the
// store, files, the metrics and profiling listeners). reserve <= 0 derives
// one: an eighth of the limit, between 64 and 4096.
func Capacity(soft uint64, reserve int) (int, error) {
	if reserve <= 0 {
		reserve = int(min(max(soft/8, 64), 4096))
	}
	if soft > 1<<31 {
		soft = 1 << 31
	}
	n := int(soft) - reserve
	if n < minConns {
		return 0, fmt.Errorf("%w: limit %d, reserve %d (raise ulimit -n)", ErrNoRoom, soft, reserve)
	}
	return n, nil
}
