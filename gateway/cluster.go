package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/jsonrtc/jsonrtc/cluster"
	"github.com/jsonrtc/jsonrtc/endpoint"
	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/transport/ws"
)

// A cluster of gateways (docs/cluster.md). Each session has one owner,
// the node whose socket serves it, named in its record and in the
// cluster's directory. An interaction (a call, a message awaiting its
// report) lives in the handlers of the node where it started, its host;
// a session owned elsewhere appears there as a *remote, whose Send asks
// the owner to send (subject deliver). The owner notes, per session, the
// host of each interaction its frames belong to (routes: a call's
// subsession, a delivered message's correlation), forwards the session's
// frames of those interactions to their host (subject inbound), and
// keeps the routes in the session's record: a session taken over by
// another node (a resume there) goes on forwarding from it, and the
// host's *Session of it, moved, forwards its sends to the new owner.

// Subjects' kinds (cluster.Node.Handle).
const (
	kindDeliver  = "deliver"
	kindInbound  = "inbound"
	kindEnded    = "ended"
	kindTakeover = "takeover"
)

// route says which node hosts the interaction that a session's frames of
// one package and key (a call's subsession, a message's correlation)
// belong to.
type route struct {
	Pkg  protocol.Package `json:"pkg"`
	Key  string           `json:"key"`
	Node string           `json:"node"`
	// To and Corr, for a message delivered, name its sender's session
	// and the send's correlation id there (reportdirect.go).
	To   string `json:"to,omitempty"`
	Corr string `json:"corr,omitempty"`
}

type routeKey struct {
	pkg protocol.Package
	key string
}

// maxRoutes bounds a session's routes: the oldest interactions a client
// never closed lose theirs (their frames are then handled where the
// session is).
const maxRoutes = 256

// clusterTimeout bounds a request to another node.
const clusterTimeout = 3 * time.Second

// deliverReq asks a session's owner to send a frame to it.
type deliverReq struct {
	Session       string `json:"session"`
	Frame         []byte `json:"frame"`
	SelfCorrelate bool   `json:"self_correlate,omitempty"`
	Host          string `json:"host"`
	// From, FromSeq, FromStream and FromPart name the client frame f
	// relays (relays.go, endpoint.Origin).
	From       string `json:"from,omitempty"`
	FromSeq    uint64 `json:"from_seq,omitempty"`
	FromStream string `json:"from_stream,omitempty"`
	FromPart   uint64 `json:"from_part,omitempty"`
	FromCorr   string `json:"from_corr,omitempty"`
	// Ticket asks the owner to number the frame it takes (keptcalls.go).
	Ticket bool `json:"ticket,omitempty"`
}

type deliverReply struct {
	Seq uint64 `json:"seq,omitempty"`
	// Err: "not_owned" (look the owner up again), "ended", or another
	// failure.
	Err string `json:"err,omitempty"`
	// Owner, with "not_owned": the owner the node's view names, the
	// node it let the session go to, whose compare-and-set on the record
	// may not have landed yet.
	Owner string `json:"owner,omitempty"`
	// Life names the owner's run, Ticket numbers the frame taken (when
	// asked), and Mark is the ticket up to which all are written
	// (keptcalls.go). An owner of an earlier version sends none.
	Life   string `json:"life,omitempty"`
	Ticket uint64 `json:"ticket,omitempty"`
	Mark   uint64 `json:"mark,omitempty"`
}

// inboundReq carries a session's frame to the host of its interaction.
type inboundReq struct {
	Session  string `json:"session"`
	Identity string `json:"identity"`
	Oracle   bool   `json:"oracle,omitempty"`
	Owner    string `json:"owner"`
	Frame    []byte `json:"frame"`
	// ReportTo and ReportCorr, with an answer to a message, name the
	// sender's session and the send there: a host that no longer has
	// the message (a later life of it) reports to it (reportdirect.go).
	ReportTo   string `json:"report_to,omitempty"`
	ReportCorr string `json:"report_corr,omitempty"`
	// Ticket asks the host to number the frame taken, and say up to
	// which number all are written (keptanswers.go).
	Ticket bool `json:"ticket,omitempty"`
}

// sessionReq names a session: an end, a takeover.
type sessionReq struct {
	Session string `json:"session"`
	Owner   string `json:"owner,omitempty"`
	// Resume is the header of the connect a takeover is asked for, which
	// the owner checks against its live state (onTakeover).
	Resume *protocol.Header `json:"resume,omitempty"`
}

// errStaleResume: the owner refused a takeover whose connect its live
// state has outgrown.
var errStaleResume = errors.New("gateway: the owner's live session has moved past this resume")

// refusedStale is onTakeover's answer to a stale resume.
const refusedStale = "stale"

// refusedUnwritten is onTakeover's answer when the session's last state
// could not be written: the owner keeps it, the client resumes again.
const refusedUnwritten = "unwritten"

// refusedResuming is onTakeover's answer while a resume of the session
// is under way on the owner: the client resumes again.
const refusedResuming = "resuming"

const errNotOwned = "not_owned"

// resumingHere is onDeliver's answer for a session not in its tables
// whose resume here is under way.
const resumingHere = "resuming"

// remote is a session owned by another node, as this node's handlers see
// it. It implements endpoint.Endpoint (and no Quota: the owner counts).
type remote struct {
	g        *Gateway
	id       string
	identity string
	oracle   bool

	mu    sync.Mutex
	owner string
}

func (r *remote) ID() string       { return r.id }
func (r *remote) Identity() string { return r.identity }
func (r *remote) Oracle() bool     { return r.oracle }

// Send implements endpoint.Endpoint: the owner stamps and sends f.
func (r *remote) Send(f *protocol.Frame, selfCorrelate bool) (uint64, error) {
	return r.send(f, selfCorrelate, endpoint.Origin{})
}

func (r *remote) send(f *protocol.Frame, selfCorrelate bool, o endpoint.Origin) (uint64, error) {
	r.mu.Lock()
	owner := r.owner
	r.mu.Unlock()
	seq, owner, err := r.g.sendVia(r.id, owner, f, selfCorrelate, o)
	r.mu.Lock()
	r.owner = owner
	r.mu.Unlock()
	return seq, err
}

// startCluster serves the node's subjects.
func (g *Gateway) startCluster() error {
	g.forwarded = newInboundQueues(inboundQueue, g.ctx.Done(), g.goTracked)
	if !g.goTracked(g.watchCutOff) || !g.goTracked(g.watchOrphans) || !g.goTracked(g.resendStaleEvery) {
		return errors.New("gateway: shut down")
	}
	for kind, fn := range map[string]func([]byte) []byte{
		kindDeliver: g.onDeliver, kindInbound: g.onInbound, kindEnded: g.onEnded, kindTakeover: g.onTakeover,
		kindConfirm: g.onConfirm, kindReport: g.onReport, kindStatus: g.onStatus,
	} {
		if err := g.node.Handle(kind, fn); err != nil {
			return fmt.Errorf("gateway: cluster subject %s: %w", kind, err)
		}
	}
	return g.startPresenceRepl()
}

func (g *Gateway) self() string { return g.node.Name() }

