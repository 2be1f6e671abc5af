package partition

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/freqd/freqd"
)

func grantTTL(c string, f uint32, ttl time.Duration) Command {
	return Command{Op: OpGrant, Client: c, Freq: f, At: int64(f), TTL: ttl}
}

func releaseClient(c string, ttl time.Duration) Command {
	return Command{Op: OpReleaseClient, Client: c, At: 1000, TTL: ttl}
}

// leases is the setup of TestReleaseClient on 10-19: "a" holds 14 (1s),
// 11 (no lease), 12 (2s), 10 (3s), in that grant order; "b" holds 13 (1s)
// and 15 (no lease).
var leases = []Command{
	grantTTL("a", 14, time.Second), grantTTL("a", 11, 0), grantTTL("b", 13, time.Second),
	grantTTL("a", 12, 2*time.Second), grantTTL("a", 10, 3*time.Second), grantTTL("b", 15, 0),
}

func TestReleaseClient(t *testing.T) {
	tests := []struct {
		name     string
		cmd      Command
		want     uint32 // released
		err      error  // sentinel
		errText  string
		heldA    []uint32
		heldB    []uint32
		freeTail []uint32 // the end of the free queue
	}{
		{name: "all", cmd: releaseClient("a", 0), want: 4, heldB: []uint32{13, 15}, freeTail: []uint32{19, 14, 11, 12, 10}},
		{name: "all of b", cmd: releaseClient("b", 0), want: 2, heldA: []uint32{14, 11, 12, 10}, freeTail: []uint32{19, 13, 15}},
		{name: "leases up to 1s", cmd: releaseClient("a", time.Second), want: 1,
			heldA: []uint32{11, 12, 10}, heldB: []uint32{13, 15}, freeTail: []uint32{19, 14}},
		{name: "leases up to 2.5s", cmd: releaseClient("a", 2500*time.Millisecond), want: 2,
			heldA: []uint32{11, 10}, heldB: []uint32{13, 15}, freeTail: []uint32{19, 14, 12}},
		{name: "leases up to max", cmd: releaseClient("a", MaxTTL), want: 3,
			heldA: []uint32{11}, heldB: []uint32{13, 15}, freeTail: []uint32{19, 14, 12, 10}},
		{name: "leases of b", cmd: releaseClient("b", MaxTTL), want: 1,
			heldA: []uint32{14, 11, 12, 10}, heldB: []uint32{15}, freeTail: []uint32{19, 13}},
		{name: "unknown client", cmd: releaseClient("z", 0), want: 0,
			heldA: []uint32{14, 11, 12, 10}, heldB: []uint32{13, 15}, freeTail: []uint32{18, 19}},
		{name: "with a request", cmd: Command{Op: OpReleaseClient, Client: "a", Request: "r"},
			err: freqd.ErrInvalidArgument, errText: "release-client with a request id"},
		{name: "with a frequency", cmd: Command{Op: OpReleaseClient, Client: "a", Freq: 10},
			err: freqd.ErrInvalidArgument, errText: "release-client with frequency 10"},
		{name: "with any", cmd: Command{Op: OpReleaseClient, Client: "a", Any: true},
			err: freqd.ErrInvalidArgument, errText: "any is only for grant"},
		{name: "with since", cmd: Command{Op: OpReleaseClient, Client: "a", Since: 3},
			err: freqd.ErrInvalidArgument, errText: "since is only for release"},
		{name: "bad ttl", cmd: releaseClient("a", 500*time.Millisecond),
			err: freqd.ErrInvalidArgument, errText: "ttl 500ms is neither 0 nor"},
		{name: "ttl above max", cmd: releaseClient("a", MaxTTL+time.Millisecond),
			err: freqd.ErrInvalidArgument, errText: "ttl 24h0m0.001s"},
		{name: "empty client", cmd: releaseClient("", 0), err: freqd.ErrInvalidClientID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := New(3, 10, 19)
			for _, c := range leases {
				if res := p.Apply(c); res.Err != nil {
					t.Fatal(res.Err)
				}
			}
			before, _ := p.Snapshot()
			v := p.Version()
			res := p.Apply(tt.cmd)
			if err := p.check(); err != nil {
				t.Fatal(err)
			}
			if tt.err != nil {
				if !errors.Is(res.Err, tt.err) || !strings.Contains(res.Err.Error(), tt.errText) || res != (Result{Err: res.Err}) {
					t.Fatalf("Apply(%v) = %+v, want %v containing %q", tt.cmd, res, tt.err, tt.errText)
				}
				if after, _ := p.Snapshot(); string(after) != string(before) {
					t.Fatal("a failed client release changed the state")
				}
				return
			}
			if res != (Result{Freq: tt.want}) {
				t.Fatalf("Apply(%v) = %+v, want %d released", tt.cmd, res, tt.want)
			}
			if changed := p.Version() != v; changed != (tt.want > 0) {
				t.Fatalf("version %d -> %d after releasing %d", v, p.Version(), tt.want)
			}
			if tt.want == 0 {
				if after, _ := p.Snapshot(); string(after) != string(before) {
					t.Fatal("a client release of nothing changed the state")
				}
			}
			if got := p.HeldBy("a"); !slices.Equal(got, tt.heldA) {
				t.Errorf("HeldBy(a) = %v, want %v", got, tt.heldA)
			}
			if got := p.HeldBy("b"); !slices.Equal(got, tt.heldB) {
				t.Errorf("HeldBy(b) = %v, want %v", got, tt.heldB)
			}
			if fo := p.FreeOrder(); !slices.Equal(fo[len(fo)-len(tt.freeTail):], tt.freeTail) {
				t.Errorf("free order %v, want it to end with %v", fo, tt.freeTail)
			}
			for _, f := range p.FreeOrder() {
				if p.TTL(f) != 0 {
					t.Errorf("free %d has TTL %v", f, p.TTL(f))
				}
			}
		})
	}
}

