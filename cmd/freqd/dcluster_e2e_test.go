package main

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"go.uber.org/goleak"

	"github.com/freqd/freqd/client"
	"github.com/freqd/freqd/config"
	freqdv1 "github.com/freqd/freqd/gen/freqd/v1"
	"github.com/freqd/freqd/gen/freqd/v1/freqdv1connect"
	"github.com/freqd/freqd/internal/freqmodel"
	"github.com/freqd/freqd/transport"
)

// The cluster of the durability and lease tests (durable_e2e_test.go,
// lease_e2e_test.go): three `freqd serve` processes on loopback, the fast
// gossip profile, fsync always, a pool of 60 frequencies in 6 partitions,
// each on all three nodes. Every node keeps its data directory across
// kill -9 and restart, so a restarted node is the same incarnation (the
// same raft replica in every group), unless its data directory was
// damaged: then it discards all its raft state and comes back as a new
// incarnation.
const (
	dcNodes      = 3
	dcFactor     = 3
	dcPoolFirst  = 1
	dcPoolLast   = 60
	dcPartitions = 6
	// dcDeadline bounds every wait for the cluster to (re)settle.
	dcDeadline = 30 * time.Second
	// dcReadTimeout bounds one read of the final check (retried).
	dcReadTimeout = 10 * time.Second
)

// dcNode is one node across its processes. Its fields belong to the test
// goroutine.
type dcNode struct {
	*foNode                // name, addresses, config, process, single-attempt client
	data    string         // data directory, kept across restarts
	rcl     *client.Client // this node only, with retries
	// id is the replica id (name#incarnation) of the node as the raft
	// voters show it; "" until learnIDs. A restart on the same (intact)
	// data directory must keep it.
	id string
}

// dcCluster drives the processes. Its fields belong to the test goroutine.
type dcCluster struct {
	t     *testing.T
	fo    *foCluster // processes, server logs and the shared HTTP client (failover_e2e_test.go)
	nodes []*dcNode
	freqs []uint32       // the pool, ascending
	all   *client.Client // every node, with retries
}

// dcSetup begins every test of a dcCluster: it skips with -short,
// registers the goroutine leak check (run last, after every process is
// reaped), builds freqd and picks the seed. It returns the test's
// directory, the binary and the seed.
func dcSetup(t *testing.T) (dir, bin string, seed uint64) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds freqd and runs 3-process clusters; skipped with -short")
	}
	ignore := goleak.IgnoreCurrent()
	dir = t.TempDir()
	bin = buildFreqd(t, dir)
	seed = foSeed(t)
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
	return dir, bin, seed
}

// dcNew writes the config files of a dcNodes-node cluster under dir and
// makes the clients; no process runs until startAll (so a test can mount
// something on a node's data directory first).
func dcNew(t *testing.T, bin, dir string, seed uint64) *dcCluster {
	t.Helper()
	return dcNewWith(t, bin, dir, seed, nil)
}

// dcNewWith is dcNew with every node's config changed by edit (if not
// nil) before it is written.
func dcNewWith(t *testing.T, bin, dir string, seed uint64, edit func(*config.Config)) *dcCluster {
	t.Helper()
	fo := &foCluster{
		t: t, e: &e2eCluster{t: t, bin: bin, dir: dir, env: envWithoutFreqd()},
		seed: seed, rng: rand.New(rand.NewPCG(seed, 0x64757261)),
		hc: transport.NewHTTPClient(&transport.TCP{}),
	}
	t.Cleanup(fo.hc.CloseIdleConnections)
	fo.keepLogs()
	c := &dcCluster{t: t, fo: fo}
	for f := uint32(dcPoolFirst); f <= dcPoolLast; f++ {
		c.freqs = append(c.freqs, f)
	}
	api, peer, gossip := freeLoopbackPorts(t, dcNodes)
	var addrs []string
	for i := range dcNodes {
		cfg := config.Default()
		cfg.Node.Name = fmt.Sprintf("n%d", i+1)
		cfg.Node.DataDir = filepath.Join(dir, "data", cfg.Node.Name)
		cfg.Node.Fsync = config.FsyncAlways
		cfg.API.Addr, cfg.Peer.Addr, cfg.Gossip.Addr = loopback(api[i]), loopback(peer[i]), loopback(gossip[i])
		for j := range gossip {
			if j != i {
				cfg.Gossip.Seeds = append(cfg.Gossip.Seeds, loopback(gossip[j]))
			}
		}
		cfg.Gossip.Profile, cfg.Gossip.RejoinInterval = config.ProfileFast, time.Second
		cfg.Pool.Ranges, cfg.Pool.Partitions = []string{fmt.Sprintf("%d-%d", dcPoolFirst, dcPoolLast)}, dcPartitions
		cfg.Replication.Factor, cfg.Cluster.BootstrapExpect = dcFactor, dcNodes
		cfg.Log.Level = config.LevelInfo
		if edit != nil {
			edit(&cfg)
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("config of %s: %v", cfg.Node.Name, err)
		}
		y, err := cfg.YAML()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(cfg.Node.DataDir, 0o700); err != nil {
			t.Fatal(err)
		}
		n := &dcNode{
			foNode: &foNode{name: cfg.Node.Name, api: cfg.API.Addr, gossip: cfg.Gossip.Addr,
				cfg: writeFile(t, dir, cfg.Node.Name+".yaml", string(y)), down: true},
			data: cfg.Node.DataDir,
		}
		n.cl = fo.newClient([]string{n.api}, client.WithoutRetry())
		n.rcl = fo.newClient([]string{n.api})
		c.nodes = append(c.nodes, n)
		fo.nodes = append(fo.nodes, n.foNode)
		addrs = append(addrs, n.api)
	}
	c.all = fo.newClient(addrs)
	return c
}

