package call

import (
	"errors"
	"testing"

	"github.com/jsonrtc/jsonrtc/endpoint"
	"github.com/jsonrtc/jsonrtc/protocol"
)

// TestStartLookupFailedIsRetryable: a call to a target whose sessions the
// directory could not look up (a cluster's store read that timed out
// under load) gets 480 with the lookup's reason, not 404 "unknown
// target", which is final for a callee who is online (seen in gateway
// TestClusterForwardTakenWhileHostWaits, 1 in 80 runs).
func TestStartLookupFailedIsRetryable(t *testing.T) {
	e := newEnv(t, 0)
	e.dir.fail = map[string]error{"bob@web.example": errors.New("context deadline exceeded")}
	a := e.ep("alice@web.example")
	startTo(e, a, "a1", 1, "bob@web.example")
	refusedLookup(t, a)
	// Once the directory answers that nobody is there, the target is unknown.
	e.dir.mu.Lock()
	e.dir.fail = nil
	e.dir.mu.Unlock()
	startTo(e, a, "a2", 2, "bob@web.example")
	if r := a.expect(t, protocol.TypeError, protocol.ActionStart); r.Header.ErrorCode != protocol.CodeNotFound {
		t.Fatalf("alice's second start got %d %q, want 404", r.Header.ErrorCode, r.Header.Reason)
	}
}

// TestStartToSIPDomainLookupFailed: a call to a target in a SIP domain
// whose sessions the directory could not look up gets 480 with the
// lookup's reason and no INVITE: the target may be a web user online on
// another node, whom a read cut short took for nobody, sending the call
// out to SIP.
func TestStartToSIPDomainLookupFailed(t *testing.T) {
	e := newEnv(t, 0)
	e.dir.fail = map[string]error{"bob@sip.example": errors.New("context deadline exceeded")}
	a := e.ep("alice@web.example")
	startTo(e, a, "a1", 1, "bob@sip.example")
	select {
	case fc := <-e.dials:
		t.Fatalf("a call to %s went to SIP though its sessions could not be looked up", fc.dial.Target)
	default:
	}
	refusedLookup(t, a)
}

// startTo has a start a call to target on sub, numbered seq.
func startTo(e *env, a *fakeEP, sub string, seq uint64, target string) {
	f := wf{typ: protocol.TypeRequest, act: protocol.ActionStart, sub: sub, seq: seq, p: protocol.CallPayload{SDP: webOffer}}.frame()
	f.Header.Target = target
	e.h.HandleFrame(a, f)
}

// refusedLookup: a's start is answered 480 with the lookup's reason.
func refusedLookup(t *testing.T, a *fakeEP) {
	t.Helper()
	r := a.expect(t, protocol.TypeError, protocol.ActionStart)
	if r.Header.ErrorCode != protocol.CodeTemporarilyUnavail || r.Header.Reason != endpoint.ErrLookup {
		t.Fatalf("the start got %d %q, want 480 %q", r.Header.ErrorCode, r.Header.Reason, endpoint.ErrLookup)
	}
}
