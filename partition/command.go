package partition

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/freqd/freqd"
)

// Op is the kind of a Command.
type Op uint8

// The operations a Command can carry.
const (
	// OpGrant grants Command.Freq, or any free frequency if Command.Any.
	// With a Command.Request it is deduplicated through the request
	// window: see Partition.Apply.
	OpGrant Op = 1
	// OpRelease releases Command.Freq, held by Command.Client.
	OpRelease Op = 2
	// OpNote binds request Command.Request of Command.Client to partition
	// Command.Freq at generation Command.Gen, a compare-and-set against
	// the binding the request window holds: see Partition.Apply.
	OpNote Op = 3
	// OpReleaseClient releases, in one command, the frequencies
	// Command.Client holds in this partition: all of them if Command.TTL
	// is 0, else only its leased ones whose lease TTL is at most
	// Command.TTL. Result.Freq is the number released.
	OpReleaseClient Op = 4
)

// String returns "grant", "release", "note", "release-client", or "op(N)"
// for an unknown op.
func (o Op) String() string {
	switch o {
	case OpGrant:
		return "grant"
	case OpRelease:
		return "release"
	case OpNote:
		return "note"
	case OpReleaseClient:
		return "release-client"
	default:
		return "op(" + strconv.Itoa(int(o)) + ")"
	}
}

func (o Op) valid() bool { return o >= OpGrant && o <= OpReleaseClient }

// The bounds of a lease TTL (Command.TTL). A TTL is 0 (no lease) or a
// whole number of milliseconds in MinTTL..MaxTTL.
const (
	// MinTTL is the shortest lease TTL.
	MinTTL = time.Second
	// MaxTTL is the longest lease TTL.
	MaxTTL = 24 * time.Hour
)

// ttlMS returns a valid TTL in milliseconds, as stored and encoded.
func ttlMS(d time.Duration) uint32 { return uint32(d / time.Millisecond) }

// checkTTL checks that d is 0 or a whole number of milliseconds in
// MinTTL..MaxTTL.
func checkTTL(d time.Duration) error {
	if d != 0 && (d < MinTTL || d > MaxTTL || d%time.Millisecond != 0) {
		return fmt.Errorf("ttl %v is neither 0 nor a whole number of milliseconds in %v..%v", d, MinTTL, MaxTTL)
	}
	return nil
}

// validTTLMS reports whether ms is a valid TTL in milliseconds: 0 or in
// MinTTL..MaxTTL.
func validTTLMS(ms uint64) bool {
	return ms == 0 || (ms >= uint64(MinTTL/time.Millisecond) && ms <= uint64(MaxTTL/time.Millisecond))
}

// Command is one change to a partition. The caller validates Client with
// freqd.ValidateClientID and Request with freqd.ValidateRequestID, and
// stamps At, before Apply; Apply itself only rejects an empty or oversized
// Client and an oversized Request (or an empty one on OpNote, or a
// non-empty one on OpReleaseClient), and fields on ops that do not take
// them (see AppendBinary).
type Command struct {
	Op      Op
	Client  string // the client id
	Request string // the client's request id; optional for OpGrant (ignored by OpRelease), required for OpNote, empty for OpReleaseClient
	Freq    uint32 // the frequency, for OpGrant without Any and for OpRelease; the target partition id for OpNote; 0 for OpReleaseClient
	Any     bool   // OpGrant only: grant any free frequency, ignoring Freq
	At      int64  // unix nanoseconds; recorded as the grant time ("since")
	// Since, on OpRelease only, names the grant to end by its grant time:
	// when non-zero, a frequency held by the client under another grant is
	// not released (freqd.ErrNotHeld). It makes a delayed copy of a release
	// harmless to a later grant of the same frequency.
	Since int64
	// TTL is 0 or a whole number of milliseconds in MinTTL..MaxTTL, and 0
	// on other ops than these two. On OpGrant it is the lease TTL of the
	// grant (0: no lease), stored with the frequency (Partition.TTL); an
	// idempotent re-grant or a retry answered from the request window
	// keeps the TTL of the original grant. On OpReleaseClient, 0 releases
	// all of the client's frequencies, and a TTL releases only its leased
	// ones (TTL > 0) with a TTL of at most that: the primary, having
	// measured that much time since the client's last renewal, expires
	// them. A primary that measured more than MaxTTL passes MaxTTL.
	TTL time.Duration
	// Gen is the binding generation. On OpNote it is required (at least
	// 1): the generation of the binding to record. On OpGrant with a
	// Request, a non-zero Gen makes the grant a bound attempt, made in the
	// partition that the request's binding of that generation names; 0 is
	// a home attempt or a plain (e.g. specific-frequency) grant. Other ops
	// take 0. A partition remembers the generation it refused, so a late
	// copy of an attempt never grants once its partition said no: see
	// Partition.Apply.
	Gen uint32
	// Home, on OpGrant with Any, a Request and Gen 0 only, marks the
	// attempt in the request's home partition: if the home holds a binding
	// of the request, the attempt grants nothing and returns the binding
	// (Result.Noted), so a late copy of it cannot grant a second frequency.
	Home bool
}

