package partition

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"slices"

	"github.com/freqd/freqd"
)

// snapshotVersion is the first byte of a snapshot Snapshot writes.
// Version 1 had no request window and was never persisted, and is not
// read; version 2 has no TTLs and is read as holding no leases; versions
// 2 and 3 have no refused records nor note generations, and a note there
// (time 0) is read as generation 1, the request's first binding.
const (
	snapshotVersion   = 4
	snapshotVersionV3 = 3
	snapshotVersionV2 = 2
)

// minRecordBytes is the fewest bytes one window record takes in a
// snapshot: 8 key, 1 kind, 1 value, 1 since.
const minRecordBytes = 11

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Snapshot returns the full state of p: id, range, version, the free queue
// in order, every client with its frequencies in grant order and their
// grant times and lease TTLs, and the request window oldest first,
// followed by a CRC-32C (format version 4). The bytes depend only on the
// logical state, so replicas in the same state produce identical
// snapshots. The error is always nil today; it is there for the
// encoding.BinaryMarshaler shape.
func (p *Partition) Snapshot() ([]byte, error) {
	b := make([]byte, 0, 32+2*p.free+13*p.Held()+20*p.window.len())
	b = append(b, snapshotVersion)
	b = binary.AppendUvarint(b, uint64(p.id))
	b = binary.AppendUvarint(b, uint64(p.first))
	b = binary.AppendUvarint(b, uint64(p.last))
	b = binary.AppendUvarint(b, p.version)

	b = binary.AppendUvarint(b, uint64(p.free))
	prev := int64(-1)
	for off := p.freeHead; off != none; off = p.next[off] {
		b = binary.AppendVarint(b, int64(off)-prev)
		prev = int64(off)
	}

	slots := make([]uint32, 0, len(p.index))
	for slot := range p.clients {
		if slot != 0 && p.clients[slot].count != 0 {
			slots = append(slots, uint32(slot))
		}
	}
	slices.SortFunc(slots, func(a, c uint32) int { return cmp.Compare(p.clients[a].id, p.clients[c].id) })
	b = binary.AppendUvarint(b, uint64(len(slots)))
	for _, slot := range slots {
		cl := &p.clients[slot]
		b = binary.AppendUvarint(b, uint64(len(cl.id)))
		b = append(b, cl.id...)
		b = binary.AppendUvarint(b, uint64(cl.count))
		prev := int64(-1)
		for off := cl.head; off != none; off = p.next[off] {
			b = binary.AppendVarint(b, int64(off)-prev)
			b = binary.AppendVarint(b, p.since[off])
			b = binary.AppendUvarint(b, uint64(p.ttl[off]))
			prev = int64(off)
		}
	}

	w := &p.window
	b = binary.AppendUvarint(b, uint64(w.len()))
	for slot := w.head; slot != none; slot = w.recs[slot].next {
		r := &w.recs[slot]
		b = binary.LittleEndian.AppendUint64(b, r.key)
		b = append(b, byte(r.kind))
		b = binary.AppendUvarint(b, uint64(r.value))
		b = binary.AppendVarint(b, r.since)
	}
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli)), nil
}

// Restore decodes a Snapshot: format version 4, or version 3 (written
// before bindings had generations) or 2 (before leases as well), read as
// no frequency leased (version 2) and every note of generation 1 (both).
// It is strict: a bad checksum or version, non-minimal varints, a bad
// range, a lease TTL that is neither 0 nor in MinTTL..MaxTTL, a frequency
// outside the range or missing or present twice, an empty, oversized,
// unsorted or duplicate client id, a client holding nothing, a version
// below the number held or the number of request records, more than
// DedupWindow request records, a duplicate request key, an unknown record
// kind (a refused record before version 4), a grant record outside the
// range, a note record of generation 0 or above MaxUint32 (before version
// 4, one with a time), a refused record of generation 0 or with a time,
// or trailing bytes are errors wrapping freqd.ErrInvalidArgument. Memory
// allocated is bounded by a small multiple of len(b).
func Restore(b []byte) (*Partition, error) {
	p, err := restore(b)
	if err != nil {
		return nil, fmt.Errorf("restore partition snapshot: %w: %w", err, freqd.ErrInvalidArgument)
	}
	return p, nil
}