// addrs is every node's API address, comma-separated (the CLI's --addr).
func (c *dcCluster) addrs() string {
	var out []string
	for _, n := range c.nodes {
		out = append(out, n.api)
	}
	return strings.Join(out, ",")
}

// node returns the node called name, or nil.
func (c *dcCluster) node(name string) *dcNode {
	for _, n := range c.nodes {
		if n.name == name {
			return n
		}
	}
	return nil
}

// startAll starts every node, waits until the cluster has formed and
// settled, and learns the nodes' replica ids.
func (c *dcCluster) startAll() {
	c.t.Helper()
	for _, n := range c.nodes {
		c.fo.startProc(n.foNode)
	}
	c.waitSettled("the cluster to form")
	c.learnIDs()
}

// kill sends SIGKILL to every node of ns at once, then waits until each
// has exited.
func (c *dcCluster) kill(ns ...*dcNode) {
	c.t.Helper()
	for _, n := range ns {
		if n.down {
			c.t.Fatalf("kill %s: not running", n.name)
		}
		n.down = true
		if err := n.proc.cmd.Process.Kill(); err != nil {
			c.t.Fatalf("kill %s: %v", n.name, err)
		}
	}
	for _, n := range ns {
		select {
		case <-n.proc.done:
		case <-time.After(10 * time.Second):
			c.t.Fatalf("%s did not exit after SIGKILL", n.name)
		}
	}
}

// restart starts a killed node again on its data directory, keeping the
// killed process's logs as <name>.<gen>.stderr (and .stdout).
func (c *dcCluster) restart(n *dcNode) {
	c.t.Helper()
	if !n.down {
		c.t.Fatalf("restart %s: still running", n.name)
	}
	for _, ext := range []string{".stdout", ".stderr"} {
		from := filepath.Join(c.fo.e.dir, n.name+ext)
		if err := os.Rename(from, filepath.Join(c.fo.e.dir, fmt.Sprintf("%s.%d%s", n.name, n.gen, ext))); err != nil {
			c.t.Fatal(err)
		}
	}
	c.fo.startProc(n.foNode)
}

// upNames returns the names of the running nodes.
func (c *dcCluster) upNames() []string {
	var up []string
	for _, n := range c.nodes {
		if !n.down {
			up = append(up, n.name)
		}
	}
	return up
}

