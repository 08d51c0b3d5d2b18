package interop

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/internal/testenv"
)

// baresip is a real softphone (Debian's baresip-core) registered at the
// test Kamailio, driven over its ctrl_tcp module: netstring-framed JSON
// commands ({"command","params","token"}) answered by {"response":true,
// "ok","data","token"}, and events ({"event":true,"type",...}) for every
// registration and call change. It runs headless: the aubridge module is
// its audio device (a source and a player that feed each other), so no
// sound card is needed; media toward the Go client's SDP goes nowhere.
type baresip struct {
	*proc
	AOR     string // sip:user@example.com
	SIPPort int    // its UDP/TCP SIP listener on 127.0.0.1

	conn    net.Conn
	events  chan baresipEvent
	replies chan baresipReply
	tok     atomic.Uint64
	readErr error         // set by the reader before it closes events
	stop    chan struct{} // closed by Cleanup: the reader stops delivering
	wg      sync.WaitGroup
}

// baresipEvent is one ctrl_tcp event: Type is baresip's UA event name
// (REGISTER_OK, CALL_INCOMING, CALL_ESTABLISHED, CALL_DTMF_START,
// CALL_CLOSED...), Param its argument (a DTMF key, a close reason).
type baresipEvent struct {
	Type       string `json:"type"`
	Class      string `json:"class"`
	AccountAOR string `json:"accountaor"`
	Direction  string `json:"direction"`
	PeerURI    string `json:"peeruri"`
	ID         string `json:"id"`
	Param      string `json:"param"`
}

type baresipReply struct {
	OK    bool   `json:"ok"`
	Data  string `json:"data"`
	Token string `json:"token"`
}

// baresipOptions are the account's settings beyond its identity.
type baresipOptions struct {
	// Password answers Kamailio's REGISTER challenge; "" for none.
	Password string
	// AutoAnswer answers incoming calls at once (answermode=auto).
	AutoAnswer bool
}

// startBaresip starts baresip as user@example.com with its own config
// directory (a temp dir: config and accounts), listening for SIP on a free
// loopback port, Kamailio as outbound proxy and registrar, and waits until
// it is registered. Cleanup quits it.
func startBaresip(t *testing.T, k *Kamailio, user string, o baresipOptions) *baresip {
	t.Helper()
	// The binary: under CI=true need() is where a missing one fails.
	need(t, "baresip")
	dir := t.TempDir()
	sipPort := freeSIPPortPair(t)
	ctrlPort := freePort(t)
	for ctrlPort == sipPort || ctrlPort == sipPort+1 {
		ctrlPort = freePort(t)
	}
	modules := "/usr/lib/baresip/modules"
	if m, _ := filepath.Glob("/usr/lib/*/baresip/modules/ctrl_tcp.so"); len(m) > 0 {
		modules = filepath.Dir(m[0])
	}
	config := strings.Join([]string{
		"poll_method epoll",
		"sip_listen 127.0.0.1:" + strconv.Itoa(sipPort),
		"call_local_timeout 120",
		"call_max_calls 4",
		// aubridge pairs a player and a source of the same device name:
		// audio runs with no sound card.
		"audio_player aubridge,nil",
		"audio_source aubridge,nil",
		"audio_alert aubridge,nil",
		"module_path " + modules,
		"module g711.so",
		"module aubridge.so",
		"module_tmp account.so",
		"module_app menu.so",
		"module_app ctrl_tcp.so",
		"statmode_default off", // no per-packet status line in the output kept for failures
		"ctrl_tcp_listen 127.0.0.1:" + strconv.Itoa(ctrlPort),
		"",
	}, "\n")
	aor := "sip:" + user + "@" + domain
	account := "<" + aor + ";transport=udp>;outbound=\"sip:" + k.Addr + "\";regint=600;mwi=no;ptime=20"
	if o.Password != "" {
		account += ";auth_pass=" + o.Password
	}
	if o.AutoAnswer {
		account += ";answermode=auto"
	} else {
		account += ";answermode=manual"
	}
	for name, body := range map[string]string{"config": config, "accounts": account + "\n", "contacts": ""} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	b := &baresip{
		proc:    start(t, "baresip "+user, dir, "baresip", "-f", dir),
		AOR:     aor,
		SIPPort: sipPort,
		events:  make(chan baresipEvent, 64),
		replies: make(chan baresipReply, 1),
		stop:    make(chan struct{}),
	}
	b.conn = b.dialCtrl(t, ctrlPort)
	b.wg.Go(b.read)
	t.Cleanup(func() {
		// quit unregisters and exits; the proc's own cleanup (which runs
		// after this one) interrupts it if it does not.
		close(b.stop)
		b.send("quit", "", "")
		select {
		case <-b.done:
		case <-time.After(5 * time.Second):
		}
		b.conn.Close()
		b.wg.Wait()
	})
	// Events flow from the connection on: a registration that completed
	// before it shows in reginfo ("OK", else "zzz"), a later one as
	// REGISTER_OK.
	if !strings.Contains(b.cmd(t, "reginfo", ""), "OK") {
		if ev := b.expect(t, "REGISTER_OK", "REGISTER_FAIL"); ev.Type != "REGISTER_OK" {
			t.Fatalf("baresip %s: registration failed: %s", user, ev.Param)
		}
	}
	return b
}