// sendVia has the owner of session id send f, looking the owner up again
// (directory, then the record) when it says it no longer owns it. It
// returns the sequence and the owner that took it. o names the client
// frame f relays (relays.go).
func (g *Gateway) sendVia(id, owner string, f *protocol.Frame, selfCorrelate bool, o endpoint.Origin) (uint64, string, error) {
	var last error
	// asked is the last node that answered "not owned" naming another,
	// named the node it named: the one it let the session go to, which
	// the record names only once that node's compare-and-set lands.
	var asked, named string
	// A frame for a session its owner is resuming (the record names it,
	// its tables not yet) waits for the resume, up to deliverResumeWait:
	// given up on after the six tries below, an adopted SIP call's INFO
	// hosted by the node the session had just left never reached the
	// client (BenchmarkSIPFailover, a drain).
	waitUntil := time.Now().Add(deliverResumeWait)
	// behind puts f behind the frames waiting for the session's node
	// (deadsession.go), if there are any. A request, which may not wait
	// among them (its sender needs its sequence now), waits here for
	// them to go, up to the same bound, and is refused past it: refused
	// at once, a re-offer right after its peer's resume on another node
	// got 480 while the frames its call's adopter relayed to the peer
	// before the resume waited (test/cluster TestNodeKilled, once in
	// ten runs).
	behind := func() (queued bool, seq uint64, err error) {
		if !g.hasWaiting(id) {
			return false, 0, nil
		}
		if !mayWait(f, selfCorrelate, o) {
			if g.waitDrained(id, waitUntil) {
				return false, 0, nil
			}
			g.metrics.cluster.WithLabelValues(kindWaiting, "request_refused").Inc()
			g.rlog.Warn("cluster deliver", "request for a session not delivered: frames before it still wait for the session's node", "session_id", id)
			return true, 0, errWaitingBefore
		}
		return g.waitBehind(id, f, selfCorrelate, o)
	}
	if queued, seq, err := behind(); queued {
		return seq, owner, err
	}
	if owner != "" && g.keptElsewhere(id, owner) {
		// The caller's owner is stale where deliveries kept for the
		// session name another: a call's endpoint keeps the owner its
		// last send found, while a kept frame sent again (deadsession.go)
		// finds the session's new one. Taken as the owner, it had the
		// new owner's deliveries sent again ahead of f; a call's request
		// among them waits for its call's lock, held by f's sender, so a
		// re-offer right after its peer's resume on a third node waited
		// deliverResumeWait and was refused 480 (gateway
		// TestCallRequestOfADeadNodeDeliveredAgain, once in twenty runs).
		if found, err := g.findOwner(id); err == nil && found != "" {
			owner = g.ownerHere(id, found)
		}
	}
	// first sends the deliveries to the session that an owner before
	// owner took and its client did not answer (keptmsgs.go) ahead of f.
	first := func(owner string) (queued bool, seq uint64, err error) {
		if !g.sendFirst(id, owner) {
			return false, 0, nil
		}
		return behind()
	}
	// A request, which waits nowhere but here (mayWait), is tried again
	// up to the same bound while its session's node is dead and its
	// client has not resumed, or its record cannot be read: the store
	// elects leaders for seconds after a node's death, and a re-offer
	// given up on after the six tries was refused 480 (test/cluster
	// TestNodeKilled, once in CI).
	patient := func() bool {
		return errors.Is(last, errOwnerResuming) ||
			!mayWait(f, selfCorrelate, o) && (errors.Is(last, errNobodyThere) || errors.Is(last, errRecordUnread))
	}
	for try := 0; try < 6 || patient() && time.Now().Before(waitUntil); try++ {
		if try > 0 {
			// A takeover under way: the new owner's compare-and-set
			// lands within a store round trip.
			select {
			case <-time.After(min(time.Duration(try*try)*10*time.Millisecond, 250*time.Millisecond)):
			case <-g.ctx.Done():
				return 0, owner, errClosed
			}
			var err error
			owner, err = g.findOwner(id)
			owner = g.ownerHere(id, owner)
			if named != "" && (owner == asked || owner == "") {
				owner = named
			}
			if owner == "" {
				if err == nil || mayWait(f, selfCorrelate, o) {
					// Ended; or unread, and it waits for its session
					// in the queue (mayWaitAfter) rather than here.
					if err != nil {
						last = err
					}
					break
				}
				last = err
				continue
			}
		}
		if queued, seq, err := first(owner); queued {
			return seq, owner, err
		}
		if owner == g.self() {
			busy := g.resuming.busy(id)
			s := g.lookup(id)
			if s == nil {
				switch {
				case busy:
					last = errOwnerResuming
				case g.letGoLately(id):
					last = errMoved // let go in vain (letgo.go)
				default:
					last = errEnded
				}
				continue
			}
			seq, err := s.sendOrigin(f, selfCorrelate, g.self(), o)
			return seq, owner, err
		}
		seq, tk, err := g.deliverTo(owner, id, f, selfCorrelate, o)
		if err == nil {
			g.metrics.cluster.WithLabelValues(kindDeliver, "ok").Inc()
			g.keepDelivered(id, owner, f, selfCorrelate, o, seq, tk)
			return seq, owner, nil
		}
		last = err
		if me := (*movedError)(nil); errors.As(err, &me) {
			asked, named = owner, me.owner
		}
		if !errors.Is(err, errMoved) && !errors.Is(err, errOwnerResuming) {
			break
		}
		if errors.Is(err, errNobodyThere) && !mayTake(f, o) && mayWait(f, selfCorrelate, o) && g.node.Down(owner) {
			// Its owner is dead: it waits for the client's resume, in
			// the queue, rather than here in its sender's dispatch.
			break
		}
		if errors.Is(err, errNobodyThere) && mayTake(f, o) && g.adoptSession(id, owner) {
			// Its owner is dead and its client has not resumed yet:
			// the session waits here now (deadsession.go).
			if queued, seq, err := first(g.self()); queued {
				return seq, g.self(), err
			}
			s := g.lookup(id)
			if s == nil {
				// Let go again at once: its client resumed on another
				// node meanwhile (deliverOnce).
				last = errMoved
				continue
			}
			seq, err := s.sendOrigin(f, selfCorrelate, g.self(), o)
			return seq, g.self(), err
		}
	}
	if mayWaitAfter(last, f, selfCorrelate, o) {
		// Delivered once its node answers, or is known dead; a client's
		// message once the session's client has resumed somewhere.
		if seq, err := g.waitFor(id, f, selfCorrelate, o); err == nil {
			return seq, owner, nil
		}
	}
	g.metrics.cluster.WithLabelValues(kindDeliver, "failed").Inc()
	g.rlog.Warn("cluster deliver", "frame for a session on another node not delivered", "session_id", id, "owner", owner, "err", last)
	return 0, owner, fmt.Errorf("gateway: deliver to %s: %w", owner, last)
}

var errMoved = errors.New("gateway: session not owned there")

// movedError is errMoved with the owner the node asked names.
type movedError struct{ owner string }

func (e *movedError) Error() string   { return errMoved.Error() + "; moved to " + e.owner }
func (e *movedError) Is(t error) bool { return t == errMoved }

// errNobodyThere: no node serves the owner's subject (dead, or gone);
// an errMoved.
var errNobodyThere = fmt.Errorf("%w: nobody serves its node", errMoved)

// errOwnerResuming: the node asked has a resume of the session under way
// and not yet the session in its tables (onDeliver's resumingHere).
var errOwnerResuming = errors.New("gateway: session being resumed there")

// deliverResumeWait bounds sendVia's wait for a resume under way at the
// session's owner; within clusterTimeout, as the wait of a frame sent to
// a session here that no node has yet (the sender holds its call's lock).
const deliverResumeWait = clusterTimeout

// deliverTo delivers f to session id at its owner. It returns the
// sequence f got and, when f is one kept until written (keptcalls.go),
// the ticket the owner numbered it with.
func (g *Gateway) deliverTo(owner, id string, f *protocol.Frame, selfCorrelate bool, o endpoint.Origin) (uint64, ticketOf, error) {
	req, _ := json.Marshal(deliverReq{Session: id, Frame: f.Marshal(), SelfCorrelate: selfCorrelate, Host: g.self(),
		From: o.Session, FromSeq: o.Sequence, FromStream: o.Stream, FromPart: o.Part, FromCorr: o.Corr,
		Ticket: keptUntilWritten(f, selfCorrelate, o)})
	ctx, cancel := context.WithTimeout(g.ctx, clusterTimeout)
	defer cancel()
	data, err := g.node.Request(ctx, owner, kindDeliver, req)
	if errors.Is(err, cluster.ErrNoNode) {
		return 0, ticketOf{}, errNobodyThere // dead or gone: the session may be elsewhere now
	}
	if err != nil {
		return 0, ticketOf{}, err
	}
	var rep deliverReply
	if err := json.Unmarshal(data, &rep); err != nil {
		return 0, ticketOf{}, err
	}
	if rep.Life != "" {
		g.noteMark(owner, rep.Life, rep.Mark)
	}
	switch rep.Err {
	case "":
	case errNotOwned:
		if rep.Owner != "" {
			return 0, ticketOf{}, &movedError{owner: rep.Owner}
		}
		return 0, ticketOf{}, errMoved
	case resumingHere:
		return 0, ticketOf{}, errOwnerResuming
	case errRelayForgotten.Error():
		return 0, ticketOf{}, errRelayForgotten
	case errRelayOvertaken.Error():
		return 0, ticketOf{}, errRelayOvertaken
	default:
		return 0, ticketOf{}, errors.New(rep.Err)
	}
	if selfCorrelate {
		f.Control.CorrelationID = "s" + strconv.FormatUint(rep.Seq, 10)
	}
	f.Control.Sequence = rep.Seq
	return rep.Seq, ticketOf{life: rep.Life, n: rep.Ticket}, nil
}

