package interop

import (
	"bytes"
	"context"
	"log/slog"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"text/template"
	"time"

	"github.com/jsonrtc/jsonrtc/client"
	"github.com/jsonrtc/jsonrtc/gateway"
	"github.com/jsonrtc/jsonrtc/internal/testenv"
	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/sipgw"
)

// presenceCfg is Kamailio as presence server (presence, presence_xml on
// a SQLite database the test creates from Kamailio's own schema) and
// proxy: presence SUBSCRIBE/PUBLISH are served here, "uas-<port>" users
// go to a SIPp on 127.0.0.1:<port> (record-routed, so that in-dialog
// NOTIFYs come back through), other users to their registration or to
// the gateway under test.
var presenceCfg = template.Must(template.New("kamailio-presence.cfg").Parse(`#!KAMAILIO
debug=2
log_stderror=yes
memdbg=5
memlog=5
children=1
tcp_children=1
auto_aliases=no
alias="{{.Domain}}"
listen=udp:127.0.0.1:{{.Port}}
mpath="{{.ModPath}}"
loadmodule "kex.so"
loadmodule "corex.so"
loadmodule "tm.so"
loadmodule "tmx.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "sanity.so"
loadmodule "db_sqlite.so"
loadmodule "presence.so"
loadmodule "presence_xml.so"
modparam("usrloc", "db_mode", 0)
modparam("rr", "enable_full_lr", 1)
modparam("presence", "db_url", "sqlite:///{{.DB}}")
modparam("presence", "server_address", "sip:127.0.0.1:{{.Port}}")
modparam("presence", "min_expires", 1)
modparam("presence_xml", "db_url", "sqlite:///{{.DB}}")
modparam("presence_xml", "force_active", 1)

request_route {
	if (!mf_process_maxfwd_header("10")) {
		sl_send_reply("483", "Too Many Hops");
		exit;
	}
	if (!sanity_check("17895", "7")) {
		exit;
	}
	if (is_method("OPTIONS") && uri==myself && $rU==$null) {
		sl_send_reply("200", "OK");
		exit;
	}
	if (!is_method("ACK")) {
		if (t_precheck_trans()) {
			t_check_trans();
			exit;
		}
		t_check_trans();
	}
	if (has_totag()) {
		if (loose_route()) {
			route(RELAY);
			exit;
		}
		if (is_method("SUBSCRIBE") && uri==myself) {
			route(PRESENCE);
		}
		if (is_method("ACK")) {
			exit;
		}
		sl_send_reply("404", "Not here");
		exit;
	}
	remove_hf("Route");
	# "uas-<port>" presentities have notifiers of their own (SIPp).
	if (is_method("PUBLISH|SUBSCRIBE") && $hdr(Event) == "presence" && !($rU =~ "^uas-[0-9]+$")) {
		route(PRESENCE);
	}
	if (is_method("SUBSCRIBE")) {
		record_route();
	}
	if (is_method("REGISTER")) {
		if (!save("location")) {
			sl_reply_error();
		}
		exit;
	}
	if ($rU == $null) {
		sl_send_reply("484", "Address Incomplete");
		exit;
	}
	if ($rU =~ "^uas-[0-9]+$") {
		$du = "sip:127.0.0.1:" + $(rU{s.substr,4,0});
		route(RELAY);
	}
	if (lookup("location")) {
		route(RELAY);
	}
	$du = "sip:{{.Gateway}}";
	route(RELAY);
}

route[PRESENCE] {
	if (!t_newtran()) {
		sl_reply_error();
		exit;
	}
	if (is_method("PUBLISH")) {
		handle_publish();
	} else {
		handle_subscribe();
	}
	exit;
}

route[RELAY] {
	if (!t_relay()) {
		sl_reply_error();
	}
	exit;
}
`))

// eventsEnv is a Kamailio presence server and an in-process jsonrtc
// gateway with its SIP side pointed at it.
type eventsEnv struct {
	K   *Kamailio
	G   *gateway.Gateway
	URL string
	DB  string // Kamailio's SQLite database (the presentity table)
}

