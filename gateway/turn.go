package gateway

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/jsonrtc/jsonrtc/protocol"
)

// TURNConfig is web.turn: a TURN server that takes time-limited
// credentials made from a secret it shares with the gateway (the TURN
// REST scheme, coturn's use-auth-secret with static-auth-secret):
//
//	web:
//	  turn:
//	    urls: [turn:turn.example.com:3478, turns:turn.example.com:5349]
//	    secret: <coturn's static-auth-secret>
//	    ttl: 12h          # how long a credential is good for (default)
//
// Each page that authenticates gets its own credential in /config.json;
// the secret never leaves the gateway.
type TURNConfig struct {
	URLs   []string `yaml:"urls"`
	Secret string   `yaml:"secret"`
	TTL    Duration `yaml:"ttl"`
}

// defaultTURNTTL outlives a working day's session: coturn checks the
// expiry again at each allocation refresh, so a call in progress fails
// when its credential runs out.
const defaultTURNTTL = 12 * time.Hour

func (t TURNConfig) enabled() bool { return len(t.URLs) > 0 || t.Secret != "" }

func (t TURNConfig) withDefaults() TURNConfig {
	if t.enabled() && t.TTL == 0 {
		t.TTL = Duration(defaultTURNTTL)
	}
	return t
}

func (t TURNConfig) validate(bad func(key, format string, args ...any)) {
	if !t.enabled() {
		return
	}
	if len(t.URLs) == 0 {
		bad("web.turn.urls", "must list at least one turn: or turns: URL")
	}
	for i, u := range t.URLs {
		if !strings.HasPrefix(u, "turn:") && !strings.HasPrefix(u, "turns:") {
			bad(fmt.Sprintf("web.turn.urls[%d]", i), "%q is not a turn: or turns: URL", u)
		}
	}
	if len(t.Secret) < 16 {
		bad("web.turn.secret", "must be at least 16 bytes (coturn's static-auth-secret)")
	}
	if t.TTL.D() < time.Minute || t.TTL.D() > 7*24*time.Hour {
		bad("web.turn.ttl", "must be between 1m and 168h")
	}
}

// turnCredential is the TURN REST credential of identity, good until
// expires: username "<expiry unix time>:<identity>", password the base64
// of HMAC-SHA1(secret, username), which coturn recomputes from its
// static-auth-secret and refuses once the time has passed.
func turnCredential(secret, identity string, expires time.Time) (username, password string) {
	username = strconv.FormatInt(expires.Unix(), 10) + ":" + identity
	mac := hmac.New(sha1.New, []byte(secret))
	mac.Write([]byte(username))
	return username, base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// TURNServer is a TURN server with a credential for one page.
type TURNServer struct {
	URLs                 []string
	Username, Credential string
}

// TURNFor returns web.turn's server with a fresh credential for the page
// that sent r, or false when web.turn is unset or r does not authenticate:
// for the application its "app" query parameter names, as a handshake
// to it would (token, guest cookie, origin); anyone in open mode. Calls
// count against the handshake rate of r's address.
func (g *Gateway) TURNFor(r *http.Request) (TURNServer, bool) {
	t := g.cfg.Web.TURN
	if !t.enabled() {
		return TURNServer{}, false
	}
	addr, _ := g.clientAddr(r)
	if addr.IsValid() && !g.lim.AllowHandshake(addr) {
		return TURNServer{}, false
	}
	identity := "open"
	if g.authn != nil {
		p, err := g.authn.AuthenticateApp(r, r.URL.Query().Get("app"))
		if err != nil {
			g.rlog.Info("turn unauthenticated", "TURN credential refused", "remote", r.RemoteAddr, "err", err)
			return TURNServer{}, false
		}
		if p.Identity != "" {
			identity = p.Identity
		}
	}
	user, pass := turnCredential(t.Secret, identity, time.Now().Add(t.TTL.D()))
	return TURNServer{URLs: t.URLs, Username: user, Credential: pass}, true
}

// The extension headers that hand a session its ICE servers
// (docs/protocol.md §4.10): the RTCIceServer list as JSON text, and how
// many seconds its TURN credential is good for.
const (
	extICEServers    = "ice_servers"
	extICEServersTTL = "ice_servers_ttl"
)

// iceServer is WebRTC's RTCIceServer, as the ice_servers header lists it.
type iceServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username,omitempty"`
	Credential string   `json:"credential,omitempty"`
}

// iceExt returns the ICE servers of a session running as identity, as
// the extension headers of its connect response and of its ice_servers
// responses: web.ice_servers, then web.turn with a credential made now
// for identity (none without either). A list too long for one header
// (over protocol.MaxExtValueLen) keeps what fits, the TURN server
// first: it is the one a browser behind a strict NAT cannot do without.
func (g *Gateway) iceExt(identity string) []protocol.Ext {
	w := g.cfg.Web
	if len(w.ICEServers) == 0 && !w.TURN.enabled() {
		return nil
	}
	var ss []iceServer
	var ext []protocol.Ext
	if w.TURN.enabled() {
		user, pass := turnCredential(w.TURN.Secret, identity, time.Now().Add(w.TURN.TTL.D()))
		ss = append(ss, iceServer{URLs: w.TURN.URLs, Username: user, Credential: pass})
		ext = append(ext, protocol.Ext{Name: extICEServersTTL, Kind: protocol.ExtNumber, Value: strconv.FormatInt(int64(w.TURN.TTL.D()/time.Second), 10)})
	}
	for _, s := range w.ICEServers {
		ss = append(ss, iceServer{URLs: s.URLs, Username: s.Username, Credential: s.Credential})
	}
	b, _ := json.Marshal(ss)
	for len(b) > protocol.MaxExtValueLen && len(ss) > 1 {
		ss = ss[:len(ss)-1]
		b, _ = json.Marshal(ss)
	}
	if len(b) > protocol.MaxExtValueLen {
		// An identity of a kilobyte: the page goes without TURN.
		return nil
	}
	return append([]protocol.Ext{{Name: extICEServers, Kind: protocol.ExtString, Value: string(b)}}, ext...)
}

// onICEServers answers a session's ice_servers request with fresh ICE
// servers (docs/protocol.md §4.10): a client renews its TURN credential
// this way before ice_servers_ttl runs out. Without web.ice_servers and
// web.turn the answer carries none.
func (s *Session) onICEServers(f *protocol.Frame) {
	s.Send(&protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeResponse, Package: protocol.PackageRegister,
			CorrelationID: f.Control.CorrelationID, MessageState: protocol.StateFinal},
		Header: protocol.Header{Action: protocol.ActionICEServers, ResponseCode: protocol.CodeOK, Reason: "OK",
			Ext: s.g.iceExt(s.identity)},
	}, false)
}
