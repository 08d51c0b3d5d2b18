package templates

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/push"
	"github.com/jsonrtc/jsonrtc/sipgw"
)

// Config is the templates section.
type Config struct {
	// Actions are the declared actions.
	Actions []ActionConfig `yaml:"actions"`
	// WebhookNetworks lists CIDRs of internal addresses webhooks may
	// reach. A webhook's address is checked when it is dialled, as push
	// webhooks are (push.GuardedClient): loopback, private and
	// link-local addresses are refused unless listed here.
	WebhookNetworks []string `yaml:"webhook_networks"`
	// AnswerTimeout is how long the web side has to answer a request of
	// a declared action that came to it (from a SIP peer or another web
	// page) before the sender gets 408. Default 20s; from 1s to 30s:
	// inside a SIP peer's Timer F (32 s).
	AnswerTimeout time.Duration `yaml:"answer_timeout"`
}

// DefaultAnswerTimeout is AnswerTimeout's default.
const DefaultAnswerTimeout = 20 * time.Second

// ActionConfig declares one action.
type ActionConfig struct {
	// Action is the header.action of its frames: letters, digits, '-'
	// and '_', at most 32, and none the package already has.
	Action string `yaml:"action"`
	// Package is call (the action travels inside a call, its SIP request
	// in the call's dialog) or messaging (out of dialog, or a webhook).
	Package string `yaml:"package"`
	// Headers are the extension headers the action takes; any other is
	// refused (400 naming it).
	Headers HeadersConfig `yaml:"headers"`
	// Schema is a JSON schema (draft 2020-12 unless $schema says
	// otherwise) the payload must satisfy. Empty: any object.
	Schema map[string]any `yaml:"schema"`
	// Exactly one of SIP and Webhook.
	SIP     *SIPConfig     `yaml:"sip"`
	Webhook *WebhookConfig `yaml:"webhook"`
}

// HeadersConfig lists extension header names.
type HeadersConfig struct {
	// Required headers must be on every request of the action.
	Required []string `yaml:"required"`
	// Optional headers may be.
	Optional []string `yaml:"optional"`
}

// SIPConfig is the SIP request an action maps to. Its body is the
// payload (a JSON content type) or the payload's string member "body"
// (any other); each extension header of the frame goes as the SIP header
// of the same name, checked against the SIP grammar.
type SIPConfig struct {
	// Method is INFO, MESSAGE, NOTIFY, UPDATE or OPTIONS. INFO and
	// UPDATE exist only in a dialog (package call).
	Method string `yaml:"method"`
	// InfoPackage is the Info-Package of an INFO (RFC 6086), required
	// with INFO; an INFO of this package from the peer inside a call
	// reaches the web client as a request of this action.
	InfoPackage string `yaml:"info_package"`
	// ContentType of the body. Default application/json.
	ContentType string `yaml:"content_type"`
	// Event is the Event header of a NOTIFY (required with NOTIFY).
	Event string `yaml:"event"`
	// Receive makes the peer's requests of Method that carry this
	// action's mark (the Event's package of a NOTIFY, the Content-Type
	// of a MESSAGE or an UPDATE) reach the web client as requests of the
	// action, whose answer is their response: in a call's dialog for
	// package call, to a web identity out of dialog for package
	// messaging (MESSAGE only). An INFO of InfoPackage always does.
	Receive bool `yaml:"receive"`
}

// WebhookConfig is the HTTP endpoint an action maps to.
type WebhookConfig struct {
	// URL is http or https.
	URL string `yaml:"url"`
	// Secret signs each request (X-Jsonrtc-Signature); at least 16
	// bytes.
	Secret string `yaml:"secret"`
	// Timeout bounds one attempt. Default 5s, at most 30s.
	Timeout time.Duration `yaml:"timeout"`
	// Retries after a network failure or a 5xx. Default 0, at most 5.
	Retries int `yaml:"retries"`
}

var (
	actionName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]{0,31}$`)
	extName    = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]{0,63}$`)
	methods    = map[string]bool{"INFO": true, "MESSAGE": true, "NOTIFY": true, "UPDATE": true, "OPTIONS": true}
)

// Validate reports every invalid key, each named by its path under
// templates.
func (c Config) Validate() error {
	_, err := New(c)
	return err
}

// Set is a compiled Config; safe for concurrent use. The gateway swaps
// it whole on a reload: a request keeps the Action it started with.
type Set struct {
	byAction map[key]*Action
	byInfo   map[string]*Action
	byMark   map[markKey]*Action // actions that receive (SIPConfig.Receive)
	client   *http.Client
	wait     time.Duration
}

// markKey names what an incoming request of a receiving action carries.
type markKey struct {
	pkg    protocol.Package
	method string
	mark   string // lower case, without parameters
}

type key struct {
	pkg    protocol.Package
	action protocol.Action
}

