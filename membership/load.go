package membership

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"unicode/utf8"

	"github.com/freqd/freqd"
)

// PartitionLoad is what a node reports about one partition it holds.
type PartitionLoad struct {
	// ID is the partition number.
	ID uint32
	// Term is the raft term of the reporting node's leadership of the partition (the newest term wins when two nodes report it).
	Term uint64
	// Free and Held count the partition's free and held frequencies.
	Free, Held uint64
}

// Load is what one node holds: one entry per partition, sorted by ID with
// no duplicate IDs.
type Load struct {
	Partitions []PartitionLoad
}

// Equal reports whether l and o list the same partitions with the same
// figures.
func (l Load) Equal(o Load) bool { return slices.Equal(l.Partitions, o.Partitions) }

// Clone returns a deep copy of l (nil partitions stay nil).
func (l Load) Clone() Load { return Load{Partitions: slices.Clone(l.Partitions)} }

// normalize returns a sorted copy of l with one entry per ID; of entries
// with the same ID the last one given wins.
func (l Load) normalize() Load {
	if len(l.Partitions) == 0 {
		return Load{}
	}
	p := slices.Clone(l.Partitions)
	slices.SortStableFunc(p, func(a, b PartitionLoad) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	out := p[:0]
	for i, e := range p {
		if i+1 < len(p) && p[i+1].ID == e.ID {
			continue // a later entry with the same ID wins
		}
		out = append(out, e)
	}
	return Load{Partitions: out}
}

// Wire formats. Both start with a type byte so a message can never be
// mistaken for the other, and both are decoded strictly (see reader).
//
// A load message is one chunk of one node's Load, small enough to ride in
// a gossip packet (maxLoadChunkBytes):
//
//	byte    loadMsgV1
//	uvarint len(sender), sender (UTF-8, 1..MaxNameLen bytes)
//	uvarint seq (per-sender sequence number; higher is newer)
//	uvarint chunk index, uvarint chunk count (index < count <= maxLoadChunks)
//	uvarint n, then n partitions, IDs strictly increasing:
//	        uvarint id (<= MaxUint32), uvarint term, uvarint free, uvarint held
//
// A receiver applies a node's Load once it holds every chunk of one seq,
// and only if that seq is newer than what it has. The chunks of one seq
// list IDs strictly increasing from chunk to chunk.
//
// The push-pull state is every node's latest complete Load:
//
//	byte    loadStateV1
//	uvarint n, then n entries with names strictly increasing:
//	        uvarint len(name), name, uvarint seq, uvarint count, count partitions
const (
	loadMsgV1   = 0x4c // 'L'
	loadStateV1 = 0x53 // 'S'

	// MaxNameLen is the longest node name accepted, in bytes.
	MaxNameLen = 255
	// maxLoadChunkBytes bounds one load message so it fits a gossip packet
	// (memberlist's default UDPBufferSize is 1400, less headers and the
	// ping it may ride on).
	maxLoadChunkBytes = 1024
	// maxLoadChunks bounds the chunks of one Load (a decoder limit).
	maxLoadChunks = 4096
	// minPartitionBytes is the smallest encoding of one partition.
	minPartitionBytes = 4
	// maxChunkHeaderBytes bounds a load message's header.
	maxChunkHeaderBytes = 1 + 2 + MaxNameLen + 10 + 3 + 3 + 3
)

// loadChunk is one decoded load message.
type loadChunk struct {
	sender     string
	seq        uint64
	index      int
	count      int
	partitions []PartitionLoad
}

func appendPartition(b []byte, p PartitionLoad) []byte {
	b = binary.AppendUvarint(b, uint64(p.ID))
	b = binary.AppendUvarint(b, p.Term)
	b = binary.AppendUvarint(b, p.Free)
	return binary.AppendUvarint(b, p.Held)
}

func partitionLen(p PartitionLoad) int {
	return uvarintLen(uint64(p.ID)) + uvarintLen(p.Term) + uvarintLen(p.Free) + uvarintLen(p.Held)
}

// encodeLoadMessages splits l (normalized) into load messages of at most
// maxLoadChunkBytes each. An empty Load is one message with no partitions.
func encodeLoadMessages(sender string, seq uint64, l Load) ([][]byte, error) {
	if err := validName(sender); err != nil {
		return nil, err
	}
	budget := maxLoadChunkBytes - maxChunkHeaderBytes
	var groups [][]PartitionLoad
	start, used := 0, 0
	for i, p := range l.Partitions {
		n := partitionLen(p)
		if used+n > budget && i > start {
			groups = append(groups, l.Partitions[start:i])
			start, used = i, 0
		}
		used += n
	}
	groups = append(groups, l.Partitions[start:])
	if len(groups) > maxLoadChunks {
		return nil, fmt.Errorf("membership: load of %d partitions needs %d messages, more than %d: %w", len(l.Partitions), len(groups), maxLoadChunks, freqd.ErrInvalidArgument)
	}
	out := make([][]byte, 0, len(groups))
	for i, g := range groups {
		out = append(out, encodeLoadChunk(loadChunk{sender: sender, seq: seq, index: i, count: len(groups), partitions: g}))
	}
	return out, nil
}

// encodeLoadChunk encodes one load message (the inverse of
// decodeLoadMessage for valid input).
func encodeLoadChunk(c loadChunk) []byte {
	b := make([]byte, 0, maxLoadChunkBytes)
	b = append(b, loadMsgV1)
	b = binary.AppendUvarint(b, uint64(len(c.sender)))
	b = append(b, c.sender...)
	b = binary.AppendUvarint(b, c.seq)
	b = binary.AppendUvarint(b, uint64(c.index))
	b = binary.AppendUvarint(b, uint64(c.count))
	b = binary.AppendUvarint(b, uint64(len(c.partitions)))
	for _, p := range c.partitions {
		b = appendPartition(b, p)
	}
	return b
}

// decodeLoadMessage decodes one load message strictly. Its errors wrap
// freqd.ErrInvalidArgument. The result does not alias b.
func decodeLoadMessage(b []byte) (loadChunk, error) {
	r := reader{b: b}
	t, err := r.byte()
	if err != nil {
		return loadChunk{}, fmt.Errorf("membership: load message: %w", err)
	}
	if t != loadMsgV1 {
		return loadChunk{}, fmt.Errorf("membership: load message type %#x is not supported: %w", t, freqd.ErrInvalidArgument)
	}
	name, err := readName(&r)
	if err != nil {
		return loadChunk{}, fmt.Errorf("membership: load message sender: %w", err)
	}
	c := loadChunk{sender: name}
	if c.seq, err = r.uvarint(math.MaxUint64); err != nil {
		return loadChunk{}, fmt.Errorf("membership: load message seq: %w", err)
	}
	idx, err := r.uvarint(maxLoadChunks - 1)
	if err != nil {
		return loadChunk{}, fmt.Errorf("membership: load message chunk index: %w", err)
	}
	cnt, err := r.uvarint(maxLoadChunks)
	if err != nil {
		return loadChunk{}, fmt.Errorf("membership: load message chunk count: %w", err)
	}
	if idx >= cnt {
		return loadChunk{}, fmt.Errorf("membership: load message chunk %d of %d: %w", idx, cnt, freqd.ErrInvalidArgument)
	}
	c.index, c.count = int(idx), int(cnt)
	if c.partitions, err = readPartitions(&r); err != nil {
		return loadChunk{}, fmt.Errorf("membership: load message from %q: %w", name, err)
	}
	if err := r.end(); err != nil {
		return loadChunk{}, fmt.Errorf("membership: load message from %q: %w", name, err)
	}
	return c, nil
}

// loadRecord is one node's complete Load at a seq, as carried in push-pull.
type loadRecord struct {
	name string
	seq  uint64
	load Load
}

// encodeLoadState encodes records, which must be sorted by unique name.
func encodeLoadState(records []loadRecord) []byte {
	b := []byte{loadStateV1}
	b = binary.AppendUvarint(b, uint64(len(records)))
	for _, rec := range records {
		b = binary.AppendUvarint(b, uint64(len(rec.name)))
		b = append(b, rec.name...)
		b = binary.AppendUvarint(b, rec.seq)
		b = binary.AppendUvarint(b, uint64(len(rec.load.Partitions)))
		for _, p := range rec.load.Partitions {
			b = appendPartition(b, p)
		}
	}
	return b
}

// decodeLoadState decodes a push-pull state strictly. Its errors wrap
// freqd.ErrInvalidArgument. The result does not alias b.
func decodeLoadState(b []byte) ([]loadRecord, error) {
	r := reader{b: b}
	t, err := r.byte()
	if err != nil {
		return nil, fmt.Errorf("membership: load state: %w", err)
	}
	if t != loadStateV1 {
		return nil, fmt.Errorf("membership: load state type %#x is not supported: %w", t, freqd.ErrInvalidArgument)
	}
	// Each record takes at least 4 bytes (name length, one name byte, seq, count).
	n, err := r.uvarint(uint64(r.remaining() / 4))
	if err != nil {
		return nil, fmt.Errorf("membership: load state record count: %w", err)
	}
	out := make([]loadRecord, 0, n)
	for i := range int(n) {
		name, err := readName(&r)
		if err != nil {
			return nil, fmt.Errorf("membership: load state record %d name: %w", i, err)
		}
		if i > 0 && name <= out[i-1].name {
			return nil, fmt.Errorf("membership: load state names not strictly increasing at %q: %w", name, freqd.ErrInvalidArgument)
		}
		seq, err := r.uvarint(math.MaxUint64)
		if err != nil {
			return nil, fmt.Errorf("membership: load state %q seq: %w", name, err)
		}
		parts, err := readPartitions(&r)
		if err != nil {
			return nil, fmt.Errorf("membership: load state %q: %w", name, err)
		}
		out = append(out, loadRecord{name: name, seq: seq, load: Load{Partitions: parts}})
	}
	if err := r.end(); err != nil {
		return nil, fmt.Errorf("membership: load state: %w", err)
	}
	return out, nil
}

func readName(r *reader) (string, error) {
	b, err := r.bytes(MaxNameLen)
	if err != nil {
		return "", err
	}
	name := string(b)
	if err := validName(name); err != nil {
		return "", err
	}
	return name, nil
}

func validName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("node name is empty: %w", freqd.ErrInvalidArgument)
	case len(name) > MaxNameLen:
		return fmt.Errorf("node name is %d bytes, longer than %d: %w", len(name), MaxNameLen, freqd.ErrInvalidArgument)
	case !utf8.ValidString(name):
		return fmt.Errorf("node name is not valid UTF-8: %w", freqd.ErrInvalidArgument)
	}
	return nil
}

