package natsstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/store"
	"github.com/jsonrtc/jsonrtc/store/natsstore"
	"github.com/jsonrtc/jsonrtc/store/storetest"
)

func start(t *testing.T, dir string, o natsstore.Options) *natsstore.Embedded {
	t.Helper()
	e, err := natsstore.Start(context.Background(), &natsstore.EmbeddedOptions{Dir: dir, Store: o})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestContract(t *testing.T) {
	for _, mem := range []bool{false, true} {
		name := "file"
		if mem {
			name = "memory"
		}
		t.Run(name, func(t *testing.T) {
			e := start(t, t.TempDir(), natsstore.Options{Memory: mem})
			defer e.Close()
			storetest.Run(t, e)
		})
	}
}

// TestSurvivesRestart: what was written is there, with its revision, after
// the server restarts on the same directory.
func TestSurvivesRestart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	e := start(t, dir, natsstore.Options{})
	rev, err := e.Create(ctx, "session.x", []byte("state"))
	if err != nil {
		t.Fatal(err)
	}
	e.Close()
	e = start(t, dir, natsstore.Options{})
	defer e.Close()
	v, got, err := e.Get(ctx, "session.x")
	if err != nil || string(v) != "state" || got != rev {
		t.Fatalf("after restart: %q, %d, %v; want state, %d", v, got, err, rev)
	}
	if _, err := e.Update(ctx, "session.x", []byte("next"), rev); err != nil {
		t.Fatalf("Update after restart: %v", err)
	}
}

func TestMaxValueSize(t *testing.T) {
	e := start(t, t.TempDir(), natsstore.Options{MaxValueBytes: 1024})
	defer e.Close()
	if _, err := e.Create(context.Background(), "big", make([]byte, 1025)); !errors.Is(err, store.ErrTooLarge) {
		t.Fatalf("Create over the bound: %v", err)
	}
	if _, err := e.Create(context.Background(), "fits", make([]byte, 1024)); err != nil {
		t.Fatalf("Create at the bound: %v", err)
	}
}

// TestTTL: a value not written again within the TTL is gone.
func TestTTL(t *testing.T) {
	ctx := context.Background()
	e := start(t, t.TempDir(), natsstore.Options{TTL: time.Second, Memory: true})
	defer e.Close()
	if _, err := e.Create(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		// Expiry is the server's own timer: there is no event to wait on.
		if _, _, err := e.Get(ctx, "k"); errors.Is(err, store.ErrNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("value outlived its TTL by 9s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestDirInUse: a second server on a directory in use fails at once
// (JetStream itself would let both run, and corrupt the files).
func TestDirInUse(t *testing.T) {
	dir := t.TempDir()
	e := start(t, dir, natsstore.Options{})
	if e2, err := natsstore.Start(context.Background(), &natsstore.EmbeddedOptions{Dir: dir}); err == nil {
		e2.Close()
		t.Fatal("a second server started on a directory in use")
	}
	e.Close()
	start(t, dir, natsstore.Options{}).Close()
}

// TestNoBatchAlone: a bucket of one replica takes no batches (its server
// would stage each in files of its own): the caller writes one by one.
func TestNoBatchAlone(t *testing.T) {
	e := start(t, t.TempDir(), natsstore.Options{})
	defer e.Close()
	if _, err := e.WriteBatch(context.Background(), []store.Write{{Key: "a", Value: []byte("1")}}); !errors.Is(err, store.ErrNoBatch) {
		t.Fatalf("WriteBatch = %v, want ErrNoBatch", err)
	}
}
