package sipgw

import (
	"testing"

	"github.com/emiago/sipgo/sip"
)

// A GRUU in a quoted Contact parameter keeps its own ";gr=" parameter,
// which sipgo's parser splits off.
func TestQuotedParamGRUU(t *testing.T) {
	raw := "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>;tag=2\r\n" +
		"Call-ID: x\r\nCSeq: 1 REGISTER\r\n" +
		"Contact: <sip:r1@127.0.0.1:5070;transport=udp>;expires=600;+sip.instance=\"<urn:uuid:abc>\";pub-gruu=\"sip:open@example.com;gr=urn:uuid:abc\";temp-gruu=\"sip:tgruu.x@example.com;gr\"\r\n" +
		"Content-Length: 0\r\n\r\n"
	m, err := sip.ParseMessage([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	ct := m.(*sip.Response).GetHeaders("Contact")[0].(*sip.ContactHeader)
	for name, want := range map[string]string{
		"pub-gruu":      "sip:open@example.com;gr=urn:uuid:abc",
		"temp-gruu":     "sip:tgruu.x@example.com;gr",
		"+sip.instance": "<urn:uuid:abc>",
		"expires":       "600",
	} {
		if v, ok := quotedParam(ct.Params, name); !ok || v != want {
			t.Errorf("%s: %q %v, want %q", name, v, ok, want)
		}
	}
	if v, ok := quotedParam(sip.HeaderParams{{K: "pub-gruu", V: `"sip:x`}}, "pub-gruu"); ok {
		t.Errorf("unterminated quote read as %q", v)
	}
}
