package sipgw

import (
	"net/netip"

	"github.com/emiago/sipgo/sip"
)

// Behind a SIP load balancer (sip.balancers; docs/cluster.md, "SIP
// deployments"), the registrar routes a web user's calls to the node
// holding the binding, through the balancer's Path (RFC 3327), and the
// Request-URI is that binding's Contact, as without a balancer. The
// balancer also hands new requests that no binding routes (a service
// number of the gateway's domain) to any live node (Kamailio's
// ds_select_dst): their Request-URI is the AOR, and the node that gets
// one rings the identity's sessions wherever they are (the call
// handler's directory spans the cluster). Only the balancer may do so:
// from anyone else an AOR is refused as it always was.

// incomingIdentity names the web identity and the local URI of a new
// INVITE: the registration whose Contact it was sent to, else, from a
// balancer, the identity of its Request-URI's AOR (identityOf).
func (g *UserAgent) incomingIdentity(req *sip.Request) (identity string, local sip.Uri, ok bool) {
	if reg := g.lookupContact(req.Recipient.User); reg != nil {
		return reg.identity, reg.aor, true
	}
	if !g.fromBalancer(req) {
		return "", local, false
	}
	identity, ok = g.identityOf(req)
	if !ok {
		return "", local, false
	}
	local = sip.Uri{Scheme: "sip", User: req.Recipient.User, Host: req.Recipient.Host}
	return identity, local, true
}

// fromBalancer reports whether req came from one of sip.balancers.
func (g *UserAgent) fromBalancer(req *sip.Request) bool {
	if len(g.balancers) == 0 {
		return false
	}
	ap, err := netip.ParseAddrPort(req.Source())
	if err != nil {
		return false
	}
	a := ap.Addr().Unmap()
	for _, p := range g.balancers {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
