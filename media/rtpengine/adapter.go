package rtpengine

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Policy says when a call's media goes through rtpengine.
type Policy string

const (
	// PolicyAuto anchors a call when the SIP side cannot do WebRTC media:
	// an incoming SIP offer without ICE or a DTLS fingerprint; an
	// outgoing call always (the far side's SDP is unknown when the web
	// offer must be sent, and a plain phone refuses a UDP/TLS/RTP/SAVPF
	// offer with 488).
	PolicyAuto Policy = "auto"
	// PolicyAlways anchors every call with a SIP side.
	PolicyAlways Policy = "always"
	// PolicyNever never anchors: browsers and SIP exchange SDP unchanged.
	PolicyNever Policy = "never"
)

// Validate reports an unknown policy, naming the config key.
func (p Policy) Validate() error {
	switch p {
	case PolicyAuto, PolicyAlways, PolicyNever:
		return nil
	}
	return fmt.Errorf("media.policy: %q is not one of auto, always, never", string(p))
}

// Direction is where a call's offer comes from.
type Direction int

const (
	// WebToSIP: a browser calls a SIP user; the web offer becomes the
	// SIP offer, the SIP answer becomes the web answer.
	WebToSIP Direction = iota
	// SIPToWeb: a SIP user calls a browser.
	SIPToWeb
)

// Keys identify a call (and a fork of it) to rtpengine: the SIP dialog's
// Call-ID and From-tag; the To-tag of the answering fork; the Via branch
// of the INVITE that carried the offer.
type Keys struct {
	CallID, FromTag, ToTag, ViaBranch string
}

// The flags for each side, from rtpengine's ng documentation: toward a
// browser, ICE forced, DTLS-SRTP (UDP/TLS/RTP/SAVPF) and rtcp-mux required;
// toward a phone, plain RTP/AVP without ICE, RTCP demultiplexed onto its
// own port, SDES not offered (RTP/SAVP with rtpengine's default crypto
// suites instead for an SDES session, Session.flags). Offers use them
// whole; answers without transport-protocol and SDES (flags).
var (
	toWeb = Request{
		TransportProtocol: "UDP/TLS/RTP/SAVPF",
		ICE:               "force",
		RTCPMux:           []string{"offer", "require"},
		SDES:              []string{"off"},
		Flags:             []string{"trust-address", "generate-mid"},
		Replace:           []string{"origin", "session-connection"},
	}
	toSIP = Request{
		TransportProtocol: "RTP/AVP",
		ICE:               "remove",
		DTLS:              "off",
		RTCPMux:           []string{"demux"},
		SDES:              []string{"off"},
		Flags:             []string{"trust-address"},
		Replace:           []string{"origin", "session-connection"},
	}
)

// Adapter decides, per call, whether media goes through rtpengine and
// rewrites the SDP both ways through a Pool of instances.
type Adapter struct {
	pool   *Pool
	policy Policy
}

// NewAdapter returns an Adapter applying policy through one instance, ctl
// (a pool of one that is never pinged).
func NewAdapter(ctl Controller, policy Policy) (*Adapter, error) {
	return NewPoolAdapter(NewPool([]Instance{{Ctl: ctl}}, nil), policy)
}

// NewPoolAdapter returns an Adapter applying policy through the instances
// of p: each call on the one that took its first offer.
func NewPoolAdapter(p *Pool, policy Policy) (*Adapter, error) {
	if err := policy.Validate(); err != nil {
		return nil, err
	}
	return &Adapter{pool: p, policy: policy}, nil
}

// Session is one call's media as the Adapter set it up: the first offer's
// keys, and whether rtpengine anchors it. rtpengine tells the forks of the
// call apart by the to-tag of their answers (Answer, DeleteFork). Its
// methods may be called from several goroutines (a call's SIP reader and
// its worker); the caller orders the commands it needs ordered.
type Session struct {
	a        *Adapter
	dir      Direction
	anchored bool
	// sdes: the SIP side speaks SDES-SRTP (RTP/SAVP with a=crypto), and
	// offers toward it say so. Set once more by RetrySDES.
	sdes atomic.Bool
	// auto: anchored by the auto policy, which may retry toward SDES.
	auto bool
	// codecs change the offers toward SIP (media.codecs, a route's).
	codecs Codecs
	// m is the instance that holds the call (nil until its first offer
	// was answered): every later command goes there.
	m       *member
	deleted atomic.Bool // the call's share of m's calls is given back

	mu     sync.Mutex // guards keys, lost, onLost; never held across a command
	keys   Keys
	lost   bool       // its instance was lost (Pool.lose)
	onLost func()     // run once if it is
	last   []LegStats // the last periodic query's figures (Pool.queryFigures)
	// first is the first offer (or its SDES retry), which every fork's
	// Answer answers; pending the last re-offer (OfferFrom) still
	// unanswered; agreed the offer/answer in force, what Rollback sends
	// again.
	first   string
	pending exchange
	agreed  exchange
}

