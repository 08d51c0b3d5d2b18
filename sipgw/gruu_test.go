package sipgw

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// TestClusteredDialogContact (issue 15): a node of a cluster puts its own
// Contact, not its binding's GRUU, in the dialogs of a registered
// identity: in the INVITE, and in the target refresh of a call it adopts
// while it holds the identity's binding. The binding moves with the
// identity's web session, the call stays on its node: a GRUU led the
// peer's in-dialog requests to the session's node, which has no such
// dialog and answered 481. A gateway alone keeps the GRUU (RFC 5627
// section 4.4).
func TestClusteredDialogContact(t *testing.T) {
	const gruu = "sip:alice@example.com;gr=urn:uuid:00000000-0000-8000-8000-000000000001"
	for _, clustered := range []bool{false, true} {
		t.Run(fmt.Sprintf("clustered=%v", clustered), func(t *testing.T) {
			bob := adoptPeerGRUU(t, "INVITE, ACK, BYE, INFO, UPDATE", 0, gruu)
			cfg := Config{Listen: ListenConfig{UDP: "127.0.0.1:0"}, Domain: "example.com", Registrar: bob.uri(), OutboundProxy: bob.uri()}
			a := registeredWithGRUU(t, cfg, clustered, gruu)
			c := dialAnswered(t, a, "v=0\r\no=alice 1 1 IN IP4 127.0.0.1\r\n")
			ct := bob.next(t, sip.INVITE).Contact()
			_, port, _ := net.SplitHostPort(a.Addr("udp"))
			switch {
			case ct == nil:
				t.Fatal("INVITE without Contact")
			case !clustered && ct.Address.String() != gruu:
				t.Fatalf("INVITE Contact %s, want the GRUU %s", ct.Address.String(), gruu)
			case clustered && fmt.Sprint(ct.Address.Port) != port:
				t.Fatalf("INVITE Contact %s, want the node's own (port %s)", ct.Address.String(), port)
			}
			if !clustered {
				return
			}
			st, ok := c.Release()
			if !ok {
				t.Fatal("Release: no confirmed dialog")
			}
			for range c.Events() {
			}
			b := registeredWithGRUU(t, cfg, true, gruu)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := b.Adopt(ctx, viaStore(t, st), nil); err != nil {
				t.Fatal(err)
			}
			// The refresh is an UPDATE (bob allows it) with b's own Contact.
			checkInDialog(t, bob.next(t, sip.UPDATE), st, st.LocalCSeq+1, b)
		})
	}
}

// registeredWithGRUU starts a user agent (a cluster's node when
// clustered) with alice registered, the registrar having assigned gruu.
func registeredWithGRUU(t *testing.T, cfg Config, clustered bool, gruu string) *UserAgent {
	t.Helper()
	g := startWith(t, cfg, &Options{Clustered: clustered})
	r, err := g.Register(context.Background(), "alice@example.com", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.GRUU(); got != gruu {
		t.Fatalf("GRUU %q, want %q", got, gruu)
	}
	return g
}
