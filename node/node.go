package node

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/freqd/freqd"
	"github.com/freqd/freqd/gen/freqd/v1/freqdv1connect"
	"github.com/freqd/freqd/membership"
	"github.com/freqd/freqd/partition"
	"github.com/freqd/freqd/pool"
	"github.com/freqd/freqd/ring"
	"github.com/freqd/freqd/transport"
)

// Strategy chooses where an allocation of any frequency is tried first.
type Strategy string

// Allocation strategies. Whatever the first choice, a partition that turns
// out full is skipped and another tried, so "no free frequency" always
// means the whole pool is held.
const (
	// LocalFirst tries partitions this node holds (no network hop), then
	// falls back to MostFree.
	LocalFirst Strategy = "local-first"
	// RoundRobin takes the partitions with free space in turn.
	RoundRobin Strategy = "round-robin"
	// MostFree takes the partition with the largest gossiped free count,
	// breaking ties at random (so sequential traffic spreads out).
	MostFree Strategy = "most-free"
)

// ParseStrategy checks a strategy name.
func ParseStrategy(s string) (Strategy, error) {
	switch st := Strategy(s); st {
	case LocalFirst, RoundRobin, MostFree:
		return st, nil
	}
	return "", fmt.Errorf("unknown routing strategy %q (want local-first, round-robin or most-free): %w", s, freqd.ErrInvalidArgument)
}

// Options configure a Node. Zero values take the defaults noted.
type Options struct {
	// Name is the node's unique name in the cluster (required).
	Name string
	// APIAddr is the host:port the API listens on and peers dial (required).
	APIAddr string
	// Layout is the pool cut into partitions (required); every node of a
	// cluster must have the same one.
	Layout *pool.Layout
	// ReplicationFactor is the length of each partition's replica list
	// (default 1). This version keeps one copy; the list is reported.
	ReplicationFactor int
	// Strategy picks partitions for allocations of any frequency (default
	// LocalFirst).
	Strategy Strategy
	// BootstrapExpect is how many members a brand-new cluster waits to see
	// before it creates its pool (default 1).
	BootstrapExpect int
	// Gossip configures membership; Name and Logger are filled in.
	Gossip membership.Config
	// Network is how the API listens and dials (default TCP).
	Network transport.Network
	// Logger receives the node's logs (default slog.Default()).
	Logger *slog.Logger
	// Now is the clock stamped on grants (default time.Now).
	Now func() time.Time
	// Seed seeds the random tie-breaks (default: random).
	Seed uint64
	// ArrivalWait bounds how long a ring owner waits for a partition that
	// is on its way to it before answering Unavailable (default 3s).
	ArrivalWait time.Duration
	// RebalanceInterval is how often handoffs are retried (default 500ms).
	RebalanceInterval time.Duration
}

