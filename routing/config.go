package routing

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"sort"
	"strings"
	"time"
)

// Config is the routing section: named trunks, ordered rules, and the
// default that applies when no rule matches. The zero Config routes as the
// gateway always has (the built-in default profile).
type Config struct {
	// Trunks are the SIP destinations rules name, by name.
	Trunks map[string]TrunkConfig `yaml:"trunks"`
	// Rules are tried in order; the first that matches decides.
	Rules []RuleConfig `yaml:"rules"`
	// Default decides when no rule matches. Empty: the built-in
	// profile (web identity -> web relay; sip:, sips:, tel:, a number or
	// a SIP domain -> sip.outbound_proxy).
	Default ActionConfig `yaml:"default"`
	// Headers set SIP headers on what goes to SIP (headers.go); every
	// matching rule applies.
	Headers []HeaderRuleConfig `yaml:"headers"`
	// ToWeb copies SIP headers of the requests the gateway receives and
	// of the responses to its own into extension headers of the frames
	// the web client gets (transform.go).
	ToWeb []ToWebConfig `yaml:"to_web"`
}

// ToWebConfig maps one SIP header to one extension header.
type ToWebConfig struct {
	// Header is the SIP header read (its first occurrence).
	Header string `yaml:"header"`
	// Ext is the extension header written: "x-" and letters, digits,
	// '-' or '_'.
	Ext string `yaml:"ext"`
	// Methods are the SIP methods whose requests (received) and
	// responses (to the gateway's requests) are read: INVITE, re-INVITE,
	// UPDATE, BYE, MESSAGE, SUBSCRIBE, NOTIFY, PUBLISH, REFER, INFO.
	// Empty: all.
	Methods []string `yaml:"methods"`
	// On is "requests" or "responses"; empty: both.
	On string `yaml:"on"`
}

// TrunkConfig is a SIP destination: proxies tried in order.
type TrunkConfig struct {
	// Proxies are SIP URIs without user (sip:host[:port], optionally
	// ;transport=tcp), in failover order. A request goes to the first
	// proxy not marked down; a 503, a 408 or a timeout moves it on to
	// the next.
	Proxies []string `yaml:"proxies"`
	// HealthInterval is how often each proxy is probed with OPTIONS; one
	// that does not answer is skipped until it answers again. 0: no
	// probes, every proxy is assumed up.
	HealthInterval time.Duration `yaml:"health_interval"`
	// HealthTimeout bounds one probe. Default: the lesser of
	// HealthInterval and 5s.
	HealthTimeout time.Duration `yaml:"health_timeout"`
}

// RuleConfig is one rule: what it matches, and its action. Every match
// key that is set must match (and within a list, any entry).
type RuleConfig struct {
	// Name identifies the rule in explanations and logs. Default
	// "rule[N]".
	Name string `yaml:"name"`
	// For lists the kinds of request the rule applies to: call,
	// message, subscribe, register, publish. Empty: call, message and
	// subscribe.
	For  []string    `yaml:"for"`
	From OriginMatch `yaml:"from"`
	To   TargetMatch `yaml:"to"`
	// Rewrite changes the target before it is routed (with web or trunk).
	Rewrite      RewriteConfig `yaml:"rewrite"`
	ActionConfig `yaml:",inline"`
}

// OriginMatch matches who sends the request.
type OriginMatch struct {
	// Applications lists application names.
	Applications []string `yaml:"applications"`
	// Identity is a pattern of the sender's web identity ("*" matches
	// any run of characters: "*@example.com").
	Identity []string `yaml:"identity"`
	// Guest, when set, matches guests (true) or everyone else (false).
	Guest *bool `yaml:"guest"`
	// Networks lists CIDRs of the client's address.
	Networks []string `yaml:"networks"`
}

// TargetMatch matches where the request goes.
type TargetMatch struct {
	// Target lists patterns of the target as the client wrote it, a
	// leading sip: or sips: dropped ("*" matches any run).
	Target []string `yaml:"target"`
	// Regex is a Go regular expression the target (as for Target) must
	// match; anchor it yourself.
	Regex string `yaml:"regex"`
	// Domains lists the target's domain ("*.example.com": any
	// subdomain).
	Domains []string `yaml:"domains"`
	// Prefixes lists number prefixes ("+44", "00", "0"): the target must
	// be a number (tel:, a bare number, or a SIP URI whose user is one)
	// beginning with one of them, visual separators ignored.
	Prefixes []string `yaml:"prefixes"`
	// WebSession, when set, matches a target with a live web session
	// ("live") or without one ("none").
	WebSession string `yaml:"web_session"`
}

