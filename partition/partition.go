package partition

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/freqd/freqd"
)

// MaxSize is the largest number of frequencies one partition may hold.
// Offsets are uint32 with ^uint32(0) reserved as the list terminator; the
// bound also keeps one partition's arrays under about 20 GiB.
const MaxSize = 1 << 30

// none terminates the intrusive lists.
const none = ^uint32(0)

// Result is the outcome of Apply. On success Freq is the frequency granted
// or released and Since its grant time (for a release, the time of the
// grant being ended); for OpReleaseClient, Freq is the number of
// frequencies released (maybe 0) and Since is 0. Dup is set when a grant
// was answered from the request window: a retry of a grant already made,
// with nothing changed. For OpNote, Freq and Since are the partition and
// generation of the request's binding after the command, whether this
// note set it or an earlier one won; or, with Dup, the home partition
// already granted the request, and Freq and Since are that grant. Noted
// is set when a home attempt (Command.Home) found the request bound to
// another partition: Freq is that partition, Since the binding's
// generation, and nothing changed. On failure Err wraps a freqd sentinel
// and Freq, Since, Dup and Noted are zero. Apply's doc lists every case.
//
// Dup and Noted sit next to Freq so Result stays 32 bytes: larger, the
// compiler returns it through memory, which costs a grant about 30 ns.
type Result struct {
	Freq  uint32
	Dup   bool
	Noted bool
	Since int64
	Err   error
}

// client is one interned client id and its list of held offsets, in grant
// order.
type client struct {
	id         string
	head, tail uint32
	count      uint32 // frequencies held; 0 means the slot is free
	leased     uint32 // of which leased (ttl > 0)
}

// Partition is the state of one partition. It is not safe for concurrent
// use: its owner serialises Apply and the readers.
type Partition struct {
	id          int
	first, last uint32
	version     uint64

	holder []uint32 // per offset: client slot, 0 = free
	since  []int64  // per offset: grant time of a held frequency, 0 if free
	ttl    []uint32 // per offset: lease TTL of a held frequency in ms, 0 if free or not leased
	next   []uint32 // per offset: next in its list, none at the end
	prev   []uint32 // per offset: previous in its list, none at the head

	freeHead, freeTail uint32
	free               int

	clients   []client          // slot 0 unused so holder 0 means free
	index     map[string]uint32 // client id -> slot
	freeSlots []uint32          // dropped slots, reused last-in first-out

	window window // request records, oldest first
}

// New returns partition id covering first..last (inclusive), all free,
// with the free queue in ascending order. It panics if id is negative,
// last < first or the range holds more than MaxSize frequencies: the
// caller builds partitions from a validated pool.Layout.
func New(id int, first, last uint32) *Partition {
	if id < 0 || last < first || uint64(last)-uint64(first)+1 > MaxSize {
		panic(fmt.Sprintf("partition.New(%d, %d, %d): bad id or range (at most %d frequencies)", id, first, last, MaxSize))
	}
	p := alloc(id, first, last)
	n := uint32(len(p.holder))
	for i := range n {
		p.prev[i] = i - 1 // none for i == 0
		p.next[i] = i + 1
	}
	p.next[n-1] = none
	p.freeHead, p.freeTail, p.free = 0, n-1, int(n)
	return p
}

// alloc returns a partition with its arrays allocated and no lists built.
func alloc(id int, first, last uint32) *Partition {
	n := int(last-first) + 1
	return &Partition{
		id: id, first: first, last: last,
		holder:   make([]uint32, n),
		since:    make([]int64, n),
		ttl:      make([]uint32, n),
		next:     make([]uint32, n),
		prev:     make([]uint32, n),
		freeHead: none, freeTail: none,
		clients: make([]client, 1, 8),
		index:   make(map[string]uint32),
		window:  newWindow(),
	}
}

// ID returns the partition id.
func (p *Partition) ID() int { return p.id }

// First returns the lowest frequency of the partition.
func (p *Partition) First() uint32 { return p.first }

// Last returns the highest frequency of the partition.
func (p *Partition) Last() uint32 { return p.last }

// Size returns the number of frequencies in the partition.
func (p *Partition) Size() int { return len(p.holder) }

