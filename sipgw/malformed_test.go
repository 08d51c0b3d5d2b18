package sipgw

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// tortureDir holds the RFC 4475 messages, shared with test/interop.
const tortureDir = "../test/interop/testdata/torture"

// tortureVerdicts is what the check does with each RFC 4475 message
// arriving as a datagram: 0 hands it to sipgo, -1 drops it, anything
// else is the status it is answered with here.
var tortureVerdicts = map[string]int{
	"invalid/badaspec.dat":   400, // 3.1.2.14 spaces within addr-spec
	"invalid/badbranch.dat":  0,   // 3.2.1 sipgo falls back to RFC 2543 matching, as allowed
	"invalid/baddate.dat":    0,   // 3.1.2.11 the Date is not ours to care about
	"invalid/baddn.dat":      400, // 3.1.2.15 (this copy also lacks the empty line)
	"invalid/badinv01.dat":   400, // 3.1.2.1 extraneous separators in Via
	"invalid/badvers.dat":    505, // 3.1.2.15 unknown protocol version
	"invalid/bcast.dat":      0,   // 3.3.10 a response: sipgo discards it
	"invalid/bext01.dat":     420, // 3.3.5 Require
	"invalid/bigcode.dat":    0,   // 3.1.2.19 a response: sipgo discards it
	"invalid/clerr.dat":      400, // 3.1.2.2 Content-Length larger than the message
	"invalid/cparam01.dat":   0,   // 3.3.12
	"invalid/cparam02.dat":   0,   // 3.3.13
	"invalid/escruri.dat":    400, // 3.1.2.11 escaped headers in the Request-URI
	"invalid/insuf.dat":      400, // 3.3.1 no From, To, Call-ID
	"invalid/inv2543.dat":    0,   // 3.4.1 RFC 2543 syntax, accepted
	"invalid/invut.dat":      0,   // 3.3.6 for the INVITE handler
	"invalid/ltgtruri.dat":   400, // 3.1.2.7 <> around the Request-URI
	"invalid/lwsruri.dat":    400, // 3.1.2.8 LWS in the Request-URI
	"invalid/lwsstart.dat":   400, // 3.1.2.9 several SP in the Request-Line
	"invalid/mcl01.dat":      400, // 3.3.9 two Content-Length
	"invalid/mismatch01.dat": 400, // 3.1.2.16 CSeq method mismatch
	"invalid/mismatch02.dat": 400, // 3.1.2.17 (501 preferred, 400 allowed)
	"invalid/multi01.dat":    400, // 3.3.8 several Call-ID, To, From, CSeq
	"invalid/ncl.dat":        400, // 3.1.2.3 negative Content-Length
	"invalid/novelsc.dat":    416, // 3.3.3 soap.beep: scheme
	"invalid/quotbal.dat":    400, // 3.1.2.5 unterminated quote
	"invalid/regaut01.dat":   0,   // 3.3.7
	"invalid/regbadct.dat":   0,   // 3.1.2.13 a REGISTER: 405 comes first
	"invalid/regescrt.dat":   0,   // 3.3.14
	"invalid/scalar02.dat":   400, // 3.1.2.4 CSeq beyond 2**31-1
	"invalid/scalarlg.dat":   0,   // 3.1.2.5 a response: sipgo discards it
	"invalid/sdp01.dat":      0,   // 3.3.15 for the INVITE handler
	"invalid/test.dat":       -1,  // no SIP version, no Via: nobody to answer
	"invalid/trws.dat":       400, // 3.1.2.10 SP at the end of the Request-Line
	"invalid/unkscm.dat":     416, // 3.3.2 unknown scheme
	"invalid/unksm2.dat":     0,   // 3.3.4 unknown schemes in fields are fine
	"invalid/zeromf.dat":     0,   // 3.3.11 Max-Forwards 0 at an endpoint
	"valid/dblreq.dat":       0,
	"valid/esc01.dat":        0,
	"valid/esc02.dat":        0,
	"valid/escnull.dat":      0,
	"valid/intmeth.dat":      0,
	"valid/longreq.dat":      0,
	"valid/lwsdisp.dat":      0,
	"valid/mpart01.dat":      0,
	"valid/noreason.dat":     0,
	"valid/semiuri.dat":      0,
	"valid/transports.dat":   0,
	"valid/unreason.dat":     0,
	"valid/wsinv.dat":        0,
}

