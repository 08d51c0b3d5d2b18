package client

import (
	"context"

	"github.com/jsonrtc/jsonrtc/protocol"
)

// Send sends an instant message (messaging send, ext) and waits for the
// answer: the response's code (200 or 202), or an error frame's code
// with a *FrameError. A web recipient gets ext as they are; toward SIP,
// header rules read them ({ext:NAME}, docs/routing.md).
func (c *Client) Send(ctx context.Context, target, contentType, body string, ext ...protocol.Ext) (int, error) {
	return c.request(ctx, func() *protocol.Frame {
		return &protocol.Frame{
			Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageMessaging},
			Header:  protocol.Header{Action: protocol.ActionSend, Initiator: c.identity(), Target: target, Ext: ext},
			Payload: protocol.EncodePayload(protocol.MessagePayload{ContentType: contentType, Body: body}),
		}
	})
}

// Message is an incoming instant message.
type Message struct {
	c           *Client
	corr        string
	From, To    string
	ContentType string
	Body        string
	Header      *protocol.Header
	replied     bool // loop-owned
}

// Reply answers the message: a 2xx as a response, anything else as an
// error frame. With Options.AutoAcceptMessages it has been answered
// already and Reply fails with ErrCallState. The sender gets ext on the
// answer (a SIP sender, through the header rules of the response).
func (m *Message) Reply(ctx context.Context, code int, ext ...protocol.Ext) error {
	return m.c.do(ctx, func() error {
		if m.replied {
			return ErrCallState
		}
		m.replied = true
		return m.c.send(m.reply(code, ext))
	})
}

func (m *Message) reply(code int, ext []protocol.Ext) *protocol.Frame {
	f := &protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeResponse, Package: protocol.PackageMessaging, CorrelationID: m.corr},
		Header:  protocol.Header{Action: protocol.ActionSend, Initiator: m.From, Target: m.To, Reason: protocol.Reason(code), Ext: ext},
	}
	if code >= 300 {
		f.Control.Type = protocol.TypeError
		f.Header.ErrorCode = code
	} else {
		f.Header.ResponseCode = code
		f.Control.MessageState = protocol.StateFinal
	}
	return f
}

func (c *Client) onMessagingFrame(f *protocol.Frame) bool {
	if f.Control.Type != protocol.TypeRequest || f.Header.Action != protocol.ActionSend {
		return false
	}
	var p protocol.MessagePayload
	if err := protocol.DecodePayload(f.Payload, &p); err != nil {
		m := &Message{c: c, corr: f.Control.CorrelationID, From: f.Header.Initiator, To: f.Header.Target}
		r := m.reply(protocol.CodeBadRequest, nil)
		r.Header.Reason = err.Error()
		c.send(r)
		return true
	}
	m := &Message{c: c, corr: f.Control.CorrelationID, From: f.Header.Initiator, To: f.Header.Target,
		ContentType: p.ContentType, Body: p.Body, Header: &f.Header}
	if c.o.AutoAcceptMessages {
		m.replied = true
		c.send(m.reply(protocol.CodeOK, nil))
	}
	c.emit(Event{Kind: EventMessage, Message: m, Header: &f.Header})
	return true
}
