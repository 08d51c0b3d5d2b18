package push

import (
	"context"
	"crypto/ecdh"
	"crypto/ecdsa"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	webpush "github.com/SherClockHolmes/webpush-go"
)

// Subscription is a browser's push subscription, as its
// PushSubscription.toJSON() gives it: the push resource to POST to, and
// the keys to encrypt for (base64url, RFC 8291 §2).
type Subscription struct {
	Endpoint string `json:"endpoint"`
	Keys     struct {
		P256DH string `json:"p256dh"`
		Auth   string `json:"auth"`
	} `json:"keys"`
}

// The aes128gcm layout (RFC 8188 §2.1, RFC 8291 §4): one record, whose
// header carries the salt, the record size and the sender's public key.
// webpush-go pads every message to the record size, so the record is
// kept small: what a notification says fits many times over.
const (
	recordSize = 1024
	saltLen    = 16
	keyLen     = 65 // an uncompressed P-256 point
	headerLen  = saltLen + 4 + 1 + keyLen
	tagLen     = 16
	// MaxPayload is the largest plaintext one message carries: the
	// record less the header, the tag and the padding delimiter.
	MaxPayload = recordSize - headerLen - tagLen - 1
)

// Errors of Web Push.
var (
	// ErrPayloadTooLarge: over MaxPayload.
	ErrPayloadTooLarge = errors.New("push: payload too large")
	// ErrGone: the push service no longer knows the subscription (404 or
	// 410, RFC 8030 §7.3): forget it.
	ErrGone = errors.New("push: subscription gone")
	// ErrBadSubscription: the subscription's keys do not decode.
	ErrBadSubscription = errors.New("push: bad subscription keys")
)

var b64 = base64.RawURLEncoding

// CheckSubscription says why sub's keys cannot be encrypted for: the
// check a gateway makes when a client registers them, before any push.
func CheckSubscription(sub Subscription) error {
	p, err := b64.DecodeString(strings.TrimRight(sub.Keys.P256DH, "="))
	if err != nil {
		return fmt.Errorf("%w: p256dh: %v", ErrBadSubscription, err)
	}
	if _, err := ecdh.P256().NewPublicKey(p); err != nil {
		return fmt.Errorf("%w: p256dh: %v", ErrBadSubscription, err)
	}
	if auth, err := b64.DecodeString(strings.TrimRight(sub.Keys.Auth, "=")); err != nil || len(auth) != 16 {
		return fmt.Errorf("%w: auth must be 16 octets", ErrBadSubscription)
	}
	return nil
}

// VAPID is an application server's identity toward push services
// (RFC 8292): its P-256 key, whose public half browsers subscribe with
// (applicationServerKey), and a contact URI (mailto: or https:).
type VAPID struct {
	Key     *ecdsa.PrivateKey
	Subject string
}

// PublicKey is the key's public half as browsers take it: an
// uncompressed point, base64url.
func (v VAPID) PublicKey() (string, error) {
	pub, err := v.Key.PublicKey.ECDH()
	if err != nil {
		return "", err
	}
	return b64.EncodeToString(pub.Bytes()), nil
}

// Urgency of a push message (RFC 8030 §5.3): a call is high, a message
// normal.
type Urgency string

// The urgencies of RFC 8030 §5.3.
const (
	UrgencyVeryLow Urgency = "very-low"
	UrgencyLow     Urgency = "low"
	UrgencyNormal  Urgency = "normal"
	UrgencyHigh    Urgency = "high"
)

// Options configure a Sender. VAPID is required.
type Options struct {
	VAPID VAPID
	// HTTPClient makes the requests. Default: GuardedClient(nil), which
	// refuses internal addresses.
	HTTPClient *http.Client
}

// Sender delivers Web Push messages (RFC 8030 §5). The encryption
// (RFC 8291) and the VAPID token (RFC 8292) are webpush-go's.
type Sender struct {
	client  *http.Client
	subject string
	public  string
	private string
}

// NewSender returns a Sender.
func NewSender(o Options) (*Sender, error) {
	if o.VAPID.Key == nil {
		return nil, errors.New("push: Options.VAPID.Key is required")
	}
	pub, err := o.VAPID.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("push: VAPID key: %w", err)
	}
	priv, err := o.VAPID.Key.Bytes()
	if err != nil {
		return nil, fmt.Errorf("push: VAPID key: %w", err)
	}
	if o.HTTPClient == nil {
		o.HTTPClient = GuardedClient(nil)
	}
	// webpush-go prefixes mailto: to any subject that is not https:.
	subject := strings.TrimPrefix(o.VAPID.Subject, "mailto:")
	return &Sender{client: o.HTTPClient, subject: subject, public: pub, private: b64.EncodeToString(priv)}, nil
}

// Message is one push: its payload (plaintext, at most MaxPayload), how
// long the push service may keep it undelivered (TTL, whole seconds;
// 0: deliver now or never) and its urgency; Topic, when set, replaces an
// undelivered message of the same topic (RFC 8030 §5.4).
type Message struct {
	Payload []byte
	TTL     time.Duration
	Urgency Urgency
	Topic   string
}

// Send encrypts m for sub and POSTs it to the subscription's push
// resource. It returns ErrGone when the push service has dropped the
// subscription.
func (s *Sender) Send(ctx context.Context, sub Subscription, m Message) error {
	if len(m.Payload) > MaxPayload {
		return ErrPayloadTooLarge
	}
	if err := CheckSubscription(sub); err != nil {
		return err
	}
	if u, err := url.Parse(sub.Endpoint); err != nil || u.Scheme == "" || u.Host == "" {
		return fmt.Errorf("push: endpoint %q is not an absolute URL", sub.Endpoint)
	}
	resp, err := webpush.SendNotificationWithContext(ctx, m.Payload,
		&webpush.Subscription{Endpoint: sub.Endpoint, Keys: webpush.Keys{P256dh: sub.Keys.P256DH, Auth: sub.Keys.Auth}},
		&webpush.Options{
			HTTPClient:      s.client,
			RecordSize:      recordSize,
			Subscriber:      s.subject,
			Topic:           m.Topic,
			TTL:             int(m.TTL / time.Second),
			Urgency:         webpush.Urgency(m.Urgency),
			VAPIDPublicKey:  s.public,
			VAPIDPrivateKey: s.private,
		})
	if err != nil {
		return fmt.Errorf("push: %w", err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	switch {
	case resp.StatusCode/100 == 2:
		return nil
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone:
		return ErrGone
	}
	return fmt.Errorf("push: the push service answered %s", resp.Status)
}
