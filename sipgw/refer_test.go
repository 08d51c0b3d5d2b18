package sipgw

import "testing"

func TestParseSipfrag(t *testing.T) {
	for _, tc := range []struct {
		body   string
		code   int
		reason string
	}{
		{"SIP/2.0 100 Trying\r\n", 100, "Trying"},
		{"SIP/2.0 200 OK\r\nContent-Length: 0\r\n", 200, "OK"},
		{"SIP/2.0 486 Busy Here", 486, "Busy Here"},
		{"SIP/2.0 180", 180, ""},
		{"", 0, ""},
		{"INVITE sip:x SIP/2.0\r\n", 0, ""},
		{"SIP/2.0 99 Low\r\n", 0, ""},
		{"SIP/2.0 abc Nope\r\n", 0, ""},
	} {
		code, reason := parseSipfrag([]byte(tc.body))
		if code != tc.code || reason != tc.reason {
			t.Errorf("%q: %d %q, want %d %q", tc.body, code, reason, tc.code, tc.reason)
		}
	}
}

func TestSameSession(t *testing.T) {
	a := []byte("v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\n")
	for _, tc := range []struct {
		b    string
		same bool
	}{
		{string(a), true},
		{"v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\na=sendrecv\r\n", true},
		{"v=0\r\no=user1 53655765 2353687638 IN IP4 127.0.0.1\r\ns=-\r\n", false},
		{"v=0\r\ns=-\r\n", false},
	} {
		if got := sameSession(a, []byte(tc.b)); got != tc.same {
			t.Errorf("%q: %v, want %v", tc.b, got, tc.same)
		}
	}
}
