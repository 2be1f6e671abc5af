package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
)

// On-disk formats (docs/storage.md). All integers are little-endian and
// every checksum is CRC-32C (Castagnoli).

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func crc(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// Log segment header: magic, version u16, flags u16, first LSN u64,
// CRC-32C u32 of the 16 bytes before it.
const (
	segMagic      = "FQWL"
	segVersion    = 1
	segHeaderSize = 20
	// segFlagBase marks a segment written by Rebase: every segment before
	// it is superseded by the checkpoints written just before it.
	segFlagBase = 1
)

// Frame header: payload length u32, partition u32, LSN u64, payload
// CRC-32C u32, header CRC-32C u32 of the 20 bytes before it.
const (
	frameHeaderSize = 24
	// sealPart is the partition value of a seal frame, the last frame of
	// a segment the log rolled past. Its payload is empty and its LSN is
	// the first LSN of the next segment.
	sealPart = math.MaxUint32
	// maxPart is the largest partition id the store accepts.
	maxPart = sealPart - 1
)

// Checkpoint file: magic, version u16, flags u16, partition u32, LSN u64,
// payload length u64, payload, CRC-32C u32 of everything before it.
const (
	ckptMagic      = "FQCP"
	ckptVersion    = 1
	ckptHeaderSize = 28
	ckptTrailer    = 4
	// ckptFlagNone marks a checkpoint that says "holds nothing" (a nil
	// payload). It is kept only while older records of the partition are
	// still in the log, so that recovery does not replay them.
	ckptFlagNone = 1
)

// Meta file: magic, length u32, data, CRC-32C u32 of everything before it.
const (
	metaMagic      = "FQMT"
	metaHeaderSize = 8
	metaTrailer    = 4
)

type segHeader struct {
	flags uint16
	first uint64
}

func (h segHeader) base() bool { return h.flags&segFlagBase != 0 }

func encodeSegHeader(h segHeader) []byte {
	b := make([]byte, segHeaderSize)
	copy(b, segMagic)
	binary.LittleEndian.PutUint16(b[4:], segVersion)
	binary.LittleEndian.PutUint16(b[6:], h.flags)
	binary.LittleEndian.PutUint64(b[8:], h.first)
	binary.LittleEndian.PutUint32(b[16:], crc(b[:16]))
	return b
}

// decodeSegHeader checks the first segHeaderSize bytes of b.
func decodeSegHeader(b []byte) (segHeader, error) {
	if len(b) < segHeaderSize {
		return segHeader{}, fmt.Errorf("short segment header (%d of %d bytes)", len(b), segHeaderSize)
	}
	if got := binary.LittleEndian.Uint32(b[16:]); got != crc(b[:16]) {
		return segHeader{}, errors.New("segment header checksum mismatch")
	}
	if string(b[:4]) != segMagic {
		return segHeader{}, fmt.Errorf("bad segment magic %q", b[:4])
	}
	if v := binary.LittleEndian.Uint16(b[4:]); v != segVersion {
		return segHeader{}, fmt.Errorf("unknown segment version %d", v)
	}
	h := segHeader{flags: binary.LittleEndian.Uint16(b[6:]), first: binary.LittleEndian.Uint64(b[8:])}
	if h.flags&^segFlagBase != 0 {
		return segHeader{}, fmt.Errorf("unknown segment flags %#x", h.flags)
	}
	if h.first == 0 {
		return segHeader{}, errors.New("segment first LSN is 0")
	}
	return h, nil
}

// appendFrame appends one frame to b. sum is crc(payload).
func appendFrame(b []byte, part uint32, lsn uint64, payload []byte, sum uint32) []byte {
	var h [frameHeaderSize]byte
	binary.LittleEndian.PutUint32(h[0:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(h[4:], part)
	binary.LittleEndian.PutUint64(h[8:], lsn)
	binary.LittleEndian.PutUint32(h[16:], sum)
	binary.LittleEndian.PutUint32(h[20:], crc(h[:20]))
	b = append(b, h[:]...)
	return append(b, payload...)
}

// frameHeader is a decoded frame header whose own checksum matched.
type frameHeader struct {
	size uint32
	part uint32
	lsn  uint64
	sum  uint32
}

func decodeFrameHeader(b []byte) (frameHeader, bool) {
	if len(b) < frameHeaderSize || binary.LittleEndian.Uint32(b[20:]) != crc(b[:20]) {
		return frameHeader{}, false
	}
	return frameHeader{
		size: binary.LittleEndian.Uint32(b[0:]),
		part: binary.LittleEndian.Uint32(b[4:]),
		lsn:  binary.LittleEndian.Uint64(b[8:]),
		sum:  binary.LittleEndian.Uint32(b[16:]),
	}, true
}

// frame is one record frame found by scanSegment.
type frame struct {
	off     int64 // offset of the frame header in the file
	part    uint32
	lsn     uint64
	payload []byte // slice of the scanned bytes
	ok      bool   // the payload matched its checksum
}

// scanEnd says how a segment ended.
type scanEnd int

const (
	// endClean: the data ended exactly after a frame (or the header),
	// with no seal.
	endClean scanEnd = iota
	// endSealed: a seal frame ended the data.
	endSealed
	// endTorn: the data ends inside a frame, or the rest of it is zero
	// bytes: what a crash during a write leaves at the end of the file.
	// Not damage in the last segment; truncated anywhere else.
	endTorn
	// endBad: something no crash explains (a frame header that fails its
	// checksum, an LSN out of sequence, an impossible length, data after
	// the seal, a bad segment header). Nothing after it can be trusted.
	endBad
)

// segScan is what scanSegment found in one segment file.
type segScan struct {
	hdr    segHeader
	hdrOK  bool    // the header decoded; if not, end is endTorn or endBad at 0
	frames []frame // record frames in order (not the seal)
	seal   uint64  // the seal's LSN (next segment's first), if end == endSealed
	end    scanEnd
	// good is the offset just past the last complete frame whose header
	// checksum matched (a torn tail is truncated here).
	good int64
	// problem says what was wrong at offset at (endTorn, endBad).
	problem string
	at      int64
	// next is the LSN the next frame would have had.
	next uint64
}

// allZero reports whether b holds only zero bytes.
func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// scanSegment parses the bytes of one segment file. It is pure: it never
// panics on any input, and a frame it returns with ok set carries a payload
// that matched its checksum. LSNs must run consecutively from the header's
// first LSN; a seal may jump forward (LSNs reserved but never written, see
// docs/storage.md).
func scanSegment(data []byte) segScan {
	var s segScan
	h, err := decodeSegHeader(data)
	if err != nil {
		s.end, s.at, s.problem = endBad, 0, err.Error()
		if len(data) < segHeaderSize || allZero(data) {
			s.end = endTorn
			s.problem = fmt.Sprintf("torn segment header (%d bytes, zero-filled or short)", len(data))
		}
		return s
	}
	s.hdr, s.hdrOK = h, true
	s.good, s.next = segHeaderSize, h.first
	off := int64(segHeaderSize)
	size := int64(len(data))
	for {
		rest := data[off:]
		if len(rest) == 0 {
			if s.end != endSealed {
				s.end = endClean
			}
			return s
		}
		if s.end == endSealed {
			s.end, s.at, s.problem = endBad, off, fmt.Sprintf("%d bytes after the seal", len(rest))
			return s
		}
		if len(rest) < frameHeaderSize {
			s.end, s.at, s.problem = endTorn, off, fmt.Sprintf("incomplete frame header (%d bytes)", len(rest))
			return s
		}
		fh, ok := decodeFrameHeader(rest)
		if !ok {
			if allZero(rest) {
				s.end, s.at, s.problem = endTorn, off, fmt.Sprintf("zero-filled tail (%d bytes)", len(rest))
			} else {
				s.end, s.at, s.problem = endBad, off, "frame header checksum mismatch"
			}
			return s
		}
		switch {
		case fh.part == sealPart:
			if fh.size != 0 || fh.sum != 0 || fh.lsn < s.next {
				s.end, s.at, s.problem = endBad, off, fmt.Sprintf("malformed seal (length %d, lsn %d, expected lsn >= %d)", fh.size, fh.lsn, s.next)
				return s
			}
		case fh.size > MaxRecord:
			s.end, s.at, s.problem = endBad, off, fmt.Sprintf("frame length %d over the limit %d", fh.size, MaxRecord)
			return s
		case fh.lsn != s.next:
			s.end, s.at, s.problem = endBad, off, fmt.Sprintf("lsn %d out of sequence (expected %d)", fh.lsn, s.next)
			return s
		}
		end := off + frameHeaderSize + int64(fh.size)
		if end > size {
			s.end, s.at, s.problem = endTorn, off, fmt.Sprintf("incomplete frame (%d of %d payload bytes)", size-off-frameHeaderSize, fh.size)
			return s
		}
		if fh.part == sealPart {
			s.seal, s.next, s.end = fh.lsn, fh.lsn, endSealed
		} else {
			payload := data[off+frameHeaderSize : end]
			s.frames = append(s.frames, frame{off: off, part: fh.part, lsn: fh.lsn, payload: payload, ok: crc(payload) == fh.sum})
			s.next++
		}
		s.good = end
		off = end
	}
}

// ckptFile is a decoded checkpoint file.
type ckptFile struct {
	part    uint32
	lsn     uint64
	payload []byte // nil: the partition holds nothing
}

func encodeCheckpoint(c ckptFile) []byte {
	b := make([]byte, ckptHeaderSize, ckptHeaderSize+len(c.payload)+ckptTrailer)
	copy(b, ckptMagic)
	binary.LittleEndian.PutUint16(b[4:], ckptVersion)
	var flags uint16
	if c.payload == nil {
		flags = ckptFlagNone
	}
	binary.LittleEndian.PutUint16(b[6:], flags)
	binary.LittleEndian.PutUint32(b[8:], c.part)
	binary.LittleEndian.PutUint64(b[12:], c.lsn)
	binary.LittleEndian.PutUint64(b[20:], uint64(len(c.payload)))
	b = append(b, c.payload...)
	return binary.LittleEndian.AppendUint32(b, crc(b))
}

// decodeCheckpoint checks and decodes a checkpoint file. The payload
// aliases b.
func decodeCheckpoint(b []byte) (ckptFile, error) {
	if len(b) < ckptHeaderSize+ckptTrailer {
		return ckptFile{}, fmt.Errorf("too short (%d bytes)", len(b))
	}
	body := b[:len(b)-ckptTrailer]
	if binary.LittleEndian.Uint32(b[len(body):]) != crc(body) {
		return ckptFile{}, fmt.Errorf("checksum mismatch (%d bytes)", len(b))
	}
	if string(b[:4]) != ckptMagic {
		return ckptFile{}, fmt.Errorf("bad magic %q", b[:4])
	}
	if v := binary.LittleEndian.Uint16(b[4:]); v != ckptVersion {
		return ckptFile{}, fmt.Errorf("unknown version %d", v)
	}
	flags := binary.LittleEndian.Uint16(b[6:])
	if flags&^ckptFlagNone != 0 {
		return ckptFile{}, fmt.Errorf("unknown flags %#x", flags)
	}
	c := ckptFile{part: binary.LittleEndian.Uint32(b[8:]), lsn: binary.LittleEndian.Uint64(b[12:])}
	n := binary.LittleEndian.Uint64(b[20:])
	if n != uint64(len(body)-ckptHeaderSize) {
		return ckptFile{}, fmt.Errorf("payload length %d does not match the file (%d bytes)", n, len(b))
	}
	if c.part > maxPart {
		return ckptFile{}, fmt.Errorf("partition %d out of range", c.part)
	}
	if flags&ckptFlagNone != 0 {
		if n != 0 {
			return ckptFile{}, fmt.Errorf("empty checkpoint with %d payload bytes", n)
		}
		return c, nil
	}
	c.payload = body[ckptHeaderSize:]
	return c, nil
}

func encodeMeta(data []byte) []byte {
	b := make([]byte, metaHeaderSize, metaHeaderSize+len(data)+metaTrailer)
	copy(b, metaMagic)
	binary.LittleEndian.PutUint32(b[4:], uint32(len(data)))
	b = append(b, data...)
	return binary.LittleEndian.AppendUint32(b, crc(b))
}

// decodeMeta checks and decodes a meta file. The data aliases b and is
// never nil.
func decodeMeta(b []byte) ([]byte, error) {
	if len(b) < metaHeaderSize+metaTrailer {
		return nil, fmt.Errorf("too short (%d bytes)", len(b))
	}
	body := b[:len(b)-metaTrailer]
	if binary.LittleEndian.Uint32(b[len(body):]) != crc(body) {
		return nil, fmt.Errorf("checksum mismatch (%d bytes)", len(b))
	}
	if string(b[:4]) != metaMagic {
		return nil, fmt.Errorf("bad magic %q", b[:4])
	}
	if n := binary.LittleEndian.Uint32(b[4:]); uint64(n) != uint64(len(body)-metaHeaderSize) {
		return nil, fmt.Errorf("length %d does not match the file (%d bytes)", n, len(b))
	}
	return body[metaHeaderSize:], nil
}