func restore(b []byte) (*Partition, error) {
	if len(b) < 5 {
		return nil, fmt.Errorf("%d bytes, too short", len(b))
	}
	body, sum := b[:len(b)-4], binary.LittleEndian.Uint32(b[len(b)-4:])
	if got := crc32.Checksum(body, castagnoli); got != sum {
		return nil, fmt.Errorf("checksum %08x, want %08x", got, sum)
	}
	if body[0] < snapshotVersionV2 || body[0] > snapshotVersion {
		return nil, fmt.Errorf("unknown version %d", body[0])
	}
	withTTL := body[0] >= snapshotVersionV3
	r := reader{b: body[1:]}
	id := r.uvarint("id")
	first := r.uvarint("first")
	last := r.uvarint("last")
	version := r.uvarint("version")
	nfree := r.uvarint("free count")
	if r.err != nil {
		return nil, r.err
	}
	switch {
	case id > math.MaxInt:
		return nil, fmt.Errorf("id %d too large", id)
	case first > math.MaxUint32 || last > math.MaxUint32 || last < first:
		return nil, fmt.Errorf("bad range %d-%d", first, last)
	case last-first+1 > MaxSize:
		return nil, fmt.Errorf("range %d-%d holds more than %d frequencies", first, last, MaxSize)
	}
	size := last - first + 1
	// Every frequency takes at least one byte, so a size beyond the input
	// is corrupt; checking first bounds the allocation below.
	if size > uint64(len(r.b)) || nfree > size {
		return nil, fmt.Errorf("range %d-%d (%d frequencies, %d free) does not fit in %d bytes", first, last, size, nfree, len(r.b))
	}
	p := alloc(int(id), uint32(first), uint32(last))
	seen := make([]bool, size)
	take := func(prev *int64, what string) (uint32, error) {
		d := r.varint(what)
		if r.err != nil {
			return 0, r.err
		}
		v := *prev + d
		if d < -int64(size) || d > int64(size) || v < 0 || uint64(v) >= size {
			return 0, fmt.Errorf("%s: offset out of range", what)
		}
		if seen[v] {
			return 0, fmt.Errorf("%s: frequency %d appears twice", what, first+uint64(v))
		}
		seen[v] = true
		*prev = v
		return uint32(v), nil
	}

	prev := int64(-1)
	for range nfree {
		off, err := take(&prev, "free queue")
		if err != nil {
			return nil, err
		}
		p.pushFree(off)
	}

	nclients := r.uvarint("client count")
	if r.err != nil {
		return nil, r.err
	}
	if held := size - nfree; nclients > held {
		return nil, fmt.Errorf("%d clients for %d held frequencies", nclients, held)
	}
	if version < size-nfree {
		return nil, fmt.Errorf("version %d is below the %d held frequencies", version, size-nfree)
	}
	p.version = version
	var lastID string
	held := uint64(0)
	for i := range nclients {
		n := r.uvarint("client id length")
		if r.err == nil && (n == 0 || n > freqd.MaxClientIDLen) {
			return nil, fmt.Errorf("client %d: id length %d not in 1..%d", i, n, freqd.MaxClientIDLen)
		}
		idb := r.bytes(int(n), "client id")
		count := r.uvarint("client held count")
		if r.err != nil {
			return nil, r.err
		}
		cid := string(idb)
		if i > 0 && cid <= lastID {
			return nil, fmt.Errorf("client %q after %q: clients not sorted or duplicate", cid, lastID)
		}
		lastID = cid
		if count == 0 || count > size-nfree-held {
			return nil, fmt.Errorf("client %q: held count %d is wrong", cid, count)
		}
		held += count
		slot := p.intern(cid)
		prev := int64(-1)
		for range count {
			off, err := take(&prev, "held frequency")
			if err != nil {
				return nil, err
			}
			since := r.varint("grant time")
			var ttl uint64
			if withTTL {
				ttl = r.uvarint("lease ttl")
			}
			if r.err != nil {
				return nil, r.err
			}
			if !validTTLMS(ttl) {
				return nil, fmt.Errorf("frequency %d: lease ttl %d ms is neither 0 nor in %v..%v", first+uint64(off), ttl, MinTTL, MaxTTL)
			}
			p.linkHeld(off, slot, since, uint32(ttl))
		}
	}
	if held != size-nfree {
		return nil, fmt.Errorf("%d frequencies neither free nor held", size-nfree-held)
	}
	if err := p.restoreWindow(&r, body[0]); err != nil {
		return nil, err
	}
	if len(r.b) != 0 {
		return nil, fmt.Errorf("%d trailing bytes", len(r.b))
	}
	if err := p.check(); err != nil {
		return nil, err
	}
	return p, nil
}

