package sipgw

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// An in-dialog request whose state could not be written ahead does not
// leave: it fails with ErrNotRecorded (503), its CSeq is not taken, and
// the peer sees nothing; a BYE goes anyway, with the CSeq the refused
// requests did not take. Before, a failed write-ahead let the request go
// with a CSeq the record lacked, which an adopter would send again.
func TestWriteAheadFailedRefusesRequest(t *testing.T) {
	bob := adoptPeer(t, "", 0)
	_, c := upCall(t, Config{Listen: ListenConfig{UDP: "127.0.0.1:0"}, Domain: "example.com", OutboundProxy: bob.uri()})
	first := bob.next(t, sip.INVITE).CSeq().SeqNo
	ctx := context.Background()
	down := errors.New("store down")
	var tried []uint32
	c.SetWriteAhead(func(s DialogState) error { tried = append(tried, s.LocalCSeq); return down })

	err := c.SendDTMF(ctx, "1", 0)
	if !errors.Is(err, ErrNotRecorded) || !errors.Is(err, down) || ResponseCode(err) != 503 {
		t.Fatalf("DTMF with its write-ahead failed: %v (code %d), want ErrNotRecorded, 503", err, ResponseCode(err))
	}
	if _, _, err := c.Reoffer(ctx, []byte("v=0\r\no=alice 1 2 IN IP4 127.0.0.1\r\n")); !errors.Is(err, ErrNotRecorded) {
		t.Fatalf("re-offer with its write-ahead failed: %v, want ErrNotRecorded", err)
	}
	if err := c.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	// The BYE is the first request but an ACK the peer got since.
	r := <-bob.got
	for r.Method == sip.ACK {
		r = <-bob.got
	}
	if r.Method != sip.BYE || r.CSeq().SeqNo != first+1 {
		t.Fatalf("the peer's next request %s CSeq %d, want BYE %d", r.Method, r.CSeq().SeqNo, first+1)
	}
	if len(tried) != 3 || tried[0] != first+1 || tried[2] != first+1 {
		t.Fatalf("write-aheads tried with CSeqs %v, want three of %d", tried, first+1)
	}
}

// nextAck returns the next ACK the peer got.
func nextAck(t *testing.T, p *fakeProxy) *sip.Request {
	t.Helper()
	select {
	case r := <-p.acks:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("no ACK")
		return nil
	}
}

// A node that dies between its re-INVITE and the ACK of its 2xx leaves
// the ACK owed in the record written ahead of the re-INVITE; the adopter
// sends it, with the re-INVITE's CSeq, before its target refresh, whose
// re-INVITE offers the last completed SDP with its o= version bumped
// twice (past the lost offer's). Before, the peer retransmitted its 2xx
// to the dead node and ended the dialog at 64*T1.
func TestAdoptSendsOwedAck(t *testing.T) {
	bob := adoptPeer(t, "", 0) // no UPDATE: the refresh is a re-INVITE
	cfg := Config{Listen: ListenConfig{UDP: "127.0.0.1:0"}, Domain: "example.com", OutboundProxy: bob.uri()}
	a, c := upCall(t, cfg)
	ctx := context.Background()
	first := bob.next(t, sip.INVITE).CSeq().SeqNo
	nextAck(t, bob) // the INVITE's
	aheads := make(chan DialogState, 4)
	c.SetWriteAhead(func(s DialogState) error { aheads <- s; return nil })
	if _, _, err := c.Reoffer(ctx, []byte("v=0\r\no=alice 1 2 IN IP4 127.0.0.1\r\nc=IN IP4 0.0.0.0\r\n")); err != nil {
		t.Fatal(err)
	}
	st := <-aheads
	if !st.AckOwed || st.LocalCSeq != first+1 || st.LocalSDP != "v=0\r\no=alice 1 1 IN IP4 127.0.0.1\r\n" {
		t.Fatalf("the re-INVITE's state written ahead: ack owed %v, CSeq %d, SDP %q", st.AckOwed, st.LocalCSeq, st.LocalSDP)
	}
	bob.next(t, sip.INVITE) // A's re-INVITE
	if ack := nextAck(t, bob); ack.CSeq().SeqNo != first+1 {
		t.Fatalf("A's ACK CSeq %d, want %d", ack.CSeq().SeqNo, first+1)
	}
	if now := nextState(t, c, func(s DialogState) bool { return !s.AckOwed }); now.LocalCSeq != first+1 {
		t.Fatalf("after the ACK the state is %+v", now)
	}
	// A dies before its ACK: the adopter has the state written ahead.
	if _, ok := c.Release(); !ok {
		t.Fatal("not released")
	}
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	b := startWith(t, cfg, nil)
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cb, err := b.Adopt(actx, viaStore(t, st), nil)
	if err != nil {
		t.Fatal(err)
	}
	re := bob.next(t, sip.INVITE)
	select {
	case ack := <-bob.acks:
		if ack.CSeq().SeqNo != first+1 || ack.CSeq().MethodName != sip.ACK {
			t.Fatalf("the adopter's ACK CSeq %v, want %d ACK", ack.CSeq(), first+1)
		}
	default:
		t.Fatal("the refresh came without the owed ACK before it")
	}
	if re.CSeq().SeqNo != first+2 || string(re.Body()) != "v=0\r\no=alice 1 3 IN IP4 127.0.0.1\r\n" {
		t.Fatalf("the refresh CSeq %d SDP %q, want %d with the version bumped twice", re.CSeq().SeqNo, re.Body(), first+2)
	}
	if err := cb.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
}
