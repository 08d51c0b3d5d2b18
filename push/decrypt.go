package push

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"errors"
)

// Decrypt is what a browser does with a push message body (RFC 8291
// §3.4, RFC 8188 §2), given its subscription's private key and auth
// secret: for push services and relays written for tests.
func Decrypt(body, uaPrivate, auth []byte) ([]byte, error) {
	if len(body) < headerLen || body[saltLen+4] != keyLen {
		return nil, errors.New("short or odd header")
	}
	salt, asPublic, ct := body[:saltLen], body[saltLen+5:headerLen], body[headerLen:]
	if rs := binary.BigEndian.Uint32(body[saltLen:]); int(rs) < len(ct) {
		return nil, errors.New("more than one record")
	}
	ua, err := ecdh.P256().NewPrivateKey(uaPrivate)
	if err != nil {
		return nil, err
	}
	as, err := ecdh.P256().NewPublicKey(asPublic)
	if err != nil {
		return nil, err
	}
	secret, err := ua.ECDH(as)
	if err != nil {
		return nil, err
	}
	// The lengths are fixed: the derivations and the cipher cannot fail.
	ikm, _ := hkdf.Key(sha256.New, secret, auth, "WebPush: info\x00"+string(ua.PublicKey().Bytes())+string(asPublic), 32)
	cek, _ := hkdf.Key(sha256.New, ikm, salt, "Content-Encoding: aes128gcm\x00", 16)
	nonce, _ := hkdf.Key(sha256.New, ikm, salt, "Content-Encoding: nonce\x00", 12)
	block, _ := aes.NewCipher(cek)
	gcm, _ := cipher.NewGCM(block)
	rec, err := gcm.Open(nil, nonce, ct, nil)
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexByte(rec, 2)
	if i < 0 || len(bytes.Trim(rec[i+1:], "\x00")) != 0 {
		return nil, errors.New("no last-record delimiter")
	}
	return rec[:i], nil
}
