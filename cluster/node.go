// Package cluster is what a gateway node needs of its peers
// (docs/cluster.md): leases that say which nodes are alive, a directory
// of which node owns which session of an identity, and subjects on which
// nodes send each other requests. It runs on the node's NATS connection
// (store/natsstore): to its embedded server, a route-joined cluster's
// node or a leaf node of a hub, or to an external NATS cluster
// (Config.Mode), whose JetStream keeps the leases and the directory in
// key-value buckets replicated across the cluster.
//
// Start with [Start]; [Node.Close] stops the lease and the watches and
// waits for them.
package cluster

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Buckets of the cluster.
const (
	NodesBucket     = "jsonrtc_nodes"
	DirectoryBucket = "jsonrtc_directory"
)

// Options configure a Node.
type Options struct {
	// Name is the node's name (Config.Name). Required.
	Name string
	// Replicas of the buckets: 1 or 3.
	Replicas int
	// LeaseTTL: Config.LeaseTTL.
	LeaseTTL time.Duration
	// DirectoryTTL is how long a directory entry outlives its last
	// write; the owner rewrites its entries (Node.Publish) well within
	// it. Required.
	DirectoryTTL time.Duration
	// Domain is the JetStream domain of the buckets (Upstream.Domain);
	// empty: the default API.
	Domain string
	// Upstream: the buckets live in a NATS cluster the gateways do not
	// run (cluster.nats, cluster.leaf), whose stream leaders are none
	// of this node's to hand over (StepDown).
	Upstream bool
	Logger   *slog.Logger
}

// Entry is a directory entry: a session and the node that owns it.
type Entry struct {
	Session  string `json:"session"`
	Identity string `json:"identity"`
	Node     string `json:"node"`
	Oracle   bool   `json:"oracle,omitempty"`
	// Calls the session is in, as its owner counts them: an identity's
	// call limit holds across the nodes (docs/cluster.md "Limits").
	Calls int `json:"calls,omitempty"`
	// Alive: Node holds a lease (set by Remote and Lookup, not stored).
	Alive bool `json:"-"`
}

