package shard

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/klauspost/compress/zlib"
	"github.com/klauspost/compress/zstd"
)

// testMessages returns n gateway-like payloads of varied sizes, some larger than the
// 32 KiB deflate window and the 128 KiB zstd block.
func testMessages(n int) [][]byte {
	r := rand.New(rand.NewPCG(1, 2))
	msgs := make([][]byte, n)
	for i := range msgs {
		var b strings.Builder
		fmt.Fprintf(&b, `{"op":0,"s":%d,"t":"MESSAGE_CREATE","d":{"id":"%d","content":"`, i+1, r.Uint64())
		size := r.IntN(2000)
		switch i % 17 {
		case 5:
			size = 40_000
		case 11:
			size = 300_000
		}
		for range size {
			b.WriteByte("abcdefghij klmnop"[r.IntN(17)])
		}
		b.WriteString(`"}}`)
		msgs[i] = []byte(b.String())
	}
	return msgs
}

// zlibFrames encodes msgs as a zlib-stream, each message ending in a sync flush, and
// splits each message's bytes into 1..3 websocket frames.
func zlibFrames(t testing.TB, msgs [][]byte, split bool) [][][]byte {
	t.Helper()
	var buf bytes.Buffer
	w := zlib.NewWriter(&buf)
	out := make([][][]byte, len(msgs))
	r := rand.New(rand.NewPCG(3, 4))
	for i, m := range msgs {
		if _, err := w.Write(m); err != nil {
			t.Fatal(err)
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		data := bytes.Clone(buf.Bytes())
		buf.Reset()
		if split && len(data) > 8 {
			cut := 1 + r.IntN(len(data)-5)
			out[i] = [][]byte{data[:cut], data[cut:]}
		} else {
			out[i] = [][]byte{data}
		}
	}
	return out
}

func zstdFrames(t testing.TB, msgs [][]byte) [][]byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := zstd.NewWriter(&buf, zstd.WithEncoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	out := make([][]byte, len(msgs))
	for i, m := range msgs {
		if _, err := w.Write(m); err != nil {
			t.Fatal(err)
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		out[i] = bytes.Clone(buf.Bytes())
		buf.Reset()
	}
	return out
}

func TestZlibStreamRoundTrip(t *testing.T) {
	t.Parallel()
	msgs := testMessages(60)
	for _, split := range []bool{false, true} {
		t.Run(fmt.Sprintf("split=%v", split), func(t *testing.T) {
			t.Parallel()
			frames := zlibFrames(t, msgs, split)
			d, err := newStreamDecoder(CompressionZlib, 0)
			if err != nil {
				t.Fatal(err)
			}
			for i, parts := range frames {
				for j, p := range parts {
					got, err := d.Feed(p)
					if err != nil {
						t.Fatalf("message %d part %d: %v", i, j, err)
					}
					last := j == len(parts)-1
					if !last && got != nil {
						t.Fatalf("message %d part %d: got output before the sync flush", i, j)
					}
					if last && !bytes.Equal(got, msgs[i]) {
						t.Fatalf("message %d: got %d bytes, want %d (%.60q...)", i, len(got), len(msgs[i]), got)
					}
				}
			}
		})
	}
}

// TestZlibStreamWindowFullAtFlush covers messages whose data ends exactly where the
// 32 KiB history window fills: the reader hands the data out before it reaches the flush
// block, and the empty flush must not break the stream.
func TestZlibStreamWindowFullAtFlush(t *testing.T) {
	t.Parallel()
	text := func(r *rand.Rand, n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = "abcdefghij klmnop"[r.IntN(17)]
		}
		return b
	}
	tests := []struct {
		name  string
		sizes []int
	}{
		{"first message fills the window", []int{zlibWindow, 100, 200}},
		{"second message ends at the window", []int{1000, zlibWindow - 1000, 50, zlibWindow, 10}},
		{"two windows in one message", []int{2 * zlibWindow, 7, 2*zlibWindow - 7, 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := rand.New(rand.NewPCG(5, 6))
			msgs := make([][]byte, len(tc.sizes))
			for i, n := range tc.sizes {
				msgs[i] = text(r, n)
			}
			d := newZlibStream(DefaultMaxMessageSize)
			for i, parts := range zlibFrames(t, msgs, false) {
				got, err := d.Feed(parts[0])
				if err != nil {
					t.Fatalf("message %d of %d bytes: %v", i, tc.sizes[i], err)
				}
				if !bytes.Equal(got, msgs[i]) {
					t.Fatalf("message %d: got %d bytes, want %d", i, len(got), len(msgs[i]))
				}
			}
			if d.restarts == 0 {
				t.Fatalf("no restart at a flush: the case under test did not happen")
			}
		})
	}
}

func TestZstdStreamRoundTrip(t *testing.T) {
	t.Parallel()
	msgs := testMessages(60)
	frames := zstdFrames(t, msgs)
	d, err := newStreamDecoder(CompressionZstd, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer d.(*zstdStream).Close()
	for i, f := range frames {
		got, err := d.Feed(f)
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if !bytes.Equal(got, msgs[i]) {
			t.Fatalf("message %d: got %d bytes, want %d", i, len(got), len(msgs[i]))
		}
	}
}

func TestStreamDecoderErrors(t *testing.T) {
	t.Parallel()
	msgs := testMessages(3)
	zl := zlibFrames(t, msgs, false)
	zs := zstdFrames(t, msgs)
	tests := []struct {
		name        string
		compression string
		max         int
		feed        [][]byte
		wantErr     string
	}{
		{"zlib bad header", CompressionZlib, 0, [][]byte{{0x12, 0x34, 0, 0, 0xff, 0xff}}, "invalid zlib header"},
		{"zlib too short", CompressionZlib, 0, [][]byte{{0x78}}, ""},
		{"zlib garbage body", CompressionZlib, 0, [][]byte{{0x78, 0x9c, 0xff, 0xff, 0xff, 0, 0, 0xff, 0xff}}, "zlib-stream"},
		{"zlib missing first message", CompressionZlib, 0, [][]byte{zl[1][0]}, "invalid zlib header"},
		{"zlib bomb", CompressionZlib, 1000, [][]byte{zl[0][0]}, "over 1000"},
		{"zlib no flush too long", CompressionZlib, 10, [][]byte{bytes.Repeat([]byte{1}, 11)}, "without a sync flush"},
		{"zstd garbage", CompressionZstd, 0, [][]byte{{1, 2, 3, 4, 5, 6, 7, 8}}, "zstd"},
		{"zstd truncated", CompressionZstd, 0, [][]byte{zs[0][:len(zs[0])-3]}, "zstd-stream"},
		{"zstd bomb", CompressionZstd, 1000, [][]byte{zs[0]}, "over 1000"},
		{"plain too big", CompressionNone, 3, [][]byte{[]byte("{}{}")}, "over the 3 byte limit"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d, err := newStreamDecoder(tc.compression, tc.max)
			if err != nil {
				t.Fatal(err)
			}
			var last error
			for _, f := range tc.feed {
				if _, err := d.Feed(f); err != nil {
					last = err
					break
				}
			}
			if tc.wantErr == "" {
				return // only must not panic
			}
			if last == nil || !strings.Contains(last.Error(), tc.wantErr) {
				t.Fatalf("error = %v, want one containing %q", last, tc.wantErr)
			}
			// A broken stream stays broken instead of producing garbage.
			if _, err := d.Feed(tc.feed[0]); err == nil && tc.compression != CompressionNone {
				t.Errorf("Feed after an error succeeded, want an error")
			}
		})
	}
	if _, err := newStreamDecoder("brotli", 0); err == nil {
		t.Error("newStreamDecoder(brotli) = nil error, want one")
	}
}

// FuzzZlibStream feeds arbitrary frames to the zlib-stream decoder: it must return
// output or an error, never panic or hang, and never exceed its size bound.
func FuzzZlibStream(f *testing.F) {
	msgs := testMessages(4)
	frames := zlibFrames(f, msgs[:3], true)
	var all []byte
	for _, parts := range frames {
		for _, p := range parts {
			all = append(all, p...)
		}
	}
	f.Add(all, uint16(7))
	f.Add(frames[0][0], uint16(1))
	f.Add([]byte{0x78, 0x9c, 0, 0, 0, 0xff, 0xff}, uint16(0))
	f.Add([]byte{0x78, 0x01, 0xca, 0x00, 0x00, 0x00, 0xff, 0xff}, uint16(3))
	f.Fuzz(func(t *testing.T, data []byte, splitEvery uint16) {
		const limit = 1 << 20
		d := newZlibStream(limit)
		for _, part := range splitFrames(data, int(splitEvery)) {
			out, err := d.Feed(part)
			if err != nil {
				return
			}
			if len(out) > limit {
				t.Fatalf("output of %d bytes is over the %d limit", len(out), limit)
			}
		}
	})
}

// FuzzZstdStream does the same for zstd-stream: every input is one websocket message.
func FuzzZstdStream(f *testing.F) {
	msgs := testMessages(3)
	frames := zstdFrames(f, msgs)
	f.Add(frames[0], uint16(0))
	f.Add(append(bytes.Clone(frames[0]), frames[1]...), uint16(len(frames[0])))
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd, 0, 0x58, 0, 0, 0}, uint16(0))
	f.Fuzz(func(t *testing.T, data []byte, splitEvery uint16) {
		const limit = 1 << 20
		d, err := newZstdStream(limit)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		for _, part := range splitFrames(data, int(splitEvery)) {
			out, err := d.Feed(part)
			if err != nil {
				return
			}
			if len(out) > limit {
				t.Fatalf("output of %d bytes is over the %d limit", len(out), limit)
			}
		}
	})
}

