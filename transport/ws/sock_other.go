//go:build !unix

package ws

import "time"

// rawReads is false where the descriptor cannot be read directly: sock
// reads from the connection itself.
const rawReads = false

func (s *sock) fill(time.Duration) error { panic("ws: fill without raw reads") }
