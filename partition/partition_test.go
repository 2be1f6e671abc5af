package partition

import (
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/freqd/freqd"
)

func grantAny(c string, at int64) Command { return Command{Op: OpGrant, Client: c, Any: true, At: at} }
func grant(c string, f uint32, at int64) Command {
	return Command{Op: OpGrant, Client: c, Freq: f, At: at}
}
func release(c string, f uint32) Command { return Command{Op: OpRelease, Client: c, Freq: f, At: 999} }

func TestApply(t *testing.T) {
	long := strings.Repeat("x", freqd.MaxClientIDLen+1)
	tests := []struct {
		name     string
		setup    []Command // applied first, each must succeed
		cmd      Command
		want     Result // Err: sentinel to match with errors.Is
		freeTail []uint32
		holders  map[uint32]string // expected holders after
		changed  bool              // version went up
	}{
		{name: "grant any takes lowest first", cmd: grantAny("a", 5),
			want: Result{Freq: 10, Since: 5}, changed: true, holders: map[uint32]string{10: "a"}},
		{name: "grant any FIFO after release",
			setup: []Command{grantAny("a", 1), grantAny("b", 2), release("a", 10)},
			cmd:   grantAny("c", 3), want: Result{Freq: 12, Since: 3}, changed: true,
			holders: map[uint32]string{11: "b", 12: "c"}, freeTail: []uint32{13, 14, 15, 10}},
		{name: "grant any full",
			setup: []Command{grantAny("a", 1), grantAny("a", 1), grantAny("a", 1), grantAny("b", 1), grantAny("b", 1), grantAny("b", 1)},
			cmd:   grantAny("c", 2), want: Result{Err: freqd.ErrNoFrequency}},
		{name: "grant any ignores freq", cmd: Command{Op: OpGrant, Client: "a", Any: true, Freq: 99, At: 4},
			want: Result{Freq: 10, Since: 4}, changed: true},
		{name: "grant specific free", cmd: grant("a", 13, 7),
			want: Result{Freq: 13, Since: 7}, changed: true, holders: map[uint32]string{13: "a"},
			freeTail: []uint32{10, 11, 12, 14, 15}},
		{name: "grant specific idempotent", setup: []Command{grant("a", 13, 7)}, cmd: grant("a", 13, 50),
			want: Result{Freq: 13, Since: 7}, holders: map[uint32]string{13: "a"}},
		{name: "grant specific held by other", setup: []Command{grant("a", 13, 7)}, cmd: grant("b", 13, 8),
			want: Result{Err: freqd.ErrAlreadyHeld}, holders: map[uint32]string{13: "a"}},
		{name: "grant specific below range", cmd: grant("a", 9, 1), want: Result{Err: freqd.ErrOutOfRange}},
		{name: "grant specific above range", cmd: grant("a", 16, 1), want: Result{Err: freqd.ErrOutOfRange}},
		{name: "grant specific last", cmd: grant("a", 15, 1), want: Result{Freq: 15, Since: 1}, changed: true},
		{name: "release held", setup: []Command{grant("a", 12, 3)}, cmd: release("a", 12),
			want: Result{Freq: 12, Since: 3}, changed: true, freeTail: []uint32{10, 11, 13, 14, 15, 12}},
		{name: "release free", cmd: release("a", 12), want: Result{Err: freqd.ErrNotHeld},
			freeTail: []uint32{10, 11, 12, 13, 14, 15}},
		{name: "release held by other", setup: []Command{grant("a", 12, 3)}, cmd: release("b", 12),
			want: Result{Err: freqd.ErrNotHolder}, holders: map[uint32]string{12: "a"}},
		{name: "release out of range", cmd: release("a", 100), want: Result{Err: freqd.ErrOutOfRange}},
		{name: "release with any", cmd: Command{Op: OpRelease, Client: "a", Any: true, Freq: 10},
			want: Result{Err: freqd.ErrInvalidArgument}},
		{name: "unknown op", cmd: Command{Op: 9, Client: "a", Freq: 10}, want: Result{Err: freqd.ErrInvalidArgument}},
		{name: "zero op", cmd: Command{Client: "a", Freq: 10}, want: Result{Err: freqd.ErrInvalidArgument}},
		{name: "empty client", cmd: grantAny("", 1), want: Result{Err: freqd.ErrInvalidClientID}},
		{name: "long client", cmd: grantAny(long, 1), want: Result{Err: freqd.ErrInvalidClientID}},
		{name: "max client", cmd: grantAny(long[1:], 1), want: Result{Freq: 10, Since: 1}, changed: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := New(3, 10, 15)
			for _, c := range tt.setup {
				if res := p.Apply(c); res.Err != nil {
					t.Fatalf("setup %v: %v", c, res.Err)
				}
			}
			v := p.Version()
			got := p.Apply(tt.cmd)
			if tt.want.Err != nil {
				if !errors.Is(got.Err, tt.want.Err) {
					t.Fatalf("Apply(%v) err = %v, want %v", tt.cmd, got.Err, tt.want.Err)
				}
				if !strings.Contains(got.Err.Error(), "partition 3") {
					t.Errorf("error %q does not name the partition", got.Err)
				}
				if got.Freq != 0 || got.Since != 0 {
					t.Errorf("failed Apply returned freq %d since %d", got.Freq, got.Since)
				}
			} else if got != tt.want {
				t.Fatalf("Apply(%v) = %+v, want %+v", tt.cmd, got, tt.want)
			}
			if changed := p.Version() != v; changed != tt.changed {
				t.Fatalf("version %d -> %d, want changed=%v", v, p.Version(), tt.changed)
			}
			if tt.freeTail != nil && !slices.Equal(p.FreeOrder(), tt.freeTail) {
				t.Fatalf("free order %v, want %v", p.FreeOrder(), tt.freeTail)
			}
			for f, want := range tt.holders {
				if c, _, held, err := p.Holder(f); err != nil || !held || c != want {
					t.Fatalf("Holder(%d) = %q, %v, %v; want %q", f, c, held, err, want)
				}
			}
			if err := p.check(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestReleaseTwice(t *testing.T) {
	p := New(0, 10, 15)
	r := p.Apply(grantAny("a", 1))
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	if res := p.Apply(release("a", r.Freq)); res.Err != nil {
		t.Fatal(res.Err)
	}
	v := p.Version()
	for range 3 {
		if res := p.Apply(release("a", r.Freq)); !errors.Is(res.Err, freqd.ErrNotHeld) {
			t.Fatalf("second release: %v, want ErrNotHeld", res.Err)
		}
	}
	if p.Version() != v || p.Free() != 6 {
		t.Fatalf("second release changed state: version %d free %d", p.Version(), p.Free())
	}
	// The seed's bug: the frequency would be on the free list twice and go
	// to two clients. Grant everything and check all six are distinct.
	seen := map[uint32]bool{}
	for i := range 6 {
		res := p.Apply(grantAny(string(rune('a'+i)), 2))
		if res.Err != nil || seen[res.Freq] {
			t.Fatalf("grant %d: %+v (seen %v)", i, res, seen)
		}
		seen[res.Freq] = true
	}
	if res := p.Apply(grantAny("z", 3)); !errors.Is(res.Err, freqd.ErrNoFrequency) {
		t.Fatalf("seventh grant: %+v", res)
	}
}

func TestHolderHeldBy(t *testing.T) {
	p := New(1, 100, 109)
	for _, c := range []Command{grant("a", 105, 1), grantAny("a", 2), grant("b", 109, 3), grantAny("a", 4)} {
		if res := p.Apply(c); res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	if got := p.HeldBy("a"); !slices.Equal(got, []uint32{105, 100, 101}) {
		t.Fatalf("HeldBy(a) = %v, want grant order [105 100 101]", got)
	}
	if got := p.HeldBy("nobody"); got != nil {
		t.Fatalf("HeldBy(nobody) = %v", got)
	}
	if c, since, held, err := p.Holder(109); c != "b" || since != 3 || !held || err != nil {
		t.Fatalf("Holder(109) = %q %d %v %v", c, since, held, err)
	}
	if c, since, held, err := p.Holder(108); c != "" || since != 0 || held || err != nil {
		t.Fatalf("Holder(108) = %q %d %v %v", c, since, held, err)
	}
	if _, _, _, err := p.Holder(99); !errors.Is(err, freqd.ErrOutOfRange) {
		t.Fatalf("Holder(99) err = %v", err)
	}
	if res := p.Apply(release("a", 100)); res.Err != nil {
		t.Fatal(res.Err)
	}
	if got := p.HeldBy("a"); !slices.Equal(got, []uint32{105, 101}) {
		t.Fatalf("HeldBy(a) after release = %v", got)
	}
	// Dropping a client frees its slot; it is reused.
	p.Apply(release("b", 109))
	if p.Clients() != 1 || len(p.freeSlots) != 1 {
		t.Fatalf("clients %d, free slots %v", p.Clients(), p.freeSlots)
	}
	p.Apply(grantAny("c", 5))
	if len(p.clients) != 3 || len(p.freeSlots) != 0 {
		t.Fatalf("slot not reused: %d slots, free %v", len(p.clients), p.freeSlots)
	}
	if p.ID() != 1 || p.First() != 100 || p.Last() != 109 || p.Size() != 10 {
		t.Fatalf("accessors: %v", p)
	}
	if err := p.check(); err != nil {
		t.Fatal(err)
	}
}

func TestInternDoesNotPinCaller(t *testing.T) {
	buf := []byte("client-1")
	p := New(0, 0, 3)
	p.Apply(grantAny(string(buf), 0))
	id := p.clients[1].id
	buf[0] = 'X'
	if id != "client-1" {
		t.Fatalf("interned id changed to %q", id)
	}
}

func TestNewEdges(t *testing.T) {
	p := New(0, math.MaxUint32, math.MaxUint32)
	if r := p.Apply(grantAny("a", 1)); r.Err != nil || r.Freq != math.MaxUint32 {
		t.Fatalf("%+v", r)
	}
	if r := p.Apply(grantAny("a", 1)); !errors.Is(r.Err, freqd.ErrNoFrequency) {
		t.Fatalf("%+v", r)
	}
	for _, bad := range []struct {
		id          int
		first, last uint32
	}{{-1, 0, 1}, {0, 5, 4}, {0, 0, MaxSize}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("New(%v) did not panic", bad)
				}
			}()
			New(bad.id, bad.first, bad.last)
		}()
	}
}

// testTTLs are the lease TTLs randomCommand draws from: mostly valid,
// with no lease the most common, a few equal ones and the bounds.
var testTTLs = []time.Duration{0, 0, 0, 0, MinTTL, MinTTL, 2 * time.Second, 1500 * time.Millisecond, 30 * time.Second, MaxTTL}

// badTTLs are invalid TTLs.
var badTTLs = []time.Duration{-time.Second, MinTTL - time.Millisecond, MaxTTL + time.Millisecond, time.Second + time.Microsecond, 1}

// randomTTL returns a TTL from testTTLs, or rarely from badTTLs.
func randomTTL(rng *rand.Rand) time.Duration {
	if rng.IntN(50) == 0 {
		return badTTLs[rng.IntN(len(badTTLs))]
	}
	return testTTLs[rng.IntN(len(testTTLs))]
}

// randomCommand draws a command biased towards interesting cases: request
// ids from a small set, so retries and replaced records are common; lease
// TTLs from a small set, so client releases by TTL split a client's
// frequencies; home attempts, bound attempts and notes of generations
// 1-3 (and rarely 0 or misplaced), so bindings race, lose, advance and
// are refused.
func randomCommand(rng *rand.Rand, first, last uint32, at int64) Command {
	c := Command{Client: testClients[rng.IntN(len(testClients))], At: at}
	if rng.IntN(3) > 0 {
		c.Request = testRequests[rng.IntN(len(testRequests))]
	}
	span := int(last - first + 1)
	f := first + uint32(rng.IntN(span))
	switch rng.IntN(20) {
	case 0:
		f = first - 1
	case 1:
		f = last + 1
	}
	c.Freq = f
	switch k := rng.IntN(200); {
	case k < 68:
		c.Op, c.Any, c.TTL = OpGrant, true, randomTTL(rng)
	case k < 108:
		c.Op, c.TTL = OpGrant, randomTTL(rng)
	case k < 118:
		c.Op, c.Freq = OpNote, uint32(rng.IntN(4))
	case k < 186:
		c.Op = OpRelease
	case k < 192:
		// Mostly well formed: no request, no frequency.
		c.Op, c.TTL, c.Request = OpReleaseClient, randomTTL(rng), ""
		if rng.IntN(10) > 0 {
			c.Freq = 0
		}
	case k < 194:
		c.Op = Op(rng.IntN(256))
	case k < 196:
		c.Client = ""
	case k < 198:
		// A valid TTL on any op; only grant and release-client allow it.
		c.Op, c.TTL = Op(1+rng.IntN(4)), MinTTL
	default:
		c.Op, c.Any = OpRelease, true
	}
	switch {
	case c.Op == OpGrant && c.Request != "":
		switch rng.IntN(8) {
		case 0, 1, 2:
			c.Home = c.Any || rng.IntN(8) == 0 // rarely on a specific grant
		case 3, 4, 5:
			c.Gen = uint32(1 + rng.IntN(3))
		}
	case c.Op == OpNote:
		c.Gen = uint32(1 + rng.IntN(3))
		if rng.IntN(30) == 0 {
			c.Gen = 0
		}
	}
	switch rng.IntN(200) {
	case 0:
		c.Gen = 1 // valid only on a note or a grant with a request
	case 1:
		c.Home = true // valid only on a home attempt
	}
	return c
}

// TestModel runs seeded random command sequences against the reference
// model and compares every result and, periodically, the whole state. It
// also checks that the sequences reach the interesting client releases.
func TestModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(42, 7))
	var all, expired, partial, none int // client release outcomes
	// Binding outcomes: a home attempt answered with its binding; a bound
	// attempt refused (recorded), refused again, refused again although
	// frequencies are free (a late copy); a note that set the binding,
	// lost to another, met a home grant, or found no binding to advance.
	var noted, refused, again, late, set, lost, dup, unavailable int
	for iter := range 200 {
		first := uint32(1 + rng.IntN(1000))
		last := first + uint32(rng.IntN(20))
		p, r := New(iter, first, last), newRef(iter, first, last)
		for i := range 300 {
			c := randomCommand(rng, first, last, int64(i))
			v := p.Version()
			res := step(t, p, r, c)
			changed := p.Version() != v
			switch {
			case res.Noted:
				noted++
			case c.Op == OpGrant && c.Gen > 0 && errors.Is(res.Err, freqd.ErrNoFrequency) && changed:
				refused++
			case c.Op == OpGrant && c.Gen > 0 && errors.Is(res.Err, freqd.ErrNoFrequency) && p.Free() > 0:
				late++
			case c.Op == OpGrant && c.Gen > 0 && errors.Is(res.Err, freqd.ErrNoFrequency):
				again++
			case c.Op == OpNote && errors.Is(res.Err, freqd.ErrUnavailable):
				unavailable++
			case c.Op == OpNote && res.Err == nil && res.Dup:
				dup++
			case c.Op == OpNote && res.Err == nil && changed:
				set++
			case c.Op == OpNote && res.Err == nil:
				lost++
			}
			if c.Op == OpReleaseClient && res.Err == nil {
				switch {
				case res.Freq == 0:
					none++
				case c.TTL == 0:
					all++
				case p.HeldBy(c.Client) != nil:
					partial++ // some kept: unleased or longer leases
				default:
					expired++
				}
			}
			if i%17 == 0 {
				compare(t, p, r)
			}
		}
		compare(t, p, r)
	}
	t.Logf("client releases: %d all, %d expired all, %d expired some, %d released nothing", all, expired, partial, none)
	if all < 50 || expired < 20 || partial < 20 || none < 20 {
		t.Fatal("the random commands no longer cover client releases well")
	}
	t.Logf("bindings: %d noted, %d refused, %d refused again, %d late copies refused, notes %d set, %d lost, %d dup, %d unavailable",
		noted, refused, again, late, set, lost, dup, unavailable)
	if noted < 20 || refused < 20 || again < 10 || late < 10 || set < 50 || lost < 20 || dup < 10 || unavailable < 20 {
		t.Fatal("the random commands no longer cover bindings well")
	}
}

