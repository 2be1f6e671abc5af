package ring

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"

	"github.com/buraksezer/consistent"
	"github.com/cespare/xxhash/v2"

	"github.com/freqd/freqd"
)

// Defaults applied by New (and reported by Ring.Config) when a Config field
// is left at zero.
const (
	// DefaultVirtualNodes is the number of points each member gets on the
	// hash circle when Config.VirtualNodes is 0.
	DefaultVirtualNodes = 20
	// DefaultLoad is the bounded-load factor used when Config.Load is 0.
	DefaultLoad = 1.25
)

// Limits enforced by Config.Validate. They are far above any sane setting;
// they exist so that a typo cannot make New allocate or compute for minutes.
const (
	// MaxPartitions is the largest accepted Config.Partitions.
	MaxPartitions = 1 << 20
	// MaxVirtualNodes is the largest accepted Config.VirtualNodes.
	MaxVirtualNodes = 1000
	// MaxPoints is the largest accepted number of points on the hash circle,
	// members x VirtualNodes, checked by New. consistent re-sorts the circle
	// for each member it adds, so building costs about members^2 x
	// VirtualNodes: at this limit New takes about a second, while 1000
	// members x 1000 virtual nodes would take a minute. 1000 members at the
	// default 20 virtual nodes are well inside it.
	MaxPoints = 1 << 16
)

// Config says how the pool is cut and placed. The same Config and the same
// member set give the same Ring on every node.
type Config struct {
	// Partitions is P, the number of partitions (ids 0..P-1). It must be in
	// 1..MaxPartitions; zero is an error, there is no default.
	Partitions int
	// ReplicationFactor is N, the number of copies of each partition, owner
	// included. It must be >= 1. Replica lists hold min(N, members) names.
	ReplicationFactor int
	// VirtualNodes is the number of points each member gets on the hash
	// circle (consistent's ReplicationFactor). 0 means DefaultVirtualNodes;
	// otherwise it must be in 1..MaxVirtualNodes.
	VirtualNodes int
	// Load is consistent's bounded-load factor: no member owns more than
	// ceil(Partitions/members*Load) partitions. 0 means DefaultLoad; otherwise
	// it must be a finite number >= 1 (below 1 the partitions may not fit).
	Load float64
}

// Validate reports the first invalid field of c. Zero VirtualNodes and Load
// are valid (they mean the defaults). The error names the field and its value
// and wraps freqd.ErrInvalidArgument.
func (c Config) Validate() error {
	switch {
	case c.Partitions < 1 || c.Partitions > MaxPartitions:
		return fmt.Errorf("ring: Partitions is %d, want 1..%d: %w", c.Partitions, MaxPartitions, freqd.ErrInvalidArgument)
	case c.ReplicationFactor < 1:
		return fmt.Errorf("ring: ReplicationFactor is %d, want >= 1: %w", c.ReplicationFactor, freqd.ErrInvalidArgument)
	case c.VirtualNodes < 0 || c.VirtualNodes > MaxVirtualNodes:
		return fmt.Errorf("ring: VirtualNodes is %d, want 0 (default %d) or 1..%d: %w",
			c.VirtualNodes, DefaultVirtualNodes, MaxVirtualNodes, freqd.ErrInvalidArgument)
	case c.Load != 0 && !(c.Load >= 1 && !math.IsInf(c.Load, 1)):
		// Written so that NaN fails too.
		return fmt.Errorf("ring: Load is %v, want 0 (default %v) or a finite number >= 1: %w",
			c.Load, DefaultLoad, freqd.ErrInvalidArgument)
	}
	return nil
}

// withDefaults returns c with the zero fields that have defaults filled in.
func (c Config) withDefaults() Config {
	if c.VirtualNodes == 0 {
		c.VirtualNodes = DefaultVirtualNodes
	}
	if c.Load == 0 {
		c.Load = DefaultLoad
	}
	return c
}

// Ring maps each partition to its owner and its ordered replica list for one
// member set. It is immutable after New: every method is a lookup in tables
// computed by New, takes no lock, and is safe for any number of concurrent
// readers. See the package documentation for how a node publishes it.
type Ring struct {
	cfg     Config         // with defaults applied
	members []string       // sorted
	index   map[string]int // member name -> position in members
	// owner[p] is the index in members of partition p's owner. Empty when
	// there are no members.
	owner []int32
	// replicas[m] is the replica list (owner first) of every partition owned
	// by members[m]; in consistent v1.1.0 it depends only on the owner.
	replicas [][]string
	// owned[m] lists the partitions owned by members[m], ascending.
	owned   [][]int
	version uint64
}

