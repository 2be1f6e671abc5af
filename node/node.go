package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"github.com/freqd/freqd"
	"github.com/freqd/freqd/gen/freqd/v1/freqdv1connect"
	"github.com/freqd/freqd/membership"
	"github.com/freqd/freqd/partition"
	"github.com/freqd/freqd/pool"
	"github.com/freqd/freqd/ring"
	"github.com/freqd/freqd/store"
	"github.com/freqd/freqd/transport"

	freqdv1 "github.com/freqd/freqd/gen/freqd/v1"
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
	// ReplicationFactor is N, the number of replicas of each partition
	// (default 1). A write commits on a majority of N (docs/replication.md).
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
	// ArrivalWait bounds how long a ring owner waits for its takeover of a
	// partition before answering Unavailable (default 3s).
	ArrivalWait time.Duration
	// RebalanceInterval is how often the node checks, besides on every ring
	// change, that it leads the partitions it owns (default 500ms).
	RebalanceInterval time.Duration
	// RPCTimeout bounds one replication call to a peer (default 1s).
	RPCTimeout time.Duration
	// StallTimeout is how long a primary that cannot reach a quorum keeps
	// queueing writes before it refuses them at once (default 1s).
	StallTimeout time.Duration
	// Incarnation identifies this run of the node (default: random). A node
	// that restarts without its state must get a new one. With a DataDir
	// that holds a node file, the incarnation recorded there is used.
	Incarnation uint64
	// DataDir is where the node keeps its partitions, promises and
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
	if o.RPCTimeout == 0 {
		o.RPCTimeout = time.Second
	}
	if o.StallTimeout == 0 {
		o.StallTimeout = time.Second
	}
	for o.Incarnation == 0 {
		o.Incarnation = rand.Uint64()
	}
	return nil
}

