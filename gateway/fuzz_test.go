package gateway

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/jsonrtc/jsonrtc/protocol"
)

// FuzzHandshakeFirstFrame drives the path from the WebSocket handshake to
// the first frame with arbitrary credentials, subprotocol and first frame:
// the gateway must answer (HTTP status, error frame or close) and go on
// serving everyone else. Run it with
//
//	go test -run XXX -fuzz FuzzHandshakeFirstFrame ./gateway/
func FuzzHandshakeFirstFrame(f *testing.F) {
	f.Add("", "jsonrtc", []byte(`{"control":{"type":"request","sequence":1},"header":{"action":"connect"}}`))
	f.Add("Bearer x.y.z", "jsonrtc", []byte(`{"control":{"type":"request","package_type":"register","session_id":"AAAA","sequence":1},"header":{"action":"connect","cslr":1}}`))
	f.Add("Bearer ", "webrtc.oracle.com", []byte(`{"control":{"type":"request"},"header":{"action":"connect","initiator":"a\r\nb"}}`))
	f.Add("Basic Zm9vOmJhcg==", "sip", []byte(`ping`))
	f.Add("", "jsonrtc", []byte("\xff\xfe"))
	f.Add("", "jsonrtc", []byte(`{"control":{"type":"request","sequence":1},"header":{"action":"connect","x-a":"`+string(make([]byte, 2000))+`"}}`))

	_, base := fuzzGateway(f)
	f.Fuzz(func(t *testing.T, authz, sub string, first []byte) {
		for _, app := range []string{"web", "support", "test"} {
			h := http.Header{}
			if authz != "" && len(authz) < 4096 {
				h.Set("Authorization", sanitizeHeader(authz))
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			c, _, err := websocket.Dial(ctx, base+"/ws/webrtc/"+url.PathEscape(app), &websocket.DialOptions{Subprotocols: []string{sanitizeToken(sub)}, HTTPHeader: h})
			if err == nil {
				c.Write(ctx, websocket.MessageText, first)
				c.Read(ctx) // an answer, a close or a timeout: anything but a crash
				c.CloseNow()
			}
			cancel()
		}
		// Everyone else is still served.
		p := dial(t, base+"/ws/webrtc/test", protocol.SubprotocolJSONrtc, nil)
		p.connect("carol@example.com")
		p.c.Close(websocket.StatusNormalClosure, "")
	})
}

func fuzzGateway(f *testing.F) (*Gateway, string) {
	cfg := DefaultConfig()
	secured(&cfg)
	cfg.Auth.Applications = append(cfg.Auth.Applications, cfg.Auth.Applications[0])
	cfg.Auth.Applications[2].Name, cfg.Auth.Applications[2].Mode, cfg.Auth.Applications[2].JWT = "test", "open", nil
	cfg.Limits.Handshakes.Rate = -1
	cfg.WebSocket.HandshakeTimeout = Duration(2 * time.Second)
	cfg.Session.ResumeTimeout = Duration(time.Second)
	def := cfg.Limits.Profiles["default"]
	def.Identity.Sessions, def.Application.Sessions = -1, -1
	cfg.Limits.Profiles["default"] = def
	g, err := New(cfg, nil)
	if err != nil {
		f.Fatal(err)
	}
	srv := httptest.NewServer(g.Handler())
	f.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		g.Shutdown(ctx)
		srv.Close()
	})
	return g, "ws" + srv.URL[len("http"):]
}

// sanitizeHeader keeps a header value the HTTP client will send.
func sanitizeHeader(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 || c == 0x7f {
			b[i] = ' '
		}
	}
	return string(b)
}

// sanitizeToken keeps a subprotocol the WebSocket client will offer.
func sanitizeToken(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c <= ' ' || c >= 0x7f || c == ',' || c == '"' {
			b[i] = 'x'
		}
	}
	if len(b) == 0 {
		return "x"
	}
	return string(b)
}
