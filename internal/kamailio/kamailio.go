// Package kamailio is the Kamailio configuration the SIP tests run
// (test/interop, test/cluster): a registrar with digest auth and a
// record-routing proxy. The tests start the process themselves.
package kamailio

import (
	"bytes"
	"os/exec"
	"text/template"
)

// Options are the variants of the configuration.
type Options struct {
	Domain  string
	Port    int    // UDP and TCP on 127.0.0.1
	ModPath string // ModulesDir()
	// Users are the users and their digest passwords; "" registers
	// without auth.
	Users   map[string]string
	Workers int
	// LogRequests logs a line per REGISTER and OPTIONS ("SEEN ...").
	LogRequests bool
	// Outbound: the registrar applies RFC 5626 (outbound_mode 1) and
	// sends Flow-Timer FlowTimer (seconds); REGISTERs log their flow.
	Outbound  bool
	FlowTimer int
	// Path: the registrar keeps the Path of REGISTERs (RFC 3327) and
	// routes through it, and refuses a Path the UA did not say it
	// supports (path_mode 2, 420); with LogRequests each REGISTER logs
	// its Path ("SEEN PATH <user> <Path>").
	Path bool
	// Balancer, host:port, is the gateway's load balancer (Balancer):
	// a Request-URI user "gw-<user>" goes to it as <user>, a request no
	// binding routes (a service number of the gateway's domain).
	Balancer string
	// InviteTimer is tm's fr_inv_timer in milliseconds: how long an
	// INVITE's branch may ring before Kamailio ends it with a 408. 0:
	// 20000.
	InviteTimer int
}

// Config is the configuration file for o.
func Config(o Options) ([]byte, error) { return execute(cfg, o) }

func execute(t *template.Template, data any) ([]byte, error) {
	var b bytes.Buffer
	err := t.Execute(&b, data)
	return b.Bytes(), err
}

// ModulesDir is where the installed Kamailio keeps its modules, with a
// trailing slash.
func ModulesDir() string {
	dir := "/usr/lib/x86_64-linux-gnu/kamailio/modules/"
	if out, err := exec.Command("sh", "-c", "dirname $(find /usr/lib -name tm.so -path '*kamailio*' | head -1)").Output(); err == nil && len(bytes.TrimSpace(out)) > 0 {
		dir = string(bytes.TrimSpace(out)) + "/"
	}
	return dir
}

// head, modules, checks and notInDialog are the parts the
// configurations share: the global settings, the modules both load, the
// first steps of request_route (hops, sanity,
// OPTIONS to us, CANCEL, retransmissions), which route(RELAY) ends, and
// the end of its in-dialog branch (an ACK of a transaction, or 404).
const (
	modules = `mpath="{{.ModPath}}"
loadmodule "kex.so"
loadmodule "corex.so"
loadmodule "tm.so"
loadmodule "tmx.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
`
	notInDialog = `		if (is_method("ACK")) {
			if (t_check_trans()) {
				route(RELAY);
			}
			exit;
		}
		sl_send_reply("404", "Not here");
		exit;
	}
`
	head = `#!KAMAILIO
debug=2
log_stderror=yes
memdbg=5
memlog=5
children={{.Workers}}
tcp_children={{.Workers}}
auto_aliases=no
`
	checks = `	if (!mf_process_maxfwd_header("10")) {
		sl_send_reply("483", "Too Many Hops");
		exit;
	}
	if (!sanity_check("17895", "7")) {
		exit;
	}
	if (is_method("OPTIONS") && uri==myself && $rU==$null) {
		sl_send_reply("200", "OK");
		exit;
	}
	if (is_method("CANCEL")) {
		if (t_check_trans()) {
			route(RELAY);
		}
		exit;
	}
	if (!is_method("ACK")) {
		if (t_precheck_trans()) {
			t_check_trans();
			exit;
		}
		t_check_trans();
	}
`
)