// settledErr returns nil when the cluster is settled: every running node
// sees exactly the running nodes alive, every partition is writable and
// led by its ring owner with min(factor, running) running replicas as its
// raft voters (and no learners), and every group's voters name each node
// by the replica id learnt for it.
func (c *dcCluster) settledErr() error {
	up := c.upNames()
	want := min(dcFactor, len(up))
	for _, n := range c.nodes {
		if n.down {
			continue
		}
		if ex, err := n.proc.exited(); ex {
			c.t.Fatalf("%s exited on its own: %v", n.name, err)
		}
		st, r, err := n.view()
		if err != nil {
			return err
		}
		if !st.GetExact() {
			return fmt.Errorf("%s: status not exact", n.name)
		}
		alive := 0
		for _, m := range st.GetMembers() {
			live := m.GetState() == "active" && m.GetHealth() == "alive"
			switch isUp := slices.Contains(up, m.GetName()); {
			case isUp && !live:
				return fmt.Errorf("%s sees %s %s/%s", n.name, m.GetName(), m.GetState(), m.GetHealth())
			case !isUp && m.GetHealth() == "alive":
				return fmt.Errorf("%s still sees the killed %s alive", n.name, m.GetName())
			case live:
				alive++
			}
		}
		if alive != len(up) {
			return fmt.Errorf("%s sees %d of the %d running nodes", n.name, alive, len(up))
		}
		if len(st.GetProblems()) > 0 || st.GetWritable() != dcPartitions {
			return fmt.Errorf("%s: %d of %d partitions writable; problems %v", n.name, st.GetWritable(), dcPartitions, st.GetProblems())
		}
		if len(r.GetPartitions()) != dcPartitions {
			return fmt.Errorf("ring via %s: %d partitions", n.name, len(r.GetPartitions()))
		}
		for _, p := range r.GetPartitions() {
			if err := checkPartitionConfig(p, up, want); err != nil {
				return fmt.Errorf("ring via %s: partition %d: %w", n.name, p.GetId(), err)
			}
			for _, id := range p.GetVoters() {
				name, _, _ := strings.Cut(id, "#")
				if k := c.node(name); k != nil && k.id != "" && id != k.id {
					return fmt.Errorf("ring via %s: partition %d: voters %v name %s, whose incarnation is %s", n.name, p.GetId(), p.GetVoters(), id, k.id)
				}
			}
		}
	}
	return nil
}

// view asks n (a single attempt each) for its status and its ring.
func (n *dcNode) view() (*freqdv1.StatusResponse, *freqdv1.RingResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	st, err := n.cl.Status(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("status via %s: %w", n.name, err)
	}
	r, err := n.cl.Ring(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("ring via %s: %w", n.name, err)
	}
	return st, r, nil
}

// waitSettled polls until settledErr is nil, failing after dcDeadline.
func (c *dcCluster) waitSettled(what string) {
	c.t.Helper()
	c.waitUntil(what, func() error { return c.settledErr() })
}

// waitUntil polls cond until it returns nil, failing after dcDeadline with
// its last error and every node's view of the ring.
func (c *dcCluster) waitUntil(what string, cond func() error) {
	c.t.Helper()
	deadline := time.Now().Add(dcDeadline)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("waiting for %s: not after %v: %v\nrings:%s", what, dcDeadline, err, c.fo.rings())
		}
		time.Sleep(foPoll)
	}
}

// learnIDs records every node's replica id from the raft voters of the
// settled cluster.
func (c *dcCluster) learnIDs() {
	c.t.Helper()
	ids := map[string]string{}
	for _, p := range c.ring().GetPartitions() {
		for _, id := range p.GetVoters() {
			name, _, _ := strings.Cut(id, "#")
			if prev, ok := ids[name]; ok && prev != id {
				c.t.Fatalf("raft voters name %s as both %s and %s", name, prev, id)
			}
			ids[name] = id
		}
	}
	for _, n := range c.nodes {
		if !n.down {
			if ids[n.name] == "" {
				c.t.Fatalf("no partition has %s as a voter", n.name)
			}
			n.id = ids[n.name]
		}
	}
}

// ring returns the ring as the cluster describes it.
func (c *dcCluster) ring() *freqdv1.RingResponse {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := c.all.Ring(ctx)
	if err != nil {
		c.t.Fatalf("ring: %v", err)
	}
	return r
}

// partition returns partition p as the ring describes it.
func (c *dcCluster) partition(p uint32) *freqdv1.PartitionInfo {
	c.t.Helper()
	ps := c.ring().GetPartitions()
	if int(p) >= len(ps) {
		c.t.Fatalf("the ring has no partition %d", p)
	}
	return ps[p]
}

// led returns the partitions n is the raft leader of, by the ring.
func (c *dcCluster) led(n *dcNode) []*freqdv1.PartitionInfo {
	c.t.Helper()
	return slices.DeleteFunc(c.ring().GetPartitions(), func(p *freqdv1.PartitionInfo) bool { return p.GetHolder() != n.name })
}

