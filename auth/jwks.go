package auth

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"
)

// jwksCache holds the keys of a JWKS URL. It has no goroutine: a refresh
// runs on the handshake that finds the keys stale or meets an unknown kid,
// at most one at a time and at most once per MinRefresh. Handshakes that
// arrive meanwhile use the keys they have, except those that have no key
// for their token, which wait for the refresh in flight.
type jwksCache struct {
	cfg    JWKSConfig
	client *http.Client
	log    *slog.Logger
	now    func() time.Time

	mu        sync.Mutex
	keys      []vkey
	fetched   time.Time     // last successful fetch
	attempted time.Time     // last fetch started
	inflight  chan struct{} // closed when the fetch in flight ends
}

// get returns the current keys, refreshing them first when they are stale
// (older than Refresh) or when wantKid names none of them. A refresh that
// fails keeps the old keys.
func (c *jwksCache) get(ctx context.Context, wantKid string) []vkey {
	c.mu.Lock()
	keys := c.keys
	stale := c.now().Sub(c.fetched) >= c.cfg.Refresh
	c.mu.Unlock()
	missing := len(keys) == 0 || (wantKid != "" && !hasKid(keys, wantKid))
	if !stale && !missing {
		return keys
	}
	// A stale set is refreshed by one handshake; the others carry on
	// with it. A missing key is worth waiting for.
	return c.refresh(ctx, missing)
}

func hasKid(keys []vkey, kid string) bool {
	for _, k := range keys {
		if k.kid == kid {
			return true
		}
	}
	return false
}

// refresh fetches the key set unless a fetch is in flight (then it waits
// for it when wait is set) or one started less than MinRefresh ago. It
// returns the keys held afterwards.
func (c *jwksCache) refresh(ctx context.Context, wait bool) []vkey {
	c.mu.Lock()
	if ch := c.inflight; ch != nil {
		keys := c.keys
		c.mu.Unlock()
		if !wait {
			return keys
		}
		select {
		case <-ch:
		case <-ctx.Done():
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.keys
	}
	now := c.now()
	if !c.attempted.IsZero() && now.Sub(c.attempted) < c.cfg.MinRefresh {
		keys := c.keys
		c.mu.Unlock()
		return keys
	}
	c.attempted = now
	ch := make(chan struct{})
	c.inflight = ch
	c.mu.Unlock()

	// The fetch serves every handshake waiting on it, so it does not end
	// with the one that started it.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.Timeout)
	keys, err := c.fetch(fctx)
	cancel()

	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.log.Warn("auth: JWKS refresh failed; keeping the previous keys", "url", c.cfg.URL, "err", err)
	} else {
		c.keys, c.fetched = keys, c.now()
		c.log.Info("auth: JWKS refreshed", "url", c.cfg.URL, "keys", len(keys))
	}
	c.inflight = nil
	close(ch)
	return c.keys
}

func (c *jwksCache) fetch(ctx context.Context) ([]vkey, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.cfg.URL, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json, application/jwk-set+json")
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %s", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSSize+1))
	if err != nil {
		return nil, err
	}
	if len(body) > maxJWKSSize {
		return nil, fmt.Errorf("key set larger than %d bytes", maxJWKSSize)
	}
	return parseJWKS(body)
}
