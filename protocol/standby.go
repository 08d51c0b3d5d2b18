package protocol

// StandbyPayload is the payload of request/standby (docs/protocol.md
// §4.9): how the gateway wakes the client once its socket is closed.
type StandbyPayload struct {
	Push *PushChannel `json:"push,omitempty"`
}

// PushChannel is one way to wake a client: a browser's Web Push
// subscription (Type "webpush": Endpoint and Keys, as
// PushSubscription.toJSON() has them), or a native app's device token
// for the application's push relay (Type "webhook": Token).
type PushChannel struct {
	Type     string   `json:"type"`
	Endpoint string   `json:"endpoint,omitempty"`
	Keys     PushKeys `json:"keys,omitzero"`
	Token    string   `json:"token,omitempty"`
}

// PushKeys are a Web Push subscription's keys (base64url).
type PushKeys struct {
	P256DH string `json:"p256dh,omitempty"`
	Auth   string `json:"auth,omitempty"`
}

// The push channel types.
const (
	PushWebPush = "webpush"
	PushWebhook = "webhook"
)