// Free returns the number of free frequencies.
func (p *Partition) Free() int { return p.free }

// Held returns the number of held frequencies.
func (p *Partition) Held() int { return len(p.holder) - p.free }

// Clients returns the number of distinct clients holding a frequency.
func (p *Partition) Clients() int { return len(p.index) }

// Version returns the number of commands that changed the state
// (successful grants and releases, notes that set a binding, bound
// attempts that recorded a refusal, and client releases that released at
// least one frequency; not other failures, idempotent re-grants, grants
// answered from the request window, home attempts answered with a
// binding, notes that lost their compare-and-set, nor client releases
// that released nothing).
// Two reads with the same Version saw the same state, which is how a
// caller proves the partition was full at one instant.
func (p *Partition) Version() uint64 { return p.version }

// Apply applies c and returns its result; see the package doc and Result.
//
//   - Grant with Any: the free frequency released longest ago; a full
//     partition is freqd.ErrNoFrequency.
//   - Grant of Freq: free, it is granted; held by the same client, success
//     with the original grant time and no change (the TTL of the original
//     grant stays, whatever this one's); held by another client,
//     freqd.ErrAlreadyHeld.
//   - A grant records its TTL with the frequency (Partition.TTL).
//   - Grant with a Request (either form): if the request window holds a
//     grant record for (Client, Request) whose frequency Client still
//     holds with the same grant time, that grant is returned with Dup set
//     and nothing changes. Otherwise the grant is applied as above, and a
//     grant that changed the state records {frequency, grant time} for
//     the request, replacing any older record of it; failures and
//     idempotent re-grants record nothing, except a refusal below.
//   - Home attempt (Home: a grant of Any with a Request and Gen 0, in the
//     request's home partition): if the window holds a note (a binding)
//     of (Client, Request), nothing changes and the result is {Noted,
//     Freq: the bound partition, Since: its generation}. Otherwise it is
//     a grant with a Request as above. A home attempt never records a
//     refusal: when it fails with freqd.ErrNoFrequency the caller binds
//     the request elsewhere with OpNote.
//   - Bound attempt (a grant with a Request and Gen ≥ 1, in the partition
//     the binding of generation Gen names): a grant record still held is
//     a Dup as above. Else, if the window holds a refused record of
//     generation Gen or later, freqd.ErrNoFrequency ("request ... refused
//     for generation N") and nothing changes: a late copy of an attempt
//     this partition refused never grants, even when frequencies have
//     since been freed. Else the grant is applied and recorded as above;
//     if it fails with freqd.ErrNoFrequency, a refused record of Gen
//     replaces any record of the request, Version goes up, and the result
//     is that freqd.ErrNoFrequency. Other failures record nothing.
//   - Release of Freq: held by the client, it joins the back of the free
//     queue; free, freqd.ErrNotHeld; held by another, freqd.ErrNotHolder.
//     With a non-zero Since, held by the client under a grant made at
//     another time, freqd.ErrNotHeld (that grant has ended). No failure
//     changes anything. Request is ignored.
//   - Note (a compare-and-set of the binding of Request of Client to
//     partition Freq at generation Gen ≥ 1): let the current binding be
//     the note the window holds for the request, or generation 0 if it
//     holds none (no record, a refused record, or a grant record whose
//     frequency Client no longer holds). If the current generation is
//     Gen-1, the note {partition Freq, generation Gen} replaces any record
//     of the request, Version goes up and the result is {Freq, Since:
//     Gen}. Else, with a note of any other generation (Gen itself
//     included: a concurrent binder won), nothing changes and the result
//     is the binding in force, {Freq: its partition, Since: its
//     generation}: the caller proceeds with it whatever it proposed. Else, with a grant record whose frequency Client still
//     holds (the home granted the request itself), nothing changes and
//     the result is that grant with Dup set. Else (no binding, Gen ≥ 2)
//     nothing changes and the error wraps freqd.ErrUnavailable: the
//     caller read a binding that is gone (evicted from the window) and
//     retries from a fresh read.
//   - Release-client: with TTL 0 every frequency Client holds, with a TTL
//     every one it holds with a lease TTL of 1..TTL (not those without a
//     lease), is released in grant order, each joining the back of the
//     free queue as a release does. The result's Freq is the number
//     released; releasing nothing is no error, and Version goes up by one
//     only if something was released. O(frequencies held by Client).
//   - Freq outside the partition: freqd.ErrOutOfRange.
//   - An empty or oversized Client: freqd.ErrInvalidClientID. An unknown
//     op, Any on other than a grant, Since on other than a release, an
//     invalid TTL (see Command.TTL) or one on other than a grant or
//     release-client, an oversized Request, a note without one or without
//     a Gen, Gen on other than a note or a grant with a Request, Home on
//     other than a grant of Any with a Request and Gen 0, or a
//     release-client with a Request or Freq: freqd.ErrInvalidArgument.
//
// Recording a request when the window already holds DedupWindow records
// evicts the oldest one.
func (p *Partition) Apply(c Command) Result {
	switch {
	case c.Client == "":
		return p.fail("client id is empty", freqd.ErrInvalidClientID)
	case len(c.Client) > freqd.MaxClientIDLen:
		return p.fail(fmt.Sprintf("client id is %d bytes, longer than %d", len(c.Client), freqd.MaxClientIDLen), freqd.ErrInvalidClientID)
	case len(c.Request) > freqd.MaxRequestIDLen:
		return p.fail(fmt.Sprintf("request id is %d bytes, longer than %d", len(c.Request), freqd.MaxRequestIDLen), freqd.ErrInvalidArgument)
	}
	if err := c.checkShape(); err != nil {
		return p.fail(err.Error(), freqd.ErrInvalidArgument)
	}
	switch c.Op {
	case OpGrant:
		if c.Request == "" {
			return p.grantPlain(&c)
		}
		return p.grantRequest(&c)
	case OpRelease:
		return p.release(&c)
	case OpReleaseClient:
		return p.releaseClient(&c)
	default: // OpNote
		return p.note(&c)
	}
}

