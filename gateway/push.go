package gateway

import (
	"context"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/push"
)

// PushConfig configures standby and push wake-up (docs/protocol.md §4.9):
// a client may register how to wake it and close its socket; an incoming
// call or message for it then sends a push. Off unless a VAPID key or a
// webhook is set.
type PushConfig struct {
	// VAPIDPrivateKey is the application server's P-256 key, base64url of
	// its 32-octet scalar (as web-push tools print it); browsers subscribe
	// with its public half. Set: Web Push is on.
	VAPIDPrivateKey string `yaml:"vapid_private_key"`
	// VAPIDKeyFile, instead of VAPIDPrivateKey, keeps the key in a file
	// (base64url of the scalar), made 0600 with a new key the first time.
	// Browsers bind their subscriptions to the key: a key that changed
	// at a restart would orphan every one of them. Set: Web Push is on.
	VAPIDKeyFile string `yaml:"vapid_key_file"`
	// Subject is the contact push services may use (mailto: or https:),
	// required with the key.
	Subject string `yaml:"subject"`
	// AllowedEndpoints are the host[:port] patterns (path.Match) of the
	// push services a subscription may name, since the gateway POSTs to
	// whatever a client names. Default: the browsers' push services.
	// Only https endpoints are used, but for loopback hosts. Whatever the
	// name, an internal address (loopback, private, link-local) is
	// refused when dialed, unless a pattern names it as an IP literal
	// ("127.0.0.1:*": a test's push service).
	AllowedEndpoints []string `yaml:"allowed_endpoints"`
	// Webhook is a native apps' push relay, which gets the device token
	// with the event, signed (push.VerifyWebhook).
	Webhook WebhookConfig `yaml:"webhook"`
	// StandbyTimeout is how long a session in standby stays resumable
	// (session.resume_timeout otherwise). Default 1h; at most 24h.
	StandbyTimeout Duration `yaml:"standby_timeout"`
	// PerIdentity bounds the pushes an identity gets a minute, all its
	// sessions together: whoever can call or message a user cannot make
	// the gateway buzz the user's devices without end, nor spend its
	// standing with the push services. Default 10.
	PerIdentity int `yaml:"per_identity"`
}

// WebhookConfig is the push relay of native apps.
type WebhookConfig struct {
	URL    string `yaml:"url"`
	Secret string `yaml:"secret"`
}

// defaultPushEndpoints are the push services of the major browsers.
var defaultPushEndpoints = []string{"fcm.googleapis.com", "*.push.services.mozilla.com", "*.notify.windows.com", "*.push.apple.com"}

func (p PushConfig) enabled() bool {
	return p.VAPIDPrivateKey != "" || p.VAPIDKeyFile != "" || p.Webhook.URL != ""
}

// LoadVAPIDKeyFile replaces VAPIDKeyFile with the key it holds (in
// VAPIDPrivateKey; New does it, and so may a caller that needs the
// public key before, for the page), generating
// the key and writing the file (0600, never over another) when there is
// none. A file others may read is refused: the key signs as the gateway
// toward every push service. A no-op without a file or with the key set.
func (p *PushConfig) LoadVAPIDKeyFile() error {
	if p.VAPIDKeyFile == "" {
		return nil
	}
	f, err := os.OpenFile(p.VAPIDKeyFile, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err == nil {
		k, err := ecdh.P256().GenerateKey(rand.Reader)
		if err != nil {
			f.Close()
			return fmt.Errorf("push.vapid_key_file: %w", err)
		}
		_, err = f.WriteString(base64.RawURLEncoding.EncodeToString(k.Bytes()) + "\n")
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(p.VAPIDKeyFile)
			return fmt.Errorf("push.vapid_key_file: %w", err)
		}
	} else if !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("push.vapid_key_file: %w", err)
	}
	fi, err := os.Stat(p.VAPIDKeyFile)
	if err != nil {
		return fmt.Errorf("push.vapid_key_file: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("push.vapid_key_file: %s is %s: others may read the key (chmod 600)", p.VAPIDKeyFile, fi.Mode().Perm())
	}
	data, err := os.ReadFile(p.VAPIDKeyFile)
	if err != nil {
		return fmt.Errorf("push.vapid_key_file: %w", err)
	}
	q := *p
	q.VAPIDPrivateKey, q.VAPIDKeyFile = strings.TrimSpace(string(data)), ""
	if _, err := q.vapidKey(); err != nil {
		return fmt.Errorf("push.vapid_key_file: %s holds no base64url P-256 private key: %w", p.VAPIDKeyFile, err)
	}
	*p = q
	return nil
}