// startEventsEnv starts the environment; each of more changes the
// gateway's configuration.
func startEventsEnv(t *testing.T, more ...func(*gateway.Config)) *eventsEnv {
	t.Helper()
	need(t, "kamailio", "sipp", "sqlite3")
	modPath := kamailioModules(t, "db_sqlite.so", "presence.so", "presence_xml.so")
	schema := "/usr/share/kamailio/db_sqlite"
	for _, f := range []string{"standard-create.sql", "presence-create.sql"} {
		testenv.File(t, filepath.Join(schema, f), install("db_sqlite.so"))
	}
	dir := t.TempDir()
	db := filepath.Join(dir, "kamailio.db")
	for _, f := range []string{"standard-create.sql", "presence-create.sql"} {
		cmd := exec.Command("sqlite3", db, ".read "+filepath.Join(schema, f))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("sqlite3 %s: %v\n%s", f, err, out)
		}
	}
	// WAL (kept in the file): the test's reads of the presentity table
	// no longer lock Kamailio's writes out. In the default rollback mode a
	// read under way made Kamailio's commit of a PUBLISH fail at once
	// ("database is locked": its db_sqlite sets no busy timeout), and the
	// publication was lost (TestPresencePublishedOnlyWhenAsked, in CI).
	if out, err := exec.Command("sqlite3", db, "PRAGMA journal_mode=WAL;").CombinedOutput(); err != nil || !strings.Contains(string(out), "wal") {
		t.Fatalf("sqlite3 journal_mode=WAL: %v\n%s", err, out)
	}
	kport := freePort(t)
	kaddr := "127.0.0.1:" + strconv.Itoa(kport)

	cfg := gateway.DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.Presence.MinExpiry = 1
	cfg.SIP = sipgw.Config{
		Listen:        sipgw.ListenConfig{UDP: "127.0.0.1:0"},
		Domain:        domain,
		OutboundProxy: "sip:" + kaddr,
		UserAgent:     "jsonrtc-interop",
	}
	for _, f := range more {
		f(&cfg)
	}
	g, err := gateway.New(cfg, &gateway.Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g.Handler())
	// The gateway shuts down before Kamailio stops (its un-REGISTERs and
	// PUBLISH withdrawals need Kamailio's answers), so the shutdown is
	// registered again once Kamailio runs; the first registration only
	// covers a failure to start it.
	stop := sync.OnceFunc(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := g.Shutdown(ctx); err != nil {
			t.Errorf("gateway shutdown: %v\n%s", err, goroutines())
		}
		srv.Close()
		if st := g.SIPEventStats(); st != (sipgw.EventStats{}) {
			t.Errorf("SIP events left after shutdown: %+v", st)
		}
	})
	t.Cleanup(stop)

	var kc bytes.Buffer
	if err := presenceCfg.Execute(&kc, map[string]any{"Domain": domain, "Port": kport, "ModPath": modPath,
		"DB": db, "Gateway": g.SIPAddr("udp")}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "kamailio.cfg")
	if err := os.WriteFile(path, kc.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	p := start(t, "kamailio", dir, "kamailio", "-DD", "-E", "-f", path, "-P", filepath.Join(dir, "kamailio.pid"),
		"-Y", dir, "-w", dir, "-m", "64", "-M", "8")
	k := &Kamailio{Port: kport, Addr: kaddr}
	deadline := time.Now().Add(10 * time.Second)
	for !optionsPing(k.Addr, 200*time.Millisecond) {
		select {
		case <-p.done:
			t.Fatalf("kamailio exited: %v\n%s", p.err, tail(p.out.String(), 4000))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("kamailio not answering on %s", k.Addr)
		}
	}
	t.Cleanup(stop)
	return &eventsEnv{K: k, G: g, URL: "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws/webrtc/test", DB: db}
}

// presentity returns the entity tags of user's unexpired presence
// publications that Kamailio's presence server holds.
func (e *eventsEnv) presentity(t *testing.T, user string) []string {
	t.Helper()
	q := "select etag from presentity where username='" + user + "' and expires > strftime('%s','now');"
	// Kamailio writes the database meanwhile: wait out its locks.
	out, err := exec.Command("sqlite3", "-cmd", ".timeout 5000", e.DB, q).CombinedOutput()
	if err != nil {
		t.Fatalf("sqlite3: %v\n%s", err, out)
	}
	return strings.Fields(string(out))
}

func testLogger(t *testing.T) *slog.Logger {
	level := slog.LevelWarn
	if os.Getenv("SIPGW_DEBUG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: level}))
}

// web connects a Go client as identity.
func (e *eventsEnv) web(t *testing.T, identity string) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, client.Options{URL: e.URL, Identity: identity,
		ReconnectMin: 10 * time.Millisecond, ReconnectMax: 200 * time.Millisecond})
	if err != nil {
		t.Fatalf("dial %s: %v", identity, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// frame waits for the next frame of package pkg and action act that
// match, skipping everything else.
func frame(t *testing.T, c *client.Client, pkg protocol.Package, act protocol.Action, match func(*protocol.Frame) bool) *protocol.Frame {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case ev, ok := <-c.Events():
			if !ok {
				t.Fatalf("events closed waiting for %s/%s", pkg, act)
			}
			f := ev.Frame
			if ev.Kind == client.EventClosed {
				t.Fatalf("closed waiting for %s/%s: %v", pkg, act, ev.Err)
			}
			if f == nil || f.EffectivePackage() != pkg || f.Header.Action != act {
				continue
			}
			if match == nil || match(f) {
				return f
			}
		case <-timeout:
			t.Fatalf("no %s/%s frame", pkg, act)
		}
	}
}

// until waits, bounded, for cond: for state that has no event to wait
// on (SIP-side counts).
func until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	untilWithin(t, 15*time.Second, what, cond)
}

// untilWithin is until with a deadline of its own.
func untilWithin(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(within)
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func payload(t *testing.T, f *protocol.Frame) map[string]any {
	t.Helper()
	var m map[string]any
	if err := protocol.DecodePayload(f.Payload, &m); err != nil {
		t.Fatalf("payload %s: %v", f.Payload, err)
	}
	return m
}
