package ring

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/buraksezer/consistent"
	"github.com/cespare/xxhash/v2"

	"github.com/freqd/freqd"
)

// nodes returns "node-1".."node-n".
func nodes(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("node-%d", i+1)
	}
	return out
}

func mustNew(t testing.TB, cfg Config, members []string) *Ring {
	t.Helper()
	r, err := New(cfg, members)
	if err != nil {
		t.Fatalf("New(%+v, %q): %v", cfg, members, err)
	}
	return r
}

// checkInvariants checks everything that must hold for any ring built from
// cfg (valid) and members (valid, any order).
func checkInvariants(t testing.TB, r *Ring, cfg Config, members []string) {
	t.Helper()
	want := slices.Sorted(slices.Values(members))
	if got := r.Members(); !slices.Equal(got, want) {
		t.Fatalf("Members() = %q, want %q", got, want)
	}
	if r.Len() != len(want) {
		t.Fatalf("Len() = %d, want %d", r.Len(), len(want))
	}
	eff := cfg.withDefaults()
	if r.Config() != eff {
		t.Fatalf("Config() = %+v, want %+v", r.Config(), eff)
	}
	for _, m := range want {
		if !r.Has(m) {
			t.Fatalf("Has(%q) = false for a member", m)
		}
	}
	outsider := "not-a-member"
	for r.Has(outsider) || slices.Contains(want, outsider) {
		outsider += "!"
	}
	if r.Has(outsider) {
		t.Fatalf("Has(%q) = true for a non-member", outsider)
	}
	for _, p := range []int{-1, eff.Partitions, math.MaxInt, math.MinInt} {
		if o, ok := r.Owner(p); ok || o != "" {
			t.Fatalf("Owner(%d) = %q, %v for an out-of-range partition", p, o, ok)
		}
		if reps := r.Replicas(p); reps != nil {
			t.Fatalf("Replicas(%d) = %q for an out-of-range partition", p, reps)
		}
		if len(want) > 0 && r.IsReplica(p, want[0]) {
			t.Fatalf("IsReplica(%d, %q) = true for an out-of-range partition", p, want[0])
		}
	}

	if len(want) == 0 {
		for p := range eff.Partitions {
			if o, ok := r.Owner(p); ok || o != "" {
				t.Fatalf("empty ring: Owner(%d) = %q, %v", p, o, ok)
			}
			if reps := r.Replicas(p); reps != nil {
				t.Fatalf("empty ring: Replicas(%d) = %q", p, reps)
			}
		}
		if Moves(r, nil) != nil || Moves(nil, r) != nil {
			t.Fatalf("empty ring: Moves against nil is not empty")
		}
		return
	}

	wantN := min(eff.ReplicationFactor, len(want))
	bound := math.Ceil(float64(eff.Partitions) / float64(len(want)) * eff.Load) // may be huge: keep it a float
	owners := make(map[string][]int)
	for p := range eff.Partitions {
		o, ok := r.Owner(p)
		if !ok || !r.Has(o) {
			t.Fatalf("Owner(%d) = %q, %v: want a member", p, o, ok)
		}
		owners[o] = append(owners[o], p)
		reps := r.Replicas(p)
		if len(reps) != wantN {
			t.Fatalf("Replicas(%d) = %q, want %d names", p, reps, wantN)
		}
		if reps[0] != o {
			t.Fatalf("Replicas(%d) = %q, want owner %q first", p, reps, o)
		}
		seen := make(map[string]bool)
		for _, m := range reps {
			if seen[m] {
				t.Fatalf("Replicas(%d) = %q repeats %q", p, reps, m)
			}
			if !r.Has(m) {
				t.Fatalf("Replicas(%d) = %q holds non-member %q", p, reps, m)
			}
			seen[m] = true
		}
		for _, m := range want {
			if r.IsReplica(p, m) != seen[m] {
				t.Fatalf("IsReplica(%d, %q) = %v, replicas %q", p, m, !seen[m], reps)
			}
		}
		if r.IsReplica(p, outsider) {
			t.Fatalf("IsReplica(%d, %q) = true for a non-member", p, outsider)
		}
	}
	total := 0
	for _, m := range want {
		got := r.Owned(m)
		if !slices.Equal(got, owners[m]) {
			t.Fatalf("Owned(%q) = %v, want %v", m, got, owners[m])
		}
		if float64(len(got)) > bound {
			t.Fatalf("Owned(%q) has %d partitions, more than the bound ceil(%d/%d*%v) = %v",
				m, len(got), eff.Partitions, len(want), eff.Load, bound)
		}
		total += len(got)
	}
	if total != eff.Partitions {
		t.Fatalf("members own %d partitions in all, want %d", total, eff.Partitions)
	}
	if got := r.Owned(outsider); got != nil {
		t.Fatalf("Owned(%q) = %v for a non-member", outsider, got)
	}
}