func (o *Options) setDefaults() error {
	if o.Name == "" {
		return fmt.Errorf("node: empty name: %w", freqd.ErrInvalidArgument)
	}
	if o.APIAddr == "" {
		return fmt.Errorf("node %s: empty API address: %w", o.Name, freqd.ErrInvalidArgument)
	}
	if o.Layout == nil {
		return fmt.Errorf("node %s: no pool layout: %w", o.Name, freqd.ErrInvalidArgument)
	}
	if o.ReplicationFactor == 0 {
		o.ReplicationFactor = 1
	}
	if o.Strategy == "" {
		o.Strategy = LocalFirst
	}
	if _, err := ParseStrategy(string(o.Strategy)); err != nil {
		return fmt.Errorf("node %s: %w", o.Name, err)
	}
	if o.BootstrapExpect <= 0 {
		o.BootstrapExpect = 1
	}
	if o.Network == nil {
		o.Network = &transport.TCP{}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Seed == 0 {
		o.Seed = rand.Uint64()
	}
	if o.ArrivalWait == 0 {
		o.ArrivalWait = 3 * time.Second
	}
	if o.RebalanceInterval == 0 {
		o.RebalanceInterval = 500 * time.Millisecond
	}
	return nil
}

// Node is one freqd process: a shard holding some partitions and a router
// for every request. The package doc says who owns which state.
type Node struct {
	opts   Options
	log    *slog.Logger
	layout *pool.Layout
	ml     *membership.Membership
	server *transport.Server
	http   *http.Client

	ring atomic.Pointer[ring.Ring] // rebuilt whole by ringLoop
	view atomic.Pointer[routeView] // rebuilt from gossip at most every viewTTL

	mu      sync.Mutex // guards shards, epochs, changed, pending, peers
	shards  map[int]*shard
	epochs  map[int]uint64        // highest epoch seen per partition, kept after it moves on
	changed chan struct{}         // closed and replaced when a shard is installed or dropped
	pending map[int]pendingMove   // handoffs whose outcome is unknown, retried
	peers   map[string]peerClient // by API address

	rr    atomic.Uint64 // round-robin cursor
	rndMu sync.Mutex
	rnd   *rand.Rand // guarded by rndMu

	leaving atomic.Bool
	kick    chan struct{} // capacity 1: wake the rebalancer

	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	left     chan struct{} // closed when the node has left the cluster
	once     sync.Once
	leftOnce sync.Once
}

type peerClient struct {
	api  freqdv1connect.FreqdServiceClient
	peer freqdv1connect.PeerServiceClient
}

type pendingMove struct {
	to    string
	epoch uint64
	snap  []byte
}

// New builds a node. Start makes it serve.
func New(opts Options) (*Node, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	rc := ring.Config{Partitions: opts.Layout.Partitions(), ReplicationFactor: opts.ReplicationFactor}
	if err := rc.Validate(); err != nil {
		return nil, fmt.Errorf("node %s: ring: %w", opts.Name, err)
	}
	n := &Node{
		opts:    opts,
		log:     opts.Logger.With("node", opts.Name),
		layout:  opts.Layout,
		http:    transport.NewHTTPClient(opts.Network),
		shards:  make(map[int]*shard),
		epochs:  make(map[int]uint64),
		changed: make(chan struct{}),
		pending: make(map[int]pendingMove),
		peers:   make(map[string]peerClient),
		rnd:     rand.New(rand.NewPCG(opts.Seed, opts.Seed^0x9e3779b97f4a7c15)),
		kick:    make(chan struct{}, 1),
		left:    make(chan struct{}),
	}
	empty, err := ring.New(rc, nil)
	if err != nil {
		return nil, fmt.Errorf("node %s: ring: %w", opts.Name, err)
	}
	n.ring.Store(empty)
	return n, nil
}

// Name is the node's name.
func (n *Node) Name() string { return n.opts.Name }

// APIAddr is the address the API listens on (resolved after Start).
func (n *Node) APIAddr() string {
	if n.server != nil {
		return n.server.Addr()
	}
	return n.opts.APIAddr
}

// Left is closed once the node has left the cluster through Leave.
func (n *Node) Left() <-chan struct{} { return n.left }

// Start serves the API, starts gossip and the node's goroutines, and joins
// the configured seeds. It returns once the node is reachable; the node
// becomes active in the background once it has joined (or created) the
// cluster. ctx bounds only the start itself.
func (n *Node) Start(ctx context.Context) error {
	mux := http.NewServeMux()
	svc := &service{n: n}
	path, h := freqdv1connect.NewFreqdServiceHandler(svc, readLimit(transport.MaxRequestBytes))
	mux.Handle(path, h)
	path, h = freqdv1connect.NewPeerServiceHandler(&peerService{n: n}, readLimit(transport.MaxPeerMessageBytes))
	mux.Handle(path, h)
	srv, err := transport.Serve(n.opts.Network, n.opts.APIAddr, mux)
	if err != nil {
		return fmt.Errorf("node %s: %w", n.opts.Name, err)
	}
	n.server = srv

	gc := n.opts.Gossip
	gc.Name = n.opts.Name
	gc.Logger = n.log
	ml, err := membership.New(gc, membership.Meta{
		APIAddr:     srv.Addr(),
		State:       membership.StateJoining,
		Fingerprint: n.layout.Fingerprint(),
	})
	if err != nil {
		_ = srv.Shutdown(ctx)
		return fmt.Errorf("node %s: gossip: %w", n.opts.Name, err)
	}
	n.ml = ml
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.spawn(n.ringLoop)
	n.spawn(n.loadLoop)
	n.spawn(n.rebalanceLoop)
	if len(gc.Seeds) > 0 {
		if _, err := ml.JoinSeeds(ctx); err != nil {
			// Not fatal: the rejoin loop keeps trying while seeds are missing.
			n.log.Info("could not join seeds yet; will retry", "seeds", gc.Seeds, "err", err)
		}
	}
	// Only now may the node decide to create a new cluster: had it done so
	// before trying its seeds, it could have founded a second cluster
	// beside a running one.
	n.spawn(n.bootstrapLoop)
	return nil
}

func (n *Node) spawn(fn func(ctx context.Context)) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		fn(n.ctx)
	}()
}

