package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/jsonrtc/jsonrtc/cluster"
	"github.com/jsonrtc/jsonrtc/endpoint"
	"github.com/jsonrtc/jsonrtc/protocol"
)

// Reports past a dead host (docs/cluster.md "Delivery reports"). A
// message's report is made by the messaging handler of the node that
// took the send, its host, from the receiver's answer, which the
// receiving session's node forwards there. When the host died first,
// the answer had nowhere to go, and the sender's session answered 408
// "the message's node went down" at once, for a message most often
// delivered (the chaos test with node kills: 458 of 200,000 sends, once
// the other failures were gone).
//
// So the receiving session keeps, with the route of each message
// delivered to it (and in its record), the sender's session and the
// send's correlation id there (endpoint.Origin's Corr). Its answer, when
// the host is known dead or nobody serves it, goes to the sender's
// session itself as a report notice (subject report): its owner makes
// the report from the send it awaits (reports.go), as the handler would
// have, and a notice for a send no longer awaited (answered, or given
// up) is dropped, so the client never gets two. The sender's session
// waits for it: a send whose host died is failed with 408 no sooner than
// holdFor and reportMargin after the death is seen, long enough for the
// receiver's node to find the sender's session wherever its client
// resumed. A host merely slow (a request that timed out) gets no notice
// sent past it: it may report still.

// kindReport is the subject's kind of a report notice.
const kindReport = "report"

// reportRoute names the sender's session of a message delivered, and
// the send's correlation id there.
type reportRoute struct{ to, corr string }

// reportReq is a receiver's answer, as a report notice to the sender's
// session.
type reportReq struct {
	Session string        `json:"session"`
	Corr    string        `json:"corr"`
	Type    protocol.Type `json:"type"`
	Code    int           `json:"code"`
	Reason  string        `json:"reason,omitempty"`
}

// The answers of onReport.
const (
	reportTaken   = "ok"
	reportNotHere = "not here"
)

// noteReportLocked keeps, for f, a message delivered to s relaying the
// client frame o, whom to report its answer to should its host die;
// s.mu is held.
func (s *Session) noteReportLocked(f *protocol.Frame, o endpoint.Origin) {
	if s.g.node == nil || o.Session == "" || o.Corr == "" || f.EffectivePackage() != protocol.PackageMessaging ||
		f.Control.Type != protocol.TypeRequest || f.Header.Action != protocol.ActionSend || f.Control.CorrelationID == "" {
		return
	}
	if _, routed := s.routes[routeKey{protocol.PackageMessaging, f.Control.CorrelationID}]; !routed {
		return
	}
	if s.reportTo == nil {
		s.reportTo = map[string]reportRoute{}
	}
	s.reportTo[f.Control.CorrelationID] = reportRoute{to: o.Session, corr: o.Corr}
}

// reportRouteOf returns whom to report f, an answer of s's client to a
// message, to, if its host dies.
func (s *Session) reportRouteOf(f *protocol.Frame) (reportRoute, bool) {
	if f.EffectivePackage() != protocol.PackageMessaging || f.Control.Type != protocol.TypeResponse && f.Control.Type != protocol.TypeError {
		return reportRoute{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rt, ok := s.reportTo[f.Control.CorrelationID]
	return rt, ok
}

// forwardAnswer forwards f, s's client's answer to a message, to its
// host, or, the host dead, reports it to the sender's session rt names;
// a host restarted since the message (alive again within a lease, its
// messaging handler empty) reports it so itself (dispatchInbound).
func (s *Session) forwardAnswer(host string, f *protocol.Frame, rt reportRoute) {
	g := s.g
	if !g.node.Down(host) {
		rep, err := s.forwardReqReply(host, inboundReq{Frame: f.Marshal(), ReportTo: rt.to, ReportCorr: rt.corr, Ticket: true})
		if err == nil {
			// Kept until the host has written it (keptanswers.go); a
			// host that does not number answers keeps none.
			if life, ticket, mark, ok := parseTicket(rep); ok {
				g.keepAnswer(host, life, ticket, mark, reportOf(f, rt))
			}
			return
		}
		if !errors.Is(err, cluster.ErrNoNode) {
			s.rlog.Warn("cluster forward", "answer to a message not forwarded to its node", "host", host, "err", err)
			if !errors.Is(err, errForwardRefused) {
				g.keepUnanswered(host, reportOf(f, rt))
			}
			return
		}
	}
	g.reportAnswer(f, rt)
}

// reportOf is the report notice of f, an answer to a message, to the
// sender's session rt names.
func reportOf(f *protocol.Frame, rt reportRoute) reportReq {
	req := reportReq{Session: rt.to, Corr: rt.corr, Type: f.Control.Type, Code: f.Header.ResponseCode, Reason: f.Header.Reason}
	if f.Control.Type == protocol.TypeError {
		req.Code = f.Header.ErrorCode
	} else if req.Code == 0 {
		req.Code = protocol.CodeOK
	}
	return req
}

// reportAnswer reports f, an answer to a message, to the sender's
// session rt names, in the background.
func (g *Gateway) reportAnswer(f *protocol.Frame, rt reportRoute) {
	g.sendReport(reportOf(f, rt))
}

// sendReport takes req to its sender's session in the background.
func (g *Gateway) sendReport(req reportReq) {
	if !g.goTracked(func() { g.reportDirect(req) }) {
		g.metrics.cluster.WithLabelValues(kindReport, "dropped").Inc()
	}
}

// reportDirect takes req to its sender's session wherever it is, trying
// (backing off up to a second) until it is taken there, the session is
// gone, or holdFor passes: the session may be waiting for its client to
// resume, its node dead too.
func (g *Gateway) reportDirect(req reportReq) {
	data, _ := json.Marshal(req)
	until := time.Now().Add(g.holdFor())
	for wait := 50 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		owner, err := g.findOwner(req.Session)
		if owner == "" && err == nil {
			g.metrics.cluster.WithLabelValues(kindReport, "gone").Inc()
			return
		}
		// Not "gone" while its record cannot be read (errRecordUnread):
		// asked again.
		rep := reportNotHere
		switch owner {
		case "":
		case g.self():
			rep = g.takeReport(req)
		default:
			ctx, cancel := context.WithTimeout(g.ctx, clusterTimeout)
			out, err := g.node.Request(ctx, owner, kindReport, data)
			cancel()
			rep = string(out)
			if err != nil {
				rep = reportNotHere
			}
		}
		if rep == reportTaken {
			g.metrics.cluster.WithLabelValues(kindReport, "delivered").Inc()
			return
		}
		if time.Now().After(until) || !g.pause(wait) {
			g.metrics.cluster.WithLabelValues(kindReport, "dropped").Inc()
			g.rlog.Warn("cluster report", "report of a message whose node died not delivered to its sender", "session_id", req.Session)
			return
		}
	}
}

// onReport hears a receiver's answer to a message of a session here
// whose host died.
func (g *Gateway) onReport(data []byte) []byte {
	var req reportReq
	if json.Unmarshal(data, &req) != nil || req.Session == "" {
		return []byte(reportTaken) // nothing to try again
	}
	return []byte(g.takeReport(req))
}

// takeReport gives req to its session, if it lives here.
func (g *Gateway) takeReport(req reportReq) string {
	s := g.lookup(req.Session)
	if s == nil {
		return reportNotHere
	}
	if !s.reportAwaited(req.Corr, req.Type, req.Code, req.Reason) {
		return reportNotHere
	}
	return reportTaken
}
