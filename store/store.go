// Package store keeps replicated state: session records that let a
// client resume on another node when its node dies. [Memory] serves one
// node; a NATS JetStream key-value implementation serves a cluster. Both
// pass the contract suite in store_test.go.
//
// Values are opaque bytes: the store knows nothing of sessions, so it
// stays at the bottom of the import graph.
package store

import (
	"context"
	"errors"
	"sync"
)

// ErrNotFound is returned by Get for a key that is not there.
var ErrNotFound = errors.New("store: not found")

// Store is a key-value store of records.
type Store interface {
	// Put stores value under key, replacing what was there.
	Put(ctx context.Context, key string, value []byte) error
	// Get returns the value under key, or ErrNotFound.
	Get(ctx context.Context, key string) ([]byte, error)
	// Delete removes key; deleting a missing key is not an error.
	Delete(ctx context.Context, key string) error
	// Len returns the number of keys, for leak checks.
	Len(ctx context.Context) (int, error)
}

// Memory is a Store in this process's memory.
type Memory struct {
	mu sync.Mutex
	m  map[string][]byte
}

// NewMemory returns an empty Memory store.
func NewMemory() *Memory { return &Memory{m: map[string][]byte{}} }

// Put implements Store. It keeps its own copy of value.
func (s *Memory) Put(_ context.Context, key string, value []byte) error {
	v := append([]byte(nil), value...)
	s.mu.Lock()
	s.m[key] = v
	s.mu.Unlock()
	return nil
}

// Get implements Store.
func (s *Memory) Get(_ context.Context, key string) ([]byte, error) {
	s.mu.Lock()
	v, ok := s.m[key]
	s.mu.Unlock()
	if !ok {
		return nil, ErrNotFound
	}
	return append([]byte(nil), v...), nil
}

// Delete implements Store.
func (s *Memory) Delete(_ context.Context, key string) error {
	s.mu.Lock()
	delete(s.m, key)
	s.mu.Unlock()
	return nil
}

// Len implements Store.
func (s *Memory) Len(context.Context) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m), nil
}
