package partition

import (
	"fmt"
	"math"
	"strconv"

	"github.com/cespare/xxhash/v2"
)

// DedupWindow is the number of request records a partition keeps: the
// window of retries it can recognise. When it is full, recording a new
// request evicts the oldest record (FIFO), so replicas that apply the same
// commands hold the same window.
const DedupWindow = 8192

// RecordKind is the kind of a request Record.
type RecordKind uint8

// The kinds of request records.
const (
	// RecordGrant: the request was granted Record.Value (a frequency) at
	// Record.Since in this partition.
	RecordGrant RecordKind = 1
	// RecordNote: the request is bound to partition Record.Value at
	// generation Record.Since (at least 1): an OpNote, kept in the
	// request's home partition.
	RecordNote RecordKind = 2
	// RecordRefused: a bound attempt of the request (Command.Gen) found
	// this partition full; Record.Value is the generation refused, and no
	// attempt of that generation or an older one will grant here. Since
	// is zero.
	RecordRefused RecordKind = 3
)

// String returns "grant", "note", "refused", or "kind(N)" for an unknown
// kind.
func (k RecordKind) String() string {
	switch k {
	case RecordGrant:
		return "grant"
	case RecordNote:
		return "note"
	case RecordRefused:
		return "refused"
	default:
		return "kind(" + strconv.Itoa(int(k)) + ")"
	}
}

func (k RecordKind) valid() bool { return k >= RecordGrant && k <= RecordRefused }

// Record is what a partition remembers of one client request.
type Record struct {
	Kind  RecordKind
	Value uint32 // RecordGrant: the frequency; RecordNote: the partition id; RecordRefused: the generation
	Since int64  // RecordGrant: the grant time; RecordNote: the generation (1..MaxUint32); RecordRefused: 0
}

// requestKey is the window key of (client, request):
// xxhash.Sum64String(client + "\x00" + request), computed without building
// the string. The window trusts the key alone, assuming distinct pairs
// never collide (see the package doc: a lookup hits another pair's record
// with probability n/2⁶⁴). Valid ids (freqd.ValidateClientID,
// freqd.ValidateRequestID) have no NUL, so distinct pairs hash distinct
// strings.
func requestKey(client, request string) uint64 {
	var d xxhash.Digest
	d.Reset()
	_, _ = d.WriteString(client)
	_, _ = d.Write([]byte{0})
	_, _ = d.WriteString(request)
	return d.Sum64()
}

// wrec is one slot of the window: a record, its key and its links in the
// FIFO list (oldest at head).
type wrec struct {
	key        uint64
	since      int64
	value      uint32
	next, prev uint32 // slot numbers, none at the ends
	kind       RecordKind
}

// window is the FIFO of request records. Slots are allocated as the
// window grows and never freed: a replaced record's slot is relinked at
// the tail, an evicted one is reused for the new record, so len(recs) is
// the record count. All operations are O(1).
type window struct {
	recs       []wrec
	index      map[uint64]uint32 // key -> slot; nil until the first record
	head, tail uint32
}

func newWindow() window { return window{head: none, tail: none} }

// len returns the number of records.
func (w *window) len() int { return len(w.recs) }

// lookup returns the slot of key.
func (w *window) lookup(key uint64) (uint32, bool) {
	slot, ok := w.index[key]
	return slot, ok
}

// put records (key, kind, value, since) at the back of the window: it
// replaces a record with the same key, or else takes a new slot, or else
// (full) evicts the oldest record.
func (w *window) put(key uint64, kind RecordKind, value uint32, since int64) {
	slot, ok := w.index[key]
	switch {
	case ok:
		w.unlink(slot)
	case len(w.recs) < DedupWindow:
		if w.index == nil {
			w.index = make(map[uint64]uint32)
		}
		slot = uint32(len(w.recs))
		w.recs = append(w.recs, wrec{})
	default:
		slot = w.head
		w.unlink(slot)
		delete(w.index, w.recs[slot].key)
	}
	w.recs[slot] = wrec{key: key, since: since, value: value, kind: kind, prev: w.tail, next: none}
	if w.tail == none {
		w.head = slot
	} else {
		w.recs[w.tail].next = slot
	}
	w.tail = slot
	w.index[key] = slot
}

