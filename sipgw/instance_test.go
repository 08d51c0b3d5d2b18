package sipgw

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The secret file is created once and read back: user agents built from
// the same configuration (a restart) derive the same instance and
// Contact user for an identity, and others for another identity or
// another node's instance_id.
func TestIdentityInstanceStable(t *testing.T) {
	file := filepath.Join(t.TempDir(), "instance.secret")
	cfg := Config{Listen: ListenConfig{UDP: "127.0.0.1:0"}, Domain: "example.com", InstanceSecretFile: file}
	ua := func(c Config) *UserAgent {
		t.Helper()
		g, err := New(c, nil)
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	a, b := ua(cfg), ua(cfg)
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("secret file: %v %v", fi, err)
	}
	urn, user := a.identityInstance("alice@example.com")
	if u2, us2 := b.identityInstance("alice@example.com"); u2 != urn || us2 != user {
		t.Fatalf("after a restart: %s %s, want %s %s", u2, us2, urn, user)
	}
	if !strings.HasPrefix(urn, "urn:uuid:") || len(urn) != len("urn:uuid:")+36 || urn[len("urn:uuid:")+14] != '8' || !strings.HasPrefix(user, "r") {
		t.Fatalf("instance %s, user %s", urn, user)
	}
	if u2, us2 := a.identityInstance("bob@example.com"); u2 == urn || us2 == user {
		t.Fatal("another identity, the same instance")
	}
	cfg.InstanceID = "urn:uuid:00000000-0000-4000-8000-000000000001"
	if u2, _ := ua(cfg).identityInstance("alice@example.com"); u2 == urn {
		t.Fatal("another node, the same instance")
	}
	if err := os.WriteFile(file, []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(cfg, nil); err == nil || !strings.Contains(err.Error(), "instance_secret_file") {
		t.Fatalf("short secret file: %v", err)
	}
}