// TestDeterminism feeds two partitions the same commands, and a third that
// is snapshotted and restored midway; all three must stay Equal and produce
// identical snapshots.
func TestDeterminism(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	a, b := New(5, 1000, 1063), New(5, 1000, 1063)
	c := New(5, 1000, 1063)
	for i := range 5000 {
		cmd := randomCommand(rng, 1000, 1063, int64(i)*1e6)
		ra, rb, rc := a.Apply(cmd), b.Apply(cmd), c.Apply(cmd)
		if ra.Freq != rb.Freq || ra.Since != rb.Since || ra.Dup != rb.Dup || ra.Noted != rb.Noted || (ra.Err == nil) != (rb.Err == nil) ||
			ra.Freq != rc.Freq || ra.Since != rc.Since || ra.Dup != rc.Dup || ra.Noted != rc.Noted || (ra.Err == nil) != (rc.Err == nil) {
			t.Fatalf("step %d %v: results %+v %+v %+v", i, cmd, ra, rb, rc)
		}
		if i%500 == 250 {
			snap, err := c.Snapshot()
			if err != nil {
				t.Fatal(err)
			}
			c, err = Restore(snap)
			if err != nil {
				t.Fatalf("step %d: restore: %v", i, err)
			}
			if !c.Equal(a) {
				t.Fatalf("step %d: restored partition differs", i)
			}
		}
		if i%100 == 0 {
			sa, _ := a.Snapshot()
			sc, _ := c.Snapshot()
			if string(sa) != string(sc) {
				t.Fatalf("step %d: snapshots differ", i)
			}
		}
	}
	if !a.Equal(b) || !a.Equal(c) || !c.Equal(a) {
		t.Fatal("partitions fed the same commands differ")
	}
	sa, _ := a.Snapshot()
	sb, _ := b.Snapshot()
	if string(sa) != string(sb) {
		t.Fatal("snapshots differ")
	}
	// Equal notices a difference.
	if res := b.Apply(grant("zz", b.First(), 1)); res.Err == nil && (a.Equal(b) || b.Equal(a)) {
		t.Fatal("Equal missed a grant")
	}
	if res := b.Apply(release("zz", b.First())); res.Err == nil && (a.Equal(b) || b.Equal(a)) {
		t.Fatal("Equal missed a release (version and free order differ)")
	}
}

