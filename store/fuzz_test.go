package store

import (
	"bytes"
	"testing"
)

// FuzzSegment feeds arbitrary bytes to the segment scanner: it never
// panics, never returns a record whose checksum did not match as good,
// keeps LSNs consecutive, and keeps every offset inside the data.
func FuzzSegment(f *testing.F) {
	seg := encodeSegHeader(segHeader{first: 5})
	for i := range 4 {
		p := bytes.Repeat([]byte{byte(i)}, i*7)
		seg = appendFrame(seg, uint32(i), 5+uint64(i), p, crc(p))
	}
	f.Add(seg)
	f.Add(appendFrame(seg, sealPart, 20, nil, 0))
	f.Add(seg[:len(seg)-3])
	f.Add(append(seg, make([]byte, 30)...))
	bad := bytes.Clone(seg)
	bad[segHeaderSize+frameHeaderSize+2] ^= 1 // a payload byte
	f.Add(bad)
	f.Add(encodeSegHeader(segHeader{flags: segFlagBase, first: 1}))
	f.Add([]byte{})
	f.Add(make([]byte, 64))
	f.Fuzz(func(t *testing.T, data []byte) {
		sc := scanSegment(data)
		if !sc.hdrOK {
			if len(sc.frames) != 0 || sc.end == endClean || sc.end == endSealed {
				t.Fatalf("bad header but %d frames, end %v", len(sc.frames), sc.end)
			}
			return
		}
		next := sc.hdr.first
		prevEnd := int64(segHeaderSize)
		for _, fr := range sc.frames {
			if fr.off < prevEnd || fr.off+frameHeaderSize+int64(len(fr.payload)) > int64(len(data)) {
				t.Fatalf("frame at %d (%d bytes) outside the data (%d) or overlapping (%d)", fr.off, len(fr.payload), len(data), prevEnd)
			}
			fh, ok := decodeFrameHeader(data[fr.off:])
			if !ok || fh.lsn != fr.lsn || fh.part != fr.part || int(fh.size) != len(fr.payload) || fr.part == sealPart {
				t.Fatalf("frame %+v does not match its header %+v (%v)", fr, fh, ok)
			}
			if fr.ok != (crc(fr.payload) == fh.sum) {
				t.Fatalf("frame at %d: ok=%v but checksum match=%v", fr.off, fr.ok, crc(fr.payload) == fh.sum)
			}
			if !bytes.Equal(fr.payload, data[fr.off+frameHeaderSize:fr.off+frameHeaderSize+int64(len(fr.payload))]) {
				t.Fatal("payload is not the frame's bytes")
			}
			if fr.lsn != next {
				t.Fatalf("lsn %d, want %d", fr.lsn, next)
			}
			next++
			prevEnd = fr.off + frameHeaderSize + int64(len(fr.payload))
		}
		if sc.good < prevEnd || sc.good > int64(len(data)) {
			t.Fatalf("good offset %d outside [%d, %d]", sc.good, prevEnd, len(data))
		}
		switch sc.end {
		case endClean:
			if sc.good != int64(len(data)) {
				t.Fatalf("clean end at %d of %d", sc.good, len(data))
			}
		case endSealed:
			if sc.seal < next || sc.good != int64(len(data)) {
				t.Fatalf("seal %d (next %d) at %d of %d", sc.seal, next, sc.good, len(data))
			}
		case endTorn, endBad:
			if sc.problem == "" || sc.at < sc.good-frameHeaderSize || sc.at > int64(len(data)) {
				t.Fatalf("end %v at %d: %q", sc.end, sc.at, sc.problem)
			}
		}
	})
}

// FuzzCheckpoint: decoding never panics, and what decodes encodes back to
// the same bytes.
func FuzzCheckpoint(f *testing.F) {
	f.Add(encodeCheckpoint(ckptFile{part: 7, lsn: 99, payload: []byte("state")}))
	f.Add(encodeCheckpoint(ckptFile{part: 0, lsn: 0, payload: []byte{}}))
	f.Add(encodeCheckpoint(ckptFile{part: maxPart, lsn: 1 << 60}))
	f.Add([]byte("FQCP"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := decodeCheckpoint(data)
		if err != nil {
			return
		}
		if again := encodeCheckpoint(c); !bytes.Equal(again, data) {
			t.Fatalf("decode/encode not identity: %x -> %+v -> %x", data, c, again)
		}
	})
}

// FuzzMeta: decoding never panics, and what decodes encodes back to the
// same bytes.
func FuzzMeta(f *testing.F) {
	f.Add(encodeMeta([]byte("node identity")))
	f.Add(encodeMeta(nil))
	f.Add([]byte("FQMT\x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := decodeMeta(data)
		if err != nil {
			return
		}
		if again := encodeMeta(m); !bytes.Equal(again, data) {
			t.Fatalf("decode/encode not identity: %x -> %x", data, again)
		}
	})
}
