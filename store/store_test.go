package store

import (
	"bytes"
	"context"
	"errors"
	"testing"
)

// testStore is the contract every Store passes.
func testStore(t *testing.T, s Store) {
	ctx := context.Background()
	if _, err := s.Get(ctx, "a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get of a missing key: %v", err)
	}
	v := []byte("one")
	if err := s.Put(ctx, "a", v); err != nil {
		t.Fatal(err)
	}
	v[0] = 'X' // the store keeps its own copy
	got, err := s.Get(ctx, "a")
	if err != nil || !bytes.Equal(got, []byte("one")) {
		t.Fatalf("Get = %q, %v", got, err)
	}
	s.Put(ctx, "a", []byte("two"))
	if got, _ := s.Get(ctx, "a"); string(got) != "two" {
		t.Fatalf("after replace: %q", got)
	}
	s.Put(ctx, "b", nil)
	if n, _ := s.Len(ctx); n != 2 {
		t.Fatalf("Len = %d", n)
	}
	if err := s.Delete(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "missing"); err != nil {
		t.Fatalf("Delete of a missing key: %v", err)
	}
	if _, err := s.Get(ctx, "a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after Delete: %v", err)
	}
}

func TestMemory(t *testing.T) { testStore(t, NewMemory()) }
