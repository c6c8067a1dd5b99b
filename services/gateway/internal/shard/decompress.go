package shard

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/zstd"
)

// Transport compression names, as they appear in the gateway URL's compress parameter.
const (
	CompressionNone = ""
	CompressionZlib = "zlib-stream"
	CompressionZstd = "zstd-stream"
)

// DefaultMaxMessageSize bounds one decompressed gateway message. The largest real payloads
// (GUILD_CREATE of big guilds, READY) stay well below it; a bigger one is a bomb.
const DefaultMaxMessageSize = 64 << 20

// zstdMaxWindow bounds the zstd window a server may ask for, and so the history kept per
// connection.
const zstdMaxWindow = 16 << 20

// zlibSuffix ends every complete message of a zlib-stream: the Z_SYNC_FLUSH marker.
var zlibSuffix = []byte{0x00, 0x00, 0xff, 0xff}

// streamDecoder turns the websocket messages of one connection into gateway payloads.
type streamDecoder interface {
	// Feed takes one websocket message. It returns the decoded gateway payload, or nil
	// when the message is only part of one. The result aliases the decoder's buffer and is
	// valid until the next Feed. msg is not retained.
	Feed(msg []byte) ([]byte, error)
}

// newStreamDecoder returns a decoder for a fresh connection: both stream formats carry one
// compression context for the connection's whole life.
func newStreamDecoder(compression string, maxSize int) (streamDecoder, error) {
	if maxSize <= 0 {
		maxSize = DefaultMaxMessageSize
	}
	switch compression {
	case CompressionNone:
		return &plainDecoder{max: maxSize}, nil
	case CompressionZlib:
		return newZlibStream(maxSize), nil
	case CompressionZstd:
		return newZstdStream(maxSize)
	default:
		return nil, fmt.Errorf("unknown gateway compression %q (want %q, %q or empty)", compression, CompressionZlib, CompressionZstd)
	}
}

type plainDecoder struct{ max int }

func (p *plainDecoder) Feed(msg []byte) ([]byte, error) {
	if len(msg) > p.max {
		return nil, fmt.Errorf("gateway message of %d bytes is over the %d byte limit", len(msg), p.max)
	}
	return msg, nil
}

// byteSource is the input of a decompressor: the current message, consumed exactly.
// It deliberately has no Bytes method, so zstd does not take its whole-buffer shortcut.
type byteSource struct {
	data []byte
	pos  int
}

func (s *byteSource) Read(p []byte) (int, error) {
	if s.pos >= len(s.data) {
		return 0, io.EOF
	}
	n := copy(p, s.data[s.pos:])
	s.pos += n
	return n, nil
}

func (s *byteSource) ReadByte() (byte, error) {
	if s.pos >= len(s.data) {
		return 0, io.EOF
	}
	c := s.data[s.pos]
	s.pos++
	return c, nil
}

func (s *byteSource) reset(b []byte) { s.data, s.pos = b, 0 }
func (s *byteSource) empty() bool    { return s.pos >= len(s.data) }

// zlibWindow is the most a flate reader hands out in one Read: its history window.
const zlibWindow = 1 << 15

// zlibStream inflates Discord's zlib-stream transport: one deflate context for the whole
// connection, a message complete when the buffered frames end with a sync flush.
//
// The flate reader is fed from a bytes.Reader that holds exactly the current message and
// is read until empty. A sync flush leaves the deflate stream byte-aligned at a block
// boundary, so once the input is consumed the whole message is out. One case needs care:
// when the message's data was already handed out (the history window filled just before
// the flush), the empty flush block yields nothing and the reader goes on to look for the
// next block, finds the input's end and fails for good. The stream is then restarted at
// that byte-aligned boundary with the last 32 KiB of output as its dictionary, which is
// exactly the state it had.
type zlibStream struct {
	max     int
	header  bool // the two byte zlib header was consumed
	pending []byte
	src     *bytes.Reader
	inflate io.ReadCloser
	out     []byte
	hist    []byte // the most recent output, at least the last zlibWindow bytes
	// restarts counts restarts at a flush (see above); tests check the path is taken.
	restarts int
}

func newZlibStream(maxSize int) *zlibStream {
	z := &zlibStream{max: maxSize, src: bytes.NewReader(nil)}
	return z
}

func (z *zlibStream) Feed(msg []byte) ([]byte, error) {
	if z.src == nil {
		return nil, errors.New("zlib-stream decoder is unusable after an earlier error")
	}
	var in []byte
	if len(z.pending) == 0 && bytes.HasSuffix(msg, zlibSuffix) {
		in = msg // the common case: one frame, one message, no copy
	} else {
		if len(z.pending)+len(msg) > z.max {
			z.src = nil
			return nil, fmt.Errorf("zlib-stream message is over %d compressed bytes without a sync flush", z.max)
		}
		z.pending = append(z.pending, msg...)
		if !bytes.HasSuffix(z.pending, zlibSuffix) {
			return nil, nil
		}
		in = z.pending
	}
	out, err := z.inflateMessage(in)
	z.pending = z.pending[:0]
	if err != nil {
		z.src = nil
		return nil, err
	}
	return out, nil
}

