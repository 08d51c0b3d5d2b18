package routing

import (
	"fmt"
	"regexp"
	"strings"
)

// This file is the first part of the transformations of issue 16: header
// rules that set a SIP header on the requests the gateway sends toward
// SIP (INVITE, MESSAGE, SUBSCRIBE) from a template of the sender, the
// target (captures of a regex) and the client's extension headers. The
// SIP side checks every header it is given (sipgw.ValidateHeader): a
// reserved name or a value with a control character is refused with 400,
// so a client's extension header cannot smuggle a header through a rule.

// HeaderRuleConfig sets one SIP header on the requests it matches. Every
// rule that matches applies (not only the first).
type HeaderRuleConfig struct {
	// Name identifies the rule in errors. Default "headers[N]".
	Name string `yaml:"name"`
	// For, From and To match as a routing rule's do. To.Regex's
	// capture groups are {1} to {9} in Value.
	For  []string    `yaml:"for"`
	From OriginMatch `yaml:"from"`
	To   TargetMatch `yaml:"to"`
	// Methods are the SIP methods whose requests and responses the
	// gateway sends get the header (transform.go); empty: all.
	Methods []string `yaml:"methods"`
	// On is "requests" or "responses"; empty: both.
	On string `yaml:"on"`
	// Header is the SIP header to set.
	Header string `yaml:"header"`
	// Param, instead of Header, is a parameter to add to the
	// Request-URI of the request (";cic=1234").
	Param string `yaml:"param"`
	// Value is a template: text, with {identity}, {user}, {domain} (of
	// the sender), {application}, {target}, {1}..{9} (captures of
	// to.regex), and {ext:NAME} (the client's extension header NAME).
	// A placeholder with nothing to give ({ext:x} the frame lacks, a
	// group that did not take part) sets no header at all.
	Value string `yaml:"value"`
	// Drop, instead of a value, keeps the client's extension header of
	// that name (which calls.sip_headers would pass) off SIP.
	Drop bool `yaml:"drop"`
}

// Header is a SIP header a header rule sets; with Drop, one it removes;
// with Param, a Request-URI parameter it adds.
type Header struct {
	Name, Value string
	Drop        bool
	Param       bool
}

type headerRule struct {
	rule // matching (action unused)
	applies
	drop   bool
	param  bool
	header string
	parts  []part // Value, compiled
}

// part is literal text, or a placeholder.
type part struct {
	lit  string
	kind string // "", identity, user, domain, application, target, group, ext
	n    int    // group
	ext  string // extension header name, lower case
}

var placeholder = regexp.MustCompile(`\{[^{}]*\}`)

