//go:build unix

package ws

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"time"
)

// rawReads: sock waits for readability through the connection's RawConn
// and only then takes a buffer.
const rawReads = true

// fill reads what the socket has into a pooled buffer. The read system
// call is made from inside RawConn.Read, which parks the goroutine on the
// runtime's poller while it would block: an idle session holds no buffer,
// and a busy one makes the same single read call per wake-up as
// net.Conn.Read.
//
// With idle > 0, a wait that lasts longer than idle ends with errIdleWait
// (a read deadline armed only once the socket has nothing to read, and
// cleared after).
func (s *sock) fill(idle time.Duration) error {
	var n int
	var errno error
	armed := false
	err := s.raw.Read(func(fd uintptr) bool {
		if s.buf == nil {
			s.buf = readAheadPool.Get().(*[]byte)
		}
		for {
			n, errno = syscall.Read(int(fd), *s.buf)
			if errno != syscall.EINTR {
				break
			}
		}
		if errno == syscall.EAGAIN {
			readAheadPool.Put(s.buf)
			s.buf = nil
			if idle > 0 && !armed {
				armed = s.Conn.SetReadDeadline(time.Now().Add(idle)) == nil
			}
			return false
		}
		return true
	})
	if armed {
		s.Conn.SetReadDeadline(time.Time{})
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return errIdleWait
		}
	}
	if err == nil && errno != nil {
		err = &net.OpError{Op: "read", Net: "tcp", Source: s.LocalAddr(), Addr: s.RemoteAddr(), Err: os.NewSyscallError("read", errno)}
	}
	if err == nil && n <= 0 {
		err = io.EOF
	}
	if err != nil {
		if s.buf != nil {
			readAheadPool.Put(s.buf)
			s.buf = nil
		}
		return err
	}
	s.pending = (*s.buf)[:n]
	return nil
}