// logLines returns the lines of n's current server log (stderr) that
// contain msg.
func (c *dcCluster) logLines(n *dcNode, msg string) []string {
	c.t.Helper()
	f, err := os.Open(filepath.Join(c.fo.e.dir, n.name+".stderr"))
	if err != nil {
		c.t.Fatalf("read %s's log: %v", n.name, err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		if strings.Contains(sc.Text(), msg) {
			out = append(out, sc.Text())
		}
	}
	if err := sc.Err(); err != nil {
		c.t.Fatalf("read %s's log: %v", n.name, err)
	}
	return out
}

// The log lines the tests look for (node/disk.go).
const (
	logRecovered = `msg="recovered from the data directory"`
	logDamaged   = `msg="raft state damaged on disk; discarding all of it and rejoining as a new incarnation (the partitions are copied back from their other replicas)"`
	logDirFailed = `msg="data directory failed; this node stops replicating and leaves the ring until restarted"`
	// logStoreFailed is the store's line for a directory it cannot write
	// (store/store.go), also when it finds it so as it opens it.
	logStoreFailed = `msg="store failed: nothing more is written or acknowledged until Rebase"`
)

// checkRecovered checks n's log for the line of its start from its data
// directory: the incarnation it had before (n.id), every partition
// recovered, and no damage.
func (c *dcCluster) checkRecovered(n *dcNode) {
	c.t.Helper()
	lines := c.logLines(n, logRecovered)
	if len(lines) != 1 {
		c.t.Errorf("%s logged %d lines %s; want 1:\n%s", n.name, len(lines), logRecovered, strings.Join(lines, "\n"))
		return
	}
	_, inc, _ := strings.Cut(n.id, "#")
	if got := slogAttr(lines[0], "incarnation"); got != inc {
		c.t.Errorf("%s recovered incarnation %q; before the restart it was %q: %s", n.name, got, inc, lines[0])
	}
	if got := slogAttr(lines[0], "partitions"); got != strconv.Itoa(dcPartitions) {
		c.t.Errorf("%s recovered %s partitions; want all %d: %s", n.name, got, dcPartitions, lines[0])
	}
	if d := c.logLines(n, logDamaged); len(d) > 0 {
		c.t.Errorf("%s reported damage:\n%s", n.name, strings.Join(d, "\n"))
	}
}

// slogAttr returns the value of attribute key in a line written by slog's
// text handler (unquoted), or "" if the line has none.
func slogAttr(line, key string) string {
	rest := line
	for {
		i := strings.Index(rest, key+"=")
		if i < 0 {
			return ""
		}
		if i > 0 && rest[i-1] != ' ' {
			rest = rest[i+len(key)+1:]
			continue
		}
		v := rest[i+len(key)+1:]
		if strings.HasPrefix(v, `"`) {
			q, err := strconv.QuotedPrefix(v)
			if err != nil {
				return ""
			}
			s, err := strconv.Unquote(q)
			if err != nil {
				return ""
			}
			return s
		}
		if j := strings.IndexByte(v, ' '); j >= 0 {
			v = v[:j]
		}
		return v
	}
}

// dcExpect is what the clients were told, for the final check.
type dcExpect struct {
	// acked maps each frequency acknowledged to a client, and not released
	// since, to that client.
	acked map[uint32]string
	// maybe[client][f]: a call of client on f had an unknown outcome.
	maybe map[string]map[uint32]bool
	// anyUnknown[client] counts its allocations of any frequency with an
	// unknown outcome: it may hold that many frequencies it was not told of.
	anyUnknown map[string]int
}

// checkHeld reads the holder of every frequency through every running
// node (recording each read in rec, if not nil) and checks it against e:
// every acknowledged holding is held by its client, the nodes agree, and a
// frequency held but not acknowledged is explained by a call with an
// unknown outcome. It also checks that each node's status counts as many
// held frequencies as the reads found.
func (c *dcCluster) checkHeld(e dcExpect, rec *freqmodel.Recorder, recClient int) {
	t := c.t
	t.Helper()
	var first map[uint32]string
	for _, n := range c.nodes {
		if n.down {
			continue
		}
		got := map[uint32]string{}
		for _, f := range c.freqs {
			ctx, cancel := context.WithTimeout(context.Background(), dcReadTimeout)
			start := time.Now()
			h, err := n.rcl.Holder(ctx, f)
			cancel()
			if err != nil {
				t.Errorf("holder %d via %s: %v", f, n.name, err)
				continue
			}
			if rec != nil {
				rec.Record(recClient, freqmodel.Input{Kind: freqmodel.Holder, Freq: f}, start, time.Now(),
					freqmodel.Output{Result: freqmodel.OK, Held: h.Held, Holder: h.ClientID})
			}
			if h.Held {
				got[f] = h.ClientID
			}
		}
		for f, id := range e.acked {
			if got[f] != id {
				t.Errorf("%d was acknowledged to %s; via %s it is held by %q (lost or overwritten)", f, id, n.name, got[f])
			}
		}
		unexplained := map[string]int{}
		for f, id := range got {
			if e.acked[f] == "" && !e.maybe[id][f] {
				unexplained[id]++
			}
		}
		for id, k := range unexplained {
			if k > e.anyUnknown[id] {
				t.Errorf("via %s, %s holds %d frequencies it was not told of, with only %d allocations of unknown outcome", n.name, id, k, e.anyUnknown[id])
			}
		}
		if first == nil {
			first = got
		} else {
			for _, f := range c.freqs {
				if first[f] != got[f] {
					t.Errorf("nodes disagree on %d: %q and, via %s, %q", f, first[f], n.name, got[f])
				}
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), dcReadTimeout)
		st, err := n.rcl.Status(ctx)
		cancel()
		if err != nil {
			t.Errorf("status via %s: %v", n.name, err)
		} else if st.GetHeld() != uint64(len(got)) {
			t.Errorf("status via %s counts %d held; the reads found %d", n.name, st.GetHeld(), len(got))
		}
	}
	t.Logf("final check: %d acknowledged holdings, %d held", len(e.acked), len(first))
}

// replicasErr returns nil when every running node hosts a raft replica of
// every partition with the same state (applied index, free and held
// counts) as the partition's leader, the only replica with role leader,
// all at the leader's term, each a voter (no learners left): the state a
// node lost or missed was copied to it again. Asked of each node with the
// public Replicas RPC; meaningful once writes have stopped (poll it: an
// index may trail by a no-op or configuration entry still in flight).
func (c *dcCluster) replicasErr() error {
	byPart := map[uint32][]replicaOf{}
	for _, n := range c.nodes {
		if n.down {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		res, err := freqdv1connect.NewFreqdServiceClient(c.fo.hc, "http://"+n.api).Replicas(ctx, connect.NewRequest(&freqdv1.ReplicasRequest{}))
		cancel()
		if err != nil {
			return fmt.Errorf("replicas of %s: %w", n.name, err)
		}
		if n.id != "" && res.Msg.GetSelf() != n.id {
			return fmt.Errorf("%s calls itself %s; its replica id is %s", n.name, res.Msg.GetSelf(), n.id)
		}
		for _, st := range res.Msg.GetReplicas() {
			byPart[st.GetPartition()] = append(byPart[st.GetPartition()], replicaOf{n.name, st})
		}
	}
	return replicasAgree(byPart, dcPartitions, c.upNames())
}

// replicaOf is one node's replica of a partition, as Replicas reports it.
type replicaOf struct {
	node  string
	state *freqdv1.ReplicaState
}

// replicasAgree checks the replicas of partitions 0..parts-1 (by
// partition) against the running nodes up: one replica per running node,
// exactly one leader, writable, whose voters are every running node (as a
// set) with no learners, and every other replica a follower at the
// leader's term knowing that leader, at the leader's applied index, with
// the leader's free and held counts.
func replicasAgree(byPart map[uint32][]replicaOf, parts int, up []string) error {
	for p := range uint32(parts) {
		reps := byPart[p]
		var nodes []string
		leader := -1
		for i, r := range reps {
			nodes = append(nodes, r.node)
			if r.state.GetRole() == "leader" {
				if leader >= 0 {
					return fmt.Errorf("partition %d: both %s and %s are leaders", p, reps[leader].node, r.node)
				}
				leader = i
			}
		}
		if !sameSet(nodes, up) {
			return fmt.Errorf("partition %d: replicas on %v; want one on each running node %v", p, nodes, up)
		}
		if leader < 0 {
			return fmt.Errorf("partition %d: no replica is leader", p)
		}
		ld := reps[leader].state
		if !ld.GetWritable() || !sameSet(voterNames(ld.GetVoters()), up) || len(ld.GetLearners()) > 0 || ld.GetTerm() == 0 ||
			!strings.HasPrefix(ld.GetLeader(), reps[leader].node+"#") {
			return fmt.Errorf("partition %d: leader %s (knowing leader %q): writable %v (%s) term %d voters %v learners %v; want itself, writable, every running node a voter, no learner",
				p, reps[leader].node, ld.GetLeader(), ld.GetWritable(), ld.GetReason(), ld.GetTerm(), ld.GetVoters(), ld.GetLearners())
		}
		for _, r := range reps {
			st := r.state
			if r.state == ld {
				continue
			}
			if st.GetRole() != "follower" || st.GetTerm() != ld.GetTerm() || st.GetLeader() != ld.GetLeader() ||
				st.GetApplied() != ld.GetApplied() || st.GetFree() != ld.GetFree() || st.GetHeld() != ld.GetHeld() {
				return fmt.Errorf("partition %d: %s is %s at term %d (leader %q), applied %d, free %d, held %d; the leader %s (%s) is at term %d, applied %d, free %d, held %d",
					p, r.node, st.GetRole(), st.GetTerm(), st.GetLeader(), st.GetApplied(), st.GetFree(), st.GetHeld(),
					reps[leader].node, ld.GetLeader(), ld.GetTerm(), ld.GetApplied(), ld.GetFree(), ld.GetHeld())
			}
		}
	}
	return nil
}

// dcRequireMount skips the test unless it runs as root on Linux with a
// working mount command, and returns the mount command's path.
func dcRequireMount(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds freqd and runs a 3-process cluster; skipped with -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs or a read-only bind mount as a node's data directory")
	}
	mnt, err := exec.LookPath("mount")
	if err != nil {
		t.Skipf("needs the mount command: %v", err)
	}
	probe := t.TempDir()
	if out, err := exec.Command(mnt, "-t", "tmpfs", "-o", "size=1m", "tmpfs", probe).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs (mount -t tmpfs): %v: %s", err, out)
	}
	if out, err := exec.Command("umount", probe).CombinedOutput(); err != nil {
		t.Fatalf("umount %s: %v: %s", probe, err, out)
	}
	return mnt
}

