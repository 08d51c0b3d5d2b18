package sipgw

import (
	"context"
	"errors"
	"testing"

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