// New compiles c: every schema, URL and header name.
func New(c Config) (*Set, error) {
	var errs []error
	bad := func(k, format string, a ...any) {
		errs = append(errs, fmt.Errorf("templates.%s: %s", k, fmt.Sprintf(format, a...)))
	}
	var nets []netip.Prefix
	for i, n := range c.WebhookNetworks {
		p, err := netip.ParsePrefix(n)
		if err != nil {
			bad(fmt.Sprintf("webhook_networks[%d]", i), "%q is not a CIDR", n)
			continue
		}
		nets = append(nets, p.Masked())
	}
	s := &Set{byAction: map[key]*Action{}, byInfo: map[string]*Action{}, byMark: map[markKey]*Action{}, wait: c.AnswerTimeout}
	switch {
	case s.wait == 0:
		s.wait = DefaultAnswerTimeout
	case s.wait < time.Second || s.wait > 30*time.Second:
		bad("answer_timeout", "%v: from 1s to 30s (inside a SIP peer's Timer F)", c.AnswerTimeout)
	}
	s.client = push.GuardedClient(func(ap netip.AddrPort) bool {
		for _, p := range nets {
			if p.Contains(ap.Addr().Unmap()) {
				return true
			}
		}
		return false
	})
	for i, ac := range c.Actions {
		at := fmt.Sprintf("actions[%d]", i)
		a, problems := compileAction(ac, at)
		for _, p := range problems {
			bad(p.key, "%s", p.problem)
		}
		if a == nil {
			continue
		}
		a.client = s.client
		k := key{a.Package, a.Name}
		if s.byAction[k] != nil {
			bad(at+".action", "%s is declared twice in package %s", a.Name, a.Package)
		}
		s.byAction[k] = a
		if a.SIP != nil && a.SIP.InfoPackage != "" {
			ip := strings.ToLower(a.SIP.InfoPackage)
			if s.byInfo[ip] != nil {
				bad(at+".sip.info_package", "%s is declared twice", ip)
			}
			s.byInfo[ip] = a
		}
		if a.SIP != nil && a.SIP.Receive && a.SIP.Method != "INFO" {
			mk, field := markKey{a.Package, a.SIP.Method, sipgw.Mark(a.SIP.ContentType)}, "content_type"
			if a.SIP.Method == "NOTIFY" {
				mk.mark, field = sipgw.Mark(a.SIP.Event), "event"
			}
			if o := s.byMark[mk]; o != nil {
				bad(at+".sip."+field, "%s of %s %s is received by action %s already", mk.mark, a.Package, mk.method, o.Name)
			}
			s.byMark[mk] = a
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return s, nil
}

type problem struct{ key, problem string }

func compileAction(c ActionConfig, at string) (*Action, []problem) {
	var ps []problem
	bad := func(k, format string, a ...any) {
		ps = append(ps, problem{at + "." + k, fmt.Sprintf(format, a...)})
	}
	a := &Action{Name: protocol.Action(c.Action), Package: protocol.Package(c.Package), headers: map[string]bool{}}
	switch {
	case !actionName.MatchString(c.Action):
		bad("action", "%q: letters, digits, '-' and '_', at most 32, beginning with a letter", c.Action)
	case c.Package != string(protocol.PackageCall) && c.Package != string(protocol.PackageMessaging):
		bad("package", "%q: call (in dialog) or messaging (out of dialog)", c.Package)
	case protocol.KnownAction(a.Package, a.Name):
		bad("action", "%s is an action of package %s already", c.Action, c.Package)
	}
	for _, list := range []struct {
		name     string
		names    []string
		required bool
	}{{"required", c.Headers.Required, true}, {"optional", c.Headers.Optional, false}} {
		for j, h := range list.names {
			k := fmt.Sprintf("headers.%s[%d]", list.name, j)
			if !extName.MatchString(h) {
				bad(k, "%q is not an extension header name (docs/protocol.md §2.4)", h)
				continue
			}
			if _, dup := a.headers[h]; dup {
				bad(k, "%q is listed twice", h)
			}
			a.headers[h] = list.required
		}
	}
	if c.Schema != nil {
		sch, err := compileSchema(c.Schema, "jsonrtc:templates/"+c.Package+"/"+c.Action)
		if err != nil {
			bad("schema", "%v", err)
		}
		a.schema = sch
	}
	switch {
	case (c.SIP == nil) == (c.Webhook == nil):
		bad("sip", "exactly one of sip and webhook")
	case c.SIP != nil:
		a.SIP = compileSIP(*c.SIP, a.Package, bad)
	default:
		a.webhook = compileWebhook(*c.Webhook, bad)
	}
	if len(ps) > 0 {
		return nil, ps
	}
	return a, nil
}

func compileSchema(doc map[string]any, id string) (*jsonschema.Schema, error) {
	// Through JSON: YAML's numbers and maps become what the compiler
	// takes (json.Number, map[string]any).
	raw, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	v, err := jsonschema.UnmarshalJSON(strings.NewReader(string(raw)))
	if err != nil {
		return nil, err
	}
	comp := jsonschema.NewCompiler()
	comp.DefaultDraft(jsonschema.Draft2020)
	if err := comp.AddResource(id, v); err != nil {
		return nil, err
	}
	return comp.Compile(id)
}

func compileSIP(c SIPConfig, pkg protocol.Package, bad func(string, string, ...any)) *SIPConfig {
	c.Method = strings.ToUpper(c.Method)
	if !methods[c.Method] {
		bad("sip.method", "%q: INFO, MESSAGE, NOTIFY, UPDATE or OPTIONS", c.Method)
	}
	if (c.Method == "INFO" || c.Method == "UPDATE") && pkg != protocol.PackageCall {
		// RFC 6086 section 4.2.1, RFC 3311 section 5.1: in a dialog only.
		bad("sip.method", "%s is sent in a dialog only: package call", c.Method)
	}
	switch {
	case c.Method == "INFO" && c.InfoPackage == "":
		bad("sip.info_package", "an INFO needs an Info-Package (RFC 6086)")
	case c.Method != "INFO" && c.InfoPackage != "":
		bad("sip.info_package", "only with method INFO")
	case strings.EqualFold(c.InfoPackage, sipgw.InfoPackageTrickleICE):
		bad("sip.info_package", "%s is the gateway's own", c.InfoPackage)
	case c.InfoPackage != "" && sipgw.ValidateRequest(sipgw.Request{Method: "INFO", InfoPackage: c.InfoPackage}, true) != nil:
		bad("sip.info_package", "%q is not a token", c.InfoPackage)
	}
	if c.ContentType == "" {
		c.ContentType = "application/json"
	}
	if err := sipgw.ValidateRequest(sipgw.Request{Method: "OPTIONS", ContentType: c.ContentType}, false); err != nil {
		bad("sip.content_type", "%v", err)
	}
	if c.Method == "NOTIFY" && c.Event == "" {
		bad("sip.event", "a NOTIFY needs an Event (RFC 6665)")
	}
	if c.Receive {
		switch ct := sipgw.Mark(c.ContentType); {
		case c.Method == "OPTIONS":
			bad("sip.receive", "an OPTIONS carries nothing that names an action")
		case c.Method == "NOTIFY" && pkg != protocol.PackageCall:
			bad("sip.receive", "a NOTIFY is received in a call's dialog only: package call")
		case ct == "application/sdp":
			bad("sip.receive", "an %s of application/sdp is the call's own (an offer or an answer)", c.Method)
		case c.Method == "MESSAGE" && pkg == protocol.PackageMessaging && ct == "text/plain":
			bad("sip.receive", "a MESSAGE of text/plain is an instant message: give the action a content type of its own")
		}
	}
	if c.Event != "" {
		if err := sipgw.ValidateRequest(sipgw.Request{Method: "NOTIFY", Event: c.Event}, false); err != nil {
			bad("sip.event", "%v", err)
		}
	}
	return &c
}

func compileWebhook(c WebhookConfig, bad func(string, string, ...any)) *webhook {
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		bad("webhook.url", "%q is not an http or https URL", c.URL)
	}
	if len(c.Secret) < 16 {
		bad("webhook.secret", "at least 16 bytes")
	}
	if c.Timeout == 0 {
		c.Timeout = 5 * time.Second
	}
	if c.Timeout < 0 || c.Timeout > 30*time.Second {
		bad("webhook.timeout", "%v: from 1ms to 30s", c.Timeout)
	}
	if c.Retries < 0 || c.Retries > 5 {
		bad("webhook.retries", "%d: from 0 to 5", c.Retries)
	}
	return &webhook{url: c.URL, secret: []byte(c.Secret), timeout: c.Timeout, retries: c.Retries}
}

// Lookup returns the declared action of f's package and action, or nil.
func (s *Set) Lookup(pkg protocol.Package, action protocol.Action) *Action {
	if s == nil {
		return nil
	}
	return s.byAction[key{pkg, action}]
}

// Declared reports whether action is declared in pkg (protocol.ValidateDeclared).
func (s *Set) Declared(pkg protocol.Package, action protocol.Action) bool {
	return s.Lookup(pkg, action) != nil
}

// ForInfo returns the call action of an incoming INFO's Info-Package,
// or nil.
func (s *Set) ForInfo(pkg string) *Action {
	if s == nil {
		return nil
	}
	return s.byInfo[strings.ToLower(pkg)]
}

// ForRequest returns the action of package pkg that receives an
// incoming request of method whose mark is mark (the Info-Package of an
// INFO, the Event of a NOTIFY, the Content-Type of a MESSAGE or an
// UPDATE; see sipgw.Mark), or nil.
func (s *Set) ForRequest(pkg protocol.Package, method, mark string) *Action {
	if s == nil {
		return nil
	}
	if method == "INFO" {
		if a := s.ForInfo(mark); a != nil && a.Package == pkg {
			return a
		}
		return nil
	}
	return s.byMark[markKey{pkg, method, sipgw.Mark(mark)}]
}

// AnswerTimeout is how long the web side has to answer a declared
// request that came to it.
func (s *Set) AnswerTimeout() time.Duration {
	if s == nil {
		return DefaultAnswerTimeout
	}
	return s.wait
}

// InfoPackages lists the declared Info Packages (lower case).
func (s *Set) InfoPackages() []string {
	if s == nil {
		return nil
	}
	out := make([]string, 0, len(s.byInfo))
	for p := range s.byInfo {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}