// RewriteConfig changes the target, in this order: strip, E.164, add,
// domain.
type RewriteConfig struct {
	// StripPrefix removes this many leading characters of a number.
	StripPrefix int `yaml:"strip_prefix"`
	// E164 normalises a number to +<country code><number>.
	E164 *E164Config `yaml:"e164"`
	// AddPrefix puts this before a number.
	AddPrefix string `yaml:"add_prefix"`
	// Domain replaces the target's domain (a tel: target becomes
	// sip:<number>@<domain>).
	Domain string `yaml:"domain"`
}

// E164Config says how local numbers become E.164 (ITU-T E.164, RFC 3966).
type E164Config struct {
	// CountryCode is put in front of national numbers ("33").
	CountryCode string `yaml:"country_code"`
	// NationalPrefix is the trunk prefix of national numbers ("0"),
	// replaced by +<country code>.
	NationalPrefix string `yaml:"national_prefix"`
	// InternationalPrefix is the exit code ("00"), replaced by "+".
	InternationalPrefix string `yaml:"international_prefix"`
}

// ActionConfig is what a rule (or the default) decides: exactly one of
// web, trunk, reject; or, for the default only, none (built-in).
type ActionConfig struct {
	// Web relays to the target's web sessions.
	Web bool `yaml:"web"`
	// Trunk names the trunk the request goes to.
	Trunk string `yaml:"trunk"`
	// Reject refuses the request.
	Reject *RejectConfig `yaml:"reject"`
}

// RejectConfig is the error a rejected request gets.
type RejectConfig struct {
	// Code is a SIP-style code, 400-699. Default 403.
	Code int `yaml:"code"`
	// Reason is the error frame's reason. Default: the code's.
	Reason string `yaml:"reason"`
}

func (a ActionConfig) set() int {
	n := 0
	if a.Web {
		n++
	}
	if a.Trunk != "" {
		n++
	}
	if a.Reject != nil {
		n++
	}
	return n
}

// Validate reports every invalid key, each named by its path under
// routing.
func (c Config) Validate() error {
	_, err := compile(c)
	return err
}