// checkAgainstConsistent compares r, partition by partition, with a
// consistent instance built directly and asked about every partition. This is
// the naive reference for New's tables, including its reuse of one replica
// list for all partitions of an owner.
func checkAgainstConsistent(t testing.TB, r *Ring) {
	t.Helper()
	if r.Len() == 0 {
		return
	}
	cfg := r.Config()
	var ms []consistent.Member
	for _, m := range r.Members() {
		ms = append(ms, member(m))
	}
	c := consistent.New(ms, consistent.Config{
		Hasher:            xxHasher{},
		PartitionCount:    cfg.Partitions,
		ReplicationFactor: cfg.VirtualNodes,
		Load:              cfg.Load,
	})
	n := min(cfg.ReplicationFactor, r.Len())
	for p := range cfg.Partitions {
		o, _ := r.Owner(p)
		if co := c.GetPartitionOwner(p).String(); co != o {
			t.Fatalf("partition %d: Owner %q, consistent says %q", p, o, co)
		}
		cl, err := c.GetClosestNForPartition(p, n)
		if err != nil {
			t.Fatalf("GetClosestNForPartition(%d, %d): %v", p, n, err)
		}
		var want []string
		for _, m := range cl {
			want = append(want, m.String())
		}
		if got := r.Replicas(p); !slices.Equal(got, want) {
			t.Fatalf("partition %d: Replicas %q, consistent says %q", p, got, want)
		}
	}
}

// sameRing reports the first difference between a and b, if any.
func sameRing(a, b *Ring) error {
	if a.Version() != b.Version() {
		return fmt.Errorf("versions %#x and %#x differ", a.Version(), b.Version())
	}
	if a.Config() != b.Config() || !slices.Equal(a.Members(), b.Members()) {
		return fmt.Errorf("config or members differ")
	}
	for p := range a.Config().Partitions {
		oa, _ := a.Owner(p)
		ob, _ := b.Owner(p)
		if oa != ob {
			return fmt.Errorf("partition %d: owner %q vs %q", p, oa, ob)
		}
		if ra, rb := a.Replicas(p), b.Replicas(p); !slices.Equal(ra, rb) {
			return fmt.Errorf("partition %d: replicas %q vs %q", p, ra, rb)
		}
	}
	return nil
}

