package main

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/freqd/freqd"
	"github.com/freqd/freqd/client"
	"github.com/freqd/freqd/config"
	freqdv1 "github.com/freqd/freqd/gen/freqd/v1"
	"github.com/freqd/freqd/transport"
)

// The cluster the failover tests run: five `freqd serve` processes on
// loopback sharing a pool of 2000 frequencies in 16 partitions, each
// replicated on three nodes.
const (
	foNodes      = 5
	foPartitions = 16
	foFactor     = 3
	foPoolFirst  = 1
	foPoolLast   = 2000
	// foProbeFreqs frequencies at the top of each partition are reserved for
	// its prober: workers never ask for them by number.
	foProbeFreqs = 4
	// foWorkers load workers run during the whole test, each holding at most
	// foMaxHeld frequencies.
	foWorkers = 8
	foMaxHeld = 16
	// foCallTimeout bounds one (retried) client call of a worker.
	foCallTimeout = 10 * time.Second
	// foProbeTimeout bounds one probe call (a single attempt).
	foProbeTimeout = 300 * time.Millisecond
	// foQuiet is how long every prober must have succeeded without a
	// failure before a failover counts as finished.
	foQuiet = 2 * time.Second
	// foDeadline bounds every wait for the cluster to (re)form.
	foDeadline = 30 * time.Second
	// foPoll is the interval between two looks at the cluster.
	foPoll = 100 * time.Millisecond
)

// TestMultiProcessKillAndRestart runs five `freqd serve` processes under
// continuous load from the Go client, kills one with SIGKILL, later
// another, restarts both as new incarnations, and then checks that every
// acknowledged allocation and release survived: each acknowledged holding
// is held by exactly its client, and nothing is held by a client that was
// not told so (unless one of its calls had an unknown outcome). It reports
// the failover times (kill to every partition writable again) without
// asserting them.
func TestMultiProcessKillAndRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds freqd and runs a 5-process cluster under load; skipped with -short")
	}
	start := time.Now()
	ignore := goleak.IgnoreCurrent()
	dir := t.TempDir()
	bin := buildFreqd(t, dir)
	seed := foSeed(t)
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) }) // after every later cleanup: processes reaped, connections closed
	c := foStart(t, bin, dir, config.ProfileFast, seed)
	t.Logf("5 nodes (profile fast) formed %v after the start", time.Since(start).Round(time.Millisecond))

	c.startLoad()
	c.waitLoad()

	first := c.pickVictim()
	f1 := c.killAndMeasure(first)
	t.Logf("kill -9 %s: %v", first.name, f1)
	second := c.pickVictim()
	f2 := c.killAndMeasure(second)
	t.Logf("kill -9 %s: %v", second.name, f2)

	restarted := time.Now()
	c.restart(first)
	c.restart(second)
	c.waitStable("both restarted nodes to rejoin")
	t.Logf("%s and %s restarted as new incarnations; cluster stable again after %v",
		first.name, second.name, time.Since(restarted).Round(time.Millisecond))
	c.waitLoad() // some load on the restored cluster before the check

	c.stopAndCheck()
	t.Logf("failover times (profile fast, kill -9 to every partition writable again): %s %v, %s %v",
		first.name, f1.writes.Round(time.Millisecond), second.name, f2.writes.Round(time.Millisecond))
	t.Logf("false suspicions: %v", c.suspicions())
	t.Logf("total %v, seed %d", time.Since(start).Round(time.Millisecond), seed)
}

// TestFailoverTimes measures the failover time over many kills with the
// `local` and `fast` gossip profiles, under full load, and counts false
// suspicions. It takes minutes and runs only when asked for.
func TestFailoverTimes(t *testing.T) {
	if os.Getenv("FREQD_FAILOVER_BENCH") != "1" {
		t.Skip("failover benchmark (minutes); run with: FREQD_FAILOVER_BENCH=1 go test -count=1 -timeout 30m -run TestFailoverTimes -v ./cmd/freqd/ " +
			"(FREQD_FAILOVER_ROUNDS=n kills per profile, default 10; FREQD_FAILOVER_PROFILES=local,fast; FREQD_FAILOVER_SEED=n to repeat a run; " +
			"FREQD_FAILOVER_LOGS=dir keeps the server logs)")
	}
	rounds := 10
	if s := os.Getenv("FREQD_FAILOVER_ROUNDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("FREQD_FAILOVER_ROUNDS=%q: want a positive integer", s)
		}
		rounds = n
	}
	ignore := goleak.IgnoreCurrent()
	dir := t.TempDir()
	bin := buildFreqd(t, dir)
	seed := foSeed(t)
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })

	profiles := []string{config.ProfileLocal, config.ProfileFast}
	if s := os.Getenv("FREQD_FAILOVER_PROFILES"); s != "" {
		profiles = strings.Split(s, ",")
	}
	var rows []foSummary
	for _, profile := range profiles {
		t.Run(profile, func(t *testing.T) {
			pdir := filepath.Join(dir, profile)
			if err := os.Mkdir(pdir, 0o700); err != nil {
				t.Fatal(err)
			}
			c := foStart(t, bin, pdir, profile, seed)
			c.startLoad()
			c.waitLoad()
			var times []time.Duration
			for i := range rounds {
				v := c.pickVictim()
				f := c.killAndMeasure(v)
				t.Logf("round %d/%d: kill -9 %s: %v", i+1, rounds, v.name, f)
				times = append(times, f.writes)
				c.restart(v)
				c.waitStable("the restarted " + v.name + " to rejoin")
			}
			c.stopAndCheck()
			s := foSummarize(profile, times, c.suspicions(), c.load.opsDone())
			t.Logf("%s", s.row())
			rows = append(rows, s)
		})
	}
	var b strings.Builder
	fmt.Fprintf(&b, "failover time, kill -9 to every partition writable again (5 processes on loopback, factor 3, %d partitions, %d workers, seed %d):\n",
		foPartitions, foWorkers, seed)
	b.WriteString(foTableHeader)
	for _, r := range rows {
		b.WriteString(r.row())
		b.WriteByte('\n')
	}
	t.Logf("%s", b.String())
}

// foSeed returns FREQD_FAILOVER_SEED, or a fresh seed, and logs it.
func foSeed(t *testing.T) uint64 {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("FREQD_FAILOVER_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("FREQD_FAILOVER_SEED=%q: %v", s, err)
		}
		seed = n
	}
	t.Logf("seed %d (repeat with FREQD_FAILOVER_SEED=%d)", seed, seed)
	return seed
}