// dcMount runs mount with args and registers an unmount of dir for the end
// of the test: registered before the node on dir starts, it runs after the
// node's process has been killed.
func dcMount(t *testing.T, mnt, dir string, args ...string) {
	t.Helper()
	if out, err := exec.Command(mnt, args...).CombinedOutput(); err != nil {
		t.Fatalf("mount %s: %v: %s", strings.Join(args, " "), err, out)
	}
	t.Cleanup(func() {
		out, err := exec.Command("umount", dir).CombinedOutput()
		if err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
}

// TestSlogAttr checks the reading of attributes from slog text lines as
// freqd writes them.
func TestSlogAttr(t *testing.T) {
	line := `time=2026-11-21T10:33:25.907Z level=INFO msg="recovered from the data directory" node=n2 dir=/tmp/x incarnation=ab4cf0d9 partitions=6 lost=0 problem="a \"quoted\" one" xlost=9`
	tests := []struct{ key, want string }{
		{"incarnation", "ab4cf0d9"},
		{"lost", "0"},
		{"msg", "recovered from the data directory"},
		{"problem", `a "quoted" one`},
		{"xlost", "9"},
		{"missing", ""},
		{"ost", ""},
		{"time", "2026-11-21T10:33:25.907Z"},
	}
	for _, tt := range tests {
		if got := slogAttr(line, tt.key); got != tt.want {
			t.Errorf("slogAttr(%q) = %q; want %q", tt.key, got, tt.want)
		}
	}
	if got := slogAttr(`msg="unterminated`, "msg"); got != "" {
		t.Errorf("slogAttr of an unterminated quote = %q; want \"\"", got)
	}
}

// FuzzSlogAttr checks that slogAttr never panics and that an unquoted
// value it returns is a space-free part of the line.
func FuzzSlogAttr(f *testing.F) {
	f.Add(`time=x level=INFO msg="m" lost=0`, "lost")
	f.Add(`a="b\"c" a=d`, "a")
	f.Add(`k=`, "k")
	f.Fuzz(func(t *testing.T, line, key string) {
		v := slogAttr(line, key)
		if v != "" && !strings.Contains(line, key+"=") {
			t.Fatalf("slogAttr(%q, %q) = %q, but the line has no %s=", line, key, v, key)
		}
		if v != "" && !strings.Contains(line, key+`="`) && (strings.ContainsRune(v, ' ') || !strings.Contains(line, v)) {
			t.Fatalf("slogAttr(%q, %q) = %q: not a plain value of the line", line, key, v)
		}
	})
}
