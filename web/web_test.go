package web

import (
	"net/http"
	"net/http/httptest"
	"path"
	"regexp"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, method, path string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	return rec
}

func TestHandlerServesPageAndSDK(t *testing.T) {
	h := Handler(nil)
	for _, tc := range []struct{ path, ctype, contains string }{
		{"/", "text/html", "<script type=\"module\""},
		{"/app.js", "text/javascript", "from './sdk/index.js'"},
		{"/style.css", "text/css", ""},
		{"/sdk/index.js", "text/javascript", "export { Session"},
		{"/sdk/session.js", "text/javascript", "class Session"},
		{"/config.json", "application/json", `{"iceServers":[],"openMode":false}`},
	} {
		rec := get(t, h, http.MethodGet, tc.path)
		if rec.Code != http.StatusOK {
			t.Fatalf("GET %s: %d", tc.path, rec.Code)
		}
		if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, tc.ctype) {
			t.Errorf("GET %s: Content-Type %q, want %s", tc.path, ct, tc.ctype)
		}
		if !strings.Contains(rec.Body.String(), tc.contains) {
			t.Errorf("GET %s: body lacks %q", tc.path, tc.contains)
		}
	}
	if rec := get(t, h, http.MethodGet, "/nope.js"); rec.Code != http.StatusNotFound {
		t.Errorf("GET /nope.js: %d, want 404", rec.Code)
	}
	if rec := get(t, h, http.MethodPost, "/"); rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /: %d, want 405", rec.Code)
	}
}

// The configured ICE servers reach the page as RTCIceServer dictionaries,
// and open mode as a flag.
func TestConfigJSON(t *testing.T) {
	h := Handler(&Options{ICEServers: []ICEServer{
		{URLs: []string{"stun:stun.example.com"}},
		{URLs: []string{"turn:turn.example.com"}, Username: "u", Credential: "p"},
	}, OpenMode: true})
	rec := get(t, h, http.MethodGet, "/config.json")
	want := `{"iceServers":[{"urls":["stun:stun.example.com"]},{"urls":["turn:turn.example.com"],"username":"u","credential":"p"}],"openMode":true}`
	if rec.Code != http.StatusOK || rec.Body.String() != want {
		t.Fatalf("GET /config.json: %d %s, want %s", rec.Code, rec.Body.String(), want)
	}
}

// With TURN set, each request gets the configured servers plus its own
// TURN credential when TURN gives one, never cached; the static list is
// not changed by it.
func TestConfigJSONTURN(t *testing.T) {
	n := 0
	h := Handler(&Options{ICEServers: []ICEServer{{URLs: []string{"stun:stun.example.com"}}},
		TURN: func(r *http.Request) (ICEServer, bool) {
			n++
			return ICEServer{URLs: []string{"turn:t"}, Username: "u" + r.URL.Query().Get("app"), Credential: "c"}, r.URL.Query().Get("app") != ""
		}})
	rec := get(t, h, http.MethodGet, "/config.json?app=demo")
	want := `{"iceServers":[{"urls":["stun:stun.example.com"]},{"urls":["turn:t"],"username":"udemo","credential":"c"}],"openMode":false}` + "\n"
	if rec.Body.String() != want || rec.Header().Get("Cache-Control") != "no-store" {
		t.Fatalf("GET /config.json?app=demo: %s (Cache-Control %q), want %s", rec.Body.String(), rec.Header().Get("Cache-Control"), want)
	}
	rec = get(t, h, http.MethodGet, "/config.json")
	if want := `{"iceServers":[{"urls":["stun:stun.example.com"]}],"openMode":false}` + "\n"; rec.Body.String() != want || n != 2 {
		t.Fatalf("GET /config.json unauthenticated: %s, want %s", rec.Body.String(), want)
	}
}

// With Web Push, /config.json hands the page the VAPID public key, and
// the service worker is served.
func TestConfigJSONVAPID(t *testing.T) {
	rec := get(t, Handler(&Options{VAPIDPublicKey: "BCVx"}), http.MethodGet, "/config.json")
	if want := `{"iceServers":[],"openMode":false,"vapidPublicKey":"BCVx"}`; strings.TrimSpace(rec.Body.String()) != want {
		t.Fatalf("GET /config.json: %s, want %s", rec.Body.String(), want)
	}
	if rec := get(t, Handler(nil), http.MethodGet, "/sw.js"); rec.Code != http.StatusOK {
		t.Fatalf("GET /sw.js: %d", rec.Code)
	}
}

// index.html preloads exactly the modules the page imports (app.js and,
// through it, the SDK), so that a module added or dropped cannot leave the
// list behind: each one missing would be fetched a level later again.
func TestIndexPreloadsEveryModule(t *testing.T) {
	h := Handler(nil)
	page := get(t, h, http.MethodGet, "/").Body.String()
	preloaded := map[string]bool{}
	for _, m := range regexp.MustCompile(`<link rel="modulepreload" href="([^"]+)">`).FindAllStringSubmatch(page, -1) {
		preloaded["/"+m[1]] = true
	}
	imports := regexp.MustCompile(`(?m)^(?:import|export)\b[^;]*?from '(\./[^']+)'`)
	imported := map[string]bool{}
	queue := []string{"/app.js"}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if imported[p] {
			continue
		}
		imported[p] = true
		rec := get(t, h, http.MethodGet, p)
		if rec.Code != http.StatusOK {
			t.Fatalf("GET %s: %d", p, rec.Code)
		}
		for _, m := range imports.FindAllStringSubmatch(rec.Body.String(), -1) {
			queue = append(queue, path.Join(path.Dir(p), m[1]))
		}
	}
	for p := range imported {
		if !preloaded[p] {
			t.Errorf("index.html does not preload %s", p)
		}
	}
	for p := range preloaded {
		if !imported[p] {
			t.Errorf("index.html preloads %s, which the page does not import", p)
		}
	}
	if len(imported) < 10 {
		t.Errorf("found only %d modules: %v", len(imported), imported)
	}
}
