package client

import (
	"context"
	"time"

	"github.com/jsonrtc/jsonrtc/protocol"
)

// Standby puts the session to sleep (docs/protocol.md §4.9): it tells the
// gateway how to wake this client (for a native app, ch is
// {Type: protocol.PushWebhook, Token: the device's token at the app's
// push relay}), then drops the socket. The gateway keeps the session
// resumable for the standby timeout it returns, and the first call or
// message for it goes to the relay as a push. Wake, or any send, resumes
// it; EventStandby says it sleeps. Refused with ErrCallState while a
// call is up.
func (c *Client) Standby(ctx context.Context, ch protocol.PushChannel) (time.Duration, error) {
	r, err := c.requestResult(ctx, func() *protocol.Frame {
		if len(c.calls) > 0 {
			return nil
		}
		return &protocol.Frame{
			Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageRegister},
			Header:  protocol.Header{Action: protocol.ActionStandby},
			Payload: protocol.EncodePayload(protocol.StandbyPayload{Push: &ch}),
		}
	})
	if err != nil {
		return 0, err
	}
	d := time.Duration(r.expiry) * time.Second
	err = c.do(ctx, func() error {
		switch {
		case c.phase != phaseUp:
			return ErrNotConnected
		case len(c.calls) > 0:
			return ErrCallState
		}
		c.sleep(d)
		return nil
	})
	return d, err
}

// Wake resumes a session in standby; a no-op otherwise.
func (c *Client) Wake(ctx context.Context) error {
	return c.do(ctx, func() error {
		c.wakeUp()
		return nil
	})
}

// sleep drops the socket without reconnecting: the gateway keeps the
// session for d (its standby timeout), and so does the client. Loop only.
func (c *Client) sleep(d time.Duration) {
	c.dropSocket()
	c.phase = phaseAsleep
	c.resumeT.Reset(d)
	c.log.Info("jsonrtc client: standby", "session_id", c.st.ID, "for", d)
	c.emit(Event{Kind: EventStandby, SessionID: c.st.ID})
}

// wakeUp resumes the session of a client in standby. Loop only.
func (c *Client) wakeUp() {
	if c.phase != phaseAsleep {
		return
	}
	c.log.Info("jsonrtc client: waking", "session_id", c.st.ID)
	c.phase = phaseDown
	c.lostAt = time.Now()
	c.attempt = 1
	c.resumeT.Reset(c.o.ResumeTimeout)
	c.startDial()
}
