package gateway

import (
	"context"
	"testing"

	"github.com/jsonrtc/jsonrtc/store"
)

// deleteWatch is a store that says whether a key was ever missing
// between two writes: a reader then would have found nothing.
type deleteWatch struct {
	store.Store
	deleted int
}

func (d *deleteWatch) Delete(ctx context.Context, key string) error {
	d.deleted++
	return d.Store.Delete(ctx, key)
}

// A record created over one of the same key left from before (a dead
// host's pointer of a fork, rewritten by its adopter) is written over,
// never deleted first: a fork's session resuming on another node in
// between found no call and told its user the call had ended.
func TestCreateOverNeverDeletes(t *testing.T) {
	ctx := context.Background()
	st := &deleteWatch{Store: store.NewMemory()}
	if _, err := st.Create(ctx, "k", []byte("old")); err != nil {
		t.Fatal(err)
	}
	rev, err := createOver(ctx, st, "k", []byte("new"))
	if err != nil {
		t.Fatal(err)
	}
	got, grev, err := st.Get(ctx, "k")
	if err != nil || string(got) != "new" || grev != rev {
		t.Fatalf("record %q at %d (createOver said %d), %v", got, grev, rev, err)
	}
	// The same record again: taken as it is, at its revision.
	if again, err := createOver(ctx, st, "k", []byte("new")); err != nil || again != rev {
		t.Fatalf("same record written again: %d, %v; want %d", again, err, rev)
	}
	if _, err := createOver(ctx, st, "fresh", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if st.deleted != 0 {
		t.Fatalf("%d deletes: a reader could have found no record", st.deleted)
	}
}
