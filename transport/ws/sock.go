package ws

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"os"
	"sync"
	"syscall"
	"time"
)

// Buffer sizes of the bufio pair handed to coder/websocket at the hijack.
// It keeps them for the socket's life, so net/http's 4 KiB + 4 KiB would be
// most of an idle session's memory. They can be small because the socket
// below them does the real buffering only while there is traffic:
//   - the reader sees bytes that sock already read in one system call
//     (a pooled buffer it holds only while they last), so a small buffer
//     costs copies, not system calls; it is the smallest bufio allows;
//   - the writer only has to hold a whole control frame (at most 2 + 125
//     bytes), so that pongs and close frames go out in one write; data
//     frames are written while sock is corked and reach the socket in one
//     write whatever their size.
const (
	hijackReaderSize = 16
	hijackWriterSize = 256
)

const (
	// readAheadSize is how much one read system call may fetch: several
	// frames of a busy socket, or one SDP-carrying frame.
	readAheadSize = 16 << 10
	// maxCorked bounds what a corked socket holds before writing anyway.
	maxCorked = 64 << 10
	// maxPooledMessage: larger message buffers are left to the collector.
	maxPooledMessage = 64 << 10
)

// Buffer pools: caches without state, shared by every socket so that
// buffers exist only while some socket has bytes in flight.
var (
	readAheadPool = sync.Pool{New: func() any { b := make([]byte, readAheadSize); return &b }}
	corkPool      = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}
	messagePool   = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}
)

// hijacker wraps the ResponseWriter given to websocket.Accept so that the
// hijacked connection is a *sock with small bufio buffers (see above).
type hijacker struct {
	http.ResponseWriter
	writeTimeout time.Duration
	sock         *sock
}

// Unwrap lets http.ResponseController reach the ResponseWriter's other
// optional interfaces.
func (h *hijacker) Unwrap() http.ResponseWriter { return h.ResponseWriter }

func (h *hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	// net/http may have read past the request: a client can send its first
	// frame right behind the handshake. Those bytes come first.
	var pre []byte
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		pre = bytes.Clone(b)
	}
	if brw.Writer.Buffered() > 0 {
		if err := brw.Writer.Flush(); err != nil {
			nc.Close()
			return nil, nil, err
		}
	}
	h.sock = newSock(nc, pre, h.writeTimeout)
	rsize := hijackReaderSize
	if _, isTLS := nc.(*tls.Conn); h.sock.raw == nil && !isTLS {
		// Plain reads straight from the socket: a small buffer would
		// cost system calls. (crypto/tls buffers a whole record itself.)
		rsize = 4 << 10
	}
	return h.sock, bufio.NewReadWriter(bufio.NewReaderSize(h.sock, rsize), bufio.NewWriterSize(h.sock, hijackWriterSize)), nil
}

// sock is the hijacked connection under coder/websocket. It adds:
//   - reads that hold no buffer while the socket is idle (on platforms
//     where the connection exposes its descriptor; see fill);
//   - a write deadline on every write system call, so that a stuck peer is
//     dropped without coder/websocket arming a timer and a
//     context.AfterFunc for each message;
//   - corking: while corked, writes are gathered and go out in one system
//     call when the last cork is removed.
//
// With raw reads, sock also lets Conn.Read wait for the next message
// before calling into coder/websocket (see waitReadable).
type sock struct {
	net.Conn
	raw          syscall.RawConn // nil: plain reads from Conn
	writeTimeout time.Duration

	// rmu guards the read state: coder/websocket reads from the goroutine
	// in Conn.Read and, during a close handshake, from the closer's.
	rmu     sync.Mutex
	pending []byte  // read but not yet consumed, within buf or pre
	buf     *[]byte // pooled, held only while pending is not empty
	// deafUntil, once set (muteReads), makes every read wait until then
	// and fail: a socket being hung up for abuse reads nothing more.
	deafUntil time.Time

	// wmu serialises writes to the socket, including the system call: it is
	// the lock that keeps frames whole on the wire, and a write holding it
	// is bounded by writeTimeout.
	wmu    sync.Mutex
	corks  int
	corked *[]byte // pooled, nil when empty
	werr   error   // sticky: the stream is broken after a failed write
}

