package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/freqd/freqd"
	"github.com/freqd/freqd/client"
	freqdv1 "github.com/freqd/freqd/gen/freqd/v1"
	"github.com/freqd/freqd/transport"
)

// The cluster TestNetnsPartition runs: three nodes, each in a network
// namespace of its own, joined by a Linux bridge in a fourth namespace.
const (
	nsNodes      = 3
	nsPoolFirst  = 1
	nsPoolLast   = 60
	nsPartitions = 6
	nsFactor     = 3
	// nsSubnet holds the nodes' addresses (nsSubnet + "1" is n1). It exists
	// only inside the namespaces the test creates, so every run can use it.
	nsSubnet     = "10.213.0."
	nsAPIPort    = 7100
	nsPeerPort   = 7300
	nsGossipPort = 7946

	// nsFormDeadline bounds forming, and the majority's takeover after the cut.
	nsFormDeadline = 45 * time.Second
	// nsHealDeadline bounds the return to full health after healing: the
	// cut-off node has to rejoin through its seeds and be re-replicated.
	nsHealDeadline = 60 * time.Second
	// nsGrace is how long the cut-off node gets to notice before the second
	// round of requests through it.
	nsGrace = 2 * time.Second
	// nsOpTimeout bounds one request of the in-namespace client.
	nsOpTimeout = 5 * time.Second
	// nsReleases is how many allocations are released through the cut-off
	// node as it is cut (the late-release check).
	nsReleases = 3
	// nsRetryTimeout bounds one retried request (the client retries
	// Unavailable with the same request id until then).
	nsRetryTimeout = 10 * time.Second

	// nsHelperEnv, set to "1", turns the test binary into the in-namespace
	// client (nsClientMain). Not FREQD_*: envWithoutFreqd keeps it.
	nsHelperEnv = "NSTEST_FREQD_CLIENT"
	// nsResultPrefix starts the helper's one line of JSON results.
	nsResultPrefix = "NSRESULT "
)

// Kinds of nsResult: how a request ended.
const (
	nsOK          = "ok"
	nsUnavailable = "unavailable" // freqd.ErrUnavailable: not applied
	nsUnknown     = "unknown"     // outcome unknown: may have been applied
	nsRefused     = "refused"     // a freqd answer with another sentinel
	nsError       = "error"       // anything else
)

// nsOp is one request the in-namespace client makes.
type nsOp struct {
	// Op is alloc, release, holder, status or ring.
	Op     string  `json:"op"`
	Client string  `json:"client,omitempty"`
	Freq   *uint32 `json:"freq,omitempty"` // alloc: nil means any frequency
	// RequestID, for alloc, is the request id to send ("": a random one).
	RequestID string `json:"request_id,omitempty"`
	// Retry uses the client's retries (same request id, until Timeout);
	// otherwise the request is a single attempt (client.WithoutRetry).
	Retry   bool          `json:"retry,omitempty"`
	Timeout time.Duration `json:"timeout"`
}

// nsRequest is what the test sends the in-namespace client on stdin.
type nsRequest struct {
	Addrs []string `json:"addrs"`
	Ops   []nsOp   `json:"ops"`
	// Parallel sends every op at once instead of one after the other.
	Parallel bool `json:"parallel,omitempty"`
}

// nsResult is the outcome of one nsOp.
type nsResult struct {
	Kind   string          `json:"kind"`
	Err    string          `json:"err,omitempty"`
	Grant  *client.Grant   `json:"grant,omitempty"`
	Holder *client.Holding `json:"holder,omitempty"`
	// Proto is the status or ring answer, as protojson.
	Proto json.RawMessage `json:"proto,omitempty"`
	Took  time.Duration   `json:"took"`
}

func (r nsResult) String() string {
	switch {
	case r.Grant != nil:
		return fmt.Sprintf("%s in %v: granted %d (partition %d on %s)", r.Kind, r.Took.Round(time.Millisecond), r.Grant.Frequency, r.Grant.Partition, r.Grant.Node)
	case r.Holder != nil:
		return fmt.Sprintf("%s in %v: %d held=%v by %q", r.Kind, r.Took.Round(time.Millisecond), r.Holder.Frequency, r.Holder.Held, r.Holder.ClientID)
	}
	return fmt.Sprintf("%s in %v: %s", r.Kind, r.Took.Round(time.Millisecond), r.Err)
}

// nsNode is one freqd node and its namespace.
type nsNode struct {
	name   string // n1, n2, n3
	ns     string // its network namespace
	ip     string
	api    string // API address, host:port
	peer   string // peer (node-to-node) address, host:port
	gossip string // gossip address, host:port
	brLink string // its veth end in the bridge namespace: down cuts it off
	proc   *e2eProc
}

// nsCluster is the namespaces, the bridge and the freqd processes of one
// run of TestNetnsPartition.
type nsCluster struct {
	t      *testing.T
	ipCmd  string // path of ip (iproute2)
	bin    string // freqd
	self   string // this test binary, run as the in-namespace client
	dir    string
	bridge string // namespace holding the bridge br0
	nodes  []*nsNode
}

