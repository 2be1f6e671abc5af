package partition

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/freqd/freqd"
)

// ref is a naive reference model of a partition: a free slice used as a
// FIFO queue, a map of holdings (with their lease TTLs), each client's
// grants in order, and the request window as a slice, oldest first,
// searched linearly, holding grants, bindings (notes with their
// generation) and refusals.
type ref struct {
	id          int
	first, last uint32
	version     uint64
	free        []uint32
	held        map[uint32]refHold
	byClient    map[string][]uint32
	window      []refRec
}

type refHold struct {
	client string
	since  int64
	ttl    time.Duration
}

// is reports whether h is client's grant made at since.
func (h refHold) is(client string, since int64) bool { return h.client == client && h.since == since }

// refTTLOK is the reference rule for Command.TTL: 0, or on a grant or a
// client release a whole number of milliseconds from 1s to 24h.
func refTTLOK(c Command) bool {
	if c.TTL == 0 {
		return true
	}
	return (c.Op == OpGrant || c.Op == OpReleaseClient) &&
		c.TTL >= time.Second && c.TTL <= 24*time.Hour && c.TTL%time.Millisecond == 0
}

// refRec is a request record; key is computed by the formula the package
// doc gives, not by the package's own function.
type refRec struct {
	key   uint64
	kind  RecordKind
	value uint32
	since int64
}

func refKey(client, request string) uint64 { return xxhash.Sum64String(client + "\x00" + request) }

// find returns the index of key in the window, or -1.
func (r *ref) find(key uint64) int {
	return slices.IndexFunc(r.window, func(x refRec) bool { return x.key == key })
}

// put removes any record of rec.key, evicts the oldest if full, and
// appends rec.
func (r *ref) put(rec refRec) {
	if i := r.find(rec.key); i >= 0 {
		r.window = slices.Delete(r.window, i, i+1)
	}
	if len(r.window) == DedupWindow {
		r.window = r.window[1:]
	}
	r.window = append(r.window, rec)
}

// request is the reference of Partition.Request.
func (r *ref) request(client, request string) (Record, bool) {
	i := r.find(refKey(client, request))
	if i < 0 {
		return Record{}, false
	}
	rec := r.window[i]
	if rec.kind == RecordGrant && !r.heldGrant(client, rec) {
		return Record{}, false
	}
	return Record{Kind: rec.kind, Value: rec.value, Since: rec.since}, true
}

// heldGrant reports whether rec is a grant record whose frequency client
// still holds under that grant.
func (r *ref) heldGrant(client string, rec refRec) bool {
	h, ok := r.held[rec.value]
	return rec.kind == RecordGrant && ok && h.is(client, rec.since)
}

// record returns the window record of (client, request).
func (r *ref) record(client, request string) (refRec, bool) {
	if i := r.find(refKey(client, request)); i >= 0 {
		return r.window[i], true
	}
	return refRec{}, false
}

// refShapeOK is the reference rule for Gen and Home: Gen only on a note
// (where it is required) or a grant with a request; Home only on a grant
// of any frequency with a request and no Gen.
func refShapeOK(c Command) bool {
	switch {
	case c.Op == OpNote && c.Gen == 0:
		return false
	case c.Gen != 0 && !(c.Op == OpNote || c.Op == OpGrant && c.Request != ""):
		return false
	case c.Home && !(c.Op == OpGrant && c.Any && c.Request != "" && c.Gen == 0):
		return false
	}
	return true
}

func newRef(id int, first, last uint32) *ref {
	r := &ref{id: id, first: first, last: last, held: map[uint32]refHold{}, byClient: map[string][]uint32{}}
	for f := uint64(first); f <= uint64(last); f++ {
		r.free = append(r.free, uint32(f))
	}
	return r
}

