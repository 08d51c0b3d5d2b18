package sipgw

import (
	"context"
	"errors"
	"github.com/jsonrtc/jsonrtc/internal/ratelog"
	"net"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
)

// udpRequestMax is the largest request sent over UDP when a TCP listener
// exists: RFC 3261 18.1.1 wants a request over 1300 bytes on a
// congestion-controlled transport when the path MTU is unknown, and we
// never know it. A browser's SDP offer alone is 3 to 6 KB.
const udpRequestMax = 1300

// DefaultUDPMaxDatagram is the default udp_max_datagram: the largest UDP
// payload over IPv4, so that whatever must go over UDP goes, fragmented.
const DefaultUDPMaxDatagram = 65507

// SetProcessDefaults applies the settings of c that sipgo keeps in
// package globals, for every gateway of the process: T1 (with T2 and T4
// at RFC 3261's 4s and 5s) and udp_max_datagram. Call it once, before
// any UserAgent starts and before other goroutines use sipgo: cmd/jsonrtcd
// does, and so do the tests that start the SIP side, so that they run
// what production runs.
func SetProcessDefaults(c Config) {
	c = c.WithDefaults()
	if c.T1 != 0 {
		sip.SetTimers(c.T1, 4*time.Second, 5*time.Second)
	}
	// sipgo refuses a datagram over UDPMTUSize-200 (its margin for the
	// requests of RFC 3261 18.1.1). A response cannot change transport
	// (18.2.2), and the 200 OK with a browser's SDP answer is several
	// KB: it must go, as IP fragments. Requests over 1300 bytes are
	// moved to TCP before they reach that check (sizedRequester).
	sip.UDPMTUSize = c.UDPMaxDatagram + 200
}

// sizedRequester is the client's transaction requester: every request the
// gateway originates reaches it fully built (top Via included), whichever
// path made it: Dial, the dialog sessions' in-dialog requests, ACKs and
// CANCELs, REGISTER, SUBSCRIBE, PUBLISH, MESSAGE. It is the one place
// where a request leaves UDP for TCP (RFC 3261 18.1.1), which sipgo does
// not do.
type sizedRequester struct {
	txl      *sip.TransactionLayer
	tpl      *sip.TransportLayer
	log      *ratelog.Logger
	tcpPort  int      // our TCP listener; 0: none, everything stays on UDP
	udpPort  int      // the Via port of requests sent over UDP
	udpLaddr sip.Addr // the UDP listening socket requests are sent from
}

func (r *sizedRequester) Request(ctx context.Context, req *sip.Request) (sip.ClientTransaction, error) {
	onTCP := r.route(req)
	tx, err := r.send(ctx, req)
	if err != nil && onTCP && dialFailed(err) {
		// A next hop that takes no TCP (a UDP-only PBX) still gets the
		// request, fragmented: better than no call. The request never
		// left, so its branch is unused.
		r.log.Info("tcp refused", "sipgw: next hop refuses TCP, sending over UDP", "method", req.Method.String(), "destination", req.Destination(), "err", err)
		r.toUDP(req)
		tx, err = r.send(ctx, req)
	}
	return tx, err
}

// dialFailed: its own function, so that the *net.OpError errors.As needs
// on the heap is allocated only for a failed request.
func dialFailed(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

func (r *sizedRequester) send(ctx context.Context, req *sip.Request) (sip.ClientTransaction, error) {
	if req.IsAck() {
		// An ACK to a 2xx is a transaction of its own (RFC 3261 17.1.1.3):
		// straight to the transport.
		return nil, r.tpl.WriteMsg(req)
	}
	tx, err := r.txl.Request(ctx, req)
	if err != nil {
		return nil, err
	}
	return tx, nil
}

// route moves a UDP request over udpRequestMax bytes to TCP, toward the
// same next hop, and makes the top Via and the local address of any
// request going over TCP ours on TCP: sipgo's client stamps the UDP
// listener's port and address on every request, and the dialog sessions
// send every in-dialog request on the transport of the dialog's INVITE.
// It reports whether the request goes over TCP.
func (r *sizedRequester) route(req *sip.Request) bool {
	if r.tcpPort == 0 {
		return false
	}
	tp := req.Transport()
	if strings.EqualFold(tp, "UDP") && requestSize(req) > udpRequestMax {
		tp = "TCP"
		req.SetTransport(tp)
	}
	if !strings.EqualFold(tp, "TCP") {
		return false
	}
	if via := req.Via(); via != nil {
		via.Transport, via.Port = "TCP", r.tcpPort
	}
	// Unbound: a connection to the next hop is reused, or dialled from
	// an ephemeral port.
	req.Laddr = sip.Addr{}
	return true
}

func (r *sizedRequester) toUDP(req *sip.Request) {
	req.SetTransport("UDP")
	if via := req.Via(); via != nil {
		via.Transport, via.Port = "UDP", r.udpPort
	}
	r.udpLaddr.Copy(&req.Laddr)
}

// requestSize is the length of req on the wire.
func requestSize(req *sip.Request) int {
	if len(req.Body()) > udpRequestMax {
		return len(req.Body()) // no need to serialise it to know
	}
	var n byteCounter
	req.StringWrite(&n)
	return int(n)
}

type byteCounter int

func (n *byteCounter) WriteString(s string) (int, error) {
	*n += byteCounter(len(s))
	return len(s), nil
}
