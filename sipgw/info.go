package sipgw

import (
	"context"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// Trickle ICE over SIP (RFC 8840): candidates travel in INFO requests of
// the Info Package "trickle-ice" (RFC 6086) with an
// application/trickle-ice-sdpfrag body. A peer that takes them says so
// with Recv-Info: trickle-ice, or with the option tag of the same name in
// Supported; we say the same in our INVITE ([DialOptions].Trickle) or in
// our responses to its INVITE ([Call.SetTrickle]).
const (
	InfoPackageTrickleICE = "trickle-ice"
	ContentTypeTrickleICE = "application/trickle-ice-sdpfrag"
)

// maxInfoBody bounds the body of an INFO we send: an SDP fragment of
// candidates is a few KiB; more means a caller bug, and would not fit a
// UDP datagram anyway.
const maxInfoBody = 32 << 10

// Info is the content of an in-dialog INFO request.
type Info struct {
	// Package is the Info-Package (RFC 6086); empty for a legacy INFO
	// such as application/dtmf-relay.
	Package string
	// ContentType of Body (type/subtype). Required with a body.
	ContentType string
	Body        []byte
	// Ext are the extension headers of the web frame behind it, for the
	// call's header rules of INFO ({ext:NAME}); none goes as it is.
	Ext []Header
}

// SendInfo sends an INFO in the established dialog, over its route set,
// whichever side created it, and returns once the peer answered 2xx (a
// failure response is a *ResponseError: 469 when the peer refuses the
// package). The call must be confirmed, or, for an outgoing call, have
// an early dialog of a PRACKed reliable provisional with SDP, which the
// INFO then goes in (ErrCallState otherwise).
func (c *Call) SendInfo(ctx context.Context, in Info) error {
	if in.Package != "" && !validToken(in.Package) {
		return invalid("info package %q", in.Package)
	}
	if len(in.Body) > maxInfoBody {
		return invalid("info body of %d bytes", len(in.Body))
	}
	if len(in.Body) > 0 || in.ContentType != "" {
		t, sub, ok := strings.Cut(in.ContentType, "/")
		if !ok || !validToken(t) || !validToken(sub) {
			return invalid("content type %q", in.ContentType)
		}
	}
	req := sip.NewRequest(sip.INFO, sip.Uri{})
	if in.Package != "" {
		req.AppendHeader(sip.NewHeader("Info-Package", in.Package))
	}
	if in.ContentType != "" {
		req.AppendHeader(sip.NewHeader("Content-Type", in.ContentType))
		if in.Package != "" {
			// RFC 6086 section 4.2.2: the body belongs to the package.
			req.AppendHeader(sip.NewHeader("Content-Disposition", "Info-Package"))
		}
	}
	req.SetBody(in.Body)
	_, err := c.simple(ctx, req, in.Ext)
	return err
}

// PeerAccepts reports whether the peer said it takes INFO of package pkg
// (its Recv-Info, or an option tag of that name in its Supported) in its
// INVITE or its responses to ours, so far.
func (c *Call) PeerAccepts(pkg string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.peerInfo[strings.ToLower(pkg)]
}

// SetTrickle makes our provisional and 2xx responses to an incoming call
// say that we take trickle-ice INFOs (call it before Progress or Answer,
// when the web side can use trickled candidates).
func (c *Call) SetTrickle(on bool) {
	c.mu.Lock()
	c.trickle = on
	c.mu.Unlock()
}

func (c *Call) trickles() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.trickle
}

// notePeer records the Info Packages and option tags the peer announced
// in m, the INVITE or a response to ours.
func (c *Call) notePeer(m interface{ GetHeaders(string) []sip.Header }) {
	var found []string
	for _, name := range [...]string{"Recv-Info", "Supported", "k"} {
		for _, h := range m.GetHeaders(name) {
			for _, t := range strings.Split(h.Value(), ",") {
				if t = strings.ToLower(strings.TrimSpace(t)); t == InfoPackageTrickleICE {
					found = append(found, t)
				}
			}
		}
	}
	if len(found) == 0 {
		return
	}
	c.mu.Lock()
	if c.peerInfo == nil {
		c.peerInfo = map[string]bool{}
	}
	for _, t := range found {
		c.peerInfo[t] = true
	}
	c.mu.Unlock()
}

// advertiseTrickle adds what tells the peer we take trickle-ice INFOs.
func advertiseTrickle(m interface{ AppendHeader(sip.Header) }) {
	m.AppendHeader(sip.NewHeader("Recv-Info", InfoPackageTrickleICE))
	// Supported: trickle-ice goes in our one Supported (supported).
}

// handleInfo answers an INFO in the dialog and reports it. An Info
// Package we never announced gets 469 (RFC 6086 section 4.2.2); an INFO
// without one (DTMF relay) is taken as before RFC 6086.
func (c *Call) handleInfo(req *sip.Request, tx sip.ServerTransaction) {
	ev := Event{Kind: EventInfo, Body: req.Body(), Headers: c.peerHeaders(req)}
	if h := req.GetHeader("Info-Package"); h != nil {
		ev.InfoPackage = strings.ToLower(strings.TrimSpace(h.Value()))
	}
	declared := ev.InfoPackage != "" && ev.InfoPackage != InfoPackageTrickleICE && c.g.acceptsInfo(ev.InfoPackage)
	if ev.InfoPackage != "" && ev.InfoPackage != InfoPackageTrickleICE && !declared {
		res := sip.NewResponseFromRequest(req, 469, "Bad Info Package", nil)
		res.AppendHeader(sip.NewHeader("Recv-Info", InfoPackageTrickleICE))
		if err := tx.Respond(res); err != nil {
			c.g.log.Debug("sipgw: respond failed", "code", 469, "err", err)
		}
		return
	}
	if ct := req.ContentType(); ct != nil {
		ev.ContentType = strings.ToLower(strings.TrimSpace(ct.Value()))
		if i := strings.IndexByte(ev.ContentType, ';'); i >= 0 {
			ev.ContentType = strings.TrimSpace(ev.ContentType[:i])
		}
	}
	if declared {
		// Answered by the web client (Event.InfoRequest), or by the
		// call's handler when it cannot be.
		ev.InfoRequest = c.g.incoming(req, tx, ev.InfoPackage)
		if !c.deliverEvent(ev, nil) {
			ev.InfoRequest.Respond(Answer{Code: 481, Reason: "Call/Transaction Does Not Exist"})
		}
		return
	}
	if ev.ContentType == "application/dtmf-relay" {
		ev.Digit, ev.Duration = parseDTMFRelay(req.Body())
	}
	// The 200 from the owner, just before it queues the event: answered
	// on this goroutine, an INFO whose BYE followed at once was lost when
	// the owner came to the call's end first (a DTMF right after an
	// adoption, docs/cluster.md "Known defects").
	if !c.deliverEvent(ev, func() { c.g.respond(tx, req, 200, "OK") }) {
		c.g.respond(tx, req, 481, "Call/Transaction Does Not Exist")
	}
}

func validToken(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9', c|0x20 >= 'a' && c|0x20 <= 'z':
		case strings.IndexByte("-.!%*_+`'~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
