package call

import (
	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/sipgw"
)

// The SIP interworking of a call as a state machine: sipNext is its
// transition function, pure, and the far leg runs the action it names
// (farLeg.step in sip.go). Its input is an event from SIP or a frame from
// one of the web legs, and who sent the frame: the leg that talks with
// SIP, a callee still ringing, or any other leg.

// sipPhase is where a SIP call stands. Over is the web side's end
// (Call.ended); the SIP side may still be finishing.
type sipPhase uint8

const (
	outCalling     sipPhase = iota // outgoing: INVITE sent, no 2xx yet
	outEarly                       // outgoing: a reliable 183 awaits the web caller's PRACK
	outEarlyDialog                 // outgoing: the web caller PRACKed a reliable 183: its early dialog may take the caller's new offer (UPDATE)
	outAnswered                    // outgoing: 2xx received, the web caller has not completed (no ACK)
	outConfirmed                   // outgoing: ACK sent
	inRinging                      // incoming: the web callees ring, SIP heard nothing yet
	inRang                         // incoming: 180 or 183 sent
	inAnswered                     // incoming: 2xx sent, no ACK yet
	inConfirmed                    // incoming: ACK received
	phaseOver                      // the web side is done with the call
	numPhases
)

var phaseNames = [numPhases]string{"outCalling", "outEarly", "outEarlyDialog", "outAnswered", "outConfirmed",
	"inRinging", "inRang", "inAnswered", "inConfirmed", "over"}

func (p sipPhase) String() string { return phaseNames[p] }

// answered: a 2xx went one way or the other.
func (p sipPhase) answered() bool {
	return p == outAnswered || p == outConfirmed || p == inAnswered || p == inConfirmed
}

// sipInput is what happened: a SIP event or a web frame.
type sipInput uint8

const (
	sipProgress           sipInput = iota // a 180/183, not reliable
	sipProgressPrack                      // a reliable 183: the web caller PRACKs it
	sipProgressAuto                       // another reliable provisional: the gateway PRACKs it (wsc.js PRACKs only a 183)
	sipAnswered                           // a 2xx
	sipConfirmed                          // the ACK of our 2xx (or of a re-INVITE's)
	sipReoffered                          // a re-INVITE
	sipInfo                               // an INFO (DTMF or trickle)
	sipRefer                              // a REFER
	sipTransferProgress                   // a NOTIFY of our REFER: the new call's status
	sipRemoteSDP                          // the answer in the ACK of a re-INVITE without SDP changed the peer's session
	sipEnded                              // the SIP call is over
	sipOther                              // nothing for the web side (a PRACK of ours, answered by sipgw)
	frameOffer                            // start request: an offer
	frameRinging                          // start response, provisional, without SDP
	frameEarlyMedia                       // start response, provisional, with SDP
	frameAnswer                           // start response, final
	frameReject                           // start error
	frameComplete                         // complete
	frameLeave                            // shutdown, or the leg's session ended
	framePrack                            // prack request
	frameDTMF                             // dtmf
	frameTransfer                         // transfer request
	frameTransferAnswer                   // transfer response: accepts a transfer request
	frameTransferReject                   // transfer error: refuses it
	frameTransferProgress                 // transfer message: the status of the new call
	frameTrickle                          // trickle
	frameOther                            // nothing to act on (an answer to a SIP REFER or to a local PRACK)
	numInputs
)

var inputNames = [numInputs]string{"sipProgress", "sipProgressPrack", "sipProgressAuto", "sipAnswered",
	"sipConfirmed", "sipReoffered", "sipInfo", "sipRefer", "sipTransferProgress", "sipRemoteSDP", "sipEnded", "sipOther",
	"frameOffer", "frameRinging", "frameEarlyMedia", "frameAnswer", "frameReject", "frameComplete", "frameLeave",
	"framePrack", "frameDTMF", "frameTransfer", "frameTransferAnswer", "frameTransferReject", "frameTransferProgress",
	"frameTrickle", "frameOther"}

func (in sipInput) String() string { return inputNames[in] }

// sipRole is who a web frame comes from.
type sipRole uint8

const (
	bySIP   sipRole = iota // not a web frame
	byWeb                  // the leg that talks with SIP: the caller, or the callee that answered
	byFork                 // an incoming call's callee still ringing
	byOther                // a callee that failed or lost
	numRoles
)

var roleNames = [numRoles]string{"bySIP", "byWeb", "byFork", "byOther"}

func (r sipRole) String() string { return roleNames[r] }

// sipAction is what the far leg does on a transition.
type sipAction uint8

