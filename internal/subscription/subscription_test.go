package subscription

import (
	"cmp"
	"slices"
	"testing"

	"github.com/jsonrtc/jsonrtc/protocol"
)

type entry struct{ name string }

func TestTable(t *testing.T) {
	var tab Table[*entry]
	a, b, c := &entry{"x"}, &entry{"y"}, &entry{"x"}
	ka, kb, kc := Key{"s1", "x"}, Key{"s1", "y"}, Key{"s2", "x"}
	tab.Add(ka, a, nil)
	tab.Add(kb, b, nil)
	tab.Add(kc, c, nil)
	if got, ok := tab.Get(kb); !ok || got != b {
		t.Fatalf("Get(%v) = %v, %v", kb, got, ok)
	}
	if tab.Len() != 3 || tab.SessionLen("s1") != 2 || tab.SessionLen("s2") != 1 {
		t.Fatalf("Len %d, s1 %d, s2 %d", tab.Len(), tab.SessionLen("s1"), tab.SessionLen("s2"))
	}
	got := tab.Session("s1")
	slices.SortFunc(got, func(x, y *entry) int { return cmp.Compare(x.name, y.name) })
	if !slices.Equal(got, []*entry{a, b}) {
		t.Fatalf("Session(s1) = %v", got)
	}
	// Removing while ranging over Session's slice.
	for _, s := range tab.Session("s1") {
		tab.Remove(Key{"s1", s.name}, s)
	}
	if tab.Len() != 1 || tab.SessionLen("s1") != 0 || len(tab.bySession) != 1 {
		t.Fatalf("after removing s1: Len %d, s1 %d, sessions %d", tab.Len(), tab.SessionLen("s1"), len(tab.bySession))
	}
	// A replaced entry's removal leaves its successor under the key.
	d := &entry{"x"}
	tab.Add(kc, d, nil)
	tab.Remove(kc, c)
	if got, ok := tab.Get(kc); !ok || got != d {
		t.Fatalf("after removing the replaced entry, Get = %v, %v", got, ok)
	}
	tab.Remove(kc, d)
	if tab.Len() != 0 || len(tab.bySession) != 0 {
		t.Fatalf("not empty: Len %d, sessions %d", tab.Len(), len(tab.bySession))
	}
}

// quota is a subscriber with n subscriptions to give.
type quota struct{ n, held int }

func (q *quota) AcquireSubscription() bool {
	if q.held == q.n {
		return false
	}
	q.held++
	return true
}

func (q *quota) ReleaseSubscription() { q.held-- }

// TestTableQuota: Add takes a subscription from the subscriber's quota
// and refuses past it; Remove gives it back, once.
func TestTableQuota(t *testing.T) {
	var tab Table[*entry]
	q := &quota{n: 3}
	var subs []*entry
	for i := range 3 {
		e := &entry{string(rune('a' + i))}
		if !tab.Add(Key{"s1", e.name}, e, q) {
			t.Fatalf("subscription %d refused", i+1)
		}
		subs = append(subs, e)
	}
	over := &entry{"d"}
	if tab.Add(Key{"s1", "d"}, over, q) || tab.Len() != 3 || q.held != 3 {
		t.Fatalf("4th subscription admitted: Len %d, held %d", tab.Len(), q.held)
	}
	tab.Remove(Key{"s1", "a"}, subs[0])
	tab.Remove(Key{"s1", "a"}, subs[0])
	if q.held != 2 {
		t.Fatalf("held %d after one removal (twice)", q.held)
	}
	if !tab.Add(Key{"s1", "d"}, over, q) {
		t.Fatal("a removal did not make room")
	}
	// A subscriber without a quota is unlimited.
	if !tab.Add(Key{"s2", "x"}, &entry{"x"}, struct{}{}) {
		t.Fatal("unlimited subscriber refused")
	}
	for _, e := range tab.Session("s1") {
		tab.Remove(Key{"s1", e.name}, e)
	}
	if q.held != 0 {
		t.Fatalf("held %d after every subscription ended", q.held)
	}
}