// Node is this gateway's place in the cluster.
type Node struct {
	o     Options
	nc    *nats.Conn
	js    jetstream.JetStream
	nodes jetstream.KeyValue
	dir   jetstream.KeyValue
	log   *slog.Logger

	readMu sync.Mutex // held through a readLeases
	mu     sync.Mutex
	seen   map[string]time.Time // live peers: their last lease write
	downed map[string]bool      // peers reported down since last seen alive
	wrote  time.Time            // this node's last lease write
	ticks  int                  // lease reads, to list the bucket now and then
	logged time.Time            // the last lease failure logged
	// writable: since when this node's lease writes succeed (failing:
	// the last one failed). Peers get a TTL from then to write theirs.
	writable time.Time
	failing  bool
	// failLease, set by tests, fails this node's lease writes as a
	// store that does not hear it would.
	failLease atomic.Bool
	// noRoute, set by tests, names the peers whose requests find no
	// responders here, as with the link between the two cut.
	noRoute sync.Map
	// sentVia and relayed count requests through a peer (via.go).
	sentVia, relayed atomic.Uint64
	// watchEnded counts the watches nats.go ended, made again (follow).
	watchEnded atomic.Uint64
	// rewatched counts the watches made again as a peer went down
	// (follow); peerDown is closed, and replaced, at each such death.
	rewatched atomic.Uint64
	peerDown  chan struct{}
	byID      map[string]Entry // directory, by session
	byIdent   map[string]map[string]struct{}
	// gone: sessions this node let go to another node's resume (Moved),
	// by id, until the directory names another owner.
	gone      map[string]goneTo
	subs      []*nats.Subscription
	dirLoaded chan struct{}
	onDown    func(node string)

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Start opens the buckets, takes this node's lease, and starts the
// watches. It returns once the directory's current entries are loaded.
func Start(ctx context.Context, nc *nats.Conn, o Options) (*Node, error) {
	if !validName(o.Name) {
		return nil, fmt.Errorf("cluster: bad node name %q", o.Name)
	}
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.LeaseTTL <= 0 {
		o.LeaseTTL = 6 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	var js jetstream.JetStream
	var err error
	if o.Domain != "" {
		js, err = jetstream.NewWithDomain(nc, o.Domain)
	} else {
		js, err = jetstream.New(nc)
	}
	if err != nil {
		return nil, err
	}
	n := &Node{o: o, nc: nc, js: js, log: o.Logger.With("node", o.Name), seen: map[string]time.Time{}, downed: map[string]bool{},
		byID: map[string]Entry{}, byIdent: map[string]map[string]struct{}{}, gone: map[string]goneTo{}, dirLoaded: make(chan struct{}), peerDown: make(chan struct{})}
	// A lease's bucket keeps it a little longer than its TTL, for a
	// node that starts meanwhile to see it: liveness is judged on the
	// refreshes seen, not on what the bucket still holds.
	if n.nodes, err = bucket(ctx, js, jetstream.KeyValueConfig{Bucket: NodesBucket,
		Description: "jsonrtc node leases", TTL: 2 * o.LeaseTTL, History: 1, Replicas: o.Replicas,
		Storage: jetstream.MemoryStorage}); err != nil {
		return nil, err
	}
	if n.dir, err = bucket(ctx, js, jetstream.KeyValueConfig{Bucket: DirectoryBucket,
		Description: "jsonrtc sessions by identity and owner", TTL: o.DirectoryTTL, History: 1, Replicas: o.Replicas,
		Storage: jetstream.FileStorage}); err != nil {
		return nil, err
	}
	// The first lease write is made again too: a node restarted right
	// after its drain handed the bucket's leadership over finds it
	// electing ("no response from stream"), and exited on it.
	if err := retry(ctx, n.refreshLease); err != nil {
		return nil, err
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	ping, err := nc.Subscribe(pingSubject, func(m *nats.Msg) {
		if string(m.Data) != n.o.Name && m.Reply != "" {
			m.Respond(n.pong())
		}
	})
	if err != nil {
		n.cancel()
		return nil, fmt.Errorf("cluster: ping subject: %w", err)
	}
	n.subs = append(n.subs, ping)
	if err := n.serveVia(); err != nil {
		n.cancel()
		return nil, fmt.Errorf("cluster: via subject: %w", err)
	}
	n.readLeases(ctx)
	dir, err := n.watchAll(ctx, n.dir)
	if err != nil {
		n.cancel()
		return nil, fmt.Errorf("cluster: watching the directory: %w", err)
	}
	n.wg.Go(func() { n.watchDirectory(dir) })
	n.wg.Go(n.leaseLoop)
	select {
	case <-n.dirLoaded:
	case <-ctx.Done():
		n.Close()
		return nil, ctx.Err()
	}
	return n, nil
}

// bucket creates or updates a bucket, trying again until ctx ends: the
// nodes of a cluster starting together create the same buckets at once,
// and a request that raced another may go unanswered.
func bucket(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	var kv jetstream.KeyValue
	err := retry(ctx, func(actx context.Context) (err error) {
		kv, err = js.CreateOrUpdateKeyValue(actx, cfg)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: bucket %s: %w", cfg.Bucket, err)
	}
	return kv, nil
}

// watchAll starts a watch of every key of kv, for the node's life,
// trying again until ctx ends: on a loaded machine, or while the bucket
// elects a leader, the watch's consumer is not made within the request
// timeout, and a node restarted then exited at start (the cluster chaos
// test: "watching jsonrtc_presence: context deadline exceeded", after
// which the cluster, short of that node, lost its quorum at the next
// kill).
func (n *Node) watchAll(ctx context.Context, kv jetstream.KeyValue) (jetstream.KeyWatcher, error) {
	var w jetstream.KeyWatcher
	err := retry(ctx, func(context.Context) (err error) {
		w, err = kv.WatchAll(n.ctx)
		return err
	})
	return w, err
}

// retry calls f, each call given 2 s, until it succeeds or ctx ends
// (f's last error).
func retry(ctx context.Context, f func(context.Context) error) error {
	for {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := f(actx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Name is this node's name.
func (n *Node) Name() string { return n.o.Name }

// LeaseTTL is how long a silent node stays alive in its peers' eyes.
func (n *Node) LeaseTTL() time.Duration { return n.o.LeaseTTL }

// Close gives up the lease (the peers see the node leave at once),
// unsubscribes, and waits for the node's goroutines.
func (n *Node) Close() {
	n.cancel()
	n.wg.Wait()
	n.mu.Lock()
	subs := n.subs
	n.subs = nil
	n.mu.Unlock()
	for _, s := range subs {
		s.Unsubscribe()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	n.nodes.Purge(ctx, n.o.Name)
}

func (n *Node) refreshLease(ctx context.Context) error {
	v, _ := json.Marshal(struct {
		Time time.Time `json:"time"`
	}{time.Now().UTC()})
	var err error
	if n.failLease.Load() {
		err = errors.New("failed by the test")
	} else {
		_, err = n.nodes.Put(ctx, n.o.Name, v)
	}
	if err != nil {
		n.mu.Lock()
		n.failing = true
		n.mu.Unlock()
		return fmt.Errorf("cluster: lease: %w", err)
	}
	n.mu.Lock()
	n.wrote = time.Now()
	if n.failing || n.writable.IsZero() {
		n.failing, n.writable = false, n.wrote
	}
	n.mu.Unlock()
	return nil
}

// leaseLoop refreshes this node's lease and reads the peers'.
func (n *Node) leaseLoop() {
	t := time.NewTicker(n.o.LeaseTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(n.ctx, n.o.LeaseTTL/3)
		if err := n.refreshLease(ctx); err != nil && n.ctx.Err() == nil {
			n.rlog("lease not refreshed", err)
		}
		cancel()
		ctx, cancel = context.WithTimeout(n.ctx, n.o.LeaseTTL/3)
		n.readLeases(ctx)
		cancel()
	}
}

// readLeases reads the peers' leases from the bucket. A peer is down when
// this node wrote its own lease more than the TTL after the peer's last
// write: while the bucket takes no write (its leader died, another is
// being elected, seconds) nobody refreshes, and nobody expires for it.
// Leases are read, not watched: a watch served by a node that died
// stalls until it is made again. A read that fails changes nothing.
// extra names nodes to read besides the known ones (knowNodes).
func (n *Node) readLeases(ctx context.Context, extra ...string) {
	// One read at a time: each replaces the peers seen with what it
	// read, so a tick's listing made before a peer's first lease write
	// would drop (and report down) the peer that a lookup's read of
	// it (knowNodes) had just found alive. Not held while the peers
	// down are reported: their handlers read leases too.
	up, down := n.readLeasesOnce(ctx, extra)
	for _, node := range up {
		n.log.Info("cluster node up", "peer", node)
	}
	for _, node := range down {
		n.nodeDown(node, "lease expired or given up")
	}
}

// readLeasesOnce is readLeases but the reports: it returns the peers
// seen up and down since the last read.
func (n *Node) readLeasesOnce(ctx context.Context, extra []string) (up, down []string) {
	n.readMu.Lock()
	defer n.readMu.Unlock()
	n.mu.Lock()
	// The bucket is listed once a TTL (three reads): a lease stays in it
	// two TTLs after its last write, so every node's is listed at least
	// once, even one that started after a listing and died before the
	// next (it is then reported down: below).
	now, list := n.wrote, len(extra) == 0 && (n.ticks%3 == 0 || len(n.seen) == 0)
	// After the bucket took no writes for a while (a leader elected
	// after a node died), every peer has a TTL to write again.
	grace := now.Sub(n.writable) <= n.o.LeaseTTL
	if len(extra) == 0 {
		n.ticks++
	}
	names := extra
	prev := make(map[string]time.Time, len(n.seen))
	for node, at := range n.seen {
		names = append(names, node)
		prev[node] = at
	}
	n.mu.Unlock()
	if list {
		// Now and then the bucket is listed, for nodes that joined;
		// between listings only the known peers' leases are read.
		keys, err := n.nodes.ListKeys(ctx)
		if err != nil {
			return
		}
		// The known peers (names already) are read whether listed or
		// not: a listing answered by a replica behind the others may
		// miss a lease.
		for k := range keys.Keys() {
			if _, known := prev[k]; !known {
				names = append(names, k)
			}
		}
		keys.Stop()
		if ctx.Err() != nil {
			// Cut short (a slow bucket, under load): the nodes it did
			// not list are not down for that.
			return
		}
	}
	fresh := map[string]time.Time{}
	var stale []string // listed, not live
	for _, k := range names {
		if k == n.o.Name {
			continue
		}
		at, ok := prev[k]
		e, err := n.nodes.Get(ctx, k)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted):
			if !ok || n.gaveUp(ctx, k, at) {
				continue // given up
			}
			// Absent from the replica that answered: judged by the
			// last write seen (below).
		case err == nil:
			// Reads may be answered by any replica, and one behind the
			// others (a node back from a partition) has older leases, or
			// none (aged out while it was cut off): taken as they came,
			// a live peer was reported down and up again, and the calls
			// it hosted ended (test/cluster TestClusterPartition). The
			// latest write seen stands; a lease not found is judged by
			// it too, unless given up (gaveUp).
			if c := e.Created(); !ok || c.After(at) {
				at = c
			}
			ok = true
		case ok:
			// A lease that cannot be read now (a slow bucket: the
			// read's deadline) leaves its node as it was.
			fresh[k] = at
			continue
		}
		if ok && (now.Sub(at) <= n.o.LeaseTTL || grace && prevOK(prev, k)) {
			fresh[k] = at
		} else if ok && !grace {
			stale = append(stale, k)
		}
	}
	n.mu.Lock()
	for node := range n.seen {
		if _, ok := fresh[node]; !ok {
			down = append(down, node)
		}
	}
	for _, node := range stale {
		// A node this one never saw alive (it started after a listing
		// and died before the next) may have hosted calls of sessions
		// here: it is reported down once, as one seen would be.
		if _, ok := n.seen[node]; !ok && !n.downed[node] {
			down = append(down, node)
		}
	}
	for node := range fresh {
		if _, ok := n.seen[node]; !ok {
			up = append(up, node)
		}
		delete(n.downed, node)
	}
	for _, node := range down {
		n.downed[node] = true
	}
	n.seen = fresh
	n.mu.Unlock()
	return up, down
}

// gaveUp reports whether node, whose last lease write seen was at, gave
// its lease up since (Close purges it): its last message is a purge
// made after at, not absent from the replica that answered, nor a purge
// of an earlier life of the node on a replica behind.
func (n *Node) gaveUp(ctx context.Context, node string, at time.Time) bool {
	st, err := n.js.Stream(ctx, "KV_"+NodesBucket)
	if err != nil {
		return false
	}
	m, err := st.GetLastMsgForSubject(ctx, "$KV."+NodesBucket+"."+node)
	if err != nil {
		return false
	}
	op := m.Header.Get("KV-Operation")
	return (op == "PURGE" || op == "DEL") && m.Time.After(at)
}

// prevOK reports whether node was alive at the last read.
func prevOK(prev map[string]time.Time, node string) bool {
	_, ok := prev[node]
	return ok
}

// rlog logs a failure of the lease at most every LeaseTTL: a bucket
// electing a leader fails every write for seconds.
func (n *Node) rlog(msg string, err error) {
	n.mu.Lock()
	quiet := time.Since(n.logged) < n.o.LeaseTTL
	if !quiet {
		n.logged = time.Now()
	}
	n.mu.Unlock()
	if !quiet {
		n.log.Warn(msg, "err", err)
	}
}

func (n *Node) nodeDown(node, why string) {
	n.log.Warn("cluster node down", "peer", node, "why", why)
	n.mu.Lock()
	f := n.onDown
	close(n.peerDown)
	n.peerDown = make(chan struct{})
	n.mu.Unlock()
	if f != nil {
		f(node)
	}
}

// OnNodeDown makes f hear, on a goroutine of the node's, of each peer
// whose lease expired or that left.
func (n *Node) OnNodeDown(f func(node string)) {
	n.mu.Lock()
	n.onDown = f
	n.mu.Unlock()
}

// Alive reports whether node holds a lease: this node, or a peer whose
// lease was refreshed within the TTL.
func (n *Node) Alive(node string) bool {
	if node == n.o.Name {
		return true
	}
	n.mu.Lock()
	_, ok := n.seen[node]
	n.mu.Unlock()
	return ok
}

// Nodes returns the live nodes, this one included, sorted.
func (n *Node) Nodes() []string {
	out := []string{n.o.Name}
	n.mu.Lock()
	for node := range n.seen {
		out = append(out, node)
	}
	n.mu.Unlock()
	sort.Strings(out)
	return out
}

// dirKey is an entry's key: the identity in base64url (an identity's
// '@' is no key character), then the session id (already base64url).
func dirKey(identity, session string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(identity)) + "." + session
}

// Publish writes e: the session is owned by e.Node (a new session, a
// takeover, or the owner's periodic rewrite within DirectoryTTL).
func (n *Node) Publish(ctx context.Context, e Entry) error {
	v, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if e.Node == n.o.Name {
		n.mu.Lock()
		delete(n.gone, e.Session) // here again
		n.mu.Unlock()
	}
	_, err = n.dir.Put(ctx, dirKey(e.Identity, e.Session), v)
	return err
}

// Unpublish removes a session that ended.
func (n *Node) Unpublish(ctx context.Context, identity, session string) error {
	return n.dir.Purge(ctx, dirKey(identity, session))
}

func (n *Node) watchDirectory(w jetstream.KeyWatcher) {
	loaded := false
	n.follow(n.dir, w, "directory", func(kv jetstream.KeyValueEntry) {
		if kv == nil {
			// The watch has delivered what the bucket held.
			if !loaded {
				loaded = true
				close(n.dirLoaded)
			}
			return
		}
		n.apply(kv)
	})
}

// follow runs every entry of kv's watch w through fn (nil: the watch has
// delivered what the bucket held), until the node closes, and makes the
// watch again whenever nats.go ends it. An ordered consumer that nats.go
// fails to make again (after a node's kill, the stream electing a leader
// answers in a way it takes as final) closes the watch, and the node
// heard no change of the bucket after that for as long as it lived: in
// CI, alice's node never heard bob's publications from the node his
// session had moved to after his node's kill (test/cluster
// TestPresenceNodeKilled). The new watch delivers the bucket's entries
// again, deletions' markers with them; fn takes them as changes.
//
// It also makes the watch again when a peer goes down: the watch's
// consumer (ephemeral, on one server) may have been the dead node's, and
// nats.go finds it gone only by heartbeats it misses, then makes it
// again: about 10 s in which the node heard no change (a publication
// reached a watcher 7.8 s late, and in a loaded CI run over 15 s, after
// a node's kill: test/cluster TestPresenceNodeKilled). The new watch
// replays the bucket; fn takes an entry it has seen as a no-op.
func (n *Node) follow(kv jetstream.KeyValue, w jetstream.KeyWatcher, what string, fn func(jetstream.KeyValueEntry)) {
	for {
		switch n.drain(w, fn) {
		case watchNodeClosed:
			return
		case watchClosed:
			n.watchEnded.Add(1)
			n.rlog("the watch of the "+what+" ended; making it again", errors.New("watch closed"))
		case watchPeerDown:
			n.rewatched.Add(1)
		}
		var err error
		if w, err = n.watchAll(n.ctx, kv); err != nil {
			return // the node closed
		}
	}
}

// How drain ended.
const (
	watchNodeClosed = iota
	watchClosed     // by nats.go
	watchPeerDown   // a peer went down
)

// drain runs w's entries through fn until w ends, a peer goes down or
// the node closes, and says which.
func (n *Node) drain(w jetstream.KeyWatcher, fn func(jetstream.KeyValueEntry)) int {
	defer w.Stop()
	n.mu.Lock()
	down := n.peerDown
	n.mu.Unlock()
	for {
		select {
		case <-n.ctx.Done():
			return watchNodeClosed
		case <-down:
			return watchPeerDown
		case e, ok := <-w.Updates():
			if !ok {
				if n.ctx.Err() != nil {
					return watchNodeClosed
				}
				return watchClosed
			}
			fn(e)
		}
	}
}

func (n *Node) apply(kv jetstream.KeyValueEntry) {
	k := kv.Key()
	dot := strings.LastIndexByte(k, '.')
	if dot < 0 {
		return
	}
	id := k[dot+1:]
	n.mu.Lock()
	defer n.mu.Unlock()
	if old, ok := n.byID[id]; ok {
		delete(n.byID, id)
		if set := n.byIdent[old.Identity]; set != nil {
			delete(set, id)
			if len(set) == 0 {
				delete(n.byIdent, old.Identity)
			}
		}
	}
	if kv.Operation() != jetstream.KeyValuePut {
		delete(n.gone, id)
		return
	}
	var e Entry
	if json.Unmarshal(kv.Value(), &e) != nil || e.Session != id {
		return
	}
	if g, ok := n.gone[id]; ok {
		if e.Node != n.o.Name {
			delete(n.gone, id) // the new owner is heard of
		} else {
			// This node's entry, written before it let the session go
			// and heard after.
			e.Node = g.node
		}
	}
	n.add(e)
}

// add puts e in the view; n.mu is held.
func (n *Node) add(e Entry) {
	n.byID[e.Session] = e
	set := n.byIdent[e.Identity]
	if set == nil {
		set = map[string]struct{}{}
		n.byIdent[e.Identity] = set
	}
	set[e.Session] = struct{}{}
}

// goneTo is where a session this node let go went, and when.
type goneTo struct {
	node string
	at   time.Time
}

// Moved notes in the view that session e.Session, owned here until now,
// is owned by e.Node: this node let it go to e.Node's resume, and e.Node
// names itself in the directory only once it has taken the record
// over. Until then the view named this node, which Remote skips, for a
// session no longer here, and the bucket too: a message to the session
// found it nowhere and got 480 (test/cluster TestResumeOnAnotherNode).
// The note holds until the directory names another owner, this node
// publishes the session again, or its entry goes; a note older than
// DirectoryTTL (a resume that never took the record) is dropped.
func (n *Node) Moved(e Entry) {
	now := time.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	for id, g := range n.gone {
		if now.Sub(g.at) > n.o.DirectoryTTL {
			delete(n.gone, id)
		}
	}
	if cur, ok := n.byID[e.Session]; ok && cur.Node == e.Node {
		return // the new owner's entry came first
	}
	// Any other entry is older than the let-go: this node's own, or,
	// its own not heard yet, the owner's before it.
	n.gone[e.Session] = goneTo{node: e.Node, at: now}
	n.add(e)
}

// Named returns identity's sessions the node's view of the directory
// says this node owns. One not in the node's tables is a stray: a
// publication of a session this node has since let go, landed after the
// new owner's (a write that timed out in a bucket's election and was
// applied later).
func (n *Node) Named(identity string) []Entry {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []Entry
	for id := range n.byIdent[identity] {
		if e := n.byID[id]; e.Node == n.o.Name {
			out = append(out, e)
		}
	}
	return out
}

// Remote returns identity's sessions owned by other nodes, from the
// node's view of the directory (no request per lookup), each marked
// Alive when its owner holds a lease.
func (n *Node) Remote(identity string) []Entry {
	n.mu.Lock()
	set := n.byIdent[identity]
	out := make([]Entry, 0, len(set))
	for id := range set {
		out = append(out, n.byID[id])
	}
	n.mu.Unlock()
	n.knowNodes(out)
	others := out[:0]
	for _, e := range out {
		if e.Node != n.o.Name {
			e.Alive = n.Alive(e.Node)
			others = append(others, e)
		}
	}
	return others
}

// RemoteCalls sums the calls (Entry.Calls) of identity's sessions owned
// by other live nodes, from the view alone: for a call's admission, which
// must not wait on a lease read as Remote may for a node not seen yet.
func (n *Node) RemoteCalls(identity string) int {
	total := 0
	for _, c := range n.RemoteCallsBySession(identity) {
		total += c
	}
	return total
}

// RemoteCallsBySession is RemoteCalls by session: the calls of each of
// identity's sessions owned by other live nodes (none: the identity has
// no session elsewhere), from the view alone.
func (n *Node) RemoteCallsBySession(identity string) map[string]int {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out map[string]int
	for id := range n.byIdent[identity] {
		e := n.byID[id]
		if _, alive := n.seen[e.Node]; alive && e.Node != n.o.Name {
			if out == nil {
				out = map[string]int{}
			}
			out[id] = e.Calls
		}
	}
	return out
}

// Down reports whether node holds no lease, reading the leases again
// first when it is no peer this node knows of (one that started a moment
// ago): for a decision that ends what a node hosts.
func (n *Node) Down(node string) bool {
	if n.Alive(node) {
		return false
	}
	n.knowNodes([]Entry{{Node: node}})
	return !n.Alive(node)
}

// knowNodes reads the leases again when an entry names a node whose
// lease this node has not read yet (one that started a moment ago).
func (n *Node) knowNodes(entries []Entry) {
	var unknown []string
	n.mu.Lock()
	for _, e := range entries {
		if _, ok := n.seen[e.Node]; !ok && e.Node != n.o.Name && !slices.Contains(unknown, e.Node) {
			unknown = append(unknown, e.Node)
		}
	}
	n.mu.Unlock()
	if len(unknown) > 0 {
		// Their leases are read by key, all of them: a listing (a
		// watch) is slower, and one cut short by the deadline tells
		// nothing. (Only the first was read: an identity with sessions
		// on two peers not yet seen lost the second's at a cluster's
		// start.)
		ctx, cancel := context.WithTimeout(n.ctx, n.o.LeaseTTL/3)
		n.readLeases(ctx, unknown...)
		cancel()
	}
}

// Lookup reads identity's sessions owned by other nodes from the
// bucket itself, not the view: for a lookup the view answered with none,
// since a session that started elsewhere a moment ago may not have
// reached the view yet. An error says the bucket did not tell (a read
// failed or ctx ended first), not that identity has no session.
func (n *Node) Lookup(ctx context.Context, identity string) ([]Entry, error) {
	keys, err := n.dir.ListKeysFiltered(ctx, base64.RawURLEncoding.EncodeToString([]byte(identity))+".*")
	if err != nil {
		return nil, err
	}
	defer keys.Stop()
	var all []Entry
	for k := range keys.Keys() {
		kv, err := n.dir.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // ended between the listing and the read
		}
		if err != nil {
			return nil, err
		}
		var e Entry
		if json.Unmarshal(kv.Value(), &e) == nil && e.Identity == identity {
			all = append(all, e)
		}
	}
	// The listing ends quietly when ctx does: what it gave may be short
	// of the sessions there are, and nobody found must not read as nobody
	// there (a 404 to a caller whose callee is online).
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	n.knowNodes(all)
	var out []Entry
	for _, e := range all {
		if e.Node != n.o.Name {
			e.Alive = n.Alive(e.Node)
			out = append(out, e)
		}
	}
	return out, nil
}

// Owner returns the directory's entry of a session.
func (n *Node) Owner(session string) (Entry, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	e, ok := n.byID[session]
	return e, ok
}

// Counts returns the directory's sessions per node, for status.
func (n *Node) Counts() map[string]int {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := map[string]int{}
	for _, e := range n.byID {
		out[e.Node]++
	}
	return out
}

// subject is the subject of requests of a kind to node.
func subject(node, kind string) string { return "jsonrtc.node." + node + "." + kind }

// Handle serves requests of a kind sent to this node: fn's result is
// the reply. Requests of one kind are handled one at a time, in order.
func (n *Node) Handle(kind string, fn func(data []byte) []byte) error {
	sub, err := n.nc.Subscribe(subject(n.o.Name, kind), func(m *nats.Msg) {
		reply := fn(m.Data)
		if m.Reply != "" {
			m.Respond(reply)
		}
	})
	if err != nil {
		return err
	}
	// Requests wait in the connection for their handler: bound them,
	// so that a stuck handler costs failed requests, not memory.
	sub.SetPendingLimits(65536, 64<<20)
	n.mu.Lock()
	n.subs = append(n.subs, sub)
	n.mu.Unlock()
	return nil
}

// pingSubject is answered by every node but the one that asks (its name
// is the request): CutOff's test of whether any peer hears this node,
// and whether the store takes that peer's writes.
const pingSubject = "jsonrtc.nodes.ping"

// pong is a node's answer to a ping: its name, how long ago its own
// lease was last written, and for how long its lease writes have
// succeeded (-1: never, or failing now). Nodes of earlier versions
// answer their name alone.
type pong struct {
	Node       string `json:"node"`
	WroteMS    int64  `json:"wrote_ms"`
	WritableMS int64  `json:"writable_ms"`
}

func (n *Node) pong() []byte {
	n.mu.Lock()
	p := pong{Node: n.o.Name, WroteMS: -1, WritableMS: -1}
	if !n.wrote.IsZero() {
		p.WroteMS = time.Since(n.wrote).Milliseconds()
	}
	if !n.failing && !n.writable.IsZero() {
		p.WritableMS = time.Since(n.writable).Milliseconds()
	}
	n.mu.Unlock()
	data, _ := json.Marshal(p)
	return data
}

// CutOff reports whether this node is cut off from its cluster
// (CutOffWhy says why).
func (n *Node) CutOff(ctx context.Context, timeout time.Duration) bool {
	return n.CutOffWhy(ctx, timeout) != ""
}

// CutOffWhy says why this node is cut off from its cluster, or "": its
// own lease unwritten for longer than the TTL (its peers, which write
// theirs, take it for down and take its sessions over without asking
// it) while no peer answers a ping within timeout, or while the peer
// that answers writes its own lease (within half a TTL) and has for
// longer than a TTL: the store takes that peer's writes and not this
// node's (a link cut between this node and the leader of the store's
// streams alone, the others reaching both: test/cluster
// TestClusterPartitionOneLink). A lapsed lease with a peer answering
// whose writes lapsed too, or came back within a TTL, is the bucket
// electing a leader, which every node waits out alike: after one, each
// node has a TTL from a peer's first write to write its own before that
// peer takes it for down (readLeases), and before it takes itself for
// cut off.
func (n *Node) CutOffWhy(ctx context.Context, timeout time.Duration) string {
	n.mu.Lock()
	lapsed := time.Since(n.wrote) > n.o.LeaseTTL
	n.mu.Unlock()
	if !lapsed {
		return ""
	}
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	m, err := n.nc.RequestWithContext(pctx, pingSubject, []byte(n.o.Name))
	if err != nil {
		if ctx.Err() != nil {
			return ""
		}
		return "lease lapsed and no peer answers"
	}
	var p pong
	ms := func(v int64) time.Duration { return time.Duration(v) * time.Millisecond }
	if json.Unmarshal(m.Data, &p) == nil && p.WroteMS >= 0 && ms(p.WroteMS) < n.o.LeaseTTL/2 &&
		ms(p.WritableMS) > n.o.LeaseTTL {
		return fmt.Sprintf("lease lapsed while %s writes its own: the store does not take this node's writes", p.Node)
	}
	return ""
}

// ErrNoNode is returned by Request when no node of that name answers.
var ErrNoNode = errors.New("cluster: node not reachable")

// Request sends data to node's handler of kind and returns its reply.
func (n *Node) Request(ctx context.Context, node, kind string, data []byte) ([]byte, error) {
	var m *nats.Msg
	var err error
	if _, cut := n.noRoute.Load(node); cut {
		err = nats.ErrNoResponders
	} else {
		m, err = n.nc.RequestWithContext(ctx, subject(node, kind), data)
	}
	if errors.Is(err, nats.ErrNoResponders) {
		// Alive, yet unrouted from here: through a peer (via.go).
		if rep, tried, err := n.requestVia(ctx, node, kind, data); tried {
			return rep, err
		}
		return nil, fmt.Errorf("%w: %s", ErrNoNode, node)
	}
	if err != nil {
		return nil, err
	}
	return m.Data, nil
}

// Notify sends data to node's handler of kind and expects no reply: a
// notice its sender can lose without harm (gateway's confirmations of
// forwarded frames), so nothing waits on it.
func (n *Node) Notify(node, kind string, data []byte) error {
	return n.nc.Publish(subject(node, kind), data)
}

// Short lists the replicated streams (the buckets among them) of which
// this node's NATS server is a member and whose quorum would not hold
// without it: fewer of their other members current than a majority of
// their replicas. A server restarted a moment ago catches up on every
// stream for seconds; the next node of a rolling restart that left in
// that time left each stream with one current member, and every write
// (the records of the sessions it had just drained away) waited until
// the restarted server had caught up (TestRollingRestart's message
// stream stalled). A drain waits until none is short (Gateway.Drain).
//
// A member is current when its stream's leader says so, or when it is
// online and lags by fewer than shortLag entries: under a write storm
// the follower outside the last quorum is always a few entries behind,
// and it keeps up; a server catching up lags by thousands.
//
// With an upstream cluster (Options.Upstream) none is: this node's
// going takes no server away.
func (n *Node) Short(ctx context.Context) ([]string, error) {
	if n.o.Upstream {
		return nil, nil
	}
	me := n.nc.ConnectedServerName()
	// A stream whose leader does not answer in time is left out of the
	// list of infos (the server says it is missing, nats.go drops that):
	// one that the names list has and the infos do not is short, for
	// all this node can tell.
	names := n.js.StreamNames(ctx)
	unseen := map[string]bool{}
	for name := range names.Name() {
		unseen[name] = true
	}
	if err := names.Err(); err != nil {
		return nil, fmt.Errorf("cluster: listing streams: %w", err)
	}
	streams := n.js.ListStreams(ctx)
	var short []string
	for info := range streams.Info() {
		delete(unseen, info.Config.Name)
		c := info.Cluster
		if c == nil || len(c.Replicas) == 0 || info.Config.Replicas < 2 {
			continue
		}
		member, current := c.Leader == me, 0
		if c.Leader != "" && c.Leader != me {
			current++
		}
		for _, p := range c.Replicas {
			switch {
			case p.Name == me:
				member = true
			case !p.Offline && (p.Current || p.Lag < shortLag):
				current++
			}
		}
		if member && current < info.Config.Replicas/2+1 {
			short = append(short, info.Config.Name)
		}
	}
	if err := streams.Err(); err != nil {
		return nil, fmt.Errorf("cluster: listing streams: %w", err)
	}
	for name := range unseen {
		short = append(short, name)
	}
	// A stream was listed twice once, with a server just gone (cause
	// not known): named once.
	sort.Strings(short)
	return slices.Compact(short), nil
}

// shortLag: Short.
const shortLag = 64

// StepDown hands the leadership of every replicated stream this node's
// NATS server leads (the buckets' included) to another server, and
// returns how many it handed over. A server that shuts down leading
// them leaves the others to notice by election timeout: every write
// waits seconds for a leader (the writes of the sessions the node just
// drained away among them). Called as a drain ends.
//
// With an upstream cluster (Options.Upstream) it hands over nothing:
// those servers stay up when this node goes.
func (n *Node) StepDown(ctx context.Context) (int, error) {
	if n.o.Upstream {
		return 0, nil
	}
	me := n.nc.ConnectedServerName()
	streams := n.js.ListStreams(ctx)
	var led []string
	for info := range streams.Info() {
		if info.Cluster != nil && info.Cluster.Leader == me && len(info.Cluster.Replicas) > 0 {
			led = append(led, info.Config.Name)
		}
	}
	if err := streams.Err(); err != nil {
		return 0, fmt.Errorf("cluster: listing streams: %w", err)
	}
	moved := 0
	var errs []error
	for _, name := range led {
		if _, err := n.nc.RequestWithContext(ctx, "$JS.API.STREAM.LEADER.STEPDOWN."+name, nil); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			continue
		}
		moved++
	}
	return moved, errors.Join(errs...)
}
