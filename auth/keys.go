package auth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"strings"
)

// The algorithms this package verifies. Each key is bound to exactly one
// of them, so a token can never make the verifier use an RSA public key
// as an HMAC secret (the classic alg confusion), and "none" is never
// accepted.
const (
	algHS256 = "HS256"
	algRS256 = "RS256"
	algES256 = "ES256"
	algEdDSA = "EdDSA"
)

const minRSABits = 2048

// vkey is a verification key bound to its algorithm.
type vkey struct {
	kid string
	alg string
	key any // []byte, *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey
}

// loadKey reads and checks one configured key. Errors never include the
// key material.
func loadKey(kc KeyConfig) (vkey, error) {
	n := 0
	for _, s := range []string{string(kc.Secret), kc.SecretFile, kc.PublicKey, kc.PublicKeyFile} {
		if s != "" {
			n++
		}
	}
	if n != 1 {
		return vkey{}, errors.New("exactly one of secret, secret_file, public_key and public_key_file is required")
	}
	switch kc.Algorithm {
	case "", algHS256, algRS256, algES256, algEdDSA:
	default:
		return vkey{}, fmt.Errorf("alg %q: must be HS256, RS256, ES256 or EdDSA", kc.Algorithm)
	}
	k := vkey{kid: kc.ID}
	if kc.Secret != "" || kc.SecretFile != "" {
		secret := []byte(kc.Secret)
		if kc.SecretFile != "" {
			b, err := os.ReadFile(kc.SecretFile)
			if err != nil {
				return vkey{}, fmt.Errorf("secret_file: %w", err)
			}
			secret = []byte(strings.TrimRight(string(b), "\r\n"))
		}
		if len(secret) < minSecretLen {
			return vkey{}, fmt.Errorf("secret: must be at least %d bytes", minSecretLen)
		}
		if kc.Algorithm != "" && kc.Algorithm != algHS256 {
			return vkey{}, fmt.Errorf("alg %s does not fit a secret", kc.Algorithm)
		}
		if strings.Contains(string(secret), "-----BEGIN") {
			return vkey{}, errors.New("secret: looks like a PEM key; use public_key")
		}
		k.alg, k.key = algHS256, secret
		return k, nil
	}
	data := []byte(kc.PublicKey)
	if kc.PublicKeyFile != "" {
		b, err := os.ReadFile(kc.PublicKeyFile)
		if err != nil {
			return vkey{}, fmt.Errorf("public_key_file: %w", err)
		}
		data = b
	}
	pub, err := parsePEMPublicKey(data)
	if err != nil {
		return vkey{}, err
	}
	alg, err := algFor(pub)
	if err != nil {
		return vkey{}, err
	}
	if kc.Algorithm != "" && kc.Algorithm != alg {
		return vkey{}, fmt.Errorf("alg %s does not fit this key (%s)", kc.Algorithm, alg)
	}
	k.alg, k.key = alg, pub
	return k, nil
}

func parsePEMPublicKey(data []byte) (any, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("public_key: no PEM block")
	}
	switch block.Type {
	case "PUBLIC KEY":
		pub, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("public_key: %w", err)
		}
		return pub, nil
	case "RSA PUBLIC KEY":
		pub, err := x509.ParsePKCS1PublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("public_key: %w", err)
		}
		return pub, nil
	case "CERTIFICATE":
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("public_key: %w", err)
		}
		return cert.PublicKey, nil
	}
	if strings.Contains(block.Type, "PRIVATE") {
		return nil, errors.New("public_key: is a private key; configure its public key only")
	}
	return nil, fmt.Errorf("public_key: unsupported PEM block %q", block.Type)
}

// algFor returns the one algorithm a public key verifies.
func algFor(pub any) (string, error) {
	switch p := pub.(type) {
	case *rsa.PublicKey:
		if p.N.BitLen() < minRSABits {
			return "", fmt.Errorf("RSA key of %d bits: at least %d required", p.N.BitLen(), minRSABits)
		}
		return algRS256, nil
	case *ecdsa.PublicKey:
		if p.Curve != elliptic.P256() {
			return "", errors.New("ECDSA key: only P-256 (ES256) is supported")
		}
		return algES256, nil
	case ed25519.PublicKey:
		return algEdDSA, nil
	}
	return "", fmt.Errorf("unsupported key type %T", pub)
}

// maxJWKSSize bounds the key set document.
const maxJWKSSize = 1 << 20

// parseJWKS decodes a JSON Web Key Set (RFC 7517, keys per RFC 7518
// section 6 and RFC 8037). Keys that are not signature keys of a
// supported algorithm are skipped, not fatal: an identity provider may
// publish encryption keys or other algorithms alongside. Symmetric ("oct")
// keys are always skipped: a secret has no business in a public document.
func parseJWKS(data []byte) ([]vkey, error) {
	var set struct {
		Keys []struct {
			Kty string `json:"kty"`
			Kid string `json:"kid"`
			Alg string `json:"alg"`
			Use string `json:"use"`
			Crv string `json:"crv"`
			N   string `json:"n"`
			E   string `json:"e"`
			X   string `json:"x"`
			Y   string `json:"y"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	var keys []vkey
	for _, jk := range set.Keys {
		if jk.Use != "" && jk.Use != "sig" {
			continue
		}
		var pub any
		switch {
		case jk.Kty == "RSA":
			n, err1 := b64Int(jk.N)
			e, err2 := b64Int(jk.E)
			if err1 != nil || err2 != nil || !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31-1 {
				continue
			}
			pub = &rsa.PublicKey{N: n, E: int(e.Int64())}
		case jk.Kty == "EC" && jk.Crv == "P-256":
			x, err1 := base64.RawURLEncoding.DecodeString(jk.X)
			y, err2 := base64.RawURLEncoding.DecodeString(jk.Y)
			if err1 != nil || err2 != nil || len(x) != 32 || len(y) != 32 {
				continue
			}
			p, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
			if err != nil {
				continue
			}
			pub = p
		case jk.Kty == "OKP" && jk.Crv == "Ed25519":
			x, err := base64.RawURLEncoding.DecodeString(jk.X)
			if err != nil || len(x) != ed25519.PublicKeySize {
				continue
			}
			pub = ed25519.PublicKey(x)
		default:
			continue
		}
		alg, err := algFor(pub)
		if err != nil || (jk.Alg != "" && jk.Alg != alg) {
			continue
		}
		keys = append(keys, vkey{kid: jk.Kid, alg: alg, key: pub})
	}
	return keys, nil
}

func b64Int(s string) (*big.Int, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) == 0 {
		return nil, errors.New("bad integer")
	}
	return new(big.Int).SetBytes(b), nil
}
