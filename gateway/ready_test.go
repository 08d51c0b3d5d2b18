package gateway

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
)

// TestReadyz: /readyz is 200 while Options.Ready says ready, 503 with
// its reason when it does not, and 503 "draining" once a drain began.
func TestReadyz(t *testing.T) {
	var down atomic.Pointer[error]
	g, url := newGatewayOpts(t, nil, Options{Ready: func(context.Context) error {
		if e := down.Load(); e != nil {
			return *e
		}
		return nil
	}})
	base := "http" + strings.TrimSuffix(strings.TrimPrefix(url, "ws"), "/ws/webrtc/test")
	get := func() (int, string) {
		t.Helper()
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get(); code != 200 || body != "ready\n" {
		t.Fatalf("ready: %d %q", code, body)
	}
	err := errors.New("jetstream: no quorum")
	down.Store(&err)
	if code, body := get(); code != 503 || body != "not ready: jetstream: no quorum\n" {
		t.Fatalf("store down: %d %q", code, body)
	}
	down.Store(nil)
	g.mu.Lock()
	g.draining = true
	g.mu.Unlock()
	if code, body := get(); code != 503 || body != "not ready: draining\n" {
		t.Fatalf("draining: %d %q", code, body)
	}
}