func (p PushConfig) perIdentity() int {
	if p.PerIdentity == 0 {
		return 10
	}
	return p.PerIdentity
}

func (p PushConfig) standbyTimeout() time.Duration {
	if p.StandbyTimeout == 0 {
		return time.Hour
	}
	return p.StandbyTimeout.D()
}

// vapidKey decodes VAPIDPrivateKey.
func (p PushConfig) vapidKey() (*ecdsa.PrivateKey, error) {
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(p.VAPIDPrivateKey, "="))
	if err != nil {
		return nil, err
	}
	if _, err := ecdh.P256().NewPrivateKey(raw); err != nil {
		return nil, err
	}
	return ecdsa.ParseRawPrivateKey(elliptic.P256(), raw)
}

// VAPIDPublicKey is the public half of the VAPID key (base64url of the
// uncompressed point), which browsers subscribe with; "" without Web Push.
func (p PushConfig) VAPIDPublicKey() (string, error) {
	if p.VAPIDPrivateKey == "" {
		return "", nil
	}
	k, err := p.vapidKey()
	if err != nil {
		return "", err
	}
	return push.VAPID{Key: k}.PublicKey()
}

func (c *Config) validatePush(bad func(key, format string, args ...any)) {
	p := c.Push
	if p.VAPIDPrivateKey != "" && p.VAPIDKeyFile != "" {
		bad("push.vapid_key_file", "set it or push.vapid_private_key, not both")
	}
	if p.VAPIDPrivateKey != "" {
		if _, err := p.vapidKey(); err != nil {
			bad("push.vapid_private_key", "not a base64url P-256 private key: %v", err)
		}
	}
	if p.VAPIDPrivateKey != "" || p.VAPIDKeyFile != "" {
		if !strings.HasPrefix(p.Subject, "mailto:") && !strings.HasPrefix(p.Subject, "https:") {
			bad("push.subject", "must be a mailto: or https: URI with Web Push (push.vapid_private_key or push.vapid_key_file)")
		}
	}
	if (p.Webhook.URL == "") != (p.Webhook.Secret == "") {
		bad("push.webhook", "url and secret go together")
	}
	if p.Webhook.URL != "" {
		if u, err := url.Parse(p.Webhook.URL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			bad("push.webhook.url", "%q is not an http(s) URL", p.Webhook.URL)
		}
		if len(p.Webhook.Secret) < 16 {
			bad("push.webhook.secret", "must be at least 16 characters")
		}
	}
	for _, pat := range p.AllowedEndpoints {
		if _, err := path.Match(pat, ""); err != nil {
			bad("push.allowed_endpoints", "%q: %v", pat, err)
		}
	}
	if p.PerIdentity < 0 || p.PerIdentity > 1000 {
		bad("push.per_identity", "must be between 1 and 1000 (0: the default, 10)")
	}
	if p.StandbyTimeout != 0 && (p.StandbyTimeout < c.Session.ResumeTimeout || p.StandbyTimeout.D() > 24*time.Hour) {
		bad("push.standby_timeout", "must be between session.resume_timeout and 24h")
	}
}

// pusher wakes sessions in standby.
type pusher struct {
	cfg     PushConfig
	sender  *push.Sender // nil: no Web Push
	webhook *push.Webhook
	allowed []string

	mu     sync.Mutex
	minute map[string]*pushWindow // per identity, the pushes of its current minute
}

// pushWindow counts an identity's pushes in the minute from start.
type pushWindow struct {
	start time.Time
	n     int
}

// maxPushWindows bounds the per-identity table; past it, the windows
// that have ended go.
const maxPushWindows = 4096

// allow takes one of identity's pushes of the minute at now, or reports
// that it has had them all.
func (p *pusher) allow(identity string, now time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	w := p.minute[identity]
	if w == nil || now.Sub(w.start) >= time.Minute {
		if len(p.minute) >= maxPushWindows {
			for id, o := range p.minute {
				if now.Sub(o.start) >= time.Minute {
					delete(p.minute, id)
				}
			}
		}
		w = &pushWindow{start: now}
		p.minute[identity] = w
	}
	if w.n >= p.cfg.perIdentity() {
		return false
	}
	w.n++
	return true
}

