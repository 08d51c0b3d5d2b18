package protocol

import "iter"

// Destination is an address a client frame names that the gateway may
// reach, or have another party reach, on the client's behalf: a callee,
// a presentity or mailbox, a transfer target, or a SIP header that names
// a party.
type Destination struct {
	// Field names where the address came from: "target", "refer_to", or
	// an extension header's name.
	Field string
	// Address is the value as the client wrote it.
	Address string
	// Header is true for an extension header: its value is SIP header
	// text (perhaps "<sip:...>;param"), not a bare address.
	Header bool
}

// Destinations yields every destination f names, so that one policy (a
// guest's allowed targets, the address syntax) covers them all, in every
// package and action:
//
//   - header.target of a request: the callee of a call start, the
//     presentity of a presence start, the mailbox of a
//     message_notification start, the recipient of a messaging send. In
//     other frames the gateway takes the target from its own state
//     (docs/protocol.md §2.3), so a client's value there reaches no one.
//   - header.refer_to of any frame: a transfer's new destination, which
//     becomes the Request-URI of the transferee's INVITE. Only a transfer
//     request uses it today; the answers of a client never carry one, so
//     refusing it everywhere costs nothing and keeps a future handler that
//     reads it on an answer from bypassing the policy.
//   - extension headers of any frame whose name is a SIP header that names
//     a party (Referred-By, P-Asserted-Identity, Diversion, ...): a SIP
//     side that maps them may route, bill or transfer by them.
//
// Payloads name no destination: a presence publish names the publisher
// (checked by the presence package), notifies come only from the gateway.
func Destinations(f *Frame) iter.Seq[Destination] {
	return func(yield func(Destination) bool) {
		h := &f.Header
		if f.Control.Type == TypeRequest && h.Target != "" {
			if !yield(Destination{Field: "target", Address: h.Target}) {
				return
			}
		}
		if h.ReferTo != "" {
			if !yield(Destination{Field: "refer_to", Address: h.ReferTo}) {
				return
			}
		}
		for _, e := range h.Ext {
			if e.Kind == ExtString && PartyHeader(e.Name) {
				if !yield(Destination{Field: e.Name, Address: e.Value, Header: true}) {
					return
				}
			}
		}
	}
}

// partyHeaders are the SIP headers (lower case, compact forms too) whose
// value names a party or a URI a SIP element acts on.
var partyHeaders = map[string]bool{
	"refer-to": true, "r": true, "referred-by": true, "b": true,
	"to": true, "t": true, "from": true, "f": true, "contact": true, "m": true,
	"route": true, "record-route": true, "reply-to": true, "also": true,
	"p-asserted-identity": true, "p-preferred-identity": true,
	"p-called-party-id": true, "remote-party-id": true, "diversion": true,
	"history-info": true, "request-uri": true, "alert-info": true,
	"call-info": true, "error-info": true, "p-associated-uri": true,
	"service-route": true, "path": true, "target-dialog": true,
	"replaces": true, "join": true,
}

// PartyHeader reports whether an extension header named name would, on
// the SIP side, name a party or a URI (case-insensitive).
func PartyHeader(name string) bool {
	var buf [32]byte
	if len(name) > len(buf) {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	// The conversion in a map index does not allocate.
	return partyHeaders[string(buf[:len(name)])]
}

// CheckAddress checks the syntax every destination must have whoever
// names it: 1 to 256 bytes, none of them a control character, a space or
// one of <>"\ that no address form (user@host, sip:, sips:, tel:, a
// number) contains but that would break out of a SIP header or a log
// line. It returns an *Error with code 400.
func CheckAddress(field, s string) error {
	if s == "" || len(s) > 256 {
		return newError(CodeBadRequest, field+" is empty or too long")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c == 0x7f || c == '<' || c == '>' || c == '"' || c == '\\' {
			return newError(CodeBadRequest, field+" is not a valid address")
		}
	}
	return nil
}
