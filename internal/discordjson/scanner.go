package discordjson

import (
	"encoding/binary"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// MaxDepth is the deepest nesting of JSON objects and arrays the package accepts. Discord's payloads
// nest far less than this; the limit exists so hostile input cannot exhaust the stack.
const MaxDepth = 64

// strStop marks the bytes that end the fast path of a string scan: the closing quote, a backslash
// and the control characters JSON forbids inside strings.
var strStop = func() (t [256]bool) {
	for c := range 0x20 {
		t[c] = true
	}
	t['"'] = true
	t['\\'] = true
	return t
}()

// Byte-lane constants for scanning strings eight bytes at a time.
const (
	lanesLow  = 0x0101010101010101
	lanesHigh = 0x8080808080808080
)

// hasStop reports whether any of the eight bytes in x is a quote, a backslash or a control
// character. It uses the classic "has zero byte" and "has byte less than n" tricks, which are
// exact about presence (they only blur which lane matched).
func hasStop(x uint64) bool {
	q := x ^ (lanesLow * '"')
	b := x ^ (lanesLow * '\\')
	return ((q-lanesLow)&^q|(b-lanesLow)&^b|(x-lanesLow*0x20)&^x)&lanesHigh != 0
}

// scanPlain returns the index of the first byte at or after i that ends a plain run of string
// bytes (see strStop), or len(d). Most of a Discord payload is strings, so this loop is the
// scanner's hottest.
func scanPlain(d []byte, i int) int {
	for i+8 <= len(d) && !hasStop(binary.LittleEndian.Uint64(d[i:])) {
		i += 8
	}
	for i < len(d) && !strStop[d[i]] {
		i++
	}
	return i
}

// scanner is a position in a JSON document. Its methods validate as they go and report errors
// as *syntaxError values carrying the byte offset.
type scanner struct {
	data []byte
	pos  int
	// buf holds the unescaped text of the last string that had escape sequences.
	buf []byte
}

// syntaxError is a malformed-JSON error at a byte offset.
type syntaxError struct {
	msg    string
	offset int
}

func (e *syntaxError) Error() string {
	return e.msg + " at offset " + strconv.Itoa(e.offset)
}

func (s *scanner) errorf(msg string) error {
	return &syntaxError{msg: msg, offset: s.pos}
}

func (s *scanner) eof() error {
	return &syntaxError{msg: "unexpected end of JSON input", offset: len(s.data)}
}

// ws skips JSON whitespace.
func (s *scanner) ws() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\n', '\r', '\t':
			s.pos++
		default:
			return
		}
	}
}

// next skips whitespace and returns the next byte without consuming it.
func (s *scanner) next() (byte, error) {
	s.ws()
	if s.pos >= len(s.data) {
		return 0, s.eof()
	}
	return s.data[s.pos], nil
}

// expect skips whitespace and consumes c.
func (s *scanner) expect(c byte) error {
	got, err := s.next()
	if err != nil {
		return err
	}
	if got != c {
		return s.errorf("expected " + strconv.QuoteRune(rune(c)) + ", found " + describeByte(got))
	}
	s.pos++
	return nil
}

func describeByte(c byte) string {
	if c < 0x20 || c >= 0x7f {
		return "byte 0x" + strconv.FormatUint(uint64(c), 16)
	}
	return strconv.QuoteRune(rune(c))
}

// endOfContainer consumes the separator after a member or element. It returns true when the
// container closed with the byte end.
func (s *scanner) endOfContainer(end byte) (bool, error) {
	c, err := s.next()
	if err != nil {
		return false, err
	}
	switch c {
	case ',':
		s.pos++
		return false, nil
	case end:
		s.pos++
		return true, nil
	}
	return false, s.errorf("expected ',' or " + strconv.QuoteRune(rune(end)) + ", found " + describeByte(c))
}

// readString consumes a string (s.data[s.pos] must be '"') and returns its unescaped contents.
// The result aliases either the input or s.buf, so it is only valid until the next readString.
// Invalid UTF-8 is an error because protobuf string fields must hold valid UTF-8.
func (s *scanner) readString() ([]byte, error) {
	d := s.data
	start := s.pos + 1
	i := scanPlain(d, start)
	if i >= len(d) {
		return nil, s.eof()
	}
	if d[i] == '"' {
		out := d[start:i]
		if !utf8.Valid(out) {
			return nil, s.errorf("invalid UTF-8 in string")
		}
		s.pos = i + 1
		return out, nil
	}
	return s.readEscaped(start, i)
}