// A client whose frequencies all go is dropped and its slot reused, as
// after a release of its last frequency.
func TestReleaseClientDropsClient(t *testing.T) {
	p := New(0, 0, 9)
	for _, c := range []Command{grantTTL("a", 1, MinTTL), grantTTL("a", 2, MinTTL), grantTTL("b", 3, 0)} {
		p.Apply(c)
	}
	if res := p.Apply(releaseClient("a", MinTTL)); res.Freq != 2 {
		t.Fatalf("%+v", res)
	}
	if p.Clients() != 1 || len(p.freeSlots) != 1 || p.HeldBy("a") != nil {
		t.Fatalf("clients %d, free slots %v, HeldBy(a) %v", p.Clients(), p.freeSlots, p.HeldBy("a"))
	}
	if m, n := p.ClientLease("a"); m != 0 || n != 0 {
		t.Fatalf("ClientLease(a) = %v %d after its release", m, n)
	}
	p.Apply(grantTTL("c", 4, 0))
	if len(p.clients) != 3 || len(p.freeSlots) != 0 {
		t.Fatalf("slot not reused: %d slots, free %v", len(p.clients), p.freeSlots)
	}
	if err := p.check(); err != nil {
		t.Fatal(err)
	}
	// Three grants, a client release, a grant and two client releases.
	p.Apply(releaseClient("b", 0))
	p.Apply(releaseClient("c", 0))
	if p.Held() != 0 || p.Clients() != 0 || len(p.freeSlots) != 2 || p.Version() != 7 {
		t.Fatalf("%v, free slots %v", p, p.freeSlots)
	}
	if err := p.check(); err != nil {
		t.Fatal(err)
	}
}

