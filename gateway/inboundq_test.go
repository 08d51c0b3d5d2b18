package gateway

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// runningQueues returns queues bounded by limit whose goroutines end
// with the test.
func runningQueues(t *testing.T, limit int) *inboundQueues {
	done := make(chan struct{})
	var wg sync.WaitGroup
	t.Cleanup(func() { close(done) })
	t.Cleanup(wg.Wait)
	return newInboundQueues(limit, done, func(f func()) bool { wg.Go(f); return true })
}

// TestInboundQueuesPerSession: a session's frames and its end are
// dispatched in the order they came, one at a time, while a frame of
// another session that waits (for the store, say) holds up nothing but
// its own session's.
func TestInboundQueuesPerSession(t *testing.T) {
	q := runningQueues(t, 8)

	var mu sync.Mutex
	var got []string
	note := func(s string) func() {
		return func() { mu.Lock(); got = append(got, s); mu.Unlock() }
	}
	release := make(chan struct{})
	waiting := make(chan struct{})
	if !q.take("s1", func() { close(waiting); <-release; note("s1 f1")() }) {
		t.Fatal("s1's first frame refused")
	}
	<-waiting
	for _, it := range []string{"f2", "f3"} {
		if !q.take("s1", note("s1 "+it)) {
			t.Fatalf("s1's %s refused", it)
		}
	}
	q.ended("s1", note("s1 ended"))
	s2 := make(chan struct{})
	q.take("s2", note("s2 f1"))
	q.ended("s2", func() { note("s2 ended")(); close(s2) })
	select {
	case <-s2:
	case <-time.After(5 * time.Second):
		t.Fatal("s2's frame and end waited behind s1's frame in dispatch")
	}
	close(release)
	for deadline := time.Now().Add(5 * time.Second); ; <-time.After(5 * time.Millisecond) {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n == 6 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dispatched %d of 6", n)
		}
	}
	want := []string{"s2 f1", "s2 ended", "s1 f1", "s1 f2", "s1 f3", "s1 ended"}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(got, want) {
		t.Fatalf("dispatched %v, want %v", got, want)
	}
}

// TestInboundQueuesBound: frames taken and not yet dispatched, in
// dispatch included and all sessions together, are bounded; the next is
// refused (its sender answers 480), an end is not, and a dispatched
// frame makes room again.
func TestInboundQueuesBound(t *testing.T) {
	q := runningQueues(t, 4)
	release := make(chan struct{})
	dispatched := make(chan string, 8)
	for i := range 4 {
		s := fmt.Sprintf("s%d", i%2)
		if !q.take(s, func() { <-release; dispatched <- s }) {
			t.Fatalf("frame %d refused under the bound", i)
		}
	}
	if q.take("s9", func() {}) {
		t.Fatal("a fifth frame was taken over a bound of 4")
	}
	ended := make(chan struct{})
	q.ended("s9", func() { close(ended) })
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("an end was not dispatched past a full queue")
	}
	release <- struct{}{}
	<-dispatched
	for deadline := time.Now().Add(5 * time.Second); !q.take("s9", func() {}); <-time.After(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no room after a frame was dispatched")
		}
	}
	close(release)
}

// TestInboundQueuesShutDown: once the gateway shuts down, what is queued
// is dropped, and a queue that cannot start is forgotten with its count.
func TestInboundQueuesShutDown(t *testing.T) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	q := newInboundQueues(2, done, func(f func()) bool { wg.Go(f); return true })
	release, started := make(chan struct{}), make(chan struct{})
	ran := make(chan string, 4)
	q.take("s1", func() { close(started); <-release; ran <- "f1" })
	q.take("s1", func() { ran <- "f2" })
	<-started
	close(done)
	close(release)
	wg.Wait()
	if r := <-ran; r != "f1" || len(ran) != 0 {
		t.Fatalf("ran %q and %d more after the shutdown, want f1 alone", r, len(ran))
	}
	stopped := newInboundQueues(1, make(chan struct{}), func(func()) bool { return false })
	stopped.take("s1", func() { t.Error("dispatched while shutting down") })
	if !stopped.take("s1", func() { t.Error("dispatched while shutting down") }) {
		t.Fatal("a queue that did not start kept its frame's count")
	}
}