// readEscaped continues readString from d[i], the first byte that needs attention, copying into
// s.buf.
func (s *scanner) readEscaped(start, i int) ([]byte, error) {
	d := s.data
	buf := append(s.buf[:0], d[start:i]...)
	for {
		for i < len(d) && !strStop[d[i]] {
			buf = append(buf, d[i])
			i++
		}
		if i >= len(d) {
			return nil, s.eof()
		}
		switch c := d[i]; {
		case c == '"':
			s.buf = buf
			if !utf8.Valid(buf) {
				s.pos = i
				return nil, s.errorf("invalid UTF-8 in string")
			}
			s.pos = i + 1
			return buf, nil
		case c < 0x20:
			s.pos = i
			return nil, s.errorf("control character in string")
		}
		// A backslash.
		if i+1 >= len(d) {
			return nil, s.eof()
		}
		switch e := d[i+1]; e {
		case '"', '\\', '/':
			buf = append(buf, e)
			i += 2
		case 'b':
			buf = append(buf, '\b')
			i += 2
		case 'f':
			buf = append(buf, '\f')
			i += 2
		case 'n':
			buf = append(buf, '\n')
			i += 2
		case 'r':
			buf = append(buf, '\r')
			i += 2
		case 't':
			buf = append(buf, '\t')
			i += 2
		case 'u':
			r, ok := hex4(d, i+2)
			if !ok {
				s.pos = i
				return nil, s.errorf(`invalid \u escape in string`)
			}
			i += 6
			if utf16.IsSurrogate(r) {
				// A pair combines; a lone surrogate becomes U+FFFD, as encoding/json does.
				r2 := rune(-1)
				if i+1 < len(d) && d[i] == '\\' && d[i+1] == 'u' {
					if v, ok := hex4(d, i+2); ok {
						r2 = v
					}
				}
				if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
					r = dec
					i += 6
				} else {
					r = utf8.RuneError
				}
			}
			buf = utf8.AppendRune(buf, r)
		default:
			s.pos = i
			return nil, s.errorf("invalid escape in string")
		}
	}
}

