package partition

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/cespare/xxhash/v2"

	"github.com/freqd/freqd"
)

func grantReq(c, req string, at int64) Command {
	return Command{Op: OpGrant, Client: c, Request: req, Any: true, At: at}
}

// note binds request req of c to partition target at generation gen.
func note(c, req string, target, gen uint32) Command {
	return Command{Op: OpNote, Client: c, Request: req, Freq: target, Gen: gen}
}

// TestDedup runs command sequences on a partition of 10-12 and checks each
// result, whether the version moved, and then what Request reports.
func TestDedup(t *testing.T) {
	type want struct {
		res     Result // Err: sentinel
		changed bool
	}
	type ask struct {
		client, request string
		rec             Record
		ok              bool
	}
	tests := []struct {
		name  string
		cmds  []Command
		wants []want
		asks  []ask
		reqs  int // Requests() at the end
	}{
		{
			name:  "retry of grant any is a dup",
			cmds:  []Command{grantReq("a", "r1", 5), grantReq("a", "r1", 9)},
			wants: []want{{Result{Freq: 10, Since: 5}, true}, {Result{Freq: 10, Since: 5, Dup: true}, false}},
			asks:  []ask{{"a", "r1", Record{RecordGrant, 10, 5}, true}, {"a", "r2", Record{}, false}, {"b", "r1", Record{}, false}},
			reqs:  1,
		},
		{
			name: "retry of specific grant is a dup, even naming another frequency",
			cmds: []Command{
				{Op: OpGrant, Client: "a", Request: "r1", Freq: 12, At: 5},
				{Op: OpGrant, Client: "a", Request: "r1", Freq: 12, At: 6},
				{Op: OpGrant, Client: "a", Request: "r1", Freq: 11, At: 7},
				{Op: OpGrant, Client: "a", Request: "r1", Any: true, At: 8},
			},
			wants: []want{
				{Result{Freq: 12, Since: 5}, true}, {Result{Freq: 12, Since: 5, Dup: true}, false},
				{Result{Freq: 12, Since: 5, Dup: true}, false}, {Result{Freq: 12, Since: 5, Dup: true}, false},
			},
			asks: []ask{{"a", "r1", Record{RecordGrant, 12, 5}, true}},
			reqs: 1,
		},
		{
			name: "same request id of two clients is two requests",
			cmds: []Command{grantReq("a", "r1", 5), grantReq("b", "r1", 6), grantReq("b", "r1", 7)},
			wants: []want{
				{Result{Freq: 10, Since: 5}, true}, {Result{Freq: 11, Since: 6}, true},
				{Result{Freq: 11, Since: 6, Dup: true}, false},
			},
			asks: []ask{{"a", "r1", Record{RecordGrant, 10, 5}, true}, {"b", "r1", Record{RecordGrant, 11, 6}, true}},
			reqs: 2,
		},
		{
			name: "retry after release grants again",
			cmds: []Command{grantReq("a", "r1", 5), release("a", 10), grantReq("a", "r1", 9)},
			wants: []want{
				{Result{Freq: 10, Since: 5}, true}, {Result{Freq: 10, Since: 5}, true},
				{Result{Freq: 11, Since: 9}, true},
			},
			asks: []ask{{"a", "r1", Record{RecordGrant, 11, 9}, true}},
			reqs: 1,
		},
		{
			name: "stale record is not reported",
			cmds: []Command{grantReq("a", "r1", 5), release("a", 10)},
			wants: []want{
				{Result{Freq: 10, Since: 5}, true}, {Result{Freq: 10, Since: 5}, true},
			},
			asks: []ask{{"a", "r1", Record{}, false}},
			reqs: 1,
		},
		{
			name: "regrant of the frequency to another client is not a dup",
			cmds: []Command{
				{Op: OpGrant, Client: "a", Request: "r1", Freq: 10, At: 5}, release("a", 10),
				grant("b", 10, 5), {Op: OpGrant, Client: "a", Request: "r1", Freq: 10, At: 8},
			},
			wants: []want{
				{Result{Freq: 10, Since: 5}, true}, {Result{Freq: 10, Since: 5}, true},
				{Result{Freq: 10, Since: 5}, true}, {Result{Err: freqd.ErrAlreadyHeld}, false},
			},
			asks: []ask{{"a", "r1", Record{}, false}},
			reqs: 1,
		},
		{
			name: "regrant to the same client with another since is not a dup",
			cmds: []Command{
				{Op: OpGrant, Client: "a", Request: "r1", Freq: 10, At: 5}, release("a", 10),
				grant("a", 10, 6), {Op: OpGrant, Client: "a", Request: "r1", Freq: 10, At: 8},
			},
			wants: []want{
				{Result{Freq: 10, Since: 5}, true}, {Result{Freq: 10, Since: 5}, true},
				{Result{Freq: 10, Since: 6}, true}, {Result{Freq: 10, Since: 6}, false},
			},
			asks: []ask{{"a", "r1", Record{}, false}},
			reqs: 1, // the idempotent re-grant recorded nothing
		},
		{
			name: "failure records nothing",
			cmds: []Command{
				grantAny("x", 1), grantAny("x", 1), grantAny("x", 1), grantReq("a", "r1", 5),
				{Op: OpGrant, Client: "a", Request: "r2", Freq: 99},
			},
			wants: []want{
				{Result{Freq: 10, Since: 1}, true}, {Result{Freq: 11, Since: 1}, true}, {Result{Freq: 12, Since: 1}, true},
				{Result{Err: freqd.ErrNoFrequency}, false}, {Result{Err: freqd.ErrOutOfRange}, false},
			},
			asks: []ask{{"a", "r1", Record{}, false}, {"a", "r2", Record{}, false}},
			reqs: 0,
		},
		{
			name:  "note",
			cmds:  []Command{note("a", "r1", 7, 1), note("a", "r1", 7, 1)},
			wants: []want{{Result{Freq: 7, Since: 1}, true}, {Result{Freq: 7, Since: 1}, false}},
			asks:  []ask{{"a", "r1", Record{RecordNote, 7, 1}, true}},
			reqs:  1,
		},
		{
			name: "note replaces a released grant record and a grant replaces a note",
			cmds: []Command{
				grantReq("a", "r1", 5), release("a", 10), note("a", "r1", 7, 1),
				grantReq("a", "r1", 6), grantReq("a", "r1", 8),
			},
			wants: []want{
				{Result{Freq: 10, Since: 5}, true}, {Result{Freq: 10, Since: 5}, true}, {Result{Freq: 7, Since: 1}, true},
				{Result{Freq: 11, Since: 6}, true}, {Result{Freq: 11, Since: 6, Dup: true}, false},
			},
			asks: []ask{{"a", "r1", Record{RecordGrant, 11, 6}, true}},
			reqs: 1,
		},
		{
			name:  "note without request",
			cmds:  []Command{{Op: OpNote, Client: "a", Freq: 3, Gen: 1}},
			wants: []want{{Result{Err: freqd.ErrInvalidArgument}, false}},
		},
		{
			name:  "note without generation",
			cmds:  []Command{note("a", "r", 3, 0)},
			wants: []want{{Result{Err: freqd.ErrInvalidArgument}, false}},
		},
		{
			name:  "note with any",
			cmds:  []Command{{Op: OpNote, Client: "a", Request: "r", Any: true, Gen: 1}},
			wants: []want{{Result{Err: freqd.ErrInvalidArgument}, false}},
		},
		{
			name:  "note with home",
			cmds:  []Command{{Op: OpNote, Client: "a", Request: "r", Home: true, Gen: 1}},
			wants: []want{{Result{Err: freqd.ErrInvalidArgument}, false}},
		},
		{
			name:  "note without client",
			cmds:  []Command{note("", "r", 3, 1)},
			wants: []want{{Result{Err: freqd.ErrInvalidClientID}, false}},
		},
		{
			name: "gen and home where they do not belong",
			cmds: []Command{
				{Op: OpGrant, Client: "a", Any: true, Gen: 1},
				{Op: OpGrant, Client: "a", Freq: 10, Gen: 1},
				{Op: OpRelease, Client: "a", Freq: 10, Request: "r", Gen: 1},
				{Op: OpReleaseClient, Client: "a", Gen: 1},
				{Op: OpGrant, Client: "a", Any: true, Home: true},
				{Op: OpGrant, Client: "a", Request: "r", Freq: 10, Home: true},
				{Op: OpGrant, Client: "a", Request: "r", Any: true, Home: true, Gen: 1},
				{Op: OpRelease, Client: "a", Freq: 10, Home: true},
				{Op: OpReleaseClient, Client: "a", Home: true},
			},
			wants: []want{
				{Result{Err: freqd.ErrInvalidArgument}, false}, {Result{Err: freqd.ErrInvalidArgument}, false},
				{Result{Err: freqd.ErrInvalidArgument}, false}, {Result{Err: freqd.ErrInvalidArgument}, false},
				{Result{Err: freqd.ErrInvalidArgument}, false}, {Result{Err: freqd.ErrInvalidArgument}, false},
				{Result{Err: freqd.ErrInvalidArgument}, false}, {Result{Err: freqd.ErrInvalidArgument}, false},
				{Result{Err: freqd.ErrInvalidArgument}, false},
			},
		},
		{
			name: "a specific grant with a generation is never refused",
			cmds: []Command{
				grant("x", 10, 1), {Op: OpGrant, Client: "a", Request: "r", Freq: 10, Gen: 1},
				{Op: OpGrant, Client: "a", Request: "r", Freq: 11, Gen: 1, At: 3},
			},
			wants: []want{
				{Result{Freq: 10, Since: 1}, true}, {Result{Err: freqd.ErrAlreadyHeld}, false},
				{Result{Freq: 11, Since: 3}, true},
			},
			asks: []ask{{"a", "r", Record{RecordGrant, 11, 3}, true}},
			reqs: 1,
		},
		{
			name: "request id length",
			cmds: []Command{
				grantReq("a", strings.Repeat("r", freqd.MaxRequestIDLen+1), 1),
				grantReq("a", strings.Repeat("r", freqd.MaxRequestIDLen), 2),
			},
			wants: []want{{Result{Err: freqd.ErrInvalidArgument}, false}, {Result{Freq: 10, Since: 2}, true}},
			reqs:  1,
		},
		{
			name:  "release ignores the request",
			cmds:  []Command{grantReq("a", "r1", 5), {Op: OpRelease, Client: "a", Request: "r1", Freq: 10}},
			wants: []want{{Result{Freq: 10, Since: 5}, true}, {Result{Freq: 10, Since: 5}, true}},
			asks:  []ask{{"a", "r1", Record{}, false}},
			reqs:  1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := New(3, 10, 12)
			for i, c := range tt.cmds {
				v := p.Version()
				got := p.Apply(c)
				w := tt.wants[i]
				if w.res.Err != nil {
					if !errors.Is(got.Err, w.res.Err) || got.Freq != 0 || got.Since != 0 || got.Dup || got.Noted {
						t.Fatalf("step %d %v = %+v, want error %v", i, c, got, w.res.Err)
					}
				} else if got != w.res {
					t.Fatalf("step %d %v = %+v, want %+v", i, c, got, w.res)
				}
				if changed := p.Version() != v; changed != w.changed {
					t.Fatalf("step %d %v: version %d -> %d, want changed=%v", i, c, v, p.Version(), w.changed)
				}
				if err := p.check(); err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
			}
			for _, a := range tt.asks {
				if rec, ok := p.Request(a.client, a.request); rec != a.rec || ok != a.ok {
					t.Errorf("Request(%q, %q) = %+v %v, want %+v %v", a.client, a.request, rec, ok, a.rec, a.ok)
				}
			}
			if p.Requests() != tt.reqs {
				t.Errorf("Requests() = %d, want %d", p.Requests(), tt.reqs)
			}
			snap, err := p.Snapshot()
			if err != nil {
				t.Fatal(err)
			}
			q, err := Restore(snap)
			if err != nil || !q.Equal(p) {
				t.Fatalf("snapshot round trip: %v, equal %v", err, err == nil && q.Equal(p))
			}
		})
	}
}

