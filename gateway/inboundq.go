package gateway

import "sync"

// inboundQueues holds the frames forwarded to this node (the host of
// their interactions) and taken, and the ends of their sessions: in
// order per session, one session's after another's in no order. A
// session's frames are handled one at a time as its read loop handles
// them on its own node; different sessions' run side by side, as theirs
// do. One queue for all serialised every call hosted here behind each
// frame's wait for the store (a call record's write-ahead): across two
// nodes a call setup made four times the store requests of one node and
// stopped gaining from load past about 300 setups a second, one write
// at a time.
type inboundQueues struct {
	// start runs a session's queue on a goroutine of its own; false
	// when the gateway is shutting down (the queue is dropped).
	start func(func()) bool
	// done closes as the gateway shuts down: what is queued then is
	// dropped, as the frames a node shut down had taken.
	done <-chan struct{}
	// limit bounds the frames taken and not yet dispatched, all
	// sessions together; ends are not counted (one per session).
	limit int

	mu     sync.Mutex
	frames int
	queued map[string][]inboundItem // by session, while it has a runner
}

type inboundItem struct {
	do    func()
	frame bool // counted in frames
}

func newInboundQueues(limit int, done <-chan struct{}, start func(func()) bool) *inboundQueues {
	return &inboundQueues{start: start, done: done, limit: limit, queued: make(map[string][]inboundItem)}
}

// take queues session's frame; false when limit frames are waiting.
func (q *inboundQueues) take(session string, do func()) bool {
	return q.put(session, inboundItem{do: do, frame: true})
}

// ended queues session's end after its frames; never refused.
func (q *inboundQueues) ended(session string, do func()) {
	q.put(session, inboundItem{do: do})
}

func (q *inboundQueues) put(session string, it inboundItem) bool {
	q.mu.Lock()
	if it.frame {
		if q.frames >= q.limit {
			q.mu.Unlock()
			return false
		}
		q.frames++
	}
	items, running := q.queued[session]
	q.queued[session] = append(items, it)
	q.mu.Unlock()
	if !running && !q.start(func() { q.run(session) }) {
		q.drop(session)
	}
	return true
}

// run dispatches session's items until its queue is empty.
func (q *inboundQueues) run(session string) {
	for {
		select {
		case <-q.done:
			q.drop(session)
			return
		default:
		}
		q.mu.Lock()
		items := q.queued[session]
		if len(items) == 0 {
			delete(q.queued, session)
			q.mu.Unlock()
			return
		}
		it := items[0]
		items[0] = inboundItem{}
		q.queued[session] = items[1:]
		q.mu.Unlock()
		it.do()
		if it.frame {
			q.mu.Lock()
			q.frames--
			q.mu.Unlock()
		}
	}
}

// drop forgets session's queue, not run: the gateway is shutting down.
func (q *inboundQueues) drop(session string) {
	q.mu.Lock()
	for _, it := range q.queued[session] {
		if it.frame {
			q.frames--
		}
	}
	delete(q.queued, session)
	q.mu.Unlock()
}
