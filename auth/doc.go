// Package auth authenticates WebSocket handshakes (docs/protocol.md §1.1, §4.3):
// it finds the application a handshake is for, checks its Origin, and
// verifies the client's credentials: an OAuth 2.0 bearer token (a JWT,
// checked against static keys or a JWKS URL), or a fresh guest identity
// for anonymous click-to-call, or (in development) none. The result is a
// [Principal]: the application, the identity, its SIP identity, whether it
// is a guest and which targets a guest may reach.
//
// Start with [New] and [Config]. At the handshake the gateway calls
// [Authenticator.Authenticate] before upgrading and answers an error with
// [WriteError] (401, 403 or 404). On the connect request it calls [Bind]
// (which applies [CheckInitiator]); on every request a client starts it
// calls [CheckInitiator] with the frame's initiator and, for calls,
// messages and subscriptions, [AllowedTarget] with its target.
//
// Tokens are verified with github.com/golang-jwt/jwt/v5 and an explicit
// list of algorithms, each key bound to its own: HS256 secrets, RS256,
// ES256 and EdDSA public keys. "none" and algorithm confusion (an RSA
// public key used as an HMAC secret) cannot verify. Identities are held
// to a strict syntax because they end up in SIP headers. Errors carry a
// body that is safe to show and never contains the token.
//
// The package starts no goroutine: a JWKS key set is refreshed by the
// handshake that finds it stale or meets an unknown kid, at most once per
// min_refresh.
package auth