func TestGrantTTL(t *testing.T) {
	p := New(0, 10, 13)
	steps := []struct {
		cmd     Command
		want    Result
		err     string // error text; the sentinel is ErrInvalidArgument
		changed bool
		f       uint32 // then TTL(f) must be ttl
		ttl     time.Duration
	}{
		{cmd: grantTTL("a", 10, 90*time.Second), want: Result{Freq: 10, Since: 10}, changed: true, f: 10, ttl: 90 * time.Second},
		// An idempotent re-grant changes nothing, the TTL included.
		{cmd: Command{Op: OpGrant, Client: "a", Freq: 10, At: 50, TTL: time.Hour}, want: Result{Freq: 10, Since: 10}, f: 10, ttl: 90 * time.Second},
		{cmd: Command{Op: OpGrant, Client: "a", Freq: 10, At: 50}, want: Result{Freq: 10, Since: 10}, f: 10, ttl: 90 * time.Second},
		{cmd: Command{Op: OpGrant, Client: "b", Any: true, Request: "r", At: 60, TTL: MaxTTL}, want: Result{Freq: 11, Since: 60}, changed: true, f: 11, ttl: MaxTTL},
		// So does a retry answered from the request window.
		{cmd: Command{Op: OpGrant, Client: "b", Any: true, Request: "r", At: 61, TTL: MinTTL}, want: Result{Freq: 11, Since: 60, Dup: true}, f: 11, ttl: MaxTTL},
		{cmd: Command{Op: OpGrant, Client: "b", Any: true, At: 62, TTL: 1500 * time.Microsecond}, err: "ttl 1.5ms is neither 0 nor a whole number of milliseconds in 1s..24h0m0s", f: 12},
		{cmd: Command{Op: OpGrant, Client: "b", Any: true, At: 62, TTL: time.Second + time.Nanosecond}, err: "ttl 1.000000001s", f: 12},
		{cmd: Command{Op: OpGrant, Client: "b", Any: true, At: 62, TTL: -time.Second}, err: "ttl -1s", f: 12},
		{cmd: Command{Op: OpRelease, Client: "a", Freq: 10, TTL: time.Second}, err: "ttl is only for grant and release-client, not release", f: 10, ttl: 90 * time.Second},
		{cmd: Command{Op: OpNote, Client: "a", Request: "n", Freq: 1, Gen: 1, TTL: time.Second}, err: "ttl is only for grant and release-client, not note", f: 10, ttl: 90 * time.Second},
		{cmd: grantTTL("b", 12, MinTTL), want: Result{Freq: 12, Since: 12}, changed: true, f: 12, ttl: MinTTL},
		{cmd: release("a", 10), want: Result{Freq: 10, Since: 10}, changed: true, f: 10},
		// A new grant of the released frequency has its own TTL.
		{cmd: grantTTL("c", 10, 0), want: Result{Freq: 10, Since: 10}, changed: true, f: 10},
		{cmd: grantTTL("c", 9, MinTTL), want: Result{Err: freqd.ErrOutOfRange}, f: 9},
	}
	for i, st := range steps {
		v := p.Version()
		res := p.Apply(st.cmd)
		switch {
		case st.err != "":
			if !errors.Is(res.Err, freqd.ErrInvalidArgument) || !strings.Contains(res.Err.Error(), st.err) {
				t.Fatalf("step %d %v: %+v, want ErrInvalidArgument containing %q", i, st.cmd, res, st.err)
			}
		case st.want.Err != nil:
			if !errors.Is(res.Err, st.want.Err) {
				t.Fatalf("step %d %v: %+v, want %v", i, st.cmd, res, st.want.Err)
			}
		case res != st.want:
			t.Fatalf("step %d %v: %+v, want %+v", i, st.cmd, res, st.want)
		}
		if changed := p.Version() != v; changed != st.changed {
			t.Fatalf("step %d %v: version %d -> %d", i, st.cmd, v, p.Version())
		}
		if got := p.TTL(st.f); got != st.ttl {
			t.Fatalf("step %d %v: TTL(%d) = %v, want %v", i, st.cmd, st.f, got, st.ttl)
		}
		if err := p.check(); err != nil {
			t.Fatal(err)
		}
	}
	if p.TTL(13) != 0 || p.TTL(9) != 0 || p.TTL(14) != 0 || p.TTL(0) != 0 {
		t.Fatal("TTL of a free or out-of-range frequency is not 0")
	}
}

