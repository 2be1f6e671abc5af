package multiraft

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/freqd/freqd"
	pb "go.etcd.io/raft/v3/raftpb"
)

// Wire and disk encodings. Integers are uvarints unless noted; every
// decoder is strict (minimal lengths within the input, no trailing bytes)
// and bounded, since its input comes from the network or the disk. The
// transport and the store checksum their frames, so these carry none.

const (
	batchVersion  = 1
	recordVersion = 1
	ckptVersion   = 1

	// maxBatchMessages bounds the messages of one batch, so a forged count
	// cannot make the decoder allocate much.
	maxBatchMessages = 1 << 16
	// maxEntriesPerRecord bounds the entries of one disk record or
	// checkpoint.
	maxEntriesPerRecord = 1 << 20
)

// record flags.
const (
	recHardState = 1 << 0
	recSnapshot  = 1 << 1
	// recRemoved marks the replica removed from its group: its state is
	// gone and it must not be recreated with the same id.
	recRemoved = 1 << 2
)

// errCodec wraps every decoding error.
var errCodec = errors.New("multiraft: malformed encoding")

func codecErr(what string, args ...any) error {
	return fmt.Errorf("%w: %s: %w", errCodec, fmt.Sprintf(what, args...), freqd.ErrInvalidArgument)
}

// GroupMessage is one raft message for one group.
type GroupMessage struct {
	Group int
	Msg   pb.Message
}

// EncodeBatch appends the wire encoding of msgs to dst: version byte, the
// message count, then per message its group and the length-prefixed
// raftpb.Message. The driver sends one batch per destination per round.
func EncodeBatch(dst []byte, msgs []GroupMessage) []byte {
	dst = append(dst, batchVersion)
	dst = binary.AppendUvarint(dst, uint64(len(msgs)))
	for i := range msgs {
		m := &msgs[i].Msg
		dst = binary.AppendUvarint(dst, uint64(msgs[i].Group))
		n := m.Size()
		dst = binary.AppendUvarint(dst, uint64(n))
		dst = grow(dst, n)
		if _, err := m.MarshalToSizedBuffer(dst[len(dst)-n:]); err != nil {
			// Marshal of a well-formed message cannot fail; a failure is a bug.
			panic(fmt.Sprintf("multiraft: marshal raft message: %v", err))
		}
	}
	return dst
}

// DecodeBatch decodes a batch made by EncodeBatch. Groups are checked
// against groups (0 <= group < groups).
func DecodeBatch(b []byte, groups int) ([]GroupMessage, error) {
	d := decoder{b: b}
	if v := d.byte(); d.err == nil && v != batchVersion {
		return nil, codecErr("batch version %d, want %d", v, batchVersion)
	}
	n := d.uvarint()
	if d.err != nil {
		return nil, d.err
	}
	if n > maxBatchMessages || n > uint64(len(d.b)) {
		return nil, codecErr("batch of %d messages in %d bytes", n, len(b))
	}
	out := make([]GroupMessage, n)
	for i := range out {
		g := d.uvarint()
		body := d.bytes()
		if d.err != nil {
			return nil, d.err
		}
		if g >= uint64(groups) {
			return nil, codecErr("message for group %d of %d", g, groups)
		}
		out[i].Group = int(g)
		if err := out[i].Msg.Unmarshal(body); err != nil {
			return nil, codecErr("raft message %d: %v", i, err)
		}
	}
	if len(d.b) != 0 {
		return nil, codecErr("%d trailing bytes after batch", len(d.b))
	}
	return out, nil
}

// diskRecord is what one group writes to the log in one round.
type diskRecord struct {
	hardState *pb.HardState // nil: unchanged
	snapshot  *pb.Snapshot  // nil: none
	entries   []pb.Entry
	removed   bool
}

func encodeRecord(dst []byte, r *diskRecord) []byte {
	var flags byte
	if r.hardState != nil {
		flags |= recHardState
	}
	if r.snapshot != nil {
		flags |= recSnapshot
	}
	if r.removed {
		flags |= recRemoved
	}
	dst = append(dst, recordVersion, flags)
	if r.hardState != nil {
		dst = appendMsg(dst, r.hardState)
	}
	if r.snapshot != nil {
		dst = appendMsg(dst, r.snapshot)
	}
	return appendEntries(dst, r.entries)
}

