package sipgw

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// A registration's +sip.instance (RFC 5626 section 4.1) and Contact user
// are derived from a deployment secret and the web identity, so that
// they stay the same across a restart of the gateway: the registrar then
// replaces the identity's binding (and keeps its GRUU, RFC 5627) instead
// of adding a second one next to the stale one. The Contact user, which
// routes incoming INVITEs to the identity, stays unguessable without the
// secret.

// minInstanceSecret is the shortest secret accepted, in bytes.
const minInstanceSecret = 16

// loadInstanceSecret returns the secret of cfg: instance_secret, else the
// content of instance_secret_file (created with a random secret when it
// does not exist), else instance_id, else a random one for this process
// only (then every restart registers new instances).
func loadInstanceSecret(cfg Config) ([]byte, error) {
	switch {
	case cfg.InstanceSecret != "":
		return []byte(cfg.InstanceSecret), nil
	case cfg.InstanceSecretFile != "":
		return readOrCreateSecret(cfg.InstanceSecretFile)
	case cfg.InstanceID != "":
		return []byte(cfg.InstanceID), nil
	}
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return b, nil
}

func readOrCreateSecret(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		raw := make([]byte, 32)
		_, _ = rand.Read(raw)
		s := []byte(hex.EncodeToString(raw) + "\n")
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) {
			// Another process created it first: use its secret.
			return readOrCreateSecret(path)
		}
		if err != nil {
			return nil, fmt.Errorf("sipgw: instance_secret_file: %w", err)
		}
		_, err = f.Write(s)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, fmt.Errorf("sipgw: instance_secret_file: %w", err)
		}
		b = s
	} else if err != nil {
		return nil, fmt.Errorf("sipgw: instance_secret_file: %w", err)
	}
	secret := strings.TrimSpace(string(b))
	if len(secret) < minInstanceSecret {
		return nil, fmt.Errorf("sipgw: instance_secret_file %s: shorter than %d bytes", path, minInstanceSecret)
	}
	return []byte(secret), nil
}

// identityInstance returns identity's +sip.instance (a urn:uuid, version
// 8 of RFC 9562: custom, from HMAC-SHA256) and Contact user. The node's
// instance_id is mixed in: nodes of one deployment that share the secret
// but not the instance_id register distinct instances, so that one does
// not replace another's binding of the same identity.
func (g *UserAgent) identityInstance(identity string) (urn, user string) {
	mac := hmac.New(sha256.New, g.secret)
	mac.Write([]byte(g.cfg.InstanceID))
	mac.Write([]byte{0})
	mac.Write([]byte(identity))
	b := mac.Sum(nil)
	b[6] = b[6]&0x0f | 0x80
	b[8] = b[8]&0x3f | 0x80
	urn = fmt.Sprintf("urn:uuid:%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
	return urn, "r" + hex.EncodeToString(b[16:24])
}
