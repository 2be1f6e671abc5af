package peer

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/freqd/freqd"
)

func TestHelloRoundTrip(t *testing.T) {
	for _, h := range []hello{
		rawHello(ident(1), laneMain),
		{kind: kindWelcome, lane: laneBulk, id: Identity{Cluster: 1<<64 - 1, ID: 1<<64 - 1, Name: strings.Repeat("é", 64)}, maxFrame: minFrame, maxMessage: 1<<32 - 1},
		{kind: kindRefusal, id: ident(7), maxFrame: minFrame, maxMessage: minFrame, reason: strings.Repeat("r", maxReasonLen)},
	} {
		b := encodeHello(h)
		got, err := decodeHello(b)
		if err != nil || got != h {
			t.Fatalf("decode(encode(%+v)) = %+v, %v", h, got, err)
		}
		r := io.MultiReader(bytes.NewReader(b), strings.NewReader("next frame"))
		if got, err := readHello(r); err != nil || got != h {
			t.Fatalf("readHello: %+v, %v", got, err)
		}
		rest, _ := io.ReadAll(r)
		if string(rest) != "next frame" {
			t.Fatalf("readHello read past the handshake: %q left", rest)
		}
		for cut := range len(b) {
			if _, err := decodeHello(b[:cut]); err == nil {
				t.Fatalf("a %d-byte prefix decoded", cut)
			}
			if _, err := readHello(bytes.NewReader(b[:cut])); err == nil {
				t.Fatalf("readHello accepted a %d-byte prefix", cut)
			}
		}
	}
}

// withCRC fixes up a hello's checksum after an edit, so the field checks
// are what refuse it.
func withCRC(b []byte) []byte {
	binary.LittleEndian.PutUint32(b[len(b)-4:], crc(b[:len(b)-4]))
	return b
}

func TestDecodeHelloStrict(t *testing.T) {
	good := encodeHello(rawHello(ident(1), laneMain))
	edit := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	tests := []struct {
		name string
		b    []byte
		want string
	}{
		{"magic", edit(func(b []byte) []byte { b[0] = 'X'; return withCRC(b) }), "magic"},
		{"version", edit(func(b []byte) []byte { b[4] = 2; return withCRC(b) }), "version 2"},
		{"checksum", edit(func(b []byte) []byte { b[len(b)-1] ^= 1; return b }), "checksum"},
		{"kind", edit(func(b []byte) []byte { b[6] = 9; return withCRC(b) }), "kind 9"},
		{"lane", edit(func(b []byte) []byte { b[7] = 2; return withCRC(b) }), "lane 2"},
		{"cluster 0", edit(func(b []byte) []byte { clear(b[8:16]); return withCRC(b) }), "cluster id is 0"},
		{"id 0", edit(func(b []byte) []byte { clear(b[16:24]); return withCRC(b) }), "node id is 0"},
		{"small frame", edit(func(b []byte) []byte { binary.LittleEndian.PutUint32(b[24:], minFrame-1); return withCRC(b) }), "bad limits"},
		{"message below frame", edit(func(b []byte) []byte { binary.LittleEndian.PutUint32(b[28:], minFrame); return withCRC(b) }), "bad limits"},
		{"name with space", edit(func(b []byte) []byte { b[36] = ' '; return withCRC(b) }), "no spaces"},
		{"trailing byte", append(bytes.Clone(good), 0), "lengths say"},
		{"name too long", edit(func(b []byte) []byte { binary.LittleEndian.PutUint16(b[32:], MaxNameLen+1); return b }), "name length"},
		{"reason too long", edit(func(b []byte) []byte { binary.LittleEndian.PutUint16(b[34:], maxReasonLen+1); return b }), "reason length"},
		{"reason on a hello", encodeHello(hello{kind: kindHello, id: ident(1), maxFrame: minFrame, maxMessage: minFrame, reason: "x"}), "with a reason"},
		{"refusal without reason", encodeHello(hello{kind: kindRefusal, id: ident(1), maxFrame: minFrame, maxMessage: minFrame}), "without a valid"},
		{"empty name", encodeHello(hello{kind: kindHello, id: Identity{Cluster: 1, ID: 1}, maxFrame: minFrame, maxMessage: minFrame}), "name is empty"},
	}
	for _, tt := range tests {
		_, err := decodeHello(tt.b)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want %q", tt.name, err, tt.want)
		}
	}
}

func TestTruncateReason(t *testing.T) {
	for _, s := range []string{"", "short", strings.Repeat("ü", 400), "bad \xff byte" + strings.Repeat("x", 600)} {
		got := truncateReason(s)
		if got == "" || len(got) > maxReasonLen || !utf8.ValidString(got) {
			t.Fatalf("truncateReason(%d bytes) = %d bytes, valid %v", len(s), len(got), utf8.ValidString(got))
		}
	}
}

func TestIdentityValidate(t *testing.T) {
	if err := ident(1).Validate(); err != nil {
		t.Fatal(err)
	}
	for _, id := range []Identity{
		{Cluster: 1, ID: 1},
		{Cluster: 1, ID: 1, Name: strings.Repeat("a", MaxNameLen+1)},
		{Cluster: 1, ID: 1, Name: "tab\there"},
		{Cluster: 1, ID: 1, Name: "\xff"},
		{Cluster: 0, ID: 1, Name: "a"},
	} {
		if err := id.Validate(); !errors.Is(err, freqd.ErrInvalidArgument) {
			t.Errorf("Validate(%q) = %v", id.Name, err)
		}
	}
}