func hex4(d []byte, i int) (rune, bool) {
	if i+4 > len(d) {
		return 0, false
	}
	var r rune
	for _, c := range d[i : i+4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// skipString consumes a string without unescaping it. It checks escapes and control characters
// but not UTF-8: skipped bytes are only ever passed on as raw JSON.
func (s *scanner) skipString() error {
	d := s.data
	i := s.pos + 1
	for {
		i = scanPlain(d, i)
		if i >= len(d) {
			return s.eof()
		}
		switch c := d[i]; {
		case c == '"':
			s.pos = i + 1
			return nil
		case c < 0x20:
			s.pos = i
			return s.errorf("control character in string")
		}
		if i+1 >= len(d) {
			return s.eof()
		}
		switch d[i+1] {
		case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			i += 2
		case 'u':
			if _, ok := hex4(d, i+2); !ok {
				s.pos = i
				return s.errorf(`invalid \u escape in string`)
			}
			i += 6
		default:
			s.pos = i
			return s.errorf("invalid escape in string")
		}
	}
}

// readNumber consumes a number and returns its text. isInt reports that it has no fraction or
// exponent.
func (s *scanner) readNumber() (text []byte, isInt bool, err error) {
	d := s.data
	start := s.pos
	i := start
	if i < len(d) && d[i] == '-' {
		i++
	}
	switch {
	case i >= len(d):
		return nil, false, s.eof()
	case d[i] == '0':
		i++
	case '1' <= d[i] && d[i] <= '9':
		for i < len(d) && '0' <= d[i] && d[i] <= '9' {
			i++
		}
	default:
		s.pos = i
		return nil, false, s.errorf("invalid character " + describeByte(d[i]) + " looking for a value")
	}
	isInt = true
	if i < len(d) && d[i] == '.' {
		isInt = false
		i++
		j := i
		for i < len(d) && '0' <= d[i] && d[i] <= '9' {
			i++
		}
		if i == j {
			s.pos = i
			return nil, false, s.errorf("invalid number: digit expected after '.'")
		}
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		isInt = false
		i++
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		j := i
		for i < len(d) && '0' <= d[i] && d[i] <= '9' {
			i++
		}
		if i == j {
			s.pos = i
			return nil, false, s.errorf("invalid number: digit expected in exponent")
		}
	}
	s.pos = i
	return d[start:i], isInt, nil
}

// literal consumes one of true, false and null.
func (s *scanner) literal(word string) error {
	if len(s.data)-s.pos < len(word) {
		if string(s.data[s.pos:]) == word[:len(s.data)-s.pos] {
			return s.eof()
		}
		return s.errorf("invalid literal, expected " + word)
	}
	if string(s.data[s.pos:s.pos+len(word)]) != word {
		return s.errorf("invalid literal, expected " + word)
	}
	s.pos += len(word)
	return nil
}

// skipValue consumes one value of any kind. depth is the nesting depth of the container holding
// the value. It runs iteratively with a bit stack (1 = object), which MaxDepth keeps within 64 bits.
func (s *scanner) skipValue(depth int) error {
	var stack uint64
	level := 0
	for {
		// A value is expected here.
		c, err := s.next()
		if err != nil {
			return err
		}
		switch c {
		case '{', '[':
			if depth+level >= MaxDepth {
				return s.errorf("JSON nested deeper than " + strconv.Itoa(MaxDepth) + " levels")
			}
			s.pos++
			end := byte(']')
			if c == '{' {
				end = '}'
			}
			n, err := s.next()
			if err != nil {
				return err
			}
			if n == end {
				s.pos++
				break
			}
			if c == '{' {
				stack |= 1 << level
				if err := s.skipKey(); err != nil {
					return err
				}
			} else {
				stack &^= 1 << level
			}
			level++
			continue
		case '"':
			if err := s.skipString(); err != nil {
				return err
			}
		case 't':
			if err := s.literal("true"); err != nil {
				return err
			}
		case 'f':
			if err := s.literal("false"); err != nil {
				return err
			}
		case 'n':
			if err := s.literal("null"); err != nil {
				return err
			}
		default:
			if _, _, err := s.readNumber(); err != nil {
				return err
			}
		}
		// A value ended: close containers until one continues with ','.
		for {
			if level == 0 {
				return nil
			}
			inObject := stack>>(level-1)&1 == 1
			end := byte(']')
			if inObject {
				end = '}'
			}
			closed, err := s.endOfContainer(end)
			if err != nil {
				return err
			}
			if !closed {
				if inObject {
					if err := s.skipKey(); err != nil {
						return err
					}
				}
				break
			}
			level--
		}
	}
}

// skipKey consumes an object key and its colon.
func (s *scanner) skipKey() error {
	c, err := s.next()
	if err != nil {
		return err
	}
	if c != '"' {
		return s.errorf("expected object key string, found " + describeByte(c))
	}
	if err := s.skipString(); err != nil {
		return err
	}
	return s.expect(':')
}

// readKey consumes an object key and its colon and returns the unescaped key, valid until the
// next string is read.
func (s *scanner) readKey() ([]byte, error) {
	c, err := s.next()
	if err != nil {
		return nil, err
	}
	if c != '"' {
		return nil, s.errorf("expected object key string, found " + describeByte(c))
	}
	k, err := s.readString()
	if err != nil {
		return nil, err
	}
	if err := s.expect(':'); err != nil {
		return nil, err
	}
	return k, nil
}

// openObject consumes '{' and reports whether the object is empty (in which case '}' is consumed
// too).
func (s *scanner) openObject() (empty bool, err error) {
	s.pos++
	c, err := s.next()
	if err != nil {
		return false, err
	}
	if c == '}' {
		s.pos++
		return true, nil
	}
	return false, nil
}

// openArray is openObject for arrays.
func (s *scanner) openArray() (empty bool, err error) {
	s.pos++
	c, err := s.next()
	if err != nil {
		return false, err
	}
	if c == ']' {
		s.pos++
		return true, nil
	}
	return false, nil
}

// parseUint parses the digits of a JSON integer (no sign) into a uint64, reporting overflow.
func parseUint(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if v > (1<<64-1-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	return v, true
}

// parseFloat parses JSON number text without copying it to a string.
func parseFloat(b []byte) (float64, error) {
	return strconv.ParseFloat(unsafe.String(unsafe.SliceData(b), len(b)), 64)
}