// String returns a short form for logs, e.g. `grant any to "c1" at 17`,
// `grant any to "c1" at 17 ttl 30s request "r9" home`,
// `grant any to "c1" at 17 request "r9" gen 2`,
// `note request "r9" of "c1" in partition 4 gen 2` or
// `release leases of "c1" with ttl up to 30s at 17`.
func (c Command) String() string {
	var s string
	switch {
	case c.Op == OpGrant && c.Any:
		s = fmt.Sprintf("grant any to %q at %d", c.Client, c.At)
	case c.Op == OpGrant:
		s = fmt.Sprintf("grant %d to %q at %d", c.Freq, c.Client, c.At)
	case c.Op == OpNote:
		return fmt.Sprintf("note request %q of %q in partition %d gen %d", c.Request, c.Client, c.Freq, c.Gen)
	case c.Op == OpReleaseClient && c.TTL == 0:
		s = fmt.Sprintf("release all of %q at %d", c.Client, c.At)
	case c.Op == OpReleaseClient:
		s = fmt.Sprintf("release leases of %q with ttl up to %v at %d", c.Client, c.TTL, c.At)
	default:
		s = fmt.Sprintf("%v %d by %q at %d", c.Op, c.Freq, c.Client, c.At)
		if c.Since != 0 {
			s += fmt.Sprintf(" of the grant at %d", c.Since)
		}
	}
	if c.Op != OpReleaseClient && c.TTL != 0 {
		s += fmt.Sprintf(" ttl %v", c.TTL)
	}
	if c.Request != "" {
		s += fmt.Sprintf(" request %q", c.Request)
	}
	if c.Home {
		s += " home"
	}
	if c.Gen != 0 {
		s += fmt.Sprintf(" gen %d", c.Gen)
	}
	return s
}

// commandVersion is the first byte of an encoded Command. Version 1 had no
// request id, version 2 no release Since, version 3 no TTL, version 4
// (commandVersionV4, still read) no Gen nor Home.
const (
	commandVersion   = 5
	commandVersionV4 = 4
)

// The bits of the flags byte.
const (
	flagAny  = 1 << 0
	flagHome = 1 << 1 // version 5 on
)

// AppendBinary appends the encoding of c to b: version byte (5), op byte,
// flags byte (bit 0: Any, bit 1: Home), uvarint Freq, varint At, uvarint
// TTL in milliseconds, uvarint len(Client) and the client bytes, uvarint
// len(Request) and the request bytes, varint Since, uvarint Gen. It fails,
// wrapping freqd.ErrInvalidArgument, for an unknown op, Any on other than
// a grant, a note without a request or generation, Since on other than a
// release, a TTL that is invalid or on other than a grant or client
// release, a release-client with a request or frequency, Gen on other
// than a note or a grant with a request, Home on other than a grant of
// any frequency with a request and no Gen, a client longer than
// freqd.MaxClientIDLen or a request longer than freqd.MaxRequestIDLen.
func (c Command) AppendBinary(b []byte) ([]byte, error) {
	if err := c.checkShape(); err != nil {
		return b, fmt.Errorf("encode command: %w: %w", err, freqd.ErrInvalidArgument)
	}
	if len(c.Client) > freqd.MaxClientIDLen {
		return b, fmt.Errorf("encode command: client id is %d bytes, longer than %d: %w", len(c.Client), freqd.MaxClientIDLen, freqd.ErrInvalidArgument)
	}
	if len(c.Request) > freqd.MaxRequestIDLen {
		return b, fmt.Errorf("encode command: request id is %d bytes, longer than %d: %w", len(c.Request), freqd.MaxRequestIDLen, freqd.ErrInvalidArgument)
	}
	var flags byte
	if c.Any {
		flags |= flagAny
	}
	if c.Home {
		flags |= flagHome
	}
	b = append(b, commandVersion, byte(c.Op), flags)
	b = binary.AppendUvarint(b, uint64(c.Freq))
	b = binary.AppendVarint(b, c.At)
	b = binary.AppendUvarint(b, uint64(ttlMS(c.TTL)))
	b = binary.AppendUvarint(b, uint64(len(c.Client)))
	b = append(b, c.Client...)
	b = binary.AppendUvarint(b, uint64(len(c.Request)))
	b = append(b, c.Request...)
	b = binary.AppendVarint(b, c.Since)
	b = binary.AppendUvarint(b, uint64(c.Gen))
	return b, nil
}

