package gateway

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/store"
)

// callOpsStore counts the requests made of it for call records: the
// operations, and the batches holding one.
type callOpsStore struct {
	*store.Memory
	mu  sync.Mutex
	ops []string
}

func (s *callOpsStore) note(op, key string) {
	if strings.HasPrefix(key, callPrefix) {
		s.mu.Lock()
		s.ops = append(s.ops, op)
		s.mu.Unlock()
	}
}

func (s *callOpsStore) Create(ctx context.Context, key string, v []byte) (uint64, error) {
	s.note("create", key)
	return s.Memory.Create(ctx, key, v)
}

func (s *callOpsStore) Update(ctx context.Context, key string, v []byte, rev uint64) (uint64, error) {
	s.note("update", key)
	return s.Memory.Update(ctx, key, v, rev)
}

func (s *callOpsStore) Get(ctx context.Context, key string) ([]byte, uint64, error) {
	s.note("get", key)
	return s.Memory.Get(ctx, key)
}

func (s *callOpsStore) Delete(ctx context.Context, key string) error {
	s.note("delete", key)
	return s.Memory.Delete(ctx, key)
}

func (s *callOpsStore) WriteBatch(ctx context.Context, ws []store.Write) ([]uint64, error) {
	for _, w := range ws {
		if strings.HasPrefix(w.Key, callPrefix) {
			s.note("batch", w.Key)
			break
		}
	}
	return s.Memory.WriteBatch(ctx, ws)
}

func (s *callOpsStore) taken() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ops := s.ops
	s.ops = nil
	return ops
}

// waitNoCallKeys waits until st holds no call record.
func waitNoCallKeys(t *testing.T, st store.Store) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; <-time.After(20 * time.Millisecond) {
		keys, _ := st.Keys(context.Background(), callPrefix)
		if len(keys) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("call records left after the call's end: %q", keys)
		}
	}
}

// TestCallRecordsBatched: a web call's record and its callee's pointer
// are created as one batch, its end deletes both as one, and nothing is
// read: a call setup made seven requests of the store, one by one
// (docs/benchmarks.md "Cluster: idle memory and call setups").
func TestCallRecordsBatched(t *testing.T) {
	st := &callOpsStore{Memory: store.NewMemory()}
	g, url := newGatewayOpts(t, nil, Options{Store: st})
	a, _, _ := aliceCallsBob(t, url, url)
	callAnswered(t, g, a.sid, "c1")
	aliceHangsUp(a)
	waitNoCallKeys(t, st)
	ops := strings.Join(st.taken(), " ")
	// The record read by callAnswered, and the waits' listings, are the
	// test's own.
	ops = strings.ReplaceAll(ops, "get ", "")
	ops = strings.TrimSuffix(ops, " get")
	if ops != "batch update batch" {
		t.Fatalf("call records' requests: %q, want the start's batch, the answer's update and the end's batch", ops)
	}
}

// TestCallEndBatchAfterAdoption: the end of a call whose record another
// node has taken meanwhile (this one taken for dead) deletes nothing:
// the batch's deletion at the revision written here is refused, and
// one by one the record is found another's.
func TestCallEndBatchAfterAdoption(t *testing.T) {
	st := &callOpsStore{Memory: store.NewMemory()}
	g, url := newGatewayOpts(t, nil, Options{Store: st})
	a, _, _ := aliceCallsBob(t, url, url)
	rec, ck, rev := callAnswered(t, g, a.sid, "c1")
	rec.Host = "n9"
	data, _ := json.Marshal(rec)
	if _, err := st.Memory.Update(context.Background(), ck, data, rev); err != nil {
		t.Fatal(err)
	}
	st.taken()
	aliceHangsUp(a)
	for deadline := time.Now().Add(10 * time.Second); ; <-time.After(20 * time.Millisecond) {
		if ops := strings.Join(st.taken(), " "); strings.Contains(ops, "batch get") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the end's batch was not refused and its record read")
		}
	}
	if got, _, err := st.Memory.Get(context.Background(), ck); err != nil || string(got) != string(data) {
		t.Fatalf("the record another node adopted: %q, %v; want it left as that node wrote it", got, err)
	}
	if _, _, err := st.Memory.Get(context.Background(), callKey(a.sid, "c1")); err != nil {
		t.Fatal(err)
	}
}

// hangingBatchStore leaves its first batch of call records unanswered
// (a stream leader handing over at a drain), as callOpsStore otherwise.
type hangingBatchStore struct {
	*callOpsStore
	hung bool
}

func (s *hangingBatchStore) WriteBatch(ctx context.Context, ws []store.Write) ([]uint64, error) {
	s.mu.Lock()
	hang := !s.hung && strings.HasPrefix(ws[0].Key, callPrefix)
	s.hung = s.hung || hang
	s.mu.Unlock()
	if hang {
		s.note("batch", ws[0].Key)
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return s.callOpsStore.WriteBatch(ctx, ws)
}

// TestCallRecordsBatchUnansweredMadeAgain: a batch of call records the
// store leaves unanswered is made again after writeAttempt, as a batch.
// Before, it was waited out whole (storeTimeout, 5 s) and then written
// one by one: at a drain the SIP calls' write-aheads waiting behind it
// passed their bound and their adoptions failed (test/cluster
// TestDrainDuringSIPCalls in CI).
func TestCallRecordsBatchUnansweredMadeAgain(t *testing.T) {
	st := &hangingBatchStore{callOpsStore: &callOpsStore{Memory: store.NewMemory()}}
	g, url := newGatewayOpts(t, nil, Options{Store: st})
	a, _, _ := aliceCallsBob(t, url, url)
	callAnswered(t, g, a.sid, "c1")
	var ops []string
	for _, op := range st.taken() {
		if op != "get" { // callAnswered's reads
			ops = append(ops, op)
		}
	}
	if len(ops) < 2 || ops[0] != "batch" || ops[1] != "batch" {
		t.Fatalf("call records' requests: %q, want the start's batch made again as a batch", ops)
	}
}
