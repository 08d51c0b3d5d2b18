package protocol

import "errors"

// Error codes carried in header.error_code (docs/protocol.md §9.2). They
// follow SIP response codes so that the gateway can pass SIP failures
// through unchanged.
const (
	CodeTrying               = 100
	CodeOK                   = 200
	CodeAccepted             = 202
	CodeRinging              = 180
	CodeSessionProgress      = 183
	CodeBadRequest           = 400
	CodeUnauthorized         = 401
	CodeForbidden            = 403
	CodeNotFound             = 404
	CodeMethodNotAllowed     = 405
	CodeProxyAuthRequired    = 407
	CodeRequestTimeout       = 408
	CodeTooLarge             = 413
	CodeTemporarilyUnavail   = 480
	CodeNoSuchCall           = 481
	CodeBusyHere             = 486
	CodeRequestTerminated    = 487
	CodeNotAcceptableHere    = 488
	CodeRequestPending       = 491
	CodeServerError          = 500
	CodeServiceUnavailable   = 503
	CodeServerTimeout        = 504
	CodeBusyEverywhere       = 600
	CodeDecline              = 603
	CodeDoesNotExistAnywhere = 604
)

// Reason returns the standard reason phrase for code, or "" when it has none.
func Reason(code int) string {
	switch code {
	case 100:
		return "Trying"
	case 180:
		return "Ringing"
	case 183:
		return "Session Progress"
	case 200:
		return "OK"
	case 202:
		return "Accepted"
	case 400:
		return "Bad Request"
	case 401:
		return "Unauthorized"
	case 403:
		return "Forbidden"
	case 404:
		return "Not Found"
	case 405:
		return "Method Not Allowed"
	case 407:
		return "Proxy Authentication Required"
	case 408:
		return "Request Timeout"
	case 413:
		return "Request Entity Too Large"
	case 480:
		return "Temporarily Unavailable"
	case 481:
		return "Call/Transaction Does Not Exist"
	case 486:
		return "Busy Here"
	case 487:
		return "Request Terminated"
	case 488:
		return "Not Acceptable Here"
	case 491:
		return "Request Pending"
	case 500:
		return "Server Internal Error"
	case 503:
		return "Service Unavailable"
	case 504:
		return "Server Time-out"
	case 600:
		return "Busy Everywhere"
	case 603:
		return "Decline"
	case 604:
		return "Does Not Exist Anywhere"
	}
	return ""
}

// ClientErrorCode is the error code a client may be sent for a failure
// with code (a SIP response code, say): 500 would end the client's whole
// session (docs/protocol.md §9.1), and anything outside 300-699 is no
// failure code; both become 503.
func ClientErrorCode(code int) int {
	if code < 300 || code > 699 || code == CodeServerError {
		return CodeServiceUnavailable
	}
	return code
}

// Error is a failure that goes back to the peer as an error frame with
// Code and Reason. Decode and Validate return it.
type Error struct {
	Code   int
	Reason string
}

func (e *Error) Error() string { return itoa(e.Code) + " " + e.Reason }

// newError builds an *Error; the reason is shown to the client, so it
// must never contain secrets.
func newError(code int, reason string) *Error { return &Error{Code: code, Reason: reason} }

// CodeOf returns the code of err when it is (or wraps) an *Error, else
// 500.
func CodeOf(err error) int {
	if e, ok := errors.AsType[*Error](err); ok && e != nil {
		return e.Code
	}
	return CodeServerError
}

// ReasonOf returns the reason of err when it is (or wraps) an *Error,
// else "internal error": what a peer may be told of any other error.
func ReasonOf(err error) string {
	if e, ok := errors.AsType[*Error](err); ok && e != nil {
		return e.Reason
	}
	return "internal error"
}

func itoa(n int) string {
	var b [20]byte
	return string(appendInt(b[:0], int64(n)))
}
