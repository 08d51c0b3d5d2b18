package auth

import (
	"errors"
	"net/http"
)

// Sentinels for the reasons a handshake or a connect is refused; an
// [*Error] wraps one. Branch with errors.Is.
var (
	ErrNoToken              = errors.New("missing token")
	ErrInvalidToken         = errors.New("invalid token") // malformed, bad signature, unknown key, bad claims
	ErrTokenExpired         = errors.New("token expired")
	ErrTokenRevoked         = errors.New("token revoked") // its session logged out (jwt.revoke_on_logout)
	ErrTokenNotYetValid     = errors.New("token not yet valid")
	ErrWrongAudience        = errors.New("wrong audience")
	ErrWrongIssuer          = errors.New("wrong issuer")
	ErrInvalidIdentity      = errors.New("invalid identity")
	ErrForbiddenOrigin      = errors.New("forbidden origin")
	ErrForbiddenApplication = errors.New("forbidden application")
	ErrUnknownApplication   = errors.New("unknown application")
	ErrInitiatorMismatch    = errors.New("initiator is not the authenticated identity")
)

// Error is a refused authentication. Status is the HTTP status for the
// handshake (401, 403 or 404) and also the JSONrtc error code for a
// refused connect (docs/protocol.md §4.2). Body is safe to send to the
// client: it names the reason class and never contains secrets or token
// contents. Error() adds the cause, for logs; it too never holds the token.
type Error struct {
	Status int
	Body   string
	reason error // one of the sentinels
	cause  error // detail, for logs
}

func (e *Error) Error() string {
	if e.cause != nil {
		return "auth: " + e.reason.Error() + ": " + e.cause.Error()
	}
	return "auth: " + e.reason.Error()
}

// Unwrap returns the sentinel and the cause.
func (e *Error) Unwrap() []error {
	if e.cause != nil {
		return []error{e.reason, e.cause}
	}
	return []error{e.reason}
}

func newError(reason, cause error) *Error {
	e := &Error{reason: reason, cause: cause}
	switch reason {
	case ErrForbiddenOrigin, ErrForbiddenApplication, ErrInitiatorMismatch:
		e.Status = http.StatusForbidden
	case ErrUnknownApplication:
		e.Status = http.StatusNotFound
	default:
		e.Status = http.StatusUnauthorized
	}
	switch reason {
	case ErrWrongAudience, ErrWrongIssuer:
		// Do not tell a prober which claim to fix.
		e.Body = ErrInvalidToken.Error()
	default:
		e.Body = reason.Error()
	}
	return e
}

// Status returns the HTTP status of err: that of an *Error, else 500.
func Status(err error) int {
	if e, ok := errors.AsType[*Error](err); ok {
		return e.Status
	}
	return http.StatusInternalServerError
}

// WriteError answers a refused handshake: the status, a plain-text body,
// and for 401 a WWW-Authenticate challenge (RFC 6750 section 3). Any error
// that is not an *Error is answered 500 with a generic body.
func WriteError(w http.ResponseWriter, err error) {
	e, ok := errors.AsType[*Error](err)
	if !ok {
		e = &Error{Status: http.StatusInternalServerError, Body: "internal error"}
	}
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	if e.Status == http.StatusUnauthorized {
		if errors.Is(e, ErrNoToken) {
			h.Set("WWW-Authenticate", `Bearer realm="jsonrtc"`)
		} else {
			h.Set("WWW-Authenticate", `Bearer realm="jsonrtc", error="invalid_token"`)
		}
	}
	w.WriteHeader(e.Status)
	_, _ = w.Write([]byte(e.Body + "\n"))
}