func (z *zlibStream) inflateMessage(in []byte) ([]byte, error) {
	if !z.header {
		if len(in) < 2 {
			return nil, errors.New("zlib-stream starts with a message too short for the zlib header")
		}
		cmf, flg := in[0], in[1]
		if cmf&0x0f != 8 || cmf>>4 > 7 || (uint16(cmf)<<8|uint16(flg))%31 != 0 {
			return nil, fmt.Errorf("zlib-stream has an invalid zlib header %02x %02x", cmf, flg)
		}
		if flg&0x20 != 0 {
			return nil, errors.New("zlib-stream asks for a preset dictionary, which the gateway never uses")
		}
		in = in[2:]
		z.header = true
		z.src.Reset(in)
		z.inflate = flate.NewReader(z.src)
	} else {
		z.src.Reset(in)
	}
	z.out = z.out[:0]
	restart := false
	for z.src.Len() > 0 {
		if cap(z.out)-len(z.out) <= zlibWindow {
			z.out = grow(z.out, zlibWindow+1)
		}
		free := z.out[len(z.out):cap(z.out)]
		n, err := z.inflate.Read(free)
		z.out = z.out[:len(z.out)+n]
		if len(z.out) > z.max {
			return nil, fmt.Errorf("zlib-stream message inflates to over %d bytes", z.max)
		}
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) && z.src.Len() == 0 {
				restart = true // see the type's comment
				break
			}
			if errors.Is(err, io.EOF) {
				return nil, errors.New("zlib-stream ended its deflate stream, which the gateway never does")
			}
			return nil, fmt.Errorf("inflating zlib-stream: %w", err)
		}
		if n == 0 {
			return nil, errors.New("inflating zlib-stream: no progress")
		}
	}
	z.remember(z.out)
	if restart {
		dict := z.hist[max(0, len(z.hist)-zlibWindow):]
		if err := z.inflate.(flate.Resetter).Reset(z.src, dict); err != nil {
			return nil, fmt.Errorf("restarting zlib-stream at a flush: %w", err)
		}
		z.restarts++
	}
	return z.out, nil
}

// remember keeps the last zlibWindow bytes of output (the deflate dictionary), copying
// down only when the buffer reaches twice that.
func (z *zlibStream) remember(out []byte) {
	if len(out) >= zlibWindow {
		z.hist = append(z.hist[:0], out[len(out)-zlibWindow:]...)
		return
	}
	if len(z.hist)+len(out) > 2*zlibWindow {
		keep := zlibWindow - len(out)
		z.hist = append(z.hist[:0], z.hist[len(z.hist)-keep:]...)
	}
	z.hist = append(z.hist, out...)
}

// grow returns b with room for at least n more bytes, doubling to keep appends amortised.
func grow(b []byte, n int) []byte {
	if cap(b)-len(b) >= n {
		return b
	}
	c := max(2*cap(b), len(b)+n)
	nb := make([]byte, len(b), c)
	copy(nb, b)
	return nb
}

// zstdBlockMax is the most one zstd block decodes to, and so the most one Read of a
// synchronous decoder hands out.
const zstdBlockMax = 128 << 10

// zstdStream decodes Discord's zstd-stream transport: one zstd context for the whole
// connection, one gateway message per websocket message, frames never ended between
// messages.
//
// The decoder runs synchronously (concurrency 1): each Read decodes at most one block and
// reads exactly the bytes of that block from the source. Reads continue while the
// message has unread input; a message is done when its input is consumed and the last
// Read did not fill the buffer.
type zstdStream struct {
	max int
	src *byteSource
	dec *zstd.Decoder
	out []byte
	bad bool
}

func newZstdStream(maxSize int) (*zstdStream, error) {
	src := &byteSource{}
	dec, err := zstd.NewReader(src,
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderMaxWindow(zstdMaxWindow),
		zstd.WithDecoderLowmem(true),
	)
	if err != nil {
		return nil, fmt.Errorf("creating zstd decoder: %w", err)
	}
	return &zstdStream{max: maxSize, src: src, dec: dec}, nil
}

func (z *zstdStream) Feed(msg []byte) ([]byte, error) {
	if z.bad {
		return nil, errors.New("zstd-stream decoder is unusable after an earlier error")
	}
	z.src.reset(msg)
	z.out = z.out[:0]
	for !z.src.empty() {
		if cap(z.out)-len(z.out) <= zstdBlockMax {
			z.out = grow(z.out, zstdBlockMax+1)
		}
		free := z.out[len(z.out):cap(z.out)]
		n, err := z.dec.Read(free)
		z.out = z.out[:len(z.out)+n]
		if err != nil {
			z.bad = true
			z.src.reset(nil)
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return nil, errors.New("zstd-stream message ends inside a block")
			}
			return nil, fmt.Errorf("decoding zstd-stream: %w", err)
		}
		if len(z.out) > z.max {
			z.bad = true
			return nil, fmt.Errorf("zstd-stream message decodes to over %d bytes", z.max)
		}
	}
	z.src.reset(nil)
	return z.out, nil
}

// Close releases the decoder's resources.
func (z *zstdStream) Close() {
	z.dec.Close()
}
