//go:build !unix

package ws

// rawReads is false where the descriptor cannot be read directly: sock
// reads from the connection itself.
const rawReads = false

func (s *sock) fill() error { panic("ws: fill without raw reads") }