// foNode is one node of the cluster, across its incarnations. Its fields
// belong to the test goroutine.
type foNode struct {
	name, api, gossip, cfg string
	proc                   *e2eProc       // the current (or last) process
	cl                     *client.Client // this node only, single attempts
	gen                    int            // processes started so far
	down                   bool           // killed and not restarted yet
}

// foSpan is one partition's frequency range.
type foSpan struct{ id, first, last uint32 }

// foDown is one kill: the node was down from from to to (zero while down).
type foDown struct {
	name     string
	from, to time.Time
}

// foCluster drives the processes and the load. Its fields belong to the
// test goroutine, except reg and load, which document their own.
type foCluster struct {
	t     *testing.T
	e     *e2eCluster
	seed  uint64
	rng   *rand.Rand   // victim choice
	hc    *http.Client // shared by every client; idle connections closed at the end
	nodes []*foNode
	all   *client.Client // every address, with retries
	spans []foSpan
	dead  map[string]bool // replica ids (name#incarnation) of killed processes
	downs []foDown
	reg   *foRegistry
	load  *foLoad
}

// foStart writes the configs, starts five processes and waits until the
// cluster is formed and settled.
func foStart(t *testing.T, bin, dir, profile string, seed uint64) *foCluster {
	t.Helper()
	c := &foCluster{
		t: t, e: &e2eCluster{t: t, bin: bin, dir: dir, env: envWithoutFreqd()},
		seed: seed, rng: rand.New(rand.NewPCG(seed, 0x6b696c6c)),
		hc: transport.NewHTTPClient(&transport.TCP{}), dead: map[string]bool{}, reg: &foRegistry{holder: map[uint32]string{}},
	}
	t.Cleanup(c.hc.CloseIdleConnections)
	c.keepLogs()
	api, peer, gossip := freeLoopbackPorts(t, foNodes)
	var addrs []string
	for i := range foNodes {
		var seeds []string
		for j := range gossip {
			if j != i {
				seeds = append(seeds, loopback(gossip[j]))
			}
		}
		name := fmt.Sprintf("n%d", i+1)
		n := &foNode{name: name, api: loopback(api[i]), gossip: loopback(gossip[i])}
		n.cfg = writeFile(t, dir, name+".yaml", foNodeYAML(name, filepath.Join(dir, "data", name), n.api, loopback(peer[i]), n.gossip, seeds, profile))
		n.cl = c.newClient([]string{n.api}, client.WithoutRetry())
		c.nodes = append(c.nodes, n)
		addrs = append(addrs, n.api)
	}
	c.all = c.newClient(addrs)
	for _, n := range c.nodes {
		c.startProc(n)
	}
	c.waitStable("the cluster to form")
	c.readSpans()
	return c
}

// foNodeYAML is the config file of one node of the failover cluster.
func foNodeYAML(name, dataDir, api, peer, gossip string, seeds []string, profile string) string {
	q := make([]string, len(seeds))
	for i, s := range seeds {
		q[i] = strconv.Quote(s)
	}
	return fmt.Sprintf(`# Written by the failover tests (failover_e2e_test.go).
node:
  name: %s
  data_dir: %s
api:
  addr: %s
peer:
  addr: %s
gossip:
  addr: %s
  seeds: [%s]
  profile: %s
  rejoin_interval: 1s
pool:
  ranges: ["%d-%d"]
  partitions: %d
replication:
  factor: %d
cluster:
  bootstrap_expect: %d
log:
  level: info
`, name, strconv.Quote(dataDir), api, peer, gossip, strings.Join(q, ", "), profile,
		foPoolFirst, foPoolLast, foPartitions, foFactor, foNodes)
}

// newClient returns a client over the shared HTTP client.
func (c *foCluster) newClient(addrs []string, opts ...client.Option) *client.Client {
	cl, err := client.New(addrs, append(opts, client.WithHTTPClient(c.hc))...)
	if err != nil {
		c.t.Fatal(err)
	}
	return cl
}

// startProc starts a new process for n with its config (same name and
// ports; a new incarnation, since data_dir holds nothing yet).
func (c *foCluster) startProc(n *foNode) {
	c.e.startServe(n.name, n.api, n.gossip, n.cfg)
	n.proc = c.e.nodes[len(c.e.nodes)-1]
	// e2eCluster.waitFor treats an exited process as fatal; this test
	// kills processes on purpose and watches them itself.
	c.e.nodes = nil
	n.gen++
	n.down = false
}

// keepLogs copies the server logs to $FREQD_FAILOVER_LOGS (if set) at the
// end, and dumps those of killed incarnations if the test failed (the
// current ones are dumped by startServe's cleanup).
func (c *foCluster) keepLogs() {
	t := c.t
	t.Cleanup(func() {
		files, _ := filepath.Glob(filepath.Join(c.e.dir, "*.std*"))
		if keep := os.Getenv("FREQD_FAILOVER_LOGS"); keep != "" {
			to := filepath.Join(keep, fmt.Sprintf("%s-%d", strings.ReplaceAll(t.Name(), "/", "-"), c.seed))
			if err := os.MkdirAll(to, 0o755); err != nil {
				t.Errorf("keep logs: %v", err)
			}
			for _, f := range files {
				if b, err := os.ReadFile(f); err == nil {
					_ = os.WriteFile(filepath.Join(to, filepath.Base(f)), b, 0o644)
				}
			}
			t.Logf("server logs kept in %s", to)
		}
		if !t.Failed() {
			return
		}
		for _, f := range files {
			if base := filepath.Base(f); strings.Count(base, ".") == 2 && strings.HasSuffix(base, ".stderr") {
				b, _ := os.ReadFile(f)
				t.Logf("==== %s (killed incarnation) ====\n%s", base, b)
			}
		}
	})
}