func TestNewTable(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		members []string
		check   func(t *testing.T, r *Ring)
	}{
		{
			name: "single member owns all", cfg: Config{Partitions: 271, ReplicationFactor: 3},
			members: []string{"solo"},
			check: func(t *testing.T, r *Ring) {
				if got := r.Owned("solo"); len(got) != 271 || got[0] != 0 || got[270] != 270 {
					t.Errorf("Owned(solo) has %d partitions, want all 271", len(got))
				}
				for p := range 271 {
					if reps := r.Replicas(p); !slices.Equal(reps, []string{"solo"}) {
						t.Fatalf("Replicas(%d) = %q, want [solo]", p, reps)
					}
				}
			},
		},
		{
			name: "replicas capped by members", cfg: Config{Partitions: 64, ReplicationFactor: 3},
			members: nodes(2),
			check: func(t *testing.T, r *Ring) {
				if n := len(r.Replicas(0)); n != 2 {
					t.Errorf("len(Replicas(0)) = %d, want 2", n)
				}
			},
		},
		{
			name: "replicas capped by factor", cfg: Config{Partitions: 64, ReplicationFactor: 3},
			members: nodes(7),
			check: func(t *testing.T, r *Ring) {
				if n := len(r.Replicas(0)); n != 3 {
					t.Errorf("len(Replicas(0)) = %d, want 3", n)
				}
			},
		},
		{
			name: "factor one", cfg: Config{Partitions: 64, ReplicationFactor: 1},
			members: nodes(5),
			check: func(t *testing.T, r *Ring) {
				for p := range 64 {
					o, _ := r.Owner(p)
					if reps := r.Replicas(p); !slices.Equal(reps, []string{o}) {
						t.Fatalf("Replicas(%d) = %q, want [%s]", p, reps, o)
					}
				}
			},
		},
		{
			name: "factor larger than any cluster", cfg: Config{Partitions: 16, ReplicationFactor: 1 << 30},
			members: nodes(4),
			check: func(t *testing.T, r *Ring) {
				for p := range 16 {
					if reps := r.Replicas(p); len(reps) != 4 {
						t.Fatalf("Replicas(%d) = %q, want all 4 members", p, reps)
					}
				}
			},
		},
		{
			name: "one partition", cfg: Config{Partitions: 1, ReplicationFactor: 3},
			members: nodes(5),
			check: func(t *testing.T, r *Ring) {
				o, ok := r.Owner(0)
				if !ok || !slices.Equal(r.Owned(o), []int{0}) {
					t.Errorf("Owner(0) = %q, %v; Owned = %v", o, ok, r.Owned(o))
				}
				owning := 0
				for _, m := range r.Members() {
					if len(r.Owned(m)) > 0 {
						owning++
					}
				}
				if owning != 1 {
					t.Errorf("%d members own partitions, want 1", owning)
				}
			},
		},
		{
			name: "many partitions few members", cfg: Config{Partitions: 4096, ReplicationFactor: 3, Load: 1.1},
			members: nodes(3),
			check: func(t *testing.T, r *Ring) {
				// The bound is ceil(4096/3*1.1) = 1502, so each member must
				// own at least 4096 - 2*1502 = 1092.
				for _, m := range r.Members() {
					if n := len(r.Owned(m)); n < 1092 {
						t.Errorf("Owned(%q) has %d partitions, want >= 1092", m, n)
					}
				}
			},
		},
		{
			name: "more members than partitions", cfg: Config{Partitions: 7, ReplicationFactor: 3},
			members: nodes(50),
			check: func(t *testing.T, r *Ring) {
				// Bound ceil(7/50*1.25) = 1: every partition on its own member.
				idle := 0
				for _, m := range r.Members() {
					switch n := len(r.Owned(m)); n {
					case 0:
						idle++
						if !r.Has(m) || r.Owned(m) != nil {
							t.Errorf("idle member %q: Has = %v, Owned = %v", m, r.Has(m), r.Owned(m))
						}
					case 1:
					default:
						t.Errorf("Owned(%q) has %d partitions, want <= 1", m, n)
					}
				}
				if idle != 43 {
					t.Errorf("%d idle members, want 43", idle)
				}
			},
		},
		{
			name: "load one is tight", cfg: Config{Partitions: 100, ReplicationFactor: 2, Load: 1},
			members: nodes(10),
			check: func(t *testing.T, r *Ring) {
				for _, m := range r.Members() {
					if n := len(r.Owned(m)); n != 10 {
						t.Errorf("Owned(%q) has %d partitions, want exactly 10", m, n)
					}
				}
			},
		},
		{
			name: "no members", cfg: Config{Partitions: 271, ReplicationFactor: 3},
			members: nil,
			check: func(t *testing.T, r *Ring) {
				if _, ok := r.Owner(0); ok {
					t.Errorf("Owner(0) ok on an empty ring")
				}
				if len(r.Members()) != 0 || r.Len() != 0 || r.Owned("x") != nil {
					t.Errorf("empty ring has members")
				}
			},
		},
		{
			name: "odd names", cfg: Config{Partitions: 32, ReplicationFactor: 3, VirtualNodes: 1},
			members: []string{"a:b", "0:a", "é", "\x00", strings.Repeat("x", 1000), " "},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := mustNew(t, tt.cfg, tt.members)
			checkInvariants(t, r, tt.cfg, tt.members)
			checkAgainstConsistent(t, r)
			if tt.check != nil {
				tt.check(t, r)
			}
		})
	}
}

