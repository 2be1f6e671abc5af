package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/freqd/freqd"
	"github.com/freqd/freqd/client"
	"github.com/freqd/freqd/internal/freqmodel"
	"github.com/freqd/freqd/internal/simnet"
	"github.com/freqd/freqd/membership"
	"github.com/freqd/freqd/multiraft"
	"github.com/freqd/freqd/pool"
	"github.com/freqd/freqd/store"
	"github.com/freqd/freqd/transport"
)

// The chaos harness: five nodes on a simulated network (internal/simnet)
// that carries both their RPC and their gossip, a seeded schedule of faults
// (crash and restart, isolation, a 2-vs-3 partition, heal, packet loss,
// delay), and clients that allocate, release and query throughout. At the
// end the network heals, the cluster must settle, every frequency's holder
// is read back, and the whole history is checked:
//
//   - linearizability (porcupine, internal/freqmodel), final reads included;
//   - no acknowledged grant or release lost, and no frequency held by two
//     clients, asserted directly on the final reads;
//   - a side of a partition without a write quorum of a partition's
//     configuration granted nothing in that partition (see chaosEpisode).
//
// An ordinary run uses fixed seeds (chaosCISeeds; FREQD_CHAOS_RANDOM=1 draws
// fresh ones). Every run prints its seed; FREQD_CHAOS_SEED=<n> runs that seed again (the
// fault schedule and the network's drop and delay decisions are the same;
// goroutine scheduling is not, so a rerun is close, not identical).
// FREQD_CHAOS_LONG=1 runs many seeds for longer (FREQD_CHAOS_SEEDS seeds,
// default 30, FREQD_CHAOS_DURATION of faults each, default 30s) and logs
// the totals. FREQD_TEST_LOG=1 shows the nodes' logs, FREQD_CHAOS_TRACE=1
// logs every change of every replica record, and FREQD_CHAOS_DUMP=<dir>
// writes a history that fails the check to <dir>/chaos-<seed>.jsonl.

// Cluster shape and timing of the chaos runs.
const (
	chaosNodes       = 5
	chaosFactor      = 3
	chaosPartitions  = 8
	chaosRange       = "1-24"
	chaosCallTimeout = 1500 * time.Millisecond // one client call, retries included
	chaosRPCTimeout  = 300 * time.Millisecond
	chaosStall       = 500 * time.Millisecond
	chaosHeldCap     = 2 // frequencies a worker holds (or may hold) before it stops allocating
	chaosWorkers     = 6
	chaosAPIPort     = 7001 // node i listens on chaosAPIPort+i; below simnet's dynamic ports
	chaosPeerPort    = 7201 // and its peer transport on chaosPeerPort+i
	chaosGossipPort  = 7101
)

// chaosParams are one test's knobs.
type chaosParams struct {
	seeds        []uint64
	faultsFor    time.Duration // length of the fault schedule per seed
	checkTimeout time.Duration // porcupine budget; running out fails the test
}

func chaosParamsFromEnv(t *testing.T) chaosParams {
	p := chaosParams{faultsFor: 10 * time.Second, checkTimeout: 60 * time.Second}
	n := 2
	if testing.Short() {
		n = 1
	}
	if os.Getenv("FREQD_CHAOS_LONG") != "" {
		p.faultsFor, p.checkTimeout, n = 30*time.Second, 180*time.Second, 30
		if s := os.Getenv("FREQD_CHAOS_SEEDS"); s != "" {
			v, err := strconv.Atoi(s)
			if err != nil || v < 1 {
				t.Fatalf("FREQD_CHAOS_SEEDS=%q: want a positive number", s)
			}
			n = v
		}
	}
	if s := os.Getenv("FREQD_CHAOS_DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			t.Fatalf("FREQD_CHAOS_DURATION=%q: want a positive duration", s)
		}
		p.faultsFor = d
	}
	if s := os.Getenv("FREQD_CHAOS_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("FREQD_CHAOS_SEED=%q: want an unsigned number", s)
		}
		p.seeds = []uint64{v}
		return p
	}
	if os.Getenv("FREQD_CHAOS_LONG") == "" && os.Getenv("FREQD_CHAOS_RANDOM") == "" {
		// CI runs fixed seeds, so a failure there reproduces.
		p.seeds = chaosCISeeds[:n]
		return p
	}
	for range n {
		p.seeds = append(p.seeds, rand.Uint64()%1_000_000_000)
	}
	return p
}

// chaosCISeeds are the seeds of an ordinary (not FREQD_CHAOS_LONG) run.
var chaosCISeeds = []uint64{239426186, 571002443}

// chaosStats counts what one run did.
type chaosStats struct {
	calls       int64 // client calls made (final reads included)
	recorded    int64 // calls in the checked history
	unknown     int64 // recorded with an unknown outcome
	notApplied  int64 // definitely not applied (unavailable), left out of the history
	mislabelled int64 // the client said "unavailable" although an attempt's outcome was unknown
	faults      map[string]int
	minorityOK  int64 // mutations acknowledged on a minority side, all in partitions it had a quorum of
	majorityOK  int64 // mutations acknowledged by majority-side nodes during partitions
	wall        time.Duration
}

func (s *chaosStats) add(o chaosStats) {
	s.calls += o.calls
	s.recorded += o.recorded
	s.unknown += o.unknown
	s.notApplied += o.notApplied
	s.mislabelled += o.mislabelled
	s.minorityOK += o.minorityOK
	s.majorityOK += o.majorityOK
	s.wall += o.wall
	if s.faults == nil {
		s.faults = make(map[string]int)
	}
	for k, v := range o.faults {
		s.faults[k] += v
	}
}

func (s *chaosStats) faultString() string {
	var keys []string
	total := 0
	for k, v := range s.faults {
		keys = append(keys, k)
		total += v
	}
	slices.Sort(keys)
	var b strings.Builder
	fmt.Fprintf(&b, "%d (", total)
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %d", k, s.faults[k])
	}
	b.WriteString(")")
	return b.String()
}

// TestChaos runs the chaos harness for a few seeds (many, with
// FREQD_CHAOS_LONG=1). See the comment at the top of this file.
func TestChaos(t *testing.T) {
	p := chaosParamsFromEnv(t)
	var total chaosStats
	failed := 0
	start := time.Now()
	for _, seed := range p.seeds {
		ok := t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			st := runChaos(t, seed, p)
			total.add(st)
		})
		if !ok {
			failed++
		}
	}
	t.Logf("chaos totals: %d seeds (%d failed), %v of faults each, wall time %v; %d calls, %d in the checked histories (%d of unknown outcome), %d not applied; faults injected %s; %d mutations acknowledged on minority sides (all in partitions they had a quorum of), %d by majority sides during partitions; %d calls the client reported unavailable after an attempt of unknown outcome",
		len(p.seeds), failed, p.faultsFor, time.Since(start).Round(time.Millisecond),
		total.calls, total.recorded, total.unknown, total.notApplied, total.faultString(),
		total.minorityOK, total.majorityOK, total.mislabelled)
}

// chaosSlot is one of the cluster's node names, with its simulated host
// and fixed addresses; the process behind it changes on each restart.
type chaosSlot struct {
	name       string
	host       *simnet.Host
	apiAddr    string
	peerAddr   string
	gossipAddr string
	dataDir    string // kept across restarts, unless a restart wipes it

	// Guarded by chaosRun.mu.
	node   *Node         // the running process; nil while dead
	closed chan struct{} // closed once the last killed process's Close returned; nil if never killed
}

