package main

import (
	"net/http"

	"github.com/jsonrtc/jsonrtc/gateway"
	"github.com/jsonrtc/jsonrtc/web"
)

// webHandler serves the demo softphone, the SDK's browser build and the
// page's settings.
func webHandler(cfg *gateway.Config) http.Handler {
	c := cfg.Web
	servers := make([]web.ICEServer, 0, len(c.ICEServers))
	for _, s := range c.ICEServers {
		servers = append(servers, web.ICEServer{URLs: s.URLs, Username: s.Username, Credential: s.Credential})
	}
	// Validated at start-up: an error means no key.
	vapid, _ := cfg.Push.VAPIDPublicKey()
	return web.Handler(&web.Options{ICEServers: servers, OpenMode: cfg.Open(), VAPIDPublicKey: vapid})
}