func TestInvariantsProperty(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 150 {
		cfg := Config{
			Partitions:        1 + rng.IntN(600),
			ReplicationFactor: 1 + rng.IntN(5),
			VirtualNodes:      rng.IntN(40),
			Load:              []float64{0, 1, 1 + rng.Float64(), 3}[rng.IntN(4)],
		}
		members := make([]string, rng.IntN(25))
		for j := range members {
			members[j] = fmt.Sprintf("m%d-%x", j, rng.Uint32())
		}
		t.Run(fmt.Sprintf("%d", i), func(t *testing.T) {
			r := mustNew(t, cfg, members)
			checkInvariants(t, r, cfg, members)
			checkAgainstConsistent(t, r)
		})
	}
}

func TestOrderIndependence(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, tc := range []struct {
		cfg Config
		n   int
	}{
		{Config{Partitions: 271, ReplicationFactor: 3}, 10},
		{Config{Partitions: 128, ReplicationFactor: 2, VirtualNodes: 5, Load: 1}, 7},
		{Config{Partitions: 5, ReplicationFactor: 3}, 30},
	} {
		members := nodes(tc.n)
		base := mustNew(t, tc.cfg, members)
		for range 20 {
			shuffled := slices.Clone(members)
			rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
			if err := sameRing(base, mustNew(t, tc.cfg, shuffled)); err != nil {
				t.Fatalf("cfg %+v, members %q vs %q: %v", tc.cfg, members, shuffled, err)
			}
		}
		if !slices.Equal(members, nodes(tc.n)) {
			t.Fatalf("New changed the caller's member slice: %q", members)
		}
	}
}

func TestDeterministicRebuild(t *testing.T) {
	cfg := Config{Partitions: 271, ReplicationFactor: 3}
	first := mustNew(t, cfg, nodes(10))
	for range 10 {
		// Build other rings in between so no state could carry over.
		_ = mustNew(t, cfg, nodes(4))
		if err := sameRing(first, mustNew(t, cfg, nodes(10))); err != nil {
			t.Fatalf("rebuild differs: %v", err)
		}
	}
	// Defaults spelled out give the same ring as zero fields.
	explicit := mustNew(t, Config{Partitions: 271, ReplicationFactor: 3, VirtualNodes: DefaultVirtualNodes, Load: DefaultLoad}, nodes(10))
	if err := sameRing(first, explicit); err != nil {
		t.Fatalf("explicit defaults differ: %v", err)
	}
}

