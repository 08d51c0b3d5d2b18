package presence

import (
	"strconv"
	"sync"
	"testing"

	"github.com/jsonrtc/jsonrtc/protocol"
)

// Sessions watching, publishing and leaving at once, with upstream
// events arriving meanwhile: no race, no deadlock, nothing left behind.
func TestConcurrentSessions(t *testing.T) {
	up := &fakeUpstream{}
	w := newWorld(t, Options{Upstream: up})
	users := []string{"a@example.com", "b@example.com", "c@example.com", "d@example.com"}
	var eps []*fakeEP
	for _, u := range users {
		eps = append(eps, w.connect(u), w.connect(u))
	}
	var wg sync.WaitGroup
	for i, e := range eps {
		wg.Go(func() {
			for n := range 200 {
				target := users[(i+n)%len(users)]
				sub := "w" + strconv.Itoa(n%7)
				switch n % 5 {
				case 0, 1:
					w.watch(e, sub, target, 0)
				case 2:
					w.publish(e, `{"status":"open","note":"n`+strconv.Itoa(n)+`"}`)
				case 3:
					w.unwatch(e, sub)
				case 4:
					w.watch(e, "u"+strconv.Itoa(n%3), "sip:remote"+strconv.Itoa(n%3)+"@sip.example.net", 0)
				}
				e.take()
			}
		})
	}
	wg.Go(func() {
		for n := 0; n < 400; n++ {
			up.mu.Lock()
			evs := append([]UpstreamEvents(nil), up.evs...)
			up.mu.Unlock()
			if len(evs) == 0 {
				continue
			}
			ev := evs[n%len(evs)]
			switch n % 4 {
			case 0:
				ev.Accepted()
			case 1, 2:
				ev.Notify(protocol.PresencePayload{Status: "open"})
			case 3:
				ev.Terminated("churn")
			}
		}
	})
	wg.Wait()
	for _, e := range eps {
		w.end(e)
	}
	if n := w.h.Subscriptions(); n != 0 {
		t.Fatalf("%d subscriptions left", n)
	}
	if n := w.h.Presentities(); n != 0 {
		t.Fatalf("%d presentities left", n)
	}
}
