// Package push wakes clients that sleep: an application in standby has
// closed its socket, and an incoming call or message for it needs a way
// to reach it (issue 17). Two channels, in the spirit of RFC 8599's push
// parameters (a provider, and what the provider needs to reach the
// device):
//
//   - Web Push for browsers: [Sender] delivers a message to a push
//     service (RFC 8030), encrypted for the browser's subscription
//     (RFC 8291, the aes128gcm content coding of RFC 8188) and signed
//     with the application server's VAPID key (RFC 8292). The browser's
//     service worker gets a push event with the plaintext.
//   - A signed webhook for native apps: [Webhook] POSTs the message to
//     the app's own push relay with an HMAC-SHA256 signature over a
//     timestamp and the body, which the relay checks with [VerifyWebhook].
//
// The encryption and the VAPID token are github.com/SherClockHolmes/webpush-go's
// (the Go Web Push library in wide use, on golang-jwt as we are). [Sender]
// hands it an HTTP client from [GuardedClient], whose dialer refuses
// internal addresses after name resolution (SSRF). [Decrypt] is the
// browser's side, for push services written for tests; its test pins it
// to RFC 8291 Appendix A.
//
// Payloads carry only what a notification needs (who calls, what kind
// of event): never SDP, message bodies or tokens.
package push