// TestPlacementIsStable pins the placement of one ring. Every node of a
// cluster must compute the same placement; if a dependency upgrade (consistent,
// xxhash) or a code change alters it, nodes on old and new builds would
// disagree during a rolling upgrade. If this fails on purpose, that upgrade
// needs a cluster-wide plan, and the fingerprint below must be updated.
func TestPlacementIsStable(t *testing.T) {
	r := mustNew(t, Config{Partitions: 271, ReplicationFactor: 3}, nodes(5))
	d := xxhash.New()
	for p := range 271 {
		_, _ = d.WriteString(strings.Join(r.Replicas(p), ",") + ";")
	}
	const wantPlacement, wantVersion = 0x1ba08491a0ea1d58, 0xfe304d0347501abd
	if got := d.Sum64(); got != wantPlacement {
		t.Errorf("placement fingerprint = %#x, want %#x", got, uint64(wantPlacement))
	}
	if got := r.Version(); got != wantVersion {
		t.Errorf("Version() = %#x, want %#x", got, uint64(wantVersion))
	}
}

func TestValidate(t *testing.T) {
	ok := Config{Partitions: 271, ReplicationFactor: 3}
	with := func(f func(*Config)) Config { c := ok; f(&c); return c }
	tests := []struct {
		name  string
		cfg   Config
		field string // "" = valid
		value string
	}{
		{"defaults", ok, "", ""},
		{"explicit", Config{Partitions: 1, ReplicationFactor: 1, VirtualNodes: 1, Load: 1}, "", ""},
		{"max partitions", with(func(c *Config) { c.Partitions = MaxPartitions }), "", ""},
		{"many partitions", with(func(c *Config) { c.Partitions = 1 << 16 }), "", ""},
		{"max virtual nodes", with(func(c *Config) { c.VirtualNodes = MaxVirtualNodes }), "", ""},
		{"large load", with(func(c *Config) { c.Load = 1e300 }), "", ""},
		{"zero partitions", with(func(c *Config) { c.Partitions = 0 }), "Partitions", "0"},
		{"negative partitions", with(func(c *Config) { c.Partitions = -5 }), "Partitions", "-5"},
		{"too many partitions", with(func(c *Config) { c.Partitions = MaxPartitions + 1 }), "Partitions", "1048577"},
		{"zero replication", with(func(c *Config) { c.ReplicationFactor = 0 }), "ReplicationFactor", "0"},
		{"negative replication", with(func(c *Config) { c.ReplicationFactor = -1 }), "ReplicationFactor", "-1"},
		{"negative virtual nodes", with(func(c *Config) { c.VirtualNodes = -1 }), "VirtualNodes", "-1"},
		{"too many virtual nodes", with(func(c *Config) { c.VirtualNodes = 1001 }), "VirtualNodes", "1001"},
		{"load below one", with(func(c *Config) { c.Load = 0.5 }), "Load", "0.5"},
		{"load just below one", with(func(c *Config) { c.Load = 0.999 }), "Load", "0.999"},
		{"negative load", with(func(c *Config) { c.Load = -1.25 }), "Load", "-1.25"},
		{"NaN load", with(func(c *Config) { c.Load = math.NaN() }), "Load", "NaN"},
		{"infinite load", with(func(c *Config) { c.Load = math.Inf(1) }), "Load", "+Inf"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				if tt.cfg.Partitions <= 1<<16 { // a million partitions take seconds under -race
					checkInvariants(t, mustNew(t, tt.cfg, nodes(3)), tt.cfg, nodes(3))
				}
				return
			}
			_, newErr := New(tt.cfg, nodes(3))
			if err == nil {
				t.Fatalf("Validate(%+v) = nil, want an error about %s", tt.cfg, tt.field)
			}
			if !errors.Is(err, freqd.ErrInvalidArgument) {
				t.Errorf("error %q does not wrap ErrInvalidArgument", err)
			}
			if msg := err.Error(); !strings.Contains(msg, tt.field+" is "+tt.value) {
				t.Errorf("error %q does not say %q", msg, tt.field+" is "+tt.value)
			}
			if newErr == nil || newErr.Error() != err.Error() {
				t.Errorf("New error = %v, want the Validate error %v", newErr, err)
			}
		})
	}
}