func TestEqualDetectsDifferences(t *testing.T) {
	base := func() *Partition {
		p := New(0, 0, 7)
		p.Apply(grant("a", 1, 10))
		p.Apply(grant("a", 2, 11))
		p.Apply(grant("b", 3, 12))
		return p
	}
	tests := []struct {
		name string
		q    func() *Partition
	}{
		{"other id", func() *Partition {
			p := New(1, 0, 7)
			p.Apply(grant("a", 1, 10))
			p.Apply(grant("a", 2, 11))
			p.Apply(grant("b", 3, 12))
			return p
		}},
		{"other since", func() *Partition { p := base(); p.Apply(release("b", 3)); p.Apply(grant("b", 3, 13)); return p }},
		{"other holder", func() *Partition {
			p := New(0, 0, 7)
			p.Apply(grant("a", 1, 10))
			p.Apply(grant("a", 2, 11))
			p.Apply(grant("c", 3, 12))
			return p
		}},
		{"other grant order", func() *Partition {
			p := New(0, 0, 7)
			p.Apply(grant("a", 2, 11))
			p.Apply(grant("a", 1, 10))
			p.Apply(grant("b", 3, 12))
			return p
		}},
		{"other free order", func() *Partition {
			p := base()
			p.Apply(grant("c", 0, 1))
			p.Apply(grant("c", 4, 1))
			p.Apply(release("c", 4))
			p.Apply(release("c", 0))
			p.version -= 4
			return p
		}},
		{"other version", func() *Partition { p := base(); p.version++; return p }},
		{"other ttl", func() *Partition {
			p := New(0, 0, 7)
			p.Apply(grant("a", 1, 10))
			p.Apply(Command{Op: OpGrant, Client: "a", Freq: 2, At: 11, TTL: time.Second})
			p.Apply(grant("b", 3, 12))
			return p
		}},
		{"nil", func() *Partition { return nil }},
	}
	for _, tt := range tests {
		if base().Equal(tt.q()) {
			t.Errorf("%s: Equal = true", tt.name)
		}
	}
	if !base().Equal(base()) {
		t.Error("base not Equal to itself")
	}
}