// checkShape checks the op and the fields that only some ops allow; the
// encoder and decoder share it.
func (c *Command) checkShape() error {
	switch {
	case !c.Op.valid():
		return fmt.Errorf("unknown %v", c.Op)
	case c.Any && c.Op != OpGrant:
		return fmt.Errorf("any is only for grant, not %v", c.Op)
	case c.Op == OpNote && c.Request == "":
		return errors.New("note without a request id")
	case c.Since != 0 && c.Op != OpRelease:
		return fmt.Errorf("since is only for release, not %v", c.Op)
	case c.TTL != 0 && c.Op != OpGrant && c.Op != OpReleaseClient:
		return fmt.Errorf("ttl is only for grant and release-client, not %v", c.Op)
	case c.Op == OpReleaseClient && c.Request != "":
		return errors.New("release-client with a request id")
	case c.Op == OpReleaseClient && c.Freq != 0:
		return fmt.Errorf("release-client with frequency %d", c.Freq)
	case c.Op == OpNote && c.Gen == 0:
		return errors.New("note without a generation")
	case c.Gen != 0 && c.Op != OpNote && c.Op != OpGrant:
		return fmt.Errorf("gen is only for note and grant, not %v", c.Op)
	case c.Gen != 0 && c.Op == OpGrant && c.Request == "":
		return errors.New("gen on a grant without a request id")
	case c.Home && (c.Op != OpGrant || !c.Any || c.Request == "" || c.Gen != 0):
		// Only an allocate-any attempt has a home; a bound attempt is not
		// in it. (Formatting c itself would make every Command escape.)
		return fmt.Errorf("home is only for a grant of any frequency with a request id and no gen, not %v (any %v, gen %d)", c.Op, c.Any, c.Gen)
	case c.TTL != 0:
		return checkTTL(c.TTL)
	}
	return nil
}

// MarshalBinary returns the encoding of c; see AppendBinary.
func (c Command) MarshalBinary() ([]byte, error) {
	return c.AppendBinary(make([]byte, 0, 3+5+10+4+2+len(c.Client)+1+len(c.Request)+10+5))
}

// UnmarshalBinary decodes exactly one Command from b, as written by
// AppendBinary, or in version 4: no Gen and no Home flag, so Gen 0 and
// Home false, except that a note is generation 1 (a version 4 note was
// the request's only binding, the first). It is strict: an unknown
// version, op or flag (the Home flag in version 4), any field combination
// AppendBinary refuses, a frequency or Gen above MaxUint32, a TTL outside
// MinTTL..MaxTTL (other than 0), a non-minimal varint, a client id longer
// than freqd.MaxClientIDLen, a request id longer than
// freqd.MaxRequestIDLen, a short buffer or trailing bytes are errors
// wrapping freqd.ErrInvalidArgument. On error c is unchanged.
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
	if b[0] != commandVersion && b[0] != commandVersionV4 {
		return Command{}, fmt.Errorf("unknown version %d", b[0])
	}
	v5 := b[0] == commandVersion
	c := Command{Op: Op(b[1])}
	if !c.Op.valid() {
		return Command{}, fmt.Errorf("unknown %v", c.Op)
	}
	flags, known := b[2], byte(flagAny)
	if v5 {
		known |= flagHome
	}
	if flags&^known != 0 {
		return Command{}, fmt.Errorf("unknown flags %#x", flags)
	}
	c.Any = flags&flagAny != 0
	c.Home = flags&flagHome != 0
	r := reader{b: b[3:]}
	freq := r.uvarint("freq")
	c.At = r.varint("at")
	ttl := r.uvarint("ttl")
	n := r.uvarint("client length")
	if r.err != nil {
		return Command{}, r.err
	}
	if freq > math.MaxUint32 {
		return Command{}, fmt.Errorf("freq %d is more than %d", freq, uint32(math.MaxUint32))
	}
	c.Freq = uint32(freq)
	if !validTTLMS(ttl) {
		return Command{}, fmt.Errorf("ttl %d ms is neither 0 nor in %v..%v", ttl, MinTTL, MaxTTL)
	}
	c.TTL = time.Duration(ttl) * time.Millisecond
	if n > freqd.MaxClientIDLen {
		return Command{}, fmt.Errorf("client id is %d bytes, longer than %d", n, freqd.MaxClientIDLen)
	}
	c.Client = string(r.bytes(int(n), "client id"))
	n = r.uvarint("request length")
	if r.err != nil {
		return Command{}, r.err
	}
	if n > freqd.MaxRequestIDLen {
		return Command{}, fmt.Errorf("request id is %d bytes, longer than %d", n, freqd.MaxRequestIDLen)
	}
	c.Request = string(r.bytes(int(n), "request id"))
	c.Since = r.varint("since")
	var gen uint64
	switch {
	case v5:
		gen = r.uvarint("gen")
	case c.Op == OpNote:
		gen = 1 // a version 4 note was a request's only binding
	}
	if r.err != nil {
		return Command{}, r.err
	}
	if gen > math.MaxUint32 {
		return Command{}, fmt.Errorf("gen %d is more than %d", gen, uint32(math.MaxUint32))
	}
	c.Gen = uint32(gen)
	if len(r.b) != 0 {
		return Command{}, fmt.Errorf("%d trailing bytes", len(r.b))
	}
	if err := c.checkShape(); err != nil {
		return Command{}, err
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