// freeSIPPortPair returns a port free for SIP over UDP and TCP whose next
// port is reserved too: baresip listens for SIP over TLS on sip_listen's
// port plus one, whether or not a certificate is configured, and exits
// (status 98) when that port is taken.
func freeSIPPortPair(t *testing.T) int {
	t.Helper()
	return testenv.Ports(t, 2)
}

// dialCtrl connects to ctrl_tcp once baresip listens.
func (b *baresip) dialCtrl(t *testing.T, port int) net.Conn {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for {
		c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err == nil {
			return c
		}
		select {
		case <-b.done:
			t.Fatalf("baresip exited: %v\n%s", b.err, tail(b.out.String(), 3000))
		case <-deadline:
			t.Fatalf("baresip ctrl_tcp not listening on %d: %v", port, err)
		case <-tick.C:
		}
	}
}

// read decodes netstrings ("<len>:<json>,") until the connection closes.
func (b *baresip) read() {
	defer close(b.events)
	r := bufio.NewReader(b.conn)
	for {
		msg, err := readNetstring(r)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				b.readErr = err
			}
			return
		}
		var kind struct{ Event, Response bool }
		if err := json.Unmarshal(msg, &kind); err != nil {
			b.readErr = fmt.Errorf("ctrl_tcp: %w: %q", err, msg)
			return
		}
		switch {
		case kind.Event:
			var ev baresipEvent
			if json.Unmarshal(msg, &ev) == nil {
				handOver(b.events, ev, b.stop)
			}
		case kind.Response:
			var rep baresipReply
			if json.Unmarshal(msg, &rep) == nil {
				handOver(b.replies, rep, b.stop)
			}
		}
	}
}

// handOver sends v on ch, or drops it once the test is over (stop).
func handOver[T any](ch chan<- T, v T, stop <-chan struct{}) {
	select {
	case ch <- v:
	case <-stop:
	}
}

func readNetstring(r *bufio.Reader) ([]byte, error) {
	head, err := r.ReadString(':')
	if err != nil {
		return nil, err
	}
	n, err := strconv.Atoi(head[:len(head)-1])
	if err != nil || n < 0 || n > 1<<20 {
		return nil, fmt.Errorf("ctrl_tcp: bad netstring length %q", head)
	}
	buf := make([]byte, n+1)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, err
	}
	if buf[n] != ',' {
		return nil, fmt.Errorf("ctrl_tcp: netstring not ended by a comma")
	}
	return buf[:n], nil
}

func (b *baresip) send(command, params, token string) error {
	msg, _ := json.Marshal(map[string]string{"command": command, "params": params, "token": token})
	_, err := fmt.Fprintf(b.conn, "%d:%s,", len(msg), msg)
	return err
}

// cmd runs one menu command (dial, accept, hangup, hold, resume,
// sndcode, transfer, reginfo...) and returns its output; it fails the
// test when baresip says the command failed.
func (b *baresip) cmd(t *testing.T, command, params string) string {
	t.Helper()
	token := strconv.FormatUint(b.tok.Add(1), 10)
	if err := b.send(command, params, token); err != nil {
		t.Fatalf("baresip %s: %v", command, err)
	}
	select {
	case rep := <-b.replies:
		if rep.Token != token {
			t.Fatalf("baresip %s: reply for token %q", command, rep.Token)
		}
		if !rep.OK {
			t.Fatalf("baresip %s %s: failed: %s", command, params, rep.Data)
		}
		return rep.Data
	case <-time.After(10 * time.Second):
		t.Fatalf("baresip %s: no reply", command)
	}
	return ""
}

// expect returns the next event of one of types, skipping others. A
// call that closes while the test waits for something else fails it.
func (b *baresip) expect(t *testing.T, types ...string) baresipEvent {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case ev, ok := <-b.events:
			if !ok {
				t.Fatalf("baresip control connection closed waiting for %v: %v", types, b.readErr)
			}
			for _, typ := range types {
				if ev.Type == typ {
					return ev
				}
			}
			if ev.Type == "CALL_CLOSED" {
				t.Fatalf("baresip call closed (%s) waiting for %v", ev.Param, types)
			}
		case <-timeout:
			t.Fatalf("baresip: no %v event", types)
		}
	}
}
