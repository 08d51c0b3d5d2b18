// Package routing decides where a web request goes: to the target's web
// sessions, to a named SIP trunk (after an optional rewrite of the
// target), or nowhere (a rejection with a code and reason). Calls,
// messages and subscriptions are decided alike, by ordered rules matching
// the origin (application, identity, guest, client network) and the
// destination (target pattern or regex, domain, number prefix, whether
// the target has a live web session); the first rule that matches
// decides, and the default applies when none does.
//
// The package is pure: no I/O, no clock. Start with [New] and
// [Router.Decide]; [Router.Explain] also says why each earlier rule did
// not match (jsonrtcd route, and the debug log of each routed request).
// docs/routing.md describes the configuration.
package routing

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
)

// Kind is the kind of request routed.
type Kind uint8

// The kinds of request.
const (
	Call Kind = iota
	Message
	Subscribe
	// Register and Publish are the gateway's REGISTER and PUBLISH for
	// a web identity (its target): only rules whose for names them
	// apply, and they take a trunk (or a rejection) only: any other
	// decision sends them to sip.outbound_proxy.
	Register
	Publish
	numKinds
)

var kindNames = [numKinds]string{"call", "message", "subscribe", "register", "publish"}

// defaultKinds are the kinds of a rule without for.
const defaultKinds = 1<<Call | 1<<Message | 1<<Subscribe

