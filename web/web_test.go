package web

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
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
	h := Handler()
	for _, tc := range []struct{ path, ctype, contains string }{
		{"/", "text/html", "<script type=\"module\""},
		{"/app.js", "text/javascript", "from './sdk/index.js'"},
		{"/style.css", "text/css", ""},
		{"/sdk/index.js", "text/javascript", "export { Session"},
		{"/sdk/session.js", "text/javascript", "class Session"},
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

// TestSDKCopyIsCurrent fails when static/sdk differs from sdk/js/src:
// run `npm run build` in sdk/js and commit the copy.
func TestSDKCopyIsCurrent(t *testing.T) {
	src := filepath.Join("..", "sdk", "js", "src")
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Skipf("no SDK sources: %v", err)
	}
	n := 0
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".js") && !strings.HasSuffix(name, ".d.ts") {
			continue
		}
		n++
		want, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			t.Fatal(err)
		}
		have, err := static.ReadFile("static/sdk/" + name)
		if err != nil || !bytes.Equal(have, want) {
			t.Errorf("static/sdk/%s is not a copy of sdk/js/src/%s: run npm run build in sdk/js", name, name)
		}
	}
	copies, _ := static.ReadDir("static/sdk")
	if len(copies) != n {
		t.Errorf("static/sdk has %d files, sdk/js/src %d: run npm run build in sdk/js", len(copies), n)
	}
}
