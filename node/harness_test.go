package node

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/freqd/freqd/client"
	"github.com/freqd/freqd/internal/testutil"
	"github.com/freqd/freqd/membership"
	"github.com/freqd/freqd/pool"
	"github.com/freqd/freqd/store"
)

// testCluster runs freqd nodes in this process on loopback.
type testCluster struct {
	t      testing.TB
	layout *pool.Layout
	opts   clusterOpts

	mu      sync.Mutex
	nodes   []*Node // guarded by mu; index i is node n{i+1}
	crashed []*Node // guarded by mu
	seeds   []string
	gossip  map[string]string // node name -> gossip address; guarded by mu
	dirs    map[string]string // node name -> data directory (with opts.durable)
}

type clusterOpts struct {
	ranges     []string
	partitions int
	strategy   Strategy
	factor     int
	prefix     string // node name prefix (default "n")
	// quickDetect shortens failure detection (probe every 200 ms): a lone
	// survivor, which no one can confirm suspicions for, waits the
	// maximum suspicion timeout, 18 s with the local profile.
	quickDetect bool
	// durable gives every node a data directory (kept across restarts)
	// with fsync policy sync.
	durable bool
	sync    store.SyncPolicy
	// now is every node's clock (default time.Now).
	now func() time.Time
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("FREQD_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// startCluster starts n nodes that bootstrap one cluster together and
// waits until every partition has a holder everyone agrees on.
func startCluster(t testing.TB, n int, o clusterOpts) *testCluster {
	t.Helper()
	if len(o.ranges) == 0 {
		o.ranges = []string{"10-15", "20-25"}
	}
	if o.factor == 0 {
		o.factor = 3
	}
	if o.prefix == "" {
		o.prefix = "n"
	}
	rs, err := pool.ParseRanges(o.ranges)
	if err != nil {
		t.Fatal(err)
	}
	layout, err := pool.NewLayout(rs, o.partitions)
	if err != nil {
		t.Fatal(err)
	}
	c := &testCluster{t: t, layout: layout, opts: o, gossip: make(map[string]string), dirs: make(map[string]string)}
	addrs := make([]string, n)
	for i := range addrs {
		addrs[i] = testutil.FreeAddr(t)
	}
	c.seeds = addrs
	for i := 0; i < n; i++ {
		c.startNode(fmt.Sprintf("%s%d", o.prefix, i+1), addrs[i], addrs, n)
	}
	t.Cleanup(c.closeAll)
	c.waitStable(20 * time.Second)
	return c
}

func (c *testCluster) startNode(name, gossipAddr string, seeds []string, expect int) *Node {
	c.t.Helper()
	for attempt := 1; ; attempt++ {
		nd, err := c.tryStart(name, gossipAddr, seeds, expect)
		if err == nil {
			return nd
		}
		// FreeAddr's port may be taken (by another test process's
		// outgoing connection) before memberlist binds it: take another.
		if attempt < 3 && strings.Contains(err.Error(), "address already in use") {
			c.t.Logf("node %s: %v; retrying on another port", name, err)
			old := gossipAddr
			gossipAddr = testutil.FreeAddr(c.t)
			c.mu.Lock()
			for i, s := range c.seeds {
				if s == old {
					c.seeds[i] = gossipAddr
				}
			}
			c.mu.Unlock()
			continue
		}
		c.t.Fatalf("start node %s: %v", name, err)
	}
}

// tryStart builds and starts one node; on failure nothing of it runs.
func (c *testCluster) tryStart(name, gossipAddr string, seeds []string, expect int) (*Node, error) {
	prof, _ := membership.ProfileByName(membership.ProfileLocal)
	prof.GossipInterval = 50 * time.Millisecond
	prof.PushPullInterval = 2 * time.Second
	if c.opts.quickDetect {
		prof.ProbeInterval, prof.ProbeTimeout = 200*time.Millisecond, 100*time.Millisecond
	}
	var others []string
	for _, s := range seeds {
		if s != gossipAddr {
			others = append(others, s)
		}
	}
	c.mu.Lock()
	c.gossip[name] = gossipAddr
	dir := ""
	if c.opts.durable {
		if c.dirs[name] == "" {
			c.dirs[name] = c.t.TempDir()
		}
		dir = c.dirs[name]
	}
	c.mu.Unlock()
	nd, err := New(Options{
		DataDir:           dir,
		Sync:              c.opts.sync,
		Now:               c.opts.now,
		Name:              name,
		APIAddr:           "127.0.0.1:0",
		PeerAddr:          "127.0.0.1:0",
		Layout:            c.layout,
		ReplicationFactor: c.opts.factor,
		Strategy:          c.opts.strategy,
		BootstrapExpect:   expect,
		Gossip: membership.Config{
			BindAddr:       gossipAddr,
			Seeds:          others,
			Profile:        prof,
			RejoinInterval: 200 * time.Millisecond,
			LoadInterval:   50 * time.Millisecond,
		},
		Logger:       testLogger(c.t).With("node", name),
		TickInterval: 20 * time.Millisecond,
	})
	if err != nil {
		return nil, fmt.Errorf("new node %s: %w", name, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := nd.Start(ctx); err != nil {
		_ = nd.Close()
		return nil, err
	}
	c.mu.Lock()
	c.nodes = append(c.nodes, nd)
	c.mu.Unlock()
	return nd, nil
}

// restart starts a crashed node again under its name, gossip address and
// data directory; it replaces the crashed one in the live set.
func (c *testCluster) restart(name string) *Node {
	c.t.Helper()
	c.mu.Lock()
	addr := c.gossip[name]
	for i, n := range c.nodes {
		if n.Name() == name {
			c.crashed = append(c.crashed, n)
			c.nodes = append(c.nodes[:i], c.nodes[i+1:]...)
			break
		}
	}
	c.mu.Unlock()
	return c.startNode(name, addr, c.seeds, 1)
}

// node returns the live node named name, or nil.
func (c *testCluster) node(name string) *Node {
	for _, n := range c.live() {
		if n.Name() == name {
			return n
		}
	}
	return nil
}

// addNode starts one more node that joins the running cluster.
func (c *testCluster) addNode(name string) *Node {
	c.t.Helper()
	return c.startNode(name, testutil.FreeAddr(c.t), c.seeds, 1)
}

func (c *testCluster) closeAll() {
	c.mu.Lock()
	nodes := append([]*Node(nil), c.nodes...)
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := n.Close(); err != nil {
				c.t.Logf("close %s: %v", n.Name(), err)
			}
		}()
	}
	wg.Wait()
}

// forget drops a crashed node from the live set (it stays in the list so
// that closeAll closes it again, harmlessly).
func (c *testCluster) forget(n *Node) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.crashed = append(c.crashed, n)
}

// live returns the nodes that are still members (not left, not crashed).
func (c *testCluster) live() []*Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*Node
	for _, n := range c.nodes {
		if slices.Contains(c.crashed, n) {
			continue
		}
		select {
		case <-n.Left():
		default:
			out = append(out, n)
		}
	}
	return out
}

