package client

import (
	"context"
	"encoding/json"
	"strconv"
	"time"

	"github.com/jsonrtc/jsonrtc/protocol"
)

// ICEServer is one STUN or TURN server the gateway handed the session,
// as WebRTC's RTCIceServer.
type ICEServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username,omitempty"`
	Credential string   `json:"credential,omitempty"`
}

// iceServers is what the last connect or ice_servers response said.
type iceServers struct {
	servers []ICEServer
	expires time.Time // of its TURN credential; zero without one
}

// setICELocked keeps the ICE servers of a connect or ice_servers
// response f (docs/protocol.md §4.10), if it has any. c.mu is held.
func (c *Client) setICELocked(f *protocol.Frame) {
	e, ok := f.Header.ExtValue("ice_servers")
	if !ok {
		return
	}
	var ss []ICEServer
	if err := json.Unmarshal([]byte(e.Value), &ss); err != nil {
		c.log.Warn("jsonrtc client: ice_servers header undecodable", "session_id", c.sid, "err", err)
		return
	}
	ice := iceServers{servers: ss}
	if t, ok := f.Header.ExtValue("ice_servers_ttl"); ok {
		if n, err := strconv.ParseInt(t.Value, 10, 64); err == nil && n > 0 {
			ice.expires = time.Now().Add(time.Duration(n) * time.Second)
		}
	}
	c.ice = ice
}

// ICEServers returns the ICE servers the gateway handed the session (its
// connect response, or the last RenewICEServers), and when their TURN
// credential expires (zero without one): nil when it handed none.
// Renew before that time passes; a call in progress keeps its TURN
// allocation only while the credential is good.
func (c *Client) ICEServers() ([]ICEServer, time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ice.servers, c.ice.expires
}

// RenewICEServers asks the gateway for fresh ICE servers (request
// ice_servers, docs/protocol.md §4.10) and returns them, with the expiry
// of their TURN credential; ICEServers returns them from then on.
func (c *Client) RenewICEServers(ctx context.Context) ([]ICEServer, time.Time, error) {
	r, err := c.requestResult(ctx, func() *protocol.Frame {
		return &protocol.Frame{
			Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageRegister},
			Header:  protocol.Header{Action: protocol.ActionICEServers},
		}
	})
	if err != nil {
		return nil, time.Time{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.setICELocked(r.frame)
	return c.ice.servers, c.ice.expires, nil
}
