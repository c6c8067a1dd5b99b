package cache

import "encoding/binary"

// arena packs many small immutable blobs (members, users) into 64 KiB chunks, so a blob
// costs its bytes plus a length varint instead of a heap allocation rounded up to a size class
// and a 24-byte slice header. A blob is named by a ref: 1 + (chunk << 16 | offset); 0 is no
// blob. Refs fit in 40 bits up to 2^24 chunks (1 TiB). Replaced and removed blobs become garbage until compact copies the live ones.
type arena struct {
	chunks  [][]byte
	used    int // bytes in chunks, live and garbage
	garbage int
}

const (
	arenaChunkBits = 16
	arenaChunkSize = 1 << arenaChunkBits
)

func (a *arena) put(b []byte) uint64 {
	var hdr [binary.MaxVarintLen64]byte
	h := binary.PutUvarint(hdr[:], uint64(len(b)))
	need := h + len(b)
	n := len(a.chunks)
	if n == 0 || len(a.chunks[n-1])+need > cap(a.chunks[n-1]) {
		// A blob larger than a chunk gets a chunk of its own (offset 0).
		a.chunks = append(a.chunks, make([]byte, 0, max(arenaChunkSize, need)))
		n++
	}
	c := &a.chunks[n-1]
	off := len(*c)
	*c = append(*c, hdr[:h]...)
	*c = append(*c, b...)
	a.used += need
	return 1 + (uint64(n-1)<<arenaChunkBits | uint64(off))
}

// get returns the blob of ref; the slice stays valid (and unchanged) even after the blob is
// freed or the arena compacted, since chunks are never written in place.
func (a *arena) get(ref uint64) []byte {
	if ref == 0 {
		return nil
	}
	ref--
	c := a.chunks[ref>>arenaChunkBits]
	off := int(ref & (arenaChunkSize - 1))
	n, h := binary.Uvarint(c[off:])
	return c[off+h : off+h+int(n) : off+h+int(n)]
}

func (a *arena) free(ref uint64) {
	if ref == 0 {
		return
	}
	b := a.get(ref)
	a.garbage += len(b) + uvarintLen(len(b))
}

func uvarintLen(n int) int {
	var hdr [binary.MaxVarintLen64]byte
	return binary.PutUvarint(hdr[:], uint64(n))
}

// wasteful reports whether compacting is worth it: garbage is over half of a sizeable arena.
func (a *arena) wasteful() bool { return a.garbage > 1<<20 && a.garbage*2 > a.used }

// bytes is the memory the arena's chunks hold.
func (a *arena) bytes() int {
	n := 0
	for _, c := range a.chunks {
		n += cap(c)
	}
	return n
}