// apply returns the result, with the sentinel as Err.
func (r *ref) apply(c Command) Result {
	if c.Client == "" || len(c.Client) > freqd.MaxClientIDLen {
		return Result{Err: freqd.ErrInvalidClientID}
	}
	if len(c.Request) > freqd.MaxRequestIDLen || !refTTLOK(c) || !refShapeOK(c) {
		return Result{Err: freqd.ErrInvalidArgument}
	}
	switch {
	case c.Op == OpReleaseClient:
		if c.Any || c.Request != "" || c.Freq != 0 || c.Since != 0 {
			return Result{Err: freqd.ErrInvalidArgument}
		}
		return Result{Freq: r.releaseClient(c.Client, c.TTL)}
	case c.Op == OpGrant && c.Request != "":
		key := refKey(c.Client, c.Request)
		rec, ok := r.record(c.Client, c.Request)
		switch {
		case ok && r.heldGrant(c.Client, rec):
			return Result{Freq: rec.value, Since: rec.since, Dup: true}
		case ok && c.Home && rec.kind == RecordNote:
			return Result{Freq: rec.value, Since: rec.since, Noted: true}
		case ok && c.Gen > 0 && rec.kind == RecordRefused && rec.value >= c.Gen:
			return Result{Err: freqd.ErrNoFrequency}
		}
		v := r.version
		plain := c
		plain.Request, plain.Gen, plain.Home = "", 0, false
		res := r.apply(plain)
		switch {
		case res.Err == nil && r.version != v:
			r.put(refRec{key: key, kind: RecordGrant, value: res.Freq, since: res.Since})
		case c.Gen > 0 && res.Err == freqd.ErrNoFrequency:
			r.put(refRec{key: key, kind: RecordRefused, value: c.Gen})
			r.version++
		}
		return res
	case c.Op == OpNote && !c.Any && c.Request != "":
		// The binding's generation: a note's, else 0.
		rec, ok := r.record(c.Client, c.Request)
		switch {
		case ok && rec.kind == RecordNote && rec.since+1 != int64(c.Gen):
			return Result{Freq: rec.value, Since: rec.since}
		case ok && r.heldGrant(c.Client, rec):
			return Result{Freq: rec.value, Since: rec.since, Dup: true}
		case !(ok && rec.kind == RecordNote) && c.Gen != 1:
			return Result{Err: freqd.ErrUnavailable}
		}
		r.put(refRec{key: refKey(c.Client, c.Request), kind: RecordNote, value: c.Freq, since: int64(c.Gen)})
		r.version++
		return Result{Freq: c.Freq, Since: int64(c.Gen)}
	}
	f, since, err := r.applyPlain(c)
	return Result{Freq: f, Since: since, Err: err}
}

// applyPlain applies a grant or release, ignoring Request; it returns
// (freq, since, sentinel).
func (r *ref) applyPlain(c Command) (uint32, int64, error) {
	switch {
	case c.Op == OpGrant && c.Any:
		if len(r.free) == 0 {
			return 0, 0, freqd.ErrNoFrequency
		}
		f := r.free[0]
		r.free = r.free[1:]
		r.grant(f, c)
		return f, c.At, nil
	case c.Op == OpGrant:
		if c.Freq < r.first || c.Freq > r.last {
			return 0, 0, freqd.ErrOutOfRange
		}
		if h, ok := r.held[c.Freq]; ok {
			if h.client == c.Client {
				return c.Freq, h.since, nil
			}
			return 0, 0, freqd.ErrAlreadyHeld
		}
		i := slices.Index(r.free, c.Freq)
		r.free = slices.Delete(r.free, i, i+1)
		r.grant(c.Freq, c)
		return c.Freq, c.At, nil
	case c.Op == OpRelease && !c.Any:
		if c.Freq < r.first || c.Freq > r.last {
			return 0, 0, freqd.ErrOutOfRange
		}
		h, ok := r.held[c.Freq]
		if !ok {
			return 0, 0, freqd.ErrNotHeld
		}
		if h.client != c.Client {
			return 0, 0, freqd.ErrNotHolder
		}
		if c.Since != 0 && c.Since != h.since {
			return 0, 0, freqd.ErrNotHeld
		}
		delete(r.held, c.Freq)
		l := r.byClient[c.Client]
		i := slices.Index(l, c.Freq)
		l = slices.Delete(l, i, i+1)
		if len(l) == 0 {
			delete(r.byClient, c.Client)
		} else {
			r.byClient[c.Client] = l
		}
		r.free = append(r.free, c.Freq)
		r.version++
		return c.Freq, h.since, nil
	default:
		return 0, 0, freqd.ErrInvalidArgument
	}
}