// addrs returns the API addresses of the live nodes.
func (c *testCluster) addrs() []string {
	var out []string
	for _, n := range c.live() {
		out = append(out, n.APIAddr())
	}
	return out
}

// client returns a Go client for the given node addresses.
func (c *testCluster) client(addrs ...string) *client.Client {
	c.t.Helper()
	cl, err := client.New(addrs)
	if err != nil {
		c.t.Fatal(err)
	}
	return cl
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// led returns the partitions n leads.
func (n *Node) led() []int {
	var out []int
	for id := range n.shards {
		if n.leads(id) {
			out = append(out, id)
		}
	}
	return out
}

// waitStable waits until every live node is active and agrees on the ring,
// and every partition is writable with its ring owner as primary and the
// ring's replicas as its raft voters.
func (c *testCluster) waitStable(d time.Duration) {
	c.t.Helper()
	var last string
	deadline := time.Now().Add(d)
	for {
		ok, why := c.stable()
		if ok {
			return
		}
		last = why
		if time.Now().After(deadline) {
			c.t.Fatalf("timed out after %v waiting for the cluster to settle: %s", d, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (c *testCluster) stable() (bool, string) {
	live := c.live()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var want string
	for i, n := range live {
		if !n.Active() {
			return false, n.Name() + " not active"
		}
		if n.ring.Load().Len() != len(live) {
			return false, fmt.Sprintf("%s ring has %d members", n.Name(), n.ring.Load().Len())
		}
		s := fmt.Sprint(n.ring.Load().Members())
		if i == 0 {
			want = s
		} else if s != want {
			return false, "rings differ"
		}
	}
	n := live[0]
	ri := n.RingInfo(ctx)
	for _, p := range ri.GetPartitions() {
		if !p.GetWritable() || p.GetHolder() != p.GetOwner() {
			return false, fmt.Sprintf("partition %d: holder %q owner %q writable %v: %s", p.GetId(), p.GetHolder(), p.GetOwner(), p.GetWritable(), p.GetReason())
		}
		var names []string
		for _, m := range p.GetVoters() {
			names = append(names, m[:strings.IndexByte(m, '#')])
		}
		slices.Sort(names)
		reps := slices.Sorted(slices.Values(p.GetReplicas()))
		if fmt.Sprint(names) != fmt.Sprint(reps) || len(p.GetLearners()) > 0 {
			return false, fmt.Sprintf("partition %d: voters %v learners %v, ring replicas %v", p.GetId(), p.GetVoters(), p.GetLearners(), p.GetReplicas())
		}
	}
	return true, ""
}
