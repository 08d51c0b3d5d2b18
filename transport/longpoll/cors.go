package longpoll

import (
	"net/http"
	"net/url"
	"path"
	"strings"
)

// OriginAllowed reports whether r may be answered to its Origin: none (a
// client that is not a browser), the request's own host, or a host
// matching one of patterns (path.Match, as transport/ws has them).
func OriginAllowed(r *http.Request, patterns []string) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	if strings.EqualFold(u.Host, r.Host) {
		return true
	}
	for _, p := range patterns {
		if ok, _ := path.Match(strings.ToLower(p), strings.ToLower(u.Host)); ok {
			return true
		}
	}
	return false
}

// AllowOrigin sets the CORS headers that let a page of r's Origin, once
// OriginAllowed (or the application's own origin rules) accepted it, read
// the answer and send its cookies. Never "*": credentials are not
// allowed with it, and the origin rules would mean nothing.
func AllowOrigin(w http.ResponseWriter, r *http.Request) {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", origin)
	h.Set("Access-Control-Allow-Credentials", "true")
	h.Set("Access-Control-Expose-Headers", HeaderToken+", "+HeaderCloseCode+", "+HeaderCloseReason)
	h.Add("Vary", "Origin")
}

// Preflight answers an OPTIONS preflight from an allowed origin.
func Preflight(w http.ResponseWriter, r *http.Request) {
	AllowOrigin(w, r)
	h := w.Header()
	h.Set("Access-Control-Allow-Methods", "GET, POST, DELETE")
	h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, "+HeaderToken)
	h.Set("Access-Control-Max-Age", "600")
	w.WriteHeader(http.StatusNoContent)
}