// resumeWait bounds how long a resume waits for the store to answer:
// a replicated bucket electing a leader (after a drain, a kill, the
// cluster's start) answers nothing for seconds, more under load. It is
// within the clients' connect timeout (10 s in both SDKs), so that the
// client hears 1013 (resume again) rather than give up on the attempt.
const resumeWait = 8 * time.Second

// errResumeAgain: the store did not answer within resumeWait. The resume
// is not refused (that would start the client anew, its session lost
// while its record is there): the socket closes with 1013, and the
// client resumes again, here or elsewhere.
var errResumeAgain = errors.New("gateway: the session store does not answer; resume again")

// errStaleConnect: a resume of a session whose socket on this node
// answers a ping (serve.go connect).
var errStaleConnect = errors.New("gateway: the session's socket answers; a stale connect")

// restoreWaiting is restore for a resume: a read that fails (the
// bucket's leader died and another is being elected) is made again,
// backing off, until deadline, rather than refusing a resume the record
// could honour.
func (g *Gateway) restoreWaiting(id string, deadline time.Time) (*record, uint64, error) {
	// Each read gets a part of the wait: one sent to a leader that went
	// away is not answered at all, and the next goes to its successor.
	attempt := func() time.Time { return earlier(deadline, time.Now().Add(readAttempt)) }
	r, rev, err := g.restoreBy(id, attempt())
	for wait := 50 * time.Millisecond; err != nil && time.Until(deadline) > wait; wait = min(2*wait, time.Second) {
		if !g.pause(wait) {
			return nil, 0, err
		}
		r, rev, err = g.restoreBy(id, attempt())
	}
	return r, rev, err
}

// idLocks is a lock per id, held by few at a time: an id's lock lives
// while somebody holds or waits for it.
type idLocks struct {
	mu sync.Mutex
	m  map[string]*idLock
}

type idLock struct {
	sync.Mutex
	users int
}

// busy reports whether somebody holds or waits for id's lock.
func (l *idLocks) busy(id string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.m[id] != nil
}

// lock takes id's lock and returns its unlock.
func (l *idLocks) lock(id string) func() {
	l.mu.Lock()
	if l.m == nil {
		l.m = map[string]*idLock{}
	}
	k := l.m[id]
	if k == nil {
		k = &idLock{}
		l.m[id] = k
	}
	k.users++
	l.mu.Unlock()
	k.Lock()
	return l.unlocker(id, k)
}

// unlocker is the unlock of id's lock k, held.
func (l *idLocks) unlocker(id string, k *idLock) func() {
	return func() {
		k.Unlock()
		l.mu.Lock()
		if k.users--; k.users == 0 {
			delete(l.m, id)
		}
		l.mu.Unlock()
	}
}

// tryLock takes id's lock if nobody holds or waits for it, and returns
// its unlock; nil otherwise.
func (l *idLocks) tryLock(id string) func() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m[id] != nil {
		return nil
	}
	if l.m == nil {
		l.m = map[string]*idLock{}
	}
	k := &idLock{users: 1}
	k.Lock() // new: taken at once
	l.m[id] = k
	return l.unlocker(id, k)
}

// readAttempt bounds one read of restoreWaiting.
const readAttempt = 2 * time.Second

// pause waits d, or less if the gateway closes (false).
func (g *Gateway) pause(d time.Duration) bool { return sleepCtx(g.ctx, d) }

// ownerHere corrects owner, the owner of session id as its record
// names it, when that is this node and the session is neither in its
// tables nor being resumed here: this node let it go to a resume
// elsewhere a moment ago, and the new owner's compare-and-set has not
// landed yet. The view names that owner (moveAway), which answers
// "resuming" until then. Before, a frame for the session was refused,
// or dropped as for a session ended (the chaos test with node kills:
// three of its four 480s in a run, messages that had waited for their
// receiver's dead node).
func (g *Gateway) ownerHere(id, owner string) string {
	if owner != g.self() || g.lookup(id) != nil || g.resuming.busy(id) {
		return owner
	}
	if e, ok := g.node.Owner(id); ok && e.Node != g.self() {
		return e.Node
	}
	return owner
}

// ownerOf returns the node that owns session id: the record's owner
// (the directory may lag a takeover).
func (g *Gateway) ownerOf(id string) string {
	owner, _ := g.findOwner(id)
	return owner
}

// findOwner is ownerOf, with errRecordUnread when it names nobody
// because the record could not be read: not a session that ended, but
// a store electing a leader (after a node's death), to be asked again.
// Taken for an end, a frame waiting for its session was dropped and a
// report lost, and a call's re-offer refused 480 (test/cluster
// TestNodeKilled, once in CI: its new host could not read the peer's
// record, and the directory did not name the node the peer had resumed
// on yet).
func (g *Gateway) findOwner(id string) (string, error) {
	r, _, err := g.restore(id)
	if err == nil && r != nil && r.Owner != "" {
		return r.Owner, nil
	}
	if e, ok := g.node.Owner(id); ok {
		return e.Node, nil
	}
	if err != nil {
		return "", fmt.Errorf("%w: %v", errRecordUnread, err)
	}
	return "", nil
}

// errRecordUnread: a session's record could not be read, and nothing
// else named its owner.
var errRecordUnread = errors.New("gateway: session record not read")

// onDeliver sends a frame that another node's handler sends to a session
// owned here.
func (g *Gateway) onDeliver(data []byte) []byte {
	if h := g.beforeDeliver.Load(); h != nil {
		(*h)()
	}
	var req deliverReq
	rep := deliverReply{}
	f, err := decodeReq(data, &req)
	if err == nil {
		// Looked at before the tables, as onTakeover does.
		resuming := g.resuming.busy(req.Session)
		s := g.lookup(req.Session)
		switch {
		case s == nil && resuming:
			// Answered at once (requests of a kind are served in
			// order): the sender asks again (sendVia).
			rep.Err = resumingHere
		case s == nil:
			rep.Err = errNotOwned
		default:
			var ticket uint64
			if req.Ticket {
				ticket = g.tickets.issue()
			}
			rep.Seq, err = s.sendOrigin(f, req.SelfCorrelate, req.Host, endpoint.Origin{Session: req.From, Sequence: req.FromSeq, Stream: req.FromStream, Part: req.FromPart, Corr: req.FromCorr})
			if errors.Is(err, errMovedAway) {
				rep.Err = errNotOwned
			}
			switch {
			case ticket == 0:
			case err == nil:
				// Written with the writer's next round, as an answer
				// taken for a message's host (keptanswers.go).
				g.ticketDispatched(ticket)
				rep.Ticket = ticket
			default:
				g.tickets.written([]uint64{ticket}, g.holdFor())
			}
		}
		if rep.Err == errNotOwned {
			if e, ok := g.node.Owner(req.Session); ok && e.Node != g.self() {
				rep.Owner = e.Node
			}
		}
	}
	if err != nil && rep.Err == "" {
		rep.Err = err.Error()
	}
	rep.Life, rep.Mark = g.life, g.tickets.current()
	out, _ := json.Marshal(rep)
	return out
}

// decodeReq reads a request that carries a frame.
func decodeReq(data []byte, req any) (*protocol.Frame, error) {
	if err := json.Unmarshal(data, req); err != nil {
		return nil, err
	}
	var raw []byte
	switch r := req.(type) {
	case *deliverReq:
		raw = r.Frame
	case *inboundReq:
		raw = r.Frame
	}
	return protocol.Decode(raw)
}

// inboundQueue bounds the forwarded frames taken and not yet
// dispatched; a full queue refuses the next (its sender answers 480).
const inboundQueue = 1024

// inboundTaken is onInbound's answer to a frame it took.
const inboundTaken = "ok"