// chaosEpisode is a period during which some nodes (the minority: one
// isolated node, or two nodes partitioned from three) are cut off from
// the others, with dedicated client workers on their side.
//
// The property checked is per partition, since a partition's quorum is a
// majority of its configuration (docs/replication.md), not of the cluster:
// with 5 nodes and factor 3, two nodes may hold two of a partition's three
// replicas and legitimately keep serving it. So a mutation acknowledged to
// a minority-side client, that started after the cut (plus StallTimeout)
// and ended before the heal, must be in a partition whose newest committed
// configuration at the cut had a write quorum of its replicas (current
// incarnations) on the minority side. A single isolated node never has
// one, so it must grant nothing at all.
type chaosEpisode struct {
	num      int
	kind     string // "isolate" or "partition"
	minority []string
	majority []string
	allowed  map[int]bool   // partitions with a write quorum on the minority side at the cut
	configs  map[int]string // each partition's newest committed configuration at the cut
	cut      time.Time
	heal     time.Time // zero until healed; guarded by chaosRun.mu
}

// chaosOp is one client call as recorded.
type chaosOp struct {
	worker     int // porcupine client number
	in         freqmodel.Input
	out        freqmodel.Output // Result Unknown for an unknown outcome
	start, end time.Time        // end is zero for an unknown outcome
	node       string           // node that applied an acknowledged mutation
	episode    *chaosEpisode    // set for minority-side workers
}

func (o chaosOp) String() string {
	s := fmt.Sprintf("%s(%s, %d) -> %s", o.in.Kind, o.in.Client, o.in.Freq, o.out.Result)
	if o.out.Result == freqmodel.OK && o.in.Kind == freqmodel.Alloc {
		s += fmt.Sprintf(" %d", o.out.Freq)
	}
	if o.node != "" {
		s += " by " + o.node
	}
	return s
}

// chaosRun is one seed's run.
type chaosRun struct {
	t      *testing.T
	seed   uint64
	p      chaosParams
	sim    *simnet.Net
	layout *pool.Layout
	freqs  []uint32
	rec    *freqmodel.Recorder
	start  time.Time
	slots  []*chaosSlot
	// sched draws the fault schedule and the nodes' seeds; only one
	// goroutine uses it at a time (the test's, then the schedule's, then
	// the test's again).
	sched *rand.Rand

	closers sync.WaitGroup // Close of killed processes
	// workers runs every client worker; wctx ends them all (minority
	// workers also end with their episode).
	workers     sync.WaitGroup
	wctx        context.Context
	stopWorkers context.CancelFunc

	calls, notApplied, mislabelled atomic.Int64
	unexpected, unknownLogged      atomic.Int64
	resolving                      atomic.Int64 // further calls made to resolve allocations of unknown outcome

	// abort ends everything at once, even allocations being resolved: on a
	// test failure, and at shutdown.
	abort       context.Context
	cancelAbort context.CancelFunc

	mu       sync.Mutex // guards the slots' node and closed, ops, episodes, faults, nextNum, clients
	ops      []chaosOp
	episodes []*chaosEpisode
	faults   map[string]int
	nextNum  int
	clients  []*http.Client
}

func runChaos(t *testing.T, seed uint64, p chaosParams) chaosStats {
	t.Logf("chaos seed %d (rerun with FREQD_CHAOS_SEED=%d)", seed, seed)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("FAILED with chaos seed %d: rerun with FREQD_CHAOS_SEED=%d (FREQD_TEST_LOG=1 for node logs)", seed, seed)
		}
	})
	began := time.Now()
	rs, err := pool.ParseRanges([]string{chaosRange})
	if err != nil {
		t.Fatal(err)
	}
	layout, err := pool.NewLayout(rs, chaosPartitions)
	if err != nil {
		t.Fatal(err)
	}
	r := &chaosRun{
		t: t, seed: seed, p: p, sim: simnet.New(seed), layout: layout,
		rec: freqmodel.NewRecorder(), start: time.Now(),
		sched:  rand.New(rand.NewPCG(seed, 0xc4a05)),
		faults: make(map[string]int),
	}
	for _, sp := range layout.Spans() {
		for f := uint64(sp.First); f <= uint64(sp.Last); f++ {
			r.freqs = append(r.freqs, uint32(f))
		}
	}
	r.wctx, r.stopWorkers = context.WithCancel(context.Background())
	r.abort, r.cancelAbort = context.WithCancel(context.Background())
	defer r.shutdown()
	for i := range chaosNodes {
		name := fmt.Sprintf("n%d", i+1)
		r.slots = append(r.slots, &chaosSlot{
			name: name, host: r.sim.Host(name),
			apiAddr:    fmt.Sprintf("127.0.0.1:%d", chaosAPIPort+i),
			peerAddr:   fmt.Sprintf("127.0.0.1:%d", chaosPeerPort+i),
			gossipAddr: fmt.Sprintf("127.0.0.1:%d", chaosGossipPort+i),
		})
	}
	for _, s := range r.slots {
		r.startNode(s)
	}
	waitFor(t, 30*time.Second, "the cluster to form", r.formed)
	if os.Getenv("FREQD_CHAOS_TRACE") != "" {
		r.startTrace()
	}

	// Regular workers talk to every node, from hosts outside any cut.
	var workers []*chaosWorker
	addrs := r.apiAddrs(nil)
	for i := range chaosWorkers {
		rot := append(slices.Clone(addrs[i%len(addrs):]), addrs[:i%len(addrs)]...)
		w := r.newWorker(fmt.Sprintf("c%d", i), r.sim.Host(fmt.Sprintf("c%d", i)), rot, nil)
		workers = append(workers, w)
		r.spawnWorker(r.wctx, w)
	}
	// Settle with the workers running: a primary deposed while gossip held
	// it dead learns it only from a write or read it serves.
	if why := r.waitSettled(30 * time.Second); why != "" {
		r.dumpRing()
		t.Fatalf("cluster did not settle: %s", why)
	}
	r.logf("cluster settled")

	// The fault schedule.
	sctx, stopSchedule := context.WithCancel(context.Background())
	defer stopSchedule()
	r.schedule(sctx, time.Now().Add(p.faultsFor))

	// Recovery: heal everything, bring every node back, and wait until the
	// cluster has settled, with the workers still running.
	r.sim.Heal()
	r.sim.SetDrop(0)
	r.sim.SetDelay(0, 0)
	for _, s := range r.slots {
		if r.nodeOf(s) == nil {
			r.restart(s)
		}
	}
	if why := r.waitSettled(30 * time.Second); why != "" {
		r.dumpRing()
		t.Errorf("cluster did not settle within 30s after the faults ended: %s", why)
	} else {
		r.logf("settled after the faults")
	}
	before := r.calls.Load()
	waitFor(t, 10*time.Second, "calls after recovery", func() bool { return r.calls.Load() > before+50 })
	r.stopWorkers()
	r.workers.Wait()

	final := r.finalReads()
	r.check(workers, final)

	st := r.stats()
	st.wall = time.Since(began)
	t.Logf("seed %d: %d calls, %d in the history (%d unknown), %d not applied, %d calls resolving allocations of unknown outcome, faults %s, wall %v",
		seed, st.calls, st.recorded, st.unknown, st.notApplied, r.resolving.Load(), st.faultString(), st.wall.Round(time.Millisecond))
	return st
}

