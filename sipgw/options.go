package sipgw

import (
	"context"
	"strings"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// What the gateway tells peers it can do: Allow, Supported, and who it is
// (User-Agent, Server). docs/sip.md lists the same.

// Version is the gateway's version, in the default User-Agent and Server
// (jsonrtc/<Version>). The build sets it:
// go build -ldflags "-X github.com/jsonrtc/jsonrtc/sipgw.Version=1.2.3".
var Version = "dev"

// supported is the Supported value of what we send: every option tag
// the gateway implements. rel100 offers reliable provisionals (a Dial
// may leave it out); trickle announces trickle-ice (RFC 8840) on a call
// whose web side trickles. Add a new option tag here, and to docs/sip.md.
func supported(rel100, trickle bool) string {
	tags := make([]string, 0, 4)
	if rel100 {
		tags = append(tags, "100rel")
	}
	// replaces: an INVITE with Replaces (RFC 3891) takes over a call
	// (replaces.go), and peers may Require it.
	tags = append(tags, "replaces", "timer")
	if trickle {
		tags = append(tags, InfoPackageTrickleICE)
	}
	return strings.Join(tags, ", ")
}

// registerSupported is the Supported value of our REGISTERs: path (RFC
// 3327: a proxy between us and the registrar, a load balancer, may put
// itself on the binding's path; the registrar then sends the Path back,
// which we need not read: the balancer routes our dialogs), gruu (RFC
// 5627), and outbound (RFC 5626, outbound.go) when sip.outbound is on.
// The dialog tags of supported mean nothing to a registrar.
func registerSupported(outbound bool) string {
	if outbound {
		return "outbound, path, gruu"
	}
	return "path, gruu"
}

// setSupported puts our one Supported header on m, and a Recv-Info of
// the declared Info Packages when there are any (RFC 6086 section 4.2.2:
// a peer sends INFO only of packages we listed).
func (g *UserAgent) setSupported(m interface{ AppendHeader(sip.Header) }, rel100, trickle bool) {
	m.AppendHeader(sip.NewHeader("Supported", supported(rel100, trickle)))
	if pkgs := g.infoPackages(); len(pkgs) > 0 {
		m.AppendHeader(sip.NewHeader("Recv-Info", strings.Join(pkgs, ", ")))
	}
}

// allowOrder is the order Allow lists methods in.
var allowOrder = [...]sip.RequestMethod{sip.INVITE, sip.ACK, sip.CANCEL, sip.BYE, sip.OPTIONS,
	sip.PRACK, sip.UPDATE, sip.INFO, sip.REFER, sip.NOTIFY, sip.MESSAGE, sip.SUBSCRIBE, sip.PUBLISH, sip.REGISTER}

// allowList is the Allow value: exactly the methods with a handler.
func allowList(registered []string) string {
	has := map[string]bool{}
	for _, m := range registered {
		has[strings.ToUpper(m)] = true
	}
	out := make([]string, 0, len(registered))
	for _, m := range allowOrder {
		if has[string(m)] {
			out = append(out, string(m))
		}
	}
	return strings.Join(out, ", ")
}

// stampRequester puts User-Agent on every request the client sends that
// has none: every request the gateway originates passes here (see
// sizedRequester).
type stampRequester struct {
	next sipgo.ClientTransactionRequester
	ua   string
}

func (r stampRequester) Request(ctx context.Context, req *sip.Request) (sip.ClientTransaction, error) {
	if req.GetHeader("User-Agent") == nil {
		req.AppendHeader(sip.NewHeader("User-Agent", r.ua))
	}
	return r.next.Request(ctx, req)
}

// stampedTx puts Server on every response of a server transaction that
// has none.
type stampedTx struct {
	sip.ServerTransaction
	server string
}

func (t stampedTx) Respond(res *sip.Response) error {
	if res.GetHeader("Server") == nil {
		res.AppendHeader(sip.NewHeader("Server", t.server))
	}
	return t.ServerTransaction.Respond(res)
}
