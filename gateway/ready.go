package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jsonrtc/jsonrtc/cluster"
)

// readyTimeout bounds /readyz's probe of the store: a JetStream that
// lost its quorum does not answer at all.
const readyTimeout = 2 * time.Second

// serveReady answers /readyz: 200 "ready" when the gateway can take
// sessions, else 503 with the reason, for a load balancer to send new
// clients elsewhere (docs/cluster.md "Operations"). Unlike /healthz it
// asks the store, and the SIP side when there is one.
func (g *Gateway) serveReady(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
	defer cancel()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if err := g.notReady(ctx); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte("not ready: " + err.Error() + "\n"))
		return
	}
	w.Write([]byte("ready\n"))
}

// isCutOff reports whether this node is cut off from its cluster
// (watchCutOff).
func (g *Gateway) isCutOff() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.cutOff
}

// notReady says why the gateway cannot take sessions now, or nil.
func (g *Gateway) notReady(ctx context.Context) error {
	g.mu.Lock()
	draining, cutOff := g.draining, g.cutOff
	g.mu.Unlock()
	if draining {
		return errors.New("draining")
	}
	if cutOff {
		return errors.New("cut off from the cluster")
	}
	if g.ready != nil {
		if err := g.ready(ctx); err != nil {
			return err
		}
	}
	if g.sip != nil && g.sip.Addr("udp") == "" && g.sip.Addr("tcp") == "" && g.sip.Addr("tls") == "" {
		return errors.New("sip: no listener up")
	}
	return nil
}

// ClusterStatusHandler serves this node's view of the cluster as JSON
// (a NodeView: nodes, their leases, sessions per node, and this node's
// own figures), for the metrics listener; with ?all, every node's
// (a ClusterView). Nil when the gateway runs alone.
func (g *Gateway) ClusterStatusHandler() http.Handler {
	if g.node == nil {
		return nil
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		if _, all := r.URL.Query()["all"]; all {
			json.NewEncoder(w).Encode(g.clusterView(r.Context()))
			return
		}
		json.NewEncoder(w).Encode(g.nodeView())
	})
}

// NodeView is a node's answer to /cluster/status: its view of the
// cluster and what only it knows of itself. The directory's count of a
// node's sessions (in every node's view) and the sessions the node holds
// differ for a moment as sessions start, end and move; for longer, they
// point at a directory entry whose session is gone, or a session the
// directory does not name.
type NodeView struct {
	cluster.Status
	// Held counts the sessions this node holds: connected, or waiting
	// for their clients' resume.
	Held int `json:"held"`
	// Calls counts the calls this node hosts whose records are in the
	// store (another node goes on with them if this one dies).
	Calls    int  `json:"calls"`
	Draining bool `json:"draining,omitempty"`
	CutOff   bool `json:"cut_off,omitempty"`
	// Error, in a ClusterView's peers, says why the node gave no view.
	Error string `json:"error,omitempty"`
}

// ClusterView is /cluster/status?all: the asked node's view, every
// other node's it names (asked over the cluster's NATS, peerStatusWait
// each), and where they disagree: what an operator compares by hand
// otherwise, node by node (docs/cluster.md "Operations").
type ClusterView struct {
	NodeView
	Peers []NodeView `json:"peers"`
	// Disagree lists, a line each, a node some view has up and another
	// down, a node up in some view that did not answer, and a node's
	// held sessions that some view's directory counts otherwise.
	Disagree []string `json:"disagree,omitempty"`
}

// kindStatus: a peer asking for this node's view (ClusterView).
const kindStatus = "status"

// peerStatusWait bounds the wait for each peer's view: a node that
// does not answer within it is listed with the error.
const peerStatusWait = 1500 * time.Millisecond

// nodeView is this node's view and figures.
func (g *Gateway) nodeView() NodeView {
	v := NodeView{Status: g.node.Status()}
	g.mu.Lock()
	v.Held, v.Draining, v.CutOff = len(g.sessions), g.draining, g.cutOff
	g.mu.Unlock()
	if g.repl != nil {
		g.repl.mu.Lock()
		v.Calls = len(g.repl.calls) - len(g.repl.ringing)
		g.repl.mu.Unlock()
	}
	return v
}

// onStatus answers a peer's kindStatus request with this node's view.
func (g *Gateway) onStatus([]byte) []byte {
	data, _ := json.Marshal(g.nodeView())
	return data
}

// clusterView gathers every node's view: this one's, and those of the
// nodes it names, asked at once.
func (g *Gateway) clusterView(ctx context.Context) ClusterView {
	cv := ClusterView{NodeView: g.nodeView()}
	var names []string
	for _, n := range cv.Nodes {
		if n.Name != cv.Node {
			names = append(names, n.Name)
		}
	}
	cv.Peers = make([]NodeView, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cv.Peers[i] = g.peerView(ctx, name)
		}()
	}
	wg.Wait()
	cv.Disagree = disagreements(append([]NodeView{cv.NodeView}, cv.Peers...))
	return cv
}

// peerView asks node for its view.
func (g *Gateway) peerView(ctx context.Context, node string) NodeView {
	ctx, cancel := context.WithTimeout(ctx, peerStatusWait)
	defer cancel()
	v := NodeView{Status: cluster.Status{Node: node}}
	data, err := g.node.Request(ctx, node, kindStatus, nil)
	if err == nil {
		err = json.Unmarshal(data, &v)
	}
	if err == nil && v.Node != node {
		err = fmt.Errorf("answered as %q", v.Node)
	}
	if err != nil {
		// An earlier version serves no status: it is not reachable here.
		return NodeView{Status: cluster.Status{Node: node}, Error: err.Error()}
	}
	return v
}

// disagreements compares views (those with an Error gave none): a node
// up in one and down in another, a node up in some view that gave none,
// a node's held sessions against each view's directory count of them.
func disagreements(views []NodeView) []string {
	var out []string
	answered := map[string]NodeView{}
	var names []string
	seen := map[string]bool{}
	for _, v := range views {
		if v.Error == "" {
			answered[v.Node] = v
		}
		for _, n := range v.Nodes {
			if !seen[n.Name] {
				seen[n.Name] = true
				names = append(names, n.Name)
			}
		}
	}
	slices.Sort(names)
	for _, name := range names {
		var up, down []string
		counts := map[int][]string{}
		for _, v := range views {
			if v.Error != "" {
				continue
			}
			for _, n := range v.Nodes {
				if n.Name != name {
					continue
				}
				if n.Up {
					up = append(up, v.Node)
				} else {
					down = append(down, v.Node)
				}
				counts[n.Sessions] = append(counts[n.Sessions], v.Node)
			}
		}
		self, ok := answered[name]
		switch {
		case len(up) > 0 && len(down) > 0:
			out = append(out, fmt.Sprintf("%s: seen up by %s, down by %s", name, strings.Join(up, ", "), strings.Join(down, ", ")))
		case len(up) > 0 && !ok:
			out = append(out, fmt.Sprintf("%s: seen up by %s, gave no view of its own", name, strings.Join(up, ", ")))
		}
		if !ok {
			continue
		}
		for _, c := range slices.Sorted(maps.Keys(counts)) {
			if c != self.Held {
				out = append(out, fmt.Sprintf("%s: holds %d sessions, the directory names %d there as seen by %s", name, self.Held, c, strings.Join(counts[c], ", ")))
			}
		}
	}
	return out
}
