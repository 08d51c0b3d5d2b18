package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/sipgw"
)

// A refresh's challenge is asked of the identity's jsonrtc sessions
// (request/authenticate, docs/protocol.md §4.8), never of a wsc.js one;
// the answer's authorization is applied, an error answer is no answer.
func TestLiveAuthAsksJSONrtcSessionsOnly(t *testing.T) {
	g, url := newGateway(t, nil)
	o := dial(t, url, protocol.SubprotocolOracle, nil)
	o.connect("alice@example.com")
	a := dial(t, url, protocol.SubprotocolJSONrtc, nil)
	a.connect("alice@example.com")
	ch := sipgw.Challenge{Scheme: "Digest", Realm: "example.com", Nonce: "n1", QOP: []string{"auth"}, Method: "REGISTER", URI: "sip:example.com"}
	type result struct {
		a   sipgw.Authorization
		err error
	}
	ask := func() <-chan result {
		out := make(chan result, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			auth, err := g.regs.Authenticate(ctx, "alice@example.com", ch)
			out <- result{auth, err}
		}()
		return out
	}
	answer := func(typ protocol.Type) <-chan result {
		res := ask()
		f := a.read()
		expect(t, f, protocol.TypeRequest, protocol.ActionAuthenticate)
		var got map[string]any
		if err := json.Unmarshal(f.Header.Authenticate, &got); err != nil || got["nonce"] != "n1" || got["qop"] != "auth" || got["method"] != "REGISTER" {
			t.Fatalf("authenticate %s", f.Header.Authenticate)
		}
		r := &protocol.Frame{
			Control: protocol.Control{Type: typ, Package: protocol.PackageRegister, CorrelationID: f.Control.CorrelationID},
			Header:  protocol.Header{Action: protocol.ActionAuthenticate, ResponseCode: 200},
		}
		if typ == protocol.TypeError {
			r.Header.ResponseCode, r.Header.ErrorCode = 0, 401
		} else {
			r.Header.Authorization = json.RawMessage(`{"username":"alice","realm":"example.com","ha1":"deadbeef"}`)
		}
		a.send(r)
		return res
	}
	if r := <-answer(protocol.TypeResponse); r.err != nil || r.a.Username != "alice" || r.a.HA1 != "deadbeef" {
		t.Fatalf("answered %+v, %v", r.a, r.err)
	}
	if r := <-answer(protocol.TypeError); !errors.Is(r.err, sipgw.ErrNoAnswer) {
		t.Fatalf("refused: %v, want ErrNoAnswer", r.err)
	}
	// The wsc.js session was asked nothing: its next message is the pong.
	o.pingPong()
	// A client may not send authenticate itself.
	a.send(&protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageRegister},
		Header:  protocol.Header{Action: protocol.ActionAuthenticate},
	})
	if r := a.read(); r.Control.Type != protocol.TypeError || r.Header.ErrorCode != protocol.CodeMethodNotAllowed {
		t.Fatalf("client authenticate answered %s", r.Marshal())
	}
}
