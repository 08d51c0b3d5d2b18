package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"
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
// ([cluster.Node.Status]: nodes, their leases, sessions per node), for
// the metrics listener; nil when the gateway runs alone.
func (g *Gateway) ClusterStatusHandler() http.Handler {
	if g.node == nil {
		return nil
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		json.NewEncoder(w).Encode(g.node.Status())
	})
}