// TestNetnsPartition runs three `freqd serve` processes in network
// namespaces of their own, connected through a bridge, and cuts one node
// off by taking its link down. Requests through the cut-off node must
// grant nothing; the majority must take over its partitions and keep
// granting; after the link comes back the cut-off node must step down and
// catch up, and every acknowledged allocation must still be held by its
// client, read through every node. Requests under way through the cut-off
// node when it was cut end with an unknown outcome; they are settled after
// healing by retrying their request ids, and a release among them must not
// undo the allocation its client made again through the majority.
//
// It needs Linux, root (or CAP_NET_ADMIN and CAP_SYS_ADMIN) and `ip` from
// iproute2, and skips, saying what is missing, without them. Every
// namespace is made by the test under a name unique to the run, and
// deleted at the end.
func TestNetnsPartition(t *testing.T) {
	if os.Getenv(nsHelperEnv) == "1" {
		nsClientMain() // does not return
	}
	if testing.Short() {
		t.Skip("builds freqd and runs a 3-process cluster in network namespaces; skipped with -short")
	}
	ipCmd := nsRequire(t)
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) }) // last: after the processes are reaped
	self, err := os.Executable()
	if err != nil {
		t.Fatalf("finding the test binary to run as the in-namespace client: %v", err)
	}
	start := time.Now()
	dir := t.TempDir() // registered first, so removed after every process and namespace is gone
	c := &nsCluster{t: t, ipCmd: ipCmd, bin: buildFreqd(t, dir), self: self, dir: dir}
	t.Logf("built freqd in %v", time.Since(start).Round(time.Millisecond))
	c.makeNetwork()
	for _, n := range c.nodes {
		c.startServe(n)
	}
	all := c.nodes
	c.waitFor("the cluster to form", nsFormDeadline, func() (bool, string) { return c.healthy(all, all) })
	t.Logf("cluster formed after %v", time.Since(start).Round(time.Millisecond))

	// acked is every acknowledged allocation: frequency -> client.
	acked := map[uint32]string{}
	addAcked := func(g *client.Grant, id string) {
		t.Helper()
		if prev, dup := acked[g.Frequency]; dup {
			t.Errorf("granted %d to %s, but %s holds it", g.Frequency, id, prev)
		}
		if g.Frequency < nsPoolFirst || g.Frequency > nsPoolLast {
			t.Errorf("granted %d to %s, outside the pool %d-%d", g.Frequency, id, nsPoolFirst, nsPoolLast)
		}
		acked[g.Frequency] = id
	}

	// A: two allocations of any frequency through every node.
	for _, n := range c.nodes {
		id := "a-" + n.name
		for _, r := range c.mustCall(n, []string{n.api}, nsAlloc(id, nil, true), nsAlloc(id, nil, true)) {
			if r.Kind != nsOK {
				t.Fatalf("allocation through %s before the cut: %v", n.name, r)
			}
			addAcked(r.Grant, id)
		}
	}
	t.Logf("set A: %d allocations", len(acked))

	// Cut off the node that is raft leader of the most partitions, so the
	// majority has something to take over.
	ring := c.ring(c.nodes[0])
	cut := c.nodes[0]
	count := map[string][]uint32{}
	for _, p := range ring.GetPartitions() {
		count[p.GetHolder()] = append(count[p.GetHolder()], p.GetId())
	}
	for _, n := range c.nodes {
		if len(count[n.name]) >= len(count[cut.name]) {
			cut = n
		}
	}
	var majority []*nsNode
	for _, n := range c.nodes {
		if n != cut {
			majority = append(majority, n)
		}
	}
	// Any-frequency allocations may all have landed in the cut-off node's
	// partitions; make sure the releases below have holdings elsewhere.
	outside := 0
	for f := range acked {
		if p := nsPartitionOf(ring, f); p != nil && p.GetHolder() != cut.name {
			outside++
		}
	}
	for _, p := range ring.GetPartitions() {
		if outside >= nsReleases || p.GetHolder() == cut.name {
			continue
		}
		f, ok := nsFreeIn(p, acked, nil)
		if !ok {
			t.Fatalf("partition %d has no frequency left for set A", p.GetId())
		}
		id := fmt.Sprintf("a-p%d", p.GetId())
		r := c.mustCall(c.nodes[0], []string{c.nodes[0].api}, nsAlloc(id, &f, true))[0]
		if r.Kind != nsOK || r.Grant.Frequency != f {
			t.Fatalf("allocation of %d through %s before the cut: %v", f, c.nodes[0].name, r)
		}
		addAcked(r.Grant, id)
		outside++
	}
	targets := nsMinorityTargets(ring, acked)
	// rels are releases of allocations of A in partitions the cut-off node
	// does not lead: their holders ask the cut-off node to release
	// them, which forwards the requests towards the majority.
	var rels []nsOp
	for _, f := range slices.Sorted(maps.Keys(acked)) {
		if p := nsPartitionOf(ring, f); p != nil && p.GetHolder() != cut.name && len(rels) < nsReleases {
			rels = append(rels, nsOp{Op: "release", Client: acked[f], Freq: &f, Timeout: nsOpTimeout})
		}
	}
	if len(rels) == 0 {
		t.Fatalf("no allocation of set A outside %s's partitions %v", cut.name, count[cut.name])
	}

	t.Logf("cutting off %s (leader of partitions %v) by taking %s down in %s", cut.name, count[cut.name], cut.brLink, c.bridge)
	c.mustIP("-n", c.bridge, "link", "set", cut.brLink, "down")
	cutAt := time.Now()

	// Through the cut-off node, at once (all requests in parallel, before it
	// notices the cut) and after a grace period, while the majority takes
	// over. Written by the goroutine below, read after minorityDone is
	// closed.
	var minorityOps [][]nsOp
	var minority [][]nsResult
	var minorityErr []error
	minorityDone := make(chan struct{})
	t.Cleanup(func() { <-minorityDone }) // before the namespaces go
	go func() {
		defer close(minorityDone)
		for round := 1; round <= 2; round++ {
			if round == 2 {
				time.Sleep(nsGrace)
			}
			ops := nsMinorityOps(round, targets, rels)
			rs, err := c.send(cut, nsRequest{Addrs: []string{cut.api}, Ops: ops, Parallel: round == 1})
			minorityOps = append(minorityOps, ops)
			minority = append(minority, rs)
			minorityErr = append(minorityErr, err)
		}
	}()

	// The majority: every partition served again (a read is answered by a
	// raft leader through ReadIndex, which needs a quorum), then status shows every partition
	// writable and the ring settled on the two of them.
	var probes []nsOp
	for _, p := range ring.GetPartitions() {
		probes = append(probes, nsOp{Op: "holder", Freq: new(p.GetFirst()), Timeout: 250 * time.Millisecond})
	}
	c.waitFor("the majority to serve every partition", nsFormDeadline, func() (bool, string) {
		for _, n := range majority {
			rs, err := c.send(n, nsRequest{Addrs: []string{n.api}, Ops: probes, Parallel: true})
			if err != nil {
				return false, err.Error()
			}
			for i, r := range rs {
				if r.Kind != nsOK {
					return false, fmt.Sprintf("%s via %s: %v", probes[i], n.name, r)
				}
			}
		}
		return true, ""
	})
	t.Logf("majority: every partition serving %v after the cut", time.Since(cutAt).Round(time.Millisecond))
	c.waitFor("the majority to take over every partition", nsFormDeadline, func() (bool, string) { return c.healthy(majority, majority) })
	t.Logf("majority: every partition writable, ring settled on %s,%s, %v after the cut", majority[0].name, majority[1].name, time.Since(cutAt).Round(time.Millisecond))

	// B: a specific frequency in every partition and two of any frequency
	// through each majority node.
	b := 0
	for i, p := range ring.GetPartitions() {
		n := majority[i%len(majority)]
		f, ok := nsFreeIn(p, acked, targets)
		if !ok {
			t.Fatalf("partition %d has no frequency left for set B", p.GetId())
		}
		id := fmt.Sprintf("b-p%d", p.GetId())
		r := c.mustCall(n, []string{n.api}, nsAlloc(id, &f, true))[0]
		if r.Kind != nsOK || r.Grant.Frequency != f {
			t.Fatalf("allocation of %d through %s after the cut: %v", f, n.name, r)
		}
		addAcked(r.Grant, id)
		b++
	}
	for _, n := range majority {
		id := "b-" + n.name
		for _, r := range c.mustCall(n, []string{n.api}, nsAlloc(id, nil, true), nsAlloc(id, nil, true)) {
			if r.Kind != nsOK {
				t.Fatalf("allocation through %s after the cut: %v", n.name, r)
			}
			addAcked(r.Grant, id)
			b++
		}
	}
	t.Logf("set B: %d allocations through the majority", b)

	// The holder of each of rels, whose release through the cut-off node
	// did not succeed, releases it through the majority and allocates it
	// again: an acknowledged allocation that a late copy of the first
	// release must not undo.
	m := majority[0]
	regrants := make([]*client.Grant, len(rels))
	for i, rel := range rels {
		rs := c.mustCall(m, []string{m.api}, nsOp{Op: "release", Client: rel.Client, Freq: rel.Freq, Retry: true, Timeout: nsRetryTimeout},
			nsAlloc(rel.Client, rel.Freq, true))
		if rs[0].Kind != nsOK || rs[1].Kind != nsOK {
			t.Fatalf("%s by %s through %s after the cut: %v; then alloc: %v", rel, rel.Client, m.name, rs[0], rs[1])
		}
		regrants[i] = rs[1].Grant
		t.Logf("%s released %d through %s and allocated it again (since %s)", rel.Client, *rel.Freq, m.name, regrants[i].Since.Format(time.RFC3339Nano))
	}

	// Once more through the cut-off node, now that the majority has moved on
	// to newer raft terms.
	<-minorityDone
	ops := nsMinorityOps(3, targets, rels)
	rs, err := c.call(cut, []string{cut.api}, ops...)
	minorityOps = append(minorityOps, ops)
	minority = append(minority, rs)
	minorityErr = append(minorityErr, err)
	c.checkMinority(cut, minorityOps, minority, minorityErr)
	if st, _, err := c.view(cut); err == nil {
		t.Logf("%s's own view while cut off: %d of %d partitions writable, %d problems", cut.name, st.GetWritable(), nsPartitions, len(st.GetProblems()))
	}

	t.Logf("healing: %s up", cut.brLink)
	c.mustIP("-n", c.bridge, "link", "set", cut.brLink, "up")
	healAt := time.Now()
	c.waitFor("all three nodes to be active with every partition fully replicated", nsHealDeadline, func() (bool, string) { return c.healthy(all, all) })
	t.Logf("healed: full health %v after the link came back", time.Since(healAt).Round(time.Millisecond))

	// A request the cut-off node had sent when its link went down waits in
	// TCP's retransmission queue and arrives with the first retransmission
	// after the heal: the retransmission timeout doubles each time, so that
	// is at most about as long after the heal as the cut lasted. Let such
	// requests arrive before the checks.
	settle := healAt.Add(healAt.Sub(cutAt) + time.Second)
	t.Logf("waiting %v for requests delayed by the cut to arrive", time.Until(settle).Round(time.Millisecond))
	time.Sleep(time.Until(settle))

	// The re-allocations of rels are acknowledged: no copy of the releases
	// that went through the cut-off node may undo them, however late it
	// arrives.
	for i, rel := range rels {
		f := *rel.Freq
		r := c.mustCall(m, []string{m.api}, nsOp{Op: "holder", Freq: &f, Retry: true, Timeout: nsRetryTimeout})[0]
		if r.Kind == nsOK && r.Holder.Held && r.Holder.ClientID == rel.Client {
			continue
		}
		t.Errorf("LOST: %s allocated %d again through %s at %s (acknowledged) after its release through the cut-off %s ended %q; after healing, holder %d = %v: "+
			"the release sent through the cut-off node was applied after the heal and freed the newer, acknowledged allocation",
			rel.Client, f, m.name, regrants[i].Since.Format(time.RFC3339Nano), cut.name, minority[0][i].Kind, f, r)
		if r.Holder != nil && r.Holder.Held {
			t.Logf("holder %d: %s since %s", f, r.Holder.ClientID, r.Holder.Since.Format(time.RFC3339Nano))
		}
		delete(acked, f) // reported; the checks below go on without it
	}

	// Requests through the cut-off node that were under way when it was cut
	// may have been applied since: settle them before choosing free
	// frequencies.
	c.resolveUnknown(cut, minorityOps, minority, cutAt, healAt, addAcked)

	// C: the healed node serves again, for every partition, including
	// those it led before the cut.
	var cOps []nsOp
	for _, p := range ring.GetPartitions() {
		f, ok := nsFreeIn(p, acked, nil)
		if !ok {
			t.Fatalf("partition %d has no frequency left for set C", p.GetId())
		}
		cOps = append(cOps, nsAlloc(fmt.Sprintf("c-p%d", p.GetId()), &f, true))
	}
	cOps = append(cOps, nsAlloc("c-any", nil, true))
	for i, r := range c.mustCall(cut, []string{cut.api}, cOps...) {
		if r.Kind != nsOK || (cOps[i].Freq != nil && r.Grant.Frequency != *cOps[i].Freq) {
			t.Fatalf("%s through the healed %s: %v", cOps[i], cut.name, r)
		}
		addAcked(r.Grant, cOps[i].Client)
	}
	t.Logf("set C: %d allocations through the healed %s", len(cOps), cut.name)

	c.checkHeld(acked)
	t.Logf("total %v", time.Since(start).Round(time.Millisecond))
}

