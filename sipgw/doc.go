// Package sipgw is the SIP side of the jsonrtc gateway: registrations of
// web identities and INVITE dialogs, on github.com/emiago/sipgo. It knows
// nothing of WebSocket or JSON; the gateway's handlers drive it through
// this API and receive SIP happenings as [Event]s, one [Call] per web
// call subsession (docs/protocol.md §10). docs/sip.md lists every SIP
// method, option tag and header it handles and what it does with each.
//
// Start with [New], [UserAgent.OnIncomingCall], [UserAgent.Start]. Then:
//
//   - connect: [UserAgent.Register] (a *[ChallengeError] becomes error
//     401/407 with `authenticate`; the client's `authorization` comes back
//     as [RegisterOptions].Authorization), [Registration.Release] at
//     session end. Over tcp or tls the binding is an RFC 5626 outbound
//     flow (outbound.go): kept alive with CRLF keepalives and registered
//     again at once when one goes unanswered ([Registration.FlowStats]).
//   - outgoing start: [UserAgent.Dial]; read [Call.Events]: EventProgress
//     (180/183; Reliable -> [Call.Prack]), EventAnswered (-> response 200,
//     then [Call.Ack] on complete), EventEnded (error with Code).
//   - incoming: the OnIncomingCall function gets the [Call]; ring the web
//     sessions, then [Call.Progress], [Call.Answer] or [Call.Reject];
//     EventConfirmed is the ACK (-> complete). Progress(reliable) sends
//     a 1xx with Require: 100rel and RSeq when the INVITE offered 100rel
//     (RFC 3262): retransmitted from T1, doubling, until its PRACK
//     (answered 200, reported as EventPrack) or 64*T1 (then 504); a 2xx
//     waits for the PRACK of a reliable 1xx that carried SDP.
//   - either way: [Call.Reoffer] (re-INVITE, 491 glare as [ErrGlare]),
//     EventReoffer (answer with [Reoffer.Accept]/[Reoffer.Reject]),
//     [Call.SendDTMF], [Call.Hangup] (CANCEL or BYE), EventEnded last. A
//     re-INVITE without SDP is answered here with the SDP we last sent;
//     a changed session in its ACK is EventRemoteSDP (sdpstate.go).
//   - REFER (RFC 3515, refer.go): [Call.Transfer] sends one, whose
//     NOTIFYs come as EventTransferProgress; EventRefer carries one
//     received, answered by [Refer.Accept] (202, NOTIFY 100) or
//     [Refer.Reject], then [Refer.Notify] with the new call's status.
//   - UPDATE (RFC 3311, update.go): one with SDP is an EventReoffer like
//     a re-INVITE's (its 200 carries the answer, then EventConfirmed, as
//     no ACK follows); one without is a session refresh, answered here.
//   - session timers (RFC 4028, timer.go; config session_timers): the
//     refresher refreshes at half the interval (UPDATE when the peer
//     allows it, else a re-INVITE with the current SDP: no event); a
//     refresh that fails, or none from the peer before the interval less
//     min(32s, interval/3), sends BYE and ends the call with
//     EndSessionExpired. A Session-Expires below min_se gets 422; a 422
//     to our INVITE is retried once with its Min-SE.
//   - INFO (RFC 6086), either way: [Call.SendInfo] sends one in the
//     confirmed dialog over its route set; EventInfo reports one received
//     (answered 200; an Info-Package we never announced gets 469).
//   - trickle ICE (RFC 8840): [DialOptions].Trickle and [Call.SetTrickle]
//     announce that we take trickle-ice INFOs (Recv-Info and Supported:
//     trickle-ice in the INVITE, reliable 1xx, 2xx and re-INVITEs);
//     [Call.PeerAccepts] says whether the peer announced it, so that the
//     candidates may go as SendInfo of package trickle-ice with an
//     application/trickle-ice-sdpfrag body. Building that body, and what
//     to do for a peer without trickle-ice, is the call handler's job.
//   - another node (adopt.go, dialogstate.go; docs/cluster.md "SIP
//     dialogs"): [Call.DialogState] snapshots a confirmed dialog at each
//     [Call.DialogChanged] ([Call.SetWriteAhead]: before each request
//     leaves); [UserAgent.Adopt] continues it on this user
//     agent with a target refresh carrying our Contact; [Call.Release]
//     lets a call go without a word on the wire.
//
// Everything from a web frame is validated before it reaches a SIP
// message ([UserAgent.ParseTarget], [ValidateHeader], [ValidateDisplayName]).
// Close waits for every goroutine; [UserAgent.Stats] counts what is live.
//
// # Large messages and UDP
//
// A browser's SDP is 3 to 6 KB, so the INVITE, re-INVITE, UPDATE or
// PRACK carrying one, and the 200 OK or 183 carrying the web side's
// answer, are far over the MTU. With transport udp:
//   - requests: RFC 3261 18.1.1 wants a request over 1300 bytes on a
//     congestion-controlled transport. sipgo does not do it; every
//     request we originate passes one place (transport.go,
//     sizedRequester) that sends such a request over TCP to the same
//     next hop, its top Via saying TCP and our listen.tcp port. A dialog
//     whose INVITE went over TCP stays on TCP. Without listen.tcp (a
//     warning at start says so), or when the next hop refuses the TCP
//     connection, the request goes over UDP as IP fragments, which
//     Kamailio and Asterisk take.
//   - responses cannot change transport (18.2.2): they go over UDP,
//     fragmented, up to udp_max_datagram (default 65507) bytes. sipgo
//     keeps that limit in a package global (it would refuse anything
//     over 1300 bytes): [SetProcessDefaults] sets it, with T1, once per
//     process, from cmd/jsonrtcd and from the tests' TestMain.
//
// # Malformed SIP
//
// Every message on the SIP ports is checked before sipgo parses it
// (malformed.go, guard.go; RFC 3261 8.2, 18.2.2, RFC 4475). A request
// that is malformed but has a usable top Via and a CSeq with a method
// is answered, statelessly, at its source address (Via port, or the
// source port with rport), over TCP and TLS on its connection:
//   - 400 with the reason, e.g. "Bad Request (malformed Content-Length)":
//     Request-Line, line endings, field syntax, Content-Length (missing
//     on a stream, several, not a number, beyond the datagram), From,
//     To, Call-ID or CSeq missing or repeated, CSeq above 2^31-1 or with
//     another method, Max-Forwards not a number, Via, From or To
//     malformed, headers in the Request-URI; and whatever sipgo's parser
//     refuses after the check passed it (its field named);
//   - 505 for a SIP version other than 2.0, 416 for a Request-URI scheme
//     other than sip, sips, tel, 420 with Unsupported for a Require
//     naming a tag we do not put in Supported, 513 for a stream message
//     over 64 KB.
//
// Dropped without an answer: responses sipgo does not match (a UA never
// answers a response), a malformed ACK, requests with no usable Via or CSeq,
// and garbage. Over TCP and TLS a lost framing (bad Content-Length,
// garbage, a message sipgo cannot parse) closes that connection after
// the answer; nothing else is affected. The rest reaches the handlers,
// which give every request a final answer (405, 404, 481...).
package sipgw