func TestFrames(t *testing.T) {
	fr := Frames{Package: protocol.PackagePresence, Subsession: "sub1", Target: "sip:bob@example.com", Subscriber: "alice@example.com"}

	ok := fr.Accepted("c1", "", 60)
	if ok.Control.Type != protocol.TypeResponse || ok.Control.Package != protocol.PackagePresence || ok.Control.SubsessionID != "sub1" ||
		ok.Control.CorrelationID != "c1" || ok.Control.MessageState != protocol.StateFinal ||
		ok.Header.Action != protocol.ActionStart || ok.Header.Initiator != fr.Subscriber || ok.Header.Target != fr.Target ||
		ok.Header.ResponseCode != protocol.CodeOK || ok.Header.Expiry != 60 {
		t.Errorf("Accepted = %+v", ok)
	}
	if got := fr.Accepted("c1", "sip:alice@example.com", 60).Header.Initiator; got != "sip:alice@example.com" {
		t.Errorf("Accepted kept initiator %q", got)
	}

	e := fr.StartError("c2", "", protocol.CodeRequestTimeout, "late")
	if e.Control.Type != protocol.TypeError || e.Control.CorrelationID != "c2" || e.Header.ErrorCode != protocol.CodeRequestTimeout ||
		e.Header.Reason != "late" || e.Header.Initiator != fr.Subscriber || e.Header.Action != protocol.ActionStart {
		t.Errorf("StartError = %+v", e)
	}

	r := fr.Rejected("c3", "", 486, "")
	if r.Control.Type != protocol.TypeError || r.Control.CorrelationID != "c3" ||
		r.Header.ErrorCode != protocol.ClientErrorCode(486) || r.Header.Reason != protocol.Reason(protocol.ClientErrorCode(486)) {
		t.Errorf("Rejected = %+v", r)
	}
	long := string(make([]byte, 257))
	if got := fr.Rejected("c3", "", 486, long).Header.Reason; got == long {
		t.Error("Rejected kept a reason of 257 bytes")
	}

	n := fr.Notify([]byte(`{"status":"open"}`))
	if n.Control.Type != protocol.TypeMessage || n.Header.Action != protocol.ActionNotify ||
		n.Header.Initiator != fr.Target || n.Header.Target != fr.Subscriber || string(n.Payload) != `{"status":"open"}` {
		t.Errorf("Notify = %+v", n)
	}

	s := fr.Shutdown("bye")
	if s.Control.Type != protocol.TypeMessage || s.Header.Action != protocol.ActionShutdown ||
		s.Header.Initiator != fr.Target || s.Header.Target != fr.Subscriber || s.Header.Reason != "bye" {
		t.Errorf("Shutdown = %+v", s)
	}
}

func TestReply(t *testing.T) {
	f := &protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeRequest, SubsessionID: "sub1", Sequence: 7},
		Header:  protocol.Header{Action: protocol.ActionStart, Initiator: "a", Target: "b"},
	}
	e := Reply(protocol.PackageMessageNotification, f, protocol.TypeError, protocol.CodeNotFound, "")
	if e.Control.Type != protocol.TypeError || e.Control.Package != protocol.PackageMessageNotification ||
		e.Control.CorrelationID != "c7" || e.Control.MessageState != "" || e.Header.ErrorCode != protocol.CodeNotFound ||
		e.Header.ResponseCode != 0 || e.Header.Reason != protocol.Reason(protocol.CodeNotFound) {
		t.Errorf("error Reply = %+v", e)
	}
	r := Reply(protocol.PackagePresence, f, protocol.TypeResponse, protocol.CodeOK, "fine")
	if r.Control.Type != protocol.TypeResponse || r.Control.MessageState != protocol.StateFinal ||
		r.Header.ResponseCode != protocol.CodeOK || r.Header.ErrorCode != 0 || r.Header.Reason != "fine" {
		t.Errorf("response Reply = %+v", r)
	}
}