// grantRequest applies a grant with a request id: a retry, a home attempt
// or a bound attempt (see Apply).
func (p *Partition) grantRequest(c *Command) Result {
	key := requestKey(c.Client, c.Request)
	if slot, ok := p.window.lookup(key); ok {
		r := &p.window.recs[slot]
		switch {
		case r.kind == RecordGrant && p.holds(c.Client, r.value, r.since):
			return Result{Freq: r.value, Since: r.since, Dup: true}
		case r.kind == RecordNote && c.Home:
			return Result{Freq: r.value, Since: r.since, Noted: true}
		case r.kind == RecordRefused && c.Gen != 0 && r.value >= c.Gen:
			return p.fail(fmt.Sprintf("request %q of %q refused for generation %d (refused up to generation %d)",
				c.Request, c.Client, c.Gen, r.value), freqd.ErrNoFrequency)
		}
	}
	// A bound attempt that finds the partition full is refused for good,
	// so a late copy of it cannot grant once frequencies are freed. Only a
	// grant of any frequency fails for want of one.
	if c.Gen != 0 && c.Any && p.freeHead == none {
		p.window.put(key, RecordRefused, c.Gen, 0)
		p.version++
		return p.fail(fmt.Sprintf("all %d frequencies held: request %q of %q refused for generation %d",
			len(p.holder), c.Request, c.Client, c.Gen), freqd.ErrNoFrequency)
	}
	v := p.version
	res := p.grantPlain(c)
	if res.Err == nil && p.version != v {
		p.window.put(key, RecordGrant, res.Freq, res.Since)
	}
	return res
}

// note applies OpNote, a compare-and-set of the request's binding
// generation (see Apply): generations make two attempts to rebind one
// request race safely, only one of them binding each generation.
func (p *Partition) note(c *Command) Result {
	key := requestKey(c.Client, c.Request)
	cur := uint32(0) // the binding's generation; 0 for none
	if slot, ok := p.window.lookup(key); ok {
		r := &p.window.recs[slot]
		switch {
		case r.kind == RecordNote:
			cur = uint32(r.since)
			if cur != c.Gen-1 {
				return Result{Freq: r.value, Since: r.since}
			}
		case r.kind == RecordGrant && p.holds(c.Client, r.value, r.since):
			return Result{Freq: r.value, Since: r.since, Dup: true}
		}
	}
	if cur != c.Gen-1 {
		return p.fail(fmt.Sprintf("binding of request %q of %q is at generation %d, not %d; retry",
			c.Request, c.Client, cur, c.Gen-1), freqd.ErrUnavailable)
	}
	p.window.put(key, RecordNote, c.Freq, int64(c.Gen))
	p.version++
	return Result{Freq: c.Freq, Since: int64(c.Gen)}
}