func TestRequestKey(t *testing.T) {
	for _, tc := range [][2]string{{"a", "r1"}, {"client-7", ""}, {"", "x"}, {strings.Repeat("c", freqd.MaxClientIDLen), strings.Repeat("r", freqd.MaxRequestIDLen)}} {
		if got, want := requestKey(tc[0], tc[1]), xxhash.Sum64String(tc[0]+"\x00"+tc[1]); got != want {
			t.Errorf("requestKey(%q, %q) = %016x, want %016x", tc[0], tc[1], got, want)
		}
	}
	if requestKey("ab", "c") == requestKey("a", "bc") {
		t.Error("the separator does not separate")
	}
}

// TestDedupAllocs checks that answering a retry, answering a home attempt
// with its binding, recording a note into a full window (evicting) and
// advancing or losing a note's compare-and-set allocate nothing.
func TestDedupAllocs(t *testing.T) {
	p := New(0, 0, 1<<14-1)
	for i := range DedupWindow {
		p.Apply(note("c", fmt.Sprint("n", i), 1, 1))
	}
	res := p.Apply(grantReq("c", "r", 1))
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	if n := testing.AllocsPerRun(100, func() {
		if r := p.Apply(grantReq("c", "r", 2)); !r.Dup {
			t.Fatalf("retry not a dup: %+v", r)
		}
	}); n != 0 {
		t.Errorf("a retry allocates %v times", n)
	}
	fresh := make([]string, 200)
	for i := range fresh {
		fresh[i] = fmt.Sprint("m", i)
	}
	i := 0
	if n := testing.AllocsPerRun(100, func() {
		if r := p.Apply(note("c", fresh[i], 2, 1)); r.Err != nil || p.Requests() != DedupWindow {
			t.Fatalf("%+v, %d requests", r, p.Requests())
		}
		i++
	}); n != 0 {
		t.Errorf("a note into a full window allocates %v times", n)
	}
	home := Command{Op: OpGrant, Client: "c", Request: fresh[0], Any: true, Home: true, At: 3}
	if n := testing.AllocsPerRun(100, func() {
		if r := p.Apply(home); !r.Noted {
			t.Fatalf("home attempt not noted: %+v", r)
		}
	}); n != 0 {
		t.Errorf("a home attempt answered with its binding allocates %v times", n)
	}
	gen := uint32(1)
	if n := testing.AllocsPerRun(100, func() {
		gen++
		if r := p.Apply(note("c", fresh[1], 3, gen)); r.Err != nil || r.Since != int64(gen) {
			t.Fatalf("note of generation %d: %+v", gen, r)
		}
		if r := p.Apply(note("c", fresh[1], 4, gen)); r.Err != nil || r.Freq != 3 {
			t.Fatalf("stale note of generation %d: %+v", gen, r)
		}
	}); n != 0 {
		t.Errorf("advancing and losing a note allocates %v times", n)
	}
}

