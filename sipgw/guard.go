package sipgw

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
)

// guard puts the request check of malformed.go on the sockets sipgo
// serves: a net.PacketConn and a net.Listener that sipgo reads through,
// so nothing of sipgo is changed. What the check passes, sipgo may still
// fail to parse (its grammar is its own); the guard notices that too and
// answers from the same raw bytes:
//   - UDP: sipgo reads the next datagram only after it parsed, and
//     handed to its message handlers, the previous one, on the same
//     goroutine. A request not seen by the handler hook (onMessage) by
//     then did not parse.
//   - TCP, TLS: the guard frames the stream and hands sipgo one message
//     per read. sipgo closes a connection whose message did not parse;
//     a close while a request is still with sipgo is that.
type guard struct {
	log    *slog.Logger
	parser *sip.Parser

	// udpSeen: the UDP listener's last request reached sipgo's handlers.
	udpSeen atomic.Bool

	answered atomic.Int64
	dropped  atomic.Int64
}

func newGuard(log *slog.Logger) *guard {
	return &guard{log: log, parser: sip.NewParser()}
}

// onMessage is registered with sipgo's transport layer; it runs on the
// reading goroutine for every message that parsed.
func (gd *guard) onMessage(m sip.Message) {
	if m.Transport() == "UDP" {
		gd.udpSeen.Store(true)
	}
}

// outcome logs and counts a verdict other than pass.
func (gd *guard) outcome(v verdict, network string, from net.Addr) {
	if v.kind == answer {
		gd.answered.Add(1)
		gd.log.Debug("sipgw: malformed request answered", "transport", network, "from", from, "code", v.code, "reason", v.reason)
		return
	}
	gd.dropped.Add(1)
	gd.log.Debug("sipgw: malformed message dropped", "transport", network, "from", from, "close", v.close)
}

// unparsed is the verdict on a request the check passed and sipgo could
// not parse: 400 naming the first field sipgo's header parsers refuse.
func (gd *guard) unparsed(msg []byte, h *head) verdict {
	if _, err := gd.parser.ParseSIP(msg); err == nil {
		return verdict{kind: pass} // not a parse failure after all
	}
	v := reject(400, "Bad Request (unparsable request)")
	parsers := sip.DefaultHeadersParser()
	var line []byte
	eachField(msg, func(name, value []byte) {
		if v.reason != "Bad Request (unparsable request)" {
			return
		}
		canonical := parsedFieldName(name)
		if canonical == "" {
			return
		}
		line = append(append(append(line[:0], name...), ": "...), value...)
		for i, c := range line {
			if c == '\r' || c == '\n' {
				line[i] = ' '
			}
		}
		if _, err := sip.HeadersParser(parsers).ParseHeader(nil, line); err != nil {
			v.reason = "Bad Request (malformed " + canonical + ")"
		}
	})
	if !h.answerable(msg) {
		return verdict{kind: drop}
	}
	return v
}

// parsedFieldName is the canonical name of a field sipgo parses (its
// DefaultHeadersParser), "" for the others.
func parsedFieldName(name []byte) string {
	for _, n := range [...]string{"Via", "From", "To", "Call-ID", "CSeq", "Content-Length", "Max-Forwards", "Contact", "Route", "Record-Route", "Refer-To", "Referred-By", "Content-Type"} {
		if bytes.EqualFold(name, []byte(n)) {
			return n
		}
	}
	if f := fieldOf(name); f >= 0 && len(name) == 1 {
		return fieldNames[f]
	}
	switch {
	case foldEq(name, "m"):
		return "Contact"
	case foldEq(name, "c"):
		return "Content-Type"
	case foldEq(name, "r"):
		return "Refer-To"
	case foldEq(name, "b"):
		return "Referred-By"
	}
	return ""
}

// guardedPacketConn is the UDP listener as sipgo reads it. Only sipgo's
// single read loop calls ReadFrom.
type guardedPacketConn struct {
	net.PacketConn
	gd   *guard
	last []byte // the last request handed to sipgo, until it is seen parsed
	from net.Addr
	out  []byte
}

func (c *guardedPacketConn) ReadFrom(b []byte) (int, net.Addr, error) {
	if len(c.last) > 0 && !c.gd.udpSeen.Load() {
		var h head
		h.parse(c.last)
		c.settle(c.gd.unparsed(c.last, &h), c.last, &h, c.from)
	}
	c.last = c.last[:0]
	for {
		n, from, err := c.PacketConn.ReadFrom(b)
		if err != nil {
			return n, from, err
		}
		msg := b[:n]
		var h head
		h.parse(msg)
		v := h.judge(msg, n)
		if v.kind == pass {
			if !h.response && !h.notRequest {
				c.last = append(c.last, msg...)
				c.from = from
				c.gd.udpSeen.Store(false)
			}
			return n, from, nil
		}
		c.settle(v, msg, &h, from)
	}
}

// settle answers or drops a request: the answer goes to the source
// address, at the Via port unless rport asks for the source port (RFC
// 3261 18.2.2, RFC 3581 4). Never to the Via host: that would make us
// a reflector.
func (c *guardedPacketConn) settle(v verdict, msg []byte, h *head, from net.Addr) {
	if v.kind == pass {
		return
	}
	c.gd.outcome(v, "UDP", from)
	ua, ok := from.(*net.UDPAddr)
	if v.kind != answer || !ok {
		return
	}
	src := ua.AddrPort()
	src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
	hop := parseVia(msg, h.fields[fVia])
	to := &net.UDPAddr{IP: ua.IP, Port: sip.DefaultUdpPort}
	switch {
	case hop.rport > 0:
		to.Port = ua.Port
	case hop.port != 0:
		to.Port = hop.port
	}
	c.out = appendAnswer(c.out[:0], msg, h, v, src)
	if _, err := c.PacketConn.WriteTo(c.out, to); err != nil {
		c.gd.log.Debug("sipgw: answer to a malformed request failed", "to", to, "err", err)
	}
}

