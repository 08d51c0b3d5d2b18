package sipgw

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// TestDialKeys: the Call-ID and From-tag a caller chooses are the
// INVITE's and the call's Keys; each response's To-tag reaches the
// events (a media relay keys forks by it); bad ones are refused before
// anything is sent.
func TestDialKeys(t *testing.T) {
	h := newHop(t, false)
	g := startToward(t, h, ListenConfig{UDP: "127.0.0.1:0"}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, o := range []DialOptions{{CallID: "bad call id"}, {FromTag: "t;x"}, {CallID: string(make([]byte, 65))}} {
		o.Identity, o.Target, o.SDP = "alice@example.com", "bob", []byte(smallSDP)
		if _, err := g.Dial(ctx, o); !errors.Is(err, ErrInvalidInput) {
			t.Errorf("%+v: %v, want ErrInvalidInput", o, err)
		}
	}
	c, err := g.Dial(ctx, DialOptions{Identity: "alice@example.com", Target: "bob", SDP: []byte(smallSDP), CallID: "cid-1", FromTag: "ft-1"})
	if err != nil {
		t.Fatal(err)
	}
	m := h.next(t, sip.INVITE)
	if tag, _ := m.req.From().Params.Get("tag"); m.req.CallID().Value() != "cid-1" || tag != "ft-1" {
		t.Fatalf("INVITE Call-ID %q From-tag %q", m.req.CallID().Value(), tag)
	}
	if k := c.Keys(); k != (DialogKeys{CallID: "cid-1", LocalTag: "ft-1"}) {
		t.Fatalf("keys %+v", k)
	}
	ringing := sip.NewResponseFromRequest(m.req, 180, "Ringing", nil)
	ringing.To().Params.Add("tag", "fork-a")
	m.reply(ringing)
	busy := sip.NewResponseFromRequest(m.req, 486, "Busy Here", nil)
	busy.To().Params.Add("tag", "fork-b")
	var tags []string
	for ev := range c.Events() {
		if ev.Kind == EventProgress {
			tags = append(tags, ev.ToTag)
			m.reply(busy)
		}
	}
	if len(tags) != 1 || tags[0] != "fork-a" {
		t.Fatalf("progress To-tags %q, want [fork-a]", tags)
	}
}