func TestLeases(t *testing.T) {
	p := New(0, 0, 99)
	type lease struct {
		client string
		min    time.Duration
		leased int
	}
	var got []lease
	collect := func() []lease {
		got = got[:0]
		p.Leases(func(c string, m time.Duration, n int) { got = append(got, lease{c, m, n}) })
		return got
	}
	if l := collect(); len(l) != 0 {
		t.Fatalf("Leases of an empty partition: %v", l)
	}
	// Grant to clients in an order unrelated to their ids.
	for i, c := range []Command{
		grantTTL("zed", 0, 5*time.Second), grantTTL("amy", 1, 0), grantTTL("bob", 2, 9*time.Second),
		grantTTL("zed", 3, 2*time.Second), grantTTL("bob", 4, 7*time.Second), grantTTL("zed", 5, 0),
		grantTTL("amy", 6, 0), grantTTL("cat", 7, MaxTTL), grantTTL("bob", 8, 7*time.Second),
	} {
		if res := p.Apply(c); res.Err != nil {
			t.Fatalf("%d: %v", i, res.Err)
		}
	}
	want := []lease{{"bob", 7 * time.Second, 3}, {"cat", MaxTTL, 1}, {"zed", 2 * time.Second, 2}}
	if l := collect(); !slices.Equal(l, want) {
		t.Fatalf("Leases = %v, want %v", l, want)
	}
	for _, w := range append(want, lease{"amy", 0, 0}, lease{"nobody", 0, 0}) {
		if m, n := p.ClientLease(w.client); m != w.min || n != w.leased {
			t.Errorf("ClientLease(%q) = %v %d, want %v %d", w.client, m, n, w.min, w.leased)
		}
	}
	// Expire zed's shortest lease: its minimum moves up.
	if res := p.Apply(releaseClient("zed", 2*time.Second)); res.Freq != 1 {
		t.Fatalf("%+v", res)
	}
	if m, n := p.ClientLease("zed"); m != 5*time.Second || n != 1 {
		t.Fatalf("ClientLease(zed) = %v %d after expiring 2s", m, n)
	}
	// Snapshot and restore keep every TTL.
	snap, _ := p.Snapshot()
	q, err := Restore(snap)
	if err != nil || !q.Equal(p) {
		t.Fatalf("restore: %v", err)
	}
	before := slices.Clone(collect())
	p = q
	if after := collect(); !slices.Equal(before, after) {
		t.Fatalf("Leases after restore %v, before %v", after, before)
	}
}

// TestLeaseAllocs checks that a grant with a TTL, its release and a client
// release allocate nothing once the client is interned.
func TestLeaseAllocs(t *testing.T) {
	p := New(0, 0, 1<<10-1)
	p.Apply(grantTTL("c", 0, 0)) // keeps "c" interned
	if n := testing.AllocsPerRun(100, func() {
		res := p.Apply(Command{Op: OpGrant, Client: "c", Any: true, At: 1, TTL: 30 * time.Second})
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		if rel := p.Apply(Command{Op: OpRelease, Client: "c", Freq: res.Freq}); rel.Err != nil {
			t.Fatal(rel.Err)
		}
	}); n != 0 {
		t.Errorf("grant with a TTL and release allocate %v times", n)
	}
	if n := testing.AllocsPerRun(100, func() {
		for range 4 {
			p.Apply(Command{Op: OpGrant, Client: "c", Any: true, At: 1, TTL: 30 * time.Second})
		}
		if res := p.Apply(releaseClient("c", time.Minute)); res.Freq != 4 {
			t.Fatalf("%+v", res)
		}
	}); n != 0 {
		t.Errorf("client release allocates %v times", n)
	}
}

// BenchmarkReleaseClient measures granting a client 8 leased frequencies
// and expiring them with one client release, in a small and a large
// partition with 1000 other clients: the cost follows the client's
// holdings, not the partition.
func BenchmarkReleaseClient(b *testing.B) {
	for _, n := range []int{1 << 12, 1 << 20} {
		b.Run(fmt.Sprintf("size=%d", n), func(b *testing.B) {
			ids := clientIDs(1000)
			p := New(0, 0, uint32(n-1))
			for i := range n / 2 {
				p.Apply(Command{Op: OpGrant, Any: true, Client: ids[i%len(ids)], At: int64(i), TTL: MaxTTL})
			}
			p.Apply(grantAny("c", 0)) // keeps "c" interned
			b.ReportAllocs()
			for b.Loop() {
				for range 8 {
					p.Apply(Command{Op: OpGrant, Any: true, Client: "c", At: 1, TTL: 30 * time.Second})
				}
				if res := p.Apply(releaseClient("c", time.Minute)); res.Freq != 8 {
					b.Fatal(res)
				}
			}
		})
	}
}

// BenchmarkLeases measures Leases over 64Ki held frequencies across 1000
// clients, half of them leased.
func BenchmarkLeases(b *testing.B) {
	const n = 1 << 16
	ids := clientIDs(1000)
	p := New(0, 0, n-1)
	for i := range n {
		p.Apply(Command{Op: OpGrant, Any: true, Client: ids[i%len(ids)], At: int64(i), TTL: time.Duration(i/len(ids)%2) * MinTTL})
	}
	b.ReportAllocs()
	for b.Loop() {
		k := 0
		p.Leases(func(string, time.Duration, int) { k++ })
		if k != len(ids) {
			b.Fatal(k)
		}
	}
}
