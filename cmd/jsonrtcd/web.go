package main

import (
	"net/http"

	"github.com/jsonrtc/jsonrtc/gateway"
	"github.com/jsonrtc/jsonrtc/web"
)

// webHandler serves the demo softphone, the SDK's browser build and the
// page's settings, with a TURN credential from turn for each page that
// authenticates when web.turn is set.
func webHandler(cfg *gateway.Config, turn func(*http.Request) (gateway.TURNServer, bool)) http.Handler {
	c := cfg.Web
	servers := make([]web.ICEServer, 0, len(c.ICEServers))
	for _, s := range c.ICEServers {
		servers = append(servers, web.ICEServer{URLs: s.URLs, Username: s.Username, Credential: s.Credential})
	}
	// Validated at start-up: an error means no key.
	vapid, _ := cfg.Push.VAPIDPublicKey()
	o := &web.Options{ICEServers: servers, OpenMode: cfg.Open(), VAPIDPublicKey: vapid}
	if len(c.TURN.URLs) > 0 {
		o.TURN = func(r *http.Request) (web.ICEServer, bool) {
			t, ok := turn(r)
			return web.ICEServer{URLs: t.URLs, Username: t.Username, Credential: t.Credential}, ok
		}
	}
	return web.Handler(o)
}
