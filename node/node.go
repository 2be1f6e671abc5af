package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	"github.com/freqd/freqd"
	freqdv1 "github.com/freqd/freqd/gen/freqd/v1"
	"github.com/freqd/freqd/gen/freqd/v1/freqdv1connect"
	"github.com/freqd/freqd/membership"
	"github.com/freqd/freqd/multiraft"
	"github.com/freqd/freqd/peer"
	"github.com/freqd/freqd/pool"
	"github.com/freqd/freqd/ring"
	"github.com/freqd/freqd/store"
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
	// APIAddr is the host:port the client API listens on (required).
	APIAddr string
	// PeerAddr is the host:port the node-to-node transport listens on
	// (required): raft messages and forwarded requests, never the API.
	PeerAddr string
	// Layout is the pool cut into partitions (required); every node of a
	// cluster must have the same one.
	Layout *pool.Layout
	// ReplicationFactor is N, the number of voters of each partition's
	// raft group (default 1); a write commits on a majority of them.
	ReplicationFactor int
	// Strategy picks partitions for allocations of any frequency (default
	// LocalFirst).
	Strategy Strategy
	// BootstrapExpect is how many members a brand-new cluster waits to see
	// before it creates its pool (default 1).
	BootstrapExpect int
	// Gossip configures membership; Name and Logger are filled in.
	Gossip membership.Config
	// Network is how the API and the peer transport listen and dial
	// (default TCP).
	Network transport.Network
	// Logger receives the node's logs (default slog.Default()).
	Logger *slog.Logger
	// Now is the clock stamped on grants and used for leases (default
	// time.Now).
	Now func() time.Time
	// Seed seeds the random tie-breaks (default: random).
	Seed uint64
	// ArrivalWait bounds how long a request for a partition that has no
	// leader yet waits for one before answering Unavailable (default 3s).
	ArrivalWait time.Duration
	// RPCTimeout bounds one forwarded call to a peer that came without a
	// tighter deadline (default 1s, for status and keep-alive fan-outs).
	RPCTimeout time.Duration
	// TickInterval is one raft tick (default 50ms); ElectionTicks and
	// HeartbeatTicks are raft's election timeout and heartbeat interval in
	// ticks (defaults 10 and 2). OptionsFromConfig derives them from the
	// gossip profile.
	TickInterval   time.Duration
	ElectionTicks  int
	HeartbeatTicks int
	// SnapshotEntries is how many applied commands a partition's raft log
	// keeps before it is compacted behind a snapshot (default 8192).
	SnapshotEntries uint64
	// Incarnation identifies this run of the node's state and is its raft
	// replica id (default: random). A node that restarts without its state
	// must get a new one. With a DataDir that holds a node file, the
	// incarnation recorded there is used.
	Incarnation uint64
	// DataDir is where the node keeps its raft logs, snapshots and
	// identity (docs/storage.md). Empty: nothing is kept, and a restart is
	// a new incarnation that has lost everything.
	DataDir string
	// Sync is the fsync policy of the data directory (default always);
	// SyncInterval is the interval policy's period (default 100ms).
	Sync         store.SyncPolicy
	SyncInterval time.Duration
}

