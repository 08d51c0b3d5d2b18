package sipgw

import (
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// TestAdoptedInfoThenBye (docs/cluster.md "Known defects", the INFO
// lost right after an adoption): the peer's INFOs (DTMF) and its BYE
// reach an adopted call before anyone reads its Events (the call handler
// installs the call after Adopt returns) while its owner goroutine is
// busy (a loaded node). Each INFO is answered 200 only by the owner,
// which queues its event next; the peer's BYE comes after them, and the
// events come in order, every digit before the end. Before, an INFO was
// answered at once and its event dropped when the owner came to it and
// to the BYE's end together (select picks at random: each INFO half the
// time), or to the end first. A few calls: the old code kept all of one
// call's digits about a third of the time.
func TestAdoptedInfoThenBye(t *testing.T) {
	for range 4 {
		adoptedInfoThenBye(t)
	}
}

func adoptedInfoThenBye(t *testing.T) {
	bob := adoptPeer(t, "", 0)
	cfg := Config{Listen: ListenConfig{UDP: "127.0.0.1:0"}, Domain: "example.com", OutboundProxy: bob.uri()}
	a, c := upCall(t, cfg)
	bob.next(t, sip.INVITE)
	b, cb, st := handOver(t, a, c, cfg)
	bob.next(t, sip.INVITE) // the target refresh

	release := holdOwner(t, cb)
	from, to := "<sip:bob@example.com>;tag=far", "<sip:alice@example.com>;tag="+st.LocalTag
	ruri := "sip:gw@" + b.Addr("udp")
	gw, err := net.ResolveUDPAddr("udp", b.Addr("udp"))
	if err != nil {
		t.Fatal(err)
	}
	write := func(method string, cseq int, extra, body string) {
		if _, err := bob.pc.WriteTo([]byte(bob.rawRequest(method, ruri, from, to, st.CallID, cseq, extra, body)), gw); err != nil {
			t.Fatal(err)
		}
	}
	answers := map[uint32]int{}
	answered := func(cseq uint32) int {
		timeout := time.After(10 * time.Second)
		for answers[cseq] == 0 {
			select {
			case res := <-bob.res:
				if res.StatusCode >= 200 {
					answers[res.CSeq().SeqNo] = res.StatusCode
				}
			case <-timeout:
				t.Fatalf("no answer to CSeq %d", cseq)
			}
		}
		return answers[cseq]
	}
	const infos = 6
	for i := range infos {
		write("INFO", 2+i, "Content-Type: application/dtmf-relay\r\n", fmt.Sprintf("Signal=%d\r\nDuration=100\r\n", i+1))
		untilQueued(t, cb, i+1)
	}
	bye := uint32(2 + infos)
	write("BYE", int(bye), "", "")
	if code := answered(bye); code != 200 {
		t.Fatalf("BYE answered %d", code)
	}
	for i := range infos {
		if code := answers[uint32(2+i)]; code != 0 {
			t.Errorf("INFO %d answered %d before its event could be queued (the owner busy)", i+1, code)
		}
	}
	release()

	var got []string
	for ev := range cb.Events() {
		switch ev.Kind {
		case EventInfo:
			got = append(got, ev.Digit)
		case EventEnded:
			if ev.End != EndRemoteBye {
				t.Errorf("ended %v, want the peer's BYE", ev.End)
			}
			got = append(got, "end")
		default:
			t.Errorf("event %v", ev.Kind)
		}
	}
	want := []string{"1", "2", "3", "4", "5", "6", "end"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("events %v, want every digit in order, then the end", got)
	}
	for i := range infos {
		if code := answered(uint32(2 + i)); code != 200 {
			t.Errorf("INFO %s answered %d", strconv.Itoa(i+1), code)
		}
	}
}

// holdOwner keeps c's owner goroutine busy until the returned function
// (or the test's end) lets it go: work handed to it waits.
func holdOwner(t *testing.T, c *Call) func() {
	t.Helper()
	held, let := make(chan struct{}), make(chan struct{})
	if !c.deliver(func() { close(held); <-let }) {
		t.Fatal("the call is over")
	}
	<-held
	var once sync.Once
	release := func() { once.Do(func() { close(let) }) }
	t.Cleanup(release)
	return release
}

// untilQueued waits until n pieces of work wait for c's owner goroutine
// (held by holdOwner). A channel's length has no event to wait on: it
// is read every millisecond, for 10 s at most.
func untilQueued(t *testing.T, c *Call, n int) {
	t.Helper()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	timeout := time.After(10 * time.Second)
	for len(c.in) < n {
		select {
		case <-tick.C:
		case <-timeout:
			t.Fatalf("%d pieces of work for the call's owner, want %d", len(c.in), n)
		}
	}
}
