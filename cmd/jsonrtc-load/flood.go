package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/coder/websocket"
	"github.com/jsonrtc/jsonrtc/internal/flood"
	"github.com/jsonrtc/jsonrtc/protocol"
)

// The flood mode is the attacker of docs/security.md's flood figures, in
// a process of its own, so that it can run on cores (or, on loopback
// aliases, from an address) apart from the gateway's while a relay run
// measures what a well-behaved client sees. It opens raw sockets one after
// another, as fast as the gateway's handshake limit lets it, and floods
// each with one kind of frame as fast as the socket takes them, until the
// gateway closes it.

// floodKinds are the frames a flood can send; sid is the socket's
// session, i the frame's index on the socket.
var floodKinds = map[string]func(sid string, i int) string{
	"valid":     func(sid string, i int) string { return floodSend(sid, i+2) },
	"gaps":      func(sid string, i int) string { return floodSend(sid, 2*i+3) },
	"pings":     func(string, int) string { return "ping" },
	"malformed": func(string, int) string { return `{"control":[` },
	"duplicates": func(sid string, _ int) string {
		return floodSend(sid, 1)
	},
	// Connects of an identity at its session limit (one session, held by
	// the flood itself): each is refused before a session exists.
	"connects": nil,
}

// floodConnect is the connect of the flood's held identity.
func floodConnect(prefix string) string { return flood.Connect(prefix + "-held@load.test") }

func floodSend(sid string, seq int) string {
	return `{"control":{"type":"request","package_type":"messaging","session_id":"` + sid + `","sequence":` + strconv.Itoa(seq) +
		`},"header":{"action":"send","target":"nobody@load.test"},"payload":{"body":"x"}}`
}

// floodReport is what a flood did to its own sockets.
type floodReport struct {
	sockets, refused int
	sent, answered   int64
	closes           map[websocket.StatusCode]int
}

func (r *floodReport) print(w io.Writer, kind string, d time.Duration) {
	var closes []string
	for c, n := range r.closes {
		closes = append(closes, fmt.Sprintf("%d ×%d", c, n))
	}
	fmt.Fprintf(w, "flood %s for %v: %d sockets (%d handshakes refused), %d frames sent, %d answered, closes: %s\n",
		kind, d.Round(time.Millisecond), r.sockets, r.refused, r.sent, r.answered, strings.Join(closes, ", "))
}

// runFlood runs kind's flood against url for d.
func runFlood(ctx context.Context, url, prefix, kind string, d time.Duration) *floodReport {
	rep := &floodReport{closes: map[websocket.StatusCode]int{}}
	frame := floodKinds[kind]
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	presession := kind == "connects"
	if presession {
		// The identity's one session (limits: sessions 1), held for the
		// whole flood, so that every other connect of it is refused.
		held, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: []string{protocol.SubprotocolJSONrtc}})
		if err == nil {
			defer held.CloseNow()
			held.Write(ctx, websocket.MessageText, []byte(floodConnect(prefix)))
			held.Read(ctx)
			go func() {
				for {
					if _, _, err := held.Read(context.Background()); err != nil {
						return
					}
				}
			}()
		}
		connect := floodConnect(prefix)
		frame = func(string, int) string { return connect }
	}
	for n := 0; ctx.Err() == nil; n++ {
		connect := ""
		if !presession {
			connect = flood.Connect(fmt.Sprintf("%s-flood-%d@load.test", prefix, n))
		}
		res, err := flood.Socket(ctx, url, connect, frame)
		if err != nil {
			// Refused (429): retrying at once would turn this into a
			// handshake flood, which is another measurement.
			rep.refused++
			select {
			case <-time.After(20 * time.Millisecond):
			case <-ctx.Done():
			}
			continue
		}
		rep.sockets++
		rep.sent += res.Sent
		rep.answered += res.Answered
		rep.closes[res.Code]++
	}
	return rep
}
