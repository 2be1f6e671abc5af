package partition

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/freqd/freqd"
)

// Op is the kind of a Command.
type Op uint8

// The operations a Command can carry.
const (
	// OpGrant grants Command.Freq, or any free frequency if Command.Any.
	OpGrant Op = 1
	// OpRelease releases Command.Freq, held by Command.Client.
	OpRelease Op = 2
)

// String returns "grant", "release", or "op(N)" for an unknown op.
func (o Op) String() string {
	switch o {
	case OpGrant:
		return "grant"
	case OpRelease:
		return "release"
	default:
		return "op(" + strconv.Itoa(int(o)) + ")"
	}
}

func (o Op) valid() bool { return o == OpGrant || o == OpRelease }

// Command is one change to a partition. The caller validates Client with
// freqd.ValidateClientID and stamps At before Apply; Apply itself only
// rejects an empty or oversized Client.
type Command struct {
	Op     Op
	Client string // the client id
	Freq   uint32 // the frequency, for OpGrant without Any and for OpRelease
	Any    bool   // OpGrant only: grant any free frequency, ignoring Freq
	At     int64  // unix nanoseconds; recorded as the grant time ("since")
}

// String returns a short form for logs, e.g. `grant any to "c1" at 17`.
func (c Command) String() string {
	switch {
	case c.Op == OpGrant && c.Any:
		return fmt.Sprintf("grant any to %q at %d", c.Client, c.At)
	case c.Op == OpGrant:
		return fmt.Sprintf("grant %d to %q at %d", c.Freq, c.Client, c.At)
	default:
		return fmt.Sprintf("%v %d by %q at %d", c.Op, c.Freq, c.Client, c.At)
	}
}

// commandVersion is the first byte of an encoded Command.
const commandVersion = 1

const flagAny = 1 << 0

// AppendBinary appends the encoding of c to b: version byte, op byte, flags
// byte (bit 0: Any), uvarint Freq, varint At, uvarint len(Client) and the
// client bytes. It fails, wrapping freqd.ErrInvalidArgument, for an unknown
// op, Any on a release, or a client longer than freqd.MaxClientIDLen.
func (c Command) AppendBinary(b []byte) ([]byte, error) {
	if !c.Op.valid() {
		return b, fmt.Errorf("encode command: unknown %v: %w", c.Op, freqd.ErrInvalidArgument)
	}
	if c.Any && c.Op != OpGrant {
		return b, fmt.Errorf("encode command: any is only for grant, not %v: %w", c.Op, freqd.ErrInvalidArgument)
	}
	if len(c.Client) > freqd.MaxClientIDLen {
		return b, fmt.Errorf("encode command: client id is %d bytes, longer than %d: %w", len(c.Client), freqd.MaxClientIDLen, freqd.ErrInvalidArgument)
	}
	var flags byte
	if c.Any {
		flags |= flagAny
	}
	b = append(b, commandVersion, byte(c.Op), flags)
	b = binary.AppendUvarint(b, uint64(c.Freq))
	b = binary.AppendVarint(b, c.At)
	b = binary.AppendUvarint(b, uint64(len(c.Client)))
	b = append(b, c.Client...)
	return b, nil
}

// MarshalBinary returns the encoding of c; see AppendBinary.
func (c Command) MarshalBinary() ([]byte, error) {
	return c.AppendBinary(make([]byte, 0, 3+5+10+2+len(c.Client)))
}

// UnmarshalBinary decodes exactly one Command from b, as written by
// AppendBinary. It is strict: an unknown version, op or flag, Any on a
// release, a frequency above MaxUint32, a non-minimal varint, a client id
// longer than freqd.MaxClientIDLen, a short buffer or trailing bytes are
// errors wrapping freqd.ErrInvalidArgument. On error c is unchanged.
func (c *Command) UnmarshalBinary(b []byte) error {
	d, err := decodeCommand(b)
	if err != nil {
		return fmt.Errorf("decode command: %w: %w", err, freqd.ErrInvalidArgument)
	}
	*c = d
	return nil
}

func decodeCommand(b []byte) (Command, error) {
	if len(b) < 3 {
		return Command{}, fmt.Errorf("%d bytes, too short", len(b))
	}
	if b[0] != commandVersion {
		return Command{}, fmt.Errorf("unknown version %d", b[0])
	}
	c := Command{Op: Op(b[1])}
	if !c.Op.valid() {
		return Command{}, fmt.Errorf("unknown %v", c.Op)
	}
	flags := b[2]
	if flags&^flagAny != 0 {
		return Command{}, fmt.Errorf("unknown flags %#x", flags)
	}
	c.Any = flags&flagAny != 0
	if c.Any && c.Op != OpGrant {
		return Command{}, fmt.Errorf("any is only for grant, not %v", c.Op)
	}
	r := reader{b: b[3:]}
	freq := r.uvarint("freq")
	c.At = r.varint("at")
	n := r.uvarint("client length")
	if r.err != nil {
		return Command{}, r.err
	}
	if freq > math.MaxUint32 {
		return Command{}, fmt.Errorf("freq %d is more than %d", freq, uint32(math.MaxUint32))
	}
	c.Freq = uint32(freq)
	if n > freqd.MaxClientIDLen {
		return Command{}, fmt.Errorf("client id is %d bytes, longer than %d", n, freqd.MaxClientIDLen)
	}
	c.Client = string(r.bytes(int(n), "client id"))
	if r.err != nil {
		return Command{}, r.err
	}
	if len(r.b) != 0 {
		return Command{}, fmt.Errorf("%d trailing bytes", len(r.b))
	}
	return c, nil
}

// reader decodes strict (minimal) varints from b; the first error sticks.
type reader struct {
	b   []byte
	err error
}

var errShort = errors.New("unexpected end of data")

func (r *reader) uvarint(what string) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	switch {
	case n == 0:
		r.err = fmt.Errorf("%s: %w", what, errShort)
		return 0
	case n < 0:
		r.err = fmt.Errorf("%s: varint overflows 64 bits", what)
		return 0
	case n > 1 && r.b[n-1] == 0:
		r.err = fmt.Errorf("%s: non-minimal varint", what)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint(what string) int64 {
	u := r.uvarint(what)
	return int64(u>>1) ^ -int64(u&1) // zig-zag, as binary.Varint
}

func (r *reader) bytes(n int, what string) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b) {
		r.err = fmt.Errorf("%s: %w", what, errShort)
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}