// member adapts a name to consistent.Member.
type member string

func (m member) String() string { return string(m) }

// xxHasher is consistent's Hasher backed by xxhash.
type xxHasher struct{}

func (xxHasher) Sum64(b []byte) uint64 { return xxhash.Sum64(b) }

// New builds the ring of cfg over members. The order of members does not
// matter. It fails, wrapping freqd.ErrInvalidArgument, if cfg is invalid, a
// member name is empty or repeated, or members x VirtualNodes exceeds
// MaxPoints. Zero members is allowed: that ring has no
// owners. New never panics.
func New(cfg Config, members []string) (*Ring, error) {
	return build(cfg, members, xxHasher{}, true)
}

// build is New with the hasher passed in and validation optional, so tests
// can reach the defensive paths (hash collisions, a panic in consistent) that
// valid input cannot.
func build(cfg Config, members []string, h consistent.Hasher, validate bool) (r *Ring, err error) {
	if validate {
		if err := cfg.Validate(); err != nil {
			return nil, err
		}
	}
	cfg = cfg.withDefaults()
	if validate {
		if err := checkPoints(len(members), cfg.VirtualNodes); err != nil {
			return nil, err
		}
	}

	sorted := slices.Clone(members)
	slices.Sort(sorted)
	index := make(map[string]int, len(sorted))
	for i, name := range sorted {
		if name == "" {
			return nil, fmt.Errorf("ring: empty member name: %w", freqd.ErrInvalidArgument)
		}
		if i > 0 && sorted[i-1] == name {
			return nil, fmt.Errorf("ring: duplicate member %q: %w", name, freqd.ErrInvalidArgument)
		}
		index[name] = i
	}
	// consistent orders replicas by the hash of each member's name and keys a
	// map by it; two names with one hash would make a replica list repeat a
	// member or start with the wrong one. Never seen with xxhash, but checked.
	byHash := make(map[uint64]string, len(sorted))
	for _, name := range sorted {
		sum := h.Sum64([]byte(name))
		if other, ok := byHash[sum]; ok {
			return nil, fmt.Errorf("ring: members %q and %q have the same name hash %#x: %w",
				other, name, sum, freqd.ErrInvalidArgument)
		}
		byHash[sum] = name
	}

	r = &Ring{
		cfg:     cfg,
		members: sorted,
		index:   index,
		version: version(cfg, sorted),
	}
	if len(sorted) == 0 {
		return r, nil
	}

	defer func() {
		if v := recover(); v != nil {
			r, err = nil, fmt.Errorf("ring: consistent panicked placing %d partitions on %d members (load %v): %v",
				cfg.Partitions, len(sorted), cfg.Load, v)
		}
	}()
	cms := make([]consistent.Member, len(sorted))
	for i, name := range sorted {
		cms[i] = member(name)
	}
	c := consistent.New(cms, consistent.Config{
		Hasher:            h,
		PartitionCount:    cfg.Partitions,
		ReplicationFactor: cfg.VirtualNodes,
		Load:              cfg.Load,
	})

	n := min(cfg.ReplicationFactor, len(sorted))
	r.owner = make([]int32, cfg.Partitions)
	r.replicas = make([][]string, len(sorted))
	r.owned = make([][]int, len(sorted))
	for p := range cfg.Partitions {
		m := c.GetPartitionOwner(p)
		if m == nil {
			return nil, fmt.Errorf("ring: consistent gave partition %d no owner", p)
		}
		oi, ok := index[m.String()]
		if !ok {
			return nil, fmt.Errorf("ring: consistent gave partition %d unknown owner %q", p, m.String())
		}
		r.owner[p] = int32(oi)
		r.owned[oi] = append(r.owned[oi], p)
		if r.replicas[oi] != nil {
			continue
		}
		// First partition of this owner: ask consistent for its replicas.
		// Later partitions of the same owner get the same list (tests check
		// this against GetClosestNForPartition for every partition), which
		// keeps New at O(P + members^2) instead of O(P * members).
		cl, err := c.GetClosestNForPartition(p, n)
		if err != nil {
			return nil, fmt.Errorf("ring: replicas of partition %d: %w", p, err)
		}
		reps := make([]string, len(cl))
		for j, m := range cl {
			reps[j] = m.String()
		}
		if len(reps) != n || reps[0] != m.String() {
			return nil, fmt.Errorf("ring: consistent gave partition %d replicas %q, want %d starting with owner %q",
				p, reps, n, m.String())
		}
		r.replicas[oi] = reps
	}
	return r, nil
}