// restoreWindow decodes the request window of a snapshot of the given
// format version into p, which has its range.
func (p *Partition) restoreWindow(r *reader, version byte) error {
	n := r.uvarint("request count")
	if r.err != nil {
		return r.err
	}
	if n > DedupWindow || n*minRecordBytes > uint64(len(r.b)) {
		return fmt.Errorf("%d request records: more than %d or does not fit in %d bytes", n, DedupWindow, len(r.b))
	}
	if n > p.version {
		return fmt.Errorf("version %d is below the %d request records", p.version, n)
	}
	for i := range n {
		kb := r.bytes(8, "request key")
		kind := r.bytes(1, "request kind")
		value := r.uvarint("request value")
		since := r.varint("request time")
		if r.err != nil {
			return r.err
		}
		key := binary.LittleEndian.Uint64(kb)
		if _, dup := p.window.lookup(key); dup {
			return fmt.Errorf("request record %d: key %016x appears twice", i, key)
		}
		if value > math.MaxUint32 {
			return fmt.Errorf("request record %d: value %d is more than %d", i, value, uint32(math.MaxUint32))
		}
		k := RecordKind(kind[0])
		if version < snapshotVersion {
			// Before generations: no refusals, and a note, which had no
			// time, was the request's one binding.
			switch {
			case k == RecordRefused:
				return fmt.Errorf("request record %d: unknown record %v in a version %d snapshot", i, k, version)
			case k == RecordNote && since != 0:
				return fmt.Errorf("request record %d: note record with time %d", i, since)
			case k == RecordNote:
				since = 1
			}
		}
		if err := p.checkRecord(k, uint32(value), since); err != nil {
			return fmt.Errorf("request record %d: %w", i, err)
		}
		p.window.put(key, k, uint32(value), since)
	}
	return nil
}

// check verifies every invariant of p in O(size): each frequency is in
// exactly one list (the free queue or its holder's), links are consistent,
// counts match, free frequencies have no grant time nor TTL, every TTL is
// valid, the client index matches the slots, version covers the held and
// request record counts, and the request window is consistent.
func (p *Partition) check() error {
	n := uint32(len(p.holder))
	if n == 0 || uint64(n) != uint64(p.last)-uint64(p.first)+1 {
		return fmt.Errorf("arrays hold %d, range %d-%d", n, p.first, p.last)
	}
	visited := make([]bool, n)
	walk := func(head, tail uint32, slot uint32, want int) error {
		count := 0
		prev := none
		for off := head; off != none; off = p.next[off] {
			if off >= n {
				return fmt.Errorf("list of slot %d: offset %d out of range", slot, off)
			}
			if visited[off] {
				return fmt.Errorf("offset %d in two lists or a cycle", off)
			}
			visited[off] = true
			if p.prev[off] != prev {
				return fmt.Errorf("offset %d: prev %d, want %d", off, p.prev[off], prev)
			}
			if p.holder[off] != slot {
				return fmt.Errorf("offset %d: holder %d, in list of slot %d", off, p.holder[off], slot)
			}
			if slot == 0 && (p.since[off] != 0 || p.ttl[off] != 0) {
				return fmt.Errorf("free offset %d has grant time %d or ttl %d", off, p.since[off], p.ttl[off])
			}
			if !validTTLMS(uint64(p.ttl[off])) {
				return fmt.Errorf("offset %d: ttl %d ms out of range", off, p.ttl[off])
			}
			prev = off
			count++
		}
		if prev != tail {
			return fmt.Errorf("list of slot %d: tail %d, want %d", slot, tail, prev)
		}
		if count != want {
			return fmt.Errorf("list of slot %d: %d entries, count %d", slot, count, want)
		}
		return nil
	}
	if err := walk(p.freeHead, p.freeTail, 0, p.free); err != nil {
		return err
	}
	live := 0
	free := map[uint32]bool{}
	for _, s := range p.freeSlots {
		if s == 0 || int(s) >= len(p.clients) || free[s] {
			return fmt.Errorf("bad free slot %d", s)
		}
		free[s] = true
	}
	for slot := 1; slot < len(p.clients); slot++ {
		cl := p.clients[slot]
		if cl.count == 0 {
			if !free[uint32(slot)] || cl.id != "" {
				return fmt.Errorf("empty slot %d (%q) not on the free slot list", slot, cl.id)
			}
			continue
		}
		if free[uint32(slot)] {
			return fmt.Errorf("slot %d in use and free", slot)
		}
		if got, ok := p.index[cl.id]; !ok || got != uint32(slot) {
			return fmt.Errorf("client %q at slot %d indexed at %d", cl.id, slot, got)
		}
		live++
		if err := walk(cl.head, cl.tail, uint32(slot), int(cl.count)); err != nil {
			return err
		}
	}
	if live != len(p.index) {
		return fmt.Errorf("%d live clients, index has %d", live, len(p.index))
	}
	for off, v := range visited {
		if !v {
			return fmt.Errorf("frequency %d in no list", p.first+uint32(off))
		}
	}
	if p.version < uint64(p.Held()) || p.version < uint64(p.window.len()) {
		return errors.New("version below the held count or the request record count")
	}
	return p.window.check(p)
}