func splitFrames(data []byte, every int) [][]byte {
	if every <= 0 || every >= len(data) {
		return [][]byte{data}
	}
	var out [][]byte
	for len(data) > every {
		out = append(out, data[:every])
		data = data[every:]
	}
	return append(out, data)
}

// FuzzStreamRoundTrip compresses fuzzer-chosen messages the way the gateway does (one
// stream, a flush per message) and checks both decoders give every message back
// unchanged. Lengths are stretched so window and block boundaries get hit.
func FuzzStreamRoundTrip(f *testing.F) {
	f.Add([]byte("hello gateway"), []byte{3, 200, 1})
	f.Add(bytes.Repeat([]byte("abc"), 100), []byte{128, 128, 128, 128})
	f.Add([]byte{0, 1, 2, 3}, []byte{255, 255, 0, 7})
	f.Fuzz(func(t *testing.T, seed []byte, lengths []byte) {
		if len(seed) == 0 || len(lengths) == 0 || len(lengths) > 16 {
			return
		}
		msgs := make([][]byte, len(lengths))
		for i, l := range lengths {
			n := int(l) * 131 // up to ~33 KiB: one message or a few cross the 32 KiB window
			m := make([]byte, n)
			for j := range m {
				m[j] = seed[(j*7+i)%len(seed)] ^ byte(j>>9)
			}
			msgs[i] = m
		}
		z := newZlibStream(1 << 20)
		for i, parts := range zlibFrames(t, msgs, false) {
			got, err := z.Feed(parts[0])
			if err != nil || !bytes.Equal(got, msgs[i]) {
				t.Fatalf("zlib message %d of %d bytes: err %v, got %d bytes", i, len(msgs[i]), err, len(got))
			}
		}
		d, err := newZstdStream(1 << 20)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		for i, frame := range zstdFrames(t, msgs) {
			got, err := d.Feed(frame)
			if len(msgs[i]) == 0 {
				continue // an empty message writes no zstd block
			}
			if err != nil || !bytes.Equal(got, msgs[i]) {
				t.Fatalf("zstd message %d of %d bytes: err %v, got %d bytes", i, len(msgs[i]), err, len(got))
			}
		}
	})
}
