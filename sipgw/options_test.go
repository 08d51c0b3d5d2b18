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
		{true, false, "100rel, timer"},
		{false, false, "timer"},
		{true, true, "100rel, timer, trickle-ice"},
	} {
		if got := supported(tc.rel100, tc.trickle); got != tc.want {
			t.Errorf("supported(%v, %v) = %q, want %q", tc.rel100, tc.trickle, got, tc.want)
		}
	}
}

func TestSDPOrigin(t *testing.T) {
	for _, tc := range []struct{ sdp, want string }{
		{"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\n", "o=- 1 2 IN IP4 127.0.0.1"},
		{"v=0\no=alice 5 6 IN IP4 10.0.0.1\n", "o=alice 5 6 IN IP4 10.0.0.1"},
		{"", ""},
		{"v=0\r\ns=-\r\n", ""},
	} {
		if got := sdpOrigin([]byte(tc.sdp)); got != tc.want {
			t.Errorf("%q: %q, want %q", tc.sdp, got, tc.want)
		}
	}
}