// readSpans learns the partitions' ranges from the ring and checks that
// they cover the pool.
func (c *foCluster) readSpans() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := c.all.Ring(ctx)
	if err != nil {
		c.t.Fatalf("ring: %v", err)
	}
	next := uint32(foPoolFirst)
	for i, p := range r.GetPartitions() {
		if p.GetId() != uint32(i) || p.GetFirst() != next || p.GetLast() < p.GetFirst()+foProbeFreqs {
			c.t.Fatalf("partition %d: id %d range %d-%d; want consecutive ranges from %d", i, p.GetId(), p.GetFirst(), p.GetLast(), next)
		}
		c.spans = append(c.spans, foSpan{id: p.GetId(), first: p.GetFirst(), last: p.GetLast()})
		next = p.GetLast() + 1
	}
	if len(c.spans) != foPartitions || next != foPoolLast+1 {
		c.t.Fatalf("%d partitions ending at %d; want %d covering %d-%d", len(c.spans), next-1, foPartitions, foPoolFirst, foPoolLast)
	}
}

// probeReserved reports whether f is one of the frequencies reserved for
// the probers.
func (c *foCluster) probeReserved(f uint32) bool {
	for _, s := range c.spans {
		if f >= s.first && f <= s.last {
			return f > s.last-foProbeFreqs
		}
	}
	return false
}

// up returns the running nodes' names; down the killed ones'.
func (c *foCluster) upDown() (up, down []string) {
	for _, n := range c.nodes {
		if n.down {
			down = append(down, n.name)
		} else {
			up = append(up, n.name)
		}
	}
	return up, down
}

// pickVictim picks a running node at random (seeded), keeping at least a
// majority of the replication factor alive.
func (c *foCluster) pickVictim() *foNode {
	var up []*foNode
	for _, n := range c.nodes {
		if !n.down {
			up = append(up, n)
		}
	}
	if len(up) <= foFactor {
		c.t.Fatalf("only %d nodes up; killing one more would leave partitions without a majority", len(up))
	}
	return up[c.rng.IntN(len(up))]
}

// stableErr returns nil when the cluster is settled: every running node
// sees every running node active and alive and no killed one alive, every
// partition is writable, led by its ring owner, with min(factor, running)
// distinct running replicas, and its raft voters are the ring's replicas
// (as a set: raft does not keep ring order), with no learner and no
// incarnation of a killed process.
func (c *foCluster) stableErr() error {
	up, down := c.upDown()
	want := min(foFactor, len(up))
	for _, n := range c.nodes {
		if n.down {
			continue
		}
		if ex, err := n.proc.exited(); ex {
			c.t.Fatalf("%s exited on its own: %v", n.name, err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		st, err := n.cl.Status(ctx)
		if err != nil {
			cancel()
			return fmt.Errorf("status via %s: %w", n.name, err)
		}
		r, err := n.cl.Ring(ctx)
		cancel()
		if err != nil {
			return fmt.Errorf("ring via %s: %w", n.name, err)
		}
		if !st.GetExact() {
			return fmt.Errorf("%s: status not exact", n.name)
		}
		seen := map[string]bool{}
		for _, m := range st.GetMembers() {
			live := m.GetState() == "active" && m.GetHealth() == "alive"
			switch {
			case slices.Contains(down, m.GetName()) && m.GetHealth() == "alive":
				return fmt.Errorf("%s still sees the killed %s alive", n.name, m.GetName())
			case slices.Contains(up, m.GetName()) && !live:
				return fmt.Errorf("%s sees %s %s/%s", n.name, m.GetName(), m.GetState(), m.GetHealth())
			}
			seen[m.GetName()] = live
		}
		for _, u := range up {
			if !seen[u] {
				return fmt.Errorf("%s does not see %s", n.name, u)
			}
		}
		if len(st.GetProblems()) > 0 || st.GetWritable() != foPartitions {
			return fmt.Errorf("%s: %d of %d partitions writable; problems %v", n.name, st.GetWritable(), foPartitions, st.GetProblems())
		}
		if len(r.GetPartitions()) != foPartitions {
			return fmt.Errorf("ring via %s: %d partitions", n.name, len(r.GetPartitions()))
		}
		c.noteCollisions(r)
		for _, p := range r.GetPartitions() {
			reps := p.GetReplicas()
			if len(reps) != want || p.GetOwner() != reps[0] || p.GetHolder() != p.GetOwner() || !p.GetWritable() || p.GetTerm() == 0 {
				return fmt.Errorf("%s: partition %d: owner %q leader %q term %d replicas %v writable %v (%s); want %d replicas, led by the owner, writable",
					n.name, p.GetId(), p.GetOwner(), p.GetHolder(), p.GetTerm(), reps, p.GetWritable(), p.GetReason(), want)
			}
			for j, name := range reps {
				if !slices.Contains(up, name) || slices.Contains(reps[:j], name) {
					return fmt.Errorf("%s: partition %d: replicas %v; want distinct running nodes of %v", n.name, p.GetId(), reps, up)
				}
			}
			for _, id := range append(p.GetVoters(), p.GetLearners()...) {
				if c.dead[id] {
					return fmt.Errorf("%s: partition %d: voters %v learners %v name the killed incarnation %s", n.name, p.GetId(), p.GetVoters(), p.GetLearners(), id)
				}
			}
			if !sameSet(voterNames(p.GetVoters()), reps) || len(p.GetLearners()) > 0 {
				return fmt.Errorf("%s: partition %d: voters %v learners %v; want the ring's replicas %v as voters, no learners", n.name, p.GetId(), p.GetVoters(), p.GetLearners(), reps)
			}
		}
	}
	return nil
}

// noteCollisions forgets a killed replica id that a running process uses
// as its own. Replica ids show incarnations by their low 32 bits, so a new
// incarnation may (rarely) look like a killed one; the ring lists a
// group's leader first among its voters, with its own id, which tells the
// two apart.
func (c *foCluster) noteCollisions(r *freqdv1.RingResponse) {
	for _, p := range r.GetPartitions() {
		vs := p.GetVoters()
		if len(vs) == 0 || !c.dead[vs[0]] {
			continue
		}
		if name, _, _ := strings.Cut(vs[0], "#"); name == p.GetHolder() {
			c.t.Logf("the new incarnation of %s shows as %s, like a killed one (32-bit display); no longer counting it as killed", name, vs[0])
			delete(c.dead, vs[0])
		}
	}
}

// waitStable polls until stableErr is nil, failing after foDeadline.
func (c *foCluster) waitStable(what string) {
	c.t.Helper()
	deadline := time.Now().Add(foDeadline)
	for {
		err := c.stableErr()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("waiting for %s: not stable after %v: %v\nrings:%s\nprobes: %s", what, foDeadline, err, c.rings(), c.probeSummary())
		}
		time.Sleep(foPoll)
	}
}

// foFailover is one measured failover.
type foFailover struct {
	// writes is the time from the SIGKILL to every partition accepting
	// writes again: the latest first successful probe write after a
	// partition's last failure (0 if no probe failed).
	writes time.Duration
	// stable is the time to the first look at a settled cluster without the
	// killed node (failure detected, every partition reconfigured).
	stable time.Duration
	// hit counts the partitions whose probes failed at all.
	hit int
	// ids are the killed process's replica ids, as the raft groups show them.
	ids []string
}

func (f foFailover) String() string {
	return fmt.Sprintf("writes again after %v (%d partitions interrupted), reconfigured after %v (killed %v)",
		f.writes.Round(time.Millisecond), f.hit, f.stable.Round(time.Millisecond), f.ids)
}

// killAndMeasure kills v with SIGKILL and waits until the failover has
// finished: the cluster is settled without v and every prober has
// succeeded for foQuiet since its last failure.
func (c *foCluster) killAndMeasure(v *foNode) foFailover {
	t := c.t
	t.Helper()
	ids := c.noteIncarnations(v)
	v.down = true
	kill := time.Now()
	if err := v.proc.cmd.Process.Kill(); err != nil {
		t.Fatalf("kill %s: %v", v.name, err)
	}
	select {
	case <-v.proc.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not exit after SIGKILL", v.name)
	}
	c.downs = append(c.downs, foDown{name: v.name, from: kill})

	res := foFailover{ids: ids}
	deadline := kill.Add(foDeadline)
	for {
		err := c.stableErr()
		now := time.Now()
		if err == nil && res.stable == 0 {
			res.stable = now.Sub(kill)
		} else if err != nil {
			res.stable = 0
		}
		if err == nil {
			if w, hit, ok := c.probesRecovered(kill, now); ok {
				res.writes, res.hit = w, hit
				return res
			}
		}
		if now.After(deadline) {
			t.Fatalf("after kill -9 %s: the cluster did not recover within %v: %v\nrings:%s\nprobes: %s", v.name, foDeadline, err, c.rings(), c.probeSummary())
		}
		time.Sleep(foPoll)
	}
}

// noteIncarnations records the replica ids of v's current process, as the
// raft groups (voters and learners) name them, so that waitStable can tell
// them from its next incarnation. It returns them.
func (c *foCluster) noteIncarnations(v *foNode) []string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := c.all.Ring(ctx)
	if err != nil {
		c.t.Fatalf("ring before killing %s: %v", v.name, err)
	}
	var ids []string
	for _, p := range r.GetPartitions() {
		for _, id := range append(p.GetVoters(), p.GetLearners()...) {
			if name, _, _ := strings.Cut(id, "#"); name == v.name && !slices.Contains(ids, id) {
				c.dead[id] = true
				ids = append(ids, id)
			}
		}
	}
	return ids
}