// exchange is one offer/answer as the session passed it to rtpengine:
// the SDP as its side sent it, before rtpengine rewrote it.
type exchange struct {
	dir           Direction
	offer, answer string
}

// Anchored reports whether the session's media goes through rtpengine.
func (s *Session) Anchored() bool { return s.anchored }

// anchor applies policy ("" for the Adapter's) to an offer coming from
// dir.
func (a *Adapter) anchor(policy Policy, dir Direction, offer string) bool {
	if policy == "" {
		policy = a.policy
	}
	switch policy {
	case PolicyAlways:
		return true
	case PolicyNever:
		return false
	}
	if dir == WebToSIP {
		return true
	}
	return !webRTC(offer)
}

// webRTC reports whether an SDP has what a browser needs: ICE credentials
// and a DTLS fingerprint (at session or media level).
func webRTC(sdp string) bool {
	return strings.Contains(sdp, "a=ice-ufrag:") && strings.Contains(sdp, "a=fingerprint:")
}

// Offer applies the policy to an offer from dir and returns the SDP to
// hand the other side: rewritten by rtpengine if the call is anchored,
// unchanged otherwise. keys.ToTag is empty for an initial offer. A SIP
// offer in SDES-SRTP (an RTP/SAVP m= line with a=crypto) makes the
// session's later offers toward SIP SDES-SRTP too (a phone that called
// with SRTP and is put on hold by the browser wants SRTP still).
func (a *Adapter) Offer(ctx context.Context, dir Direction, keys Keys, sdp string) (*Session, string, error) {
	return a.OfferRoute(ctx, dir, keys, sdp, Route{})
}

// OfferRoute is Offer under a call's media route (Config.RouteFor): its
// policy instead of the Adapter's when set, SDES-SRTP toward the SIP side
// when r.SDES (OfferSDES), and r.Codecs on every offer toward SIP.
func (a *Adapter) OfferRoute(ctx context.Context, dir Direction, keys Keys, sdp string, r Route) (*Session, string, error) {
	sdes := r.SDES && dir == WebToSIP || dir == SIPToWeb && sdesOffer(sdp)
	return a.offer(ctx, dir, keys, sdp, r.Policy, sdes, r.Codecs)
}

// OfferSDES is Offer for a browser's first offer toward a SIP target that
// requires SDES-SRTP (media.sdes): the SIP side gets RTP/SAVP with
// rtpengine's a=crypto suites instead of RTP/AVP, and so does every later
// offer toward it. The policy still decides whether the call is anchored.
func (a *Adapter) OfferSDES(ctx context.Context, keys Keys, sdp string) (*Session, string, error) {
	return a.OfferRoute(ctx, WebToSIP, keys, sdp, Route{SDES: true})
}

// sdesOffer reports whether an SDP offers SDES-SRTP: an RTP/SAVP (or
// RTP/SAVPF) m= line and a crypto attribute (RFC 4568).
func sdesOffer(sdp string) bool {
	return strings.Contains(sdp, "a=crypto:") &&
		(strings.Contains(sdp, " RTP/SAVP ") || strings.Contains(sdp, " RTP/SAVPF "))
}

func (a *Adapter) offer(ctx context.Context, dir Direction, keys Keys, sdp string, policy Policy, sdes bool, codecs Codecs) (*Session, string, error) {
	if policy == "" {
		policy = a.policy
	}
	s := &Session{a: a, dir: dir, keys: keys, anchored: a.anchor(policy, dir, sdp), auto: policy == PolicyAuto, codecs: codecs, first: sdp}
	s.sdes.Store(sdes)
	if !s.anchored {
		return s, sdp, nil
	}
	r := s.flags(dir, false)
	r.SDP = sdp
	m, res, err := a.pool.offer(ctx, &r)
	out, err := sdpOf(res, err)
	// The instance that was asked last holds the call even when the
	// offer failed: its answer may have been lost after it made the call,
	// and the caller deletes it there.
	s.m = m
	if m != nil {
		m.calls.Add(1)
		m.mu.Lock()
		m.sessions[s] = struct{}{}
		m.mu.Unlock()
		if l := a.pool.opt.Ledger; l != nil {
			l.Hold(keys, m.addr)
		}
	}
	return s, out, err
}