// onInbound takes a frame a session owned elsewhere sent for an
// interaction hosted here, and answers at once: its dispatch may wait
// for the store (walMu, behind a writer's cut held up by a leader
// election), longer than the sender's clusterTimeout, and a sender that
// timed out would answer its client 480 for a frame the host went on to
// relay. The answer means taken, as a frame a local handler took: a
// session's frames are dispatched in the order they came (NATS runs a
// subscription's handler for one message at a time), and its end after
// them (inboundQueues).
func (g *Gateway) onInbound(data []byte) []byte {
	var req inboundReq
	f, err := decodeReq(data, &req)
	if err != nil {
		return []byte(err.Error())
	}
	if g.ctx.Err() != nil {
		return []byte("shutting down")
	}
	if !req.Ticket {
		if !g.forwarded.take(req.Session, func() { g.dispatchInbound(req, f) }) {
			return []byte("too many frames waiting")
		}
		return []byte(inboundTaken)
	}
	ticket := g.tickets.issue()
	if !g.forwarded.take(req.Session, func() {
		g.dispatchInbound(req, f)
		g.ticketDispatched(ticket)
	}) {
		g.tickets.written([]uint64{ticket}, g.holdFor())
		return []byte("too many frames waiting")
	}
	return g.ticketReply(ticket)
}

// dispatchInbound dispatches, on the host of its interaction, a frame a
// session owned elsewhere sent.
func (g *Gateway) dispatchInbound(req inboundReq, f *protocol.Frame) {
	if h := g.beforeInbound.Load(); h != nil && !(*h)(f) {
		return
	}
	if req.ReportTo != "" && !g.msgs.Holds(req.Session, f.Control.CorrelationID) {
		// An answer to a message an earlier life of this node took.
		g.reportAnswer(f, reportRoute{to: req.ReportTo, corr: req.ReportCorr})
		return
	}
	ep := g.endpointOf(req.Session, req.Identity, req.Oracle, req.Owner)
	handle := func() {
		g.handleInbound(ep, f)
		if f.EffectivePackage() == protocol.PackageCall {
			// Its sender keeps it until then (takenfwd.go).
			g.confirmLater(req.Owner, req.Session, f.Control.Sequence)
		}
	}
	if g.behindAdoption(ep, f, handle) {
		return
	}
	handle()
}

// handleInbound is dispatchInbound of a frame of the session ep.
func (g *Gateway) handleInbound(ep endpoint.Endpoint, f *protocol.Frame) {
	if g.wal {
		g.walMu.RLock()
		defer g.walMu.RUnlock()
	}
	switch f.EffectivePackage() {
	case protocol.PackageCall:
		if !g.declaredInbound(ep, f) {
			g.calls.HandleFrame(ep, f)
		}
	case protocol.PackageMessaging:
		g.msgs.HandleFrame(ep, f)
	}
}

// endpointOf returns the endpoint of a session owned by owner, as this
// node's handlers know it: this node's *Session of it when it lived here
// (moved away since), else a *remote. The handlers know sessions by id:
// a *remote is made per use, and costs nothing once dropped.
func (g *Gateway) endpointOf(id, identity string, oracle bool, owner string) endpoint.Endpoint {
	if s := g.sessionOrMoved(id); s != nil {
		return s
	}
	return &remote{g: g, id: id, identity: identity, oracle: oracle, owner: owner}
}

// sessionOrMoved returns this node's *Session of id: moved away, else
// live here; nil when it has none.
func (g *Gateway) sessionOrMoved(id string) *Session {
	g.mu.Lock()
	defer g.mu.Unlock()
	if s := g.moved[id]; s != nil {
		return s
	}
	return g.sessions[id]
}

// onEnded hears that a session owned elsewhere ended: the interactions
// hosted here end toward their other parties, after the frames the
// session forwarded before (inboundQueues). An end is never refused.
func (g *Gateway) onEnded(data []byte) []byte {
	var req sessionReq
	if json.Unmarshal(data, &req) != nil {
		return nil
	}
	if g.ctx.Err() == nil {
		g.forwarded.ended(req.Session, func() { g.sessionEndedElsewhere(req) })
	}
	return nil
}

// sessionEndedElsewhere ends the interactions hosted here of req's
// session, owned elsewhere, toward their other parties.
func (g *Gateway) sessionEndedElsewhere(req sessionReq) {
	g.mu.Lock()
	var ep endpoint.Endpoint
	moved := g.moved[req.Session]
	delete(g.moved, req.Session)
	g.mu.Unlock()
	if moved != nil {
		ep = moved
	} else {
		ep = &remote{g: g, id: req.Session, owner: req.Owner}
	}
	g.calls.SessionEnded(ep)
	g.endedBehindAdoption(ep, false)
	g.msgs.SessionEnded(ep)
	if moved != nil {
		moved.quota.Close()
	}
}

// onTakeover hears that another node is taking a session owned here over
// (a resume there): this copy writes its last state, closes its socket
// with 4000 and sends nothing more; what the handlers here send to it
// goes to the new owner. The reply tells the new owner to read the
// record.
func (g *Gateway) onTakeover(data []byte) []byte {
	var req sessionReq
	if json.Unmarshal(data, &req) != nil {
		return nil
	}
	// Looked at before the tables: a resume that ends meanwhile has its
	// session in them.
	resuming := g.resuming.busy(req.Session)
	s := g.lookup(req.Session)
	if s == nil && resuming {
		// A resume here may have taken the record over (the record names
		// this node) and not yet put the session in the tables: "ok"
		// would let the asker take the record from under it, and the
		// session here would end as superseded at its next write (two
		// resumes at once, one a connect the client gave up on, read
		// late; issue 13, TestRollingRestart).
		g.metrics.cluster.WithLabelValues(kindTakeover, "resuming").Inc()
		return []byte(refusedResuming)
	}
	if s == nil {
		// Said, for the log of a copy that ends as superseded on the
		// asker's word: the asker takes the record with no release.
		g.rlog.Info("takeover not here", "takeover of a session not here: nothing to let go", "session_id", req.Session, "node", req.Owner)
		return []byte("ok")
	}
	// The connect is checked against the live state, as a resume of
	// a session live on one node is (§4.4): a connect sent before
	// the client's last socket here but read late by the other node
	// (its socket cut by the client meanwhile, the node slow in a
	// JetStream election) would otherwise close the socket the
	// client now uses, with 4000, which ends the session.
	if req.Resume != nil {
		s.mu.Lock()
		err := s.st.CheckResume(req.Resume)
		if err == nil && outgrown(s.st, req.Resume, s.oracle) {
			// The client acknowledged, since, what this connect says
			// it had not received (its connect response here).
			err = errStaleResume
		}
		s.mu.Unlock()
		if err != nil {
			g.rlog.Info("takeover refused", "takeover refused: a stale resume", "session_id", s.id, "node", req.Owner, "err", err)
			return []byte(refusedStale)
		}
	}
	probed, err := s.probe()
	if err == nil {
		// The client holds its socket here and answers on it: it
		// drops a socket before it dials another, so the connect is
		// one it gave up on (cut by it while the other node was
		// slow to read it).
		g.rlog.Info("takeover refused", "takeover refused: the session's socket here answers", "session_id", s.id, "node", req.Owner)
		return []byte(refusedStale)
	}
	if probed != nil {
		g.rlog.Info("takeover socket", "takeover: the session's socket here did not answer a ping", "session_id", s.id, "node", req.Owner, "err", err)
	}
	switch s.moveAway(req.Owner, true, true, probed, inDoubt(probed, err)) {
	case moveUnwritten:
		return []byte(refusedUnwritten)
	case moveReattached:
		// A resume here attached a socket after the probe (the
		// client's: of its two connects, the other node's is the one
		// it gave up on). Moved, that socket closed with 4000, which
		// ends the session at the client (the cluster chaos test).
		g.metrics.cluster.WithLabelValues(kindTakeover, "resuming").Inc()
		return []byte(refusedResuming)
	}
	// The revision of the last write: a record written after it by
	// this node is the session taken back here (resumeStored).
	s.saveMu.Lock()
	rev := s.rev
	s.saveMu.Unlock()
	return []byte("ok " + strconv.FormatUint(rev, 10))
}

// livenessTimeout bounds probe's ping: within the asker's clusterTimeout
// and a resume's budget. 1 s timed out on live sockets on a loaded
// machine (the cluster chaos test at 40 sessions under the race
// detector: the probe's "context deadline exceeded", then 4000 at the
// client), and so did 3 s at load 18: a socket silent this long is in
// doubt (inDoubt), and costs its client a resume again (1013).
const livenessTimeout = 3 * time.Second