// TestWindowEviction fills the window past DedupWindow with grants,
// releases, retries and notes, against the reference, and checks the
// oldest records go first and a snapshot carries the full window.
func TestWindowEviction(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const size = 64
	p, r := New(2, 100, 100+size-1), newRef(2, 100, 100+size-1)
	// Run until the window is full, then half a window more, evicting.
	n, full := 4*DedupWindow, -1
	for i := 0; i < n; i++ {
		if full < 0 && p.Requests() == DedupWindow {
			full, n = i, i+DedupWindow/2
		}
		cl := testClients[rng.IntN(len(testClients))]
		req := fmt.Sprint("q", i)
		switch k := rng.IntN(10); {
		case k < 4:
			c := Command{Op: OpGrant, Client: cl, Request: req, Any: true, At: int64(i)}
			if res := step(t, p, r, c); res.Err == nil {
				// A retry, and usually a release to keep frequencies free.
				step(t, p, r, c)
				if rng.IntN(4) > 0 || p.Free() < size/4 {
					step(t, p, r, release(cl, res.Freq))
				}
			}
		case k < 6:
			// A retry of an older request, maybe evicted by now.
			old := fmt.Sprint("q", rng.IntN(i+1))
			step(t, p, r, Command{Op: OpGrant, Client: cl, Request: old, Any: true, At: int64(i)})
		default:
			step(t, p, r, note(cl, req, uint32(rng.IntN(16)), 1))
		}
		if i%1024 == 0 {
			compare(t, p, r)
		}
	}
	compare(t, p, r)
	if full < 0 || p.Requests() != DedupWindow {
		t.Fatalf("window holds %d, want full (%d)", p.Requests(), DedupWindow)
	}
	// q0 was recorded first; it is gone unless a retry recorded it again
	// (the reference decides).
	for _, cl := range testClients {
		got, ok := p.Request(cl, "q0")
		want, wok := r.request(cl, "q0")
		if got != want || ok != wok {
			t.Fatalf("Request(%q, q0) = %+v %v, reference %+v %v", cl, got, ok, want, wok)
		}
	}
	snap, err := p.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	q, err := Restore(snap)
	if err != nil {
		t.Fatal(err)
	}
	if !q.Equal(p) {
		t.Fatal("restored partition differs")
	}
	// Both keep evicting the same way after the restore.
	for i := range 100 {
		c := note("e", fmt.Sprint("after", i), 1, 1)
		p.Apply(c)
		q.Apply(c)
	}
	if !q.Equal(p) {
		t.Fatal("partitions differ after evicting past a restore")
	}
	t.Logf("%v; snapshot %d bytes", p, len(snap))
}