// grantPlain applies a grant without looking at the request window.
func (p *Partition) grantPlain(c *Command) Result {
	if c.Any {
		return p.grantAny(c)
	}
	return p.grantFreq(c)
}

func (p *Partition) fail(msg string, sentinel error) Result {
	return Result{Err: fmt.Errorf("partition %d: %s: %w", p.id, msg, sentinel)}
}

func (p *Partition) failFreq(f uint32, sentinel error) Result {
	return Result{Err: fmt.Errorf("partition %d (%d-%d): frequency %d: %w", p.id, p.first, p.last, f, sentinel)}
}

func (p *Partition) offset(f uint32) (uint32, bool) {
	if f < p.first || f > p.last {
		return 0, false
	}
	return f - p.first, true
}

func (p *Partition) grantAny(c *Command) Result {
	if p.freeHead == none {
		return p.fail(fmt.Sprintf("all %d frequencies held", len(p.holder)), freqd.ErrNoFrequency)
	}
	off := p.freeHead
	p.grant(off, c)
	return Result{Freq: p.first + off, Since: c.At}
}

func (p *Partition) grantFreq(c *Command) Result {
	off, ok := p.offset(c.Freq)
	if !ok {
		return p.failFreq(c.Freq, freqd.ErrOutOfRange)
	}
	if h := p.holder[off]; h != 0 {
		if p.clients[h].id == c.Client {
			return Result{Freq: c.Freq, Since: p.since[off]}
		}
		return p.failFreq(c.Freq, freqd.ErrAlreadyHeld)
	}
	p.grant(off, c)
	return Result{Freq: c.Freq, Since: c.At}
}

// grant moves free offset off to client c.Client's list.
func (p *Partition) grant(off uint32, c *Command) {
	p.unlinkFree(off)
	p.linkHeld(off, p.intern(c.Client), c.At, ttlMS(c.TTL))
	p.version++
}

// linkHeld records off as held by the client in slot since the given time
// with a lease TTL of ttl ms (0: no lease), appending it to that client's
// list (so HeldBy is in grant order). off must be in no list.
func (p *Partition) linkHeld(off, slot uint32, since int64, ttl uint32) {
	cl := &p.clients[slot]
	p.holder[off] = slot
	p.since[off] = since
	p.ttl[off] = ttl
	p.prev[off], p.next[off] = cl.tail, none
	if cl.tail == none {
		cl.head = off
	} else {
		p.next[cl.tail] = off
	}
	cl.tail = off
	cl.count++
	if ttl != 0 {
		cl.leased++
	}
}

func (p *Partition) release(c *Command) Result {
	off, ok := p.offset(c.Freq)
	if !ok {
		return p.failFreq(c.Freq, freqd.ErrOutOfRange)
	}
	h := p.holder[off]
	if h == 0 {
		return p.failFreq(c.Freq, freqd.ErrNotHeld)
	}
	if p.clients[h].id != c.Client {
		return p.failFreq(c.Freq, freqd.ErrNotHolder)
	}
	since := p.since[off]
	if c.Since != 0 && c.Since != since {
		return Result{Err: fmt.Errorf("partition %d (%d-%d): frequency %d: the grant made at %d has ended (it is held under a grant made at %d): %w",
			p.id, p.first, p.last, c.Freq, c.Since, since, freqd.ErrNotHeld)}
	}
	// free1, by hand: the compiler does not inline it on this hot path.
	p.unlinkHeld(h, off)
	p.holder[off], p.since[off], p.ttl[off] = 0, 0, 0
	p.pushFree(off)
	p.version++
	return Result{Freq: c.Freq, Since: since}
}