// copiesBadFields: answers that copy back the request's own malformed
// Via, From, To or CSeq (RFC 3261 8.2.6.2), so sipgo cannot parse them
// either.
var copiesBadFields = map[string]bool{
	"invalid/badaspec.dat": true, "invalid/baddn.dat": true, "invalid/quotbal.dat": true, "invalid/badinv01.dat": true,
	"invalid/scalar02.dat": true,
}

func tortureFiles(t testing.TB) map[string][]byte {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(tortureDir, "*", "*.dat"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no torture messages in %s: %v", tortureDir, err)
	}
	out := map[string][]byte{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.ToSlash(strings.TrimPrefix(f, tortureDir+string(filepath.Separator)))] = b
	}
	return out
}

func verdictCode(v verdict) int {
	switch v.kind {
	case pass:
		return 0
	case drop:
		return -1
	}
	return v.code
}

func TestCheckTorture(t *testing.T) {
	src := netip.MustParseAddrPort("192.0.2.200:5070")
	files := tortureFiles(t)
	if len(files) != len(tortureVerdicts) {
		t.Errorf("%d torture files, %d verdicts in the table", len(files), len(tortureVerdicts))
	}
	for name, msg := range files {
		want, ok := tortureVerdicts[name]
		if !ok {
			t.Errorf("%s: not in the table", name)
			continue
		}
		var h head
		h.parse(msg)
		v := h.judge(msg, len(msg))
		if got := verdictCode(v); got != want {
			t.Errorf("%s: verdict %d %q, want %d", name, got, v.reason, want)
			continue
		}
		if v.kind != answer {
			continue
		}
		res := appendAnswer(nil, msg, &h, v, src)
		checkAnswerShape(t, name, res)
		if copiesBadFields[name] {
			continue
		}
		m, err := sip.ParseMessage(res)
		if err != nil {
			t.Errorf("%s: answer does not parse: %v\n%s", name, err, res)
			continue
		}
		r := m.(*sip.Response)
		if r.StatusCode != want || r.CSeq() == nil || r.Via() == nil {
			t.Errorf("%s: answer %d, CSeq %v, Via %v", name, r.StatusCode, r.CSeq(), r.Via())
		}
		if r.CallID() != nil && r.To() != nil && !r.To().Params.Has("tag") {
			t.Errorf("%s: answer without a To tag", name)
		}
	}
}