// restart starts a new incarnation of the killed node v, keeping the
// killed one's logs under <name>.<gen>.stderr.
func (c *foCluster) restart(v *foNode) {
	if !v.down {
		c.t.Fatalf("restart %s: not killed", v.name)
	}
	for _, ext := range []string{".stdout", ".stderr"} {
		from := filepath.Join(c.e.dir, v.name+ext)
		if err := os.Rename(from, filepath.Join(c.e.dir, fmt.Sprintf("%s.%d%s", v.name, v.gen, ext))); err != nil {
			c.t.Fatal(err)
		}
	}
	// A node restarted on its data directory recovers its state and its
	// incarnation from it. These tests want a node that comes back empty,
	// as a new incarnation (waitStable checks that no configuration names
	// the killed one), so the killed node's data directory is moved away
	// (kept as <dir>.<gen>, to look at after a failure) before the restart.
	data := filepath.Join(c.e.dir, "data", v.name)
	if err := os.Rename(data, fmt.Sprintf("%s.%d", data, v.gen)); err != nil && !errors.Is(err, os.ErrNotExist) {
		c.t.Fatalf("restart %s: move its data directory away: %v", v.name, err)
	}
	for i := len(c.downs) - 1; i >= 0; i-- {
		if c.downs[i].name == v.name && c.downs[i].to.IsZero() {
			c.downs[i].to = time.Now()
			break
		}
	}
	c.startProc(v)
}

// foRegistry is the acknowledged holder of each frequency, shared by the
// workers and probers, and the violations they found.
type foRegistry struct {
	mu sync.Mutex
	// holder maps each frequency to the client it was acknowledged to, until
	// that client starts releasing it. Guarded by mu.
	holder map[uint32]string
	// problems are safety violations seen during the load. Guarded by mu.
	problems []string
}

// acquired records that f was acknowledged to id; it is a violation if
// another client was acknowledged f and has not started releasing it.
func (r *foRegistry) acquired(f uint32, id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if prev, ok := r.holder[f]; ok && prev != id {
		r.problems = append(r.problems, fmt.Sprintf("%d acknowledged to %s while %s was acknowledged it and had not released it", f, id, prev))
	}
	r.holder[f] = id
}

// releasing records that id is about to release f.
func (r *foRegistry) releasing(f uint32, id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.holder[f] == id {
		delete(r.holder, f)
	}
}

// problem records a violation.
func (r *foRegistry) problem(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.problems = append(r.problems, fmt.Sprintf(format, args...))
}

// foLedger is what one client (a worker or a prober) was told. It belongs
// to the goroutine that runs the client; others read it after that
// goroutine ended.
type foLedger struct {
	id string
	// held: acknowledged allocations, not released since.
	held map[uint32]bool
	// maybe: frequencies whose last call had an unknown outcome, so held by
	// id or not.
	maybe map[uint32]bool
	// anyUnknown counts allocations of any frequency with an unknown
	// outcome: id may hold that many frequencies it was never told of.
	anyUnknown int
	// calls and outcomes, by kind ("alloc-any ok", "release unknown", ...).
	counts map[string]int
	// examples of unexpected errors, a few.
	odd []string
}

func newFoLedger(id string) *foLedger {
	return &foLedger{id: id, held: map[uint32]bool{}, maybe: map[uint32]bool{}, counts: map[string]int{}}
}

