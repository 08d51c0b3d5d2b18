package push

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/golang-jwt/jwt/v5"
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

// The aes128gcm layout (RFC 8188 §2.1, RFC 8291 §4): one record of
// recordSize octets at most, whose header carries the salt, the record
// size and the sender's public key.
const (
	recordSize = 4096
	saltLen    = 16
	keyLen     = 65 // an uncompressed P-256 point
	headerLen  = saltLen + 4 + 1 + keyLen
	tagLen     = 16
	// MaxPayload is the largest plaintext one message carries: a record
	// of 4096 octets less the header, the tag and the padding delimiter.
	MaxPayload = recordSize - headerLen - tagLen - 1
)

// Errors of Web Push.
var (
	// ErrPayloadTooLarge: over MaxPayload.
	ErrPayloadTooLarge = errors.New("push: payload too large")
	// ErrGone: the push service no longer knows the subscription (404 or
	// 410): forget it.
	ErrGone = errors.New("push: subscription gone")
	// ErrBadSubscription: the subscription's keys do not decode.
	ErrBadSubscription = errors.New("push: bad subscription keys")
)

var b64 = base64.RawURLEncoding

// Encrypt encrypts plaintext for the subscription (RFC 8291), with a new
// sender key pair and salt: the body of a push message.
func Encrypt(sub Subscription, plaintext []byte) ([]byte, error) {
	uaPublic, err := b64.DecodeString(sub.Keys.P256DH)
	if err != nil {
		return nil, fmt.Errorf("%w: p256dh: %v", ErrBadSubscription, err)
	}
	auth, err := b64.DecodeString(sub.Keys.Auth)
	if err != nil || len(auth) != 16 {
		return nil, fmt.Errorf("%w: auth must be 16 octets", ErrBadSubscription)
	}
	as, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	salt := make([]byte, saltLen)
	rand.Read(salt)
	return encrypt(plaintext, uaPublic, auth, as, salt)
}

// encrypt is Encrypt with the sender's key and the salt given: the RFC's
// example fixes both.
func encrypt(plaintext, uaPublic, auth []byte, as *ecdh.PrivateKey, salt []byte) ([]byte, error) {
	if len(plaintext) > MaxPayload {
		return nil, ErrPayloadTooLarge
	}
	ua, err := ecdh.P256().NewPublicKey(uaPublic)
	if err != nil {
		return nil, fmt.Errorf("%w: p256dh: %v", ErrBadSubscription, err)
	}
	secret, err := as.ECDH(ua)
	if err != nil {
		return nil, err
	}
	asPublic := as.PublicKey().Bytes()
	// RFC 8291 §3.4: the auth secret and both public keys go into the
	// input keying material, then RFC 8188 §2.2-2.3 derive the content
	// encryption key and the nonce from it and the salt.
	keyInfo := "WebPush: info\x00" + string(uaPublic) + string(asPublic)
	ikm, err := hkdf.Key(sha256.New, secret, auth, keyInfo, 32)
	if err != nil {
		return nil, err
	}
	cek, err := hkdf.Key(sha256.New, ikm, salt, "Content-Encoding: aes128gcm\x00", 16)
	if err != nil {
		return nil, err
	}
	nonce, err := hkdf.Key(sha256.New, ikm, salt, "Content-Encoding: nonce\x00", 12)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(cek)
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	out := make([]byte, headerLen, headerLen+len(plaintext)+1+tagLen)
	copy(out, salt)
	binary.BigEndian.PutUint32(out[saltLen:], recordSize)
	out[saltLen+4] = keyLen
	copy(out[saltLen+5:], asPublic)
	// The only record is the last: its padding delimiter is 2 (RFC 8188 §2).
	record := append(bytes.Clone(plaintext), 2)
	return gcm.Seal(out, nonce, record, nil), nil
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

// vapidTTL is how long a VAPID token is valid: at most 24 hours (RFC 8292
// §2); tokens are made per request.
const vapidTTL = 12 * time.Hour

// Authorization is the Authorization header value for a request to
// endpoint at now: "vapid t=<JWT>, k=<public key>" (RFC 8292 §3), the
// JWT's audience the push resource's origin.
func (v VAPID) Authorization(endpoint string, now time.Time) (string, error) {
	u, err := url.Parse(endpoint)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return "", fmt.Errorf("push: endpoint %q is not an absolute URL", endpoint)
	}
	claims := jwt.MapClaims{"aud": u.Scheme + "://" + u.Host, "exp": now.Add(vapidTTL).Unix()}
	if v.Subject != "" {
		claims["sub"] = v.Subject
	}
	t, err := jwt.NewWithClaims(jwt.SigningMethodES256, claims).SignedString(v.Key)
	if err != nil {
		return "", fmt.Errorf("push: VAPID token: %w", err)
	}
	k, err := v.PublicKey()
	if err != nil {
		return "", err
	}
	return "vapid t=" + t + ", k=" + k, nil
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
	// HTTPClient makes the requests. Default: a client with a 10 s timeout.
	HTTPClient *http.Client
	// Now is the clock for VAPID tokens. Default time.Now.
	Now func() time.Time
}

// Sender delivers Web Push messages (RFC 8030 §5).
type Sender struct {
	o Options
}

// NewSender returns a Sender.
func NewSender(o Options) (*Sender, error) {
	if o.VAPID.Key == nil {
		return nil, errors.New("push: Options.VAPID.Key is required")
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Sender{o: o}, nil
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
	body, err := Encrypt(sub, m.Payload)
	if err != nil {
		return err
	}
	auth, err := s.o.VAPID.Authorization(sub.Endpoint, s.o.Now())
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, sub.Endpoint, bytes.NewReader(body))
	if err != nil {
		return err
	}
	h := req.Header
	h.Set("Authorization", auth)
	h.Set("Content-Encoding", "aes128gcm")
	h.Set("Content-Type", "application/octet-stream")
	h.Set("TTL", strconv.Itoa(int(m.TTL/time.Second)))
	if m.Urgency != "" {
		h.Set("Urgency", string(m.Urgency))
	}
	if m.Topic != "" {
		h.Set("Topic", m.Topic)
	}
	resp, err := s.o.HTTPClient.Do(req)
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
