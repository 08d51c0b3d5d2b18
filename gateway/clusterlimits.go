package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/jsonrtc/jsonrtc/limits"
	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/store"
)

// admissionGrace is how long an admission stays in its identity's
// admission record: well past the time the session takes to reach the
// other nodes' views of the directory, which count it from then on.
const admissionGrace = 30 * time.Second

// maxAdmissions bounds an admission record: the oldest go first, being
// the likeliest to be in the directory already.
const maxAdmissions = 64

// errAdmission is a session admission whose record the store did not
// take: the connect is refused (503), as when the session's own record
// cannot be written.
var errAdmission = errors.New("gateway: session admission not written")

// admissions is the record, in the store, of an identity's sessions
// admitted on any node within admissionGrace. The directory alone lags
// a session started elsewhere a moment ago, so two connects at once on
// two nodes could both be admitted past the limit; each admission is
// therefore a compare-and-set on this record, which names the sessions
// the directory may not show yet (docs/cluster.md "Limits").
type admissions struct {
	Recent []admission `json:"recent"`
}

type admission struct {
	Session string `json:"session"`
	Node    string `json:"node"`
	At      int64  `json:"at"` // Unix milliseconds
}

func admissionKey(app, identity string) string { return "limit." + identityHash(app, identity) }

func identityHash(app, identity string) string {
	h := sha256.Sum256([]byte(app + "\x00" + identity))
	return hex.EncodeToString(h[:16])
}

// keep drops the admissions older than the grace and session's own.
func (a *admissions) keep(now time.Time, session string) {
	a.Recent = keepRecent(a.Recent, now, session, func(e admission) (string, int64) { return e.Session, e.At })
}

// keepRecent drops from list, a record's entries (of sessions, each
// with its time in Unix milliseconds), those older than the grace and
// session's own, and the oldest past maxAdmissions-1: room for one more.
func keepRecent[T any](list []T, now time.Time, session string, of func(T) (string, int64)) []T {
	out := list[:0]
	for _, e := range list {
		if id, at := of(e); id != session && now.Sub(time.UnixMilli(at)) < admissionGrace {
			out = append(out, e)
		}
	}
	return out[max(len(out)-(maxAdmissions-1), 0):]
}

// sessionsElsewhere counts identity's live sessions on the other nodes
// of a cluster, session aside (one moving here): those of this node's
// view of the directory, and those of recent not in it yet, for the
// identity's session limit to hold cluster-wide.
func (g *Gateway) sessionsElsewhere(identity, session string, recent []admission) int {
	if g.node == nil {
		return 0
	}
	seen := map[string]bool{session: true}
	for _, e := range g.liveEntries(g.node.Remote(identity), false) {
		seen[e.Session] = true
	}
	for _, e := range recent {
		// A dead node's admissions count no more than its directory
		// entries do.
		if e.Node != g.self() && g.node.Alive(e.Node) {
			seen[e.Session] = true
		}
	}
	return len(seen) - 1
}

// openQuota takes s's share of the limits of its identity in app, with
// the identity's sessions on the other nodes of a cluster counted. A
// new session (admit) is admitted by compare-and-set on its identity's
// admission record, so that of two connects at once on two nodes only
// as many pass as the limit leaves room for; a session moving here was
// admitted before and is only counted, and so is a guest (its identity
// generated: nobody else connects as it).
func (g *Gateway) openQuota(app, profile string, s *Session, admit bool) (*limits.Session, error) {
	if g.node == nil || !admit {
		return g.lim.OpenSessionBeside(app, profile, s.identity, g.sessionsElsewhere(s.identity, s.id, nil))
	}
	ctx, cancel := context.WithTimeout(g.ctx, storeTimeout)
	defer cancel()
	key := admissionKey(app, s.identity)
	// An identity's connects here take their turn: at once, each read
	// and wrote the record until it won, all but one losing every round
	// to each other, and of 24 at once on two nodes under load the last
	// passed the deadline (TestClusterSessionAdmissionBurst, 1 run in
	// about 200). Only another node's admission can win over this one's
	// now. The wait counts in the deadline: behind an admission the store
	// does not take, the next gives up with it.
	defer g.admitting.lock(key)()
	for try := 0; ; try++ {
		rec, rev, err := readRecord[admissions](ctx, g, key)
		if err != nil {
			return nil, errors.Join(errAdmission, err)
		}
		now := time.Now()
		rec.keep(now, s.id)
		quota, err := g.lim.OpenSessionBeside(app, profile, s.identity, g.sessionsElsewhere(s.identity, s.id, rec.Recent))
		if err != nil {
			return nil, err
		}
		rec.Recent = append(rec.Recent, admission{Session: s.id, Node: g.self(), At: now.UnixMilli()})
		if err = g.writeRecord(ctx, key, rev, rec); err == nil {
			s.admitted = now
			return quota, nil
		}
		quota.Close()
		if !errors.Is(err, store.ErrConflict) || ctx.Err() != nil {
			return nil, errors.Join(errAdmission, err)
		}
		// Another admission got there first: read again. Past a few
		// tries, after a short random pause: a replica catching up (no
		// event to wait on), or many connects of one identity at once,
		// which a growing pause would push past the deadline.
		if try >= 4 && !g.pause(time.Duration(1+rand.IntN(10))*time.Millisecond) {
			return nil, errors.Join(errAdmission, err)
		}
	}
}

