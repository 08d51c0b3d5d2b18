package client

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"testing/synctest"

	"github.com/jsonrtc/jsonrtc/protocol"
)

func authenticateFrame(corr string) *protocol.Frame {
	return &protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageRegister, CorrelationID: corr},
		Header: protocol.Header{Action: protocol.ActionAuthenticate,
			Authenticate: json.RawMessage(`{"scheme":"Digest","realm":"example.com","nonce":"n2","method":"REGISTER","uri":"sip:example.com"}`)},
	}
}

// The gateway's live challenge (docs/protocol.md §4.8) is answered with
// Options.Authorize, as the connect's: a response/authenticate with its
// correlation_id and the authorization; a failing Authorize, or none,
// answers error 401.
func TestLiveChallengeAnswered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake(t)
		var seen []string
		fail := false
		c := dial(t, f, func(o *Options) {
			o.Authorize = func(_ context.Context, ch json.RawMessage) (json.RawMessage, error) {
				seen = append(seen, string(ch))
				if fail {
					return nil, errors.New("no password")
				}
				return json.RawMessage(`{"username":"alice","realm":"example.com","ha1":"deadbeef"}`), nil
			}
		})
		f.send(authenticateFrame("auth1"), false)
		r := f.next(t)
		if r.Control.Type != protocol.TypeResponse || r.Control.Package != protocol.PackageRegister ||
			r.Header.Action != protocol.ActionAuthenticate || r.Control.CorrelationID != "auth1" ||
			string(r.Header.Authorization) != `{"username":"alice","realm":"example.com","ha1":"deadbeef"}` {
			t.Fatalf("answer %s", r.Marshal())
		}
		if len(seen) != 1 || seen[0] != string(authenticateFrame("").Header.Authenticate) {
			t.Fatalf("Authorize saw %q", seen)
		}
		fail = true
		f.send(authenticateFrame("auth2"), false)
		r = f.next(t)
		if r.Control.Type != protocol.TypeError || r.Header.ErrorCode != protocol.CodeUnauthorized || r.Control.CorrelationID != "auth2" {
			t.Fatalf("refusal %s", r.Marshal())
		}
		if c.Err() != nil {
			t.Fatal(c.Err())
		}
	})
}

func TestLiveChallengeWithoutAuthorize(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake(t)
		dial(t, f, nil)
		f.send(authenticateFrame("auth1"), false)
		if r := f.next(t); r.Control.Type != protocol.TypeError || r.Header.ErrorCode != protocol.CodeUnauthorized || r.Control.CorrelationID != "auth1" {
			t.Fatalf("answer %s", r.Marshal())
		}
	})
}

// TestResumeChallengeAnswered: a registrar's challenge answering a resume
// (a gateway restarted registers the session again at its first resume,
// docs/protocol.md §4.8) is answered with Options.Authorize by a resume
// carrying the authorization, as sdk/js does, and the session resumes.
// Before, the Go client answered only a first connect's, and a resume's
// 401 ended the session.
func TestResumeChallengeAnswered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake(t)
		f.refuseWith = func(n int, _ string) refusal {
			if n == 2 {
				return refusal{code: protocol.CodeUnauthorized, challenge: true}
			}
			return refusal{}
		}
		var seen int
		c := dial(t, f, func(o *Options) {
			o.Authorize = func(context.Context, json.RawMessage) (json.RawMessage, error) {
				seen++
				return json.RawMessage(`{"username":"alice","realm":"example.com","ha1":"deadbeef"}`), nil
			}
		})
		<-f.conns
		f.drop()
		waitEvent(t, c, EventResumed)
		if c.SessionID() != "S1" || seen != 1 {
			t.Fatalf("session %q after %d authorizations, want S1 after 1", c.SessionID(), seen)
		}
	})
}