const (
	actNone                  sipAction = iota
	actEnded                           // tell the web side the SIP call ended
	actReofferGone                     // 481 to a re-INVITE: the web side is gone
	actReofferPending                  // 491 to a re-INVITE: nobody can answer it yet
	actRelayProgress                   // 18x to the web caller
	actRelayProgressPrack              // 18x to the web caller, and PRACK it toward SIP
	actRelayAnswer                     // 200 to the web caller
	actRelayComplete                   // complete to the web side, if an ACK completes its answer
	actRelayReoffer                    // the re-INVITE's offer to the web side (or 491 on glare)
	actRelayInfo                       // DTMF or candidates to the web side
	actRelayRefer                      // a transfer request to the web side
	actReferGone                       // 481 to a REFER: the web side is gone
	actReferPending                    // 491 to a REFER: the call is not established
	actAnswerRefer                     // the web side accepts the REFER: 202, NOTIFYs follow
	actRejectRefer                     // the web side refuses the REFER: its code
	actReferProgress                   // the web side's new call's status as a NOTIFY
	actRelayTransferProgress           // the status of the call our REFER made, to the web side
	actRelayRemoteSDP                  // the peer's new description to the web side
	actReoffer                         // the web side's offer as a re-INVITE
	actEarlyOffer                      // the web caller's offer as an UPDATE in the early dialog
	actNotEstablished                  // 491 to a web request that needs an answered call
	actAnswerReoffer                   // the web side's answer to the re-INVITE
	actRejectReoffer                   // the web side's refusal of the re-INVITE
	actProgress                        // a callee's provisional as a 180 or 183 toward SIP
	actAnswer                          // a callee answers: 200 toward SIP, the other callees are told
	actForkDeclines                    // a callee declines: its fork fails
	actAck                             // the web caller completes: ACK toward SIP
	actHangup                          // the web side leaves: CANCEL, reject or BYE toward SIP
	actForkLeaves                      // a ringing callee leaves: its fork fails
	actPrack                           // the web caller's PRACK toward SIP
	actPrackLocal                      // nothing reliable to acknowledge: the gateway answers the PRACK
	actDTMF                            // DTMF toward SIP
	actTransfer                        // a REFER toward SIP
	actTrickle                         // candidates toward SIP
	actBufferTrickle                   // a ringing callee's candidates, kept until it answers
	numActions
)

var actionNames = [numActions]string{"none", "ended", "reofferGone", "reofferPending",
	"relayProgress", "relayProgressPrack", "relayAnswer", "relayComplete", "relayReoffer",
	"relayInfo", "relayRefer", "referGone", "referPending", "answerRefer", "rejectRefer", "referProgress",
	"relayTransferProgress", "relayRemoteSDP", "reoffer", "earlyOffer", "notEstablished", "answerReoffer", "rejectReoffer",
	"progress", "answer", "forkDeclines", "ack", "hangup", "forkLeaves", "prack", "prackLocal",
	"dtmf", "transfer", "trickle", "bufferTrickle"}

func (a sipAction) String() string { return actionNames[a] }

// sipNext is the transition function of a SIP call: in phase p, input in
// from r leads to phase next by action act. An action may fail (an SDP
// that does not parse, a full queue): the phase then stays. Inputs that
// mean nothing in p give (p, actNone).
func sipNext(p sipPhase, in sipInput, r sipRole) (next sipPhase, act sipAction) {
	if in == sipEnded {
		return phaseOver, actEnded
	}
	if p == phaseOver {
		switch in {
		case sipReoffered:
			return p, actReofferGone
		case sipRefer:
			return p, actReferGone
		}
		return p, actNone
	}
	calling := p == outCalling || p == outEarly || p == outEarlyDialog
	ringing := p == inRinging || p == inRang
	// A provisional the caller does not PRACK leaves the early dialog it
	// PRACKed as it was.
	early := outCalling
	if p == outEarlyDialog {
		early = p
	}
	switch in {
	case sipProgress:
		if calling {
			return early, actRelayProgress
		}
	case sipProgressPrack:
		if calling {
			return outEarly, actRelayProgress
		}
	case sipProgressAuto:
		if calling {
			return early, actRelayProgressPrack
		}
	case sipAnswered:
		if calling {
			return outAnswered, actRelayAnswer
		}
	case sipConfirmed:
		switch {
		case p == inAnswered:
			return inConfirmed, actRelayComplete
		case !ringing:
			return p, actRelayComplete
		}
	case sipReoffered:
		if ringing {
			return p, actReofferPending
		}
		return p, actRelayReoffer
	case sipInfo:
		if !ringing {
			return p, actRelayInfo
		}
	case sipRefer:
		if ringing {
			return p, actReferPending
		}
		return p, actRelayRefer
	case sipTransferProgress:
		if !ringing {
			return p, actRelayTransferProgress
		}
	case sipRemoteSDP:
		if !ringing {
			return p, actRelayRemoteSDP
		}
	case frameTransferAnswer:
		if r == byWeb {
			return p, actAnswerRefer
		}
	case frameTransferReject:
		if r == byWeb {
			return p, actRejectRefer
		}
	case frameTransferProgress:
		if r == byWeb {
			return p, actReferProgress
		}
	case frameOffer:
		switch {
		case r == byWeb && p.answered():
			return p, actReoffer
		case r == byWeb && p == outEarlyDialog:
			// RFC 3311 section 5.1: after the early offer/answer.
			return p, actEarlyOffer
		}
		return p, actNotEstablished
	case frameTransfer:
		if r == byWeb && p.answered() {
			return p, actTransfer
		}
		return p, actNotEstablished
	case frameRinging, frameEarlyMedia, frameAnswer:
		switch {
		case r == byWeb && in == frameAnswer:
			return p, actAnswerReoffer
		case r != byFork || !ringing:
		case in == frameAnswer:
			return inAnswered, actAnswer
		case in == frameEarlyMedia || p == inRinging:
			return inRang, actProgress
		}
	case frameReject:
		switch {
		case r == byWeb:
			return p, actRejectReoffer
		case r == byFork && ringing:
			return p, actForkDeclines
		}
	case frameComplete:
		if r == byWeb && p == outAnswered {
			return outConfirmed, actAck
		}
	case frameLeave:
		switch {
		case r == byWeb:
			return phaseOver, actHangup
		case r == byFork && ringing:
			return p, actForkLeaves
		}
	case framePrack:
		if r == byWeb && p == outEarly {
			return outEarlyDialog, actPrack
		}
		return p, actPrackLocal
	case frameDTMF:
		if r == byWeb {
			return p, actDTMF
		}
	case frameTrickle:
		switch {
		case r == byWeb:
			return p, actTrickle
		case r == byFork && ringing:
			return p, actBufferTrickle
		}
	}
	return p, actNone
}