// errNoSocket: probe found no socket to ping.
var errNoSocket = errors.New("gateway: no socket to ping")

// probe pings s's socket: nil when it answers. It returns the link it
// probed (nil: none attached).
func (s *Session) probe() (*link, error) {
	s.mu.Lock()
	l := s.conn
	s.mu.Unlock()
	if l == nil {
		return nil, errNoSocket
	}
	p, ok := l.c.(interface{ Ping(context.Context) error })
	if !ok {
		return l, errNoSocket
	}
	ctx, cancel := context.WithTimeout(s.g.ctx, livenessTimeout)
	defer cancel()
	return l, p.Ping(ctx)
}

// inDoubt reports whether a probe of socket l that failed with err
// leaves the socket's client in doubt: the ping went unanswered within
// livenessTimeout on a socket still open (an error of the socket itself
// says it is gone).
func inDoubt(l *link, err error) bool {
	return l != nil && errors.Is(err, context.DeadlineExceeded)
}

// reasonSilent closes a socket in doubt (inDoubt).
const reasonSilent = "the socket did not answer a ping in time; resume again"

// closeInDoubt closes l with 1013 (a socket whose probe left it in
// doubt): a client still on it resumes again (docs/protocol.md §1.5) and
// finds its session where it went, where 4000 would end the session at
// the client (the cluster chaos test at load 18: "failed to wait for
// pong", then 4000 on the socket the client used).
func (g *Gateway) closeInDoubt(l *link, reason string) {
	if !g.goTracked(func() { l.c.Close(websocket.StatusTryAgainLater, reason) }) {
		l.c.CloseNow()
	}
}

var errMovedAway = errors.New("gateway: session moved to another node")

// moveTo makes s a session owned by another node: its socket closes with
// 4000, and it leaves the session tables for the moved ones, where the
// handlers' interactions hosted here find it; its sends go to the new
// owner from now on. With final (a release asked by the new owner before
// it takes the record over) the last state is written first, with every
// frame sent so far: the new owner resumes from it. Without (the record
// was taken already) nothing more is written. It reports false when s
// stays here: the final write failed.
//
// Without final, the record was taken without asking this node (its
// lease taken for expired: a partition, or a machine stalled under
// load), and the socket here may be the client's own: it closes with
// 1013, for the client to resume again where its session went (the
// frames taken here since the record's last write were never
// acknowledged, and it sends them again); 4000 ended its session.
func (s *Session) moveTo(owner string, final bool) bool {
	return s.moveAway(owner, final, false, nil, !final) == moved
}

// moveAway's outcomes.
type moveOutcome int

const (
	moved          moveOutcome = iota
	moveUnwritten              // the final write failed: s stays
	moveReattached             // a socket other than probed is attached: s stays
)

// moveAway is moveTo; with check, s stays (moveReattached) when its
// socket is no longer probed, the one the caller found not answering.
// With doubt (probed open and silent: inDoubt; or, probed nil, any
// socket), the socket closes with 1013 rather than 4000.
func (s *Session) moveAway(owner string, final, check bool, probed *link, doubt bool) moveOutcome {
	g := s.g
	s.inMu.Lock()
	s.saveMu.Lock()
	s.mu.Lock()
	if s.ended || s.movedTo != "" {
		s.mu.Unlock()
		s.saveMu.Unlock()
		s.inMu.Unlock()
		return moved
	}
	if check && s.conn != nil && s.conn != probed {
		s.mu.Unlock()
		s.saveMu.Unlock()
		s.inMu.Unlock()
		return moveReattached
	}
	// Sends from here on go to the new owner, which answers "not owned"
	// until its compare-and-set lands (sendVia tries again).
	s.movedTo = owner
	var sn snapshot
	if final {
		sn = s.snapshotLocked()
	}
	s.mu.Unlock()
	if final {
		g.writeLocked(sn) // its frames are not released: the socket goes
		if s.savedGen < sn.gen {
			// The store failed the write (not merely slow: past its
			// timeout). Let go now and the new owner resumes from the
			// record before, without the frames taken last: the session
			// stays, its frames back in its queue and written again,
			// and the new owner's client resumes again (onTakeover).
			s.mu.Lock()
			s.movedTo = ""
			s.mu.Unlock()
			s.saveMu.Unlock()
			s.inMu.Unlock()
			g.metrics.cluster.WithLabelValues(kindTakeover, "unwritten").Inc()
			g.rlog.Warn("takeover unwritten", "the session's last state could not be written; it stays here, and its client resumes again", "session_id", s.id, "node", owner)
			return moveUnwritten
		}
	}
	s.mu.Lock()
	conn := s.conn
	s.conn = nil
	if s.resume != nil {
		s.resume.Stop()
	}
	s.stopAckTimerLocked()
	s.lost = true
	s.pending = nil
	hosted := len(s.routes) > 0
	s.mu.Unlock()
	s.saveMu.Unlock()
	s.inMu.Unlock()
	// The view names the new owner before the tables drop s: a lookup
	// here finds the session one way or the other while the new owner
	// takes the record over and names itself in the directory (a
	// message to it meanwhile got 480 at once: TestResumeOnAnotherNode).
	g.node.Moved(cluster.Entry{Session: s.id, Identity: s.identity, Node: owner, Oracle: s.oracle})
	g.remove(s)
	g.mu.Lock()
	if hosted {
		g.moved[s.id] = s
	}
	if final {
		g.noteLetGoLocked(s.id)
	}
	g.mu.Unlock()
	if !hosted {
		s.quota.Close()
	}
	s.releaseGuest()
	g.regs.Moved(s.id) // the new owner registers the binding anew (regmove.go)
	g.presenceMoved(s)
	g.notes.SessionMoved(s) // the new owner subscribes anew (subsrepl.go)
	switch {
	case conn != nil && doubt && (probed == nil || conn == probed):
		reason := reasonSilent
		if probed == nil {
			reason = "session taken over; resume again"
		}
		g.closeInDoubt(conn, reason)
	case conn != nil:
		if !g.goTracked(func() { conn.c.Close(ws.StatusReplaced, "resumed on another node") }) {
			conn.c.CloseNow()
		}
	}
	g.metrics.cluster.WithLabelValues(kindTakeover, "moved").Inc()
	s.log.Info("session taken over by another node", "owner", owner)
	return moved
}

// noteRouteLocked records the host of the interaction f, sent to s,
// belongs to; s.mu is held.
func (s *Session) noteRouteLocked(f *protocol.Frame, host string) {
	if s.g.node == nil {
		return
	}
	var k routeKey
	switch f.EffectivePackage() {
	case protocol.PackageCall:
		k = routeKey{protocol.PackageCall, f.Control.SubsessionID}
		if endsLeg(f) {
			s.dropRouteLocked(k)
			return
		}
		if _, ok := s.routes[k]; !ok && host != s.g.self() {
			defer s.g.publishCalls(s) // a call hosted elsewhere counts here
		}
	case protocol.PackageMessaging:
		if f.Control.Type != protocol.TypeRequest {
			return
		}
		k = routeKey{protocol.PackageMessaging, f.Control.CorrelationID}
	default:
		return
	}
	if k.key == "" {
		return
	}
	if s.routes == nil {
		s.routes = map[routeKey]string{}
	}
	if _, ok := s.routes[k]; !ok && len(s.routes) >= maxRoutes {
		for old := range s.routes {
			delete(s.routes, old)
			if old.pkg == protocol.PackageMessaging {
				delete(s.reportTo, old.key)
			}
			break
		}
	}
	s.routes[k] = host
}