func (r *chaosRun) logf(format string, args ...any) {
	r.t.Helper()
	now := time.Now()
	r.t.Logf("+%6.3fs (%s) "+format, append([]any{now.Sub(r.start).Seconds(), now.UTC().Format("15:04:05.000")}, args...)...)
}

func (r *chaosRun) fault(kind string) {
	r.mu.Lock()
	r.faults[kind]++
	r.mu.Unlock()
}

// startNode starts a process on s's host, at s's fixed addresses, with
// s's data directory: the same incarnation with its state, or a new one if
// the directory is empty.
func (r *chaosRun) startNode(s *chaosSlot) {
	t := r.t
	if s.dataDir == "" {
		s.dataDir = t.TempDir()
	}
	gt, err := s.host.NewGossipTransportAt(s.gossipAddr)
	if err != nil {
		t.Fatalf("gossip transport for %s: %v", s.name, err)
	}
	var seeds []string
	for _, o := range r.slots {
		if o != s {
			seeds = append(seeds, o.gossipAddr)
		}
	}
	prof, err := membership.ProfileByName(membership.ProfileFast)
	if err != nil {
		t.Fatal(err)
	}
	nd, err := New(Options{
		Name:              s.name,
		APIAddr:           s.apiAddr,
		PeerAddr:          s.peerAddr,
		Layout:            r.layout,
		ReplicationFactor: chaosFactor,
		BootstrapExpect:   chaosNodes,
		Network:           s.host.Network(),
		Gossip: membership.Config{
			Transport:      gt,
			Seeds:          seeds,
			Profile:        prof,
			RejoinInterval: 200 * time.Millisecond,
			LoadInterval:   50 * time.Millisecond,
		},
		Logger:       testLogger(t).With("seed", r.seed),
		TickInterval: 20 * time.Millisecond,
		RPCTimeout:   chaosRPCTimeout,
		Seed:         r.sched.Uint64() | 1,
		Incarnation:  r.sched.Uint64() | 1,
		DataDir:      s.dataDir,
		Sync:         store.SyncNone, // a kill here loses no page cache
	})
	if err != nil {
		_ = gt.Shutdown()
		t.Fatalf("new node %s: %v", s.name, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := nd.Start(ctx); err != nil {
		_ = nd.Close()
		t.Fatalf("start node %s: %v", s.name, err)
	}
	r.mu.Lock()
	s.node = nd
	r.mu.Unlock()
}

func (r *chaosRun) nodeOf(s *chaosSlot) *Node {
	r.mu.Lock()
	defer r.mu.Unlock()
	return s.node
}

// kill crashes s's process: the network drops it at once; its Close runs
// in the background (the test waits for it before a restart and at the
// end).
func (r *chaosRun) kill(s *chaosSlot) {
	r.sim.Kill(s.host.Name())
	r.mu.Lock()
	nd := s.node
	s.node = nil
	done := make(chan struct{})
	s.closed = done
	r.mu.Unlock()
	r.fault("kill")
	r.logf("kill %s", s.name)
	r.closers.Add(1)
	go func() {
		defer r.closers.Done()
		defer close(done)
		_ = nd.Close() // its listener and transport are gone: errors are expected
	}()
}

// restart starts a killed node again, once the old process has finished
// closing (a process still running would otherwise talk through the
// revived host): usually from its data directory (the same incarnation),
// one time in four from an empty one (a lost disk: a new incarnation).
func (r *chaosRun) restart(s *chaosSlot) {
	r.mu.Lock()
	done := s.closed
	r.mu.Unlock()
	if done != nil {
		<-done
	}
	kind := "restart"
	if r.sched.IntN(4) == 0 {
		kind = "restart-empty"
		if err := os.RemoveAll(s.dataDir); err != nil {
			r.t.Fatal(err)
		}
		s.dataDir = r.t.TempDir()
	}
	r.sim.Restart(s.host.Name())
	r.startNode(s)
	r.fault(kind)
	r.logf("%s %s", kind, s.name)
}

func (r *chaosRun) liveNodes() []*Node {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*Node
	for _, s := range r.slots {
		if s.node != nil {
			out = append(out, s.node)
		}
	}
	return out
}

// apiAddrs returns the API addresses of the named nodes (all if names is nil).
func (r *chaosRun) apiAddrs(names []string) []string {
	var out []string
	for _, s := range r.slots {
		if names == nil || slices.Contains(names, s.name) {
			out = append(out, s.apiAddr)
		}
	}
	return out
}

// formed reports whether every node is up, active and sees all the others.
func (r *chaosRun) formed() bool {
	nodes := r.liveNodes()
	if len(nodes) < chaosNodes {
		return false
	}
	for _, n := range nodes {
		if !n.Active() || n.ring.Load().Len() != chaosNodes {
			return false
		}
	}
	return true
}

// settled reports whether every node is up, active and agrees on a ring of
// all of them, and every partition is writable with its ring owner as
// primary and the ring's replicas, as their current incarnations, as its
// configuration: fully replicated, so one more crash loses nothing.
func (r *chaosRun) settled() (bool, string) {
	nodes := r.liveNodes()
	if len(nodes) < chaosNodes {
		return false, fmt.Sprintf("%d of %d nodes up", len(nodes), chaosNodes)
	}
	ids := make(map[string]string)
	var want string
	for i, n := range nodes {
		ids[n.Name()] = n.dir.Load().label(n.id)
		if !n.Active() {
			return false, n.Name() + " not active"
		}
		if l := n.ring.Load().Len(); l != len(nodes) {
			return false, fmt.Sprintf("%s's ring has %d members", n.Name(), l)
		}
		s := fmt.Sprint(n.ring.Load().Members())
		if i == 0 {
			want = s
		} else if s != want {
			return false, "rings differ"
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, p := range nodes[0].RingInfo(ctx).GetPartitions() {
		if !p.GetWritable() || p.GetHolder() != p.GetOwner() {
			return false, fmt.Sprintf("partition %d: holder %q owner %q writable %v: %s", p.GetId(), p.GetHolder(), p.GetOwner(), p.GetWritable(), p.GetReason())
		}
		var wantCfg []string
		for _, name := range p.GetReplicas() {
			wantCfg = append(wantCfg, ids[name])
		}
		slices.Sort(wantCfg)
		if got := slices.Sorted(slices.Values(p.GetVoters())); !slices.Equal(got, wantCfg) || len(p.GetLearners()) > 0 {
			return false, fmt.Sprintf("partition %d: voters %v learners %v, want the ring's replicas %v", p.GetId(), p.GetVoters(), p.GetLearners(), wantCfg)
		}
	}
	return true, ""
}

// waitSettled polls settled for up to d; it returns "" once settled, else
// the last reason it was not.
func (r *chaosRun) waitSettled(d time.Duration) string {
	deadline := time.Now().Add(d)
	for {
		ok, why := r.settled()
		if ok {
			return ""
		}
		if time.Now().After(deadline) {
			return why
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// dumpRing logs what one node reports about the partitions, and every
// node's own record of each.
func (r *chaosRun) dumpRing() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	nodes := r.liveNodes()
	if len(nodes) == 0 {
		return
	}
	for _, p := range nodes[0].RingInfo(ctx).GetPartitions() {
		r.t.Logf("%s sees partition %d: owner %s replicas %v holder %q voters %v learners %v term %d writable %v %s",
			nodes[0].Name(), p.GetId(), p.GetOwner(), p.GetReplicas(), p.GetHolder(), p.GetVoters(), p.GetLearners(), p.GetTerm(), p.GetWritable(), p.GetReason())
	}
	for _, n := range nodes {
		for _, st := range n.replicaStates().GetReplicas() {
			r.t.Logf("  %s partition %d: %s term %d leader %s voters %v learners %v applied %d %s", n.Name(), st.GetPartition(), st.GetRole(),
				st.GetTerm(), st.GetLeader(), st.GetVoters(), st.GetLearners(), st.GetApplied(), st.GetReason())
		}
	}
}

// quorumOn returns the partitions whose raft voters, as the live replica
// with the newest term records them, have a majority among the named
// nodes (current incarnations): only those may commit on that side.
func (r *chaosRun) quorumOn(names []string) (map[int]bool, map[int]string) {
	nodes := r.liveNodes()
	side := make(map[uint64]bool)
	for _, n := range nodes {
		if slices.Contains(names, n.Name()) {
			side[n.id] = true
		}
	}
	out := make(map[int]bool)
	configs := make(map[int]string)
	for id := range r.layout.Partitions() {
		var newest multiraft.GroupInfo
		for _, n := range nodes {
			if info := n.drv.Info(id); info.Hosted && info.Term >= newest.Term {
				newest = info
			}
		}
		in := 0
		for _, m := range newest.Voters {
			if side[m] {
				in++
			}
		}
		if len(newest.Voters) > 0 && in >= len(newest.Voters)/2+1 {
			out[id] = true
		}
		configs[id] = fmt.Sprintf("term %d voters %x learners %x", newest.Term, newest.Voters, newest.Learners)
	}
	return out, configs
}

// pause waits d or until ctx ends; false if ctx ended.
func pause(ctx context.Context, d time.Duration) bool {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// between draws a duration in [lo, hi) from rnd.
func between(rnd *rand.Rand, lo, hi time.Duration) time.Duration {
	return lo + time.Duration(rnd.Int64N(int64(hi-lo)))
}

// schedule injects faults until the deadline: episodes of one kind of
// fault (sometimes with loss or delay on top), each undone at its end,
// separated by quiet periods. At most two nodes are ever cut off or down,
// so three can always serve; a node is killed only while the cluster is
// settled (fully replicated), since a restarted node comes back empty and
// two lost replicas of a partition would lose it for good.
func (r *chaosRun) schedule(ctx context.Context, until time.Time) {
	rnd := r.sched
	for time.Now().Before(until) && ctx.Err() == nil {
		hold := between(rnd, 800*time.Millisecond, 3*time.Second)
		if rnd.IntN(100) < 30 {
			r.layerNoise(rnd)
		}
		switch k := rnd.IntN(100); {
		case k < 25:
			r.killEpisode(ctx, rnd, hold)
		case k < 45:
			r.isolateEpisode(ctx, rnd, hold)
		case k < 75:
			r.partitionEpisode(ctx, rnd, hold)
		case k < 85:
			r.sim.SetDrop(0.05 + 0.15*rnd.Float64())
			r.fault("drop")
			r.logf("drop on")
			pause(ctx, hold)
		case k < 95:
			lo := time.Duration(rnd.IntN(3)) * time.Millisecond
			r.sim.SetDelay(lo, lo+time.Duration(1+rnd.IntN(8))*time.Millisecond)
			r.fault("delay")
			r.logf("delay on")
			pause(ctx, hold)
		default:
			r.logf("quiet")
			pause(ctx, hold)
		}
		r.sim.SetDrop(0)
		r.sim.SetDelay(0, 0)
		pause(ctx, between(rnd, 300*time.Millisecond, 1500*time.Millisecond))
	}
}

// layerNoise adds packet loss or delay to the next episode.
func (r *chaosRun) layerNoise(rnd *rand.Rand) {
	if rnd.IntN(2) == 0 {
		p := 0.05 + 0.15*rnd.Float64()
		r.sim.SetDrop(p)
		r.fault("drop")
		r.logf("drop %.0f%% on", 100*p)
		return
	}
	lo := time.Duration(rnd.IntN(3)) * time.Millisecond
	hi := lo + time.Duration(1+rnd.IntN(8))*time.Millisecond
	r.sim.SetDelay(lo, hi)
	r.fault("delay")
	r.logf("delay %v-%v on", lo, hi)
}

// killEpisode crashes one node (two, one after the other, sometimes: the
// second only once the cluster has re-replicated after the first) and
// restarts it after hold.
func (r *chaosRun) killEpisode(ctx context.Context, rnd *rand.Rand, hold time.Duration) {
	victim := r.slots[rnd.IntN(len(r.slots))]
	if why := r.waitSettled(5 * time.Second); why != "" {
		r.logf("no kill of %s: cluster not settled (%s)", victim.name, why)
		pause(ctx, hold)
		return
	}
	r.kill(victim)
	pause(ctx, hold)
	r.restart(victim)
}

// isolateEpisode cuts one node off from everyone, with a client worker on
// its own host (traffic within a host is never cut) that talks only to it.
// Sometimes another node crashes meanwhile.
func (r *chaosRun) isolateEpisode(ctx context.Context, rnd *rand.Rand, hold time.Duration) {
	i := rnd.IntN(len(r.slots))
	iso := r.slots[i]
	if r.nodeOf(iso) == nil {
		return
	}
	var others []string
	for _, s := range r.slots {
		if s != iso {
			others = append(others, s.name)
		}
	}
	e := &chaosEpisode{kind: "isolate", minority: []string{iso.name}, majority: others}
	e.allowed, e.configs = r.quorumOn(e.minority)
	r.sim.Isolate(iso.host.Name())
	e.cut = time.Now()
	r.fault("isolate")
	r.logf("isolate %s", iso.name)
	stop := r.startMinority(e, []*simnet.Host{iso.host})

	var victim *chaosSlot
	if rnd.IntN(3) == 0 {
		victim = r.slots[(i+1+rnd.IntN(len(r.slots)-1))%len(r.slots)]
		if ok, _ := r.settled(); !ok {
			victim = nil // a crash now could lose a partition's last replicas
		}
	}
	if victim != nil {
		pause(ctx, hold/3)
		r.kill(victim)
		pause(ctx, 2*hold/3)
	} else {
		pause(ctx, hold)
	}
	r.healEpisode(e, stop)
	if victim != nil {
		r.restart(victim)
	}
}

// partitionEpisode splits the nodes two against three, with two client
// workers on the minority side that talk only to its nodes.
func (r *chaosRun) partitionEpisode(ctx context.Context, rnd *rand.Rand, hold time.Duration) {
	perm := rnd.Perm(len(r.slots))
	var minority, majority []string
	for k, i := range perm {
		if k < 2 {
			minority = append(minority, r.slots[i].name)
		} else {
			majority = append(majority, r.slots[i].name)
		}
	}
	slices.Sort(minority)
	slices.Sort(majority)
	e := &chaosEpisode{kind: "partition", minority: minority, majority: majority}
	r.mu.Lock()
	num := len(r.episodes)
	r.mu.Unlock()
	ch := r.sim.Host(fmt.Sprintf("m%d", num))
	e.allowed, e.configs = r.quorumOn(minority)
	r.sim.Partition(append(slices.Clone(minority), ch.Name()), majority)
	e.cut = time.Now()
	r.fault("partition")
	r.logf("partition %v | %v (minority has a quorum of partitions %v)", minority, majority, sortedKeys(e.allowed))
	stop := r.startMinority(e, []*simnet.Host{ch, ch})
	pause(ctx, hold)
	r.healEpisode(e, stop)
}

func sortedKeys(m map[int]bool) []int {
	var out []int
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// healEpisode heals the network, ends the episode and stops its workers.
func (r *chaosRun) healEpisode(e *chaosEpisode, stop func()) {
	r.mu.Lock()
	e.heal = time.Now()
	r.mu.Unlock()
	r.sim.Heal()
	r.fault("heal")
	r.logf("heal")
	stop()
}

// startMinority registers e and starts one worker per host on the
// minority side; the returned func stops them and waits.
func (r *chaosRun) startMinority(e *chaosEpisode, hosts []*simnet.Host) func() {
	r.mu.Lock()
	e.num = len(r.episodes)
	r.episodes = append(r.episodes, e)
	r.mu.Unlock()
	ctx, cancel := context.WithCancel(r.wctx)
	var done []chan struct{}
	addrs := r.apiAddrs(e.minority)
	for k, h := range hosts {
		w := r.newWorker(fmt.Sprintf("m%d-%d", e.num, k), h, addrs, e)
		done = append(done, r.spawnWorker(ctx, w))
	}
	return func() {
		cancel()
		for _, d := range done {
			<-d
		}
	}
}

// spawnWorker runs w until ctx ends; the channel closes when it has.
func (r *chaosRun) spawnWorker(ctx context.Context, w *chaosWorker) chan struct{} {
	done := make(chan struct{})
	r.workers.Add(1)
	go func() {
		defer r.workers.Done()
		defer close(done)
		w.run(ctx)
	}()
	return done
}

// chaosAttempts records whether any HTTP attempt of one client call may
// have reached a node and been applied, for a call whose final error does
// not say (the Go client returns its last attempt's error).
type chaosAttempts struct{ unknown atomic.Bool }

type chaosAttemptsKey struct{}

// chaosTracker wraps a client's HTTP transport and marks the call's
// chaosAttempts when an attempt's outcome is unknown: it failed after the
// connection was made, or a node answered with an error that is not a
// freqd handler's definite answer, or an explicit "outcome unknown".
type chaosTracker struct{ base http.RoundTripper }

func (tr chaosTracker) RoundTrip(req *http.Request) (*http.Response, error) {
	a, _ := req.Context().Value(chaosAttemptsKey{}).(*chaosAttempts)
	resp, err := tr.base.RoundTrip(req)
	if a == nil {
		return resp, err
	}
	if err != nil {
		if !transport.NotSent(err) {
			a.unknown.Store(true)
		}
		return resp, err
	}
	if resp.StatusCode != http.StatusOK {
		if reason := resp.Header.Get(transport.ErrorReasonKey); reason == "" || reason == "outcome-unknown" {
			a.unknown.Store(true)
		}
		return resp, nil
	}
	resp.Body = &chaosBody{ReadCloser: resp.Body, a: a}
	return resp, nil
}

// CloseIdleConnections passes http.Client.CloseIdleConnections on.
func (tr chaosTracker) CloseIdleConnections() {
	if c, ok := tr.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// chaosBody marks the call unknown if a successful answer cannot be read
// whole.
type chaosBody struct {
	io.ReadCloser
	a *chaosAttempts
}

func (b *chaosBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		b.a.unknown.Store(true)
	}
	return n, err
}

// chaosWorker is one client, making one call at a time.
type chaosWorker struct {
	r       *chaosRun
	num     int          // porcupine client number
	id      string       // freqd client id
	hc      *http.Client // shared by cl and once
	cl      *client.Client
	once    *client.Client // without retries
	rnd     *rand.Rand
	episode *chaosEpisode // for minority-side workers

	// Owned by the worker's goroutine. mine: frequencies the worker was
	// acknowledged (or read) to hold, with no release attempted since:
	// only these are released with the retrying client, whose "an earlier
	// attempt freed it" answer is sound only for a frequency the caller
	// holds and has no other release of in flight. uncertain: frequencies
	// it may hold (an allocation of unknown outcome; a frequency it has a
	// release of unknown outcome of, tainted for good). Both are released
	// with single attempts.
	mine, uncertain, tainted map[uint32]bool
}

func (r *chaosRun) newWorker(id string, h *simnet.Host, addrs []string, e *chaosEpisode) *chaosWorker {
	hc := transport.NewHTTPClient(h.Network())
	hc.Transport = chaosTracker{base: hc.Transport}
	cl, err := client.New(addrs, client.WithHTTPClient(hc))
	if err != nil {
		r.t.Fatal(err)
	}
	once, err := client.New(addrs, client.WithHTTPClient(hc), client.WithoutRetry())
	if err != nil {
		r.t.Fatal(err)
	}
	r.mu.Lock()
	num := r.nextNum
	r.nextNum++
	r.clients = append(r.clients, hc)
	r.mu.Unlock()
	return &chaosWorker{
		r: r, num: num, id: id, hc: hc, cl: cl, once: once, episode: e,
		rnd:  rand.New(rand.NewPCG(r.seed, uint64(num)+1)),
		mine: make(map[uint32]bool), uncertain: make(map[uint32]bool), tainted: make(map[uint32]bool),
	}
}

func (w *chaosWorker) run(ctx context.Context) {
	for ctx.Err() == nil {
		w.step()
	}
}

func pick(rnd *rand.Rand, set map[uint32]bool) uint32 {
	keys := make([]uint32, 0, len(set))
	for f := range set {
		keys = append(keys, f)
	}
	slices.Sort(keys)
	return keys[rnd.IntN(len(keys))]
}

// step makes one call chosen at random and updates what the worker holds.
func (w *chaosWorker) step() {
	rnd := w.rnd
	f := w.r.freqs[rnd.IntN(len(w.r.freqs))]
	room := len(w.mine)+len(w.uncertain) < chaosHeldCap
	k := rnd.IntN(100)
	if w.episode != nil {
		k = rnd.IntN(67) // minority workers only allocate and release
	}
	switch {
	case k < 30 && room:
		out, st := w.do(freqmodel.Input{Kind: freqmodel.Alloc, Client: w.id}, true)
		if st == chaosDone && out.Result == freqmodel.OK {
			w.held(out.Freq)
		}
	case k < 42 && room:
		out, st := w.do(freqmodel.Input{Kind: freqmodel.AllocFreq, Client: w.id, Freq: f}, true)
		switch {
		case st == chaosDone && out.Result == freqmodel.OK:
			w.held(f)
		case st == chaosUnknown:
			w.uncertain[f] = true
		}
	case k < 67 && len(w.mine) > 0:
		f := pick(rnd, w.mine)
		out, st := w.do(freqmodel.Input{Kind: freqmodel.Release, Client: w.id, Freq: f}, true)
		switch st {
		case chaosDone:
			delete(w.mine, f)
			if out.Result != freqmodel.OK {
				w.r.logf("%s: release of %d it held answered %s (the history check will judge)", w.id, f, out.Result)
			}
		case chaosUnknown:
			delete(w.mine, f)
			w.tainted[f], w.uncertain[f] = true, true
		}
	case k < 67 && len(w.uncertain) > 0:
		w.releaseOnce(pick(rnd, w.uncertain))
	case k < 67:
		if w.episode == nil && !w.mine[f] {
			w.releaseOnce(f) // most likely not ours: not held, or held by another
		}
	case k < 75 && !w.mine[f]:
		w.releaseOnce(f)
	default:
		out, st := w.do(freqmodel.Input{Kind: freqmodel.Holder, Freq: f}, true)
		if st != chaosDone {
			return
		}
		switch {
		case out.Holder == w.id && !w.mine[f]:
			w.held(f)
		case out.Holder != w.id && w.mine[f]:
			w.r.logf("%s: holder of %d, which it held, read as %q (the history check will judge)", w.id, f, out.Holder)
			delete(w.mine, f)
		}
	}
}

// held notes a frequency the worker now holds for certain.
func (w *chaosWorker) held(f uint32) {
	if w.tainted[f] {
		w.uncertain[f] = true
		return
	}
	delete(w.uncertain, f)
	w.mine[f] = true
}

// releaseOnce releases f in a single attempt: every answer is definite or
// recorded as unknown, never inferred.
func (w *chaosWorker) releaseOnce(f uint32) {
	_, st := w.do(freqmodel.Input{Kind: freqmodel.Release, Client: w.id, Freq: f}, false)
	switch st {
	case chaosDone:
		delete(w.uncertain, f)
		delete(w.mine, f)
	case chaosUnknown:
		delete(w.mine, f)
		w.tainted[f], w.uncertain[f] = true, true
	}
}

// chaosStatus is what a call's outcome means for the history.
type chaosStatus int

const (
	chaosDone       chaosStatus = iota + 1 // definite answer, recorded
	chaosUnknown                           // may or may not have been applied, recorded as unknown
	chaosNotApplied                        // definitely not applied (or a read that failed), not recorded
)

// chaosResolveFor bounds how long a worker keeps retrying an allocation of
// unknown outcome with its request id before recording it as unknown.
const chaosResolveFor = 20 * time.Second

// do makes one call, with the retrying client or in a single attempt, and
// records it.
//
// An allocation whose outcome is unknown is retried, with the same request
// id, in further calls until one answers definitely (or chaosResolveFor
// passes): the request id makes the allocation happen at most once, so the
// calls together are one allocation that took effect somewhere between
// the first call's start and the last one's end, and the answer is that
// allocation's (a repeated grant, or the grant or refusal of the only
// attempt that was applied). This is what a client is meant to do, and
// it keeps the history's calls of unknown outcome few: each allocation of
// any frequency left unknown multiplies the states the checker explores.
func (w *chaosWorker) do(in freqmodel.Input, retry bool) (freqmodel.Output, chaosStatus) {
	r := w.r
	cl := w.cl
	if !retry {
		cl = w.once
	}
	request := ""
	if in.Kind == freqmodel.Alloc || in.Kind == freqmodel.AllocFreq {
		request = client.NewRequestID()
	}
	start := time.Now()
	unknown := false // some call so far may have been applied
	for {
		out, node, st := w.call(cl, in, request)
		end := time.Now()
		switch {
		case st == chaosDone:
			r.rec.Record(w.num, in, start, end, out)
			op := chaosOp{worker: w.num, in: in, out: out, start: start, end: end, episode: w.episode}
			if out.Result == freqmodel.OK && in.Kind != freqmodel.Holder {
				op.node = node
			}
			r.addOp(op)
			return out, st
		case st == chaosNotApplied && !unknown:
			r.notApplied.Add(1)
			return out, st
		case st == chaosUnknown:
			unknown = true
		}
		if request == "" || r.abort.Err() != nil || time.Since(start) > chaosResolveFor {
			r.rec.RecordUnknown(w.num, in, start)
			r.addOp(chaosOp{worker: w.num, in: in, out: freqmodel.Output{Result: freqmodel.Unknown}, start: start, episode: w.episode})
			return freqmodel.Output{Result: freqmodel.Unknown}, chaosUnknown
		}
		r.resolving.Add(1)
		pause(r.abort, 50*time.Millisecond)
	}
}

func (r *chaosRun) addOp(op chaosOp) {
	r.mu.Lock()
	r.ops = append(r.ops, op)
	r.mu.Unlock()
}

// call makes one client call (with its client's retries, if any) and
// classifies its outcome; an allocation carries the given request id.
func (w *chaosWorker) call(cl *client.Client, in freqmodel.Input, request string) (freqmodel.Output, string, chaosStatus) {
	r := w.r
	a := &chaosAttempts{}
	ctx, cancel := context.WithTimeout(context.WithValue(context.Background(), chaosAttemptsKey{}, a), chaosCallTimeout)
	defer cancel()
	var out freqmodel.Output
	var node string
	var err error
	switch in.Kind {
	case freqmodel.Alloc:
		var g client.Grant
		g, err = cl.AllocateWithID(ctx, in.Client, request, nil)
		out.Freq, node = g.Frequency, g.Node
	case freqmodel.AllocFreq:
		var g client.Grant
		f := in.Freq
		g, err = cl.AllocateWithID(ctx, in.Client, request, &f)
		out.Freq, node = g.Frequency, g.Node
	case freqmodel.Release:
		var res interface{ GetNode() string }
		res, err = cl.ReleaseDetail(ctx, in.Client, in.Freq)
		if err == nil {
			node = res.GetNode()
		}
	case freqmodel.Holder:
		var h client.Holding
		h, err = cl.Holder(ctx, in.Freq)
		out.Held, out.Holder = h.Held, h.ClientID
	}
	r.calls.Add(1)
	res, definite := freqmodel.Classify(err)
	if errors.Is(err, freqd.ErrOutcomeUnknown) {
		// The client wraps both "outcome unknown" and the answer that made
		// it so (a release retried after an attempt of unknown outcome
		// that finds the frequency held by another client), which Classify
		// alone would take for a definite answer.
		definite = false
	}
	switch {
	case definite:
		out.Result = res
		return out, node, chaosDone
	case in.Kind == freqmodel.Holder:
		return out, "", chaosNotApplied // a read of unknown outcome changed nothing
	case a.unknown.Load() || transport.Unknown(err) || errors.Is(err, freqd.ErrOutcomeUnknown):
		if errors.Is(err, freqd.ErrUnavailable) && !transport.Unknown(err) {
			r.mislabelled.Add(1)
		}
		if r.unknownLogged.Add(1) <= 20 {
			r.logf("%s: %s(%d) of unknown outcome: %v", w.id, in.Kind, in.Freq, err)
		}
		return out, "", chaosUnknown
	case errors.Is(err, freqd.ErrUnavailable) || transport.NotSent(err):
		return out, "", chaosNotApplied
	}
	// Not a documented outcome: count it, and treat it as unknown so the
	// history stays sound.
	if r.unexpected.Add(1) <= 5 {
		r.logf("%s: %s(%d): unexpected error: %v", w.id, in.Kind, in.Freq, err)
	}
	return out, "", chaosUnknown
}

// finalReads reads every frequency's holder through every node, records
// the reads in the history, and returns the last pass's answers.
func (r *chaosRun) finalReads() map[uint32]string {
	t := r.t
	w := r.newWorker("final", r.sim.Host("final"), r.apiAddrs(nil), nil)
	final := make(map[uint32]string)
	for _, s := range r.slots {
		cl, err := client.New([]string{s.apiAddr}, client.WithHTTPClient(w.hc))
		if err != nil {
			t.Fatal(err)
		}
		w.cl = cl
		for _, f := range r.freqs {
			var out freqmodel.Output
			var st chaosStatus
			for range 5 {
				if out, st = w.do(freqmodel.Input{Kind: freqmodel.Holder, Freq: f}, true); st == chaosDone {
					break
				}
			}
			if st != chaosDone {
				t.Errorf("final read of %d via %s failed five times", f, s.name)
				continue
			}
			if prev, ok := final[f]; ok && prev != out.Holder {
				r.logf("final reads of %d disagree: %q, then %q via %s", f, prev, out.Holder, s.name)
			}
			final[f] = out.Holder
		}
	}
	return final
}

func (r *chaosRun) stats() chaosStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := chaosStats{
		calls: r.calls.Load(), notApplied: r.notApplied.Load(), mislabelled: r.mislabelled.Load(),
		recorded: int64(len(r.ops)), faults: make(map[string]int),
	}
	for _, op := range r.ops {
		if op.out.Result == freqmodel.Unknown {
			st.unknown++
		}
	}
	for k, v := range r.faults {
		st.faults[k] = v
	}
	for _, e := range r.episodes {
		mi, ma := r.partitionCounts(e)
		st.minorityOK += int64(mi)
		st.majorityOK += int64(ma)
	}
	return st
}

// mutation reports whether op is an acknowledged change: a grant (with
// the frequency) or a release.
func (op chaosOp) mutation() (f uint32, grant, ok bool) {
	if op.out.Result != freqmodel.OK {
		return 0, false, false
	}
	switch op.in.Kind {
	case freqmodel.Alloc:
		return op.out.Freq, true, true
	case freqmodel.AllocFreq:
		return op.in.Freq, true, true
	case freqmodel.Release:
		return op.in.Freq, false, true
	}
	return 0, false, false
}

// inEpisode reports whether op started after e's cut (plus the stall
// timeout) and ended before its heal. Caller holds r.mu.
func (e *chaosEpisode) inEpisode(op chaosOp) bool {
	return !e.heal.IsZero() && !op.end.IsZero() && op.start.After(e.cut.Add(chaosStall)) && op.end.Before(e.heal)
}

// partitionCounts counts e's acknowledged mutations in its window: by its
// minority workers, and by majority-side nodes for the regular workers.
// Caller holds r.mu.
func (r *chaosRun) partitionCounts(e *chaosEpisode) (minority, majority int) {
	for _, op := range r.ops {
		if _, _, ok := op.mutation(); !ok || !e.inEpisode(op) {
			continue
		}
		switch {
		case op.episode == e:
			minority++
		case op.episode == nil && slices.Contains(e.majority, op.node):
			majority++
		}
	}
	return minority, majority
}

// check runs every check on the finished run.
func (r *chaosRun) check(workers []*chaosWorker, final map[uint32]string) {
	t := r.t
	r.mu.Lock()
	ops := slices.Clone(r.ops)
	episodes := slices.Clone(r.episodes)
	r.mu.Unlock()
	sort.Slice(ops, func(i, j int) bool { return ops[i].start.Before(ops[j].start) })

	// (a) Linearizability of the whole history, final reads included.
	began := time.Now()
	if err := r.rec.Check(r.freqs, r.p.checkTimeout); err != nil {
		t.Errorf("porcupine: %v", err)
		r.diagnose(ops)
		r.dump()
	} else {
		r.logf("history of %d calls linearizable (checked in %v)", len(ops), time.Since(began).Round(time.Millisecond))
	}

	// (b) No acknowledged grant or release lost: each frequency's final
	// holder is what its last acknowledged change left, unless a call of
	// unknown outcome could have changed it since.
	checked := r.checkFinal(ops, final)
	r.logf("final holders of %d of %d frequencies follow from acknowledged calls alone; the rest are explained by calls of unknown outcome", checked, len(r.freqs))

	// No frequency held by two clients: no two workers were both
	// acknowledged a frequency without releasing it (a worker's "mine" set
	// never holds a frequency it has a release of unknown outcome of), and
	// the final reads agree with each worker's holdings.
	owner := make(map[uint32]string)
	for _, w := range workers {
		for f := range w.mine {
			if other, dup := owner[f]; dup {
				t.Errorf("frequency %d held by both %s and %s (each was acknowledged it and never released it)", f, other, w.id)
			}
			owner[f] = w.id
			if final[f] != w.id {
				t.Errorf("frequency %d: %s was acknowledged it and never released it, but the final holder is %q", f, w.id, final[f])
			}
		}
	}

	// (c) A minority side granted nothing in a partition it had no quorum of.
	for _, e := range episodes {
		mi, ma := 0, 0
		for _, op := range ops {
			f, _, ok := op.mutation()
			if !ok || !e.inEpisode(op) {
				continue
			}
			switch {
			case op.episode == e:
				mi++
				id, _ := r.layout.Lookup(f)
				if !e.allowed[id] {
					t.Errorf("%s %v | %v: %s acknowledged on the minority side in partition %d, of which it had no quorum (configuration at the cut: %s; cut at +%.2fs, call +%.2fs..+%.2fs, heal +%.2fs)",
						e.kind, e.minority, e.majority, op, id, e.configs[id], r.sec(e.cut), r.sec(op.start), r.sec(op.end), r.sec(e.heal))
				}
			case op.episode == nil && slices.Contains(e.majority, op.node):
				ma++
			}
		}
		r.logf("%s %v | %v for %v: %d mutations acknowledged on the minority side (quorum of partitions %v), %d by the majority side",
			e.kind, e.minority, e.majority, e.heal.Sub(e.cut).Round(time.Millisecond), mi, sortedKeys(e.allowed), ma)
	}
	if n := r.unexpected.Load(); n > 0 {
		t.Errorf("%d calls failed with an undocumented error (recorded as unknown)", n)
	}
}

func (r *chaosRun) sec(tm time.Time) float64 { return tm.Sub(r.start).Seconds() }

// checkFinal asserts that each frequency's final holder follows from its
// last acknowledged change, or from a call of unknown outcome that could
// have changed it later. It returns how many frequencies had no such
// call to take into account.
func (r *chaosRun) checkFinal(ops []chaosOp, final map[uint32]string) int {
	t := r.t
	// Clients with an allocation of unknown outcome that could grant each
	// frequency; "*" for any-frequency allocations.
	anyAlloc := make(map[string]bool)
	freqAlloc := make(map[uint32]map[string]bool)
	unknownRelease := make(map[uint32]map[string]bool)
	for _, op := range ops {
		if op.out.Result != freqmodel.Unknown {
			continue
		}
		switch op.in.Kind {
		case freqmodel.Alloc:
			anyAlloc[op.in.Client] = true
		case freqmodel.AllocFreq:
			if freqAlloc[op.in.Freq] == nil {
				freqAlloc[op.in.Freq] = make(map[string]bool)
			}
			freqAlloc[op.in.Freq][op.in.Client] = true
		case freqmodel.Release:
			if unknownRelease[op.in.Freq] == nil {
				unknownRelease[op.in.Freq] = make(map[string]bool)
			}
			unknownRelease[op.in.Freq][op.in.Client] = true
		}
	}
	clean := 0
	for _, f := range r.freqs {
		var last *chaosOp
		for i := range ops {
			if g, _, ok := ops[i].mutation(); ok && g == f && (last == nil || ops[i].end.After(last.end)) {
				last = &ops[i]
			}
		}
		if last != nil {
			overlap := false
			for i := range ops {
				if g, _, ok := ops[i].mutation(); ok && g == f && &ops[i] != last && ops[i].end.After(last.start) {
					overlap = true // two changes in no known order: porcupine judges
				}
			}
			if overlap {
				continue
			}
		}
		want, desc := "", "never acknowledged to anyone"
		if last != nil {
			_, grant, _ := last.mutation()
			if grant {
				want = last.in.Client
			}
			desc = fmt.Sprintf("last acknowledged %s (+%.2fs..+%.2fs)", last, r.sec(last.start), r.sec(last.end))
		}
		allowed := map[string]bool{want: true}
		if want != "" && unknownRelease[f][want] {
			allowed[""] = true // its holder's release of unknown outcome may have freed it
		}
		if allowed[""] {
			for c := range anyAlloc {
				allowed[c] = true
			}
			for c := range freqAlloc[f] {
				allowed[c] = true
			}
		}
		if len(allowed) == 1 {
			clean++
		}
		if !allowed[final[f]] {
			t.Errorf("frequency %d: %s, but its final holder is %q (calls of unknown outcome allow only %v)", f, desc, final[f], sortedNames(allowed))
		}
	}
	return clean
}

func sortedNames(m map[string]bool) []string {
	var out []string
	for k := range m {
		if k == "" {
			k = `""`
		}
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// shutdown closes every node, waits for the killed ones, drops the
// clients' connections and closes the network.
func (r *chaosRun) shutdown() {
	r.cancelAbort()
	r.stopWorkers()
	r.workers.Wait()
	var wg sync.WaitGroup
	for _, n := range r.liveNodes() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := n.Close(); err != nil {
				r.t.Logf("close %s: %v", n.Name(), err)
			}
		}()
	}
	wg.Wait()
	r.closers.Wait()
	r.mu.Lock()
	clients := slices.Clone(r.clients)
	r.mu.Unlock()
	for _, hc := range clients {
		hc.CloseIdleConnections()
	}
	r.sim.Close()
}

// diagnose checks each frequency's projection of the history: the calls
// on that frequency alone, an allocation of any frequency counting as one
// of that frequency if it was granted it (or, of unknown outcome, may have
// been). Every projection of a linearizable history is linearizable, and
// the projections are small, so a projection that is not pinpoints a
// violation the whole check may be too slow to prove.
func (r *chaosRun) diagnose(ops []chaosOp) {
	t := r.t
	for _, f := range r.freqs {
		rec := freqmodel.NewRecorder()
		var mine []chaosOp
		for _, op := range ops {
			in := op.in
			switch {
			case in.Kind == freqmodel.Alloc && op.out.Result == freqmodel.Unknown:
				in = freqmodel.Input{Kind: freqmodel.AllocFreq, Client: in.Client, Freq: f}
			case in.Kind == freqmodel.Alloc && op.out.Result == freqmodel.OK && op.out.Freq == f:
				in = freqmodel.Input{Kind: freqmodel.AllocFreq, Client: in.Client, Freq: f}
			case in.Kind == freqmodel.Alloc || in.Freq != f:
				continue
			}
			mine = append(mine, op)
			if op.out.Result == freqmodel.Unknown {
				rec.RecordUnknown(op.worker, in, op.start)
			} else {
				out := op.out
				out.Freq = in.Freq
				rec.Record(op.worker, in, op.start, op.end, out)
			}
		}
		err := rec.Check([]uint32{f}, 20*time.Second)
		if err == nil {
			continue
		}
		t.Errorf("frequency %d alone: %v; its calls:", f, err)
		for _, op := range mine {
			end := "never"
			if !op.end.IsZero() {
				end = fmt.Sprintf("+%.3fs", r.sec(op.end))
			}
			extra := ""
			if op.in.Kind == freqmodel.Holder {
				extra = fmt.Sprintf(" held %v by %q", op.out.Held, op.out.Holder)
			}
			ep := ""
			if op.episode != nil {
				ep = fmt.Sprintf(" [minority of %s %d]", op.episode.kind, op.episode.num)
			}
			t.Logf("    +%.3fs..%s (%s) w%d %s%s%s", r.sec(op.start), end, op.start.UTC().Format("15:04:05.000"), op.worker, op, extra, ep)
		}
	}
}

// dump writes the history as JSON lines to $FREQD_CHAOS_DUMP/chaos-<seed>.jsonl
// when that variable names a directory.
func (r *chaosRun) dump() {
	dir := os.Getenv("FREQD_CHAOS_DUMP")
	if dir == "" {
		return
	}
	r.mu.Lock()
	ops := slices.Clone(r.ops)
	r.mu.Unlock()
	var b strings.Builder
	for _, op := range ops {
		end := int64(-1)
		if !op.end.IsZero() {
			end = op.end.Sub(r.start).Nanoseconds()
		}
		fmt.Fprintf(&b, `{"worker":%d,"kind":%q,"client":%q,"freq":%d,"result":%q,"out_freq":%d,"held":%v,"holder":%q,"start":%d,"end":%d,"node":%q}`+"\n",
			op.worker, op.in.Kind, op.in.Client, op.in.Freq, op.out.Result, op.out.Freq, op.out.Held, op.out.Holder,
			op.start.Sub(r.start).Nanoseconds(), end, op.node)
	}
	path := fmt.Sprintf("%s/chaos-%d.jsonl", dir, r.seed)
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		r.t.Logf("dump: %v", err)
		return
	}
	r.t.Logf("history written to %s", path)
}

// startTrace logs every change of every live node's raft replicas
// (role, term, leader, voters, applied), polled every millisecond until
// the run ends: a debugging aid (FREQD_CHAOS_TRACE=1).
func (r *chaosRun) startTrace() {
	type key struct {
		node string
		id   int
	}
	last := make(map[key]string)
	r.workers.Add(1)
	go func() {
		defer r.workers.Done()
		for pause(r.wctx, time.Millisecond) {
			for _, n := range r.liveNodes() {
				for id := range n.shards {
					info := n.drv.Info(id)
					s := fmt.Sprintf("%s term %d leader %x voters %x learners %x applied %d", info.Role, info.Term, info.Leader, info.Voters, info.Learners, info.Applied)
					k := key{n.Name(), id}
					if last[k] != s {
						last[k] = s
						r.logf("trace %s p%d: %s", k.node, k.id, s)
					}
				}
			}
		}
	}()
}
