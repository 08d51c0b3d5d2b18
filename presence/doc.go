// Package presence is the web side of the presence package (docs/protocol.md
// §6): between web users the gateway is the presence server
// (RFC 3856 semantics over JSONrtc); presentities that are not web users
// are reached through an [Upstream], which the gateway implements with
// SIP SUBSCRIBE/NOTIFY and PUBLISH (PIDF bodies: package presence/pidf).
//
// Start with [NewHandler]. The gateway feeds it frames with
// [Handler.HandleFrame], tells it of new sessions with
// [Handler.SessionStarted] and of sessions that really ended (logout or
// resume timeout, never a socket blip) with [Handler.SessionEnded]. It
// answers through [endpoint.Endpoint], so it knows no socket; a subscription
// lives on its session and so survives a resume untouched, its notifies
// retained like any frame.
//
// # Frames
//
//   - request/start, target = presentity: subscribes. The answer is
//     response/start 200 with header.expiry (the configured expiry, or a
//     smaller one the client asked for, not below the minimum), then at
//     once a message/notify with the current state. A start on a
//     subsession that already watches the same presentity refreshes it:
//     200 and a notify again, still one subscription.
//   - message/notify, server to client: payload {"presentity","status",
//     "activity","note"}; presentity is the target as the watcher named it.
//     Every change reaches every subscription of every watcher at once.
//   - request/publish with that payload: publishes one's own state;
//     answered 200, or 400 for a bad payload, 403 for another presentity.
//   - message/shutdown from the client: unsubscribes (no answer). From
//     the server: the subscription ended (expired, or the upstream ended
//     it).
//
// # State of a web presentity
//
// An identity with no live session is closed. An identity with a live
// session is open until one of its sessions publishes: a web user who is
// connected can be called, and wsc.js clients cannot publish at all, so
// closed-until-published would show every such user offline. Each
// session's publication lasts as long as the session; the identity shows
// the most recent publication of its live sessions. When the last session
// ends the identity becomes closed and its watchers are told.
//
// # Across the nodes of a cluster
//
// A web presentity's sessions may live on several nodes. The gateway
// tells each node's Handler of the others' sessions with
// [Handler.RemoteSession] and hears of its own sessions' shares through
// [Options.Local]; the state is composed from all of them, the most
// recent publication (by its time) winning. A session's share carries
// its watches too, those of the Upstream with the state last told.
// [Handler.SessionMoved] turns a session that another node took over
// into a remote one and ends its watches here (the Upstream's with
// their stop); a session that starts here with a remote copy takes its
// publication over and makes its watches again, silently (the client
// holds them): the Upstream's with a new Upstream.Subscribe, whose
// first state is notified only if the client has not seen it. The package knows nothing of how the nodes talk
// (gateway/presencerepl.go, docs/cluster.md "Presence").
//
// # Which presentities are web users
//
// A target "user@domain", or "sip:user@domain" whose user@domain is a
// known web identity (one that has had a session), is a web presentity.
// Any other target goes to the Upstream when there is one. Without one, a
// plain target is taken as a web user who has not connected yet (closed
// until they do), and a sip:, sips:, tel: or other URI gets 404: no
// presence service here can serve it. An Upstream that ends a
// subscription before accepting it gives the watcher 480.
//
// # Bounds
//
// Subscriptions per session (503 beyond), watchers per presentity (503
// beyond), and one publication per session. Records exist only while a
// presentity has a live session or a watcher.
package presence