// mediaOp is what a transition asks of the media relay when the call's
// media is anchored in rtpengine (media.go, docs/media.md): the SDP the
// action carries goes through rtpengine first, converted for the side it
// goes to.
type mediaOp uint8

const (
	mediaNone        mediaOp = iota
	mediaSIPAnswer           // SIP's answer (18x, 2xx) to the web caller's offer: answer, per fork (To-tag)
	mediaSIPOffer            // SIP's re-offer: offer toward the web side
	mediaWebAnswer           // a web answer toward SIP: a callee's 183 or 200, or the answer to SIP's re-offer
	mediaWebOffer            // the web side's re-offer toward SIP, and SIP's answer back
	mediaSIPReanswer         // SIP's answer in the ACK to the offer sipgw made for a re-INVITE without SDP
	numMediaOps
)

var mediaOpNames = [numMediaOps]string{"none", "sip-answer", "sip-offer", "web-answer", "web-offer", "sip-reanswer"}

func (m mediaOp) String() string { return mediaOpNames[m] }

// mediaOf is the media operation of an action. Only the actions that hand
// SDP on have one: a fork's 18x that comes after the 200 is no
// relayProgress (sipNext drops it), so it never replaces the winning
// fork's answer in rtpengine.
func mediaOf(act sipAction) mediaOp {
	switch act {
	case actRelayProgress, actRelayProgressPrack, actRelayAnswer:
		return mediaSIPAnswer
	case actRelayReoffer:
		return mediaSIPOffer
	case actProgress, actAnswer, actAnswerReoffer:
		return mediaWebAnswer
	case actReoffer, actEarlyOffer:
		return mediaWebOffer
	case actRelayRemoteSDP:
		return mediaSIPReanswer
	}
	return mediaNone
}

// eventInput classifies a SIP event.
func eventInput(ev sipgw.Event) sipInput {
	switch ev.Kind {
	case sipgw.EventProgress:
		switch {
		case !ev.Reliable:
			return sipProgress
		case ev.Code == protocol.CodeSessionProgress:
			return sipProgressPrack
		default:
			return sipProgressAuto
		}
	case sipgw.EventAnswered:
		return sipAnswered
	case sipgw.EventConfirmed:
		return sipConfirmed
	case sipgw.EventReoffer:
		return sipReoffered
	case sipgw.EventInfo:
		return sipInfo
	case sipgw.EventRefer:
		return sipRefer
	case sipgw.EventTransferProgress:
		return sipTransferProgress
	case sipgw.EventRemoteSDP:
		return sipRemoteSDP
	case sipgw.EventEnded:
		return sipEnded
	}
	return sipOther
}

// frameInput classifies a web frame.
func frameInput(f *protocol.Frame) sipInput {
	request := f.Control.Type == protocol.TypeRequest
	switch f.Header.Action {
	case protocol.ActionStart:
		switch f.Control.Type {
		case protocol.TypeRequest:
			return frameOffer
		case protocol.TypeResponse:
			if f.Control.MessageState == protocol.StateFinal || f.Header.ResponseCode >= 200 {
				return frameAnswer
			}
			var p protocol.CallPayload
			_ = protocol.DecodePayload(f.Payload, &p)
			if protocol.HasSDP(p.SDP) {
				return frameEarlyMedia
			}
			return frameRinging
		case protocol.TypeError:
			return frameReject
		}
	case protocol.ActionComplete:
		return frameComplete
	case protocol.ActionShutdown:
		return frameLeave
	case protocol.ActionPrack:
		if request {
			return framePrack
		}
	case protocol.ActionDTMF:
		return frameDTMF
	case protocol.ActionTransfer:
		switch f.Control.Type {
		case protocol.TypeRequest:
			return frameTransfer
		case protocol.TypeResponse:
			return frameTransferAnswer
		case protocol.TypeError:
			return frameTransferReject
		case protocol.TypeMessage:
			return frameTransferProgress
		}
	case protocol.ActionTrickle:
		return frameTrickle
	}
	return frameOther
}