func TestNewRejectsMembers(t *testing.T) {
	cfg := Config{Partitions: 16, ReplicationFactor: 2}
	tests := []struct {
		name    string
		cfg     Config
		members []string
		want    string
	}{
		{"empty name", cfg, []string{"a", ""}, "empty member name"},
		{"duplicate", cfg, []string{"b", "a", "b"}, `duplicate member "b"`},
		{"too many points", Config{Partitions: 16, ReplicationFactor: 2, VirtualNodes: 1000}, nodes(66), "66 members x 1000 virtual nodes"},
		{"too many points by default", cfg, nodes(MaxPoints/DefaultVirtualNodes + 1), "virtual nodes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := New(tt.cfg, tt.members)
			if err == nil || r != nil {
				t.Fatalf("New = %v, %v; want an error", r, err)
			}
			if !errors.Is(err, freqd.ErrInvalidArgument) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q: want ErrInvalidArgument and %q", err, tt.want)
			}
		})
	}
	// The boundary, checked directly: building a ring at the limit takes
	// seconds under -race.
	if err := checkPoints(MaxPoints/1000, 1000); err != nil {
		t.Errorf("checkPoints(%d, 1000) = %v, want nil", MaxPoints/1000, err)
	}
	if err := checkPoints(MaxPoints, 1); err != nil {
		t.Errorf("checkPoints(%d, 1) = %v, want nil", MaxPoints, err)
	}
	if err := checkPoints(MaxPoints+1, 1); err == nil {
		t.Errorf("checkPoints(%d, 1) = nil, want an error", MaxPoints+1)
	}
}

// TestNewRecoversFromConsistentPanic reaches the defensive recover in New:
// with validation skipped, a Load below 1 leaves consistent without room and
// it panics. New itself cannot get there (TestValidate shows Load 0.5 is
// rejected first).
func TestNewRecoversFromConsistentPanic(t *testing.T) {
	cfg := Config{Partitions: 271, ReplicationFactor: 3, Load: 0.5}
	if _, err := New(cfg, nodes(3)); err == nil || !strings.Contains(err.Error(), "Load is 0.5") {
		t.Fatalf("New with Load 0.5: %v, want a validation error", err)
	}
	r, err := build(cfg, nodes(3), xxHasher{}, false)
	if err == nil || r != nil {
		t.Fatalf("build = %v, %v; want an error", r, err)
	}
	if !strings.Contains(err.Error(), "consistent panicked") || !strings.Contains(err.Error(), "not enough room") {
		t.Fatalf("error %q does not name the panic", err)
	}
}

// collidingHasher is xxhash except that the name "b" hashes like "a".
type collidingHasher struct{}

func (collidingHasher) Sum64(b []byte) uint64 {
	if string(b) == "b" {
		b = []byte("a")
	}
	return xxhash.Sum64(b)
}

func TestNewRejectsNameHashCollision(t *testing.T) {
	cfg := Config{Partitions: 16, ReplicationFactor: 2}
	if _, err := build(cfg, []string{"a", "c"}, collidingHasher{}, true); err != nil {
		t.Fatalf("no collision: %v", err)
	}
	_, err := build(cfg, []string{"c", "b", "a"}, collidingHasher{}, true)
	if !errors.Is(err, freqd.ErrInvalidArgument) || !strings.Contains(err.Error(), `members "a" and "b" have the same name hash`) {
		t.Fatalf("error %v: want a name-hash collision between a and b", err)
	}
}

