package gateway

import (
	"fmt"
	"strings"
)

// WebConfig configures the demo page that jsonrtcd serves at /.
type WebConfig struct {
	// ICEServers are handed to the page's browsers as the
	// RTCPeerConnection's iceServers (STUN and TURN). Default: none,
	// which is enough on one host or LAN. The page reads them from
	// /config.json, so a TURN credential here is public: use one meant
	// to be handed out, or give short-lived ones from your own app.
	ICEServers []ICEServer `yaml:"ice_servers"`
	// TURN hands each authenticated page a TURN server with a
	// credential of its own, good for a while (turn.go).
	TURN TURNConfig `yaml:"turn"`
}

// ICEServer is one STUN or TURN server, as in WebRTC's RTCIceServer.
type ICEServer struct {
	// URLs are stun:, stuns:, turn: or turns: URLs.
	URLs       []string `yaml:"urls"`
	Username   string   `yaml:"username"`
	Credential string   `yaml:"credential"`
}

func (w WebConfig) validate(bad func(key, format string, args ...any)) {
	w.TURN.validate(bad)
	for i, s := range w.ICEServers {
		key := fmt.Sprintf("web.ice_servers[%d]", i)
		if len(s.URLs) == 0 {
			bad(key+".urls", "must list at least one URL")
		}
		turn := false
		for j, u := range s.URLs {
			scheme, _, _ := strings.Cut(u, ":")
			switch scheme {
			case "stun", "stuns":
			case "turn", "turns":
				turn = true
			default:
				bad(fmt.Sprintf("%s.urls[%d]", key, j), "%q is not a stun:, stuns:, turn: or turns: URL", u)
			}
		}
		// Browsers refuse a TURN server without both (RTCPeerConnection
		// throws InvalidAccessError): fail at start-up instead.
		if turn && (s.Username == "" || s.Credential == "") {
			bad(key, "a turn: server needs username and credential")
		}
	}
}