// hostOf returns the node hosting the interaction of f, a frame s's
// client sent ("": this node), forgetting the route of one that ends.
func (s *Session) hostOf(f *protocol.Frame) string {
	if s.g.node == nil {
		return ""
	}
	var k routeKey
	done := false
	switch f.EffectivePackage() {
	case protocol.PackageCall:
		k = routeKey{protocol.PackageCall, f.Control.SubsessionID}
		done = endsLeg(f)
	case protocol.PackageMessaging:
		if f.Control.Type != protocol.TypeResponse && f.Control.Type != protocol.TypeError {
			return ""
		}
		k, done = routeKey{protocol.PackageMessaging, f.Control.CorrelationID}, true
	default:
		return ""
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	host := s.routes[k]
	if done {
		s.dropRouteLocked(k)
	}
	if host == s.g.self() {
		return ""
	}
	return host
}

// forward hands f, from s's client, to the host of its interaction. A
// call frame the host does not answer waits in the session's hold for
// the call's adopter (callhold.go), as does one of a call with frames
// held.
func (s *Session) forward(host string, f *protocol.Frame) {
	s.requeueDeadTaken()
	if s.holding(f) {
		return
	}
	switch err := s.forwardOnce(host, f); {
	case err == nil:
		s.noteTaken(host, f)
	case errors.Is(err, errForwardRefused):
		s.rlog.Warn("cluster forward", "frame for an interaction on another node refused", "host", host, "err", err)
		s.refuseForward(f, "the call's node did not take it")
	case s.hold(host, f, mayHaveTaken(err)):
	default:
		s.rlog.Warn("cluster forward", "frame for an interaction on another node not forwarded", "host", host, "err", err)
		s.refuseForward(f, "the call's node is unreachable")
	}
}

// errForwardRefused: the host answered, and did not take the frame (its
// queue full, or shutting down).
var errForwardRefused = errors.New("gateway: the interaction's node refused the frame")

// forwardOnce hands f, from s's client, to host: nil when it took it,
// errForwardRefused when it refused, another error when it did not
// answer.
func (s *Session) forwardOnce(host string, f *protocol.Frame) error {
	return s.forwardReq(host, inboundReq{Frame: f.Marshal()})
}

// forwardReq is forwardOnce of req, which names the frame.
func (s *Session) forwardReq(host string, req inboundReq) error {
	_, err := s.forwardReqReply(host, req)
	return err
}

// forwardReqReply is forwardReq returning the host's answer, which
// carries a ticket when req asked for one (keptanswers.go).
func (s *Session) forwardReqReply(host string, req inboundReq) (string, error) {
	g := s.g
	req.Session, req.Identity, req.Oracle, req.Owner = s.id, s.identity, s.oracle, g.self()
	data, _ := json.Marshal(req)
	ctx, cancel := context.WithTimeout(g.ctx, clusterTimeout)
	defer cancel()
	rep, err := g.node.Request(ctx, host, kindInbound, data)
	switch {
	case err != nil:
		g.metrics.cluster.WithLabelValues(kindInbound, "failed").Inc()
		return "", err
	case string(rep) != inboundTaken && !strings.HasPrefix(string(rep), inboundTaken+" "):
		g.metrics.cluster.WithLabelValues(kindInbound, "refused").Inc()
		return "", fmt.Errorf("%w: %s", errForwardRefused, rep)
	}
	g.metrics.cluster.WithLabelValues(kindInbound, "ok").Inc()
	return string(rep), nil
}

// refuseForward answers a call request forward could not hand over 480.
func (s *Session) refuseForward(f *protocol.Frame, why string) {
	if f.EffectivePackage() == protocol.PackageCall && f.Control.Type == protocol.TypeRequest {
		s.Send(errorFor(f, protocol.CodeTemporarilyUnavail, why), false)
	}
}

// routesSnapshotLocked returns s's routes for its record; s.mu is held.
func (s *Session) routesSnapshotLocked() []route {
	if len(s.routes) == 0 {
		return nil
	}
	out := make([]route, 0, len(s.routes))
	for k, node := range s.routes {
		r := route{Pkg: k.pkg, Key: k.key, Node: node}
		if k.pkg == protocol.PackageMessaging {
			rt := s.reportTo[k.key]
			r.To, r.Corr = rt.to, rt.corr
		}
		out = append(out, r)
	}
	return out
}

func (s *Session) setRoutes(rs []route) {
	if len(rs) == 0 {
		return
	}
	s.routes = make(map[routeKey]string, len(rs))
	for _, r := range rs {
		s.routes[routeKey{r.Pkg, r.Key}] = r.Node
		if r.Pkg == protocol.PackageMessaging && r.To != "" {
			if s.reportTo == nil {
				s.reportTo = map[string]reportRoute{}
			}
			s.reportTo[r.Key] = reportRoute{to: r.To, corr: r.Corr}
		}
	}
}

// onNodeDown: the interactions hosted on node end toward the sessions
// owned here, or go on where their calls are adopted (callrepl.go). Out
// of the node's lease loop, which calls it: adoptions wait for the store,
// and a lease not written in time would have this node taken for dead.
func (g *Gateway) onNodeDown(node string) {
	if p := g.prepl.Load(); p != nil {
		p.nodeDown(node)
	}
	// The call frames node took and did not confirm (takenfwd.go),
	// and the messages it took, not answered (keptmsgs.go).
	for _, s := range g.liveSessions() {
		s.requeueTaken(node)
	}
	g.resendDead(node)
	g.answersOfDead(node)
	g.goTracked(func() {
		// deadadopt.go: an adoption may wait seconds for a store
		// electing leaders.
		g.retryDeadRoutes(g.adoptDeadRoutes(g.liveSessions()))
	})
	if l := g.ledger; l != nil {
		// The calls it left in rtpengine (medialedger.go).
		g.goTracked(func() { l.sweepDead(g.ctx, node) })
	}
}

// announceEnd tells the hosts of s's interactions that s ended.
func (g *Gateway) announceEnd(s *Session, routes []route) {
	hosts := map[string]bool{}
	for _, r := range routes {
		if r.Node != g.self() {
			hosts[r.Node] = true
		}
	}
	if len(hosts) == 0 {
		return
	}
	req, _ := json.Marshal(sessionReq{Session: s.id, Owner: g.self()})
	g.goTracked(func() {
		for h := range hosts {
			ctx, cancel := context.WithTimeout(g.ctx, clusterTimeout)
			if _, err := g.node.Request(ctx, h, kindEnded, req); err != nil {
				g.metrics.cluster.WithLabelValues(kindEnded, "failed").Inc()
			}
			cancel()
		}
	})
}

// publish writes s's directory entry: this node owns it. A write that
// fails (the bucket electing a leader after a node died) is made again
// for a few seconds, out of line: until it lands, other nodes find the
// session under its previous owner, or not at all.
func (g *Gateway) publish(s *Session) {
	if g.node == nil {
		return
	}
	if g.tryPublish(s) {
		return
	}
	g.goTracked(func() {
		for wait := 100 * time.Millisecond; wait < 10*time.Second; wait *= 2 {
			select {
			case <-time.After(wait):
			case <-g.ctx.Done():
				return
			}
			if g.tryPublish(s) {
				return
			}
		}
	})
}

func (g *Gateway) tryPublish(s *Session) bool {
	s.mu.Lock()
	gone := s.ended || s.movedTo != ""
	s.mu.Unlock()
	if gone {
		return true
	}
	ctx, cancel := context.WithTimeout(g.ctx, storeTimeout)
	defer cancel()
	calls := s.callsHeld()
	if err := g.node.Publish(ctx, cluster.Entry{Session: s.id, Identity: s.identity, Node: g.self(), Oracle: s.oracle, Calls: calls}); err != nil {
		g.rlog.Error("cluster directory", "publishing a session in the directory", "session_id", s.id, "err", err)
		return false
	}
	return true
}

// unpublish removes an ended session's directory entry.
func (g *Gateway) unpublish(s *Session) {
	if g.node == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	g.node.Unpublish(ctx, s.identity, s.id)
}

// republishAll rewrites the directory entries of the live sessions,
// within the directory's expiry, and forgets the moved sessions whose
// record is gone.
func (g *Gateway) republishAll() {
	for _, s := range g.liveSessions() {
		g.publish(s)
	}
	g.sweepMoved()
	g.sweepKept()
}

// sweepMoved ends, toward the interactions hosted here, the moved
// sessions whose record is gone: their end was not heard of (their last
// owner died, and nobody resumed them before the record expired), so
// g.moved would keep them for good.
func (g *Gateway) sweepMoved() {
	g.mu.Lock()
	ids := make([]string, 0, len(g.moved))
	for id := range g.moved {
		ids = append(ids, id)
	}
	g.mu.Unlock()
	for _, id := range ids {
		if r, _, err := g.restore(id); err == nil && r == nil {
			req, _ := json.Marshal(sessionReq{Session: id})
			g.onEnded(req)
		}
	}
}

// release asks prev, the owner a session record names, to let go of the
// session before this node takes the record over (a resume here): prev
// writes its last state and stops, or refuses a connect (header h) that
// its live state has outgrown (errStaleResume: the resume fails). Only
// a prev whose lease is gone (dead, or cut off long enough to lose it)
// is not waited for: its next write, should it come, fails the
// compare-and-set, and it lets go then.
//
// "No responders" is no proof of death: at the cluster's start, or as a
// route re-forms after a restart, a live prev's subjects are not yet
// known to this node's NATS server. Taken for dead, such a prev kept
// its copy of the session, which ended as superseded at its next write
// (issue 13, TestRollingRestart). While prev's lease is current it is
// asked again, backing off, within the resume's budget; a killed prev's
// sessions thus wait for its lease to expire (docs/cluster.md, "A dead
// node"), their clients told to resume again (1013) past the budget.
//
// A live prev is waited for until deadline (the resume's budget), not a
// fixed request timeout: its last write may wait out a JetStream leader
// election (a drain during a rolling restart), and the record read
// before that write lands lacks the frames prev took last, which the
// resume would lose (issue 13, TestRollingRestart). Past deadline the
// client resumes again (errResumeAgain, 1013) rather than from a record
// prev may still be writing.
func (g *Gateway) release(prev, id string, h *protocol.Header, deadline time.Time) error {
	_, err := g.releaseAt(prev, id, h, deadline)
	return err
}

// releaseAt is release, which also returns the revision of prev's last
// write of the record when prev let go of a live session (0: unknown).
func (g *Gateway) releaseAt(prev, id string, h *protocol.Header, deadline time.Time) (uint64, error) {
	// A node whose lease looks stale is asked all the same: a dead one
	// has no responders, and its lease is then read again at once.
	if g.node == nil || prev == "" || prev == g.self() {
		return 0, nil
	}
	req, _ := json.Marshal(sessionReq{Session: id, Owner: g.self(), Resume: h})
	ctx, cancel := context.WithDeadline(g.ctx, deadline)
	defer cancel()
	gone := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		g.watchLease(ctx, prev, func() { close(gone); cancel() })
	}()
	resp, err := g.node.Request(ctx, prev, kindTakeover, req)
	down := false
	for wait := noRouteWait; errors.Is(err, cluster.ErrNoNode); wait = min(2*wait, time.Second) {
		if down = g.node.Down(prev); down {
			break
		}
		g.metrics.cluster.WithLabelValues(kindTakeover, "no_route").Inc()
		if !sleepCtx(ctx, wait) {
			break // the budget is spent, or the lease expired meanwhile
		}
		resp, err = g.node.Request(ctx, prev, kindTakeover, req)
	}
	cancel()
	<-watched
	select {
	case <-gone:
		down = true
	default:
	}
	switch {
	case err == nil:
	case down:
		err = fmt.Errorf("its lease expired: %w", err)
	case g.ctx.Err() == nil:
		// Alive and silent, or not reachable from here yet: its last
		// write may still land.
		g.metrics.cluster.WithLabelValues(kindTakeover, "unanswered").Inc()
		g.rlog.Warn("takeover unanswered", "previous owner alive and did not release the session in time; the client resumes again", "session_id", id, "node", prev, "err", err)
		return 0, errResumeAgain
	}
	if err != nil {
		g.metrics.cluster.WithLabelValues(kindTakeover, "unanswered").Inc()
		g.rlog.Warn("takeover unanswered", "previous owner did not release the session", "session_id", id, "node", prev, "err", err)
		return 0, nil
	}
	switch string(resp) {
	case refusedUnwritten, refusedResuming:
		g.rlog.Warn("takeover refused", "previous owner did not let go (its last write failed, or it is resuming the session); the client resumes again", "session_id", id, "node", prev, "answer", string(resp))
		return 0, errResumeAgain
	}
	g.rlog.Info("takeover released", "previous owner answered the takeover", "session_id", id, "node", prev, "answer", string(resp))
	if string(resp) == refusedStale {
		g.metrics.cluster.WithLabelValues(kindTakeover, "stale").Inc()
		g.metrics.resumes.WithLabelValues("refused").Inc()
		g.rlog.Info("resume refused", "resume refused by the owner: stale", "session_id", id, "owner", prev)
		return 0, errStaleResume
	}
	rev, _ := strconv.ParseUint(strings.TrimPrefix(string(resp), "ok "), 10, 64)
	return rev, nil
}