func compileHeaderRule(hc HeaderRuleConfig, i int) (headerRule, []keyErr) {
	var errs []keyErr
	bad := func(key, format string, a ...any) { errs = append(errs, keyErr{key, fmt.Sprintf(format, a...)}) }
	rc := RuleConfig{Name: hc.Name, For: hc.For, From: hc.From, To: hc.To, ActionConfig: ActionConfig{Web: true}}
	rl, ruleErrs := compileRule(rc, i, nil)
	errs = append(errs, ruleErrs...)
	if hc.Name == "" {
		rl.name = fmt.Sprintf("headers[%d]", i)
	}
	if len(hc.For) == 0 {
		// A header rule's methods say where it applies; without for it
		// is for every kind (PUBLISH too), unlike a routing rule.
		rl.kinds = 1<<numKinds - 1
	}
	hr := headerRule{rule: rl, header: hc.Header, drop: hc.Drop}
	var aErrs []keyErr
	hr.applies, aErrs = compileApplies(hc.Methods, hc.On)
	errs = append(errs, aErrs...)
	switch {
	case hc.Param != "" && hc.Header != "":
		bad(".param", "set header or param, not both")
	case hc.Param != "":
		hr.header, hr.param = hc.Param, true
		if !validName(hc.Param) || strings.ContainsAny(hc.Param, "._") || reservedParam(hc.Param) {
			bad(".param", "%q is not a parameter name, or one that steers routing (transport, maddr, ttl, lr, method, user)", hc.Param)
		}
		if hc.Drop {
			bad(".drop", "drop is for headers")
		}
	case !validName(hc.Header) || strings.ContainsAny(hc.Header, "._"):
		bad(".header", "%q is not a header name", hc.Header)
	}
	switch {
	case hc.Drop && hc.Value != "":
		bad(".value", "a dropped header has no value")
	case !hc.Drop && hc.Value == "":
		bad(".value", "required (or drop: true)")
	}
	groups := 0
	if rl.regex != nil {
		groups = rl.regex.NumSubexp()
	}
	last := 0
	for _, loc := range placeholder.FindAllStringIndex(hc.Value, -1) {
		if loc[0] > last {
			hr.parts = append(hr.parts, part{lit: hc.Value[last:loc[0]]})
		}
		last = loc[1]
		name := hc.Value[loc[0]+1 : loc[1]-1]
		p := part{kind: name}
		switch {
		case name == "identity", name == "user", name == "domain", name == "application", name == "target":
		case len(name) == 1 && name[0] >= '1' && name[0] <= '9':
			p.kind, p.n = "group", int(name[0]-'0')
			if p.n > groups {
				bad(".value", "{%s}: to.regex has %d groups", name, groups)
			}
		case strings.HasPrefix(name, "ext:") && len(name) > 4:
			p.kind, p.ext = "ext", strings.ToLower(name[4:])
		default:
			bad(".value", "{%s} is not a placeholder ({identity}, {user}, {domain}, {application}, {target}, {1}-{9}, {ext:NAME})", name)
		}
		hr.parts = append(hr.parts, p)
	}
	if last < len(hc.Value) {
		hr.parts = append(hr.parts, part{lit: hc.Value[last:]})
	}
	if hasCtl(hc.Value) || strings.ContainsAny(strings.Join(literals(hr.parts), ""), "{}") {
		bad(".value", "control characters or unbalanced braces")
	}
	return hr, errs
}

func literals(ps []part) []string {
	var out []string
	for _, p := range ps {
		if p.kind == "" {
			out = append(out, p.lit)
		}
	}
	return out
}

// expand fills the rule's template for req; ok is false when a
// placeholder has nothing to give.
func (hr *headerRule) expand(req *Request, t addr) (string, bool) {
	var groups []string
	if hr.regex != nil {
		groups = hr.regex.FindStringSubmatch(t.match)
	}
	var b strings.Builder
	for _, p := range hr.parts {
		var v string
		switch p.kind {
		case "":
			v = p.lit
		case "identity":
			v = req.Identity
		case "user":
			v, _, _ = strings.Cut(req.Identity, "@")
		case "domain":
			_, v, _ = strings.Cut(req.Identity, "@")
		case "application":
			v = req.Application
		case "target":
			v = req.Target
		case "group":
			if p.n < len(groups) {
				v = groups[p.n]
			}
		case "ext":
			v = req.Ext[p.ext]
		}
		if v == "" && p.kind != "" {
			return "", false
		}
		b.WriteString(v)
	}
	return b.String(), true
}

// headers returns the headers of every header rule matching req, on a
// request of method m (or a response to one).
func (r *Router) headers(req *Request, t addr, m Method, response bool) []Header {
	var out []Header
	for i := range r.hdrs {
		hr := &r.hdrs[i]
		if !hr.match(m, response) || hr.mismatch(req, t, false) != "" {
			continue
		}
		if hr.drop {
			out = append(out, Header{Name: hr.header, Drop: true})
			continue
		}
		if v, ok := hr.expand(req, t); ok {
			out = append(out, Header{Name: hr.header, Value: v, Param: hr.param})
		}
	}
	return out
}

// String is "Name: value", "Name dropped", or ";name=value".
func (h Header) String() string {
	switch {
	case h.Drop:
		return h.Name + " dropped"
	case h.Param:
		return ";" + h.Name + "=" + h.Value
	}
	return h.Name + ": " + h.Value
}

// reservedParam: the URI parameters of RFC 3261 section 19.1.1 that
// steer where and how a request goes, which no rule may set.
func reservedParam(name string) bool {
	switch strings.ToLower(name) {
	case "transport", "maddr", "ttl", "lr", "method", "user":
		return true
	}
	return false
}
