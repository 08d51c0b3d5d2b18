package client

import (
	"context"
	"encoding/json"
	"slices"

	"github.com/jsonrtc/jsonrtc/protocol"
)

// Actions the gateway's configuration declares (docs/protocol.md §2.8):
// the client sends any of them with Request and gets the requests of
// ones it does not know as EventRequest.

// Request sends a request of a declared action outside any call (pkg is
// usually messaging) with the extension headers ext and payload (nil:
// {}), and waits for the answer: the response frame, or with an error
// frame a *FrameError (and the frame too). target is header.target
// ("" for none): the SIP destination of an action that maps to a SIP
// request.
func (c *Client) Request(ctx context.Context, pkg protocol.Package, action protocol.Action, target string, ext []protocol.Ext, payload json.RawMessage) (*protocol.Frame, error) {
	r, err := c.requestResult(ctx, func() *protocol.Frame {
		return &protocol.Frame{
			Control: protocol.Control{Type: protocol.TypeRequest, Package: pkg},
			Header:  protocol.Header{Action: action, Initiator: c.identity(), Target: target, Ext: ext},
			Payload: payload,
		}
	})
	return r.frame, err
}

// Request sends a request of a declared action of package call in this
// call (its SIP request goes in the call's dialog) and waits for the
// answer, as Client.Request does.
func (k *Call) Request(ctx context.Context, action protocol.Action, ext []protocol.Ext, payload json.RawMessage) (*protocol.Frame, error) {
	r, err := k.c.requestResult(ctx, func() *protocol.Frame {
		if k.ended {
			return nil
		}
		f := k.frame(protocol.TypeRequest, action, "", ext)
		f.Payload = payload
		return f
	})
	return r.frame, err
}

// Request is an incoming request of an action the client does not know
// (EventRequest): Frame is the request as it came.
type Request struct {
	c       *Client
	Frame   *protocol.Frame
	replied bool // loop-owned
}

// Respond answers the request: a code below 300 as a response with ext
// and payload, any other as an error frame with reason. It fails with
// ErrCallState the second time.
func (r *Request) Respond(ctx context.Context, code int, reason string, ext []protocol.Ext, payload json.RawMessage) error {
	return r.c.do(ctx, func() error { return r.answer(code, reason, ext, payload) })
}

// answer runs on the loop.
func (r *Request) answer(code int, reason string, ext []protocol.Ext, payload json.RawMessage) error {
	if r.replied {
		return ErrCallState
	}
	r.replied = true
	in := r.Frame
	f := &protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeResponse, Package: in.EffectivePackage(),
			SubsessionID: in.Control.SubsessionID, CorrelationID: in.Control.CorrelationID},
		Header:  protocol.Header{Action: in.Header.Action, Initiator: in.Header.Initiator, Target: in.Header.Target, Reason: reason, Ext: ext},
		Payload: payload,
	}
	if code >= 300 {
		f.Control.Type, f.Header.ErrorCode = protocol.TypeError, code
	} else {
		f.Control.MessageState, f.Header.ResponseCode = protocol.StateFinal, code
	}
	return r.c.send(f)
}

func (c *Client) onDeclaredRequest(f *protocol.Frame) {
	r := &Request{c: c, Frame: f}
	if c.o.Requests != nil && !slices.Contains(c.o.Requests, string(f.EffectivePackage())+"/"+string(f.Header.Action)) {
		// Nobody here answers it: the sender learns so now rather than
		// after the gateway's answer timeout.
		_ = r.answer(protocol.CodeMethodNotAllowed, "not handled by this client", nil, nil)
		return
	}
	c.emit(Event{Kind: EventRequest, Request: r, Frame: f, Header: &f.Header})
}