// OnLost arranges for f to run, once, if the session's instance is lost
// before the session is deleted (it failed PoolOptions.LostAfter pings in
// a row): the call's media is gone, and its owner should end it. f runs
// on the pool's goroutine and must not block for long; it runs at once,
// on the caller's, if the instance is lost already. Later commands of
// the session fail with ErrLost, and its Delete is owed to the instance
// for when it answers again.
func (s *Session) OnLost(f func()) {
	s.mu.Lock()
	if s.lost {
		s.mu.Unlock()
		f()
		return
	}
	s.onLost = f
	s.mu.Unlock()
}

// lose marks s lost and returns its OnLost function. m.mu is held.
func (s *Session) lose() func() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lost = true
	f := s.onLost
	s.onLost = nil
	return f
}

func (s *Session) isLost() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lost
}

// ctl returns the instance of the call, or an error for a session whose
// first offer found none.
func (s *Session) ctl() (Controller, error) {
	if s.m == nil {
		return nil, ErrNoInstance
	}
	if s.isLost() {
		return nil, ErrLost
	}
	return s.m.ctl, nil
}

// Reoffer passes a re-offer of an anchored session (hold, codec change,
// ICE restart) from the side that made the first offer.
func (s *Session) Reoffer(ctx context.Context, sdp string) (string, error) {
	return s.OfferFrom(ctx, s.dir, sdp)
}

// OfferFrom passes a re-offer travelling in dir, from either side: a
// phone's re-INVITE in a call a browser made travels SIPToWeb. Its answer
// goes through AnswerTo with the same dir. The first Answer must have
// been passed: a re-offer from the answerer's side carries the dialog's
// tags the other way round (its From-tag is the first answer's To-tag).
func (s *Session) OfferFrom(ctx context.Context, dir Direction, sdp string) (string, error) {
	if !s.anchored {
		return sdp, nil
	}
	ctl, err := s.ctl()
	if err != nil {
		return "", err
	}
	r := s.flags(dir, false)
	s.turn(&r, dir)
	r.SDP = sdp
	s.mu.Lock()
	s.pending = exchange{dir: dir, offer: sdp}
	s.mu.Unlock()
	return sdpOf(ctl.Offer(ctx, &r))
}

// AnswerTo passes the answer to a re-offer that travelled in dir
// (OfferFrom) and returns the SDP for the side that made it.
func (s *Session) AnswerTo(ctx context.Context, dir Direction, sdp string) (string, error) {
	if !s.anchored {
		return sdp, nil
	}
	ctl, err := s.ctl()
	if err != nil {
		return "", err
	}
	r := s.flags(1-dir, true)
	s.turn(&r, dir)
	r.SDP = sdp
	out, err := sdpOf(ctl.Answer(ctx, &r))
	if err == nil {
		s.mu.Lock()
		switch {
		case s.pending.dir == dir && s.pending.offer != "":
			s.agreed = exchange{dir: dir, offer: s.pending.offer, answer: sdp}
		case s.agreed.offer == "":
		case s.agreed.dir == dir:
			// A new answer to the offer in force, sent again by sipgw
			// (a re-INVITE without SDP from the phone).
			s.agreed.answer = sdp
		default:
			// The same, the side that answered offering its answer
			// again: the exchange in force turns round.
			s.agreed = exchange{dir: dir, offer: s.agreed.answer, answer: sdp}
		}
		s.pending = exchange{}
		s.mu.Unlock()
	}
	return out, err
}