func TestWindowEqual(t *testing.T) {
	base := func() *Partition {
		p := New(0, 0, 7)
		p.Apply(grantReq("a", "r1", 1))
		p.Apply(note("a", "r2", 3, 1))
		return p
	}
	tests := []struct {
		name string
		q    func() *Partition
	}{
		{"other order", func() *Partition {
			p := New(0, 0, 7)
			p.Apply(note("a", "r2", 3, 1))
			p.Apply(grantReq("a", "r1", 1))
			return p
		}},
		{"other note target", func() *Partition {
			p := New(0, 0, 7)
			p.Apply(grantReq("a", "r1", 1))
			p.Apply(note("a", "r2", 4, 1))
			return p
		}},
		{"other request", func() *Partition {
			p := New(0, 0, 7)
			p.Apply(grantReq("a", "r1", 1))
			p.Apply(note("a", "r3", 3, 1))
			return p
		}},
		{"no request on the grant", func() *Partition {
			p := New(0, 0, 7)
			p.Apply(grantAny("a", 1))
			p.Apply(note("a", "r2", 3, 1))
			return p
		}},
	}
	for _, tt := range tests {
		if base().Equal(tt.q()) || tt.q().Equal(base()) {
			t.Errorf("%s: Equal = true", tt.name)
		}
	}
	if !base().Equal(base()) {
		t.Error("base not Equal to itself")
	}
}