func newPusher(cfg PushConfig) (*pusher, error) {
	if !cfg.enabled() {
		return nil, nil
	}
	p := &pusher{cfg: cfg, allowed: cfg.AllowedEndpoints, minute: map[string]*pushWindow{}}
	if len(p.allowed) == 0 {
		p.allowed = defaultPushEndpoints
	}
	if err := cfg.LoadVAPIDKeyFile(); err != nil {
		return nil, err
	}
	if cfg.VAPIDPrivateKey != "" {
		k, err := cfg.vapidKey()
		if err != nil {
			return nil, err
		}
		hc := push.GuardedClient(p.allowedAddr)
		if p.sender, err = push.NewSender(push.Options{VAPID: push.VAPID{Key: k, Subject: cfg.Subject}, HTTPClient: hc}); err != nil {
			return nil, err
		}
	}
	if cfg.Webhook.URL != "" {
		p.webhook = &push.Webhook{URL: cfg.Webhook.URL, Secret: []byte(cfg.Webhook.Secret)}
	}
	return p, nil
}

// check says why ch cannot be used, or nil.
func (p *pusher) check(ch *protocol.PushChannel) error {
	switch {
	case ch == nil:
		return errors.New("payload.push is missing")
	case ch.Type == protocol.PushWebhook:
		if p.webhook == nil {
			return errors.New("no webhook push on this gateway")
		}
		if ch.Token == "" || len(ch.Token) > 4096 {
			return errors.New("push.token must be 1 to 4096 characters")
		}
		return nil
	case ch.Type != protocol.PushWebPush:
		return errors.New("push.type must be webpush or webhook")
	case p.sender == nil:
		return errors.New("no Web Push on this gateway")
	}
	u, err := url.Parse(ch.Endpoint)
	if err != nil || u.Host == "" {
		return errors.New("push.endpoint is not a URL")
	}
	host := u.Hostname()
	loopback := host == "localhost" || net.ParseIP(host).IsLoopback()
	if u.Scheme != "https" && !(u.Scheme == "http" && loopback) {
		return errors.New("push.endpoint must be https")
	}
	if !p.allows(u.Host) {
		return errors.New("push.endpoint is not a push service this gateway uses")
	}
	var sub push.Subscription
	sub.Keys.P256DH, sub.Keys.Auth = ch.Keys.P256DH, ch.Keys.Auth
	return push.CheckSubscription(sub)
}

// allows reports whether host[:port] matches an allowed pattern.
func (p *pusher) allows(host string) bool {
	for _, pat := range p.allowed {
		if ok, _ := path.Match(strings.ToLower(pat), strings.ToLower(host)); ok {
			return true
		}
	}
	return false
}

// allowedAddr is the dial-time exception to the refusal of internal
// addresses: only an address an allowed pattern names literally, so that
// no DNS name leads inside.
func (p *pusher) allowedAddr(ap netip.AddrPort) bool { return p.allows(ap.String()) }

// wakeEvent is what a push says: no more than a notification needs.
type wakeEvent struct {
	Kind string `json:"kind"` // "call" or "message"
	From string `json:"from"`
}

// wakes reports the event of a frame that wakes a session in standby:
// a new call, or a message.
func wakes(f *protocol.Frame) (wakeEvent, bool) {
	if f.Control.Type != protocol.TypeRequest {
		return wakeEvent{}, false
	}
	switch {
	case f.EffectivePackage() == protocol.PackageCall && f.Header.Action == protocol.ActionStart:
		return wakeEvent{Kind: "call", From: f.Header.Initiator}, true
	case f.EffectivePackage() == protocol.PackageMessaging && f.Header.Action == protocol.ActionSend:
		return wakeEvent{Kind: "message", From: f.Header.Initiator}, true
	}
	return wakeEvent{}, false
}