func decodeRecord(b []byte) (*diskRecord, error) {
	d := decoder{b: b}
	if v := d.byte(); d.err == nil && v != recordVersion {
		return nil, codecErr("record version %d, want %d", v, recordVersion)
	}
	flags := d.byte()
	if d.err != nil {
		return nil, d.err
	}
	if flags&^(recHardState|recSnapshot|recRemoved) != 0 {
		return nil, codecErr("record flags %#x", flags)
	}
	r := &diskRecord{removed: flags&recRemoved != 0}
	if flags&recHardState != 0 {
		r.hardState = new(pb.HardState)
		d.msg(r.hardState)
	}
	if flags&recSnapshot != 0 {
		r.snapshot = new(pb.Snapshot)
		d.msg(r.snapshot)
	}
	r.entries = d.entries()
	if d.err != nil {
		return nil, d.err
	}
	if len(d.b) != 0 {
		return nil, codecErr("%d trailing bytes after record", len(d.b))
	}
	return r, nil
}

// checkpoint is a group's whole durable raft state at one moment: its
// snapshot, HardState and the entries after the snapshot. It replaces every
// earlier record of the group.
type checkpoint struct {
	snapshot  pb.Snapshot
	hardState pb.HardState
	entries   []pb.Entry
}

func encodeCheckpoint(dst []byte, c *checkpoint) []byte {
	dst = append(dst, ckptVersion)
	dst = appendMsg(dst, &c.snapshot)
	dst = appendMsg(dst, &c.hardState)
	return appendEntries(dst, c.entries)
}

func decodeCheckpoint(b []byte) (*checkpoint, error) {
	d := decoder{b: b}
	if v := d.byte(); d.err == nil && v != ckptVersion {
		return nil, codecErr("checkpoint version %d, want %d", v, ckptVersion)
	}
	c := new(checkpoint)
	d.msg(&c.snapshot)
	d.msg(&c.hardState)
	c.entries = d.entries()
	if d.err != nil {
		return nil, d.err
	}
	if len(d.b) != 0 {
		return nil, codecErr("%d trailing bytes after checkpoint", len(d.b))
	}
	return c, nil
}

// marshaler is what gogo-generated raftpb types offer.
type marshaler interface {
	Size() int
	MarshalToSizedBuffer([]byte) (int, error)
}

type unmarshaler interface {
	Unmarshal([]byte) error
}

func appendMsg(dst []byte, m marshaler) []byte {
	n := m.Size()
	dst = binary.AppendUvarint(dst, uint64(n))
	dst = grow(dst, n)
	if _, err := m.MarshalToSizedBuffer(dst[len(dst)-n:]); err != nil {
		panic(fmt.Sprintf("multiraft: marshal: %v", err))
	}
	return dst
}

func appendEntries(dst []byte, ents []pb.Entry) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(ents)))
	for i := range ents {
		dst = appendMsg(dst, &ents[i])
	}
	return dst
}

// grow extends b by n bytes (contents undefined).
func grow(b []byte, n int) []byte {
	if cap(b)-len(b) < n {
		nb := make([]byte, len(b), 2*cap(b)+n)
		copy(nb, b)
		b = nb
	}
	return b[:len(b)+n]
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.err = codecErr("truncated")
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = codecErr("bad uvarint")
		return 0
	}
	if n != uvarintLen(v) {
		d.err = codecErr("non-minimal uvarint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.err = codecErr("length %d past the end (%d bytes left)", n, len(d.b))
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) msg(m unmarshaler) {
	body := d.bytes()
	if d.err != nil {
		return
	}
	if err := m.Unmarshal(body); err != nil {
		d.err = codecErr("%T: %v", m, err)
	}
}

func (d *decoder) entries() []pb.Entry {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > maxEntriesPerRecord || n > uint64(len(d.b)) {
		d.err = codecErr("%d entries in %d bytes", n, len(d.b))
		return nil
	}
	out := make([]pb.Entry, n)
	for i := range out {
		d.msg(&out[i])
		if d.err != nil {
			return nil
		}
	}
	return out
}