// releaseClient applies OpReleaseClient: it walks the client's list once,
// in grant order, so it is O(held by the client).
func (p *Partition) releaseClient(c *Command) Result {
	slot, ok := p.index[c.Client]
	if !ok {
		return Result{}
	}
	limit := ttlMS(c.TTL)
	n := uint32(0)
	for off := p.clients[slot].head; off != none; {
		next := p.next[off] // free1 relinks off
		if t := p.ttl[off]; limit == 0 || (t != 0 && t <= limit) {
			p.free1(slot, off)
			n++
		}
		off = next
	}
	if n > 0 {
		p.version++
	}
	return Result{Freq: n}
}

// free1 moves off, held by the client in slot, to the back of the free
// queue, dropping the client if it holds nothing more.
func (p *Partition) free1(slot, off uint32) {
	p.unlinkHeld(slot, off)
	p.holder[off], p.since[off], p.ttl[off] = 0, 0, 0
	p.pushFree(off)
}

// unlinkFree removes free offset off from the free queue.
func (p *Partition) unlinkFree(off uint32) {
	n, v := p.next[off], p.prev[off]
	if v == none {
		p.freeHead = n
	} else {
		p.next[v] = n
	}
	if n == none {
		p.freeTail = v
	} else {
		p.prev[n] = v
	}
	p.free--
}

// pushFree appends off to the back of the free queue.
func (p *Partition) pushFree(off uint32) {
	p.prev[off], p.next[off] = p.freeTail, none
	if p.freeTail == none {
		p.freeHead = off
	} else {
		p.next[p.freeTail] = off
	}
	p.freeTail = off
	p.free++
}

// unlinkHeld removes off from client slot's list, dropping the client when
// it holds nothing more.
func (p *Partition) unlinkHeld(slot, off uint32) {
	cl := &p.clients[slot]
	n, v := p.next[off], p.prev[off]
	if v == none {
		cl.head = n
	} else {
		p.next[v] = n
	}
	if n == none {
		cl.tail = v
	} else {
		p.prev[n] = v
	}
	cl.count--
	if p.ttl[off] != 0 {
		cl.leased--
	}
	if cl.count == 0 {
		delete(p.index, cl.id)
		*cl = client{}
		p.freeSlots = append(p.freeSlots, slot)
	}
}

// intern returns the slot of id, creating it (with an empty list) if id
// holds nothing yet. The id is cloned so the partition never pins the
// caller's buffer.
func (p *Partition) intern(id string) uint32 {
	if slot, ok := p.index[id]; ok {
		return slot
	}
	var slot uint32
	if n := len(p.freeSlots); n > 0 {
		slot = p.freeSlots[n-1]
		p.freeSlots = p.freeSlots[:n-1]
	} else {
		slot = uint32(len(p.clients))
		p.clients = append(p.clients, client{})
	}
	id = strings.Clone(id)
	p.clients[slot] = client{id: id, head: none, tail: none}
	p.index[id] = slot
	return slot
}

// Holder returns the holder of f and its grant time, or held == false if f
// is free. The error wraps freqd.ErrOutOfRange if f is outside the
// partition.
func (p *Partition) Holder(f uint32) (client string, since int64, held bool, err error) {
	off, ok := p.offset(f)
	if !ok {
		return "", 0, false, p.failFreq(f, freqd.ErrOutOfRange).Err
	}
	h := p.holder[off]
	if h == 0 {
		return "", 0, false, nil
	}
	return p.clients[h].id, p.since[off], true, nil
}

// TTL returns the lease TTL of f: 0 if f is free, held without a lease,
// or outside the partition.
func (p *Partition) TTL(f uint32) time.Duration {
	off, ok := p.offset(f)
	if !ok {
		return 0
	}
	return time.Duration(p.ttl[off]) * time.Millisecond
}

