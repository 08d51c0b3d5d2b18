package gateway

import (
	"net/http"
	"strings"

	"github.com/jsonrtc/jsonrtc/auth"
	"github.com/jsonrtc/jsonrtc/transport/longpoll"
)

// servePoll serves the long-poll transport at /poll/<app> and
// /poll/webrtc/<app> (docs/protocol.md §1.6), the paths of /ws/. A request
// without a token opens a connection: it is a POST whose frames start
// with the connect, authenticated and limited as a WebSocket handshake
// is; the answer carries the token. Every later request carries it, and
// is refused 403 unless it names a live connection opened on the same
// path, and carries the Origin that opened it or none (a browser's
// same-origin GET: longpoll.Conn.OriginAllowed).
func (g *Gateway) servePoll(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if !g.pollOrigin(r) {
		g.metrics.handshakes.WithLabelValues("refused").Inc()
		g.rlog.Info("poll origin", "long-poll request refused: origin", "remote", r.RemoteAddr, "origin", r.Header.Get("Origin"))
		http.Error(w, "jsonrtc: origin not allowed", http.StatusForbidden)
		return
	}
	if r.Method == http.MethodOptions {
		longpoll.Preflight(w, r)
		return
	}
	longpoll.AllowOrigin(w, r)
	// The token opens nothing on another application's path, nor for a
	// page of another origin.
	scope, origin := r.URL.Path, r.Header.Get("Origin")
	if token := r.Header.Get(longpoll.HeaderToken); token != "" {
		c := g.polls.Lookup(token, scope)
		if c == nil || !c.OriginAllowed(origin) {
			g.rlog.Info("poll token", "long-poll request refused: unknown token", "remote", r.RemoteAddr)
			http.Error(w, "jsonrtc: unknown poll token", http.StatusForbidden)
			return
		}
		switch r.Method {
		case http.MethodGet:
			c.ServeGet(w, r)
		case http.MethodPost:
			c.ServePost(w, r)
		case http.MethodDelete:
			c.ServeDelete(w, r)
		default:
			http.Error(w, "jsonrtc: method not allowed", http.StatusMethodNotAllowed)
		}
		return
	}
	if r.Method != http.MethodPost {
		http.Error(w, "jsonrtc: a poll needs its token; open with a POST of the connect", http.StatusForbidden)
		return
	}
	// Numbered as its handler starts (link.born): the POST of a connect
	// the client gave up on came before its next one's. Only a handler
	// that starts after its successor's (the machine stalled between
	// the client's abort and its next POST) is numbered after it.
	born := g.births.Add(1)
	p, addr, ok := g.admit(w, r, g.authenticatePoll)
	if !ok {
		return
	}
	frames, err := g.polls.ReadBody(w, r)
	if err != nil {
		g.metrics.handshakes.WithLabelValues("refused").Inc()
		longpoll.WriteError(w, err)
		return
	}
	c := g.polls.Open(r.RemoteAddr, scope)
	c.BindOrigin(origin)
	// The channel holds a whole batch: this does not wait.
	if c.Deliver(r.Context(), frames) != nil {
		c.CloseNow()
		return
	}
	g.metrics.handshakes.WithLabelValues("accepted").Inc()
	if !g.goTracked(func() { g.serveConn(c, p, addr, born) }) {
		c.CloseNow()
		refuseForNow(w, "jsonrtc: shutting down", retryAfterSoon())
		return
	}
	w.Header().Set(longpoll.HeaderToken, c.Token())
	w.WriteHeader(http.StatusNoContent)
}

// pollOrigin applies the origin rules: the application's when there are
// applications (auth checks them again on the opening request), the
// gateway's own host and websocket.allowed_origins otherwise.
func (g *Gateway) pollOrigin(r *http.Request) bool {
	if g.authn == nil {
		return longpoll.OriginAllowed(r, g.cfg.WebSocket.AllowedOrigins)
	}
	return g.authn.CheckOrigin(pollApp(r), r) == nil
}

// authenticatePoll is auth.Authenticate for the application a /poll/
// path names, which is the one /ws/ with the same rest would.
func (g *Gateway) authenticatePoll(r *http.Request) (*auth.Principal, error) {
	return g.authn.AuthenticateApp(r, pollApp(r))
}

// pollApp is the application r's /poll/ path names ("" for none, which
// no application is).
func pollApp(r *http.Request) string {
	name, _ := auth.AppFromPath("/ws/" + strings.TrimPrefix(r.URL.Path, "/poll/"))
	return name
}

// The long-poll connection serves a link as a WebSocket does.
var _ conn = (*longpoll.Conn)(nil)