// foClass names the outcome of a call for the counts; "unknown" covers
// every error that does not prove the call was not applied.
func foClass(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, freqd.ErrAlreadyHeld):
		return "already-held"
	case errors.Is(err, freqd.ErrNoFrequency):
		return "no-frequency"
	case errors.Is(err, freqd.ErrOutcomeUnknown):
		return "unknown"
	case errors.Is(err, freqd.ErrNotHeld):
		return "not-held"
	case errors.Is(err, freqd.ErrNotHolder):
		return "not-holder"
	case errors.Is(err, context.DeadlineExceeded):
		return "deadline"
	case errors.Is(err, freqd.ErrUnavailable):
		return "unavailable"
	}
	return "other"
}

// allocated records the outcome of an allocation: of f when specific,
// else of any frequency. single is true when the call was one attempt (so
// ErrUnavailable proves it was not applied); a retried call may have had
// an unknown attempt before its last error.
func (l *foLedger) allocated(reg *foRegistry, kind string, specific *uint32, single bool, g client.Grant, err error) {
	class := foClass(err)
	l.counts[kind+" "+class]++
	switch class {
	case "ok":
		f := g.Frequency
		if specific != nil && f != *specific {
			reg.problem("%s: %s %d granted %d", l.id, kind, *specific, f)
		}
		if f < foPoolFirst || f > foPoolLast {
			reg.problem("%s: %s granted %d, outside the pool", l.id, kind, f)
			return
		}
		if specific == nil && (l.held[f] || l.maybe[f]) && !g.Duplicate {
			reg.problem("%s: allocate-any granted %d, which it already held (held %v, maybe %v)", l.id, f, l.held[f], l.maybe[f])
		}
		reg.acquired(f, l.id)
		l.held[f] = true
		delete(l.maybe, f)
	case "already-held":
		// Held by another client, so not by this one.
		if specific != nil {
			delete(l.maybe, *specific)
		}
	case "no-frequency":
		// Nothing granted; the pool is far from full, so note it.
		l.oddErr(kind, err)
	default:
		if class == "unavailable" && single {
			return
		}
		if class == "other" {
			l.oddErr(kind, err)
		}
		if specific != nil {
			l.maybe[*specific] = true
		} else {
			l.anyUnknown++
		}
	}
}

// released records the outcome of releasing f, which l held; single as
// for allocated.
func (l *foLedger) released(reg *foRegistry, kind string, f uint32, single bool, err error) {
	class := foClass(err)
	l.counts[kind+" "+class]++
	switch {
	case class == "ok":
		delete(l.maybe, f)
	case errors.Is(err, freqd.ErrOutcomeUnknown):
		// Includes the client's "an attempt's outcome was unknown and the
		// frequency is now held by another client".
		l.maybe[f] = true
	case class == "not-held":
		reg.problem("%s: release of its acknowledged %d: %v (an acknowledged allocation was lost)", l.id, f, err)
	case class == "not-holder":
		reg.problem("%s: release of its acknowledged %d: %v (another client holds it)", l.id, f, err)
	case class == "unavailable" && single:
		// Not applied: still held.
		reg.acquired(f, l.id)
		l.held[f] = true
	default:
		if class == "other" {
			l.oddErr(kind, err)
		}
		l.maybe[f] = true
	}
}

func (l *foLedger) oddErr(kind string, err error) {
	if len(l.odd) < 5 {
		l.odd = append(l.odd, fmt.Sprintf("%s: %s: %v", l.id, kind, err))
	}
}

// foWorker is one load client: it allocates (any frequency or a given
// one) and releases, at random, without pause.
type foWorker struct {
	l   *foLedger
	cl  *client.Client
	rng *rand.Rand // owned by the worker goroutine
}

// foProber writes to one partition in a loop (allocate and release of a
// reserved frequency, single attempts with a short timeout) and records
// when writes fail and succeed.
type foProber struct {
	span  foSpan
	freqs []uint32 // reserved frequencies; cur indexes the one in use
	cur   int      // owned by the prober goroutine
	l     *foLedger
	cl    *client.Client

	mu sync.Mutex
	// lastFail is the end of the latest failed write; firstOK the end of
	// the first successful one after it (zero if none yet); lastOK the end
	// of the latest successful one. Guarded by mu.
	lastFail, firstOK, lastOK time.Time
	oks, fails                int // guarded by mu
}

// note records the outcome of one probe write ending at 'at'. An
// already-held answer is neither: the partition answered, but wrote
// nothing.
func (p *foProber) note(err error, at time.Time) {
	if errors.Is(err, freqd.ErrAlreadyHeld) {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		p.lastFail, p.firstOK = at, time.Time{}
		p.fails++
		return
	}
	if p.firstOK.IsZero() {
		p.firstOK = at
	}
	p.lastOK = at
	p.oks++
}

// foLoad is the running load: workers and probers. The goroutines stop
// when stop is closed (after their current call) or, faster, when hard is
// cancelled (in cleanup, after a failure).
type foLoad struct {
	stop    chan struct{}
	hard    context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	workers []*foWorker
	probers []*foProber
	once    sync.Once
}

// opsDone counts the calls the workers made; only after halt.
func (l *foLoad) opsDone() int {
	n := 0
	for _, w := range l.workers {
		for _, v := range w.l.counts {
			n += v
		}
	}
	return n
}

// halt stops the load and waits for every goroutine.
func (l *foLoad) halt() {
	l.once.Do(func() { close(l.stop) })
	l.wg.Wait()
	l.cancel()
}

// startLoad starts foWorkers workers against all nodes and one prober per
// partition.
func (c *foCluster) startLoad() {
	var addrs []string
	for _, n := range c.nodes {
		addrs = append(addrs, n.api)
	}
	hard, cancel := context.WithCancel(context.Background())
	l := &foLoad{stop: make(chan struct{}), hard: hard, cancel: cancel}
	c.load = l
	c.t.Cleanup(func() {
		cancel()
		l.halt()
	})
	for i := range foWorkers {
		w := &foWorker{
			l:   newFoLedger(fmt.Sprintf("w%d", i+1)),
			cl:  c.newClient(addrs),
			rng: rand.New(rand.NewPCG(c.seed, uint64(i+1))),
		}
		l.workers = append(l.workers, w)
		l.wg.Go(func() { c.runWorker(l, w) })
	}
	for _, s := range c.spans {
		p := &foProber{span: s, l: newFoLedger(fmt.Sprintf("probe-p%d", s.id)), cl: c.newClient(addrs, client.WithoutRetry())}
		for f := s.last - foProbeFreqs + 1; f <= s.last; f++ {
			p.freqs = append(p.freqs, f)
		}
		l.probers = append(l.probers, p)
		l.wg.Go(func() { c.runProber(l, p) })
	}
}