// forgetAdmission takes s, ending, out of its identity's admission
// record, where it would otherwise count until the grace passed: whoever
// hears of the end may connect again at once.
func (g *Gateway) forgetAdmission(s *Session) {
	if g.node == nil || s.admitted.IsZero() || time.Since(s.admitted) >= admissionGrace {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	key := admissionKey(s.app, s.identity)
	for ctx.Err() == nil {
		data, rev, err := g.store.Get(ctx, key)
		var rec admissions
		if err != nil || json.Unmarshal(data, &rec) != nil {
			return
		}
		n := len(rec.Recent)
		rec.keep(time.Now(), s.id)
		if len(rec.Recent) == n {
			return
		}
		// Emptied, it stays (till the store's age limit): a delete
		// is no compare-and-set and could take an admission made since.
		var v []byte
		if v, err = json.Marshal(rec); err == nil {
			_, err = g.store.Update(ctx, key, v, rev)
		}
		if !errors.Is(err, store.ErrConflict) {
			if err != nil {
				g.rlog.Warn("session admission", "taking an ended session out of its admission record", "session_id", s.id, "err", err)
			}
			return
		}
	}
}

// callsElsewhere counts identity's calls on the other nodes of a
// cluster: those of its sessions there, as their owners published them
// in the directory. A dead node's do not count: its calls that go on are
// counted by the nodes that adopt them.
func (g *Gateway) callsElsewhere(identity string) int {
	if g.node == nil {
		return 0
	}
	return g.node.RemoteCalls(identity)
}

// publishCalls writes s's calls to its directory entry, out of line: the
// call handler must not wait on the store. Writes are made one at a
// time, each with the count of when it is made, so the last one written
// is the latest count.
func (g *Gateway) publishCalls(s *Session) {
	if g.node == nil || s.callsDirty.Swap(true) {
		return // a write is due that has not read the count yet
	}
	g.goTracked(func() {
		s.pubMu.Lock()
		defer s.pubMu.Unlock()
		s.callsDirty.Store(false)
		g.publish(s)
	})
}

// callsHeld counts the calls s is in, for its directory entry: those its
// quota holds (hosted here) and those hosted on other live nodes, by its
// routes. The latter count here only: the host does not count a leg
// whose session another node owns. A call whose host is dead counts
// where it is adopted (a route to the dead node counts no more).
func (s *Session) callsHeld() int {
	n := 0
	if s.quota != nil {
		n = s.quota.Calls()
	}
	s.mu.Lock()
	var hosts []string
	for k, node := range s.routes {
		if k.pkg == protocol.PackageCall && node != s.g.self() {
			hosts = append(hosts, node)
		}
	}
	s.mu.Unlock()
	for _, node := range hosts {
		if s.g.node.Alive(node) {
			n++
		}
	}
	return n
}

// dropRouteLocked forgets s's route k, of an interaction that ended;
// s.mu is held. A call hosted elsewhere no longer counts here.
func (s *Session) dropRouteLocked(k routeKey) {
	if k.pkg == protocol.PackageMessaging {
		delete(s.reportTo, k.key)
	}
	if node, ok := s.routes[k]; ok {
		delete(s.routes, k)
		if k.pkg == protocol.PackageCall && node != s.g.self() {
			s.g.publishCalls(s)
		}
	}
}

// readRecord reads the record at key, of limits kept in the store, and
// its revision (0: none yet). A record that does not decode reads as
// empty, to be written over.
func readRecord[T any](ctx context.Context, g *Gateway, key string) (rec T, rev uint64, err error) {
	data, rev, err := g.store.Get(ctx, key)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return rec, 0, nil
	case err != nil:
		return rec, 0, err
	}
	_ = json.Unmarshal(data, &rec)
	return rec, rev, nil
}

// writeRecord writes rec at key by compare-and-set with rev (0: created).
func (g *Gateway) writeRecord(ctx context.Context, key string, rev uint64, rec any) error {
	v, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if rev == 0 {
		_, err = g.store.Create(ctx, key, v)
	} else {
		_, err = g.store.Update(ctx, key, v, rev)
	}
	return err
}