// unlink removes slot from the list (not from the index).
func (w *window) unlink(slot uint32) {
	r := &w.recs[slot]
	if r.prev == none {
		w.head = r.next
	} else {
		w.recs[r.prev].next = r.next
	}
	if r.next == none {
		w.tail = r.prev
	} else {
		w.recs[r.next].prev = r.prev
	}
}

// equal reports whether w and v hold the same records in the same order.
func (w *window) equal(v *window) bool {
	if len(w.recs) != len(v.recs) {
		return false
	}
	for a, b := w.head, v.head; ; a, b = w.recs[a].next, v.recs[b].next {
		if (a == none) != (b == none) {
			return false
		}
		if a == none {
			return true
		}
		x, y := &w.recs[a], &v.recs[b]
		if x.key != y.key || x.kind != y.kind || x.value != y.value || x.since != y.since {
			return false
		}
	}
}

// check verifies the list and index in O(len) and that every record is
// valid for p's range.
func (w *window) check(p *Partition) error {
	n := uint32(len(w.recs))
	if n > DedupWindow || len(w.index) != int(n) {
		return fmt.Errorf("window: %d records, %d indexed, at most %d", n, len(w.index), DedupWindow)
	}
	count := uint32(0)
	prev := none
	for slot := w.head; slot != none; slot = w.recs[slot].next {
		if slot >= n || count >= n {
			return fmt.Errorf("window: slot %d out of range or a cycle", slot)
		}
		r := &w.recs[slot]
		if r.prev != prev {
			return fmt.Errorf("window: slot %d prev %d, want %d", slot, r.prev, prev)
		}
		if got, ok := w.index[r.key]; !ok || got != slot {
			return fmt.Errorf("window: key %016x at slot %d indexed at %d", r.key, slot, got)
		}
		if err := p.checkRecord(r.kind, r.value, r.since); err != nil {
			return fmt.Errorf("window: %w", err)
		}
		prev = slot
		count++
	}
	if prev != w.tail || count != n {
		return fmt.Errorf("window: tail %d, want %d; %d linked of %d", w.tail, prev, count, n)
	}
	return nil
}

// checkRecord checks one record against p: a known kind, a grant value in
// the range, a note generation in 1..MaxUint32 (any partition id is
// possible: p does not know the layout), and a refused generation of at
// least 1 with no time.
func (p *Partition) checkRecord(kind RecordKind, value uint32, since int64) error {
	switch {
	case !kind.valid():
		return fmt.Errorf("unknown record %v", kind)
	case kind == RecordGrant && (value < p.first || value > p.last):
		return fmt.Errorf("grant record of frequency %d outside %d-%d", value, p.first, p.last)
	case kind == RecordNote && (since < 1 || since > math.MaxUint32):
		return fmt.Errorf("note record with generation %d, not in 1..%d", since, uint32(math.MaxUint32))
	case kind == RecordRefused && (value == 0 || since != 0):
		return fmt.Errorf("refused record of generation %d with time %d (want a generation of at least 1, no time)", value, since)
	}
	return nil
}

// Requests returns the number of request records in the window, at most
// DedupWindow.
func (p *Partition) Requests() int { return p.window.len() }

// Request returns what p remembers of request of client: a grant record
// only while its frequency is still held by client with the same grant
// time (so a retry would be answered with it), a note or refused record
// always. O(1).
func (p *Partition) Request(client, request string) (Record, bool) {
	slot, ok := p.window.lookup(requestKey(client, request))
	if !ok {
		return Record{}, false
	}
	r := &p.window.recs[slot]
	if r.kind == RecordGrant && !p.holds(client, r.value, r.since) {
		return Record{}, false
	}
	return Record{Kind: r.kind, Value: r.value, Since: r.since}, true
}

// holds reports whether frequency f is held by client since the given
// time.
func (p *Partition) holds(client string, f uint32, since int64) bool {
	off, ok := p.offset(f)
	if !ok {
		return false
	}
	h := p.holder[off]
	return h != 0 && p.since[off] == since && p.clients[h].id == client
}