func compile(c Config) (*Router, error) {
	var errs []error
	bad := func(key, format string, a ...any) {
		errs = append(errs, fmt.Errorf("routing.%s: %s", key, fmt.Sprintf(format, a...)))
	}
	r := &Router{trunks: map[string]TrunkConfig{}}
	names := make([]string, 0, len(c.Trunks))
	for name := range c.Trunks {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		t := c.Trunks[name]
		key := "trunks." + name
		if !validName(name) {
			bad(key, "trunk names are letters, digits, '-' and '_'")
		}
		if len(t.Proxies) == 0 {
			bad(key+".proxies", "at least one proxy is required")
		}
		for i, p := range t.Proxies {
			if err := ValidateProxy(p); err != nil {
				bad(fmt.Sprintf("%s.proxies[%d]", key, i), "%v", err)
			}
		}
		if t.HealthInterval < 0 || (t.HealthInterval > 0 && t.HealthInterval < time.Second) {
			bad(key+".health_interval", "%v: 0 (no probes) or at least 1s", t.HealthInterval)
		}
		if t.HealthTimeout < 0 || (t.HealthInterval > 0 && t.HealthTimeout > t.HealthInterval) {
			bad(key+".health_timeout", "%v: must be between 0 and health_interval", t.HealthTimeout)
		}
		if t.HealthTimeout == 0 {
			t.HealthTimeout = min(t.HealthInterval, 5*time.Second)
		}
		r.trunks[name] = t
	}
	seen := map[string]bool{}
	for i, rc := range c.Rules {
		key := fmt.Sprintf("rules[%d]", i)
		rl, ruleErrs := compileRule(rc, i, r.trunks)
		for _, e := range ruleErrs {
			bad(key+e.key, "%s", e.msg)
		}
		if seen[rl.name] {
			bad(key+".name", "%q is used by an earlier rule", rl.name)
		}
		seen[rl.name] = true
		r.rules = append(r.rules, rl)
	}
	for i, hc := range c.Headers {
		hr, hdrErrs := compileHeaderRule(hc, i)
		for _, e := range hdrErrs {
			bad(fmt.Sprintf("headers[%d]", i)+e.key, "%s", e.msg)
		}
		r.hdrs = append(r.hdrs, hr)
	}
	for i, tw := range c.ToWeb {
		key := fmt.Sprintf("to_web[%d]", i)
		if !validName(tw.Header) || strings.ContainsAny(tw.Header, "._") {
			bad(key+".header", "%q is not a header name", tw.Header)
		} else if credentialHeader(tw.Header) {
			bad(key+".header", "%q carries credentials, which never go to the web side", tw.Header)
		}
		if !validExt(tw.Ext) {
			bad(key+".ext", "%q: x- then letters, digits, '-' or '_', at most 64", tw.Ext)
		}
		a, aErrs := compileApplies(tw.Methods, tw.On)
		for _, e := range aErrs {
			bad(key+e.key, "%s", e.msg)
		}
		rl := toWebRule{applies: a, header: strings.ToLower(tw.Header), ext: tw.Ext}
		for _, prev := range r.toWeb {
			if prev.header == rl.header && prev.applies == rl.applies {
				bad(key+".header", "%q is mapped by an earlier entry", tw.Header)
			}
		}
		r.toWeb = append(r.toWeb, rl)
	}
	r.def = rule{name: "default"}
	if n := c.Default.set(); n > 1 {
		bad("default", "set one of web, trunk, reject")
	} else if n == 1 {
		for _, e := range compileAction(&r.def, c.Default, r.trunks) {
			bad("default"+e.key, "%s", e.msg)
		}
	} else {
		r.def.action = ActionBuiltin
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return r, nil
}

type keyErr struct{ key, msg string }

func compileRule(rc RuleConfig, i int, trunks map[string]TrunkConfig) (rule, []keyErr) {
	var errs []keyErr
	bad := func(key, format string, a ...any) {
		errs = append(errs, keyErr{key, fmt.Sprintf(format, a...)})
	}
	rl := rule{name: rc.Name}
	if rl.name == "" {
		rl.name = fmt.Sprintf("rule[%d]", i)
	} else if !validName(rl.name) {
		bad(".name", "%q: letters, digits, '-', '_' and '.'", rc.Name)
	}
	for j, k := range rc.For {
		kind, ok := parseKind(k)
		if !ok {
			bad(fmt.Sprintf(".for[%d]", j), "%q is not call, message, subscribe, register or publish", k)
		}
		rl.kinds |= 1 << kind
	}
	if rl.kinds == 0 {
		rl.kinds = defaultKinds
	}
	rl.apps = rc.From.Applications
	for j, p := range rc.From.Identity {
		if p == "" || hasCtl(p) {
			bad(fmt.Sprintf(".from.identity[%d]", j), "empty or control characters")
		}
		rl.identity = append(rl.identity, strings.ToLower(p))
	}
	rl.guest = rc.From.Guest
	for j, n := range rc.From.Networks {
		p, err := netip.ParsePrefix(n)
		if err != nil {
			bad(fmt.Sprintf(".from.networks[%d]", j), "%v", err)
			continue
		}
		rl.networks = append(rl.networks, p.Masked())
	}
	for j, p := range rc.To.Target {
		if p == "" || hasCtl(p) {
			bad(fmt.Sprintf(".to.target[%d]", j), "empty or control characters")
		}
		rl.targets = append(rl.targets, strings.ToLower(stripScheme(p)))
	}
	if rc.To.Regex != "" {
		re, err := regexp.Compile(rc.To.Regex)
		if err != nil {
			bad(".to.regex", "%v", err)
		}
		rl.regex = re
	}
	for j, d := range rc.To.Domains {
		if !ValidHost(strings.TrimPrefix(d, "*.")) {
			bad(fmt.Sprintf(".to.domains[%d]", j), "%q is not a domain", d)
		}
		rl.domains = append(rl.domains, strings.ToLower(d))
	}
	for j, p := range rc.To.Prefixes {
		if !IsNumber(p) {
			bad(fmt.Sprintf(".to.prefixes[%d]", j), "%q is not a number prefix", p)
		}
		rl.prefixes = append(rl.prefixes, digitsOf(p))
	}
	switch rc.To.WebSession {
	case "", "live", "none":
		rl.webSession = rc.To.WebSession
	default:
		bad(".to.web_session", "%q is not live or none", rc.To.WebSession)
	}
	rw := rc.Rewrite
	if rw.StripPrefix < 0 || rw.StripPrefix > 16 {
		bad(".rewrite.strip_prefix", "%d is not between 0 and 16", rw.StripPrefix)
	}
	if rw.AddPrefix != "" && !IsNumber(rw.AddPrefix) {
		bad(".rewrite.add_prefix", "%q is not a number prefix", rw.AddPrefix)
	}
	if rw.Domain != "" && !ValidHost(rw.Domain) {
		bad(".rewrite.domain", "%q is not a host name", rw.Domain)
	}
	if e := rw.E164; e != nil {
		if !allDigits(e.CountryCode) || len(e.CountryCode) > 3 {
			bad(".rewrite.e164.country_code", "%q: one to three digits", e.CountryCode)
		}
		if e.NationalPrefix != "" && !allDigits(e.NationalPrefix) {
			bad(".rewrite.e164.national_prefix", "%q: digits", e.NationalPrefix)
		}
		if e.InternationalPrefix != "" && !allDigits(e.InternationalPrefix) {
			bad(".rewrite.e164.international_prefix", "%q: digits", e.InternationalPrefix)
		}
	}
	rl.rewrite = rw
	switch n := rc.ActionConfig.set(); {
	case n == 0:
		bad("", "no action: set one of web, trunk, reject")
	case n > 1:
		bad("", "set one of web, trunk, reject")
	default:
		errs = append(errs, compileAction(&rl, rc.ActionConfig, trunks)...)
	}
	if rl.action == ActionReject && rw != (RewriteConfig{}) {
		bad(".rewrite", "a rejection rewrites nothing")
	}
	return rl, errs
}

func compileAction(rl *rule, a ActionConfig, trunks map[string]TrunkConfig) []keyErr {
	var errs []keyErr
	switch {
	case a.Web:
		rl.action = ActionWeb
	case a.Trunk != "":
		rl.action, rl.trunk = ActionSIP, a.Trunk
		if _, ok := trunks[a.Trunk]; !ok {
			errs = append(errs, keyErr{".trunk", fmt.Sprintf("%q is not in routing.trunks", a.Trunk)})
		}
	case a.Reject != nil:
		rl.action = ActionReject
		rl.code, rl.reason = a.Reject.Code, a.Reject.Reason
		if rl.code == 0 {
			rl.code = 403
		}
		if rl.code < 400 || rl.code > 699 {
			errs = append(errs, keyErr{".reject.code", fmt.Sprintf("%d is not between 400 and 699", rl.code)})
		}
		if hasCtl(rl.reason) || len(rl.reason) > 128 {
			errs = append(errs, keyErr{".reject.reason", "control characters or over 128 bytes"})
		}
	}
	return errs
}

// ValidateProxy checks a trunk proxy: sip: or sips:, a host, an optional
// port and transport parameter, nothing else.
func ValidateProxy(s string) error {
	rest, ok := strings.CutPrefix(s, "sip:")
	if !ok {
		if rest, ok = strings.CutPrefix(s, "sips:"); !ok {
			return fmt.Errorf("%q: not a sip: or sips: URI", s)
		}
	}
	hostport, params, _ := strings.Cut(rest, ";")
	if strings.Contains(hostport, "@") {
		return fmt.Errorf("%q: a proxy has no user part", s)
	}
	if params != "" {
		k, v, _ := strings.Cut(params, "=")
		if k != "transport" || (v != "udp" && v != "tcp" && v != "tls") {
			return fmt.Errorf("%q: the only parameter is transport=udp|tcp|tls", s)
		}
	}
	host, port := hostport, ""
	if strings.HasPrefix(host, "[") {
		end := strings.IndexByte(host, ']')
		if end < 0 {
			return fmt.Errorf("%q: bad IPv6 reference", s)
		}
		host, port = host[1:end], strings.TrimPrefix(host[end+1:], ":")
		if _, err := netip.ParseAddr(host); err != nil {
			return fmt.Errorf("%q: %v", s, err)
		}
	} else {
		if i := strings.LastIndexByte(host, ':'); i >= 0 {
			host, port = host[:i], host[i+1:]
		}
		if !ValidHost(host) {
			return fmt.Errorf("%q: %q is not a host", s, host)
		}
	}
	if port != "" && (!allDigits(port) || len(port) > 5) {
		return fmt.Errorf("%q: bad port", s)
	}
	return nil
}

// validExt: an extension header name no field of the protocol has.
func validExt(s string) bool {
	if len(s) < 3 || len(s) > 64 || !strings.HasPrefix(s, "x-") {
		return false
	}
	for i := 2; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c|0x20 >= 'a' && c|0x20 <= 'z' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c|0x20 >= 'a' && c|0x20 <= 'z' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// credentialHeader: the headers that carry credentials or their
// challenges (RFC 3261 section 22), which no to_web rule may read.
func credentialHeader(name string) bool {
	switch strings.ToLower(name) {
	case "authorization", "proxy-authorization", "www-authenticate", "proxy-authenticate", "authentication-info":
		return true
	}
	return false
}