// send delivers ev to the channel ch of session s; the outcome is
// counted. A call's push lives as long as the call rings.
func (p *pusher) send(ctx context.Context, g *Gateway, s *Session, ch protocol.PushChannel, ev wakeEvent) {
	if !p.allow(s.identity, time.Now()) {
		g.pushed(ch.Type, "rate_limited")
		s.rlog.Info("push rate", "push not sent: the identity had push.per_identity pushes this minute", "kind", ev.Kind)
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var err error
	switch ch.Type {
	case protocol.PushWebhook:
		body, _ := json.Marshal(struct {
			wakeEvent
			Identity string `json:"identity"`
			Token    string `json:"token"`
		}{ev, s.identity, ch.Token})
		err = p.webhook.Send(ctx, body)
	default:
		var sub push.Subscription
		sub.Endpoint, sub.Keys.P256DH, sub.Keys.Auth = ch.Endpoint, ch.Keys.P256DH, ch.Keys.Auth
		payload, _ := json.Marshal(ev)
		m := push.Message{Payload: payload, Urgency: push.UrgencyNormal, TTL: p.cfg.standbyTimeout()}
		if ev.Kind == "call" {
			m.Urgency, m.TTL = push.UrgencyHigh, g.cfg.Calls.RingTimeout.D()
		}
		err = p.sender.Send(ctx, sub, m)
	}
	outcome := "ok"
	switch {
	case errors.Is(err, push.ErrGone):
		outcome = "gone"
		s.mu.Lock()
		s.standby = nil // the subscription is dead: nothing to wake it with
		s.mu.Unlock()
	case err != nil:
		outcome = "error"
	}
	g.pushed(ch.Type, outcome)
	if err != nil {
		s.rlog.Info("push", "push failed", "channel", ch.Type, "err", err)
		return
	}
	s.log.Info("woke the session in standby", "channel", ch.Type, "kind", ev.Kind)
}

// pushed counts a push's outcome.
func (g *Gateway) pushed(channel, outcome string) {
	g.metrics.pushes.WithLabelValues(channel, outcome).Inc()
	if g.onPushed != nil {
		g.onPushed(outcome)
	}
}

// onStandby answers request/standby: the session keeps ch to wake the
// client with once its socket is gone, and waits push.standby_timeout
// for its resume instead of session.resume_timeout. A resume ends the
// standby.
func (s *Session) onStandby(f *protocol.Frame) {
	p := s.g.push
	if p == nil {
		s.Send(errorFor(f, protocol.CodeMethodNotAllowed, "standby is not configured on this gateway"), false)
		return
	}
	var pl protocol.StandbyPayload
	if err := protocol.DecodePayload(f.Payload, &pl); err != nil {
		s.Send(errorFor(f, protocol.CodeBadRequest, err.Error()), false)
		return
	}
	if err := p.check(pl.Push); err != nil {
		s.Send(errorFor(f, protocol.CodeBadRequest, err.Error()), false)
		return
	}
	s.mu.Lock()
	s.standby, s.woken, s.pendingWake = pl.Push, false, nil
	s.mu.Unlock()
	s.Send(&protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeResponse, Package: protocol.PackageRegister,
			CorrelationID: f.Control.CorrelationID, MessageState: protocol.StateFinal},
		Header: protocol.Header{Action: protocol.ActionStandby, ResponseCode: protocol.CodeOK,
			Expiry: int(p.cfg.standbyTimeout() / time.Second)},
	}, false)
}

// Asleep reports whether the session sleeps in standby: its client went
// to standby and its socket is gone (call: a SIP caller hears ringing
// while a push wakes it).
func (s *Session) Asleep() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conn == nil && s.standby != nil
}

// wakeLocked sends a push for f when the session sleeps in standby: the
// first call or message since its socket went; s.mu is held.
func (s *Session) wakeLocked(f *protocol.Frame) {
	if s.standby == nil || s.woken {
		return
	}
	ev, ok := wakes(f)
	if !ok {
		return
	}
	if s.conn != nil {
		// The client asked for standby and is closing its socket: what
		// reaches the socket now may never be read. Pushed if the socket
		// goes (wakePendingLocked).
		s.pendingWake = &ev
		return
	}
	s.pushWakeLocked(ev)
}

// wakePendingLocked pushes the event that went to the socket of a client
// going to standby, once that socket is gone; s.mu is held.
func (s *Session) wakePendingLocked() {
	if ev := s.pendingWake; ev != nil && s.standby != nil && !s.woken {
		s.pendingWake = nil
		s.pushWakeLocked(*ev)
	}
}

// pushWakeLocked sends the one push of this standby; s.mu is held.
func (s *Session) pushWakeLocked(ev wakeEvent) {
	s.woken = true
	ch := *s.standby
	s.g.goTracked(func() { s.g.push.send(s.g.ctx, s.g, s, ch, ev) })
}
