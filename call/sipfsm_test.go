package call

import (
	"testing"

	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/sipgw"
)

// TestSIPNext is the SIP call's transition table, written out: each row
// gives, for the phases, input and roles it names, the next phase (same:
// unchanged) and the action. Every pair of phase and input (SIP events
// from SIP, frames from each web role) not in a row must do nothing.
func TestSIPNext(t *testing.T) {
	const same = numPhases
	var (
		calling  = []sipPhase{outCalling, outEarly, outEarlyDialog}
		ringing  = []sipPhase{inRinging, inRang}
		talking  = []sipPhase{outCalling, outEarly, outEarlyDialog, outAnswered, outConfirmed, inAnswered, inConfirmed}
		answered = []sipPhase{outAnswered, outConfirmed, inAnswered, inConfirmed}
		live     = append(append([]sipPhase(nil), talking...), ringing...)
		all      = append(append([]sipPhase(nil), live...), phaseOver)
		sip      = []sipRole{bySIP}
		web      = []sipRole{byWeb}
		fork     = []sipRole{byFork}
		notWeb   = []sipRole{byFork, byOther}
		anyone   = []sipRole{byWeb, byFork, byOther}
	)
	notAnswered := []sipPhase{outCalling, outEarly, inRinging, inRang}
	early := []sipPhase{outCalling, outEarly}
	rows := []struct {
		phases []sipPhase
		in     sipInput
		roles  []sipRole
		next   sipPhase
		act    sipAction
	}{
		// From SIP.
		{all, sipEnded, sip, phaseOver, actEnded},
		{[]sipPhase{phaseOver}, sipReoffered, sip, same, actReofferGone},
		{early, sipProgress, sip, outCalling, actRelayProgress},
		{[]sipPhase{outEarlyDialog}, sipProgress, sip, same, actRelayProgress},
		{calling, sipProgressPrack, sip, outEarly, actRelayProgress},
		{early, sipProgressAuto, sip, outCalling, actRelayProgressPrack},
		{[]sipPhase{outEarlyDialog}, sipProgressAuto, sip, same, actRelayProgressPrack},
		{calling, sipAnswered, sip, outAnswered, actRelayAnswer},
		{[]sipPhase{inAnswered}, sipConfirmed, sip, inConfirmed, actRelayComplete},
		{[]sipPhase{outCalling, outEarly, outEarlyDialog, outAnswered, outConfirmed, inConfirmed}, sipConfirmed, sip, same, actRelayComplete},
		{ringing, sipReoffered, sip, same, actReofferPending},
		{talking, sipReoffered, sip, same, actRelayReoffer},
		{talking, sipInfo, sip, same, actRelayInfo},
		{talking, sipRefer, sip, same, actRelayRefer},
		{ringing, sipRefer, sip, same, actReferPending},
		{[]sipPhase{phaseOver}, sipRefer, sip, same, actReferGone},
		{talking, sipTransferProgress, sip, same, actRelayTransferProgress},
		{talking, sipRemoteSDP, sip, same, actRelayRemoteSDP},
		// From the web leg that talks with SIP.
		{answered, frameOffer, web, same, actReoffer},
		{notAnswered, frameOffer, web, same, actNotEstablished},
		{[]sipPhase{outEarlyDialog}, frameOffer, web, same, actEarlyOffer},
		{answered, frameTransfer, web, same, actTransfer},
		{append(notAnswered, outEarlyDialog), frameTransfer, web, same, actNotEstablished},
		{live, frameAnswer, web, same, actAnswerReoffer},
		{live, frameReject, web, same, actRejectReoffer},
		{[]sipPhase{outAnswered}, frameComplete, web, outConfirmed, actAck},
		{live, frameLeave, web, phaseOver, actHangup},
		{[]sipPhase{outEarly}, framePrack, web, outEarlyDialog, actPrack},
		{[]sipPhase{outCalling, outEarlyDialog, outAnswered, outConfirmed, inRinging, inRang, inAnswered, inConfirmed}, framePrack, web, same, actPrackLocal},
		{live, frameDTMF, web, same, actDTMF},
		{live, frameTransferAnswer, web, same, actAnswerRefer},
		{live, frameTransferReject, web, same, actRejectRefer},
		{live, frameTransferProgress, web, same, actReferProgress},
		{live, frameTrickle, web, same, actTrickle},
		// From a callee still ringing, and from the others.
		{live, frameOffer, notWeb, same, actNotEstablished},
		{live, frameTransfer, notWeb, same, actNotEstablished},
		{live, framePrack, notWeb, same, actPrackLocal},
		{[]sipPhase{inRinging}, frameRinging, fork, inRang, actProgress},
		{ringing, frameEarlyMedia, fork, inRang, actProgress},
		{ringing, frameAnswer, fork, inAnswered, actAnswer},
		{ringing, frameReject, fork, same, actForkDeclines},
		{ringing, frameLeave, fork, same, actForkLeaves},
		{ringing, frameTrickle, fork, same, actBufferTrickle},
	}
	type key struct {
		p  sipPhase
		in sipInput
		r  sipRole
	}
	want := map[key][2]int{}
	for _, row := range rows {
		for _, p := range row.phases {
			for _, r := range row.roles {
				k := key{p, row.in, r}
				if _, dup := want[k]; dup {
					t.Fatalf("two rows for %v %v %v", p, row.in, r)
				}
				next := row.next
				if next == same {
					next = p
				}
				want[k] = [2]int{int(next), int(row.act)}
			}
		}
	}
	for p := range numPhases {
		for in := range numInputs {
			roles := anyone
			if in <= sipOther {
				roles = sip
			}
			for _, r := range roles {
				w, ok := want[key{p, in, r}]
				if !ok {
					w = [2]int{int(p), int(actNone)}
				}
				next, act := sipNext(p, in, r)
				if int(next) != w[0] || int(act) != w[1] {
					t.Errorf("%v + %v %v: %v, %v; want %v, %v", p, in, r, next, act, sipPhase(w[0]), sipAction(w[1]))
				}
			}
		}
	}
}

