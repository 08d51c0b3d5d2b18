package protocol

import (
	"strconv"
	"unicode/utf8"
)

// Append appends the JSON encoding of f to buf. Absent fields are left
// out, never written as null (the SDK replaces its defaults with whatever
// keys it receives). Numbers are JSON numbers, as the SDK compares them
// strictly.
func (f *Frame) Append(buf []byte) []byte {
	c := &f.Control
	buf = append(buf, `{"control":{`...)
	var first = true
	buf = strField(buf, &first, "type", string(c.Type))
	buf = strField(buf, &first, "package_type", string(c.Package))
	buf = strField(buf, &first, "session_id", c.SessionID)
	buf = strField(buf, &first, "subsession_id", c.SubsessionID)
	buf = uintField(buf, &first, "sequence", c.Sequence)
	buf = strField(buf, &first, "message_state", string(c.MessageState))
	buf = strField(buf, &first, "correlation_id", c.CorrelationID)
	buf = uintField(buf, &first, "ack_sequence", c.AckSequence)
	v := c.Version
	if v == "" {
		v = Version
	}
	buf = strField(buf, &first, "version", v)
	buf = append(buf, `},"header":{`...)
	h := &f.Header
	first = true
	buf = strField(buf, &first, "action", string(h.Action))
	buf = strField(buf, &first, "initiator", h.Initiator)
	buf = strField(buf, &first, "target", h.Target)
	if h.ResponseCode != 0 {
		buf = uintField(buf, &first, "response_code", uint64(h.ResponseCode))
	}
	if h.ErrorCode != 0 {
		buf = uintField(buf, &first, "error_code", uint64(h.ErrorCode))
	}
	buf = strField(buf, &first, "reason", h.Reason)
	buf = optField(buf, &first, "cslr", h.CSLR)
	buf = optField(buf, &first, "cslw", h.CSLW)
	buf = optField(buf, &first, "csuw", h.CSUW)
	buf = optField(buf, &first, "sslr", h.SSLR)
	if h.Expiry != 0 {
		buf = uintField(buf, &first, "expiry", uint64(h.Expiry))
	}
	buf = strField(buf, &first, "refer_to", h.ReferTo)
	buf = strField(buf, &first, "replaces", h.Replaces)
	buf = rawField(buf, &first, "authenticate", h.Authenticate)
	buf = rawField(buf, &first, "authorization", h.Authorization)
	for _, e := range h.Ext {
		switch e.Kind {
		case ExtString:
			buf = key(buf, &first, e.Name)
			buf = AppendString(buf, e.Value)
		default:
			buf = rawField(buf, &first, e.Name, []byte(e.Value))
		}
	}
	buf = append(buf, `},"payload":`...)
	if len(f.Payload) == 0 {
		buf = append(buf, "{}"...)
	} else {
		buf = append(buf, f.Payload...)
	}
	return append(buf, '}')
}

// Marshal returns the JSON encoding of f.
func (f *Frame) Marshal() []byte { return f.Append(make([]byte, 0, 256+len(f.Payload))) }

func key(buf []byte, first *bool, k string) []byte {
	if !*first {
		buf = append(buf, ',')
	}
	*first = false
	buf = append(buf, '"')
	buf = append(buf, k...)
	return append(buf, '"', ':')
}

func strField(buf []byte, first *bool, k, v string) []byte {
	if v == "" {
		return buf
	}
	return AppendString(key(buf, first, k), v)
}

func uintField(buf []byte, first *bool, k string, v uint64) []byte {
	if v == 0 {
		return buf
	}
	return strconv.AppendUint(key(buf, first, k), v, 10)
}

func optField(buf []byte, first *bool, k string, v OptSeq) []byte {
	if !v.Present {
		return buf
	}
	buf = key(buf, first, k)
	if v.Null {
		return append(buf, "null"...)
	}
	return strconv.AppendUint(buf, v.V, 10)
}

func rawField(buf []byte, first *bool, k string, v []byte) []byte {
	if len(v) == 0 {
		return buf
	}
	return append(key(buf, first, k), v...)
}

func appendInt(b []byte, n int64) []byte { return strconv.AppendInt(b, n, 10) }

const hexDigits = "0123456789abcdef"

// AppendString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD,
// so the output is always valid JSON; U+2028 and U+2029 are escaped so
// that the frame is also safe to embed in a script.
func AppendString(buf []byte, s string) []byte {
	buf = append(buf, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			buf = append(buf, s[start:i]...)
			switch c {
			case '"', '\\':
				buf = append(buf, '\\', c)
			case '\n':
				buf = append(buf, '\\', 'n')
			case '\r':
				buf = append(buf, '\\', 'r')
			case '\t':
				buf = append(buf, '\\', 't')
			default:
				buf = append(buf, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			buf = append(buf, s[start:i]...)
			buf = append(buf, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			buf = append(buf, s[start:i]...)
			buf = append(buf, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	buf = append(buf, s[start:]...)
	return append(buf, '"')
}
