package protocol

import (
	"errors"
	"fmt"
	"testing"
)

func TestCodeAndReasonOf(t *testing.T) {
	pe := &Error{Code: CodeBadRequest, Reason: "payload is not JSON"}
	for _, tc := range []struct {
		name   string
		err    error
		code   int
		reason string
	}{
		{"protocol error", pe, CodeBadRequest, "payload is not JSON"},
		{"wrapped", fmt.Errorf("decode: %w", pe), CodeBadRequest, "payload is not JSON"},
		{"other", errors.New("disk on fire"), CodeServerError, "internal error"},
		// A nil *Error is no error a peer can be told of.
		{"typed nil", (*Error)(nil), CodeServerError, "internal error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := CodeOf(tc.err); got != tc.code {
				t.Errorf("CodeOf = %d, want %d", got, tc.code)
			}
			if got := ReasonOf(tc.err); got != tc.reason {
				t.Errorf("ReasonOf = %q, want %q", got, tc.reason)
			}
		})
	}
}
