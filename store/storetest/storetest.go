// Package storetest is the contract every store.Store passes: run
// [Run] from each implementation's tests.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/jsonrtc/jsonrtc/store"
)

// Run checks s against the store.Store contract. s must be empty.
func Run(t *testing.T, s store.Store) {
	t.Run("CreateGetDelete", func(t *testing.T) { createGetDelete(t, s) })
	t.Run("CompareAndSet", func(t *testing.T) { compareAndSet(t, s) })
	t.Run("OneOwner", func(t *testing.T) { oneOwner(t, s) })
}

func createGetDelete(t *testing.T, s store.Store) {
	ctx := context.Background()
	if _, _, err := s.Get(ctx, "a"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get of a missing key: %v", err)
	}
	v := []byte("one")
	rev, err := s.Create(ctx, "a", v)
	if err != nil || rev == 0 {
		t.Fatalf("Create = %d, %v", rev, err)
	}
	v[0] = 'X' // the store keeps its own copy
	got, grev, err := s.Get(ctx, "a")
	if err != nil || !bytes.Equal(got, []byte("one")) || grev != rev {
		t.Fatalf("Get = %q, %d, %v; want one, %d", got, grev, err, rev)
	}
	if _, err := s.Create(ctx, "b", nil); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Len(ctx); n != 2 || err != nil {
		t.Fatalf("Len = %d, %v", n, err)
	}
	if sz, ok := s.(store.Sizer); ok {
		if n, b, err := sz.Size(ctx); err != nil || n < 2 || b < 3 {
			t.Fatalf("Size = %d records, %d bytes, %v; want 2 records of 3 bytes at least", n, b, err)
		}
	}
	if _, err := s.Create(ctx, "other.a", nil); err != nil {
		t.Fatal(err)
	}
	if keys, err := s.Keys(ctx, "a"); err != nil || len(keys) != 1 || keys[0] != "a" {
		t.Fatalf("Keys(a) = %q, %v", keys, err)
	}
	if keys, err := s.Keys(ctx, "other."); err != nil || len(keys) != 1 || keys[0] != "other.a" {
		t.Fatalf("Keys(other.) = %q, %v", keys, err)
	}
	s.Delete(ctx, "other.a")
	if err := s.Delete(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "missing"); err != nil {
		t.Fatalf("Delete of a missing key: %v", err)
	}
	if _, _, err := s.Get(ctx, "a"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get after Delete: %v", err)
	}
	// A deleted key can be created again: a session id is never reused,
	// but the contract should not depend on it.
	if _, err := s.Create(ctx, "a", []byte("again")); err != nil {
		t.Fatalf("Create after Delete: %v", err)
	}
	s.Delete(ctx, "a")
	s.Delete(ctx, "b")
	if n, _ := s.Len(ctx); n != 0 {
		t.Fatalf("Len after deleting everything = %d", n)
	}
}

func compareAndSet(t *testing.T, s store.Store) {
	ctx := context.Background()
	rev, err := s.Create(ctx, "k", []byte("v1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, "k", []byte("other")); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("Create over a value: %v", err)
	}
	rev2, err := s.Update(ctx, "k", []byte("v2"), rev)
	if err != nil || rev2 <= rev {
		t.Fatalf("Update = %d, %v (after %d)", rev2, err, rev)
	}
	if _, err := s.Update(ctx, "k", []byte("stale"), rev); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("Update with a stale revision: %v", err)
	}
	if got, grev, _ := s.Get(ctx, "k"); string(got) != "v2" || grev != rev2 {
		t.Fatalf("after Update: %q, %d", got, grev)
	}
	s.Delete(ctx, "k")
	if _, err := s.Update(ctx, "k", []byte("v3"), rev2); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("Update of a deleted key: %v", err)
	}
	if _, err := s.Update(ctx, "never", []byte("v"), 1); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("Update of a missing key: %v", err)
	}
	s.Delete(ctx, "k")
}

// oneOwner has writers race to take one record over from the same
// revision: exactly one wins.
func oneOwner(t *testing.T, s store.Store) {
	ctx := context.Background()
	rev, err := s.Create(ctx, "owned", []byte("node0"))
	if err != nil {
		t.Fatal(err)
	}
	const writers = 8
	var wg sync.WaitGroup
	wins := make(chan int, writers)
	for i := range writers {
		wg.Go(func() {
			if _, err := s.Update(ctx, "owned", []byte{byte('a' + i)}, rev); err == nil {
				wins <- i
			} else if !errors.Is(err, store.ErrConflict) {
				t.Errorf("writer %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	close(wins)
	if n := len(wins); n != 1 {
		t.Fatalf("%d writers took the record over from one revision", n)
	}
	s.Delete(ctx, "owned")
}