// cfg is the proxy/registrar of the tests: digest auth on REGISTER
// against static passwords (pv_www_authenticate; challenges offer
// qop=auth, as most registrars' do), usrloc in memory,
// record-routing, and "uas-<port>" users routed to a SIPp UAS on
// 127.0.0.1:<port>. NOTICE logging: nothing is logged per message.
var cfg = template.Must(template.New("kamailio.cfg").Parse(head + `alias="{{.Domain}}"
listen=udp:127.0.0.1:{{.Port}}
listen=tcp:127.0.0.1:{{.Port}}
` + modules + `loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "sanity.so"
loadmodule "auth.so"
modparam("usrloc", "db_mode", 0)
modparam("registrar", "max_expires", 3600)
modparam("registrar", "min_expires", 10)
modparam("rr", "enable_full_lr", 1)
modparam("tm", "fr_inv_timer", {{if .InviteTimer}}{{.InviteTimer}}{{else}}20000{{end}})
{{- if .Outbound}}
# SIP outbound (RFC 5626) at the registrar: Require: outbound on the 200
# of a REGISTER with reg-id, and a Flow-Timer asking for a keepalive
# every {{.FlowTimer}} s. Kamailio's TCP layer answers CRLF pings.
modparam("registrar", "outbound_mode", 1)
modparam("registrar", "flow_timer", {{.FlowTimer}})
{{- end}}
{{- if .Path}}
# Path (RFC 3327): the binding keeps the balancer's Path, and lookup
# routes through it; a Path the UA does not support is refused (420).
modparam("registrar", "use_path", 1)
modparam("registrar", "path_mode", 2)
{{- end}}

request_route {
{{- if .LogRequests}}
	if (is_method("REGISTER")) {
		if (is_present_hf("Authorization")) {
			xlog("L_NOTICE", "SEEN REGISTER $fU $ci $cs auth\n");
		} else {
			xlog("L_NOTICE", "SEEN REGISTER $fU $ci $cs noauth\n");
		}
		xlog("L_NOTICE", "SEEN CONTACT $fU $hdr(Contact)\n");
{{- if .Path}}
		xlog("L_NOTICE", "SEEN PATH $fU $hdr(Path)\n");
{{- end}}
{{- if .Outbound}}
		xlog("L_NOTICE", "SEEN FLOW $fU $cs $pr $si:$sp supported=$hdr(Supported)\n");
{{- end}}
	} else if (is_method("OPTIONS")) {
		xlog("L_NOTICE", "SEEN OPTIONS $ci\n");
	}
{{- end}}
` + checks + `	if (has_totag()) {
		if (loose_route()) {
			# An in-dialog request to a GRUU (RFC 5627 section 7): the
			# binding it names.
			if (uri==myself && $rU!=$null && !lookup("location")) {
				send_reply("404", "Not Found");
				exit;
			}
			route(RELAY);
			exit;
		}
` + notInDialog + `	remove_hf("Route");
	if (is_method("INVITE|SUBSCRIBE|REFER")) {
		record_route();
	}
	if (is_method("REGISTER")) {
		$var(pw) = "";
{{- range $user, $pw := .Users}}
		if ($tU == "{{$user}}") { $var(pw) = "{{$pw}}"; }
{{- end}}
		if ($var(pw) != "") {
			if (!pv_www_authenticate("$td", "$var(pw)", "0")) {
				www_challenge("$td", "1");
				exit;
			}
			consume_credentials();
		}
		if (!save("location")) {
			sl_reply_error();
		}
		exit;
	}
	if ($rU == $null) {
		sl_send_reply("484", "Address Incomplete");
		exit;
	}
{{- if .Balancer}}
	if ($rU =~ "^gw-.+$") {
		$rU = $(rU{s.substr,3,0});
		$du = "sip:{{.Balancer}}";
		route(RELAY);
		exit;
	}
{{- end}}
	if ($rU =~ "^uas-[0-9]+$") {
		$du = "sip:127.0.0.1:" + $(rU{s.substr,4,0});
		route(RELAY);
		exit;
	}
	if (!lookup("location")) {
		send_reply("404", "Not Found");
		exit;
	}
	route(RELAY);
}

route[RELAY] {
	if (!t_relay()) {
		sl_reply_error();
	}
	exit;
}
`))