// Rollback makes rtpengine's view of the call the offer/answer in force
// again after a re-offer that went to it (OfferFrom) failed on its way
// (491, 488, 405, a timeout: RFC 3264 §5 and §8, the session as it was):
// rtpengine's ng protocol has no rollback, so the agreed offer goes to it
// again, then the agreed answer; their rewritten SDP goes nowhere, as the
// peers keep the session they had. Nothing is sent before an answer was
// agreed.
func (s *Session) Rollback(ctx context.Context) error {
	s.mu.Lock()
	a := s.agreed
	s.pending = exchange{}
	s.mu.Unlock()
	if !s.anchored || a.offer == "" {
		return nil
	}
	if _, err := s.OfferFrom(ctx, a.dir, a.offer); err != nil {
		return err
	}
	_, err := s.AnswerTo(ctx, a.dir, a.answer)
	return err
}

// RetrySDES passes the browser's first offer sdp toward SIP once more,
// in SDES-SRTP (RTP/SAVP with rtpengine's a=crypto suites, as for a
// media.sdes target), on the same call of the same instance: for a phone
// that refused the RTP/AVP offer (488), whose INVITE is sent again with
// the SDP returned. Every later offer toward it is SDES-SRTP too. ok is
// false, and nothing is sent, unless the session is a browser's call
// anchored by the auto policy and not SDES-SRTP already.
func (s *Session) RetrySDES(ctx context.Context, sdp string) (out string, ok bool, err error) {
	if !s.anchored || !s.auto || s.dir != WebToSIP || !s.sdes.CompareAndSwap(false, true) {
		return "", false, nil
	}
	ctl, err := s.ctl()
	if err != nil {
		return "", true, err
	}
	r := s.flags(WebToSIP, false)
	r.SDP = sdp
	s.mu.Lock()
	s.first = sdp
	s.mu.Unlock()
	out, err = sdpOf(ctl.Offer(ctx, &r))
	return out, true, err
}

// turn swaps the tags of r for a re-offer travelling in dir against the
// first offer: rtpengine names the offerer by from-tag. The Via branch
// is the first INVITE's, which a re-INVITE does not share.
func (s *Session) turn(r *Request, dir Direction) {
	r.ViaBranch = ""
	if dir != s.dir {
		r.FromTag, r.ToTag = r.ToTag, r.FromTag
	}
}

// sdpOf returns the rewritten SDP of an offer or answer: a reply without
// one is an error, never an empty body handed on to a peer.
func sdpOf(res *Response, err error) (string, error) {
	if err != nil {
		return "", err
	}
	if res.SDP == "" {
		return "", fmt.Errorf("rtpengine: %q reply without SDP", res.Result)
	}
	return res.SDP, nil
}

// Answer passes the answer of the fork with toTag (from the side the offer
// went to) and returns the SDP for the offerer.
func (s *Session) Answer(ctx context.Context, toTag, sdp string) (string, error) {
	if !s.anchored {
		return sdp, nil
	}
	ctl, err := s.ctl()
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	s.keys.ToTag = toTag
	s.mu.Unlock()
	// The answer goes back toward the offerer: the flags of the opposite
	// direction.
	r := s.flags(1-s.dir, true)
	r.SDP = sdp
	out, err := sdpOf(ctl.Answer(ctx, &r))
	if err == nil {
		s.mu.Lock()
		s.agreed = exchange{dir: s.dir, offer: s.first, answer: sdp}
		s.mu.Unlock()
	}
	return out, err
}

// Delete ends the call's media in rtpengine, every fork of it, at once
// (nothing if not anchored), and returns what rtpengine received from
// each leg over the call's life (its delete answer), the browser's leg
// first. The call no longer counts on its instance, whatever the
// outcome: one that did not answer ends it at its own timeout. A lost
// session's delete is owed to its instance, sent when it answers a ping
// again, and Delete returns no figures and no error.
func (s *Session) Delete(ctx context.Context) ([]LegStats, error) {
	if !s.anchored {
		return nil, nil
	}
	if s.m == nil {
		return nil, ErrNoInstance
	}
	first := !s.deleted.Swap(true)
	k := s.keysRequest()
	if first {
		s.m.calls.Add(-1)
		if l := s.a.pool.opt.Ledger; l != nil {
			// A delete that fails from here on is owed (settle) or left
			// to the instance's --timeout: this process no longer
			// counts on a sweep for it.
			l.Release(k.CallID)
		}
	}
	del := Request{CallID: k.CallID, FromTag: k.FromTag, DeleteNow: true}
	s.m.mu.Lock()
	delete(s.m.sessions, s)
	s.m.mu.Unlock()
	if s.isLost() {
		if first {
			s.m.owe(del)
		}
		return nil, nil
	}
	res, err := s.m.ctl.Delete(ctx, &del)
	if err != nil {
		return nil, err
	}
	return s.legs(res.Raw), nil
}