func TestEventInput(t *testing.T) {
	for _, tc := range []struct {
		ev   sipgw.Event
		want sipInput
	}{
		{sipgw.Event{Kind: sipgw.EventProgress, Code: 180}, sipProgress},
		{sipgw.Event{Kind: sipgw.EventProgress, Code: 183}, sipProgress},
		{sipgw.Event{Kind: sipgw.EventProgress, Code: 183, Reliable: true}, sipProgressPrack},
		{sipgw.Event{Kind: sipgw.EventProgress, Code: 180, Reliable: true}, sipProgressAuto},
		{sipgw.Event{Kind: sipgw.EventAnswered, Code: 200}, sipAnswered},
		{sipgw.Event{Kind: sipgw.EventConfirmed}, sipConfirmed},
		{sipgw.Event{Kind: sipgw.EventReoffer}, sipReoffered},
		{sipgw.Event{Kind: sipgw.EventInfo}, sipInfo},
		{sipgw.Event{Kind: sipgw.EventRefer}, sipRefer},
		{sipgw.Event{Kind: sipgw.EventTransferProgress, Code: 100}, sipTransferProgress},
		{sipgw.Event{Kind: sipgw.EventRemoteSDP}, sipRemoteSDP},
		{sipgw.Event{Kind: sipgw.EventEnded}, sipEnded},
		// A session timer that ran out ends the call as a BYE would; the
		// shutdown carries its reason (endReason).
		{sipgw.Event{Kind: sipgw.EventEnded, End: sipgw.EndSessionExpired, Code: 408, Reason: "Session expired"}, sipEnded},
		// An UPDATE's offer is a re-offer like a re-INVITE's.
		{sipgw.Event{Kind: sipgw.EventReoffer, SDP: []byte("v=0")}, sipReoffered},
		{sipgw.Event{Kind: sipgw.EventPrack}, sipOther},
	} {
		if got := eventInput(tc.ev); got != tc.want {
			t.Errorf("%+v: %v, want %v", tc.ev, got, tc.want)
		}
	}
}

