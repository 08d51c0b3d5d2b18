package interop

import (
	"regexp"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/jsonrtc/jsonrtc/sipgw"
)

var seenContact = regexp.MustCompile(`SEEN CONTACT (\S+) <sip:([^@]+)@[^>]*>;.*\+sip\.instance="<([^>]+)>"`)

// contactsSeen returns the Contact user and +sip.instance of every
// REGISTER from user that Kamailio received, in order.
func (k *Kamailio) contactsSeen(t *testing.T, user string) (users, instances []string) {
	t.Helper()
	for line := range strings.SplitSeq(k.logged(t), "\n") {
		m := seenContact.FindStringSubmatch(line)
		if m == nil || m[1] != user {
			continue
		}
		users, instances = append(users, m[2]), append(instances, m[3])
	}
	return users, instances
}

// The +sip.instance and Contact user of an identity's registration derive
// from sip.instance_secret and the identity (RFC 5626 section 4.1): two
// gateways in sequence with the same secret (a restart) register the same
// instance and Contact, so the registrar replaces the binding rather than
// adding one; and get the same GRUU (RFC 5627), which Kamailio assigns
// per instance. Another secret gives another instance.
func TestRegisterInstanceStableAcrossRestart(t *testing.T) {
	k := startKamailioWith(t, 1, true)
	secret := func(c *sipgw.Config) { c.InstanceSecret = "interop-deployment-secret" }
	var gruus []string
	for range 2 {
		g := newGateway(t, k, secret)
		r, err := g.Register(ctxT(t), "open@"+domain, nil)
		if err != nil {
			t.Fatal(err)
		}
		gruus = append(gruus, r.GRUU())
		if err := g.Close(ctxT(t)); err != nil {
			t.Fatal(err)
		}
	}
	other := newGateway(t, k, func(c *sipgw.Config) { c.InstanceSecret = "another-deployment-secret" })
	if _, err := other.Register(ctxT(t), "open@"+domain, nil); err != nil {
		t.Fatal(err)
	}
	users, instances := k.contactsSeen(t, "open")
	// Each gateway: REGISTER, then the removal of its Close.
	if len(instances) != 5 {
		t.Fatalf("REGISTERs seen: %v %v", users, instances)
	}
	for i := 1; i < 4; i++ {
		if instances[i] != instances[0] || users[i] != users[0] {
			t.Errorf("REGISTER %d: %s %s, want %s %s", i, users[i], instances[i], users[0], instances[0])
		}
	}
	if !strings.HasPrefix(instances[0], "urn:uuid:") || instances[4] == instances[0] || users[4] == users[0] {
		t.Errorf("instances %v, users %v", instances, users)
	}
	if !strings.Contains(gruus[0], ";gr="+instances[0]) || gruus[1] != gruus[0] {
		t.Errorf("GRUUs %q, want the same one twice", gruus)
	}
	t.Logf("instance %s, GRUU %s", instances[0], gruus[0])
}

// The INVITE of a registered identity carries its GRUU as Contact (RFC
// 5627 section 4.4), and the far end's in-dialog BYE, sent to it, reaches
// the call through the registrar's domain.
func TestGRUUContactInDialogs(t *testing.T) {
	k := startKamailio(t)
	g := newGateway(t, k, nil)
	r := registerAlice(t, g)
	t.Cleanup(func() { r.Release(ctxT(t)) })
	if r.GRUU() == "" {
		t.Fatal("Kamailio assigned no GRUU")
	}
	uas := farEndBye(t, g)
	b, err := readLog(uas.Dir, "*messages.log")
	if err != nil {
		t.Fatal(err)
	}
	_, invite, _ := strings.Cut(string(b), "INVITE sip:")
	var ct *sip.ContactHeader
	if m, err := sip.ParseMessage([]byte("INVITE sip:" + strings.SplitN(invite, "\n\n", 2)[0] + "\r\n\r\n")); err == nil {
		ct = m.(*sip.Request).Contact()
	}
	if ct == nil || !strings.Contains(ct.Address.String(), "gr=") || ct.Address.User != "alice" {
		t.Fatalf("INVITE Contact %v, want the GRUU %s", ct, r.GRUU())
	}
}
