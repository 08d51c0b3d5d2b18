// Package web serves the demo softphone page and the browser build of the
// JavaScript SDK (sdk/js), both embedded in the binary.
//
// The page lives in static/; the SDK's modules come from package sdkjs,
// which embeds sdk/js/src itself, so `go build` needs no npm. Mount
// [Handler] at "/": it serves the page at "/" and the SDK's ES modules
// under "/sdk/".
package web

import (
	"embed"
	"io/fs"
	"net/http"

	sdkjs "github.com/jsonrtc/jsonrtc/sdk/js"
)

//go:embed static
var static embed.FS

// Handler returns the handler of the demo page and the SDK. It only
// answers GET and HEAD, and asks browsers to revalidate (the files change
// with the binary).
func Handler() http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		// The embed pattern guarantees the directory exists.
		panic("web: " + err.Error())
	}
	mux := http.NewServeMux()
	mux.Handle("/", http.FileServerFS(sub))
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