// runWorker is one worker's loop.
func (c *foCluster) runWorker(l *foLoad, w *foWorker) {
	for {
		select {
		case <-l.stop:
			return
		case <-l.hard.Done():
			return
		default:
		}
		ctx, cancel := context.WithTimeout(l.hard, foCallTimeout)
		switch {
		case len(w.l.held) == 0 || (len(w.l.held) < foMaxHeld && w.rng.IntN(2) == 0):
			if w.rng.IntN(10) < 7 {
				g, err := w.cl.Allocate(ctx, w.l.id)
				w.l.allocated(c.reg, "alloc-any", nil, false, g, err)
				break
			}
			f := c.pickFree(w)
			g, err := w.cl.AllocateFrequency(ctx, w.l.id, f)
			w.l.allocated(c.reg, "alloc-freq", &f, false, g, err)
		default:
			held := make([]uint32, 0, len(w.l.held))
			for f := range w.l.held {
				held = append(held, f)
			}
			slices.Sort(held)
			f := held[w.rng.IntN(len(held))]
			delete(w.l.held, f)
			c.reg.releasing(f, w.l.id)
			w.l.released(c.reg, "release", f, false, w.cl.Release(ctx, w.l.id, f))
		}
		cancel()
	}
}

// pickFree picks a frequency to ask for by number: not reserved for the
// probers and not already held by w.
func (c *foCluster) pickFree(w *foWorker) uint32 {
	for {
		f := foPoolFirst + uint32(w.rng.IntN(foPoolLast-foPoolFirst+1))
		if !c.probeReserved(f) && !w.l.held[f] {
			return f
		}
	}
}

// runProber is one prober's loop.
func (c *foCluster) runProber(l *foLoad, p *foProber) {
	for {
		select {
		case <-l.stop:
			return
		case <-l.hard.Done():
			return
		default:
		}
		f := p.freqs[p.cur]
		ctx, cancel := context.WithTimeout(l.hard, foProbeTimeout)
		g, err := p.cl.AllocateFrequency(ctx, p.l.id, f)
		cancel()
		if l.hard.Err() != nil {
			return
		}
		p.note(err, time.Now())
		p.l.allocated(c.reg, "probe-alloc", &f, true, g, err)
		if errors.Is(err, freqd.ErrAlreadyHeld) {
			// A worker's allocate-any took it: use the next one.
			p.cur = (p.cur + 1) % len(p.freqs)
			continue
		}
		if err != nil {
			continue
		}
		delete(p.l.held, f)
		c.reg.releasing(f, p.l.id)
		ctx, cancel = context.WithTimeout(l.hard, foProbeTimeout)
		err = p.cl.Release(ctx, p.l.id, f)
		cancel()
		if l.hard.Err() != nil {
			return
		}
		p.note(err, time.Now())
		p.l.released(c.reg, "probe-release", f, true, err)
	}
}

// probesRecovered reports, at now, whether every prober has written
// successfully since kill and has had no failure for foQuiet; if so it
// returns the failover time (the latest first success after a failure
// since the kill, minus the kill) and how many partitions failed at all.
func (c *foCluster) probesRecovered(kill, now time.Time) (time.Duration, int, bool) {
	var worst time.Duration
	hit := 0
	for _, p := range c.load.probers {
		p.mu.Lock()
		lastFail, firstOK, lastOK := p.lastFail, p.firstOK, p.lastOK
		p.mu.Unlock()
		if !lastOK.After(kill) {
			return 0, 0, false
		}
		if !lastFail.After(kill) {
			if now.Sub(kill) < foQuiet {
				return 0, 0, false
			}
			continue
		}
		if firstOK.IsZero() || now.Sub(lastFail) < foQuiet {
			return 0, 0, false
		}
		hit++
		worst = max(worst, firstOK.Sub(kill))
	}
	return worst, hit, true
}

