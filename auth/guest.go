package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// A guest's identity is random, so without help a guest that reconnects
// after a network blip would come back as somebody else and could not
// resume its session (resuming needs the same identity). The gateway
// therefore gives each new guest an HttpOnly cookie, signed with the
// application's key, that names its identity until it expires; a
// handshake that presents it gets that identity back. The cookie alone
// grants nothing else: resuming still needs the session id.

func (app *application) cookieName() string { return "jsonrtc_guest_" + app.name }

// guestCookie returns the cookie for a new guest identity.
func (app *application) guestCookie(identity string, now time.Time, secure bool) *http.Cookie {
	exp := now.Add(app.guestTTL)
	payload := identity + "|" + strconv.FormatInt(exp.Unix(), 10)
	return &http.Cookie{
		Name:     app.cookieName(),
		Value:    base64.RawURLEncoding.EncodeToString([]byte(payload)) + "." + app.sign(payload),
		Path:     "/",
		Expires:  exp,
		HttpOnly: true,
		Secure:   secure,
		SameSite: http.SameSiteNoneMode,
	}
}

// guestFromCookie returns the identity a valid, unexpired cookie names.
func (app *application) guestFromCookie(r *http.Request, now time.Time) (string, bool) {
	c, err := r.Cookie(app.cookieName())
	if err != nil || len(c.Value) > 512 {
		return "", false
	}
	enc, sig, ok := strings.Cut(c.Value, ".")
	if !ok {
		return "", false
	}
	raw, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil {
		return "", false
	}
	payload := string(raw)
	if !hmac.Equal([]byte(sig), []byte(app.sign(payload))) {
		return "", false
	}
	id, expS, ok := strings.Cut(payload, "|")
	exp, err := strconv.ParseInt(expS, 10, 64)
	if !ok || err != nil || now.Unix() >= exp || !strings.HasSuffix(id, "@"+app.guestDomain) || !strings.HasPrefix(id, "guest-") {
		return "", false
	}
	return id, true
}

func (app *application) sign(payload string) string {
	m := hmac.New(sha256.New, app.guestKey)
	m.Write([]byte(app.name + "\x00" + payload))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}
