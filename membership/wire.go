package membership

import (
	"encoding/binary"
	"fmt"

	"github.com/freqd/freqd"
)

// reader decodes the uvarint-based formats of this package strictly: every
// varint must be minimal and in range, lengths must fit what is left, and
// end checks that nothing trails. Its errors wrap freqd.ErrInvalidArgument.
type reader struct {
	b   []byte
	off int
}

func (r *reader) remaining() int { return len(r.b) - r.off }

func (r *reader) uvarint(max uint64) (uint64, error) {
	v, n := binary.Uvarint(r.b[r.off:])
	switch {
	case n == 0:
		return 0, fmt.Errorf("truncated varint at byte %d: %w", r.off, freqd.ErrInvalidArgument)
	case n < 0:
		return 0, fmt.Errorf("varint overflows 64 bits at byte %d: %w", r.off, freqd.ErrInvalidArgument)
	case n != uvarintLen(v):
		return 0, fmt.Errorf("non-minimal varint at byte %d: %w", r.off, freqd.ErrInvalidArgument)
	case v > max:
		return 0, fmt.Errorf("value %d at byte %d exceeds %d: %w", v, r.off, max, freqd.ErrInvalidArgument)
	}
	r.off += n
	return v, nil
}

// bytes reads a uvarint length (at most max) and that many bytes. The
// result aliases the input.
func (r *reader) bytes(max int) ([]byte, error) {
	n, err := r.uvarint(uint64(max))
	if err != nil {
		return nil, err
	}
	if int(n) > r.remaining() {
		return nil, fmt.Errorf("length %d at byte %d exceeds the %d bytes left: %w", n, r.off, r.remaining(), freqd.ErrInvalidArgument)
	}
	out := r.b[r.off : r.off+int(n)]
	r.off += int(n)
	return out, nil
}

func (r *reader) byte() (byte, error) {
	if r.remaining() < 1 {
		return 0, fmt.Errorf("truncated at byte %d: %w", r.off, freqd.ErrInvalidArgument)
	}
	c := r.b[r.off]
	r.off++
	return c, nil
}

func (r *reader) end() error {
	if r.remaining() != 0 {
		return fmt.Errorf("%d trailing bytes: %w", r.remaining(), freqd.ErrInvalidArgument)
	}
	return nil
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}