// Node is one freqd process: a replica of some partitions, the primary of
// some, and a router for every request. The package doc says who owns
// which state.
type Node struct {
	opts   Options
	log    *slog.Logger
	layout *pool.Layout
	self   ReplicaID
	ml     *membership.Membership
	server *transport.Server
	http   *http.Client

	// recs has one record per partition, created in New, never replaced;
	// each is guarded by its own mutex.
	recs []*record
	// st is the data directory (nil without one); recovered is the
	// identity found there at start (nil if none). Both set in New.
	st        *store.Store
	recovered *freqdv1.NodeIdentity
	// lostAtStart lists the partitions found damaged on disk at start.
	lostAtStart []int

	ring atomic.Pointer[ring.Ring] // rebuilt whole by ringLoop
	view atomic.Pointer[routeView] // rebuilt from gossip at most every viewTTL

	mu       sync.Mutex // guards running, nextTry, failures, peers
	running  map[int]bool
	nextTry  map[int]time.Time
	failures map[int]int
	peers    map[string]peerClient // by API address

	chMu    sync.Mutex    // guards changed
	changed chan struct{} // closed and replaced when a record changes role

	maxTerm atomic.Uint64 // highest epoch term seen
	// appends and appended count Append calls that carried commands and
	// the commands they carried (group commit: appended/appends grows with
	// load).
	appends, appended atomic.Uint64
	rr                atomic.Uint64 // round-robin cursor
	rndMu             sync.Mutex
	rnd               *rand.Rand // guarded by rndMu

	leaving atomic.Bool
	kick    chan struct{} // capacity 1: wake the reconciler

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

// requestTimeout bounds a client request that came without a deadline.
const requestTimeout = 30 * time.Second

// compressMinBytes is the smallest message the API compresses.
const compressMinBytes = 64 << 10

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
		opts:     opts,
		log:      opts.Logger.With("node", opts.Name),
		layout:   opts.Layout,
		self:     ReplicaID{Name: opts.Name, Incarnation: opts.Incarnation},
		http:     transport.NewHTTPClient(opts.Network),
		running:  make(map[int]bool),
		nextTry:  make(map[int]time.Time),
		failures: make(map[int]int),
		changed:  make(chan struct{}),
		peers:    make(map[string]peerClient),
		rnd:      rand.New(rand.NewPCG(opts.Seed, opts.Seed^0x9e3779b97f4a7c15)),
		kick:     make(chan struct{}, 1),
		left:     make(chan struct{}),
	}
	n.recs = make([]*record, opts.Layout.Partitions())
	for id := range n.recs {
		n.recs[id] = &record{id: id}
	}
	if opts.DataDir != "" {
		if err := n.openStore(); err != nil {
			return nil, err
		}
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

// ReplicationStats reports how many Append calls carrying commands this
// node sent as a primary, and how many commands they carried in all.
func (n *Node) ReplicationStats() (appends, commands uint64) {
	return n.appends.Load(), n.appended.Load()
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
	// Small answers are not worth gzip's CPU (it showed as 15% of a loaded
	// node's profile); snapshots still compress.
	compress := connect.WithCompressMinBytes(compressMinBytes)
	path, h := freqdv1connect.NewFreqdServiceHandler(svc, readLimit(transport.MaxRequestBytes), compress,
		connect.WithInterceptors(transport.DefaultTimeout(requestTimeout)))
	mux.Handle(path, h)
	path, h = freqdv1connect.NewPeerServiceHandler(&peerService{n: n}, readLimit(transport.MaxPeerMessageBytes), compress,
		connect.WithInterceptors(transport.HandlerDeadline(nil)))
	mux.Handle(path, h)
	srv, err := transport.Serve(n.opts.Network, n.opts.APIAddr, mux)
	if err != nil {
		return fmt.Errorf("node %s: %w", n.opts.Name, err)
	}
	n.server = srv

	gc := n.opts.Gossip
	gc.Name = n.opts.Name
	gc.Logger = n.log
	meta := membership.Meta{
		APIAddr:     srv.Addr(),
		State:       membership.StateJoining,
		Fingerprint: n.layout.Fingerprint(),
		Incarnation: n.self.Incarnation,
	}
	if id := n.recovered; id != nil && id.GetInitialized() {
		// A restart of a member of a running (or stopped) cluster: it
		// must never found a new one, whoever it finds first.
		meta.Initialized, meta.State, meta.ClusterID = true, membership.StateActive, id.GetClusterId()
	}
	meta.Degraded = n.storeErr() != nil
	ml, err := membership.New(gc, meta)
	if err != nil {
		_ = srv.Shutdown(ctx)
		return fmt.Errorf("node %s: gossip: %w", n.opts.Name, err)
	}
	n.ml = ml
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.spawn(n.ringLoop)
	n.spawn(n.loadLoop)
	n.spawn(n.reconcileLoop)
	n.spawn(n.leaseLoop)
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

func (n *Node) spawn(fn func(ctx context.Context)) { n.spawnCtx(n.ctx, fn) }

// spawnCtx runs fn(ctx) on a goroutine that Close waits for; ctx must end
// when n.ctx does.
func (n *Node) spawnCtx(ctx context.Context, fn func(ctx context.Context)) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		fn(ctx)
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
		if n.st != nil {
			// Checkpoint everything so the next start replays nothing
			// (the log is retired); a failure here loses nothing, the log
			// still holds it all.
			if n.st.Err() == nil {
				for _, r := range n.recs {
					if err := n.checkpoint(r); err != nil {
						n.log.Warn("checkpoint at close", "partition", r.id, "err", err)
						break
					}
				}
			}
			if err := n.st.Close(); err != nil {
				errs = append(errs, fmt.Errorf("node %s: data directory: %w", n.opts.Name, err))
			}
		}
		n.http.CloseIdleConnections()
	})
	return errors.Join(errs...)
}

// kickReconcile wakes the reconciler without blocking.
func (n *Node) kickReconcile() {
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

// addrOf returns the API address of a live member, or "". It must not be
// called with a record's mutex held (the view reads every record).
func (n *Node) addrOf(name string) string { return n.currentView().addr[name] }

// isPrimary reports whether this node is r's primary now.
func (r *record) isPrimary() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.role == rolePrimary
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
		api: freqdv1connect.NewFreqdServiceClient(n.http, base),
		peer: freqdv1connect.NewPeerServiceClient(n.http, base, readLimitClient(transport.MaxPeerMessageBytes),
			connect.WithInterceptors(transport.ClientDeadline())),
	}
	n.peers[addr] = pc
	return pc
}

// newPartition makes the fresh partition for id.
func (n *Node) newPartition(id int) *partition.Partition {
	sp, _ := n.layout.Span(id)
	return partition.New(id, sp.First, sp.Last)
}
