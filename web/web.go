// Package web serves the demo softphone page and the browser build of the
// JavaScript SDK (sdk/js), both embedded in the binary.
//
// The page lives in static/; the SDK's modules come from package sdkjs,
// which embeds sdk/js/src itself, so `go build` needs no npm. Mount
// [Handler] at "/": it serves the page at "/" and the SDK's ES modules
// under "/sdk/", and the page's settings (the ICE servers, open mode) at
// "/config.json".
package web

import (
	"embed"
	"encoding/json"
	"io/fs"
	"net/http"

	sdkjs "github.com/jsonrtc/jsonrtc/sdk/js"
)

//go:embed static
var static embed.FS

// Options configure the page. Nil means the defaults.
type Options struct {
	// ICEServers are the STUN and TURN servers the page hands to its
	// RTCPeerConnections. Default: none (host candidates only).
	ICEServers []ICEServer
	// OpenMode tells the page that the gateway runs in open identity
	// mode, where an access token is ignored: the page says so when one
	// signs in with a token.
	OpenMode bool
	// VAPIDPublicKey is the gateway's Web Push key (base64url), which the
	// page subscribes with to go to standby (docs/protocol.md §4.9);
	// empty: no Web Push.
	VAPIDPublicKey string
	// TURN, when set, gives the page that sent r a TURN server with a
	// credential of its own (false: none for it), added to ICEServers
	// in its /config.json.
	TURN func(r *http.Request) (ICEServer, bool)
}

// ICEServer is WebRTC's RTCIceServer, as the page reads it.
type ICEServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username,omitempty"`
	Credential string   `json:"credential,omitempty"`
}

// pageConfig is what /config.json tells the page.
type pageConfig struct {
	ICEServers     []ICEServer `json:"iceServers"`
	OpenMode       bool        `json:"openMode"`
	VAPIDPublicKey string      `json:"vapidPublicKey,omitempty"`
}

// Handler returns the handler of the demo page and the SDK. It only
// answers GET and HEAD, and asks browsers to revalidate (the files change
// with the binary).
func Handler(opts *Options) http.Handler {
	if opts == nil {
		opts = &Options{}
	}
	pc := pageConfig{ICEServers: opts.ICEServers, OpenMode: opts.OpenMode, VAPIDPublicKey: opts.VAPIDPublicKey}
	if pc.ICEServers == nil {
		pc.ICEServers = []ICEServer{}
	}
	configJSON, err := json.Marshal(pc)
	if err != nil {
		panic("web: " + err.Error()) // plain strings always marshal
	}
	sub, err := fs.Sub(static, "static")
	if err != nil {
		// The embed pattern guarantees the directory exists.
		panic("web: " + err.Error())
	}
	mux := http.NewServeMux()
	mux.Handle("/", http.FileServerFS(sub))
	mux.HandleFunc("/config.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if opts.TURN == nil {
			w.Write(configJSON)
			return
		}
		// A credential is the page's own: never cached.
		w.Header().Set("Cache-Control", "no-store")
		own := pc
		if s, ok := opts.TURN(r); ok {
			own.ICEServers = append(own.ICEServers[:len(own.ICEServers):len(own.ICEServers)], s)
		}
		_ = json.NewEncoder(w).Encode(own)
	})
	mux.Handle("/sdk/", http.StripPrefix("/sdk", http.FileServerFS(sdkjs.Files())))
	files := mux
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h := w.Header()
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Content-Security-Policy", "default-src 'self'; connect-src 'self' ws: wss:; media-src 'self' blob: mediastream:; img-src 'self' data:; style-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
		files.ServeHTTP(w, r)
	})
}
