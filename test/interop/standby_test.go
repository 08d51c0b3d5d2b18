package interop

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/client"
	"github.com/jsonrtc/jsonrtc/gateway"
	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/push"
)

// TestWebIncomingToStandby: alice's web session sleeps in standby
// (docs/protocol.md §4.9) when SIPp calls her through Kamailio: the
// gateway answers the INVITE 180 at once (the scenario requires a 180
// before the 200, and alice's client never sends ringing of its own),
// pushes alice's signed webhook, and once she wakes her client rings and
// answers.
func TestWebIncomingToStandby(t *testing.T) {
	const secret = "interop-webhook-secret"
	type wake struct{ Kind, From, Identity, Token string }
	hooks := make(chan wake, 4)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := push.VerifyWebhook([]byte(secret), r.Header, body, time.Now(), time.Minute); err != nil {
			t.Errorf("webhook: %v", err)
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		var ev wake
		json.Unmarshal(body, &ev)
		hooks <- ev
	}))
	t.Cleanup(hook.Close)
	k := startKamailio(t)
	w := startWebGateway(t, k, func(c *gateway.Config) {
		c.Push.Webhook = gateway.WebhookConfig{URL: hook.URL + "/wake", Secret: secret}
	})
	a := w.alice(t, nil)
	if _, err := a.Standby(ctxT(t), protocol.PushChannel{Type: protocol.PushWebhook, Token: "alice-phone"}); err != nil {
		t.Fatal(err)
	}
	webNext(t, a, client.EventStandby)
	uac := startSipp(t, "uac_call_ringing.xml", k.Addr)
	select {
	case ev := <-hooks:
		if ev.Kind != "call" || ev.From == "" || ev.Identity != "alice@"+domain || ev.Token != "alice-phone" {
			t.Fatalf("push %+v", ev)
		}
	case <-ctxT(t).Done():
		t.Fatal("no push")
	}
	if err := a.Wake(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	webNext(t, a, client.EventResumed)
	in := webNext(t, a, client.EventIncomingCall)
	if err := in.Call.Ring(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if err := in.Call.Answer(ctxT(t), offer); err != nil {
		t.Fatal(err)
	}
	webExpect(t, a, client.CallEstablished)
	webExpect(t, a, client.CallEnded)
	uac.expectSuccess(t)
}
