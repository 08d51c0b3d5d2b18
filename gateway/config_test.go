package gateway

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "jsonrtcd.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadConfig(t *testing.T) {
	cfg, err := LoadConfig(writeConfig(t, "listen: 127.0.0.1:9000\nsession:\n  resume_timeout: 90s\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "127.0.0.1:9000" || cfg.Session.ResumeTimeout.D().Seconds() != 90 || cfg.Session.WindowFrames != 1024 {
		t.Fatalf("config %+v", cfg)
	}
	if _, err := LoadConfig(writeConfig(t, "")); err != nil {
		t.Fatalf("empty file: %v", err)
	}
}

func TestLoadConfigErrorsNameTheKey(t *testing.T) {
	cases := []struct{ body, want string }{
		{"listen: 127.0.0.1:9000\nsesion:\n  resume_timeout: 90s\n", "sesion"},
		{"session:\n  resume_timout: 90s\n", "resume_timout"},
		{"session:\n  resume_timeout: soon\n", "not a duration"},
		{"session:\n  window_frames: 2\n", "session.window_frames"},
		{"websocket:\n  max_frame_bytes: 10\n", "websocket.max_frame_bytes"},
		{"longpoll:\n  hold: 30s\n", "longpoll.hold"},
		{"longpoll:\n  max_batch: 0\n", "longpoll.max_batch"},
		{"longpoll:\n  idle_timeout: 0s\n", "longpoll.idle_timeout"},
		{"longpoll:\n  hols: 1s\n", "hols"},
		{"log:\n  level: loud\n", "log.level"},
		{"listen: nowhere\n", "listen"},
		{"auth:\n  applications:\n    - name: web\n      mode: jwt\n", "auth.applications[0]"},
		{"http:\n  idle_timeout: 10ms\n", "http.idle_timeout"},
		{"http:\n  max_conns: -2\n", "http.max_conns"},
		{"http:\n  max_conns_per_address: 0\n", "http.max_conns_per_address"},
		{"http:\n  fd_reserve: -1\n", "http.fd_reserve"},
		{"http:\n  trusted_proxies: [10.0.0.0/33]\n", "http.trusted_proxies"},
		{"http:\n  read_timeout: 2s\n  read_header_timeout: 5s\n", "http.read_timeout"},
		{"metrics:\n  listen: nowhere\n", "metrics.listen"},
		{"store:\n  backend: redis\n", "store.backend"},
		{"store:\n  dir: \"\"\n", "store.dir"},
		{"store:\n  directory: x\n", "directory"},
		{"web:\n  ice_servers:\n    - urls: [http://stun.example.com]\n", "web.ice_servers[0].urls[0]"},
		{"web:\n  ice_servers:\n    - urls: [turn:turn.example.com]\n", "web.ice_servers[0]"},
		{"web:\n  ice_servers:\n    - {}\n", "web.ice_servers[0].urls"},
		{"web:\n  ice_server: []\n", "ice_server"},
		{"media:\n  rtpengine: [127.0.0.1:2223]\n", "media.rtpengine: needs the sip section"},
		{"sip:\n  domain: example.com\nmedia:\n  rtpengine: [nowhere]\n", "media.rtpengine[0]"},
		{"sip:\n  domain: example.com\nmedia:\n  policy: sometimes\n", "media.policy"},
		{"media:\n  timeout: 100ms\n", "media.retransmit"},
		{"media:\n  rtpengines: []\n", "rtpengines"},
		{"routing:\n  rules:\n    - {name: x}\n", "routing.rules[0]: no action"},
		{"routing:\n  rules:\n    - {trunk: pstn}\n", "routing.rules[0].trunk"},
		{"routing:\n  trunks:\n    pstn: {proxies: ['sip:127.0.0.1:5060']}\n", "routing.trunks: trunks need the sip section"},
		{"routing:\n  rulez: []\n", "rulez"},
		{"routing:\n  headers:\n    - {header: P-Asserted-Identity, value: x}\n", "routing.headers[0].header: \"P-Asserted-Identity\""},
		{"auth:\n  applications:\n    - name: web\n      mode: open\n      origins: {allow_missing: true}\n      sip_identity: {assert: yes}\n", "auth.applications[0].sip_identity.assert"},
	}
	for _, c := range cases {
		_, err := LoadConfig(writeConfig(t, c.body))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: err = %v, want one naming %q", c.body, err, c.want)
		}
	}
}

