// Package flood is the attacker of the gateway's flood measurements
// (docs/security.md): one raw WebSocket flooded with one kind of frame, as
// fast as the socket takes them, until the gateway closes it. The load
// tool (jsonrtc-load -mode flood) and the flood suite (test/integration)
// both run their sockets through Socket, so that both measure the same
// attacker.
package flood

import (
	"context"
	"sync/atomic"

	"github.com/coder/websocket"
	"github.com/jsonrtc/jsonrtc/protocol"
)

// Result is what one flooded socket did.
type Result struct {
	// Code is the close code the gateway sent, -1 when none came.
	Code websocket.StatusCode
	// Sent and Answered count the flood's frames and the frames that
	// came back.
	Sent, Answered int64
}

// Socket opens a socket to url (subprotocol jsonrtc), sends connect
// first when it is not empty and takes the session id from its answer,
// then sends frame(sid, 0), frame(sid, 1)... until the gateway closes the
// socket or ctx ends. The error is the handshake's (a refusal, say 429):
// then nothing was sent.
func Socket(ctx context.Context, url, connect string, frame func(sid string, i int) string) (Result, error) {
	c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: []string{protocol.SubprotocolJSONrtc}})
	if err != nil {
		return Result{}, err
	}
	c.SetReadLimit(1 << 20)
	sid := ""
	if connect != "" {
		c.Write(ctx, websocket.MessageText, []byte(connect))
		if _, data, err := c.Read(ctx); err == nil {
			if f, err := protocol.Decode(data); err == nil {
				sid = f.Control.SessionID
			}
		}
	}
	var answered atomic.Int64
	closed := make(chan websocket.StatusCode, 1)
	go func() {
		for {
			if _, _, err := c.Read(context.Background()); err != nil {
				closed <- websocket.CloseStatus(err)
				return
			}
			answered.Add(1)
		}
	}()
	res := Result{Code: -1}
	got := false
send:
	for i := 0; ; i++ {
		select {
		case res.Code = <-closed:
			got = true
			break send
		default:
		}
		if c.Write(ctx, websocket.MessageText, []byte(frame(sid, i))) != nil {
			break
		}
		res.Sent++
	}
	c.CloseNow()
	if !got {
		res.Code = <-closed
	}
	res.Answered = answered.Load()
	return res, nil
}

// Connect is the connect request of identity, as a flood's first frame.
func Connect(identity string) string {
	return `{"control":{"type":"request","package_type":"register","sequence":1},"header":{"action":"connect","initiator":"` + identity + `"}}`
}