func TestVersion(t *testing.T) {
	cfg := Config{Partitions: 271, ReplicationFactor: 3}
	base := mustNew(t, cfg, nodes(5)).Version()
	same := []struct {
		name    string
		cfg     Config
		members []string
	}{
		{"reordered", cfg, []string{"node-5", "node-3", "node-1", "node-4", "node-2"}},
		{"explicit defaults", Config{Partitions: 271, ReplicationFactor: 3, VirtualNodes: 20, Load: 1.25}, nodes(5)},
	}
	for _, tt := range same {
		if v := mustNew(t, tt.cfg, tt.members).Version(); v != base {
			t.Errorf("%s: version %#x, want %#x", tt.name, v, base)
		}
	}
	differ := []struct {
		name    string
		cfg     Config
		members []string
	}{
		{"member added", cfg, nodes(6)},
		{"member removed", cfg, nodes(4)},
		{"member renamed", cfg, []string{"node-1", "node-2", "node-3", "node-4", "node-50"}},
		{"no members", cfg, nil},
		{"partitions", Config{Partitions: 270, ReplicationFactor: 3}, nodes(5)},
		{"replication", Config{Partitions: 271, ReplicationFactor: 2}, nodes(5)},
		{"virtual nodes", Config{Partitions: 271, ReplicationFactor: 3, VirtualNodes: 21}, nodes(5)},
		{"load", Config{Partitions: 271, ReplicationFactor: 3, Load: 1.26}, nodes(5)},
	}
	seen := map[uint64]string{base: "base"}
	for _, tt := range differ {
		v := mustNew(t, tt.cfg, tt.members).Version()
		if prev, dup := seen[v]; dup {
			t.Errorf("%s: version %#x equals that of %s", tt.name, v, prev)
		}
		seen[v] = tt.name
	}
	// Names are length-prefixed, so regrouping characters changes the version.
	if a, b := mustNew(t, cfg, []string{"ab", "c"}).Version(), mustNew(t, cfg, []string{"a", "bc"}).Version(); a == b {
		t.Errorf("{ab,c} and {a,bc} share version %#x", a)
	}
}