// releaseClient releases client's frequencies (ttl 0: all; else its
// leased ones with a TTL up to ttl) and returns how many.
func (r *ref) releaseClient(client string, ttl time.Duration) uint32 {
	var keep []uint32
	n := uint32(0)
	for _, f := range r.byClient[client] {
		if h := r.held[f]; ttl == 0 || (h.ttl > 0 && h.ttl <= ttl) {
			delete(r.held, f)
			r.free = append(r.free, f)
			n++
		} else {
			keep = append(keep, f)
		}
	}
	if len(keep) == 0 {
		delete(r.byClient, client)
	} else {
		r.byClient[client] = keep
	}
	if n > 0 {
		r.version++
	}
	return n
}

// lease is the reference of Partition.ClientLease.
func (r *ref) lease(client string) (time.Duration, int) {
	var m time.Duration
	n := 0
	for _, f := range r.byClient[client] {
		if t := r.held[f].ttl; t > 0 {
			if n == 0 || t < m {
				m = t
			}
			n++
		}
	}
	return m, n
}

// refLease is one call of the Leases callback.
type refLease struct {
	client string
	min    time.Duration
	leased int
}

// leases is the reference of Partition.Leases.
func (r *ref) leases() []refLease {
	var out []refLease
	for c := range r.byClient {
		if m, n := r.lease(c); n > 0 {
			out = append(out, refLease{c, m, n})
		}
	}
	slices.SortFunc(out, func(a, b refLease) int {
		if a.client < b.client {
			return -1
		}
		return 1
	})
	return out
}

// leasesOf collects p.Leases.
func leasesOf(p *Partition) []refLease {
	var out []refLease
	p.Leases(func(c string, m time.Duration, n int) { out = append(out, refLease{c, m, n}) })
	return out
}

func (r *ref) grant(f uint32, c Command) {
	r.held[f] = refHold{c.Client, c.At, c.TTL}
	r.byClient[c.Client] = append(r.byClient[c.Client], f)
	r.version++
}

var sentinels = []error{
	freqd.ErrNoFrequency, freqd.ErrNotHeld, freqd.ErrNotHolder, freqd.ErrAlreadyHeld,
	freqd.ErrOutOfRange, freqd.ErrInvalidClientID, freqd.ErrInvalidArgument,
	freqd.ErrUnavailable,
}

// sentinelOf returns the one sentinel err wraps, nil for nil.
func sentinelOf(err error) error {
	if err == nil {
		return nil
	}
	var found error
	for _, s := range sentinels {
		if errors.Is(err, s) {
			if found != nil {
				return fmt.Errorf("wraps both %v and %v", found, s)
			}
			found = s
		}
	}
	if found == nil {
		return fmt.Errorf("wraps no sentinel: %v", err)
	}
	return found
}