// rings describes every running node's ring, for failure messages.
func (c *foCluster) rings() string {
	var b strings.Builder
	for _, n := range c.nodes {
		if n.down {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		r, err := n.cl.Ring(ctx)
		cancel()
		if err != nil {
			fmt.Fprintf(&b, "\n  via %s: %v", n.name, err)
			continue
		}
		for _, p := range r.GetPartitions() {
			fmt.Fprintf(&b, "\n  via %s: p%d owner %s replicas %v leader %s term %d voters %v learners %v index %d writable %v %s",
				n.name, p.GetId(), p.GetOwner(), p.GetReplicas(), p.GetHolder(), p.GetTerm(), p.GetVoters(), p.GetLearners(), p.GetIndex(), p.GetWritable(), p.GetReason())
		}
	}
	return b.String()
}

// probeSummary describes every prober's state, for failure messages.
func (c *foCluster) probeSummary() string {
	if c.load == nil {
		return "(no load)"
	}
	var b strings.Builder
	now := time.Now()
	for _, p := range c.load.probers {
		p.mu.Lock()
		fmt.Fprintf(&b, "\n  p%d: %d ok, %d failed, last failure %v ago, last success %v ago", p.span.id, p.oks, p.fails,
			now.Sub(p.lastFail).Round(time.Millisecond), now.Sub(p.lastOK).Round(time.Millisecond))
		p.mu.Unlock()
	}
	return b.String()
}

// waitLoad waits until every prober has written and the workers have made
// some progress.
func (c *foCluster) waitLoad() {
	c.t.Helper()
	since := time.Now()
	deadline := since.Add(foDeadline)
	for {
		ok := true
		for _, p := range c.load.probers {
			p.mu.Lock()
			ok = ok && p.lastOK.After(since) && p.lastOK.After(p.lastFail)
			p.mu.Unlock()
		}
		if ok && time.Since(since) >= time.Second {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("the probers did not all succeed within %v:%s", foDeadline, c.probeSummary())
		}
		time.Sleep(foPoll)
	}
}

// stopAndCheck stops the load and checks every frequency's holder against
// what the clients were told.
func (c *foCluster) stopAndCheck() {
	t := c.t
	c.load.halt()
	ledgers := map[string]*foLedger{}
	totals := map[string]int{}
	for _, w := range c.load.workers {
		ledgers[w.l.id] = w.l
	}
	for _, p := range c.load.probers {
		ledgers[p.l.id] = p.l
	}
	var odd []string
	for _, l := range ledgers {
		for k, v := range l.counts {
			totals[k] += v
		}
		odd = append(odd, l.odd...)
	}
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(totals)) {
		fmt.Fprintf(&b, " %s=%d", k, totals[k])
	}
	t.Logf("load: %s", b.String())
	if len(odd) > 0 {
		t.Logf("unexpected errors (examples):\n  %s", strings.Join(odd, "\n  "))
	}

	c.reg.mu.Lock()
	problems := slices.Clone(c.reg.problems)
	c.reg.mu.Unlock()

	// Who holds what now, by Holder on every frequency.
	holders := make([]client.Holding, foPoolLast-foPoolFirst+1)
	errs := make([]error, len(holders))
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := g; i < len(holders); i += 8 {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				holders[i], errs[i] = c.all.Holder(ctx, uint32(foPoolFirst+i))
				cancel()
			}
		})
	}
	wg.Wait()
	unexplained := map[string]int{} // client -> held frequencies it was not told of
	acked, maybes := 0, 0
	for i, h := range holders {
		f := uint32(foPoolFirst + i)
		if errs[i] != nil {
			t.Fatalf("holder %d: %v", f, errs[i])
		}
		var owner string // the client f was acknowledged to and not released by
		for id, l := range ledgers {
			if l.held[f] {
				if owner != "" {
					problems = append(problems, fmt.Sprintf("%d acknowledged to both %s and %s", f, owner, id))
				}
				owner = id
			}
		}
		switch {
		case owner != "":
			acked++
			if !h.Held || h.ClientID != owner {
				problems = append(problems, fmt.Sprintf("%d was acknowledged to %s, now held %v by %q (lost or overwritten)", f, owner, h.Held, h.ClientID))
			}
		case h.Held:
			l := ledgers[h.ClientID]
			switch {
			case l == nil:
				problems = append(problems, fmt.Sprintf("%d held by %q, a client that never ran", f, h.ClientID))
			case l.maybe[f]:
				maybes++
			default:
				unexplained[h.ClientID]++
			}
		}
	}
	for id, n := range unexplained {
		if n > ledgers[id].anyUnknown {
			problems = append(problems, fmt.Sprintf("%s holds %d frequencies it was not told of, but had only %d allocations with an unknown outcome",
				id, n, ledgers[id].anyUnknown))
		}
	}
	t.Logf("check: %d acknowledged holdings, %d held after a call with unknown outcome, %d more from allocate-any with unknown outcome",
		acked, maybes, sumValues(unexplained))
	for i, p := range problems {
		if i == 50 {
			t.Errorf("... and %d more", len(problems)-50)
			break
		}
		t.Errorf("violation: %s", p)
	}
}

