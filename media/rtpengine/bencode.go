package rtpengine

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
)

// The ng protocol carries bencoded dictionaries (BEP 3: byte strings
// "4:spam", integers "i3e", lists "l...e", dictionaries "d...e" with keys
// sorted as raw strings). No maintained Go bencode module is on the module
// proxy we use (github.com/jackpal/bencode-go is refused), and the subset
// the ng protocol needs is small, so the codec is written here.
//
// Decoded values are string, int64, []any and map[string]any.

// maxDepth bounds nesting so that a hostile or corrupt reply cannot
// exhaust the stack ("llllll...").
const maxDepth = 32

var errBencode = errors.New("rtpengine: malformed bencode")

// encode appends the bencoding of v. It accepts string, []byte, int,
// int64, bool (as "yes"/"no", rtpengine's convention), []string, []any and
// map[string]any.
func encode(b []byte, v any) ([]byte, error) {
	switch v := v.(type) {
	case string:
		b = strconv.AppendInt(b, int64(len(v)), 10)
		b = append(b, ':')
		return append(b, v...), nil
	case []byte:
		b = strconv.AppendInt(b, int64(len(v)), 10)
		b = append(b, ':')
		return append(b, v...), nil
	case int:
		return encode(b, int64(v))
	case int64:
		b = append(b, 'i')
		b = strconv.AppendInt(b, v, 10)
		return append(b, 'e'), nil
	case bool:
		if v {
			return encode(b, "yes")
		}
		return encode(b, "no")
	case []string:
		b = append(b, 'l')
		for _, s := range v {
			b, _ = encode(b, s)
		}
		return append(b, 'e'), nil
	case []any:
		b = append(b, 'l')
		for _, e := range v {
			var err error
			if b, err = encode(b, e); err != nil {
				return nil, err
			}
		}
		return append(b, 'e'), nil
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b = append(b, 'd')
		for _, k := range keys {
			b, _ = encode(b, k)
			var err error
			if b, err = encode(b, v[k]); err != nil {
				return nil, err
			}
		}
		return append(b, 'e'), nil
	}
	return nil, fmt.Errorf("rtpengine: cannot bencode %T", v)
}

// decode parses exactly one bencoded value filling all of p.
func decode(p []byte) (any, error) {
	v, n, err := decodeAt(p, 0, 0)
	if err != nil {
		return nil, err
	}
	if n != len(p) {
		return nil, fmt.Errorf("%w: %d trailing bytes", errBencode, len(p)-n)
	}
	return v, nil
}

// decodeAt decodes the value at p[i:] and returns it with the index after it.
func decodeAt(p []byte, i, depth int) (any, int, error) {
	if i >= len(p) {
		return nil, i, fmt.Errorf("%w: unexpected end", errBencode)
	}
	switch c := p[i]; {
	case c >= '0' && c <= '9':
		s, n, err := decodeString(p, i)
		return s, n, err
	case c == 'i':
		end := i + 1
		for end < len(p) && p[end] != 'e' {
			end++
		}
		if end == len(p) {
			return nil, i, fmt.Errorf("%w: unterminated integer", errBencode)
		}
		digits := string(p[i+1 : end])
		n, err := strconv.ParseInt(digits, 10, 64)
		// BEP 3: no leading zeros, no "-0", no '+'.
		if err != nil || digits[0] == '+' || digits == "-0" || (len(digits) > 1 && digits[0] == '0') || (len(digits) > 2 && digits[0] == '-' && digits[1] == '0') {
			return nil, i, fmt.Errorf("%w: bad integer %q", errBencode, digits)
		}
		return n, end + 1, nil
	case c == 'l' || c == 'd':
		if depth >= maxDepth {
			return nil, i, fmt.Errorf("%w: nested deeper than %d", errBencode, maxDepth)
		}
		i++
		var list []any
		var dict map[string]any
		if c == 'd' {
			dict = map[string]any{}
		} else {
			list = []any{}
		}
		for {
			if i >= len(p) {
				return nil, i, fmt.Errorf("%w: unterminated container", errBencode)
			}
			if p[i] == 'e' {
				if c == 'd' {
					return dict, i + 1, nil
				}
				return list, i + 1, nil
			}
			var key string
			if c == 'd' {
				var err error
				if key, i, err = decodeString(p, i); err != nil {
					return nil, i, err
				}
				if _, dup := dict[key]; dup {
					return nil, i, fmt.Errorf("%w: duplicate key %q", errBencode, key)
				}
			}
			v, n, err := decodeAt(p, i, depth+1)
			if err != nil {
				return nil, n, err
			}
			i = n
			if c == 'd' {
				dict[key] = v
			} else {
				list = append(list, v)
			}
		}
	}
	return nil, i, fmt.Errorf("%w: unexpected byte %q at %d", errBencode, p[i], i)
}

func decodeString(p []byte, i int) (string, int, error) {
	colon := i
	for colon < len(p) && p[colon] >= '0' && p[colon] <= '9' {
		colon++
	}
	if colon == i || colon >= len(p) || p[colon] != ':' || colon-i > 9 || (p[i] == '0' && colon-i > 1) {
		return "", i, fmt.Errorf("%w: bad string length at %d", errBencode, i)
	}
	n, _ := strconv.Atoi(string(p[i:colon]))
	start := colon + 1
	if n > len(p)-start {
		return "", i, fmt.Errorf("%w: string of %d bytes past the end", errBencode, n)
	}
	return string(p[start : start+n]), start + n, nil
}
