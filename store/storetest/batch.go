package storetest

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/jsonrtc/jsonrtc/store"
)

// BatchStore is a store that writes in batches.
type BatchStore interface {
	store.Store
	store.Batcher
}

// Batch checks s against the store.Batcher contract: a batch's writes
// are made with the revisions it returns, and one conflict among them
// makes none of them. s must be empty.
func Batch(t *testing.T, s BatchStore) {
	ctx := context.Background()
	old, err := s.Create(ctx, "b.old", []byte("0"))
	if err != nil {
		t.Fatal(err)
	}
	ws := []store.Write{{Key: "b.one", Value: []byte("1")}, {Key: "b.old", Value: []byte("2"), Rev: old}, {Key: "b.two", Value: []byte("3")}}
	revs, err := s.WriteBatch(ctx, ws)
	if err != nil || len(revs) != len(ws) {
		t.Fatalf("WriteBatch = %v, %v", revs, err)
	}
	for i, w := range ws {
		v, rev, err := s.Get(ctx, w.Key)
		if err != nil || !bytes.Equal(v, w.Value) || rev != revs[i] {
			t.Fatalf("Get(%s) = %q, %d, %v; want %q, %d", w.Key, v, rev, err, w.Value, revs[i])
		}
		if i > 0 && revs[i] <= revs[i-1] {
			t.Fatalf("revisions %v do not grow", revs)
		}
	}
	// The revisions returned are the ones to write over.
	if _, err := s.Update(ctx, "b.one", []byte("4"), revs[0]); err != nil {
		t.Fatalf("Update over a batch's revision: %v", err)
	}
	for _, bad := range [][]store.Write{
		{{Key: "b.three", Value: []byte("x")}, {Key: "b.old", Value: []byte("x"), Rev: old}}, // a stale revision
		{{Key: "b.three", Value: []byte("x")}, {Key: "b.two", Value: []byte("x")}},           // a create over a key
		{{Key: "b.three", Value: []byte("x")}, {Key: "b.none", Value: []byte("x"), Rev: 1}},  // an update of no key
	} {
		if _, err := s.WriteBatch(ctx, bad); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("WriteBatch with a conflict: %v, want ErrConflict", err)
		}
		if _, _, err := s.Get(ctx, "b.three"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("a batch refused made a write: Get = %v", err)
		}
		if v, _, _ := s.Get(ctx, "b.old"); string(v) != "2" {
			t.Fatalf("a batch refused made a write: b.old = %q", v)
		}
	}
	// Deletions: at a revision, and of whatever is there (a missing key
	// included), with a write beside them.
	_, oldRev, _ := s.Get(ctx, "b.old")
	_, twoRev, _ := s.Get(ctx, "b.two")
	for _, bad := range [][]store.Write{
		{{Key: "b.three", Value: []byte("x")}, {Key: "b.old", Rev: old, Delete: true}},  // a stale revision
		{{Key: "b.three", Value: []byte("x")}, {Key: "b.none", Rev: 1, Delete: true}},   // a missing key at a revision
		{{Key: "b.two", Rev: twoRev, Delete: true}, {Key: "b.old", Value: []byte("x")}}, // a create over a key
	} {
		if _, err := s.WriteBatch(ctx, bad); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("WriteBatch with a conflicting deletion: %v, want ErrConflict", err)
		}
		if _, _, err := s.Get(ctx, "b.two"); err != nil {
			t.Fatalf("a batch refused made a deletion: Get = %v", err)
		}
		if _, _, err := s.Get(ctx, "b.three"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("a batch refused made a write: Get = %v", err)
		}
	}
	revs, err = s.WriteBatch(ctx, []store.Write{
		{Key: "b.old", Rev: oldRev, Delete: true},
		{Key: "b.two", Delete: true},
		{Key: "b.none", Delete: true},
		{Key: "b.four", Value: []byte("4")},
	})
	if err != nil || len(revs) != 4 {
		t.Fatalf("WriteBatch of deletions = %v, %v", revs, err)
	}
	for _, k := range []string{"b.old", "b.two", "b.none"} {
		if _, _, err := s.Get(ctx, k); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Get(%s) after its deletion in a batch: %v", k, err)
		}
	}
	if v, rev, err := s.Get(ctx, "b.four"); err != nil || string(v) != "4" || rev != revs[3] {
		t.Fatalf("Get(b.four) = %q, %d, %v; want 4, %d", v, rev, err, revs[3])
	}
	// A key deleted in a batch is created again, as after Delete.
	if _, err := s.Create(ctx, "b.two", []byte("again")); err != nil {
		t.Fatalf("Create after a batch's deletion: %v", err)
	}
	if keys, _ := s.Keys(ctx, "b."); len(keys) != 3 {
		t.Fatalf("Keys after the deletions: %q, want b.one, b.two, b.four", keys)
	}
}