func (o *Options) setDefaults() error {
	if o.Name == "" {
		return fmt.Errorf("node: empty name: %w", freqd.ErrInvalidArgument)
	}
	if err := (peer.Identity{Cluster: 1, ID: 1, Name: o.Name}).Validate(); err != nil {
		return fmt.Errorf("node %q: name: %w: %w", o.Name, err, freqd.ErrInvalidArgument)
	}
	if o.APIAddr == "" {
		return fmt.Errorf("node %s: empty API address: %w", o.Name, freqd.ErrInvalidArgument)
	}
	if o.PeerAddr == "" {
		return fmt.Errorf("node %s: empty peer address: %w", o.Name, freqd.ErrInvalidArgument)
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
	if o.RPCTimeout == 0 {
		o.RPCTimeout = time.Second
	}
	if o.TickInterval == 0 {
		o.TickInterval = 50 * time.Millisecond
	}
	if o.ElectionTicks == 0 {
		o.ElectionTicks = 10
	}
	if o.HeartbeatTicks == 0 {
		o.HeartbeatTicks = 2
	}
	for o.Incarnation == 0 {
		o.Incarnation = rand.Uint64()
	}
	return nil
}

// Node is one freqd process: a raft replica of some partitions, the
// leader of some, and a router for every request. The package doc says
// who owns which state.
type Node struct {
	opts   Options
	log    *slog.Logger
	layout *pool.Layout
	// id is this node's raft replica id in every group: its incarnation.
	id     uint64
	ml     *membership.Membership
	server *transport.Server
	drv    *multiraft.Driver
	// peers is the node-to-node transport, started once the cluster id is
	// known (startPeers, under peerOnce) on peerListener, bound in Start
	// at peerLn.
	peers        peerSet
	peerOnce     sync.Once
	peerListener net.Listener
	peerLn       string

	// shards has one state machine per partition, created in New, never
	// replaced; each guards itself.
	shards []*shard
	// st is the data directory (nil without one); recovered is the
	// identity found there at start (nil if none) and groups the raft
	// state of each partition; lostAtStart the partitions found damaged.
	st          *store.Store
	recovered   *freqdv1.NodeIdentity
	groups      map[int]*store.Recovered
	lostAtStart []int

	ringMu sync.Mutex                // serializes rebuildRing
	ring   atomic.Pointer[ring.Ring] // rebuilt whole by rebuildRing
	view   atomic.Pointer[routeView] // rebuilt from gossip at most every viewTTL
	dir    atomic.Pointer[directory] // members by raft id, rebuilt with the ring
	place  atomic.Pointer[placement] // each group's target voters, rebuilt with the ring

	chMu    sync.Mutex    // guards changed
	changed chan struct{} // closed and replaced when a group's leader or voters change

	rr    atomic.Uint64 // round-robin cursor
	rndMu sync.Mutex
	rnd   *rand.Rand // guarded by rndMu

	leaving  atomic.Bool
	degraded atomic.Bool

	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	left     chan struct{} // closed when the node has left the cluster
	once     sync.Once
	leftOnce sync.Once
}

// requestTimeout bounds a client request that came without a deadline.
const requestTimeout = 30 * time.Second

// compressMinBytes is the smallest message the API compresses.
const compressMinBytes = 64 << 10

// New builds a node and recovers its data directory. Start makes it serve.
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
		changed: make(chan struct{}),
		rnd:     rand.New(rand.NewPCG(opts.Seed, opts.Seed^0x9e3779b97f4a7c15)),
		left:    make(chan struct{}),
	}
	n.shards = make([]*shard, opts.Layout.Partitions())
	for id := range n.shards {
		n.shards[id] = n.newShard(id)
	}
	if opts.DataDir != "" {
		if err := n.openStore(); err != nil {
			return nil, err
		}
	}
	n.id = n.opts.Incarnation
	empty, err := ring.New(rc, nil)
	if err != nil {
		return nil, fmt.Errorf("node %s: ring: %w", opts.Name, err)
	}
	n.ring.Store(empty)
	n.dir.Store(&directory{})
	if err := n.newDriver(); err != nil {
		if n.st == nil || n.groups == nil {
			if n.st != nil {
				_ = n.st.Close()
			}
			return nil, err
		}
		// Records that passed their checksums but do not restore (a bug
		// or a corruption the checksums missed): the same rule as damage.
		if derr := n.discardDamaged(n.recovered, err.Error(), &store.Recovery{}); derr != nil {
			return nil, derr
		}
		n.id, n.groups = n.opts.Incarnation, nil
		for _, s := range n.shards {
			_ = s.Restore(nil) // drop what the failed restore left
		}
		if err := n.newDriver(); err != nil {
			_ = n.st.Close()
			return nil, err
		}
	}
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