// nsRequire skips the test unless it can make network namespaces joined
// by a bridge, and returns the path of ip.
func nsRequire(t *testing.T) string {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skipf("network namespaces need Linux; this is %s", runtime.GOOS)
	}
	ipCmd, err := exec.LookPath("ip")
	if err != nil {
		t.Skipf("needs the ip command from iproute2 (apt-get install iproute2): %v", err)
	}
	if os.Geteuid() != 0 {
		if missing := nsMissingCaps(); missing != "" {
			t.Skipf("needs root, or CAP_NET_ADMIN and CAP_SYS_ADMIN, to create network namespaces; missing %s", missing)
		}
	}
	probe := fmt.Sprintf("freqd-probe-%06x", rand.Uint32N(1<<24))
	steps := []struct {
		what string
		args []string
	}{
		{"create a network namespace", []string{"netns", "add", probe}},
		{"run a command in a network namespace", []string{"netns", "exec", probe, "true"}},
		{"create a Linux bridge (kernel module bridge)", []string{"-n", probe, "link", "add", "br0", "type", "bridge"}},
		{"create a veth pair (kernel module veth)", []string{"-n", probe, "link", "add", "va", "type", "veth", "peer", "name", "vb"}},
	}
	for i, s := range steps {
		out, err := nsRunIP(ipCmd, s.args...)
		if err != nil {
			// A failed add may have left the name behind.
			if dout, derr := nsRunIP(ipCmd, "netns", "del", probe); derr != nil && i > 0 {
				t.Errorf("deleting probe namespace %s: %v: %s", probe, derr, dout)
			}
			t.Skipf("cannot %s: ip %s: %v: %s", s.what, strings.Join(s.args, " "), err, out)
		}
	}
	if out, err := nsRunIP(ipCmd, "netns", "del", probe); err != nil {
		t.Fatalf("deleting probe namespace %s: %v: %s", probe, err, out)
	}
	return ipCmd
}

