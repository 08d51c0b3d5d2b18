package protocol

import "encoding/json"

// CheckMessagePayload returns what DecodePayload(raw, &MessagePayload{})
// returns, without decoding: a relay forwards the payload as it came and
// only needs to know that it would decode.
//
// The frame scanner answers the usual case. What it cannot vouch for (a
// payload it rejects, which encoding/json may still accept, or one
// encoding/json rejects) goes to DecodePayload, so that an error carries
// the same reason as before.
func CheckMessagePayload(raw json.RawMessage) error {
	if len(raw) == 0 || messagePayloadFits(raw) {
		return nil
	}
	var p MessagePayload
	return DecodePayload(raw, &p)
}

// messagePayloadFits reports whether raw is a JSON object whose members
// that json.Unmarshal would store in a MessagePayload are strings or
// null. It may say no where Unmarshal succeeds (invalid UTF-8, deep
// nesting, a top-level null), never yes where Unmarshal fails.
func messagePayloadFits(raw []byte) bool {
	s := scanner{data: raw}
	s.ws()
	if s.peek() != '{' {
		return false
	}
	err := s.object(func(key []byte) error {
		if !mayNameMessageField(key) {
			return s.skip(0)
		}
		switch s.peek() {
		case '"':
			_, err := s.rawString()
			return err
		case 'n':
			return s.literal("null")
		}
		return errSyntax
	})
	if err != nil {
		return false
	}
	s.ws()
	return s.pos == len(s.data)
}

// mayNameMessageField reports whether json.Unmarshal could match key to a
// field of MessagePayload: it matches names case-insensitively, and folds
// a few non-ASCII letters to ASCII ones, so any key with a non-ASCII byte
// counts as a possible match.
func mayNameMessageField(key []byte) bool {
	for _, c := range key {
		if c >= 0x80 {
			return true
		}
	}
	return asciiEqualFold(key, "body") || asciiEqualFold(key, "content_type")
}

func asciiEqualFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}
