package templates

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/sipgw"
)

// Action is one compiled declared action.
type Action struct {
	Name    protocol.Action
	Package protocol.Package
	// SIP is the request it maps to; nil for a webhook action.
	SIP *SIPConfig

	headers map[string]bool // name -> required
	schema  *jsonschema.Schema
	webhook *webhook
	client  *http.Client
}

// IsWebhook reports whether the action is answered by its webhook.
func (a *Action) IsWebhook() bool { return a.webhook != nil }

func badRequest(format string, args ...any) error {
	return &protocol.Error{Code: protocol.CodeBadRequest, Reason: fmt.Sprintf(format, args...)}
}

// Check validates a client request of the action: its extension headers
// against the declared ones, its payload against the schema. The error
// is a *protocol.Error 400 whose reason names the header or the
// payload's field ("payload.amount: ...").
func (a *Action) Check(f *protocol.Frame) error {
	for _, e := range f.Header.Ext {
		if _, ok := a.headers[e.Name]; !ok {
			return badRequest("header.%s is not a header of action %s", e.Name, a.Name)
		}
	}
	for name, required := range a.headers {
		if _, ok := f.Header.ExtValue(name); required && !ok {
			return badRequest("header.%s is required by action %s", name, a.Name)
		}
	}
	return a.checkPayload(f.Payload)
}

func (a *Action) checkPayload(raw json.RawMessage) error {
	if len(raw) == 0 || string(raw) == "null" {
		raw = json.RawMessage("{}")
	}
	v, err := jsonschema.UnmarshalJSON(strings.NewReader(string(raw)))
	if err != nil {
		return badRequest("payload is not JSON")
	}
	if _, ok := v.(map[string]any); !ok {
		return badRequest("payload must be an object")
	}
	if a.schema == nil {
		return nil
	}
	err = a.schema.Validate(v)
	var ve *jsonschema.ValidationError
	if errors.As(err, &ve) {
		leaf := ve
		for len(leaf.Causes) > 0 {
			leaf = leaf.Causes[0]
		}
		field := "payload"
		for _, t := range leaf.InstanceLocation {
			field += "." + t
		}
		msg := "does not match the schema"
		if out := leaf.BasicOutput(); out != nil && out.Error != nil {
			msg = out.Error.String()
		}
		return badRequest("%s: %s", field, msg)
	}
	if err != nil {
		return badRequest("payload: %v", err)
	}
	return nil
}

// jsonBody reports whether the SIP body is the payload itself.
func (c *SIPConfig) jsonBody() bool {
	ct, _, _ := strings.Cut(strings.ToLower(c.ContentType), ";")
	ct = strings.TrimSpace(ct)
	return ct == "application/json" || strings.HasSuffix(ct, "+json")
}

// bodyPayload is the payload of a non-JSON body.
type bodyPayload struct {
	Body string `json:"body"`
}

// SIPRequest is the SIP request a checked frame of the action maps to.
func (a *Action) SIPRequest(f *protocol.Frame) sipgw.Request {
	c := a.SIP
	r := sipgw.Request{Method: c.Method, InfoPackage: c.InfoPackage, Event: c.Event, ContentType: c.ContentType}
	for _, e := range f.Header.Ext {
		r.Headers = append(r.Headers, sipgw.Header{Name: e.Name, Value: e.Value})
	}
	if c.jsonBody() {
		r.Body = f.Payload
		if len(r.Body) == 0 {
			r.Body = []byte("{}")
		}
	} else {
		var p bodyPayload
		_ = json.Unmarshal(f.Payload, &p)
		r.Body = []byte(p.Body)
	}
	return r
}

// payloadOf is the frame payload of a SIP body of content type ct.
func payloadOf(ct string, body []byte) json.RawMessage {
	if len(body) == 0 {
		return nil
	}
	if (&SIPConfig{ContentType: ct}).jsonBody() && wireSafe(body) {
		return body
	}
	return protocol.EncodePayload(bodyPayload{Body: string(body)})
}

// wireSafe reports whether raw is a JSON object that can travel as a
// frame's payload as it is: one protocol.Decode, which the clients apply,
// takes (valid UTF-8 and escapes, nesting within bounds). What a SIP peer
// or a webhook sends must not make the client refuse the frame.
func wireSafe(raw []byte) bool {
	if !isObject(raw) {
		return false
	}
	f := append([]byte(`{"control":{"type":"message"},"payload":`), raw...)
	_, err := protocol.Decode(append(f, '}'))
	return err == nil
}

