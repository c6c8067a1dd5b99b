package discordjson

import (
	"math/rand/v2"
	"testing"
)

// TestScanPlain checks the eight-bytes-at-a-time scan against the obvious byte loop.
func TestScanPlain(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(3, 4))
	alphabet := []byte{'a', 'Z', '0', ' ', '"', '\\', 0x00, 0x1f, 0x20, 0x7f, 0x80, 0xc3, 0xff, '!', '#', '[', ']'}
	for range 20000 {
		d := make([]byte, r.IntN(40))
		for i := range d {
			if r.IntN(6) == 0 {
				d[i] = alphabet[r.IntN(len(alphabet))]
			} else {
				d[i] = 'a' + byte(r.IntN(26))
			}
		}
		start := 0
		if len(d) > 0 {
			start = r.IntN(len(d))
		}
		want := start
		for want < len(d) && !strStop[d[want]] {
			want++
		}
		if got := scanPlain(d, start); got != want {
			t.Fatalf("scanPlain(%q, %d) = %d, want %d", d, start, got, want)
		}
	}
	for c := range 256 {
		var b [8]byte
		for i := range b {
			b[i] = 'a'
		}
		b[5] = byte(c)
		if got, want := scanPlain(b[:], 0) == 5, strStop[c]; got != want {
			t.Errorf("byte 0x%02x: stop=%v, want %v", c, got, want)
		}
	}
}
