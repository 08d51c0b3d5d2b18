// Package client is the Go SDK of JSONrtc: it dials the gateway over a
// WebSocket, runs the client's side of the reliability machine
// ([session.State], shared with the gateway) and offers calls and
// messaging on top.
//
// Start with [Dial], then read [Client.Events] until it is closed. A
// Client survives the loss of its socket: it reconnects with a jittered,
// doubling backoff and resumes the session as docs/protocol.md §4.4
// describes, resending what the gateway did not get and dropping what it
// receives twice, so the application sees every inbound frame once and in
// order. When the gateway refuses the resume, the client reports
// [EventSessionLost], fails every call and pending request, and carries
// on in the new session. Before the first session exists, Dial tries
// again only a connect the gateway refused for now (HTTP 503, error 503,
// close 1013: Options.ConnectAttempts); any other failure is final.
//
// # Transports
//
// Options.Transports lists, in order of preference, WebSocket and the
// HTTP long-poll of docs/protocol.md §1.6, for networks whose proxies
// block WebSocket. Every connect and resume tries them in turn: a client
// that fell back to long-poll tries the WebSocket again on its next
// reconnect, and the session moves between them with nothing lost. A
// long-poll connection opens with its connect, so its refusal shows as a
// lost socket, not a failed dial: put long-poll last.
//
// # Standby
//
// [Client.Standby] puts a session to sleep (docs/protocol.md §4.9): it
// tells the gateway how to wake the app (a webhook token for the app's
// push relay), then drops the socket and reconnects no more; the gateway
// keeps the session for its standby timeout and sends the first call or
// message for it to the relay as a push. [Client.Wake], or any send,
// resumes the session, with what came meanwhile.
//
// # Declared actions
//
// A gateway may declare actions of its own in its configuration
// (docs/protocol.md §2.8): [Client.Request] sends one outside any call
// and [Call.Request] inside a call, each returning the answer frame; a
// request of an action the client does not know arrives as
// [EventRequest], answered with [Request.Respond].
//
// # Extension headers
//
// Every method that sends a frame takes extension headers
// (docs/protocol.md §2.4) as trailing [protocol.Ext] arguments: [Client.Send],
// [Message.Reply], [Client.StartCall] and each [Call] method that acts
// (Ring, EarlyMedia, Answer, Decline, Hangup, ReOffer, Complete, Prack,
// PrackOffer, Trickle, DTMF, Transfer, RespondTransfer, ReportTransfer).
// A web peer gets them as they are; toward SIP, only what
// calls.sip_headers lets through and what the header rules read
// ({ext:NAME}, docs/routing.md) become SIP headers. Those a frame
// brings come in [Event].Header.
//
// # Goroutines and ownership
//
// One goroutine (the loop) owns the session state, the calls and the
// pending requests; the API methods hand it closures and wait for their
// result. Each socket has a reader and a writer goroutine, and a
// reconnect dials in a goroutine of its own; a long-poll socket has
// one more, the poller, which keeps its GET held. [Client.Close] returns only
// after all of them have exited.
//
// # Queues and slow applications
//
// Every queue is bounded:
//   - Events: Options.EventBuffer entries. When it is full the loop waits
//     up to Options.SlowConsumerTimeout for the application, which stops
//     reading the socket meanwhile (TCP back-pressure on the gateway).
//     If the application still has not made room, the client closes the
//     session (logout) with [ErrSlowConsumer]: an event is never dropped
//     in silence. Do not call blocking Client methods from the goroutine
//     that drains Events while that channel may be full.
//   - The retained window (Options.Limits): a send that would overflow it
//     fails with [ErrWindowFull] and nothing is sent; the application may
//     retry once the gateway has acknowledged.
//   - Pending requests (Options.MaxPending): beyond it, Send, Transfer
//     and Request fail with [ErrTooManyPending]. None waits forever: Send, Transfer
//     and a call's start fail with [ErrRequestTimeout] when no answer
//     comes within Options.RequestTimeout (30 s, per action in
//     RequestTimeouts; a ringing call waits ProgressTimeout, 180 s; a
//     re-offer fails with CallReOfferFailed), and
//     [Client.RequestTimeouts] counts them.
//   - A socket's write queue: a full retained window plus 256 frames.
//     When it fills (the gateway stopped reading), the socket is treated
//     as dead and the session resumes on a new one; the frames are
//     retained, so nothing is lost.
package client