// Leases calls fn for every client holding at least one leased frequency
// (a TTL above 0), in ascending order of client id, with the smallest TTL
// among its leased frequencies and how many it holds. fn must not change
// p. O(held), plus sorting the clients.
func (p *Partition) Leases(fn func(client string, minTTL time.Duration, leased int)) {
	type lease struct {
		slot   uint32
		min    uint32
		leased int
	}
	ls := make([]lease, 0, len(p.index))
	for slot := 1; slot < len(p.clients); slot++ {
		if p.clients[slot].count == 0 {
			continue
		}
		if m, n := p.lease(uint32(slot)); n > 0 {
			ls = append(ls, lease{uint32(slot), m, n})
		}
	}
	slices.SortFunc(ls, func(a, b lease) int { return cmp.Compare(p.clients[a.slot].id, p.clients[b.slot].id) })
	for _, l := range ls {
		fn(p.clients[l.slot].id, time.Duration(l.min)*time.Millisecond, l.leased)
	}
}

// ClientLease returns the smallest lease TTL among client's leased
// frequencies and how many it holds, (0, 0) if none. O(held by client).
func (p *Partition) ClientLease(client string) (minTTL time.Duration, leased int) {
	slot, ok := p.index[client]
	if !ok {
		return 0, 0
	}
	m, n := p.lease(slot)
	return time.Duration(m) * time.Millisecond, n
}

// LeasedBy returns how many leased frequencies client holds. O(1).
func (p *Partition) LeasedBy(client string) int {
	if slot, ok := p.index[client]; ok {
		return int(p.clients[slot].leased)
	}
	return 0
}

// lease returns the smallest TTL (ms) among the leased frequencies of the
// client in slot, and how many there are.
func (p *Partition) lease(slot uint32) (minMS uint32, leased int) {
	for off := p.clients[slot].head; off != none; off = p.next[off] {
		if t := p.ttl[off]; t != 0 {
			if leased == 0 || t < minMS {
				minMS = t
			}
			leased++
		}
	}
	return minMS, leased
}

// HeldBy returns the frequencies client holds, in grant order (oldest
// first), or nil. O(held by client).
func (p *Partition) HeldBy(client string) []uint32 {
	slot, ok := p.index[client]
	if !ok {
		return nil
	}
	cl := &p.clients[slot]
	out := make([]uint32, 0, cl.count)
	for off := cl.head; off != none; off = p.next[off] {
		out = append(out, p.first+off)
	}
	return out
}

// FreeOrder returns the free frequencies in the order Grant with Any would
// hand them out. O(size); for tests and debugging.
func (p *Partition) FreeOrder() []uint32 {
	out := make([]uint32, 0, p.free)
	for off := p.freeHead; off != none; off = p.next[off] {
		out = append(out, p.first+off)
	}
	return out
}

// Equal reports whether p and q have the same id, range, version, free
// queue order, holders with their grant times, TTLs and grant order, and
// request window (records in order). Slot numbers, which are internal, are
// not compared.
func (p *Partition) Equal(q *Partition) bool {
	if p == nil || q == nil {
		return p == q
	}
	if p.id != q.id || p.first != q.first || p.last != q.last || p.version != q.version ||
		p.free != q.free || len(p.index) != len(q.index) || !p.window.equal(&q.window) {
		return false
	}
	for a, b := p.freeHead, q.freeHead; ; a, b = p.next[a], q.next[b] {
		if a != b {
			return false
		}
		if a == none {
			break
		}
	}
	for off := range p.holder {
		hp, hq := p.holder[off], q.holder[off]
		if (hp == 0) != (hq == 0) || p.since[off] != q.since[off] || p.ttl[off] != q.ttl[off] {
			return false
		}
		if hp != 0 && p.clients[hp].id != q.clients[hq].id {
			return false
		}
	}
	// Same holders per offset; now the order of each client's list.
	for slot, cl := range p.clients {
		if slot == 0 || cl.count == 0 {
			continue
		}
		qs := q.index[cl.id]
		if q.clients[qs].count != cl.count {
			return false
		}
		for a, b := cl.head, q.clients[qs].head; ; a, b = p.next[a], q.next[b] {
			if a != b {
				return false
			}
			if a == none {
				break
			}
		}
	}
	return true
}

// String returns a summary such as "partition 3 (10-15): 2 free, 4 held by
// 2 clients, 5 requests, version 9".
func (p *Partition) String() string {
	return fmt.Sprintf("partition %d (%d-%d): %d free, %d held by %d clients, %d requests, version %d",
		p.id, p.first, p.last, p.free, p.Held(), len(p.index), p.window.len(), p.version)
}
