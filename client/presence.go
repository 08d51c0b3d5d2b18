package client

import (
	"context"

	"github.com/jsonrtc/jsonrtc/protocol"
)

// Presence (docs/protocol.md §6): the client starts and ends watches and
// publishes; the notifies and the gateway's shutdowns come as EventFrame
// events of package presence, named by their subsession.

// Watch subscribes to target's presence on subsession sub and waits for
// the answer (a *FrameError for an error frame). The current state
// follows as a notify.
func (c *Client) Watch(ctx context.Context, sub, target string) (*protocol.Frame, error) {
	return c.presenceRequest(ctx, sub, protocol.ActionStart, target, nil)
}

// Publish publishes one's own presence state and waits for the answer.
func (c *Client) Publish(ctx context.Context, st protocol.PresencePayload) error {
	_, err := c.presenceRequest(ctx, "publish", protocol.ActionPublish, "", protocol.EncodePayload(st))
	return err
}

func (c *Client) presenceRequest(ctx context.Context, sub string, action protocol.Action, target string, payload []byte) (*protocol.Frame, error) {
	r, err := c.requestResult(ctx, func() *protocol.Frame {
		return &protocol.Frame{
			Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackagePresence, SubsessionID: sub},
			Header:  protocol.Header{Action: action, Initiator: c.identity(), Target: target},
			Payload: payload,
		}
	})
	return r.frame, err
}
