package sipgw

import "testing"

func TestAllowList(t *testing.T) {
	// sipgo lists its handlers in map order; Allow keeps one order and
	// names exactly the methods that have a handler.
	got := allowList([]string{"MESSAGE", "INVITE", "update", "ACK", "BYE", "NOTIFY", "OPTIONS", "CANCEL", "PRACK", "INFO", "REFER"})
	if want := "INVITE, ACK, CANCEL, BYE, OPTIONS, PRACK, UPDATE, INFO, REFER, NOTIFY, MESSAGE"; got != want {
		t.Fatalf("Allow %q, want %q", got, want)
	}
}

func TestSupported(t *testing.T) {
	for _, tc := range []struct {
		rel100, trickle bool
		want            string
	}{
		{true, false, "100rel, replaces, timer"},
		{false, false, "replaces, timer"},
		{true, true, "100rel, replaces, timer, trickle-ice"},
	} {
		if got := supported(tc.rel100, tc.trickle); got != tc.want {
			t.Errorf("supported(%v, %v) = %q, want %q", tc.rel100, tc.trickle, got, tc.want)
		}
	}
}
