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
// balancer, the identity of its Request-URI's AOR (identityOf; byAOR).
func (g *UserAgent) incomingIdentity(req *sip.Request) (identity string, local sip.Uri, byAOR, ok bool) {
	if reg := g.lookupContact(req.Recipient.User); reg != nil {
		return reg.identity, reg.aor, false, true
	}
	if !g.fromBalancer(req) {
		return "", local, false, false
	}
	identity, ok = g.identityOf(req)
	if !ok {
		return "", local, false, false
	}
	local = sip.Uri{Scheme: "sip", User: req.Recipient.User, Host: req.Recipient.Host}
	return identity, local, true, true
}

// aorRetryAfter is the Retry-After, in seconds, of a 480 to an INVITE a
// balancer sent to an AOR, when the call did not ring: most often one
// whose node died (the
// balancer's failure_route PATH_NODE), whose session resumes on another
// node within the cluster's lease_ttl and a third (6 s by default),
// then re-registers and rings (RFC 3261 section 21.4.18).
const aorRetryAfter = "10"

// tryingAtOnce answers 100 Trying to a balancer's INVITE before any
// work, not after sipgo's 200 ms: the balancer fails over to another
// node when no provisional came within its failover time, and a node
// that answers late would ring the user along with the next one.
func (g *UserAgent) tryingAtOnce(req *sip.Request, tx sip.ServerTransaction) {
	if g.fromBalancer(req) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 100, "Trying", nil))
	}
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