// noRouteWait is release's first pause before it asks again a live
// owner that had no responders; it doubles up to a second.
const noRouteWait = 50 * time.Millisecond

// sleepCtx waits d, or less if ctx ends (false).
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// leasePoll is how often release looks at the lease of an owner it waits
// for: the leases are read every LeaseTTL/3.
const leasePoll = 250 * time.Millisecond

// watchLease calls expired once node's lease is gone, or returns when ctx
// ends.
func (g *Gateway) watchLease(ctx context.Context, node string, expired func()) {
	t := time.NewTicker(leasePoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			// Down reads the leases again before it says so: a node
			// started a moment ago is not in this node's view yet.
			if g.node.Down(node) {
				expired()
				return
			}
		}
	}
}

// tookOver completes a takeover of s here: the directory names this node,
// and the interactions whose host is gone end.
func (g *Gateway) tookOver(s *Session) {
	if g.node == nil {
		return
	}
	g.publish(s)
	g.metrics.cluster.WithLabelValues(kindTakeover, "taken").Inc()
	if again := g.adoptDeadRoutes([]*Session{s}); len(again) > 0 {
		g.goTracked(func() { g.retryDeadRoutes(again) })
	}
	s.adoptReleased() // SIP calls a drain handed over (sipcallrepl.go)
}

// liveEntries keeps the entries whose owner is alive. An entry that names a dead
// node may be a session its client resumed elsewhere before the
// directory heard (its write waits out the bucket's election): the
// record names the owner. With held, it keeps too the sessions whose
// record still names a dead node: their clients have not resumed yet,
// and a frame for them waits (FindHeld).
func (g *Gateway) liveEntries(entries []cluster.Entry, held bool) []cluster.Entry {
	out := entries[:0]
	for _, e := range entries {
		if !e.Alive {
			owner := g.ownerOf(e.Session)
			switch {
			case owner == g.self() && (g.lookup(e.Session) != nil || g.resuming.busy(e.Session)):
				// Taken over here a moment ago, its client's resume
				// not done: not in the tables yet (local), but here.
				// Before, a message to it got 480 (the chaos test with
				// node kills: two of four in a run).
				e.Node = owner
				out = append(out, e)
			case owner == "" || owner == g.self():
			case owner == e.Node || g.node.Down(owner):
				if held {
					e.Node = owner
					out = append(out, e)
				}
			default:
				e.Node = owner
				out = append(out, e)
			}
			continue
		}
		out = append(out, e)
	}
	return out
}

// strays returns identity's sessions the directory says this node owns
// though they are not here, under the owner their records name. A
// publication of this node's for a session it let go can land after the
// new owner's (a write that timed out while the bucket elected a leader
// and was applied later): the view named this node for a session
// elsewhere, which Remote skips, and every message to the user from
// this node got 480 until the owner's rewrite (the chaos test with node
// kills: most of the 480s left, 77 in a row to one user). The view is
// corrected (Moved), as for a session let go here.
func (g *Gateway) strays(identity string) []cluster.Entry {
	var out []cluster.Entry
	for _, e := range g.node.Named(identity) {
		if g.lookup(e.Session) != nil {
			continue
		}
		if g.resuming.busy(e.Session) {
			// Being resumed here (resumingHere): a frame for it waits
			// for the resume (sendVia).
			e.Alive = true
			out = append(out, e)
			continue
		}
		r, _, err := g.restore(e.Session)
		if err != nil || r == nil || r.Owner == "" || r.Owner == g.self() {
			continue
		}
		e.Node = r.Owner
		g.node.Moved(e)
		e.Alive = g.node.Alive(e.Node)
		out = append(out, e)
	}
	return out
}