// PeerAddr is the address the peer transport listens on (resolved after
// Start).
func (n *Node) PeerAddr() string {
	if n.peerLn != "" {
		return n.peerLn
	}
	return n.opts.PeerAddr
}

// Incarnation is this run's incarnation: the node's raft replica id.
func (n *Node) Incarnation() uint64 { return n.id }

// Left is closed once the node has left the cluster through Leave.
func (n *Node) Left() <-chan struct{} { return n.left }

// Start serves the API and the peer transport, starts gossip, the raft
// driver and the node's goroutines, and joins the configured seeds. It
// returns once the node is reachable; the node becomes active in the
// background once it has joined (or created) the cluster. ctx bounds
// only the start itself.
func (n *Node) Start(ctx context.Context) error {
	mux := http.NewServeMux()
	svc := &service{n: n}
	// Small answers are not worth gzip's CPU; big ones still compress.
	compress := connect.WithCompressMinBytes(compressMinBytes)
	path, h := freqdv1connect.NewFreqdServiceHandler(svc, connect.WithReadMaxBytes(transport.MaxRequestBytes), compress,
		connect.WithInterceptors(transport.DefaultTimeout(requestTimeout)))
	mux.Handle(path, h)
	srv, err := transport.Serve(n.opts.Network, n.opts.APIAddr, mux)
	if err != nil {
		return fmt.Errorf("node %s: %w", n.opts.Name, err)
	}
	n.server = srv
	n.ctx, n.cancel = context.WithCancel(context.Background())
	if err := n.startRaft(); err != nil {
		n.cancel()
		_ = srv.Shutdown(ctx)
		return err
	}

	gc := n.opts.Gossip
	gc.Name = n.opts.Name
	gc.Logger = n.log
	meta := membership.Meta{
		APIAddr:     srv.Addr(),
		PeerAddr:    n.PeerAddr(),
		State:       membership.StateJoining,
		Fingerprint: n.layout.Fingerprint(),
		Incarnation: n.id,
	}
	if id := n.recovered; id != nil && id.GetInitialized() {
		// A restart of a member of a running (or stopped) cluster: it
		// must never found a new one, whoever it finds first.
		meta.Initialized, meta.State, meta.ClusterID = true, membership.StateActive, id.GetClusterId()
	}
	if err := n.storeErr(); err != nil {
		meta.Degraded = true
		n.log.Error("data directory failed; this node stops replicating and leaves the ring until restarted", "dir", n.opts.DataDir, "err", err)
	}
	n.degraded.Store(meta.Degraded)
	ml, err := membership.New(gc, meta)
	if err != nil {
		n.stopRaft()
		_ = srv.Shutdown(ctx)
		return fmt.Errorf("node %s: gossip: %w", n.opts.Name, err)
	}
	n.ml = ml
	if meta.Initialized {
		if err := n.startPeers(meta.ClusterID); err != nil {
			n.cancel()
			_ = ml.Close()
			n.stopRaft()
			_ = srv.Shutdown(ctx)
			return err
		}
	}
	n.spawn(n.ringLoop)
	n.spawn(n.loadLoop)
	n.spawn(n.leaseLoop)
	n.spawn(n.retireLoop)
	if n.st != nil {
		n.spawn(n.storeLoop)
	}
	if meta.Initialized {
		n.rebuildRing()
	}
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

// Close stops the node at once, without handing anything off: a crash, as
// far as the cluster can tell. Use Leave first for a graceful exit.
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
		n.stopRaft()
		if n.st != nil {
			if err := n.st.Close(); err != nil {
				errs = append(errs, fmt.Errorf("node %s: data directory: %w", n.opts.Name, err))
			}
		}
	})
	return errors.Join(errs...)
}
