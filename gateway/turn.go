package gateway

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
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
