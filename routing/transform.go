package routing

import (
	"fmt"
	"strings"
)

// This file binds the transformations (header rules toward SIP, to_web
// toward the web) to the SIP methods they apply to, and to one call,
// message or subscription: a Transform is made when the request is
// routed (or an incoming call arrives) from the configuration of that
// moment, and every later request and response of the same dialog uses
// it, so that a reload changes what is decided next and never a dialog
// half-way (docs/routing.md, Reload).

// Method is a SIP method a transformation applies to. ReInvite is an
// INVITE within a dialog; Invite is the initial one only.
type Method uint8

// The methods.
const (
	Invite Method = iota
	ReInvite
	Update
	Bye
	MessageMethod
	SubscribeMethod
	Notify
	PublishMethod
	Refer
	Info
	numMethods
)

var methodNames = [numMethods]string{"INVITE", "re-INVITE", "UPDATE", "BYE", "MESSAGE", "SUBSCRIBE", "NOTIFY", "PUBLISH", "REFER", "INFO"}

func (m Method) String() string {
	if m < numMethods {
		return methodNames[m]
	}
	return fmt.Sprintf("method(%d)", m)
}

// ParseMethod reads a method as configured (case-insensitive; "reinvite"
// is re-INVITE too).
func ParseMethod(s string) (Method, bool) {
	if strings.EqualFold(s, "reinvite") {
		return ReInvite, true
	}
	for i, n := range methodNames {
		if strings.EqualFold(n, s) {
			return Method(i), true
		}
	}
	return 0, false
}

// initial is the method of the first request of a kind.
func (k Kind) initial() Method {
	switch k {
	case Message:
		return MessageMethod
	case Subscribe:
		return SubscribeMethod
	case Publish:
		return PublishMethod
	}
	return Invite
}

// applies says which SIP messages a transformation takes: a mask of
// methods (0: all) and whether requests, responses or both.
type applies struct {
	methods uint16
	on      string // "": both; "requests"; "responses"
}

func compileApplies(methods []string, on string) (applies, []keyErr) {
	var a applies
	var errs []keyErr
	for j, s := range methods {
		m, ok := ParseMethod(s)
		if !ok {
			errs = append(errs, keyErr{fmt.Sprintf(".methods[%d]", j), fmt.Sprintf("%q is not one of %s", s, strings.Join(methodNames[:], ", "))})
			continue
		}
		a.methods |= 1 << m
	}
	switch on {
	case "", "requests", "responses":
		a.on = on
	default:
		errs = append(errs, keyErr{".on", fmt.Sprintf("%q: requests or responses (unset: both)", on)})
	}
	return a, errs
}

func (a applies) match(m Method, response bool) bool {
	if a.methods != 0 && a.methods&(1<<m) == 0 {
		return false
	}
	switch a.on {
	case "requests":
		return !response
	case "responses":
		return response
	}
	return true
}

// toWebRule maps one SIP header to one extension header.
type toWebRule struct {
	applies
	header string // lower case
	ext    string
}

// Transform is the transformations of one call, message or subscription
// under the configuration it started with. The zero of *Transform (nil)
// transforms nothing. Safe for concurrent use.
type Transform struct {
	r   *Router
	req Request
	t   addr
}

// Bind returns the transformations of req, a request routed with r (or,
// for an incoming call, one whose Identity is the web callee and Target
// the SIP caller).
func (r *Router) Bind(req Request) *Transform {
	if len(r.hdrs) == 0 && len(r.toWeb) == 0 {
		return nil
	}
	return &Transform{r: r, req: req, t: parseAddr(req.Target)}
}

// ToSIP returns the headers (and Request-URI parameters) the header rules
// set on a SIP request of method m the gateway sends (response false), or
// on a response it sends to one, with ext the extension headers (lower
// case names) of the web frame that caused it, for {ext:NAME}.
func (x *Transform) ToSIP(m Method, response bool, ext map[string]string) []Header {
	if x == nil {
		return nil
	}
	req := x.req
	req.Ext = ext
	return x.r.headers(&req, x.t, m, response)
}

// ToWeb returns the extension headers (Header.Name is the extension
// header's) the to_web rules make of a SIP request of method m the
// gateway received (response false), or of a response to one of its
// own; get returns a header's value (the first of its name), or false
// when the message has none fit for the web side.
func (x *Transform) ToWeb(m Method, response bool, get func(name string) (string, bool)) []Header {
	if x == nil {
		return nil
	}
	var out []Header
	for _, tw := range x.r.toWeb {
		if !tw.match(m, response) {
			continue
		}
		if v, ok := get(tw.header); ok {
			out = append(out, Header{Name: tw.ext, Value: v})
		}
	}
	return out
}