func TestDecodeHeaderStrict(t *testing.T) {
	const max = minFrame
	ok := []frameHeader{
		{typ: frameMsg},
		{typ: frameMsg, size: max, sum: 1},
		{typ: frameChunk, id: 1, size: 10, arg: 5 | (max+20)<<32, sum: 1},
		{typ: frameCall, id: 1, arg: 1 << 62},
		{typ: frameReply, id: 1},
		{typ: frameError, id: 1, arg: 1<<32 - 1},
		{typ: frameFail, id: 1, arg: failTooLarge},
		{typ: frameCancel, id: 9},
		{typ: framePing, id: 0},
		{typ: framePong, id: 1 << 63},
	}
	for _, h := range ok {
		got, err := decodeHeader(appendHeader(nil, h), max)
		if err != nil || got != h {
			t.Errorf("%v: %+v, %v", h, got, err)
		}
	}
	bad := []frameHeader{
		{typ: 0},
		{typ: frameTypes + 1},
		{typ: frameMsg, size: max + 1, sum: 1},
		{typ: frameMsg, sum: 7},
		{typ: frameMsg, id: 1},
		{typ: frameMsg, arg: 1},
		{typ: frameChunk, size: 1, arg: max + 1<<32, sum: 1},
		{typ: frameChunk, id: 1, arg: (max + 1) << 32},
		{typ: frameChunk, id: 1, size: 1, arg: 10 << 32, sum: 1},
		{typ: frameChunk, id: 1, size: 10, arg: (max + 1) | (max+5)<<32, sum: 1},
		{typ: frameCall},
		{typ: frameReply, id: 1, arg: 1},
		{typ: frameError, id: 1, arg: 1 << 32},
		{typ: frameFail, id: 1, arg: 0},
		{typ: frameFail, id: 1, arg: 4},
		{typ: frameFail, id: 1, arg: 1, size: 1, sum: 1},
		{typ: frameCancel, id: 1, size: 1, sum: 1},
		{typ: framePing, arg: 1},
	}
	for _, h := range bad {
		if got, err := decodeHeader(appendHeader(nil, h), max); err == nil {
			t.Errorf("%+v decoded as %v", h, got)
		}
	}
	b := appendHeader(nil, frameHeader{typ: frameMsg})
	b[5] = 1 // flags
	binary.LittleEndian.PutUint32(b[28:], crc(b[:28]))
	if _, err := decodeHeader(b, max); err == nil {
		t.Error("nonzero flags decoded")
	}
}

// A header claiming a huge payload is refused before the payload is
// allocated.
func TestReadFrameOversizedNoAlloc(t *testing.T) {
	hdr := appendHeader(nil, frameHeader{typ: frameMsg, size: 1<<32 - 1, sum: 1})
	var hb [frameHeaderSize]byte
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 100 {
		_, _, err := readFrame(bytes.NewReader(hdr), &hb, DefaultMaxFrame)
		if !errors.Is(err, ErrProtocol) {
			t.Fatalf("readFrame: %v", err)
		}
	}
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
		t.Fatalf("100 refused headers allocated %d bytes", grew)
	}
	// A truncated payload is an unexpected EOF, not a protocol error.
	p := []byte("payload")
	f := appendFrame(nil, frameMsg, 0, 0, p, crc(p))
	if _, _, err := readFrame(bytes.NewReader(f[:len(f)-1]), &hb, DefaultMaxFrame); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated frame: %v", err)
	}
}

func TestReassembly(t *testing.T) {
	const max = minFrame
	chunk := func(id uint64, off, total int, b byte, n int) (frameHeader, []byte) {
		p := bytes.Repeat([]byte{b}, n)
		return frameHeader{typ: frameChunk, id: id, size: uint32(n), arg: uint64(off) | uint64(total)<<32, sum: crc(p)}, p
	}
	r := reassembly{maxFrame: max, maxMessage: 3 * max}
	// Two messages interleaved.
	total := max + 10
	for _, c := range []struct {
		id  uint64
		off int
		n   int
	}{{1, 0, max}, {2, 0, max}, {1, max, 10}, {2, max, 10}} {
		h, p := chunk(c.id, c.off, total, byte(c.id), c.n)
		msg, err := r.add(h, p)
		if err != nil {
			t.Fatal(err)
		}
		if c.off == max {
			if len(msg) != total || msg[0] != byte(c.id) || msg[total-1] != byte(c.id) {
				t.Fatalf("message %d: %d bytes", c.id, len(msg))
			}
		} else if msg != nil {
			t.Fatal("message complete early")
		}
	}
	if len(r.parts) != 0 || r.bytes != 0 {
		t.Fatalf("left over: %d parts, %d bytes", len(r.parts), r.bytes)
	}
	for _, tt := range []struct {
		name  string
		steps [][3]int // id, off, total; chunks of 10 bytes
		want  string
	}{
		{"too many partials", [][3]int{{1, 0, max + 20}, {2, 0, max + 20}, {3, 0, max + 20}}, "more than 2"},
		{"over the bytes bound", [][3]int{{1, 0, 2 * max}, {2, 0, 2 * max}}, "would total"},
		{"over max message", [][3]int{{1, 0, 3*max + 1}}, "over the limit"},
		{"gap", [][3]int{{1, 0, max + 20}, {1, 15, max + 20}}, "expected offset 10"},
		{"total changed", [][3]int{{1, 0, max + 20}, {1, 10, max + 30}}, "expected offset 10 of"},
		{"starts late", [][3]int{{1, 10, max + 20}}, "first chunk seen at offset 10"},
	} {
		r := reassembly{maxFrame: max, maxMessage: 3 * max}
		var err error
		for _, s := range tt.steps {
			h, p := chunk(uint64(s[0]), s[1], s[2], 1, 10)
			if _, err = r.add(h, p); err != nil {
				break
			}
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
	}
}
