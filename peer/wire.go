package peer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"unicode/utf8"
)

// Wire formats (doc.go has the full description). All integers are
// little-endian and every checksum is CRC-32C (Castagnoli).

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func crc(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// Handshake: magic, version u16, kind u8, lane u8, cluster u64, node u64,
// max frame u32, max message u32, name length u16, reason length u16,
// name, reason, CRC-32C u32 of everything before it.
const (
	helloMagic        = "FQPR"
	helloVersion      = 1
	helloFixed        = 36
	helloTrailer      = 4
	maxReasonLen      = 512
	maxHelloSize      = helloFixed + MaxNameLen + maxReasonLen + helloTrailer
	kindHello         = 1 // dialer to acceptor
	kindWelcome       = 2 // acceptor to dialer: admitted
	kindRefusal       = 3 // acceptor to dialer: refused, reason says why
	laneMain     lane = 0
	laneBulk     lane = 1
)

// lane names a connection's role: the main lane carries messages up to the
// frame limit, calls and replies; the bulk lane carries chunked messages.
type lane uint8

func (l lane) String() string {
	if l == laneBulk {
		return "bulk"
	}
	return "main"
}

// hello is one decoded handshake.
type hello struct {
	kind       uint8
	lane       lane
	id         Identity
	maxFrame   uint32
	maxMessage uint32
	reason     string // refusal only
}

func encodeHello(h hello) []byte {
	b := make([]byte, helloFixed, helloFixed+len(h.id.Name)+len(h.reason)+helloTrailer)
	copy(b, helloMagic)
	binary.LittleEndian.PutUint16(b[4:], helloVersion)
	b[6] = h.kind
	b[7] = byte(h.lane)
	binary.LittleEndian.PutUint64(b[8:], h.id.Cluster)
	binary.LittleEndian.PutUint64(b[16:], h.id.ID)
	binary.LittleEndian.PutUint32(b[24:], h.maxFrame)
	binary.LittleEndian.PutUint32(b[28:], h.maxMessage)
	binary.LittleEndian.PutUint16(b[32:], uint16(len(h.id.Name)))
	binary.LittleEndian.PutUint16(b[34:], uint16(len(h.reason)))
	b = append(b, h.id.Name...)
	b = append(b, h.reason...)
	return binary.LittleEndian.AppendUint32(b, crc(b))
}

// checkHelloFixed checks the fixed part (magic, version, lengths) and
// returns the total size of the handshake.
func checkHelloFixed(b []byte) (int, error) {
	if len(b) < helloFixed {
		return 0, fmt.Errorf("short handshake (%d bytes)", len(b))
	}
	if string(b[:4]) != helloMagic {
		return 0, fmt.Errorf("bad handshake magic %q", b[:4])
	}
	if v := binary.LittleEndian.Uint16(b[4:]); v != helloVersion {
		return 0, fmt.Errorf("unsupported version %d (want %d)", v, helloVersion)
	}
	n := int(binary.LittleEndian.Uint16(b[32:]))
	m := int(binary.LittleEndian.Uint16(b[34:]))
	if n > MaxNameLen {
		return 0, fmt.Errorf("name length %d over %d", n, MaxNameLen)
	}
	if m > maxReasonLen {
		return 0, fmt.Errorf("reason length %d over %d", m, maxReasonLen)
	}
	return helloFixed + n + m + helloTrailer, nil
}

// decodeHello checks and decodes exactly one handshake: b must be all of
// it and nothing more.
func decodeHello(b []byte) (hello, error) {
	size, err := checkHelloFixed(b)
	if err != nil {
		return hello{}, err
	}
	if len(b) != size {
		return hello{}, fmt.Errorf("handshake is %d bytes, its lengths say %d", len(b), size)
	}
	body := b[:size-helloTrailer]
	if binary.LittleEndian.Uint32(b[len(body):]) != crc(body) {
		return hello{}, errors.New("handshake checksum mismatch")
	}
	n := int(binary.LittleEndian.Uint16(b[32:]))
	h := hello{
		kind: b[6],
		lane: lane(b[7]),
		id: Identity{
			Cluster: binary.LittleEndian.Uint64(b[8:]),
			ID:      binary.LittleEndian.Uint64(b[16:]),
			Name:    string(body[helloFixed : helloFixed+n]),
		},
		maxFrame:   binary.LittleEndian.Uint32(b[24:]),
		maxMessage: binary.LittleEndian.Uint32(b[28:]),
		reason:     string(body[helloFixed+n:]),
	}
	switch h.kind {
	case kindHello, kindWelcome:
		if h.reason != "" {
			return hello{}, fmt.Errorf("handshake kind %d with a reason", h.kind)
		}
	case kindRefusal:
		if h.reason == "" || !utf8.ValidString(h.reason) {
			return hello{}, errors.New("refusal without a valid UTF-8 reason")
		}
	default:
		return hello{}, fmt.Errorf("unknown handshake kind %d", h.kind)
	}
	if h.lane != laneMain && h.lane != laneBulk {
		return hello{}, fmt.Errorf("unknown lane %d", h.lane)
	}
	if h.maxFrame < minFrame || h.maxMessage < h.maxFrame {
		return hello{}, fmt.Errorf("bad limits: max frame %d, max message %d", h.maxFrame, h.maxMessage)
	}
	if err := h.id.Validate(); err != nil {
		return hello{}, err
	}
	return h, nil
}

// readHello reads one handshake from r, never more than maxHelloSize
// bytes, and never past its end.
func readHello(r io.Reader) (hello, error) {
	var buf [maxHelloSize]byte
	if _, err := io.ReadFull(r, buf[:helloFixed]); err != nil {
		return hello{}, err
	}
	size, err := checkHelloFixed(buf[:helloFixed])
	if err != nil {
		return hello{}, err
	}
	if _, err := io.ReadFull(r, buf[helloFixed:size]); err != nil {
		return hello{}, err
	}
	return decodeHello(buf[:size])
}

// truncateReason cuts s to maxReasonLen bytes at a rune boundary, making
// it valid UTF-8 and never empty.
func truncateReason(s string) string {
	s = string([]rune(s)) // replaces invalid bytes
	if len(s) > maxReasonLen {
		cut := maxReasonLen
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	if s == "" {
		s = "refused"
	}
	return s
}

// Frame header: payload length u32, type u8, flags u8, reserved u16, id
// u64, arg u64, payload CRC-32C u32, header CRC-32C u32 of the 28 bytes
// before it.
const frameHeaderSize = 32

// Frame types.
const (
	frameMsg    = 1 // dialer, main lane: one message
	frameChunk  = 2 // dialer, bulk lane: part of a message; id message, arg offset|total<<32
	frameCall   = 3 // dialer, main lane: a request; id call, arg deadline in ns from now (0: none)
	frameReply  = 4 // acceptor, main lane: a call's reply
	frameError  = 5 // acceptor, main lane: a call's handler error; arg code, payload message
	frameFail   = 6 // acceptor, main lane: the transport could not serve a call; arg reason
	frameCancel = 7 // dialer, main lane: the caller gave up on a call
	framePing   = 8 // dialer, both lanes: keepalive; id echoed
	framePong   = 9 // acceptor, both lanes: answer to a ping
	frameTypes  = 9
)

// Reasons of a frameFail.
const (
	failBusy     = 1 // MaxCallsPerConn reached; handler not run
	failClosing  = 2 // the callee is closing; handler not run
	failTooLarge = 3 // the reply was over the frame limit; handler ran
)

// minFrame is the smallest MaxFrame accepted.
const minFrame = 4 << 10

var frameNames = [...]string{"", "message", "chunk", "call", "reply", "error", "fail", "cancel", "ping", "pong"}

// frameHeader is a decoded frame header whose own checksum matched.
type frameHeader struct {
	size uint32
	typ  uint8
	id   uint64
	arg  uint64
	sum  uint32
}

func (h frameHeader) String() string {
	return fmt.Sprintf("%s frame (id %d, arg %#x, %d bytes)", frameNames[h.typ], h.id, h.arg, h.size)
}

// chunk returns a chunk frame's offset and total.
func (h frameHeader) chunk() (off, total uint32) { return uint32(h.arg), uint32(h.arg >> 32) }

// appendFrame appends one frame to b. sum is crc(payload).
func appendFrame(b []byte, typ uint8, id, arg uint64, payload []byte, sum uint32) []byte {
	b = appendHeader(b, frameHeader{size: uint32(len(payload)), typ: typ, id: id, arg: arg, sum: sum})
	return append(b, payload...)
}

func appendHeader(b []byte, h frameHeader) []byte {
	var hb [frameHeaderSize]byte
	putHeader(hb[:], h)
	return append(b, hb[:]...)
}

func putHeader(b []byte, h frameHeader) {
	binary.LittleEndian.PutUint32(b[0:], h.size)
	b[4] = h.typ
	b[5] = 0
	binary.LittleEndian.PutUint16(b[6:], 0)
	binary.LittleEndian.PutUint64(b[8:], h.id)
	binary.LittleEndian.PutUint64(b[16:], h.arg)
	binary.LittleEndian.PutUint32(b[24:], h.sum)
	binary.LittleEndian.PutUint32(b[28:], crc(b[:28]))
}

// decodeHeader checks a frame header (its checksum first, then every
// field) against the frame limit. It does not look at the payload.
func decodeHeader(b []byte, maxFrame uint32) (frameHeader, error) {
	if len(b) < frameHeaderSize {
		return frameHeader{}, fmt.Errorf("short frame header (%d bytes)", len(b))
	}
	if binary.LittleEndian.Uint32(b[28:]) != crc(b[:28]) {
		return frameHeader{}, errors.New("frame header checksum mismatch")
	}
	h := frameHeader{
		size: binary.LittleEndian.Uint32(b[0:]),
		typ:  b[4],
		id:   binary.LittleEndian.Uint64(b[8:]),
		arg:  binary.LittleEndian.Uint64(b[16:]),
		sum:  binary.LittleEndian.Uint32(b[24:]),
	}
	if b[5] != 0 || binary.LittleEndian.Uint16(b[6:]) != 0 {
		return frameHeader{}, fmt.Errorf("frame flags %#x, reserved %#x: must be 0", b[5], binary.LittleEndian.Uint16(b[6:]))
	}
	if h.typ == 0 || h.typ > frameTypes {
		return frameHeader{}, fmt.Errorf("unknown frame type %d", h.typ)
	}
	if h.size > maxFrame {
		return frameHeader{}, fmt.Errorf("%v over the frame limit %d", h, maxFrame)
	}
	if h.size == 0 && h.sum != 0 {
		return frameHeader{}, fmt.Errorf("%v: empty payload with checksum %#x", h, h.sum)
	}
	bad := ""
	switch h.typ {
	case frameMsg:
		if h.id != 0 || h.arg != 0 {
			bad = "id and arg must be 0"
		}
	case frameChunk:
		off, total := h.chunk()
		switch {
		case h.id == 0:
			bad = "message id 0"
		case h.size == 0:
			bad = "empty chunk"
		case total <= maxFrame:
			bad = "chunked message fits one frame"
		case uint64(off)+uint64(h.size) > uint64(total):
			bad = "chunk past the message's end"
		}
	case frameCall:
		if h.id == 0 {
			bad = "call id 0"
		}
	case frameReply, frameCancel:
		if h.id == 0 || h.arg != 0 {
			bad = "call id 0 or arg not 0"
		}
		if h.typ == frameCancel && h.size != 0 {
			bad = "cancel with a payload"
		}
	case frameError:
		if h.id == 0 || h.arg>>32 != 0 {
			bad = "call id 0 or code over 32 bits"
		}
	case frameFail:
		if h.id == 0 || h.arg < failBusy || h.arg > failTooLarge || h.size != 0 {
			bad = "call id 0, unknown reason or a payload"
		}
	case framePing, framePong:
		if h.arg != 0 || h.size != 0 {
			bad = "arg or payload not empty"
		}
	}
	if bad != "" {
		return frameHeader{}, fmt.Errorf("malformed %v: %s", h, bad)
	}
	return h, nil
}

// readFrame reads one frame from r into a fresh payload buffer: the
// header is checked, size included, before the payload is allocated, and
// the payload's checksum after it is read. hb is scratch space.
func readFrame(r io.Reader, hb *[frameHeaderSize]byte, maxFrame uint32) (frameHeader, []byte, error) {
	if _, err := io.ReadFull(r, hb[:]); err != nil {
		return frameHeader{}, nil, err
	}
	h, err := decodeHeader(hb[:], maxFrame)
	if err != nil {
		return frameHeader{}, nil, protoError(err)
	}
	if h.size == 0 {
		return h, nil, nil
	}
	p := make([]byte, h.size)
	if _, err := io.ReadFull(r, p); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return frameHeader{}, nil, err
	}
	if crc(p) != h.sum {
		return frameHeader{}, nil, protoError(fmt.Errorf("%v: payload checksum mismatch", h))
	}
	return h, p, nil
}

// decodeFrame decodes the first frame of b; the payload aliases b.
func decodeFrame(b []byte, maxFrame uint32) (h frameHeader, payload, rest []byte, err error) {
	h, err = decodeHeader(b, maxFrame)
	if err != nil {
		return frameHeader{}, nil, nil, err
	}
	end := frameHeaderSize + int(h.size)
	if len(b) < end {
		return frameHeader{}, nil, nil, fmt.Errorf("%v: %d payload bytes present", h, len(b)-frameHeaderSize)
	}
	payload = b[frameHeaderSize:end]
	if crc(payload) != h.sum {
		return frameHeader{}, nil, nil, fmt.Errorf("%v: payload checksum mismatch", h)
	}
	return h, payload, b[end:], nil
}

// protoError marks err as a violation of the wire format.
func protoError(err error) error { return fmt.Errorf("%w: %w", ErrProtocol, err) }
