// Package sipgw is the SIP side of the jsonrtc gateway: registrations of
// web identities and INVITE dialogs, on github.com/emiago/sipgo. It knows
// nothing of WebSocket or JSON; the gateway's handlers drive it through
// this API and receive SIP happenings as [Event]s, one [Call] per web
// call subsession (shared/PROTOCOL.md section 6).
//
// Start with [New], [Gateway.OnIncomingCall], [Gateway.Start]. Then:
//
//   - connect: [Gateway.Register] (a *[ChallengeError] becomes error
//     401/407 with `authenticate`; the client's `authorization` comes back
//     as [RegisterOptions].Authorization), [Registration.Release] at
//     session end.
//   - outgoing start: [Gateway.Dial]; read [Call.Events]: EventProgress
//     (180/183; Reliable -> [Call.Prack]), EventAnswered (-> response 200,
//     then [Call.Ack] on complete), EventEnded (error with Code).
//   - incoming: the OnIncomingCall function gets the [Call]; ring the web
//     sessions, then [Call.Progress], [Call.Answer] or [Call.Reject];
//     EventConfirmed is the ACK (-> complete).
//   - either way: [Call.Reoffer] (re-INVITE, 491 glare as [ErrGlare]),
//     EventReoffer (answer with [Reoffer.Accept]/[Reoffer.Reject]),
//     [Call.SendDTMF], [Call.Transfer], [Call.Hangup] (CANCEL or BYE),
//     EventEnded last.
//
// Everything from a web frame is validated before it reaches a SIP
// message ([Gateway.ParseTarget], [ValidateHeader], [ValidateDisplayName]).
// Close waits for every goroutine; [Gateway.Stats] counts what is live.
package sipgw