// checkPoints enforces MaxPoints.
func checkPoints(members, virtualNodes int) error {
	if points := members * virtualNodes; points > MaxPoints {
		return fmt.Errorf("ring: %d members x %d virtual nodes = %d points, more than %d: %w",
			members, virtualNodes, points, MaxPoints, freqd.ErrInvalidArgument)
	}
	return nil
}

// version hashes the configuration (with defaults applied) and the sorted
// member names into one number.
func version(cfg Config, sorted []string) uint64 {
	d := xxhash.New()
	var buf [8]byte
	put := func(v uint64) {
		binary.LittleEndian.PutUint64(buf[:], v)
		_, _ = d.Write(buf[:])
	}
	_, _ = d.WriteString("freqd-ring-v1")
	put(uint64(cfg.Partitions))
	put(uint64(cfg.ReplicationFactor))
	put(uint64(cfg.VirtualNodes))
	put(math.Float64bits(cfg.Load))
	put(uint64(len(sorted)))
	for _, name := range sorted {
		put(uint64(len(name))) // length prefix: {"ab","c"} != {"a","bc"}
		_, _ = d.WriteString(name)
	}
	return d.Sum64()
}

// Config returns the configuration the ring was built with, with defaults
// applied: VirtualNodes and Load are never zero.
func (r *Ring) Config() Config { return r.cfg }

// Members returns the member names, sorted. The slice is the caller's.
func (r *Ring) Members() []string { return slices.Clone(r.members) }

// Len returns the number of members.
func (r *Ring) Len() int { return len(r.members) }

// Has reports whether name is a member.
func (r *Ring) Has(name string) bool {
	_, ok := r.index[name]
	return ok
}

// Owner returns the owner of partition p. It returns ("", false) if p is out
// of range or the ring has no members.
func (r *Ring) Owner(p int) (string, bool) {
	if p < 0 || p >= len(r.owner) {
		return "", false
	}
	return r.members[r.owner[p]], true
}

// Replicas returns the members that hold partition p, owner first, then its
// successors: min(ReplicationFactor, Len()) distinct names. It returns nil if
// p is out of range or the ring has no members. The slice is the caller's.
func (r *Ring) Replicas(p int) []string {
	if p < 0 || p >= len(r.owner) {
		return nil
	}
	return slices.Clone(r.replicas[r.owner[p]])
}

// IsReplica reports whether name is in the replica list of partition p
// (the owner included).
func (r *Ring) IsReplica(p int, name string) bool {
	if p < 0 || p >= len(r.owner) {
		return false
	}
	return slices.Contains(r.replicas[r.owner[p]], name)
}

// Owned returns the partitions owned by name, ascending; nil if name is not
// a member or owns none. The slice is the caller's.
func (r *Ring) Owned(name string) []int {
	i, ok := r.index[name]
	if !ok {
		return nil
	}
	return slices.Clone(r.owned[i])
}

// Version identifies the ring: a hash (xxhash) of the configuration, with
// defaults applied, and the sorted member names. Rings built from the same
// configuration and member set, on any node, have the same version; different
// ones almost surely differ. Compare versions to check that nodes agree.
func (r *Ring) Version() uint64 { return r.version }

// Moves returns, ascending, the partitions whose owner differs between a and
// b; nil if none. A nil ring counts as an empty one (no owners). A partition
// with an owner in only one of the rings (one is empty, or the partition
// counts differ) counts as moved.
func Moves(a, b *Ring) []int {
	var pa, pb int
	if a != nil {
		pa = len(a.owner)
	}
	if b != nil {
		pb = len(b.owner)
	}
	var moved []int
	for p := range max(pa, pb) {
		if p >= pa || p >= pb {
			moved = append(moved, p)
			continue
		}
		if a.members[a.owner[p]] != b.members[b.owner[p]] {
			moved = append(moved, p)
		}
	}
	return moved
}
