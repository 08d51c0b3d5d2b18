package kamailio

import (
	"fmt"
	"strings"
	"text/template"
)

// BalancerOptions are the variants of the load balancer's configuration:
// the Kamailio in front of the gateway nodes in deployment (b) of
// docs/cluster.md, "SIP deployments".
type BalancerOptions struct {
	Listen  string // host:port, UDP and TCP
	ModPath string // ModulesDir()
	// ListFile is where the dispatcher list (BalancerList) is.
	ListFile string
	// Upstream, host:port, is the SIP network's proxy and registrar:
	// where the nodes' requests outside a dialog go.
	Upstream string
	// Probe is the wait between OPTIONS probes of each node, in
	// seconds: a node that does not answer one leaves the set until it
	// answers again.
	Probe int
	// FailoverMS is how long the balancer waits for a node's first
	// answer to a new request before it tries the next node, in
	// milliseconds (tm's fr_timer for those branches).
	FailoverMS int
	Workers    int
	// MatchPort tells the nodes' requests by source address and port,
	// for nodes that share an address (the tests' on loopback); they
	// must then send from their listening port, which UDP does. Unset,
	// by address alone, over any transport.
	MatchPort bool
	// LogRequests logs a line per request the balancer relays
	// ("LB <method> <Request-URI> <destination>").
	LogRequests bool
}

// BalancerConfig is the configuration file of the balancer o describes.
func BalancerConfig(o BalancerOptions) ([]byte, error) { return execute(balancerCfg, o) }

// BalancerList is the dispatcher list of the nodes (host:port each):
// one set, 1, of SIP URIs, every node probed.
func BalancerList(nodes []string) []byte {
	var b strings.Builder
	b.WriteString("# setid destination flags priority attributes\n")
	for _, n := range nodes {
		fmt.Fprintf(&b, "1 sip:%s 8 0\n", n)
	}
	return []byte(b.String())
}

// balancerCfg is the load balancer of deployment (b) (docs/cluster.md,
// "SIP deployments"). The SIP network knows only its address; it takes:
//   - from a node (set 1 of the dispatcher list): REGISTERs, which it
//     puts on their Path with the node's address as "received" (RFC
//     3327), and every other request outside a dialog, record-routed,
//     to the upstream proxy;
//   - from the SIP network: a request whose Route is the Path of a
//     binding, to the node that registered it ("received"); any other
//     request outside a dialog (a service number) to a live node,
//     round-robin, the next node on a timeout or 5xx;
//   - requests within a dialog along its route set: it record-routes
//     every dialog it starts or passes, both ways.
var balancerCfg = template.Must(template.New("balancer.cfg").Parse(head + `listen=udp:{{.Listen}}
listen=tcp:{{.Listen}}
` + modules + `loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "sanity.so"
loadmodule "path.so"
loadmodule "dispatcher.so"
modparam("rr", "enable_full_lr", 1)
# A Route carrying a Path's "received" goes there (the node).
modparam("path", "use_received", 1)
modparam("tm", "fr_inv_timer", 20000)
modparam("dispatcher", "list_file", "{{.ListFile}}")
# 2: failover (ds_next_dst over the destinations ds_select_dst chose).
modparam("dispatcher", "flags", 2)
modparam("dispatcher", "ds_ping_method", "OPTIONS")
modparam("dispatcher", "ds_ping_from", "sip:balancer@{{.Listen}}")
modparam("dispatcher", "ds_ping_interval", {{.Probe}})
modparam("dispatcher", "ds_probing_mode", 1)
modparam("dispatcher", "ds_probing_threshold", 1)
modparam("dispatcher", "ds_inactive_threshold", 1)
modparam("dispatcher", "ds_ping_reply_codes", "class=2")

request_route {
` + checks + `	if (has_totag()) {
		if (loose_route()) {
			route(RELAY);
			exit;
		}
` + notInDialog + `	# Outside a dialog. A Route to us is the nodes' outbound proxy
	# setting, or a binding's Path (its "received" names the node).
	# loose_route takes it off; a Path's "received" becomes $du. (What
	# it returns for a Route naming us alone says nothing here.)
	loose_route();
	if (is_method("INVITE|SUBSCRIBE|REFER")) {
		record_route();
	}
{{- if .MatchPort}}
	# Nodes sharing an address: matched by port too (UDP: they send from
	# their listening port).
	if (ds_is_from_list("1", "2")) {
{{- else}}
	# A node's request, told by its source address (any port, transport).
	if (ds_is_from_list("1", "3")) {
{{- end}}
		if (is_method("REGISTER")) {
			add_path_received();
		}
		$du = "sip:{{.Upstream}}";
		route(RELAY);
	}
	if ($du != $null) {
		# A binding's Path names the node. If that node does not answer
		# (it died; the session has not yet re-registered elsewhere), the
		# call goes to the user's AOR on a live node: PATH_NODE.
		if (is_method("INVITE")) {
			t_set_fr(0, {{.FailoverMS}});
			t_on_failure("PATH_NODE");
		}
		route(RELAY);
	}
	# A new request no binding routes: any live node.
	if (!ds_select_dst("1", "4")) {
		send_reply("503", "No Gateway Node");
		exit;
	}
	t_set_fr(0, {{.FailoverMS}});
	t_on_failure("NEXT_NODE");
	route(RELAY);
}

route[RELAY] {
{{- if .LogRequests}}
	xlog("L_NOTICE", "LB $rm $ru $du\n");
{{- end}}
	if (!t_relay()) {
		sl_reply_error();
	}
	exit;
}

# The node a binding's Path named did not answer in time, or answered
# 5xx: the Request-URI, its Contact, is the dead node's; the To, the AOR
# the caller dialled, goes to a live node other than it, which rings the
# identity's sessions wherever they are (sip.balancers).
failure_route[PATH_NODE] {
	if (t_is_canceled()) {
		exit;
	}
	if (t_branch_timeout() || t_check_status("5[0-9][0-9]")) {
		$avp(dead) = $(du{uri.host}) + ":" + $(du{uri.port});
		$ru = $tu;
		if (!ds_select_dst("1", "4")) {
			exit;
		}
		if ($(du{uri.host}) + ":" + $(du{uri.port}) == $avp(dead) && !ds_next_dst()) {
			exit;
		}
		t_set_fr(0, {{.FailoverMS}});
		t_on_failure("NEXT_NODE");
		route(RELAY);
	}
}

# A node that did not answer in time, or answered 5xx: mark it down
# until its probe answers again, and try the next.
failure_route[NEXT_NODE] {
	if (t_is_canceled()) {
		exit;
	}
	if (t_branch_timeout() || t_check_status("5[0-9][0-9]")) {
		ds_mark_dst("ip");
		if (ds_next_dst()) {
			t_set_fr(0, {{.FailoverMS}});
			t_on_failure("NEXT_NODE");
			route(RELAY);
		}
	}
}
`))