func TestWebICEServers(t *testing.T) {
	cfg, err := LoadConfig(writeConfig(t, "web:\n  ice_servers:\n    - urls: [stun:stun.example.com:3478]\n    - urls: [turn:turn.example.com, turns:turn.example.com:443]\n      username: u\n      credential: p\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s := cfg.Web.ICEServers; len(s) != 2 || s[1].URLs[1] != "turns:turn.example.com:443" || s[1].Username != "u" || s[1].Credential != "p" {
		t.Fatalf("ice_servers %+v", s)
	}
}

func TestPresenceExpiryAlone(t *testing.T) {
	if _, err := LoadConfig(writeConfig(t, "presence:\n  expiry: 10\n")); err != nil {
		t.Fatalf("presence.expiry alone: %v", err)
	}
}

func TestHTTPConfig(t *testing.T) {
	cfg, err := LoadConfig(writeConfig(t, "http:\n  idle_timeout: 5s\n  max_conns: 1000\n  max_conns_per_address: 50\n"+
		"  trusted_proxies: [10.0.0.0/8, 192.0.2.7]\nmetrics:\n  listen: \"\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTP.IdleTimeout.D().Seconds() != 5 || cfg.HTTP.ReadHeaderTimeout.D().Seconds() != 10 || cfg.HTTP.MaxConns != 1000 ||
		cfg.HTTP.MaxConnsPerAddress != 50 || len(cfg.HTTP.TrustedProxies) != 2 || cfg.Metrics.Listen != "" {
		t.Fatalf("http config %+v, metrics %+v", cfg.HTTP, cfg.Metrics)
	}
	if d := DefaultConfig(); d.Metrics.Listen != defaultMetricsListen || d.HTTP.MaxConns != 0 {
		t.Fatalf("defaults %+v %+v", d.HTTP, d.Metrics)
	}
}

// TestSIPDefaultsDecideRegistration: a sip section without a registrar
// key registers at sip:<domain>, the documented default, both in the
// loaded Config and in the gateway's decision to register (which once read
// the raw key and never registered anyone).
func TestSIPDefaultsDecideRegistration(t *testing.T) {
	cfg, err := LoadConfig(writeConfig(t, "sip:\n  listen: {udp: 127.0.0.1:0}\n  domain: example.com\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.SIP.Registrar != "sip:example.com" || cfg.SIP.Transport != "udp" {
		t.Fatalf("loaded sip section %+v, want its defaults applied", cfg.SIP)
	}
	if again := cfg.WithDefaults(); again.SIP.Registrar != cfg.SIP.Registrar || again.SIP.Transport != cfg.SIP.Transport {
		t.Fatalf("WithDefaults is not idempotent: %+v", again.SIP)
	}
	// A Config built in code, as tests and embedders do, gets them in New.
	g := newSIPGateway(t)
	if !g.regs.Registers("alice@example.com") {
		t.Fatal("alice@example.com is not registered without a registrar key")
	}
	if g.regs.Registers("alice@elsewhere.example") {
		t.Fatal("an identity of another domain registers")
	}
}

// calls.sip_headers cannot list a header the gateway sets: a client could
// then spoof routing or identity (Via, P-Asserted-Identity, compact forms).
func TestSIPHeadersReserved(t *testing.T) {
	for _, c := range []struct{ list, want string }{
		{`["X-App", "X-Ticket", "Via"]`, `calls.sip_headers[2]: "Via" is set by the gateway`},
		{`["P-Asserted-Identity"]`, `calls.sip_headers[0]: "P-Asserted-Identity" is set by the gateway`},
		{`["X-App", "p-preferred-identity"]`, `calls.sip_headers[1]: "p-preferred-identity" is set by the gateway`},
		{`["Privacy"]`, `calls.sip_headers[0]: "Privacy" is set by the gateway`},
		{`["v"]`, `calls.sip_headers[0]: "v" is set by the gateway`},
		{`["Session-Expires"]`, `calls.sip_headers[0]: "Session-Expires" is set by the gateway`},
		{`["X App"]`, `calls.sip_headers[0]: "X App" is not a header name`},
	} {
		_, err := LoadConfig(writeConfig(t, "calls:\n  sip_headers: "+c.list+"\n"))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want %q", c.list, err, c.want)
		}
	}
	if _, err := LoadConfig(writeConfig(t, "calls:\n  sip_headers: [X-App, Subject, X-Ticket]\n")); err != nil {
		t.Fatalf("extension headers refused: %v", err)
	}
}

// limits.register is validated with the rest, each key named.
func TestRegisterLimitsConfig(t *testing.T) {
	_, err := LoadConfig(writeConfig(t, "limits:\n  register:\n    per_socket: {rate: 1, per: -1s}\n    backoff: {initial: 1m, max: 1s}\n"))
	for _, want := range []string{"limits.register.per_socket.per", "limits.register.backoff.max"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want one naming %s", err, want)
		}
	}
	if _, err := LoadConfig(writeConfig(t, "limits:\n  register:\n    per_identity: {rate: 3, per: 1m, burst: 5}\n    backoff: {initial: 2s, max: 10m}\n")); err != nil {
		t.Fatal(err)
	}
}

func TestTURNConfig(t *testing.T) {
	for _, c := range []struct{ body, want string }{
		{"web:\n  turn:\n    secret: 0123456789abcdef\n", "web.turn.urls"},
		{"web:\n  turn:\n    urls: [stun:x]\n    secret: 0123456789abcdef\n", "web.turn.urls[0]"},
		{"web:\n  turn:\n    urls: [turn:x]\n    secret: short\n", "web.turn.secret"},
		{"web:\n  turn:\n    urls: [turn:x]\n    secret: 0123456789abcdef\n    ttl: 10s\n", "web.turn.ttl"},
		{"web:\n  turn:\n    url: [turn:x]\n", "url"},
	} {
		if _, err := LoadConfig(writeConfig(t, c.body)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: err = %v, want one naming %q", c.body, err, c.want)
		}
	}
	cfg, err := LoadConfig(writeConfig(t, "web:\n  turn:\n    urls: [turn:127.0.0.1:3478]\n    secret: 0123456789abcdef\n"))
	if err != nil || cfg.Web.TURN.TTL.D() != defaultTURNTTL {
		t.Fatalf("%v, ttl %v", err, cfg.Web.TURN.TTL.D())
	}
}