// nsMissingCaps names the capabilities a non-root process lacks to make
// namespaces ("" if it has them).
func nsMissingCaps() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "CAP_NET_ADMIN and CAP_SYS_ADMIN (cannot read /proc/self/status)"
	}
	for _, l := range strings.Split(string(b), "\n") {
		v, ok := strings.CutPrefix(l, "CapEff:")
		if !ok {
			continue
		}
		caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		if err != nil {
			break
		}
		var missing []string
		if caps&(1<<12) == 0 {
			missing = append(missing, "CAP_NET_ADMIN")
		}
		if caps&(1<<21) == 0 {
			missing = append(missing, "CAP_SYS_ADMIN")
		}
		return strings.Join(missing, " and ")
	}
	return "CAP_NET_ADMIN and CAP_SYS_ADMIN (no CapEff in /proc/self/status)"
}

// nsRunIP runs ip with a timeout and returns its combined output.
func nsRunIP(ipCmd string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, ipCmd, args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// mustIP runs ip and fails the test if it fails.
func (c *nsCluster) mustIP(args ...string) {
	c.t.Helper()
	if out, err := nsRunIP(c.ipCmd, args...); err != nil {
		c.t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// makeNetwork creates the bridge namespace and one namespace per node with
// a veth pair to the bridge, and registers their removal.
func (c *nsCluster) makeNetwork() {
	suffix := fmt.Sprintf("%06x", rand.Uint32N(1<<24))
	c.bridge = "freqd-br-" + suffix
	c.addNetns(c.bridge)
	c.mustIP("-n", c.bridge, "link", "add", "br0", "type", "bridge")
	c.mustIP("-n", c.bridge, "link", "set", "br0", "up")
	for i := 1; i <= nsNodes; i++ {
		ip := nsSubnet + strconv.Itoa(i)
		n := &nsNode{
			name:   fmt.Sprintf("n%d", i),
			ns:     fmt.Sprintf("freqd-n%d-%s", i, suffix),
			ip:     ip,
			api:    net.JoinHostPort(ip, strconv.Itoa(nsAPIPort)),
			peer:   net.JoinHostPort(ip, strconv.Itoa(nsPeerPort)),
			gossip: net.JoinHostPort(ip, strconv.Itoa(nsGossipPort)),
			brLink: fmt.Sprintf("vn%d", i),
		}
		c.addNetns(n.ns)
		c.mustIP("-n", n.ns, "link", "add", "eth0", "type", "veth", "peer", "name", n.brLink, "netns", c.bridge)
		c.mustIP("-n", c.bridge, "link", "set", n.brLink, "master", "br0")
		c.mustIP("-n", c.bridge, "link", "set", n.brLink, "up")
		c.mustIP("-n", n.ns, "addr", "add", ip+"/24", "dev", "eth0")
		c.mustIP("-n", n.ns, "link", "set", "eth0", "up")
		c.mustIP("-n", n.ns, "link", "set", "lo", "up")
		c.nodes = append(c.nodes, n)
	}
	c.t.Logf("namespaces %s (bridge) and freqd-n{1..%d}-%s, nodes at %s1-%d", c.bridge, nsNodes, suffix, nsSubnet, nsNodes)
}

// addNetns creates namespace ns and registers its removal: first any
// process still in it (all started by this test), then the namespace,
// which takes its end of every veth pair with it.
func (c *nsCluster) addNetns(ns string) {
	t := c.t
	c.mustIP("netns", "add", ns)
	t.Cleanup(func() {
		out, err := nsRunIP(c.ipCmd, "netns", "pids", ns)
		if err != nil {
			t.Errorf("listing processes in %s: %v: %s", ns, err, out)
		}
		for _, f := range strings.Fields(out) {
			pid, err := strconv.Atoi(f)
			if err != nil {
				continue
			}
			if p, err := os.FindProcess(pid); err == nil {
				t.Logf("killing pid %d, still in namespace %s", pid, ns)
				_ = p.Kill()
			}
		}
		if out, err := nsRunIP(c.ipCmd, "netns", "del", ns); err != nil {
			t.Errorf("deleting namespace %s: %v: %s", ns, err, out)
		}
	})
}

// nodeYAML is the config file of node n.
func (c *nsCluster) nodeYAML(n *nsNode) string {
	var seeds []string
	for _, m := range c.nodes {
		if m != n {
			seeds = append(seeds, strconv.Quote(m.gossip))
		}
	}
	return fmt.Sprintf(`# Written by TestNetnsPartition.
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
  profile: fast
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
`, n.name, strconv.Quote(filepath.Join(c.dir, "data", n.name)), n.api, n.peer, n.gossip, strings.Join(seeds, ", "),
		nsPoolFirst, nsPoolLast, nsPartitions, nsFactor, nsNodes)
}

// startServe runs `freqd serve` for n inside n's namespace, with its output
// in files, and registers a cleanup that kills and reaps it (and shows its
// logs if the test failed).
func (c *nsCluster) startServe(n *nsNode) {
	t := c.t
	cfg := writeFile(t, c.dir, n.name+".yaml", c.nodeYAML(n))
	stdout, err := os.Create(filepath.Join(c.dir, n.name+".stdout"))
	if err != nil {
		t.Fatal(err)
	}
	defer stdout.Close()
	stderr, err := os.Create(filepath.Join(c.dir, n.name+".stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer stderr.Close()
	// ip netns exec execs the command: the process is freqd itself.
	cmd := exec.Command(c.ipCmd, "netns", "exec", n.ns, c.bin, "serve", "--config", cfg)
	cmd.Stdout, cmd.Stderr, cmd.Env, cmd.Dir = stdout, stderr, envWithoutFreqd(), c.dir
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", n.name, err)
	}
	p := &e2eProc{name: n.name, api: n.api, gossip: n.gossip, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	n.proc = p
	t.Cleanup(func() {
		if ex, _ := p.exited(); !ex {
			_ = cmd.Process.Kill()
		}
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			t.Errorf("%s (pid %d) did not exit after SIGKILL", n.name, cmd.Process.Pid)
		}
		if t.Failed() {
			for _, f := range []string{".stdout", ".stderr"} {
				b, _ := os.ReadFile(filepath.Join(c.dir, n.name+f))
				t.Logf("==== %s%s ====\n%s", n.name, f, b)
			}
		}
	})
}

// waitFor polls cond until it holds, failing the test after deadline or as
// soon as a freqd process exits.
func (c *nsCluster) waitFor(what string, deadline time.Duration, cond func() (bool, string)) {
	c.t.Helper()
	end := time.Now().Add(deadline)
	for {
		ok, why := cond()
		if ok {
			return
		}
		for _, n := range c.nodes {
			if ex, err := n.proc.exited(); ex {
				c.t.Fatalf("waiting for %s: %s exited: %v (last: %s)", what, n.name, err, why)
			}
		}
		if time.Now().After(end) {
			c.t.Fatalf("waiting for %s: not after %v; last: %s", what, deadline, why)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// call runs the in-namespace client inside from's namespace against addrs
// and returns one result per op.
func (c *nsCluster) call(from *nsNode, addrs []string, ops ...nsOp) ([]nsResult, error) {
	return c.send(from, nsRequest{Addrs: addrs, Ops: ops})
}

// send runs the in-namespace client inside from's namespace with req.
func (c *nsCluster) send(from *nsNode, req nsRequest) ([]nsResult, error) {
	ops := req.Ops
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	budget := 10 * time.Second
	for _, op := range ops {
		budget += op.Timeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), min(budget, 3*time.Minute))
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, c.ipCmd, "netns", "exec", from.ns, c.self, "-test.run=^TestNetnsPartition$")
	cmd.Env = append(envWithoutFreqd(), nsHelperEnv+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr, cmd.Dir = bytes.NewReader(b), &stdout, &stderr, c.dir
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("client in %s's namespace: %w\nstdout: %s\nstderr: %s", from.name, err, stdout.String(), stderr.String())
	}
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), nsResultPrefix)
		if !ok {
			continue
		}
		var rs []nsResult
		if err := json.Unmarshal([]byte(line), &rs); err != nil {
			return nil, fmt.Errorf("client in %s's namespace: %w", from.name, err)
		}
		if len(rs) != len(ops) {
			return nil, fmt.Errorf("client in %s's namespace: %d results for %d requests", from.name, len(rs), len(ops))
		}
		return rs, nil
	}
	return nil, fmt.Errorf("client in %s's namespace printed no results:\nstdout: %s\nstderr: %s", from.name, stdout.String(), stderr.String())
}

// mustCall is call that fails the test if the client could not run.
func (c *nsCluster) mustCall(from *nsNode, addrs []string, ops ...nsOp) []nsResult {
	c.t.Helper()
	rs, err := c.call(from, addrs, ops...)
	if err != nil {
		c.t.Fatal(err)
	}
	return rs
}

func (op nsOp) String() string {
	what := "any"
	if op.Freq != nil {
		what = strconv.FormatUint(uint64(*op.Freq), 10)
	}
	switch op.Op {
	case "alloc", "holder":
		return op.Op + " " + what
	}
	return op.Op
}

func nsAlloc(id string, f *uint32, retry bool) nsOp {
	to := nsOpTimeout
	if retry {
		to = nsRetryTimeout
	}
	return nsOp{Op: "alloc", Client: id, Freq: f, Retry: retry, Timeout: to}
}

// view asks n, from inside its namespace, for its status and ring.
func (c *nsCluster) view(n *nsNode) (*freqdv1.StatusResponse, *freqdv1.RingResponse, error) {
	rs, err := c.call(n, []string{n.api}, nsOp{Op: "status", Timeout: nsOpTimeout}, nsOp{Op: "ring", Timeout: nsOpTimeout})
	if err != nil {
		return nil, nil, err
	}
	for _, r := range rs {
		if r.Kind != nsOK {
			return nil, nil, fmt.Errorf("%s: %v", n.name, r)
		}
	}
	var st freqdv1.StatusResponse
	var ring freqdv1.RingResponse
	if err := protojson.Unmarshal(rs[0].Proto, &st); err != nil {
		return nil, nil, fmt.Errorf("%s status: %w", n.name, err)
	}
	if err := protojson.Unmarshal(rs[1].Proto, &ring); err != nil {
		return nil, nil, fmt.Errorf("%s ring: %w", n.name, err)
	}
	return &st, &ring, nil
}

// ring is n's ring; it fails the test if n does not answer.
func (c *nsCluster) ring(n *nsNode) *freqdv1.RingResponse {
	c.t.Helper()
	_, r, err := c.view(n)
	if err != nil {
		c.t.Fatal(err)
	}
	return r
}

// healthy reports whether every node of ask sees exactly live as its
// active, alive members (any other member not alive), every partition
// writable, and a ring settled on live.
func (c *nsCluster) healthy(ask, live []*nsNode) (bool, string) {
	var names []string
	for _, n := range live {
		names = append(names, n.name)
	}
	for _, n := range ask {
		st, r, err := c.view(n)
		if err != nil {
			return false, err.Error()
		}
		seen := 0
		for _, m := range st.GetMembers() {
			alive := m.GetState() == "active" && m.GetHealth() == "alive"
			if slices.Contains(names, m.GetName()) != alive {
				return false, fmt.Sprintf("%s sees %s %s/%s", n.name, m.GetName(), m.GetState(), m.GetHealth())
			}
			if alive {
				seen++
			}
		}
		if seen != len(live) {
			return false, fmt.Sprintf("%s sees %d of the %d live members", n.name, seen, len(live))
		}
		if st.GetWritable() != nsPartitions || len(st.GetUnavailable()) > 0 {
			return false, fmt.Sprintf("%s: %d writable, problems %v", n.name, st.GetWritable(), st.GetProblems())
		}
		if err := nsCheckRing(r, names); err != nil {
			return false, fmt.Sprintf("%s: %v", n.name, err)
		}
	}
	return true, ""
}

// nsCheckRing checks a ring of the pool on the given live members: every
// partition once, the pool covered exactly, each held by its owner with
// min(factor, members) distinct replicas starting with the owner, and a
// writable configuration equal to those replicas.
func nsCheckRing(r *freqdv1.RingResponse, members []string) error {
	ps := r.GetPartitions()
	if len(ps) != nsPartitions {
		return fmt.Errorf("%d partitions, want %d", len(ps), nsPartitions)
	}
	want := min(nsFactor, len(members))
	next := uint32(nsPoolFirst)
	for i, p := range ps {
		if p.GetId() != uint32(i) || p.GetFirst() != next || p.GetLast() < p.GetFirst() {
			return fmt.Errorf("partition %d: id %d range %d-%d; want ids in order covering %d-%d", i, p.GetId(), p.GetFirst(), p.GetLast(), nsPoolFirst, nsPoolLast)
		}
		next = p.GetLast() + 1
		if err := checkPartitionConfig(p, members, want); err != nil {
			return fmt.Errorf("partition %d: %w", i, err)
		}
	}
	if next != nsPoolLast+1 {
		return fmt.Errorf("partitions end at %d, want %d", next-1, nsPoolLast)
	}
	return nil
}

// nsMinorityTargets picks, in every partition, the highest frequency not
// in acked: the cut-off node is asked for these.
func nsMinorityTargets(r *freqdv1.RingResponse, acked map[uint32]string) []uint32 {
	var out []uint32
	for _, p := range r.GetPartitions() {
		for f := p.GetLast(); f >= p.GetFirst(); f-- {
			if _, held := acked[f]; !held {
				out = append(out, f)
				break
			}
		}
	}
	return out
}

// nsPartitionOf returns the partition of r holding f.
func nsPartitionOf(r *freqdv1.RingResponse, f uint32) *freqdv1.PartitionInfo {
	for _, p := range r.GetPartitions() {
		if p.GetFirst() <= f && f <= p.GetLast() {
			return p
		}
	}
	return nil
}

// nsFreeIn returns the lowest frequency of p in neither acked nor avoid.
func nsFreeIn(p *freqdv1.PartitionInfo, acked map[uint32]string, avoid []uint32) (uint32, bool) {
	for f := p.GetFirst(); f <= p.GetLast(); f++ {
		if _, held := acked[f]; !held && !slices.Contains(avoid, f) {
			return f, true
		}
	}
	return 0, false
}

// nsMinorityClient is the client id prefix of requests through the
// cut-off node: none of them may ever hold a frequency.
const nsMinorityClient = "minority-"

// nsMinorityOps are the single-attempt requests of one round through the
// cut-off node: the releases rels (first: the checks after healing look for
// them there), a free frequency of every partition, two
// of any frequency, the held frequency of the first release, and a read of
// it.
func nsMinorityOps(round int, targets []uint32, rels []nsOp) []nsOp {
	held := *rels[0].Freq
	ops := slices.Clone(rels)
	for i := range targets {
		ops = append(ops, nsAlloc(fmt.Sprintf("%s%d-f%d", nsMinorityClient, round, targets[i]), &targets[i], false))
	}
	anyID := fmt.Sprintf("%s%d-any", nsMinorityClient, round)
	ops = append(ops, nsAlloc(anyID, nil, false), nsAlloc(anyID, nil, false))
	ops = append(ops, nsAlloc(fmt.Sprintf("%s%d-held", nsMinorityClient, round), &held, false))
	for i := len(rels); i < len(ops); i++ {
		// A request id, so an outcome left unknown can be resolved later.
		ops[i].RequestID = client.NewRequestID()
	}
	ops = append(ops, nsOp{Op: "holder", Freq: &held, Timeout: nsOpTimeout})
	return ops
}

// checkMinority fails the test for every request through the cut-off node
// that did not end Unavailable or with an unknown outcome, and logs what
// each round got.
func (c *nsCluster) checkMinority(cut *nsNode, ops [][]nsOp, rounds [][]nsResult, errs []error) {
	t := c.t
	kinds := map[string]int{}
	var slowest time.Duration
	for i, rs := range rounds {
		if errs[i] != nil {
			t.Errorf("round %d through the cut-off %s: %v", i+1, cut.name, errs[i])
			continue
		}
		var got []string
		errText := map[string]bool{}
		for j, r := range rs {
			kinds[r.Kind]++
			slowest = max(slowest, r.Took)
			got = append(got, fmt.Sprintf("%s: %s in %v", ops[i][j], r.Kind, r.Took.Round(time.Millisecond)))
			if r.Err != "" {
				errText[r.Err] = true
			}
			switch r.Kind {
			case nsUnavailable, nsUnknown:
			case nsOK:
				t.Errorf("round %d: %s through the cut-off %s succeeded: %v", i+1, ops[i][j], cut.name, r)
			default:
				t.Errorf("round %d: %s through the cut-off %s was answered (want Unavailable or outcome unknown): %v", i+1, ops[i][j], cut.name, r)
			}
		}
		t.Logf("round %d through the cut-off %s: %s", i+1, cut.name, strings.Join(got, "; "))
		if testing.Verbose() {
			for _, e := range slices.Sorted(maps.Keys(errText)) {
				t.Logf("    error: %s", e)
			}
		}
	}
	t.Logf("through the cut-off %s: %v (slowest %v)", cut.name, kinds, slowest.Round(time.Millisecond))
}

// resolveUnknown retries, through the healed node and with the same
// client and request id, every allocation through the cut-off node whose
// outcome was unknown: the answer is the original grant (Duplicate) if it
// was applied, else a new grant or a refusal. Grants join the
// acknowledged set through add. Requests that ended Unavailable were not
// applied and are not retried: checkHeld finds them if they were.
func (c *nsCluster) resolveUnknown(via *nsNode, ops [][]nsOp, rounds [][]nsResult, cutAt, healAt time.Time, add func(*client.Grant, string)) {
	t := c.t
	var retry []nsOp
	for i, rs := range rounds {
		for j, r := range rs {
			if op := ops[i][j]; op.Op == "alloc" && r.Kind == nsUnknown {
				op.Retry, op.Timeout = true, nsRetryTimeout
				retry = append(retry, op)
			}
		}
	}
	if len(retry) == 0 {
		return
	}
	applied := 0
	for i, r := range c.mustCall(via, []string{via.api}, retry...) {
		op := retry[i]
		switch {
		case r.Kind == nsOK && r.Grant.Duplicate:
			applied++
			g := r.Grant
			t.Logf("NOTE: %s by %s through the cut-off node ended with an unknown outcome, and was applied: %d granted at cut%+v, heal%+v",
				op, op.Client, g.Frequency, g.Since.Sub(cutAt).Round(time.Millisecond), g.Since.Sub(healAt).Round(time.Millisecond))
			add(g, op.Client)
		case r.Kind == nsOK:
			g := r.Grant
			t.Logf("%s by %s through the cut-off node ended with an unknown outcome and had not been applied: the retry granted %d at cut%+v, heal%+v",
				op, op.Client, g.Frequency, g.Since.Sub(cutAt).Round(time.Millisecond), g.Since.Sub(healAt).Round(time.Millisecond))
			add(g, op.Client)
		case r.Kind == nsRefused && op.Freq != nil:
			// Not applied, and the frequency is taken now.
		default:
			t.Errorf("resolving %s by %s (outcome unknown while cut off) through %s: %v", op, op.Client, via.name, r)
		}
	}
	t.Logf("resolved %d unknown outcomes through %s by retrying their request ids: %d had been applied", len(retry), via.name, applied)
}

// checkHeld reads every frequency of the pool through every node: each in
// acked is held by its client, every other one is free, and the ring's
// counts agree.
func (c *nsCluster) checkHeld(acked map[uint32]string) {
	t := c.t
	var ops []nsOp
	for f := uint32(nsPoolFirst); f <= nsPoolLast; f++ {
		ops = append(ops, nsOp{Op: "holder", Freq: &f, Retry: true, Timeout: nsRetryTimeout})
	}
	for _, n := range c.nodes {
		rs := c.mustCall(n, []string{n.api}, ops...)
		for i, r := range rs {
			f := *ops[i].Freq
			want, held := acked[f]
			switch {
			case r.Kind != nsOK:
				t.Errorf("holder %d via %s: %v", f, n.name, r)
			case !held && r.Holder.Held && strings.HasPrefix(r.Holder.ClientID, nsMinorityClient):
				t.Errorf("holder %d via %s: held by %s since %v, which asked for it through the cut-off node and was not granted it",
					f, n.name, r.Holder.ClientID, r.Holder.Since.Format(time.RFC3339Nano))
			case held && (!r.Holder.Held || r.Holder.ClientID != want):
				t.Errorf("holder %d via %s: %v; want held by %s (acknowledged)", f, n.name, r, want)
			case !held && r.Holder.Held:
				t.Errorf("holder %d via %s: %v; want free", f, n.name, r)
			}
		}
		ring := c.ring(n)
		var free, held uint64
		for _, p := range ring.GetPartitions() {
			free, held = free+p.GetFree(), held+p.GetHeld()
		}
		if held != uint64(len(acked)) || free+held != nsPoolLast-nsPoolFirst+1 {
			t.Errorf("ring via %s counts %d held, %d free; want %d held of %d", n.name, held, free, len(acked), nsPoolLast-nsPoolFirst+1)
		}
	}
	t.Logf("%d acknowledged allocations held, the other %d frequencies free, read through every node", len(acked), nsPoolLast-nsPoolFirst+1-len(acked))
}

// nsClientMain is the in-namespace client: it reads an nsRequest on stdin,
// runs its ops with the Go client and prints one nsResultPrefix line of
// results, then exits.
func nsClientMain() {
	var req nsRequest
	if err := json.NewDecoder(os.Stdin).Decode(&req); err != nil {
		fmt.Fprintln(os.Stderr, "reading the request:", err)
		os.Exit(2)
	}
	retrying, err := client.New(req.Addrs)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	single, err := client.New(req.Addrs, client.WithoutRetry())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	out := make([]nsResult, len(req.Ops))
	var wg sync.WaitGroup
	for i, op := range req.Ops {
		cl := single
		if op.Retry {
			cl = retrying
		}
		if !req.Parallel {
			out[i] = nsDo(cl, op)
			continue
		}
		wg.Go(func() { out[i] = nsDo(cl, op) })
	}
	wg.Wait()
	b, err := json.Marshal(out)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	fmt.Printf("%s%s\n", nsResultPrefix, b)
	os.Exit(0)
}

// nsDo runs one op.
func nsDo(cl *client.Client, op nsOp) nsResult {
	ctx, cancel := context.WithTimeout(context.Background(), op.Timeout)
	defer cancel()
	start := time.Now()
	var r nsResult
	var err error
	switch op.Op {
	case "alloc":
		id := op.RequestID
		if id == "" {
			id = client.NewRequestID()
		}
		var g client.Grant
		if g, err = cl.AllocateWithID(ctx, op.Client, id, op.Freq); err == nil {
			r.Grant = &g
		}
	case "release":
		err = cl.Release(ctx, op.Client, *op.Freq)
	case "holder":
		var h client.Holding
		if h, err = cl.Holder(ctx, *op.Freq); err == nil {
			r.Holder = &h
		}
	case "status":
		var st *freqdv1.StatusResponse
		if st, err = cl.Status(ctx); err == nil {
			r.Proto, err = protojson.Marshal(st)
		}
	case "ring":
		var rg *freqdv1.RingResponse
		if rg, err = cl.Ring(ctx); err == nil {
			r.Proto, err = protojson.Marshal(rg)
		}
	default:
		err = fmt.Errorf("unknown op %q", op.Op)
	}
	r.Took = time.Since(start)
	r.Kind = nsKind(err)
	if err != nil {
		r.Err = err.Error()
	}
	return r
}

// nsKind classifies a client error by the sentinels it matches.
func nsKind(err error) string {
	switch {
	case err == nil:
		return nsOK
	case errors.Is(err, freqd.ErrOutcomeUnknown) || transport.Unknown(err):
		return nsUnknown
	case errors.Is(err, freqd.ErrUnavailable):
		return nsUnavailable
	case transport.Answered(err):
		return nsRefused
	}
	return nsError
}
