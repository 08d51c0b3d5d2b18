package interop

import (
	"strconv"
	"testing"

	"github.com/jsonrtc/jsonrtc/gateway"
	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/routing"
)

// Issue 16: the extension headers of a send (client.Send's ext) reach
// the MESSAGE SIPp receives through Kamailio by a header rule that
// reads them ({ext:NAME}, docs/routing.md); calls.sip_headers is the
// allow-list of calls and lets none onto a MESSAGE (SIPp checks both).
func TestSendExtensionHeadersToSIP(t *testing.T) {
	env := startEventsEnv(t, func(c *gateway.Config) {
		c.Calls.SIPHeaders = []string{"X-Secret"}
		c.Routing.Headers = []routing.HeaderRuleConfig{{Header: "X-Account", Value: "acct-{ext:x-account}", Methods: []string{"MESSAGE"}, On: "requests"}}
	})
	alice := env.web(t, "alice@"+domain)
	uas := startSipp(t, "uas_message_ext.xml", "")
	code, err := alice.Send(ctxT(t), "uas-"+strconv.Itoa(uas.Port)+"@"+domain, "text/plain", "hello sip",
		protocol.Ext{Name: "x-account", Kind: protocol.ExtNumber, Value: "42"}, protocol.Ext{Name: "X-Secret", Value: "s3cret"})
	if err != nil || code != 200 {
		t.Fatalf("Send = %d, %v", code, err)
	}
	uas.expectSuccess(t)
}