// Close stops the node at once, without handing anything off (a crash, as
// far as the cluster can tell, except that gossip is told it left). Use
// Leave first for a graceful exit.
func (n *Node) Close() error {
	var errs []error
	n.once.Do(func() {
		if n.cancel != nil {
			n.cancel()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if n.server != nil {
			if err := n.server.Shutdown(ctx); err != nil {
				errs = append(errs, fmt.Errorf("node %s: api shutdown: %w", n.opts.Name, err))
			}
		}
		n.wg.Wait()
		if n.ml != nil {
			if err := n.ml.Close(); err != nil {
				errs = append(errs, fmt.Errorf("node %s: gossip shutdown: %w", n.opts.Name, err))
			}
		}
		n.http.CloseIdleConnections()
	})
	return errors.Join(errs...)
}

// kickRebalance wakes the rebalancer without blocking.
func (n *Node) kickRebalance() {
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

// localShard returns the shard for partition id if this node holds it.
func (n *Node) localShard(id int) *shard {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.shards[id]
}

// install adds a shard (from bootstrap or a transfer) and wakes waiters.
// A shard it replaces (one still frozen in a handoff whose answer has not
// come back, while the partition already came back newer) is retired, so
// nothing is ever applied to it again.
func (n *Node) install(s *shard) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if old := n.shards[s.id]; old != nil {
		old.retire(n.opts.Name)
	}
	n.shards[s.id] = s
	if s.epoch > n.epochs[s.id] {
		n.epochs[s.id] = s.epoch
	}
	close(n.changed)
	n.changed = make(chan struct{})
}

// drop removes a shard that has moved away, unless a newer shard of the
// same partition has been installed meanwhile.
func (n *Node) drop(s *shard, epoch uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	id := s.id
	if n.shards[id] == s {
		delete(n.shards, id)
	}
	if epoch > n.epochs[id] {
		n.epochs[id] = epoch
	}
	close(n.changed)
	n.changed = make(chan struct{})
}

// heldShards returns the shards this node holds, by partition id.
func (n *Node) heldShards() []*shard {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]*shard, 0, len(n.shards))
	for _, s := range n.shards {
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b *shard) int { return cmp.Compare(a.id, b.id) })
	return out
}

// waitArrival waits until partition id is held here, ctx ends or
// ArrivalWait passes. It reports whether the partition arrived.
func (n *Node) waitArrival(ctx context.Context, id int) bool {
	timer := time.NewTimer(n.opts.ArrivalWait)
	defer timer.Stop()
	for {
		n.mu.Lock()
		_, ok := n.shards[id]
		ch := n.changed
		n.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-ch:
		case <-timer.C:
			return false
		case <-ctx.Done():
			return false
		case <-n.ctx.Done():
			return false
		}
	}
}

// peer returns the pooled clients for a node's API address.
func (n *Node) peer(addr string) peerClient {
	n.mu.Lock()
	defer n.mu.Unlock()
	if pc, ok := n.peers[addr]; ok {
		return pc
	}
	base := "http://" + addr
	pc := peerClient{
		api:  freqdv1connect.NewFreqdServiceClient(n.http, base),
		peer: freqdv1connect.NewPeerServiceClient(n.http, base, readLimitClient(transport.MaxPeerMessageBytes)),
	}
	n.peers[addr] = pc
	return pc
}

// newPartition makes the fresh partition for id.
func (n *Node) newPartition(id int) *partition.Partition {
	sp, _ := n.layout.Span(id)
	return partition.New(id, sp.First, sp.Last)
}