func TestFrameInput(t *testing.T) {
	sdp := protocol.CallPayload{SDP: webOffer}
	for _, tc := range []struct {
		w    wf
		want sipInput
	}{
		{wf{typ: protocol.TypeRequest, act: protocol.ActionStart, p: sdp}, frameOffer},
		{wf{typ: protocol.TypeResponse, act: protocol.ActionStart, code: 180}, frameRinging},
		{wf{typ: protocol.TypeResponse, act: protocol.ActionStart, state: protocol.StateSubsequent, p: sdp}, frameEarlyMedia},
		{wf{typ: protocol.TypeResponse, act: protocol.ActionStart, code: 200, p: sdp}, frameAnswer},
		{wf{typ: protocol.TypeResponse, act: protocol.ActionStart, state: protocol.StateFinal}, frameAnswer},
		{wf{typ: protocol.TypeError, act: protocol.ActionStart, code: 486}, frameReject},
		{wf{typ: protocol.TypeMessage, act: protocol.ActionComplete}, frameComplete},
		{wf{typ: protocol.TypeMessage, act: protocol.ActionShutdown}, frameLeave},
		{wf{typ: protocol.TypeRequest, act: protocol.ActionPrack}, framePrack},
		{wf{typ: protocol.TypeResponse, act: protocol.ActionPrack}, frameOther},
		{wf{typ: protocol.TypeMessage, act: protocol.ActionDTMF}, frameDTMF},
		{wf{typ: protocol.TypeRequest, act: protocol.ActionTransfer}, frameTransfer},
		{wf{typ: protocol.TypeResponse, act: protocol.ActionTransfer, code: 202}, frameTransferAnswer},
		{wf{typ: protocol.TypeError, act: protocol.ActionTransfer, code: 603}, frameTransferReject},
		{wf{typ: protocol.TypeMessage, act: protocol.ActionTransfer, code: 180}, frameTransferProgress},
		{wf{typ: protocol.TypeMessage, act: protocol.ActionStart, p: sdp}, frameOther},
		{wf{typ: protocol.TypeMessage, act: protocol.ActionTrickle}, frameTrickle},
	} {
		if got := frameInput(tc.w.frame()); got != tc.want {
			t.Errorf("%s/%s: %v, want %v", tc.w.typ, tc.w.act, got, tc.want)
		}
	}
}

// TestMediaOf: which transitions hand their SDP to rtpengine in an
// anchored call. A fork's 18x or a second 2xx after the call was answered
// does nothing, so it cannot replace the answer rtpengine keeps.
func TestMediaOf(t *testing.T) {
	for _, tc := range []struct {
		p    sipPhase
		in   sipInput
		r    sipRole
		want mediaOp
	}{
		{outCalling, sipProgress, bySIP, mediaSIPAnswer},
		{outEarly, sipProgressAuto, bySIP, mediaSIPAnswer},
		{outEarly, sipAnswered, bySIP, mediaSIPAnswer},
		{outAnswered, sipProgress, bySIP, mediaNone},
		{outConfirmed, sipAnswered, bySIP, mediaNone},
		{outConfirmed, sipReoffered, bySIP, mediaSIPOffer},
		{inConfirmed, sipReoffered, bySIP, mediaSIPOffer},
		{inRinging, sipReoffered, bySIP, mediaNone},
		{phaseOver, sipReoffered, bySIP, mediaNone},
		{outConfirmed, sipRemoteSDP, bySIP, mediaSIPReanswer},
		{inRinging, sipRemoteSDP, bySIP, mediaNone},
		{inRinging, frameAnswer, byFork, mediaWebAnswer},
		{inRinging, frameEarlyMedia, byFork, mediaWebAnswer},
		{inRinging, frameAnswer, byOther, mediaNone},
		{inConfirmed, frameAnswer, byWeb, mediaWebAnswer},
		{outConfirmed, frameOffer, byWeb, mediaWebOffer},
		{outCalling, frameOffer, byWeb, mediaNone},
		{outEarlyDialog, frameOffer, byWeb, mediaWebOffer},
		{outEarlyDialog, sipProgress, bySIP, mediaSIPAnswer},
		{outConfirmed, frameTrickle, byWeb, mediaNone},
	} {
		_, act := sipNext(tc.p, tc.in, tc.r)
		if got := mediaOf(act); got != tc.want {
			t.Errorf("%v %v %v: %v (action %v), want %v", tc.p, tc.in, tc.r, got, act, tc.want)
		}
	}
}