// remoteSessions returns identity's sessions owned by other live nodes,
// and with held by dead nodes (liveEntries), as endpoints; local are the
// ones here. The error is the directory bucket's, read when neither the
// tables nor the view had a session.
func (g *Gateway) remoteSessions(identity string, local []endpoint.Endpoint, held bool) ([]endpoint.Endpoint, error) {
	if g.node == nil {
		return local, nil
	}
	remote := g.liveEntries(append(g.node.Remote(identity), g.strays(identity)...), held)
	if len(remote) == 0 && len(local) == 0 {
		// A miss may be a session that started elsewhere a moment ago
		// and is not in the view yet: the bucket itself is asked.
		found, err := g.lookupDirectory(identity)
		if err != nil {
			g.rlog.Warn("directory lookup", "directory lookup failed", "identity", identity, "err", err)
			return nil, err
		}
		remote = g.liveEntries(found, held)
	}
	for _, e := range remote {
		here := false
		for _, l := range local {
			if l.ID() == e.Session {
				here = true
				break
			}
		}
		if !here {
			local = append(local, g.endpointOf(e.Session, e.Identity, e.Oracle, e.Node))
		}
	}
	return local, nil
}

// directoryTries bounds the reads of lookupDirectory.
const directoryTries = 2

// lookupFunc reads identity's sessions on other nodes (cluster.Node's
// Lookup).
type lookupFunc func(ctx context.Context, identity string) ([]cluster.Entry, error)

// lookupDirectory reads identity's sessions on other nodes from the
// directory bucket, tried again once when a read fails or times out
// (clusterTimeout each): a bucket electing a leader after a node's death
// answers nothing for a few seconds, and a message refused 480 "try
// again" then went to a user who was online (the chaos test with node
// kills, once).
func (g *Gateway) lookupDirectory(identity string) ([]cluster.Entry, error) {
	lookup := g.node.Lookup
	if f := g.testLookup.Load(); f != nil {
		lookup = *f
	}
	var err error
	for range directoryTries {
		ctx, cancel := context.WithTimeout(g.ctx, clusterTimeout)
		var found []cluster.Entry
		found, err = lookup(ctx, identity)
		cancel()
		if err == nil || g.ctx.Err() != nil {
			return found, err
		}
	}
	return nil, err
}

// Drain makes a node of a cluster leave without ending what its clients
// do (docs/cluster.md, "Drain"): it accepts no new socket, closes every
// session's socket with 1001 (the record is written: the client resumes
// on another node, which takes the session over), and keeps running
// while the calls it hosts go on. A session in a call with a SIP leg
// keeps its socket until the call ends (SIP dialogs do not move). It
// returns when no session is left here and no call is hosted here, or
// when ctx ends (logged); Shutdown then ends what is left.
func (g *Gateway) Drain(ctx context.Context) {
	g.mu.Lock()
	if g.draining {
		g.mu.Unlock()
		return
	}
	g.draining = true
	g.mu.Unlock()
	if g.repl != nil {
		// A call adopted back after its session's socket closed would
		// stay here, its session gone elsewhere, unreleased.
		g.repl.waitStart(ctx)
	}
	closed := map[*Session]bool{}
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		g.releaseSIPCalls() // their sessions move too (sipcallrepl.go)
		all, sip := g.closeSockets(closed, websocket.StatusGoingAway, "node draining; resume on another")
		calls := g.calls.Active()
		if len(all) == 0 && calls == 0 {
			g.log.Info("drained: no session and no call left")
			g.waitQuorum(ctx)
			g.stepDown()
			return
		}
		select {
		case <-t.C: // polled: sessions leave by takeovers on other nodes
		case <-ctx.Done():
			g.log.Warn("drain timeout: ending what is left", "sessions", len(all), "sessions_in_sip_calls", sip, "calls_hosted", calls)
			g.stepDown()
			return
		}
	}
}

// closeSockets closes the socket of every session of the tables not in
// closed, and adds it there, but for sessions in a call with a SIP leg
// (a drain released the confirmed ones before: releaseSIPCalls), which
// it counts. It returns the sessions of the tables.
func (g *Gateway) closeSockets(closed map[*Session]bool, code websocket.StatusCode, reason string) ([]*Session, int) {
	all := g.liveSessions()
	sip := 0
	for _, s := range all {
		if closed[s] {
			continue
		}
		if g.calls.HasSIPCall(s) {
			sip++
			continue
		}
		closed[s] = true
		s.mu.Lock()
		l := s.conn
		s.mu.Unlock()
		if l != nil {
			// The reader sees the close, the session waits for its
			// resume (detach), here or, normally, elsewhere.
			if !g.goTracked(func() { l.c.Close(code, reason) }) {
				l.c.CloseNow()
			}
		}
	}
	return all, sip
}

// cutOffPing bounds the ping by which a node whose lease lapsed asks
// whether any peer still hears it (cluster.Node.CutOff).
const cutOffPing = time.Second

// watchCutOff lets go of this node's sessions while the node is cut off
// from its cluster (a network partition leaving it in the minority, or a
// link cut between it and the store's leader alone: CutOffWhy):
// its peers, which took it for down a lease TTL after its last lease
// write, take its sessions over without asking it, while its own writes
// fail and its sessions' frames wait for the store. Their clients stayed
// on it for as long as the partition lasted (test/cluster
// TestClusterPartition). Each socket is closed with 1013, for the
// client to resume on another node, and new sockets are refused (503,
// /readyz) until the node's lease is written again; a session's copy
// here ends at its next write, which fails the compare-and-set once the
// partition heals (writeLocked). Sessions in calls with a SIP leg keep
// their sockets, as in a drain.
func (g *Gateway) watchCutOff() {
	t := time.NewTicker(cutOffRound(g.node.LeaseTTL()))
	defer t.Stop()
	for {
		select {
		case <-g.ctx.Done():
			return
		case <-t.C:
		}
		why := g.node.CutOffWhy(g.ctx, cutOffPing)
		cut := why != ""
		g.mu.Lock()
		was := g.cutOff
		g.cutOff = cut
		g.mu.Unlock()
		switch {
		case cut && !was:
			g.metrics.cluster.WithLabelValues("ping", "cut_off").Inc()
			g.log.Warn("cut off from the cluster; closing sockets (1013) for the clients to resume on other nodes", "why", why)
		case !cut && was:
			g.log.Info("back in the cluster: lease written again; taking sockets")
		}
		if cut {
			// Every round: a socket that was resuming here as the cut
			// began is closed too.
			g.closeSockets(map[*Session]bool{}, websocket.StatusTryAgainLater, "node cut off from its cluster; resume on another")
			// Before its peers sweep their media (mediacutoff.go).
			g.endCutOffMedia()
		}
	}
}

// waitQuorum holds a drained node until the replicated streams it is a
// member of keep a quorum without it (cluster.Node.Short), or ctx (the
// drain's) ends: a peer restarted a moment before (the previous node of
// a rolling restart) is still catching up. Its sockets are closed
// already; the clients are served elsewhere meanwhile.
func (g *Gateway) waitQuorum(ctx context.Context) {
	if g.node == nil {
		return
	}
	start := time.Now()
	var logged bool
	for {
		short, err := g.node.Short(ctx)
		if err == nil && len(short) == 0 {
			if logged {
				g.log.Info("drain: peers caught up", "waited", time.Since(start).Round(time.Millisecond))
			}
			return
		}
		if !logged {
			g.log.Info("drain: waiting for peers to catch up, or the streams lose their quorum as this node goes", "streams", short, "err", err)
			logged = true
		}
		select {
		case <-ctx.Done():
			g.metrics.cluster.WithLabelValues("drain", "quorum_short").Inc()
			g.log.Warn("drain: leaving with streams short of a quorum until their peers catch up", "streams", short, "err", err)
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// stepDownTimeout bounds the hand-over of a drained node's stream
// leaderships.
const stepDownTimeout = 3 * time.Second

// stepDown hands the streams this node leads to the others before it
// shuts down (cluster.Node.StepDown): left to election timeouts, the
// sessions bucket took no write for about 5 s after each node of a
// rolling restart went, and the message stream of TestRollingRestart
// stalled.
func (g *Gateway) stepDown() {
	if g.node == nil {
		return
	}
	ctx, cancel := context.WithTimeout(g.ctx, stepDownTimeout)
	defer cancel()
	n, err := g.node.StepDown(ctx)
	if err != nil {
		g.log.Warn("drain: stream leaders not all handed over", "handed_over", n, "err", err)
		return
	}
	g.log.Info("drain: stream leaders handed over", "streams", n)
}

// resumeBudget is how long a resume waits for the store (resumeWait).
func (g *Gateway) resumeBudget() time.Duration { return time.Duration(g.resumeWait.Load()) }