// guardedListener hands sipgo guarded connections.
type guardedListener struct {
	net.Listener
	gd      *guard
	network string
}

func (l *guardedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &guardedConn{Conn: c, gd: l.gd, network: l.network}, nil
}

// guardedConn is a stream connection as sipgo reads it: whole messages,
// one per Read (in pieces when longer than sipgo's buffer). Read runs
// on sipgo's reading goroutine only; Close may run anywhere.
type guardedConn struct {
	net.Conn
	gd      *guard
	network string

	in     []byte // read from the socket: in[r:] is not handed on yet
	r      int
	out    []byte // handed to sipgo piece by piece
	outMsg []byte // the whole of the message out is part of
	outReq bool   // outMsg is a request
	err    error  // ends the stream once out is empty

	mu      sync.Mutex
	pending []byte // a request handed to sipgo that it has not come back from
	closed  bool
}

func (c *guardedConn) Read(b []byte) (int, error) {
	if len(c.out) == 0 {
		c.mu.Lock()
		c.pending = nil // sipgo is back for more: the last one parsed
		c.mu.Unlock()
	}
	for {
		if len(c.out) > 0 {
			if c.outReq {
				// Until sipgo comes back for the next message, this one
				// is with it, however many pieces it took so far.
				c.mu.Lock()
				c.pending = c.outMsg
				c.mu.Unlock()
			}
			n := copy(b, c.out)
			c.out = c.out[n:]
			return n, nil
		}
		if c.err != nil {
			return 0, c.err
		}
		if c.frame() {
			continue
		}
		if err := c.fill(); err != nil {
			return 0, err
		}
	}
}

// frame looks at the buffered bytes: it hands on a message (or a run of
// keep-alive CRLFs, RFC 5626 4.4.1), settles a rejected one, or reports
// that more bytes are needed.
func (c *guardedConn) frame() bool {
	buf := c.in[c.r:]
	if len(buf) == 0 {
		return false
	}
	if buf[0] == '\r' || buf[0] == '\n' {
		k := 0
		for k < len(buf) && (buf[k] == '\r' || buf[k] == '\n') {
			k++
		}
		c.handOn(k, false)
		return true
	}
	end := bytes.Index(buf, []byte("\r\n\r\n"))
	if end < 0 {
		if len(buf) > maxMessage {
			c.gd.outcome(verdict{kind: drop, close: true}, c.network, c.RemoteAddr())
			c.err = io.EOF // sipgo closes the connection, quietly: we logged
			return true
		}
		return false
	}
	hdr := buf[:end+4]
	var h head
	h.parse(hdr)
	v := h.judge(hdr, -1)
	if v.close {
		c.settle(v, hdr, &h)
		c.err = io.EOF // sipgo closes the connection, quietly: we logged
		return true
	}
	size := len(hdr) + max(h.clen, 0)
	if len(buf) < size {
		return false // the body is still coming
	}
	if v.kind == pass {
		c.handOn(size, !h.response && !h.notRequest)
		return true
	}
	c.settle(v, hdr, &h)
	c.r += size
	return true
}

func (c *guardedConn) handOn(n int, request bool) {
	c.out = c.in[c.r : c.r+n]
	c.outMsg = c.out
	c.outReq = request
	c.r += n
}

// fill reads more from the socket, keeping what is not handed on yet.
func (c *guardedConn) fill() error {
	if c.r > 0 {
		n := copy(c.in, c.in[c.r:])
		c.in = c.in[:n]
		c.r = 0
	}
	if len(c.in) == cap(c.in) {
		c.in = append(c.in, make([]byte, max(4096, len(c.in)))...)[:len(c.in)]
	}
	n, err := c.Conn.Read(c.in[len(c.in):cap(c.in)])
	c.in = c.in[:len(c.in)+n]
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// settle answers or drops a request on its own connection (RFC 3261
// 18.2.2).
func (c *guardedConn) settle(v verdict, msg []byte, h *head) {
	c.gd.outcome(v, c.network, c.RemoteAddr())
	if v.kind != answer {
		return
	}
	var src netip.AddrPort
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		src = ta.AddrPort()
		src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
	}
	if _, err := c.Conn.Write(appendAnswer(nil, msg, h, v, src)); err != nil {
		c.gd.log.Debug("sipgw: answer to a malformed request failed", "to", c.RemoteAddr(), "err", err)
	}
}

// Close answers a request sipgo is closing the connection over (it did
// not parse), then closes.
func (c *guardedConn) Close() error {
	c.mu.Lock()
	p := c.pending
	c.pending = nil
	already := c.closed
	c.closed = true
	if p != nil && !already {
		var h head
		h.parse(p)
		if v := c.gd.unparsed(p, &h); v.kind != pass {
			// The peer may not read; the connection goes anyway.
			_ = c.Conn.SetWriteDeadline(time.Now().Add(time.Second))
			c.settle(v, p, &h)
		}
	}
	c.mu.Unlock()
	return c.Conn.Close()
}