func (k Kind) String() string {
	if k < numKinds {
		return kindNames[k]
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

func parseKind(s string) (Kind, bool) {
	for i, n := range kindNames {
		if n == s {
			return Kind(i), true
		}
	}
	return 0, false
}

// Action is what a decision does with the request.
type Action uint8

// The actions.
const (
	// ActionBuiltin: no rule decided; the built-in profile applies
	// (web identity -> web relay; sip:, sips:, tel:, a number or a SIP
	// domain -> sip.outbound_proxy), as before routing existed.
	ActionBuiltin Action = iota
	// ActionWeb: relay to the target's web sessions.
	ActionWeb
	// ActionSIP: send to Decision.Trunk.
	ActionSIP
	// ActionReject: refuse with Decision.Code and Decision.Reason.
	ActionReject
)

func (a Action) String() string {
	switch a {
	case ActionBuiltin:
		return "builtin"
	case ActionWeb:
		return "web"
	case ActionSIP:
		return "sip"
	case ActionReject:
		return "reject"
	}
	return "action(" + strconv.Itoa(int(a)) + ")"
}

// Request is what a decision looks at.
type Request struct {
	Kind Kind
	// Application is the sender's application name.
	Application string
	// Identity is the sender's web identity.
	Identity string
	Guest    bool
	// Source is the client's address (invalid when unknown: no network
	// rule matches it).
	Source netip.Addr
	// Target is the target as the client wrote it.
	Target string
	// WebLive reports whether Target has a live web session.
	WebLive bool
	// Ext are the client's extension headers, by lower-case name, for
	// header rules' {ext:NAME}.
	Ext map[string]string
}

// Decision is the outcome of routing a request.
type Decision struct {
	Action Action
	// Rule names the rule that decided ("default" when none matched).
	Rule string
	// Trunk is the trunk of ActionSIP.
	Trunk string
	// Target is the target to route: Request.Target, rewritten by the
	// rule's rewrite.
	Target string
	// Code and Reason are the error of ActionReject.
	Code   int
	Reason string
	// Steps explain the decision, rule by rule, up to the deciding one
	// (only from [Router.Explain]).
	Steps []Step
	// Headers are the SIP headers the header rules set (for ActionSIP
	// and ActionBuiltin).
	Headers []Header
	// Transform is the transformations of the later requests and
	// responses of what is decided (for ActionSIP and ActionBuiltin; nil
	// when there are none), under this configuration.
	Transform *Transform
	// Sender is how the SIP side presents the sender. Rules do not
	// decide it: the gateway fills it in from the sender's application
	// (its sip_identity).
	Sender Sender
}

// Sender is how a request sent to SIP presents its sender. Each URI is a
// sip: or sips: URI of user@host; the SIP side checks them again.
type Sender struct {
	// From is the URI of From; "": the AOR of the web identity.
	From string
	// AssertedIdentity, when set, goes out as P-Asserted-Identity (RFC
	// 3325), PreferredIdentity as P-Preferred-Identity.
	AssertedIdentity  string
	PreferredIdentity string
	// Privacy sends an anonymous From and Privacy: id (RFC 3323).
	Privacy bool
}

// Step is one rule's verdict on a request.
type Step struct {
	Rule    string
	Matched bool
	// Why says which key did not match, and with what; or, for the
	// deciding rule, what it decided.
	Why string
}

// Router holds compiled rules. It is immutable and safe for concurrent
// use.
type Router struct {
	trunks map[string]TrunkConfig
	rules  []rule
	def    rule
	hdrs   []headerRule
	toWeb  []toWebRule
}

// New compiles c; the error names every bad key.
func New(c Config) (*Router, error) { return compile(c) }

// Trunk returns the named trunk's configuration (with defaults).
func (r *Router) Trunk(name string) (TrunkConfig, bool) {
	t, ok := r.trunks[name]
	return t, ok
}

// Trunks returns every trunk, by name.
func (r *Router) Trunks() map[string]TrunkConfig {
	out := make(map[string]TrunkConfig, len(r.trunks))
	for k, v := range r.trunks {
		out[k] = v
	}
	return out
}

// Decide routes req.
func (r *Router) Decide(req Request) Decision { return r.decide(req, false) }

// Explain routes req and says why each rule before the deciding one did
// not match.
func (r *Router) Explain(req Request) Decision { return r.decide(req, true) }

func (r *Router) decide(req Request, explain bool) Decision {
	t := parseAddr(req.Target)
	d := r.route(&req, t, explain)
	if (req.Kind == Register || req.Kind == Publish) && d.Action == ActionWeb {
		// Nothing to relay on the web: the SIP side's default proxy.
		d.Action = ActionBuiltin
	}
	if d.Action == ActionSIP || d.Action == ActionBuiltin {
		if len(r.hdrs) > 0 && req.Kind != Register {
			// No header rule names REGISTER: the binding is the AOR's own.
			d.Headers = r.headers(&req, t, req.Kind.initial(), false)
		}
		d.Transform = r.Bind(req)
	}
	return d
}

func (r *Router) route(req *Request, t addr, explain bool) Decision {
	var steps []Step
	for i := range r.rules {
		rl := &r.rules[i]
		why := rl.mismatch(req, t, explain)
		if why != "" {
			if explain {
				steps = append(steps, Step{Rule: rl.name, Why: why})
			}
			continue
		}
		d := rl.decision(req.Target, t)
		if explain {
			d.Steps = append(steps, Step{Rule: rl.name, Matched: true, Why: d.String()})
		}
		return d
	}
	d := r.def.decision(req.Target, t)
	if explain {
		d.Steps = append(steps, Step{Rule: "default", Matched: true, Why: d.String()})
	}
	return d
}

// String is the decision in a line: "sip trunk pstn, target tel:+3312",
// "web", "reject 403 guests may call sales only", "builtin".
func (d Decision) String() string {
	switch d.Action {
	case ActionSIP:
		return "sip trunk " + d.Trunk + ", target " + d.Target
	case ActionWeb:
		return "web, target " + d.Target
	case ActionReject:
		return "reject " + strconv.Itoa(d.Code) + " " + d.Reason
	}
	return "builtin (web identity -> web relay; sip:, sips:, tel:, number, SIP domain -> sip.outbound_proxy)"
}

type rule struct {
	name  string
	kinds uint8 // bit per Kind
	// origin
	apps     []string
	identity []string
	guest    *bool
	networks []netip.Prefix
	// destination
	targets    []string
	regex      *regexp.Regexp
	domains    []string
	prefixes   []string
	webSession string
	// action
	rewrite RewriteConfig
	action  Action
	trunk   string
	code    int
	reason  string
}

// mismatch returns "" when the rule matches req, else why not (the
// reason is only spelled out when explain is set).
func (rl *rule) mismatch(req *Request, t addr, explain bool) string {
	no := func(format string, a ...any) string {
		if !explain {
			return "no"
		}
		return fmt.Sprintf(format, a...)
	}
	if rl.kinds&(1<<req.Kind) == 0 {
		return no("for: not for %s", req.Kind)
	}
	if len(rl.apps) > 0 && !contains(rl.apps, req.Application) {
		return no("from.applications: %q is not one of %q", req.Application, rl.apps)
	}
	if len(rl.identity) > 0 && !anyGlob(rl.identity, strings.ToLower(req.Identity)) {
		return no("from.identity: %q matches none of %q", req.Identity, rl.identity)
	}
	if rl.guest != nil && *rl.guest != req.Guest {
		if req.Guest {
			return no("from.guest: the sender is a guest")
		}
		return no("from.guest: the sender is no guest")
	}
	if len(rl.networks) > 0 && !inNetworks(rl.networks, req.Source) {
		if !req.Source.IsValid() {
			return no("from.networks: the client's address is unknown")
		}
		return no("from.networks: %s is in none of %v", req.Source, rl.networks)
	}
	if len(rl.targets) > 0 && !anyGlob(rl.targets, t.match) {
		return no("to.target: %q matches none of %q", t.match, rl.targets)
	}
	if rl.regex != nil && !rl.regex.MatchString(t.match) {
		return no("to.regex: %q does not match %s", t.match, rl.regex)
	}
	if len(rl.domains) > 0 && !matchDomain(rl.domains, t.host) {
		if t.host == "" {
			return no("to.domains: the target has no domain")
		}
		return no("to.domains: %q is none of %q", t.host, rl.domains)
	}
	if len(rl.prefixes) > 0 {
		if !t.number {
			return no("to.prefixes: %q is not a number", t.match)
		}
		if !hasPrefix(rl.prefixes, digitsOf(t.user)) {
			return no("to.prefixes: %s starts with none of %q", digitsOf(t.user), rl.prefixes)
		}
	}
	switch {
	case rl.webSession == "live" && !req.WebLive:
		return no("to.web_session: the target has no live web session")
	case rl.webSession == "none" && req.WebLive:
		return no("to.web_session: the target has a live web session")
	}
	return ""
}

func (rl *rule) decision(target string, t addr) Decision {
	d := Decision{Action: rl.action, Rule: rl.name, Trunk: rl.trunk, Target: target, Code: rl.code, Reason: rl.reason}
	if (rl.action == ActionWeb || rl.action == ActionSIP) && rl.rewrite != (RewriteConfig{}) {
		d.Target = rewrite(t, rl.rewrite)
	}
	if d.Action == ActionReject && d.Reason == "" {
		d.Reason = "refused by routing rule " + rl.name
	}
	return d
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func anyGlob(patterns []string, s string) bool {
	for _, p := range patterns {
		if glob(p, s) {
			return true
		}
	}
	return false
}

// glob matches s against p, where "*" is any run of characters
// (iteratively: no backtracking blow-up).
func glob(p, s string) bool {
	px, sx := 0, 0
	star, mark := -1, 0
	for sx < len(s) {
		switch {
		case px < len(p) && p[px] == '*':
			star, mark = px, sx
			px++
		case px < len(p) && p[px] == s[sx]:
			px++
			sx++
		case star >= 0:
			px, mark = star+1, mark+1
			sx = mark
		default:
			return false
		}
	}
	for px < len(p) && p[px] == '*' {
		px++
	}
	return px == len(p)
}

func inNetworks(nets []netip.Prefix, a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	a = a.Unmap()
	for _, n := range nets {
		if n.Contains(a) {
			return true
		}
	}
	return false
}

func matchDomain(domains []string, host string) bool {
	if host == "" {
		return false
	}
	for _, d := range domains {
		if sub, ok := strings.CutPrefix(d, "*."); ok {
			if strings.HasSuffix(host, "."+sub) {
				return true
			}
		} else if d == host {
			return true
		}
	}
	return false
}

func hasPrefix(prefixes []string, num string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(num, p) {
			return true
		}
	}
	return false
}