// compare checks that p's state equals r's and that p's invariants hold,
// and asks Request about every pair of testClients and testRequests.
func compare(t testing.TB, p *Partition, r *ref) {
	t.Helper()
	if err := p.check(); err != nil {
		t.Fatalf("invariant broken: %v", err)
	}
	if p.Version() != r.version {
		t.Fatalf("version %d, reference %d", p.Version(), r.version)
	}
	if got := p.FreeOrder(); !slices.Equal(got, r.free) && !(len(got) == 0 && len(r.free) == 0) {
		t.Fatalf("free order %v, reference %v", got, r.free)
	}
	if p.Free() != len(r.free) || p.Held() != len(r.held) || p.Size() != int(r.last-r.first)+1 || p.Clients() != len(r.byClient) {
		t.Fatalf("counts free %d held %d size %d clients %d; reference %d %d %d %d",
			p.Free(), p.Held(), p.Size(), p.Clients(), len(r.free), len(r.held), r.last-r.first+1, len(r.byClient))
	}
	for f := uint64(r.first); f <= uint64(r.last); f++ {
		c, since, held, err := p.Holder(uint32(f))
		h, rheld := r.held[uint32(f)]
		if err != nil || held != rheld || c != h.client || since != h.since {
			t.Fatalf("Holder(%d) = %q %d %v %v; reference %+v %v", f, c, since, held, err, h, rheld)
		}
		if ttl := p.TTL(uint32(f)); ttl != h.ttl {
			t.Fatalf("TTL(%d) = %v, reference %v", f, ttl, h.ttl)
		}
	}
	for _, f := range []uint32{r.first - 1, r.last + 1} {
		if f < r.first || f > r.last { // not wrapped into the range
			if ttl := p.TTL(f); ttl != 0 {
				t.Fatalf("TTL(%d) outside the range = %v", f, ttl)
			}
		}
	}
	for c, l := range r.byClient {
		if got := p.HeldBy(c); !slices.Equal(got, l) {
			t.Fatalf("HeldBy(%q) = %v, reference %v", c, got, l)
		}
	}
	for _, c := range append(slices.Collect(maps.Keys(r.byClient)), testClients...) {
		m, n := p.ClientLease(c)
		wm, wn := r.lease(c)
		if m != wm || n != wn {
			t.Fatalf("ClientLease(%q) = %v %d, reference %v %d", c, m, n, wm, wn)
		}
		if k := p.LeasedBy(c); k != wn {
			t.Fatalf("LeasedBy(%q) = %d, reference %d", c, k, wn)
		}
	}
	if got, want := leasesOf(p), r.leases(); !slices.Equal(got, want) {
		t.Fatalf("Leases = %v, reference %v", got, want)
	}
	if got := windowOf(p); !slices.Equal(got, r.window) && !(len(got) == 0 && len(r.window) == 0) {
		t.Fatalf("window of %d records differs from the reference's %d", len(got), len(r.window))
	}
	if p.Requests() != len(r.window) {
		t.Fatalf("Requests() = %d, reference %d", p.Requests(), len(r.window))
	}
	for _, c := range testClients {
		for _, q := range testRequests {
			got, ok := p.Request(c, q)
			want, wok := r.request(c, q)
			if got != want || ok != wok {
				t.Fatalf("Request(%q, %q) = %+v %v, reference %+v %v", c, q, got, ok, want, wok)
			}
		}
	}
}

// testClients and testRequests are the ids randomCommand draws from.
var (
	testClients  = []string{"a", "b", "c", "d", "e"}
	testRequests = []string{"", "r1", "r2", "r3", "r4"}
)

// windowOf returns p's window oldest first, in the reference's form.
func windowOf(p *Partition) []refRec {
	w := &p.window
	var out []refRec
	for slot := w.head; slot != none; slot = w.recs[slot].next {
		x := w.recs[slot]
		out = append(out, refRec{key: x.key, kind: x.kind, value: x.value, since: x.since})
	}
	return out
}

// step applies c to both and checks the results agree.
func step(t testing.TB, p *Partition, r *ref, c Command) Result {
	t.Helper()
	res := p.Apply(c)
	want := r.apply(c)
	if got := sentinelOf(res.Err); got != want.Err {
		t.Fatalf("%v: error %v (%v), reference %v", c, res.Err, got, want.Err)
	}
	if res.Freq != want.Freq || res.Since != want.Since || res.Dup != want.Dup || res.Noted != want.Noted {
		t.Fatalf("%v: got freq %d since %d dup %v noted %v, reference %d %d %v %v",
			c, res.Freq, res.Since, res.Dup, res.Noted, want.Freq, want.Since, want.Dup, want.Noted)
	}
	return res
}