func newSock(nc net.Conn, pre []byte, writeTimeout time.Duration) *sock {
	s := &sock{Conn: nc, pending: pre, writeTimeout: writeTimeout}
	if sc, ok := nc.(syscall.Conn); ok && rawReads {
		if raw, err := sc.SyscallConn(); err == nil {
			s.raw = raw
		}
	}
	return s
}

func (s *sock) Read(p []byte) (int, error) {
	if s.raw != nil && len(p) <= hijackReaderSize && len(p) > 1 {
		// The bufio.Reader above is filling its buffer. One byte at a
		// time, it never holds bytes that coder/websocket has not asked
		// for: between messages it is empty, and waitReadable may wait on
		// the socket alone. (Payloads of 16 bytes or more are read past
		// it, straight into the message.)
		p = p[:1]
	}
	s.rmu.Lock()
	defer s.rmu.Unlock()
	if !s.deafUntil.IsZero() {
		// What a flooder sends meanwhile stays in the kernel, where flow
		// control stops it, instead of costing a read and a parse each.
		time.Sleep(time.Until(s.deafUntil))
		return 0, os.ErrDeadlineExceeded
	}
	if len(s.pending) == 0 {
		if s.raw == nil {
			return s.Conn.Read(p)
		}
		if err := s.fill(0); err != nil {
			return 0, err
		}
	}
	return s.take(p), nil
}

// muteReads makes reads read nothing more: each waits until until, then
// fails. A read under way finishes first (rmu).
func (s *sock) muteReads(until time.Time) {
	s.rmu.Lock()
	s.deafUntil = until
	s.rmu.Unlock()
}

func (s *sock) take(p []byte) int {
	n := copy(p, s.pending)
	s.pending = s.pending[n:]
	if len(s.pending) == 0 {
		s.pending = nil
		if s.buf != nil {
			readAheadPool.Put(s.buf)
			s.buf = nil
		}
	}
	return n
}

// waitReadable returns when the socket has bytes to read, or a read would
// fail. Conn.Read calls it before coder/websocket's reader so that an
// idle session's goroutine is parked a few frames deep: a goroutine stack
// shrinks at garbage collection only if less than a quarter of it is in
// use (800 bytes of that are the runtime's guard), and parked under
// coder/websocket's frame reader it uses about 2 KiB. Errors are left for
// the read that follows to report. With idle > 0 it reports whether it
// gave up after idle with nothing to read.
func (s *sock) waitReadable(idle time.Duration) (timedOut bool) {
	if s.raw == nil {
		return false
	}
	s.rmu.Lock()
	defer s.rmu.Unlock()
	if len(s.pending) == 0 {
		return s.fill(idle) == errIdleWait
	}
	return false
}

// errIdleWait ends a wait for readability that lasted its idle bound.
var errIdleWait = errors.New("ws: nothing to read")

// cork makes writes accumulate until the matching uncork.
func (s *sock) cork() {
	s.wmu.Lock()
	s.corks++
	s.wmu.Unlock()
}

// uncork removes a cork; the last one writes what accumulated, and
// returns the error of that write.
func (s *sock) uncork() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.corks--
	if s.corks > 0 {
		return s.werr
	}
	return s.flushLocked()
}

func (s *sock) flushLocked() error {
	if s.corked == nil {
		return s.werr
	}
	b := s.corked
	s.corked = nil
	var err error
	if s.werr == nil {
		_, err = s.writeLocked(*b)
	}
	if cap(*b) <= maxCorked {
		*b = (*b)[:0]
		corkPool.Put(b)
	}
	if err != nil {
		return err
	}
	return s.werr
}

func (s *sock) Write(p []byte) (int, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.werr != nil {
		return 0, s.werr
	}
	if s.corks == 0 {
		return s.writeLocked(p)
	}
	if s.corked == nil {
		s.corked = corkPool.Get().(*[]byte)
	}
	*s.corked = append(*s.corked, p...)
	if len(*s.corked) >= maxCorked {
		if err := s.flushLocked(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// writeLocked writes p under the write deadline. A failed write leaves
// part of a frame on the wire: the socket is closed and stays failed.
func (s *sock) writeLocked(p []byte) (int, error) {
	if s.writeTimeout > 0 {
		if err := s.Conn.SetWriteDeadline(time.Now().Add(s.writeTimeout)); err != nil {
			s.werr = err
			s.Conn.Close()
			return 0, err
		}
	}
	n, err := s.Conn.Write(p)
	if err != nil {
		s.werr = err
		s.Conn.Close()
	}
	return n, err
}