func sumValues(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// foSuspicions counts memberlist's failure suspicions in the server logs.
type foSuspicions struct {
	// lines is every "Suspect X has failed" or "Marking X as failed" line.
	lines int
	// killed: the line names a node that was down at the time.
	killed int
	// rejoin: it names a node within 5 s of its restart.
	rejoin int
	// falsely: it names a node that was running (and not just restarted).
	falsely int
	// examples of false suspicions, a few.
	examples []string
}

func (s foSuspicions) String() string {
	out := fmt.Sprintf("%d false (of %d suspect/failed lines: %d about killed nodes, %d within 5s of a restart)", s.falsely, s.lines, s.killed, s.rejoin)
	if len(s.examples) > 0 {
		out += "\n  " + strings.Join(s.examples, "\n  ")
	}
	return out
}

// foSuspectRE matches memberlist's failure lines (memberlist v0.7.0
// state.go: "Suspect %s has failed, no acks received" and "Marking %s as
// failed, suspect timeout reached ..."), as slog's text handler writes them.
var foSuspectRE = regexp.MustCompile(`^time=(\S+) .*msg="(?:Suspect (\S+) has failed|Marking (\S+) as failed)`)

// foParseSuspicion reports whether line is one of memberlist's failure
// lines (ok), and if so which node it names and when it was written; err
// is set when such a line has an unreadable time.
func foParseSuspicion(line string) (name string, at time.Time, ok bool, err error) {
	if !strings.Contains(line, "component=memberlist") {
		return "", time.Time{}, false, nil
	}
	m := foSuspectRE.FindStringSubmatch(line)
	if m == nil {
		return "", time.Time{}, false, nil
	}
	name = cmp.Or(m[2], m[3])
	at, err = time.Parse(time.RFC3339Nano, m[1])
	if err != nil {
		return name, time.Time{}, true, fmt.Errorf("bad time in %q: %w", line, err)
	}
	return name, at, true, nil
}

// suspicions reads every server log (all incarnations) and classifies the
// memberlist failure lines by whether the named node was down then.
func (c *foCluster) suspicions() foSuspicions {
	var s foSuspicions
	files, _ := filepath.Glob(filepath.Join(c.e.dir, "*.stderr"))
	slices.Sort(files)
	for _, file := range files {
		fh, err := os.Open(file)
		if err != nil {
			c.t.Errorf("read log: %v", err)
			continue
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
		for sc.Scan() {
			line := sc.Text()
			name, at, ok, err := foParseSuspicion(line)
			if !ok {
				continue
			}
			s.lines++
			if err != nil {
				c.t.Errorf("%s: %v", file, err)
				continue
			}
			switch c.wasDown(name, at) {
			case "down":
				s.killed++
			case "rejoin":
				s.rejoin++
			default:
				s.falsely++
				if len(s.examples) < 10 {
					s.examples = append(s.examples, filepath.Base(file)+": "+line)
				}
			}
		}
		if err := sc.Err(); err != nil && !errors.Is(err, io.EOF) {
			c.t.Errorf("read %s: %v", file, err)
		}
		_ = fh.Close()
	}
	return s
}

// wasDown tells whether name was down at 'at' ("down"), had been
// restarted less than 5 s before ("rejoin"), or neither ("").
func (c *foCluster) wasDown(name string, at time.Time) string {
	out := ""
	for _, d := range c.downs {
		switch {
		case d.name != name || at.Before(d.from):
		case d.to.IsZero() || !at.After(d.to):
			return "down"
		case at.Sub(d.to) < 5*time.Second:
			out = "rejoin"
		}
	}
	return out
}

// foSummary is one profile's line of the failover table.
type foSummary struct {
	profile     string
	kills       int
	median, max time.Duration
	susp        foSuspicions
	ops         int
}

const foTableHeader = "| profile | kills | median | max | false suspicions | suspect/failed lines (killed / rejoin) | worker calls |\n|---|---|---|---|---|---|---|\n"

func foSummarize(profile string, times []time.Duration, susp foSuspicions, ops int) foSummary {
	s := slices.Clone(times)
	slices.Sort(s)
	out := foSummary{profile: profile, kills: len(s), susp: susp, ops: ops}
	if len(s) > 0 {
		out.median = s[len(s)/2]
		if len(s)%2 == 0 {
			out.median = (s[len(s)/2-1] + s[len(s)/2]) / 2
		}
		out.max = s[len(s)-1]
	}
	return out
}

func (s foSummary) row() string {
	return fmt.Sprintf("| %s | %d | %v | %v | %d | %d (%d / %d) | %d |", s.profile, s.kills,
		s.median.Round(time.Millisecond), s.max.Round(time.Millisecond), s.susp.falsely, s.susp.lines, s.susp.killed, s.susp.rejoin, s.ops)
}

// TestFoParseSuspicion checks the reading of memberlist's failure lines as
// freqd logs them (slog text handler, component=memberlist).
func TestFoParseSuspicion(t *testing.T) {
	at := time.Date(2026, 11, 21, 8, 59, 18, 245e6, time.UTC)
	tests := []struct {
		name, line string
		wantOK     bool
		wantName   string
		wantErr    bool
	}{
		{"Suspect", `time=2026-11-21T08:59:18.245Z level=INFO msg="Suspect n1 has failed, no acks received" node=n2 node=n2 component=memberlist`, true, "n1", false},
		{"Marking", `time=2026-11-21T08:59:18.245Z level=INFO msg="Marking n12 as failed, suspect timeout reached (0 peer confirmations)" node=n2 component=memberlist`, true, "n12", false},
		{"Refute", `time=2026-11-21T08:59:18.245Z level=WARN msg="Refuting a suspect message (from: n1)" node=n1 component=memberlist`, false, "", false},
		{"NotMemberlist", `time=2026-11-21T08:59:18.245Z level=INFO msg="Suspect n1 has failed, no acks received" node=n2`, false, "", false},
		{"OtherMessage", `time=2026-11-21T08:59:18.245Z level=INFO msg="ring rebuilt" node=n1 members="[n1 n2]" component=memberlist`, false, "", false},
		{"BadTime", `time=yesterday level=INFO msg="Suspect n1 has failed, no acks received" component=memberlist`, true, "n1", true},
		{"Empty", ``, false, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name, got, ok, err := foParseSuspicion(tt.line)
			if ok != tt.wantOK || name != tt.wantName || (err != nil) != tt.wantErr {
				t.Fatalf("foParseSuspicion = %q, %v, %v, %v; want %q, ok %v, error %v", name, got, ok, err, tt.wantName, tt.wantOK, tt.wantErr)
			}
			if ok && !tt.wantErr && !got.Equal(at) {
				t.Errorf("time %v; want %v", got, at)
			}
		})
	}
}

// FuzzFoParseSuspicion checks that any line parses without panicking and
// that a recognised line names a node without spaces.
func FuzzFoParseSuspicion(f *testing.F) {
	f.Add(`time=2026-11-21T08:59:18.245Z level=INFO msg="Suspect n1 has failed, no acks received" node=n2 component=memberlist`)
	f.Add(`time=2026-11-21T08:59:18.245Z level=INFO msg="Marking n1 as failed, suspect timeout reached" component=memberlist`)
	f.Add(`component=memberlist`)
	f.Fuzz(func(t *testing.T, line string) {
		name, at, ok, err := foParseSuspicion(line)
		switch {
		case !ok && (name != "" || err != nil || !at.IsZero()):
			t.Fatalf("unrecognised line gave %q, %v, %v", name, at, err)
		case ok && (name == "" || strings.ContainsAny(name, " \t")):
			t.Fatalf("recognised line names %q", name)
		case ok && err != nil && !at.IsZero():
			t.Fatalf("time %v with error %v", at, err)
		}
	})
}

// TestFoWasDown checks the classification of a suspicion by the kill
// history: a node killed twice, restarted once.
func TestFoWasDown(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	sec := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	c := &foCluster{downs: []foDown{
		{name: "n1", from: sec(10), to: sec(20)},
		{name: "n2", from: sec(15), to: sec(16)},
		{name: "n1", from: sec(22)},
	}}
	tests := []struct {
		name string
		at   float64
		want string
	}{
		{"n1", 5, ""}, {"n1", 10, "down"}, {"n1", 20, "down"}, {"n1", 21, "rejoin"},
		{"n1", 22, "down"}, {"n1", 100, "down"}, {"n2", 15.5, "down"}, {"n2", 18, "rejoin"},
		{"n2", 21.5, ""}, {"n3", 15, ""},
	}
	for _, tt := range tests {
		if got := c.wasDown(tt.name, sec(tt.at)); got != tt.want {
			t.Errorf("wasDown(%s, %vs) = %q; want %q", tt.name, tt.at, got, tt.want)
		}
	}
}

// TestFoSummarize checks the median and maximum of the failover table.
func TestFoSummarize(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		var out []time.Duration
		for _, x := range v {
			out = append(out, time.Duration(x)*time.Millisecond)
		}
		return out
	}
	tests := []struct {
		name        string
		times       []time.Duration
		median, max time.Duration
	}{
		{"Empty", nil, 0, 0},
		{"One", ms(700), 700 * time.Millisecond, 700 * time.Millisecond},
		{"Odd", ms(900, 100, 500), 500 * time.Millisecond, 900 * time.Millisecond},
		{"Even", ms(400, 100, 300, 200), 250 * time.Millisecond, 400 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := foSummarize("fast", tt.times, foSuspicions{}, 0)
			if s.median != tt.median || s.max != tt.max || s.kills != len(tt.times) {
				t.Errorf("median %v max %v kills %d; want %v %v %d", s.median, s.max, s.kills, tt.median, tt.max, len(tt.times))
			}
		})
	}
}