// legs reads the figures of a query or delete answer, the browser's leg
// first.
func (s *Session) legs(raw map[string]any) []LegStats {
	k := s.keysRequest()
	// The browser's tag: ours as the caller's From-tag when it called,
	// the answer's To-tag when SIP called it.
	web := k.FromTag
	if s.dir == SIPToWeb {
		web = k.ToTag
	}
	legs := legStats(raw, web)
	slices.SortFunc(legs, func(a, b LegStats) int { return strings.Compare(string(b.Side), string(a.Side)) })
	return legs
}

// keepFigures keeps the figures of a query answer taken at.
func (s *Session) keepFigures(raw map[string]any, at time.Time) {
	legs := s.legs(raw)
	for i := range legs {
		legs[i].At = at
	}
	s.mu.Lock()
	s.last = legs
	s.mu.Unlock()
}

// LastFigures returns the figures the pool's last periodic query of the
// call got (PoolOptions.FiguresInterval), each with its At: what is
// known of a call whose instance was lost, which Delete cannot ask.
// None before the first query.
func (s *Session) LastFigures() []LegStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.last)
}

// DeleteFork ends the media of the fork answered with toTag only (a fork
// that lost to another's 200 OK, or was refused), leaving the others.
func (s *Session) DeleteFork(ctx context.Context, toTag string) error {
	return s.withInstance(func(ctl Controller, k Request) error {
		_, err := ctl.Delete(ctx, &Request{CallID: k.CallID, FromTag: k.FromTag, ToTag: toTag, DeleteNow: true})
		return err
	})
}

// withInstance runs send with the call's instance and keys, for a request
// whose answer the caller needs nothing of; a session not anchored sends
// nothing.
func (s *Session) withInstance(send func(ctl Controller, k Request) error) error {
	if !s.anchored {
		return nil
	}
	ctl, err := s.ctl()
	if err != nil {
		return err
	}
	return send(ctl, s.keysRequest())
}

func (s *Session) keysRequest() Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Request{CallID: s.keys.CallID, FromTag: s.keys.FromTag, ToTag: s.keys.ToTag, ViaBranch: s.keys.ViaBranch}
}

// flags returns the request for SDP going in direction dir (WebToSIP: to
// the phone). An answer goes back in the protocol its offerer chose, so
// it forces neither transport-protocol nor SDES: forcing RTP/AVP on the
// answer to an SDES phone's RTP/SAVP offer strips its crypto, and the
// phone refuses the call (TestRTPEngineSDESPhoneToWeb).
func (s *Session) flags(dir Direction, answer bool) Request {
	r := toWeb
	if dir == WebToSIP {
		r = toSIP
		if s.sdes.Load() {
			r.TransportProtocol, r.SDES = "RTP/SAVP", nil
		}
		if !answer {
			r.Codec = s.codecs
		}
	}
	if answer {
		r.TransportProtocol, r.SDES = "", nil
	}
	k := s.keysRequest()
	r.CallID, r.FromTag, r.ToTag, r.ViaBranch = k.CallID, k.FromTag, k.ToTag, k.ViaBranch
	return r
}

// Trickle passes frag, an RFC 8840 SDP fragment of candidates the browser
// gathered after its offer or answer (its ICE credentials, then per media
// its m= line, a=mid, its own credentials again and a=candidate lines,
// or a=end-of-candidates; rtpengine 10.5 takes candidates only of media
// with credentials at media level, TestRTPEngineTrickle), to
// the call's instance: an ng offer with the fragment flag, which rtpengine
// matches to the browser's side of the call by call-id, from-tag and ICE
// ufrag. The browser's side is the first offer's from-tag in a call it
// made, the answer's to-tag in one it took. Nothing is sent for a session
// not anchored.
func (s *Session) Trickle(ctx context.Context, frag string) error {
	return s.withInstance(func(ctl Controller, k Request) error {
		r := Request{CallID: k.CallID, FromTag: k.FromTag, ToTag: k.ToTag, SDP: frag, Flags: []string{"fragment"}}
		s.turn(&r, WebToSIP)
		_, err := ctl.Offer(ctx, &r)
		return err
	})
}