// readPartitions reads a count and that many partitions with strictly
// increasing IDs. The count is bounded by the bytes left, so a hostile
// count cannot force a large allocation.
func readPartitions(r *reader) ([]PartitionLoad, error) {
	n, err := r.uvarint(uint64(r.remaining() / minPartitionBytes))
	if err != nil {
		return nil, fmt.Errorf("partition count: %w", err)
	}
	if n == 0 {
		return nil, nil
	}
	out := make([]PartitionLoad, 0, n)
	for i := range int(n) {
		id, err := r.uvarint(math.MaxUint32)
		if err != nil {
			return nil, fmt.Errorf("partition %d id: %w", i, err)
		}
		p := PartitionLoad{ID: uint32(id)}
		if i > 0 && p.ID <= out[i-1].ID {
			return nil, fmt.Errorf("partition ids not strictly increasing at %d: %w", p.ID, freqd.ErrInvalidArgument)
		}
		if p.Term, err = r.uvarint(math.MaxUint64); err != nil {
			return nil, fmt.Errorf("partition %d term: %w", p.ID, err)
		}
		if p.Free, err = r.uvarint(math.MaxUint64); err != nil {
			return nil, fmt.Errorf("partition %d free: %w", p.ID, err)
		}
		if p.Held, err = r.uvarint(math.MaxUint64); err != nil {
			return nil, fmt.Errorf("partition %d held: %w", p.ID, err)
		}
		out = append(out, p)
	}
	return out, nil
}
