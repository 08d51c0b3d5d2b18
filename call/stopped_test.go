package call

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/jsonrtc/jsonrtc/protocol"
)

// TestSessionStopped: a session whose node stops keeping its record (a
// shutdown with a store) leaves its web calls as they are: its peer
// hears nothing, and the call still relays; its SIP calls end as they
// would at its end (their dialogs end with the SIP side).
func TestSessionStopped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, time.Minute)
		a, b := e.ep("alice@web.example"), e.ep("bob@web.example")
		st := e.webCall(t, a, b, "c1", 1)
		e.h.SessionStopped(a)
		b.quiet(t)
		e.send(b, wf{typ: protocol.TypeMessage, act: protocol.ActionShutdown, sub: st.Control.SubsessionID, seq: 2})
		a.expect(t, protocol.TypeMessage, protocol.ActionShutdown)

		c, fc := e.outgoing(t)
		e.answerOut(t, c, fc)
		e.h.SessionStopped(c)
		fc.expectOp(t, "hangup")
	})
}
