package messaging

import (
	"errors"
	"testing"

	"github.com/jsonrtc/jsonrtc/endpoint"
	"github.com/jsonrtc/jsonrtc/protocol"
)

// TestLookupFailedIsRetryable: a message to a target whose sessions the
// directory could not look up (a cluster's store read that timed out)
// gets 480 with the lookup's reason, from a web sender and from SIP, not
// 404, which says nobody is there.
func TestLookupFailedIsRetryable(t *testing.T) {
	h, d := newHandler(t, Options{})
	a := d.add("a", "alice@x")
	d.fail = map[string]error{"bob@x": errors.New("context deadline exceeded")}

	h.HandleFrame(a, sendFrame(1, "bob@x", `{"body":"x"}`))
	wantReport(t, a.only(t), protocol.TypeError, 1, "bob@x", protocol.CodeTemporarilyUnavail, endpoint.ErrLookup)

	var ans answers
	h.Deliver("sip:+1@pstn", "sip:bob@x", protocol.MessagePayload{ContentType: "text/plain", Body: "x"}, ans.fn)
	ans.want(t, "480 "+endpoint.ErrLookup)
	idle(t, h)
}