// checkAnswerShape: a status line, CRLF lines with no stray CR or LF,
// a CSeq and at least one Via, the empty line at the end.
func checkAnswerShape(t *testing.T, name string, res []byte) {
	t.Helper()
	if !bytes.HasPrefix(res, []byte("SIP/2.0 ")) || !bytes.HasSuffix(res, []byte("\r\nContent-Length: 0\r\n\r\n")) {
		t.Errorf("%s: answer framing:\n%q", name, res)
		return
	}
	lines := strings.Split(strings.TrimSuffix(string(res), "\r\n\r\n"), "\r\n")
	var via, cseq int
	for _, l := range lines {
		if strings.ContainsAny(l, "\r\n") {
			t.Errorf("%s: stray line break in %q", name, l)
		}
		via += b2i(strings.HasPrefix(l, "Via: "))
		cseq += b2i(strings.HasPrefix(l, "CSeq: "))
	}
	if via == 0 || cseq != 1 {
		t.Errorf("%s: %d Via, %d CSeq in\n%s", name, via, cseq, res)
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

const testInvite = "INVITE sip:bob@example.com SIP/2.0\r\n" +
	"Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK776asdhds;rport\r\n" +
	"Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bKnashds8\r\n" +
	"Max-Forwards: 70\r\n" +
	"To: Bob <sip:bob@example.com>\r\n" +
	"From: \"Alice\" <sip:alice@example.com>;tag=1928301774\r\n" +
	"Call-ID: a84b4c76e66710@pc33.example.com\r\n" +
	"CSeq: 314159 INVITE\r\n" +
	"Contact: <sip:alice@192.0.2.10:5062>\r\n" +
	"Supported: 100rel, replaces\r\n" +
	"Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, PRACK, INFO, REFER, NOTIFY\r\n" +
	"User-Agent: test\r\n" +
	"Content-Type: application/sdp\r\n" +
	"Content-Length: 134\r\n" +
	"\r\n" +
	"v=0\r\n" +
	"o=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\n" +
	"s=-\r\n" +
	"c=IN IP4 192.0.2.10\r\n" +
	"t=0 0\r\n" +
	"m=audio 49170 RTP/AVP 0\r\n" +
	"a=rtpmap:0 PCMU/8000\r\n"

// TestCheckCases: one change at a time to a good INVITE.
func TestCheckCases(t *testing.T) {
	body := testInvite[strings.Index(testInvite, "\r\n\r\n")+4:]
	if len(body) != 134 {
		t.Fatalf("test INVITE body is %d bytes", len(body))
	}
	for _, tc := range []struct {
		name, old, new string
		want           int // 0 pass, -1 drop
		stream         int // the same on a stream, when it differs
		reason         string
	}{
		{name: "good", want: 0},
		{name: "compact forms", old: "Via: SIP/2.0/UDP 192", new: "v: SIP/2.0/UDP 192", want: 0},
		{name: "folded From", old: "From: \"Alice\" ", new: "From:\r\n \"Alice\"\r\n\t", want: 0},
		{name: "no Content-Length", old: "Content-Length: 134\r\n", new: "", want: 0, stream: 400, reason: "missing Content-Length"},
		{name: "short body", old: "Content-Length: 134", new: "Content-Length: 135", want: 400, reason: "Content-Length exceeds the datagram"},
		{name: "Content-Length word", old: "Content-Length: 134", new: "Content-Length: x", want: 400, reason: "malformed Content-Length"},
		{name: "Content-Length huge", old: "Content-Length: 134", new: "Content-Length: 99999999999", want: 400, reason: "malformed Content-Length"},
		{name: "stream message too large", old: "Content-Length: 134", new: "Content-Length: 70000", want: 400, stream: 513},
		{name: "no Via", old: "Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK776asdhds;rport\r\nVia: SIP/2.0/UDP proxy.example.com;branch=z9hG4bKnashds8\r\n", new: "", want: -1},
		{name: "Via without host", old: "SIP/2.0/UDP 192.0.2.10:5062;", new: "SIP/2.0/UDP ;", want: -1},
		{name: "Via port out of range", old: ":5062;branch", new: ":65536;branch", want: -1},
		{name: "no CSeq", old: "CSeq: 314159 INVITE\r\n", new: "", want: -1},
		{name: "CSeq without method", old: "CSeq: 314159 INVITE", new: "CSeq: 314159", want: -1},
		{name: "ACK is never answered", old: "INVITE sip:bob@example.com SIP/2.0", new: "ACK sip:bob@example.com SIP/2.0", want: -1},
		{name: "bare CR", old: "User-Agent: test\r\n", new: "User-Agent: test\r", want: 400, reason: "line not ended by CRLF"},
		{name: "field without colon", old: "User-Agent: test", new: "User-Agent test", want: 400, reason: "malformed header field"},
		{name: "two To", old: "To: Bob <sip:bob@example.com>\r\n", new: "To: Bob <sip:bob@example.com>\r\nt: <sip:carol@example.com>\r\n", want: 400, reason: "more than one To"},
		{name: "two Max-Forwards", old: "Max-Forwards: 70\r\n", new: "Max-Forwards: 70\r\nMax-Forwards: 69\r\n", want: 400},
		{name: "Max-Forwards word", old: "Max-Forwards: 70", new: "Max-Forwards: many", want: 400, reason: "malformed Max-Forwards"},
		{name: "Max-Forwards above 255 is tolerated", old: "Max-Forwards: 70", new: "Max-Forwards: 300", want: 0},
		{name: "From display name with comma", old: "\"Alice\" <sip:alice", new: "Alice, A. <sip:alice", want: 400, reason: "malformed From"},
		{name: "From addr-spec with '?'", old: "\"Alice\" <sip:alice@example.com>", new: "sip:alice@example.com?x=y", want: 400},
		{name: "To without scheme", old: "To: Bob <sip:bob@example.com>", new: "To: Bob <bob@example.com>", want: 400, reason: "malformed To"},
		{name: "To with an empty parameter", old: "To: Bob <sip:bob@example.com>", new: "To: Bob <sip:bob@example.com>;", want: 400},
		{name: "Via with an empty parameter", old: ";rport\r\n", new: ";rport;\r\n", want: 400, reason: "malformed Via"},
		{name: "tel Request-URI", old: "INVITE sip:bob@example.com SIP/2.0", new: "INVITE tel:+15551234567 SIP/2.0", want: 0},
		{name: "mailto Request-URI", old: "INVITE sip:bob@example.com SIP/2.0", new: "INVITE mailto:bob@example.com SIP/2.0", want: 416},
		{name: "'?' in the user part", old: "INVITE sip:bob@example.com SIP/2.0", new: "INVITE sip:b?b@example.com SIP/2.0", want: 0},
		{name: "SIP/3.0", old: "INVITE sip:bob@example.com SIP/2.0", new: "INVITE sip:bob@example.com SIP/3.0", want: 505},
		{name: "version garbage", old: "INVITE sip:bob@example.com SIP/2.0", new: "INVITE sip:bob@example.com HTTP/1.1", want: 400, reason: "malformed Request-Line"},
		{name: "Require supported", old: "User-Agent: test\r\n", new: "Require: 100rel\r\n", want: 0},
		{name: "Require replaces", old: "User-Agent: test\r\n", new: "Require: replaces\r\n", want: 0}, // RFC 3891: an attended transfer's INVITE may require it
		{name: "Require unsupported", old: "User-Agent: test\r\n", new: "Require: 100rel, precondition\r\n", want: 420},
		{name: "Require not a token", old: "User-Agent: test\r\n", new: "Require: 100rel, a b\r\n", want: 400, reason: "malformed Require"},
		{name: "Require with an empty element", old: "User-Agent: test\r\n", new: "Require: 100rel, , timer\r\n", want: 0},
		{name: "empty Call-ID", old: "Call-ID: a84b4c76e66710@pc33.example.com", new: "Call-ID:", want: 400, reason: "empty Call-ID"},
		{name: "garbage", old: "INVITE sip:bob@example.com SIP/2.0", new: "\x00\x01\x02 binary", want: -1},
		{name: "response", old: "INVITE sip:bob@example.com SIP/2.0", new: "SIP/2.0 200 OK", want: 0},
		{name: "response without Content-Length", old: "INVITE sip:bob@example.com SIP/2.0\r\n", new: "SIP/2.0 200 OK\r\nContent-Length: 0\r\n", want: 0, stream: -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := []byte(strings.Replace(testInvite, tc.old, tc.new, 1))
			if tc.name == "response without Content-Length" {
				msg = []byte(strings.Replace(strings.Replace(testInvite, "Content-Length: 134\r\n", "", 1), tc.old, "SIP/2.0 200 OK\r\n", 1))
			}
			var h head
			h.parse(msg)
			v := h.judge(msg, len(msg))
			if got := verdictCode(v); got != tc.want || (tc.stream == 0 && !strings.Contains(v.reason, tc.reason)) {
				t.Fatalf("datagram: %d %q, want %d %q", got, v.reason, tc.want, tc.reason)
			}
			if v.kind == answer {
				checkAnswerShape(t, tc.name, appendAnswer(nil, msg, &h, v, netip.MustParseAddrPort("198.51.100.7:40000")))
			}
			hdr := msg
			if i := bytes.Index(msg, []byte("\r\n\r\n")); i >= 0 {
				hdr = msg[:i+4]
			}
			var hs head
			hs.parse(hdr)
			vs := hs.judge(hdr, -1)
			want := tc.want
			if tc.stream != 0 {
				want = tc.stream
			}
			if tc.name == "short body" {
				want = 0 // on a stream the rest of the body is still coming
			}
			if got := verdictCode(vs); got != want || (tc.stream != 0 && !strings.Contains(vs.reason, tc.reason)) {
				t.Fatalf("stream: %d %q, want %d", got, vs.reason, want)
			}
		})
	}
}

// TestAnswerRouting: the top Via gets received and rport (RFC 3581), the
// others are copied as they came, To gets a tag, a 420 names what is
// not supported.
func TestAnswerRouting(t *testing.T) {
	msg := []byte(strings.Replace(testInvite, "User-Agent: test\r\n", "Require: precondition, 100rel\r\n", 1))
	var h head
	h.parse(msg)
	v := h.judge(msg, len(msg))
	if v.code != 420 {
		t.Fatalf("verdict %+v", v)
	}
	res := string(appendAnswer(nil, msg, &h, v, netip.MustParseAddrPort("198.51.100.7:40000")))
	for _, want := range []string{
		"SIP/2.0 420 Bad Extension\r\n",
		"Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK776asdhds;rport=40000;received=198.51.100.7\r\n",
		"Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bKnashds8\r\n",
		"From: \"Alice\" <sip:alice@example.com>;tag=1928301774\r\n",
		"To: Bob <sip:bob@example.com>;tag=",
		"Call-ID: a84b4c76e66710@pc33.example.com\r\n",
		"CSeq: 314159 INVITE\r\n",
		"Unsupported: precondition\r\n",
	} {
		if !strings.Contains(res, want) {
			t.Errorf("no %q in\n%s", want, res)
		}
	}
}

// BenchmarkCheck is the cost the check adds to every message on the
// normal path: a typical INVITE with SDP that passes. sipgo's own parse
// of the same INVITE is the comparator.
func BenchmarkCheck(b *testing.B) {
	msg := []byte(testInvite)
	b.Run("check", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(msg)))
		for b.Loop() {
			var h head
			h.parse(msg)
			if v := h.judge(msg, len(msg)); v.kind != pass {
				b.Fatal(v)
			}
		}
	})
	b.Run("sipgo-parse", func(b *testing.B) {
		p := sip.NewParser()
		b.ReportAllocs()
		b.SetBytes(int64(len(msg)))
		for b.Loop() {
			if _, err := p.ParseSIP(msg); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// FuzzCheck: the check never panics, on a datagram or on a stream; an
// answer is a well-framed response that copies one CSeq and the Vias;
// nothing that has no Via or no CSeq, or is an ACK, is ever answered.
func FuzzCheck(f *testing.F) {
	for _, msg := range tortureFiles(f) {
		f.Add(msg)
	}
	f.Add([]byte(testInvite))
	f.Fuzz(func(t *testing.T, msg []byte) {
		var h head
		h.parse(msg)
		v := h.judge(msg, len(msg))
		if v.kind == answer {
			if h.counts[fVia] == 0 || h.counts[fCSeq] == 0 || string(h.method.of(msg)) == "ACK" {
				t.Fatalf("answered %+v without Via or CSeq, or an ACK", v)
			}
			checkAnswerShape(t, "fuzz", appendAnswer(nil, msg, &h, v, netip.MustParseAddrPort("[2001:db8::1]:5060")))
		}
		if i := bytes.Index(msg, []byte("\r\n\r\n")); i >= 0 {
			hdr := msg[:i+4]
			var hs head
			hs.parse(hdr)
			if vs := hs.judge(hdr, -1); vs.kind == answer {
				checkAnswerShape(t, "fuzz stream", appendAnswer(nil, hdr, &hs, vs, netip.AddrPort{}))
			}
		}
	})
}