func TestSnapshotRestore(t *testing.T) {
	p := New(7, 500, 599)
	rng := rand.New(rand.NewPCG(1, 1))
	for i := range 400 {
		p.Apply(randomCommand(rng, 500, 599, int64(i)-200)) // negative times too
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
	snap2, _ := q.Snapshot()
	if string(snap) != string(snap2) {
		t.Fatal("snapshot of restored partition differs")
	}
	// Every single-bit flip is caught (by the checksum at least).
	for i := range len(snap) * 8 {
		bad := slices.Clone(snap)
		bad[i/8] ^= 1 << (i % 8)
		if _, err := Restore(bad); !errors.Is(err, freqd.ErrInvalidArgument) {
			t.Fatalf("flip bit %d: err %v", i, err)
		}
	}
	for _, n := range []int{0, 1, 4, 5, len(snap) - 1} {
		if _, err := Restore(snap[:n]); !errors.Is(err, freqd.ErrInvalidArgument) {
			t.Fatalf("truncated to %d: err %v", n, err)
		}
	}
}

// TestRestoreRejects builds corrupt bodies with a valid checksum, so the
// structural checks (not the CRC) must catch them. Bodies are version 4
// unless the case says v2 or v3.
func TestRestoreRejects(t *testing.T) {
	u := func(vs ...uint64) []byte {
		var b []byte
		for _, v := range vs {
			b = appendUvarint(b, v)
		}
		return b
	}
	z := func(vs ...int64) []byte {
		var b []byte
		for _, v := range vs {
			b = appendVarint(b, v)
		}
		return b
	}
	cat := func(parts ...[]byte) []byte { return slices.Concat(parts...) }
	hdrV := func(v byte, first, last, version, nfree uint64) []byte {
		return cat([]byte{v}, u(0, first, last, version, nfree))
	}
	hdr := func(first, last, version, nfree uint64) []byte { return hdrV(4, first, last, version, nfree) }
	// held is one held frequency in version 3 or 4: offset delta, grant
	// time, TTL in ms.
	held := func(d, since int64, ttl uint64) []byte { return cat(z(d, since), u(ttl)) }
	key := func(k uint64) []byte { return binary.LittleEndian.AppendUint64(nil, k) }
	rec := func(k uint64, kind byte, value uint64, since int64) []byte {
		return cat(key(k), []byte{kind}, u(value), z(since))
	}
	// oneHeld is a body up to the window: 10-12, 11 held by "a" since 77
	// with a 5s lease, version 5; oneHeldV3 is the same in format 3.
	oneHeld := cat(hdr(10, 12, 5, 2), z(1, 2), u(1, 1), []byte("a"), u(1), held(2, 77, 5000))
	oneHeldV3 := cat(hdrV(3, 10, 12, 5, 2), z(1, 2), u(1, 1), []byte("a"), u(1), held(2, 77, 5000))
	many := u(DedupWindow + 1)
	for i := range DedupWindow + 1 {
		many = append(many, rec(uint64(i), 2, 1, 1)...)
	}
	tests := []struct {
		name, want string
		body       []byte
		win        []byte // the window section; nil means none (count 0)
	}{
		{"valid all free", "", cat(hdr(10, 12, 0, 3), z(1, 1, 1), u(0)), nil},
		{"valid one held", "", cat(hdr(10, 12, 1, 2), z(1, 1), u(1, 1), []byte("a"), u(1), held(3, 77, 0)), nil},
		{"valid leases", "", cat(hdr(10, 12, 3, 0), u(2, 1), []byte("a"), u(2), held(3, 77, 1000), held(-2, 78, 86_400_000), u(1), []byte("b"), u(1), held(2, 79, 0)), nil},
		{"valid window", "", oneHeld, cat(u(4), rec(7, 1, 11, 77), rec(1<<63, 2, 4, 1), rec(9, 1, 12, -3), rec(8, 3, 2, 0))},
		{"valid window note max", "", oneHeld, cat(u(1), rec(7, 2, math.MaxUint32, math.MaxUint32))},
		{"valid window refused max", "", oneHeld, cat(u(2), rec(7, 3, math.MaxUint32, 0), rec(8, 3, 1, 0))},
		{"valid v3 window", "", oneHeldV3, cat(u(3), rec(7, 1, 11, 77), rec(1<<63, 2, 4, 0), rec(8, 2, 0, 0))},
		{"valid v2 all free", "", cat(hdrV(2, 10, 12, 0, 3), z(1, 1, 1), u(0)), nil},
		{"valid v2 held", "", cat(hdrV(2, 10, 12, 3, 0), u(2, 1), []byte("a"), u(2), z(3, 77), z(-2, 78), u(1), []byte("b"), u(1), z(2, 79)), cat(u(1), rec(7, 1, 11, 77))},
		{"bad version 1", "unknown version 1", cat(hdrV(1, 10, 12, 0, 3), z(1, 1, 1), u(0)), nil},
		{"bad version 5", "unknown version 5", cat(hdrV(5, 10, 12, 0, 3), z(1, 1, 1), u(0)), nil},
		{"bad version 0", "unknown version 0", cat(hdrV(0, 10, 12, 0, 3), z(1, 1, 1), u(0)), nil},
		{"ttl below min", "frequency 11: lease ttl 999 ms is neither 0 nor in 1s..24h0m0s", cat(hdr(10, 12, 1, 2), z(1, 2), u(1, 1), []byte("a"), u(1), held(2, 77, 999)), nil},
		{"ttl above max", "lease ttl 86400001 ms", cat(hdr(10, 12, 1, 2), z(1, 2), u(1, 1), []byte("a"), u(1), held(2, 77, 86_400_001)), nil},
		{"ttl too big", "lease ttl 18446744073709551615 ms", cat(hdr(10, 12, 1, 2), z(1, 2), u(1, 1), []byte("a"), u(1), held(2, 77, math.MaxUint64)), nil},
		{"ttl non-minimal", "lease ttl: non-minimal", cat(hdr(10, 12, 1, 2), z(1, 2), u(1, 1), []byte("a"), u(1), z(2, 77), []byte{0x80, 0x00}), nil},
		{"ttl missing", "lease ttl: unexpected end", cat(hdr(10, 12, 1, 2), z(1, 2), u(1, 1), []byte("a"), u(1), z(2, 77)), []byte{}},
		// The TTL byte 0 is read as the window count; the real count 0 is trailing.
		{"v3 body labelled v2", "1 trailing bytes", cat(hdrV(2, 10, 12, 1, 2), z(1, 2), u(1, 1), []byte("a"), u(1), held(2, 77, 0)), nil},
		{"window over capacity", "8193 request records: more than 8192", cat(hdr(0, 0, 1<<20, 1), z(1), u(0)), many},
		{"window short", "does not fit", oneHeld, cat(u(2), rec(7, 1, 11, 77))},
		{"window record truncated", "request time: unexpected end", oneHeld, cat(u(1), rec(7, 1, 11, 1<<62)[:15])},
		{"window missing", "request count: unexpected end", oneHeld, []byte{}},
		{"version below records", "version 1 is below the 2 request records", cat(hdr(10, 12, 1, 2), z(1, 2), u(1, 1), []byte("a"), u(1), held(2, 77, 0)), cat(u(2), rec(1, 2, 0, 1), rec(2, 2, 0, 1))},
		{"duplicate key", "appears twice", oneHeld, cat(u(2), rec(7, 2, 1, 1), rec(7, 1, 11, 77))},
		{"duplicate key of a refusal", "appears twice", oneHeld, cat(u(2), rec(7, 3, 1, 0), rec(7, 2, 1, 1))},
		{"kind zero", "unknown record kind(0)", oneHeld, cat(u(1), rec(7, 0, 11, 77))},
		{"kind four", "unknown record kind(4)", oneHeld, cat(u(1), rec(7, 4, 11, 77))},
		{"v3 refused", "unknown record refused in a version 3 snapshot", oneHeldV3, cat(u(1), rec(7, 3, 1, 0))},
		{"v2 refused", "unknown record refused in a version 2 snapshot", cat(hdrV(2, 10, 12, 1, 3), z(1, 1, 1), u(0)), cat(u(1), rec(7, 3, 1, 0))},
		{"grant below range", "grant record of frequency 9 outside 10-12", oneHeld, cat(u(1), rec(7, 1, 9, 77))},
		{"grant above range", "grant record of frequency 13 outside 10-12", oneHeld, cat(u(1), rec(7, 1, 13, 77))},
		{"note of generation 0", "note record with generation 0, not in 1..4294967295", oneHeld, cat(u(1), rec(7, 2, 1, 0))},
		{"note of negative generation", "note record with generation -1", oneHeld, cat(u(1), rec(7, 2, 1, -1))},
		{"note generation too big", "note record with generation 4294967296", oneHeld, cat(u(1), rec(7, 2, 1, 1<<32))},
		{"v3 note with time", "note record with time 5", oneHeldV3, cat(u(1), rec(7, 2, 1, 5))},
		{"v3 note with time 1", "note record with time 1", oneHeldV3, cat(u(1), rec(7, 2, 1, 1))},
		{"refused generation 0", "refused record of generation 0 with time 0", oneHeld, cat(u(1), rec(7, 3, 0, 0))},
		{"refused with time", "refused record of generation 2 with time 5", oneHeld, cat(u(1), rec(7, 3, 2, 5))},
		{"refused generation too big", "value 4294967296", oneHeld, cat(u(1), rec(7, 3, 1<<32, 0))},
		{"note value too big", "value 4294967296", oneHeld, cat(u(1), rec(7, 2, 1<<32, 1))},
		{"non-minimal record value", "non-minimal", oneHeld, cat(u(1), key(7), []byte{2, 0x80, 0x00}, z(1))},
		{"non-minimal note generation", "request time: non-minimal", oneHeld, cat(u(1), key(7), []byte{2, 1, 0x82, 0x00})},
		{"trailing after window", "1 trailing bytes", oneHeld, cat(u(1), rec(7, 2, 1, 1), []byte{0})},
		{"reversed range", "bad range", cat(hdr(12, 10, 0, 3), z(1, 1, 1), u(0)), nil},
		{"range too big for input", "does not fit", cat(hdr(0, 1000, 0, 1), z(1), u(0)), nil},
		{"missing frequency", "neither free nor held", cat(hdr(10, 12, 1, 2), z(1, 1), u(0)), nil},
		{"duplicate free", "appears twice", cat(hdr(10, 12, 0, 3), z(1, 0, 1), u(0)), nil},
		{"free out of range", "out of range", cat(hdr(10, 12, 0, 3), z(1, 1, 5), u(0)), nil},
		{"negative offset", "out of range", cat(hdr(10, 12, 0, 3), z(-3, 1, 1), u(0)), nil},
		{"trailing", "trailing", cat(hdr(10, 12, 0, 3), z(1, 1, 1), u(0), []byte{0}), nil},
		{"non-minimal varint", "non-minimal", cat([]byte{4}, []byte{0x80, 0x00}, u(10, 12, 0, 3), z(1, 1, 1), u(0)), nil},
		{"empty client id", "id length 0", cat(hdr(10, 12, 1, 2), z(1, 1), u(1, 0), u(1), held(1, 77, 0)), nil},
		{"client holds nothing", "held count 0", cat(hdr(10, 12, 1, 2), z(1, 1), u(1, 1), []byte("a"), u(0)), nil},
		{"version below held", "version 0 is below", cat(hdr(10, 12, 0, 2), z(1, 1), u(1, 1), []byte("a"), u(1), held(1, 77, 0)), nil},
		{"held twice", "appears twice", cat(hdr(10, 12, 2, 1), z(1), u(2, 1), []byte("a"), u(1), held(3, 5, 0), u(1), []byte("b"), u(1), held(1, 6, 0)), nil},
		{"unsorted clients", "not sorted", cat(hdr(10, 12, 2, 1), z(1), u(2, 1), []byte("b"), u(1), held(2, 5, 0), u(1), []byte("a"), u(1), held(3, 6, 0)), nil},
		{"duplicate clients", "not sorted", cat(hdr(10, 12, 2, 1), z(1), u(2, 1), []byte("a"), u(1), held(2, 5, 0), u(1), []byte("a"), u(1), held(3, 6, 0)), nil},
		{"too many clients", "clients for", cat(hdr(10, 12, 1, 2), z(1, 1), u(2, 1), []byte("a"), u(1), held(1, 77, 0)), nil},
		{"count too large", "held count 2", cat(hdr(10, 12, 1, 2), z(1, 1), u(1, 1), []byte("a"), u(2), held(1, 77, 0)), nil},
		{"short", "end of data", cat(hdr(10, 12, 1, 2), z(1, 1), u(1, 1), []byte("a"), u(1), z(3)), nil},
		{"long client id", "id length 257", cat(hdr(10, 12, 1, 2), z(1, 1), u(1, 257), make([]byte, 257), u(1), held(1, 77, 0)), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			win := tt.win
			if win == nil {
				win = u(0)
			}
			b := withCRC(cat(tt.body, win))
			p, err := Restore(b)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Restore: %v", err)
				}
				if err := p.check(); err != nil {
					t.Fatal(err)
				}
				again, _ := p.Snapshot()
				if b[0] == snapshotVersion {
					if string(again) != string(b) {
						t.Fatalf("re-snapshot differs:\n%x\n%x", again, b)
					}
					return
				}
				// Version 2 has no leases; in versions 2 and 3 every
				// note is generation 1. The snapshot is version 4 and
				// restores to the same state.
				for f := uint64(p.First()); f <= uint64(p.Last()); f++ {
					if ttl := p.TTL(uint32(f)); ttl != 0 && b[0] == snapshotVersionV2 {
						t.Fatalf("v2 snapshot restored with TTL(%d) = %v", f, ttl)
					}
				}
				for _, x := range windowOf(p) {
					if x.kind == RecordNote && x.since != 1 {
						t.Fatalf("v%d note restored at generation %d, want 1", b[0], x.since)
					}
				}
				q, err := Restore(again)
				if again[0] != snapshotVersion || err != nil || !q.Equal(p) {
					t.Fatalf("re-snapshot of a v%d snapshot: version %d, %v, equal %v", b[0], again[0], err, err == nil && q.Equal(p))
				}
				return
			}
			if err == nil || !errors.Is(err, freqd.ErrInvalidArgument) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Restore err = %v, want ErrInvalidArgument containing %q", err, tt.want)
			}
		})
	}
}

// A release that names its grant by Since ends only that grant: a delayed
// copy of it cannot end a later grant of the same frequency.
func TestReleaseOfANamedGrant(t *testing.T) {
	p := New(0, 10, 12)
	g := func(at int64) Command { return Command{Op: OpGrant, Client: "a", Freq: 10, At: at} }
	rel := func(since int64) Command { return Command{Op: OpRelease, Client: "a", Freq: 10, Since: since} }
	steps := []struct {
		cmd  Command
		want error
		held bool // after the step
	}{
		{g(100), nil, true},
		{rel(99), freqd.ErrNotHeld, true}, // not this grant
		{rel(100), nil, false},
		{g(200), nil, true},
		{rel(100), freqd.ErrNotHeld, true}, // the delayed duplicate
		{rel(0), nil, false},               // any grant
	}
	for i, st := range steps {
		res := p.Apply(st.cmd)
		if !errors.Is(res.Err, st.want) || (st.want == nil) != (res.Err == nil) {
			t.Fatalf("step %d %v: err %v, want %v", i, st.cmd, res.Err, st.want)
		}
		if _, _, held, _ := p.Holder(10); held != st.held {
			t.Fatalf("step %d %v: held %v, want %v", i, st.cmd, held, st.held)
		}
	}
}