func TestMoves(t *testing.T) {
	cfg := Config{Partitions: 271, ReplicationFactor: 3}
	a := mustNew(t, cfg, nodes(5))
	b := mustNew(t, cfg, nodes(6))
	empty := mustNew(t, cfg, nil)
	all := make([]int, 271)
	for i := range all {
		all[i] = i
	}

	var want []int
	for p := range 271 {
		oa, _ := a.Owner(p)
		ob, _ := b.Owner(p)
		if oa != ob {
			want = append(want, p)
		}
	}
	if len(want) == 0 {
		t.Fatal("adding a member moved nothing; the test below would be vacuous")
	}
	tests := []struct {
		name string
		a, b *Ring
		want []int
	}{
		{"join", a, b, want},
		{"leave", b, a, want},
		{"same", a, mustNew(t, cfg, nodes(5)), nil},
		{"nil nil", nil, nil, nil},
		{"nil empty", nil, empty, nil},
		{"from nil", nil, a, all},
		{"to nil", a, nil, all},
		{"from empty", empty, a, all},
		{"fewer partitions", mustNew(t, Config{Partitions: 5, ReplicationFactor: 1}, []string{"solo"}),
			mustNew(t, Config{Partitions: 8, ReplicationFactor: 1}, []string{"solo"}), []int{5, 6, 7}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Moves(tt.a, tt.b); !slices.Equal(got, tt.want) {
				t.Errorf("Moves = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestResultsAreCopies(t *testing.T) {
	r := mustNew(t, Config{Partitions: 16, ReplicationFactor: 3}, nodes(4))
	owner, _ := r.Owner(0)
	reps := r.Replicas(0)
	wantReps := slices.Clone(reps)
	reps[0] = "evil"
	ms := r.Members()
	ms[0] = "evil"
	owned := r.Owned(owner)
	owned[0] = -1
	if got := r.Replicas(0); !slices.Equal(got, wantReps) {
		t.Errorf("Replicas(0) changed to %q after the caller wrote to it", got)
	}
	if got := r.Members(); !slices.Equal(got, nodes(4)) {
		t.Errorf("Members changed to %q", got)
	}
	if got := r.Owned(owner); got[0] != 0 {
		t.Errorf("Owned(%q) changed to %v", owner, got)
	}
	checkInvariants(t, r, Config{Partitions: 16, ReplicationFactor: 3}, nodes(4))
}

// TestConcurrentReaders runs every read method from several goroutines at
// once; under -race it shows the ring needs no locks.
func TestConcurrentReaders(t *testing.T) {
	cfg := Config{Partitions: 271, ReplicationFactor: 3}
	r := mustNew(t, cfg, nodes(5))
	other := mustNew(t, cfg, nodes(6))
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for p := range 271 {
				o, _ := r.Owner(p)
				_ = r.Replicas(p)
				_ = r.IsReplica(p, "node-1")
				_ = r.Owned(o)
				_ = r.Has(o)
				_ = r.Members()
				_ = r.Version()
				_ = r.Config()
				if g == 0 && p == 0 {
					_ = Moves(r, other)
				}
			}
		})
	}
	wg.Wait()
}

func BenchmarkNew(b *testing.B) {
	cfg := Config{Partitions: 271, ReplicationFactor: 3}
	members := nodes(10)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := New(cfg, members); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOwner(b *testing.B) {
	r := mustNew(b, Config{Partitions: 271, ReplicationFactor: 3}, nodes(10))
	b.ReportAllocs()
	p := 0
	for b.Loop() {
		if _, ok := r.Owner(p); !ok {
			b.Fatal("no owner")
		}
		p++
		if p == 271 {
			p = 0
		}
	}
}

func BenchmarkReplicas(b *testing.B) {
	r := mustNew(b, Config{Partitions: 271, ReplicationFactor: 3}, nodes(10))
	b.ReportAllocs()
	p := 0
	for b.Loop() {
		if len(r.Replicas(p)) != 3 {
			b.Fatal("short replica list")
		}
		p++
		if p == 271 {
			p = 0
		}
	}
}

// FuzzNew feeds New arbitrary configurations and member names. New must
// never panic; when it succeeds the ring must satisfy every invariant and
// match consistent partition by partition; when it fails the error must wrap
// ErrInvalidArgument.
func FuzzNew(f *testing.F) {
	f.Add(271, 3, 0, 0.0, "node-1\nnode-2\nnode-3")
	f.Add(1, 1, 1, 1.0, "a")
	f.Add(7, 3, 20, 1.25, "a\nb\nc\nd\ne\nf\ng\nh\ni\nj")
	f.Add(16, 2, 0, 0.5, "a\nb")
	f.Add(16, 2, 0, 1.0, "a\na")
	f.Add(16, 2, 0, 1.0, "a\n\nb")
	f.Add(16, 0, 0, 1.0, "")
	f.Add(0, 1, 0, 1.0, "x")
	f.Add(64, 5, 3, math.NaN(), "x\ny")
	f.Add(64, 5, 3, math.Inf(1), "x\ny")
	f.Add(5000, 2, 1000, 1.0, "0:a\na:0\n1\n")
	f.Fuzz(func(t *testing.T, partitions, replication, vnodes int, load float64, names string) {
		var members []string
		if names != "" {
			members = strings.Split(names, "\n")
		}
		// Keep each run fast; limits beyond this are covered by the table tests.
		if partitions > 4096 {
			partitions %= 4096
		}
		cfg := Config{Partitions: partitions, ReplicationFactor: replication, VirtualNodes: vnodes, Load: load}
		r, err := New(cfg, members)
		if err != nil {
			if r != nil {
				t.Fatalf("New returned a ring and an error: %v", err)
			}
			if !errors.Is(err, freqd.ErrInvalidArgument) {
				t.Fatalf("error %v does not wrap ErrInvalidArgument", err)
			}
			return
		}
		if cfg.Validate() != nil {
			t.Fatalf("New accepted an invalid config %+v", cfg)
		}
		checkInvariants(t, r, cfg, members)
		checkAgainstConsistent(t, r)
		if Moves(r, r) != nil {
			t.Fatalf("Moves(r, r) = %v", Moves(r, r))
		}
	})
}