// answerTo is the response or error frame that answers f.
func answerTo(f *protocol.Frame, code int, reason string) *protocol.Frame {
	out := &protocol.Frame{
		Control: protocol.Control{Package: f.EffectivePackage(), SubsessionID: f.Control.SubsessionID,
			CorrelationID: protocol.ClientCorrelation(f)},
		Header: protocol.Header{Action: f.Header.Action, Reason: reason},
	}
	if code >= 300 {
		out.Control.Type, out.Header.ErrorCode = protocol.TypeError, code
	} else {
		out.Control.Type, out.Header.ResponseCode = protocol.TypeResponse, code
		out.Control.MessageState = protocol.StateFinal
	}
	return out
}

// SIPAnswer is the frame that answers f once its SIP request got ans
// (or failed with err: an invalid request 400, no answer 408, the
// gateway closing 503; a *sipgw.ResponseError keeps its code).
func (a *Action) SIPAnswer(f *protocol.Frame, ans sipgw.Answer, err error) *protocol.Frame {
	if err != nil {
		code, reason := failureOf(err)
		return answerTo(f, code, reason)
	}
	out := answerTo(f, ans.Code, ans.Reason)
	out.Payload = payloadOf(ans.ContentType, ans.Body)
	out.Header.Ext = a.extOf(ans.Headers)
	return out
}

// extOf is the extension headers of the SIP headers hs the action
// declares (names matched without case, written as declared), leaving
// out a value docs/protocol.md §2.4 refuses: what a SIP peer sends
// reaches the client only as clean as what a client may send.
func (a *Action) extOf(hs []sipgw.Header) []protocol.Ext {
	var out []protocol.Ext
	for _, h := range hs {
		for name := range a.headers {
			if strings.EqualFold(name, h.Name) && extValueOK(h.Value) && len(out) < maxExt {
				out = append(out, protocol.Ext{Name: name, Value: h.Value})
			}
		}
	}
	return out
}

// maxExt is the extension headers a frame may carry (docs/protocol.md §2.4).
const maxExt = 32

func extValueOK(v string) bool {
	if len(v) > 1024 || !utf8.ValidString(v) {
		return false
	}
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] == 0x7f {
			return false
		}
	}
	return true
}

// IncomingFrame is the request frame (without control ids) that hands an
// incoming SIP request of the action to the web client: its body as the
// payload, its declared headers as extension headers.
func (a *Action) IncomingFrame(contentType string, body []byte, headers []sipgw.Header) *protocol.Frame {
	f := &protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeRequest, Package: a.Package},
		Header:  protocol.Header{Action: a.Name},
		Payload: payloadOf(contentType, body),
	}
	f.Header.Ext = a.extOf(headers)
	return f
}

// IncomingAnswer is the SIP response to an incoming request of the
// action, from the web client's answer f: a response's code (2xx) or an
// error's, and the payload as the body when the action's content type is
// JSON.
func (a *Action) IncomingAnswer(f *protocol.Frame) sipgw.Answer {
	ans := sipgw.Answer{Code: 200, Reason: f.Header.Reason}
	switch {
	case f.Control.Type == protocol.TypeError:
		ans.Code = f.Header.ErrorCode
		if ans.Code < 300 {
			ans.Code = protocol.CodeServerError
		}
	case f.Header.ResponseCode >= 200 && f.Header.ResponseCode < 300:
		ans.Code = f.Header.ResponseCode
	}
	if a.SIP != nil && a.SIP.jsonBody() && len(f.Payload) > 2 {
		ans.ContentType, ans.Body = a.SIP.ContentType, f.Payload
	}
	return ans
}

// failureOf is the code and reason a client gets for err: a SIP
// response's own reason, else words of ours; never the text of a Go
// error, which names our packages and says nothing to a client.
func failureOf(err error) (int, string) {
	code, _ := sipgw.ErrorCode(err)
	var re *sipgw.ResponseError
	switch {
	case errors.As(err, &re) && re.Reason != "":
		return code, re.Reason
	case errors.Is(err, sipgw.ErrCallState):
		return code, "not in an answered SIP call"
	}
	return code, protocol.Reason(code)
}
