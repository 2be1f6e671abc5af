package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/freqd/freqd/config"
	freqdv1 "github.com/freqd/freqd/gen/freqd/v1"
)

// The cluster TestMultiProcessCluster starts: every node gets the same pool.
const (
	e2ePartitions = 4
	e2eFactor     = 3
	// e2eFormDeadline bounds every "wait until the cluster looks like X".
	e2eFormDeadline = 30 * time.Second
	// e2eCmdTimeout bounds one CLI invocation (the CLI's own --timeout is
	// shorter, so a hang shows up as a test failure, not a stuck test).
	e2eCmdTimeout = 20 * time.Second
)

// e2ePool is pool.ranges as written to the config files.
var e2ePoolRanges = []string{"10-15", "20-25"}

// inE2EPool reports whether f is in e2ePoolRanges.
func inE2EPool(f uint32) bool { return (f >= 10 && f <= 15) || (f >= 20 && f <= 25) }

// e2eProc is one `freqd serve` process.
type e2eProc struct {
	name   string
	api    string // API address, host:port
	gossip string // gossip address, host:port
	cmd    *exec.Cmd
	done   chan struct{} // closed once cmd.Wait returned
	err    error         // cmd.Wait's result; read only after done is closed
}

// exited reports whether the process has ended, and how.
func (p *e2eProc) exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// e2eCluster runs the freqd binary: the servers and the CLI.
type e2eCluster struct {
	t     *testing.T
	bin   string
	dir   string
	env   []string
	nodes []*e2eProc
}

// cliResult is the outcome of one CLI run.
type cliResult struct {
	args   []string
	stdout string
	stderr string
	code   int
}

func (r cliResult) String() string {
	return fmt.Sprintf("freqd %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(r.args, " "), r.code, r.stdout, r.stderr)
}

// TestMultiProcessCluster builds the real binary, runs a three-node cluster
// of `freqd serve` processes on loopback, and drives it with the CLI the
// way an operator would: allocate, look up, release, inspect, and take a
// node out with `freqd leave`.
func TestMultiProcessCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("builds freqd and runs a 3-process cluster; skipped with -short")
	}
	start := time.Now()
	dir := t.TempDir() // registered first, so removed after every process is gone
	c := &e2eCluster{t: t, bin: buildFreqd(t, dir), dir: dir, env: envWithoutFreqd()}
	t.Logf("built freqd in %v", time.Since(start).Round(time.Millisecond))

	api, peer, gossip := freeLoopbackPorts(t, 3)
	cfgs := make([]string, 3)
	for i := range cfgs {
		var seeds []string
		for j := range gossip {
			if j != i {
				seeds = append(seeds, loopback(gossip[j]))
			}
		}
		name := fmt.Sprintf("n%d", i+1)
		cfgs[i] = writeFile(t, dir, name+".yaml",
			nodeYAML(name, filepath.Join(dir, "data", name), loopback(api[i]), loopback(peer[i]), loopback(gossip[i]), seeds))
	}

	t.Run("BadConfig", func(t *testing.T) { c.checkBadConfigs(t, cfgs[0]) })

	for i, cfg := range cfgs {
		c.startServe(fmt.Sprintf("n%d", i+1), loopback(api[i]), loopback(gossip[i]), cfg)
	}
	c.waitFormed()
	t.Logf("cluster formed after %v", time.Since(start).Round(time.Millisecond))

	// Everything each step leaves allocated, frequency -> client.
	held := map[uint32]string{}
	if !t.Run("Operations", func(t *testing.T) { c.checkOperations(t, held) }) {
		t.FailNow()
	}
	t.Run("Leave", func(t *testing.T) { c.checkLeave(t, held) })
	t.Logf("total %v", time.Since(start).Round(time.Millisecond))
}

// checkBadConfigs runs serve on broken variants of the valid config file
// good: it must refuse to start and name the offending key.
func (c *e2eCluster) checkBadConfigs(t *testing.T, good string) {
	b, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, old, new string
		want           []string
	}{
		{"UnknownKey", "  seeds:", "  sedes:", []string{"gossip.sedes", "unknown key", "gossip.seeds"}},
		{"ReversedRange", `"10-15"`, `"15-10"`, []string{"pool.ranges[0]", "15-10"}},
		{"BadProfile", "profile: local", "profile: loopback", []string{"gossip.profile", "loopback"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !bytes.Contains(b, []byte(tt.old)) {
				t.Fatalf("config %s has no %q to replace", good, tt.old)
			}
			bad := writeFile(t, c.dir, "bad-"+tt.name+".yaml", strings.Replace(string(b), tt.old, tt.new, 1))
			// A regression that accepts the file would start a node: the
			// timeout turns that into a failure instead of a hang.
			r := c.run(t, 10*time.Second, "serve", "--config", bad)
			if r.code == 0 {
				t.Fatalf("serve accepted a bad config:\n%v", r)
			}
			for _, w := range tt.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr does not mention %q:\n%v", w, r)
				}
			}
		})
	}
}

// checkOperations drives every client command against every node.
func (c *e2eCluster) checkOperations(t *testing.T, held map[uint32]string) {
	for i, n := range c.nodes {
		other := c.nodes[(i+1)%len(c.nodes)]
		id := fmt.Sprintf("c-%d", i+1)

		var g freqdv1.AllocateResponse
		c.okJSON(t, &g, "alloc", "--addr", n.api, "--client", id, "--json")
		f := g.GetFrequency()
		fs := strconv.FormatUint(uint64(f), 10)
		if !inE2EPool(f) {
			t.Fatalf("alloc via %s granted %d, outside %v", n.name, f, e2ePoolRanges)
		}
		if g.GetNode() == "" || g.GetPartition() >= e2ePartitions || g.GetSince() == nil {
			t.Errorf("alloc via %s: incomplete grant %v", n.name, &g)
		}
		for _, m := range c.nodes {
			var h freqdv1.HolderResponse
			c.okJSON(t, &h, "holder", fs, "--addr", m.api, "--json")
			if !h.GetHeld() || h.GetClientId() != id || h.GetFrequency() != f || h.GetPartition() != g.GetPartition() {
				t.Errorf("holder %d via %s = %v; want held by %s in partition %d", f, m.name, &h, id, g.GetPartition())
			}
		}
		if out := c.ok(t, "holder", fs, "--addr", other.api); !strings.Contains(out, fs+" is held by "+id+" since ") {
			t.Errorf("holder %d via %s printed %q", f, other.name, out)
		}

		c.fails(t, []string{"already held"}, "alloc", "--addr", other.api, "--client", "other", "--freq", fs)
		c.fails(t, []string{"held by another client"}, "release", "--addr", other.api, "--client", "wrong", "--freq", fs)
		// A failed release changed nothing.
		var h freqdv1.HolderResponse
		c.okJSON(t, &h, "holder", fs, "--addr", n.api, "--json")
		if !h.GetHeld() || h.GetClientId() != id {
			t.Errorf("after refused alloc/release, holder %d = %v; want held by %s", f, &h, id)
		}

		if out := c.ok(t, "release", "--addr", other.api, "--client", id, "--freq", fs); !strings.HasPrefix(out, fmt.Sprintf("released %d from %s (partition ", f, id)) {
			t.Errorf("release printed %q", out)
		}
		c.fails(t, []string{"not held"}, "release", "--addr", n.api, "--client", id, "--freq", fs)
		for _, m := range c.nodes {
			var h freqdv1.HolderResponse
			c.okJSON(t, &h, "holder", fs, "--addr", m.api, "--json")
			if h.GetHeld() || h.GetClientId() != "" || h.GetFrequency() != f {
				t.Errorf("after release, holder %d via %s = %v; want free", f, m.name, &h)
			}
		}
		if out := c.ok(t, "holder", fs, "--addr", n.api); !strings.HasPrefix(out, fs+" is free (partition ") {
			t.Errorf("holder %d printed %q; want free", f, out)
		}

		c.fails(t, []string{"outside the pool", "99"}, "alloc", "--addr", n.api, "--client", id, "--freq", "99")
		c.fails(t, []string{"invalid client id"}, "alloc", "--addr", n.api, "--client", "")
		c.fails(t, []string{"not a number"}, "holder", "ten", "--addr", n.api)

		// status, human-readable.
		out := c.ok(t, "status", "--addr", n.api)
		for _, want := range []string{
			"pool 10-15,20-25: 12 frequencies in 4 partitions",
			"(as seen by " + n.name + ")",
			"replication factor 3", "4 of 4 partitions writable",
			"n1 ", "n2 ", "n3 ",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("status via %s does not mention %q:\n%s", n.name, want, out)
			}
		}
		if strings.Contains(out, "NOT WRITABLE") {
			t.Errorf("status via %s reports unavailable partitions:\n%s", n.name, out)
		}

		// ring --json.
		var r freqdv1.RingResponse
		c.okJSON(t, &r, "ring", "--addr", n.api, "--json")
		if err := checkRing(&r, []string{"n1", "n2", "n3"}); err != nil {
			t.Errorf("ring via %s: %v\n%v", n.name, err, &r)
		}
		if out := c.ok(t, "ring", "--addr", n.api); strings.Count(out, "\n") != 1+e2ePartitions || !strings.HasPrefix(out, "PARTITION") {
			t.Errorf("ring via %s printed:\n%s", n.name, out)
		}

		// members, human-readable and JSON.
		out = c.ok(t, "members", "--addr", n.api)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 4 || !strings.HasPrefix(lines[0], "NAME") {
			t.Errorf("members via %s printed:\n%s", n.name, out)
		}
		for _, m := range c.nodes {
			if !slices.ContainsFunc(lines, func(l string) bool {
				fl := strings.Fields(l)
				return len(fl) >= 5 && fl[0] == m.name && fl[1] == m.api && fl[2] == m.gossip && fl[3] == "active" && fl[4] == "alive"
			}) {
				t.Errorf("members via %s has no active, alive line for %s at %s:\n%s", n.name, m.name, m.api, out)
			}
		}
		var st freqdv1.StatusResponse
		c.okJSON(t, &st, "members", "--addr", n.api, "--json")
		if st.GetNode() != n.name || len(st.GetMembers()) != 3 {
			t.Errorf("members --json via %s = %v", n.name, &st)
		}

		// alloc, human-readable: this one stays held through the leave.
		hid := fmt.Sprintf("h-%d", i+1)
		out = c.ok(t, "alloc", "--addr", n.api, "--client", hid)
		m := regexp.MustCompile(`^allocated (\d+) to (\S+) \(partition (\d+) on (n\d)\)\n$`).FindStringSubmatch(out)
		if m == nil || m[2] != hid {
			t.Fatalf("alloc printed %q", out)
		}
		hf, _ := strconv.ParseUint(m[1], 10, 32)
		if !inE2EPool(uint32(hf)) {
			t.Fatalf("alloc granted %d, outside the pool", hf)
		}
		held[uint32(hf)] = hid
	}
}

// checkLeave allocates some more, makes n2 leave, and checks that n2's
// process exits on its own and that the survivors kept every allocation.
func (c *e2eCluster) checkLeave(t *testing.T, held map[uint32]string) {
	n1, n2, n3 := c.nodes[0], c.nodes[1], c.nodes[2]
	for i := 0; i < 4; i++ {
		n := c.nodes[i%3]
		var g freqdv1.AllocateResponse
		c.okJSON(t, &g, "alloc", "--addr", n.api, "--client", "keep", "--json")
		if !inE2EPool(g.GetFrequency()) {
			t.Fatalf("alloc granted %d, outside the pool", g.GetFrequency())
		}
		if prev, dup := held[g.GetFrequency()]; dup {
			t.Fatalf("alloc granted %d to keep, but %s holds it", g.GetFrequency(), prev)
		}
		held[g.GetFrequency()] = "keep"
	}

	// The ring has settled (waitFormed): n2 replicates the partitions whose
	// raft group lists it (as a voter, or a learner), and hands off exactly
	// those.
	var r freqdv1.RingResponse
	c.okJSON(t, &r, "ring", "--addr", n2.api, "--json")
	owned := 0
	for _, p := range r.GetPartitions() {
		if slices.ContainsFunc(append(p.GetVoters(), p.GetLearners()...), func(m string) bool { return strings.HasPrefix(m, n2.name+"#") }) {
			owned++
		}
	}

	out := c.ok(t, "leave", "--addr", n2.api)
	m := regexp.MustCompile(`^` + regexp.QuoteMeta(n2.api) + ` handed off (\d+) partitions and left\n$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("leave printed %q", out)
	}
	if m[1] != strconv.Itoa(owned) {
		t.Errorf("leave handed off %s partitions; the ring showed n2 replicating %d", m[1], owned)
	}
	t.Logf("n2 handed off %s partitions", m[1])

	select {
	case <-n2.done:
		if n2.err != nil {
			t.Errorf("n2 exited with %v after leaving; want status 0", n2.err)
		}
	case <-time.After(e2eFormDeadline):
		t.Fatalf("n2 still running %v after leave", e2eFormDeadline)
	}

	// The survivors see n2 gone and hold every partition.
	c.waitFor("n1 and n3 to see n2 gone and every partition held", func() (bool, string) {
		for _, n := range []*e2eProc{n1, n3} {
			var st freqdv1.StatusResponse
			if err := c.tryJSON(&st, "status", "--addr", n.api, "--json"); err != nil {
				return false, err.Error()
			}
			if len(st.GetUnavailable()) > 0 {
				return false, fmt.Sprintf("%s: unavailable %v", n.name, st.GetUnavailable())
			}
			for _, mb := range st.GetMembers() {
				live := mb.GetState() == "active" && mb.GetHealth() == "alive"
				if (mb.GetName() == n2.name) == live {
					return false, fmt.Sprintf("%s sees %s %s/%s", n.name, mb.GetName(), mb.GetState(), mb.GetHealth())
				}
			}
			var r freqdv1.RingResponse
			if err := c.tryJSON(&r, "ring", "--addr", n.api, "--json"); err != nil {
				return false, err.Error()
			}
			if err := checkRing(&r, []string{n1.name, n3.name}); err != nil {
				return false, fmt.Sprintf("%s: %v", n.name, err)
			}
		}
		return true, ""
	})
	out = c.ok(t, "status", "--addr", n1.api)
	if strings.Contains(out, "NOT WRITABLE") || !strings.Contains(out, "(as seen by n1)") {
		t.Errorf("status via n1 after the leave:\n%s", out)
	}
	if l := statusLine(out, n2.name); l == nil || l[3] == "active" {
		t.Errorf("status via n1 after the leave shows n2 as %q:\n%s", l, out)
	}

	// Nothing was lost or changed hands.
	for f, id := range held {
		fs := strconv.FormatUint(uint64(f), 10)
		for _, n := range []*e2eProc{n1, n3} {
			var h freqdv1.HolderResponse
			c.okJSON(t, &h, "holder", fs, "--addr", n.api, "--json")
			if !h.GetHeld() || h.GetClientId() != id || h.GetNode() == n2.name {
				t.Errorf("after the leave, holder %d via %s = %v; want held by %s (not on n2)", f, n.name, &h, id)
			}
		}
	}

	// And the survivors keep allocating, without double grants.
	for _, n := range []*e2eProc{n1, n3} {
		var g freqdv1.AllocateResponse
		c.okJSON(t, &g, "alloc", "--addr", n.api, "--client", "after", "--json")
		if !inE2EPool(g.GetFrequency()) || g.GetNode() == n2.name {
			t.Errorf("alloc via %s after the leave = %v", n.name, &g)
		}
		if prev, dup := held[g.GetFrequency()]; dup {
			t.Errorf("alloc via %s after the leave granted %d, which %s holds", n.name, g.GetFrequency(), prev)
		}
		held[g.GetFrequency()] = "after"
	}
	// A left node answers nothing.
	if r := c.run(t, e2eCmdTimeout, "status", "--addr", n2.api, "--timeout", "2s"); r.code == 0 {
		t.Errorf("status via the left n2 succeeded:\n%v", r)
	}
}

// statusLine returns the fields of the member line for name in the
// human-readable status or members output.
func statusLine(out, name string) []string {
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) >= 5 && f[0] == name {
			return f
		}
	}
	return nil
}

// checkRing checks a ring of the e2e pool on the given live members: every
// partition once, the pool covered exactly, each with an owner that holds
// it and min(factor, members) distinct replicas starting with the owner.
func checkRing(r *freqdv1.RingResponse, members []string) error {
	ps := r.GetPartitions()
	if len(ps) != e2ePartitions {
		return fmt.Errorf("%d partitions, want %d", len(ps), e2ePartitions)
	}
	want := min(e2eFactor, len(members))
	covered := map[uint32]bool{}
	for i, p := range ps {
		if p.GetId() != uint32(i) {
			return fmt.Errorf("partition %d has id %d", i, p.GetId())
		}
		if p.GetFirst() > p.GetLast() {
			return fmt.Errorf("partition %d: range %d-%d", i, p.GetFirst(), p.GetLast())
		}
		for f := p.GetFirst(); f <= p.GetLast(); f++ {
			if !inE2EPool(f) || covered[f] {
				return fmt.Errorf("partition %d: frequency %d outside the pool or in two partitions", i, f)
			}
			covered[f] = true
		}
		if err := checkPartitionConfig(p, members, want); err != nil {
			return fmt.Errorf("partition %d: %w", i, err)
		}
	}
	if len(covered) != 12 {
		return fmt.Errorf("partitions cover %d frequencies, want 12", len(covered))
	}
	return nil
}

// checkPartitionConfig checks one partition of a settled ring: led by its
// owner (leadership moves to the ring's preferred replica, the owner, once
// it is a caught-up voter), with want distinct replicas from members
// starting with the owner, and a writable raft group at a nonzero term
// whose voters are those replicas and whose learners are none. Raft voters
// are not in ring order (the leader comes first), so they are compared as
// sets.
func checkPartitionConfig(p *freqdv1.PartitionInfo, members []string, want int) error {
	reps := p.GetReplicas()
	if p.GetOwner() == "" || p.GetHolder() != p.GetOwner() || len(reps) != want || reps[0] != p.GetOwner() {
		return fmt.Errorf("owner %q leader %q replicas %v; want %d replicas, the owner first and leading it", p.GetOwner(), p.GetHolder(), reps, want)
	}
	for j, name := range reps {
		if !slices.Contains(members, name) || slices.Contains(reps[:j], name) {
			return fmt.Errorf("replicas %v; want distinct members of %v", reps, members)
		}
	}
	voters := voterNames(p.GetVoters())
	if !sameSet(voters, reps) || len(p.GetLearners()) > 0 || p.GetTerm() == 0 || !p.GetWritable() {
		return fmt.Errorf("voters %v learners %v term %d writable %v (%s); want the ring replicas %v as voters, no learners, a term, writable",
			p.GetVoters(), p.GetLearners(), p.GetTerm(), p.GetWritable(), p.GetReason(), reps)
	}
	if voters[0] != p.GetHolder() {
		return fmt.Errorf("voters %v; want the leader %s first", p.GetVoters(), p.GetHolder())
	}
	return nil
}

// voterNames returns the member names of replica ids (name#incarnation),
// in order.
func voterNames(ids []string) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i], _, _ = strings.Cut(id, "#")
	}
	return out
}

// sameSet reports whether a and b hold the same strings, each once.
func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	sa, sb := slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b))
	return slices.Equal(sa, sb) && len(slices.Compact(sa)) == len(a)
}

// waitFormed waits until every node sees three active, alive members, no
// unavailable partition, and a settled ring (every partition held by its
// owner), so later checks do not race the bootstrap handoffs.
func (c *e2eCluster) waitFormed() {
	names := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		names[i] = n.name
	}
	c.waitFor("the cluster to form", func() (bool, string) {
		for _, n := range c.nodes {
			var st freqdv1.StatusResponse
			if err := c.tryJSON(&st, "status", "--addr", n.api, "--json"); err != nil {
				return false, err.Error()
			}
			if len(st.GetMembers()) != len(c.nodes) {
				return false, fmt.Sprintf("%s sees %d members", n.name, len(st.GetMembers()))
			}
			for _, m := range st.GetMembers() {
				if m.GetState() != "active" || m.GetHealth() != "alive" {
					return false, fmt.Sprintf("%s sees %s %s/%s", n.name, m.GetName(), m.GetState(), m.GetHealth())
				}
			}
			if len(st.GetUnavailable()) > 0 {
				return false, fmt.Sprintf("%s: unavailable %v", n.name, st.GetUnavailable())
			}
			var r freqdv1.RingResponse
			if err := c.tryJSON(&r, "ring", "--addr", n.api, "--json"); err != nil {
				return false, err.Error()
			}
			if err := checkRing(&r, names); err != nil {
				return false, fmt.Sprintf("%s: %v", n.name, err)
			}
		}
		return true, ""
	})
}

// waitFor polls cond until it holds, failing the test after
// e2eFormDeadline or as soon as a server process exits.
func (c *e2eCluster) waitFor(what string, cond func() (bool, string)) {
	c.t.Helper()
	deadline := time.Now().Add(e2eFormDeadline)
	last := ""
	for {
		ok, why := cond()
		if ok {
			return
		}
		last = why
		for _, n := range c.nodes {
			if ex, err := n.exited(); ex && err != nil {
				c.t.Fatalf("waiting for %s: %s exited: %v (last: %s)", what, n.name, err, last)
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("waiting for %s: not after %v; last: %s", what, e2eFormDeadline, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// startServe starts `freqd serve --config cfg` with its output in files,
// and registers a cleanup that kills and reaps it.
func (c *e2eCluster) startServe(name, api, gossip, cfg string) {
	t := c.t
	stdout, err := os.Create(filepath.Join(c.dir, name+".stdout"))
	if err != nil {
		t.Fatal(err)
	}
	defer stdout.Close()
	stderr, err := os.Create(filepath.Join(c.dir, name+".stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer stderr.Close()
	cmd := exec.Command(c.bin, "serve", "--config", cfg)
	cmd.Stdout, cmd.Stderr, cmd.Env, cmd.Dir = stdout, stderr, c.env, c.dir
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &e2eProc{name: name, api: api, gossip: gossip, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	c.nodes = append(c.nodes, p)
	t.Cleanup(func() {
		if ex, _ := p.exited(); !ex {
			_ = cmd.Process.Kill()
		}
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			t.Errorf("%s (pid %d) did not exit after SIGKILL", name, cmd.Process.Pid)
		}
		if t.Failed() {
			for _, f := range []string{".stdout", ".stderr"} {
				b, _ := os.ReadFile(filepath.Join(c.dir, name+f))
				t.Logf("==== %s%s ====\n%s", name, f, b)
			}
		}
	})
}

// run runs the CLI and returns what it printed and its exit code. It fails
// the test only when the binary cannot run or outlives timeout.
func (c *e2eCluster) run(t *testing.T, timeout time.Duration, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Stdout, cmd.Stderr, cmd.Env, cmd.Dir = &stdout, &stderr, c.env, c.dir
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	r := cliResult{args: args, stdout: stdout.String(), stderr: stderr.String()}
	if ctx.Err() != nil {
		t.Fatalf("still running after %v:\n%v", timeout, r)
	}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("freqd %s: %v", strings.Join(args, " "), err)
	}
	return r
}

// ok runs the CLI, requires exit 0 and an empty stderr, and returns stdout.
func (c *e2eCluster) ok(t *testing.T, args ...string) string {
	t.Helper()
	r := c.run(t, e2eCmdTimeout, args...)
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("want success:\n%v", r)
	}
	return r.stdout
}

// okJSON runs the CLI, requires success and decodes its JSON into m.
func (c *e2eCluster) okJSON(t *testing.T, m proto.Message, args ...string) {
	t.Helper()
	out := c.ok(t, args...)
	if err := protojson.Unmarshal([]byte(out), m); err != nil {
		t.Fatalf("freqd %s printed no %T: %v\n%s", strings.Join(args, " "), m, err, out)
	}
}

// tryJSON is okJSON for polling: it returns what went wrong instead.
func (c *e2eCluster) tryJSON(m proto.Message, args ...string) error {
	r := c.run(c.t, e2eCmdTimeout, append(args, "--timeout", "2s")...)
	if r.code != 0 {
		return fmt.Errorf("freqd %s: exit %d: %s", strings.Join(args, " "), r.code, strings.TrimSpace(r.stderr))
	}
	if err := protojson.Unmarshal([]byte(r.stdout), m); err != nil {
		return fmt.Errorf("freqd %s: %w", strings.Join(args, " "), err)
	}
	return nil
}

// fails runs the CLI and requires a non-zero exit, nothing on stdout, and
// a one-line "freqd: ..." error on stderr mentioning every string of want.
func (c *e2eCluster) fails(t *testing.T, want []string, args ...string) {
	t.Helper()
	r := c.run(t, e2eCmdTimeout, args...)
	if r.code == 0 || r.stdout != "" || !strings.HasPrefix(r.stderr, "freqd: ") || strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("want a failure with one error line:\n%v", r)
		return
	}
	for _, w := range want {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("stderr does not mention %q:\n%v", w, r)
		}
	}
}

// buildFreqd builds the freqd binary into dir.
func buildFreqd(t *testing.T, dir string) string {
	t.Helper()
	exe := ""
	if runtime.GOOS == "windows" {
		exe = ".exe"
	}
	// The go command of the GOROOT `go env` reports, else the first on
	// PATH.
	goTool := "go"
	if out, err := exec.Command("go", "env", "GOROOT").Output(); err == nil {
		if p := filepath.Join(strings.TrimSpace(string(out)), "bin", "go"+exe); fileExistsE2E(p) {
			goTool = p
		}
	}
	bin := filepath.Join(dir, "freqd"+exe)
	cmd := exec.Command(goTool, "build", "-o", bin, "github.com/freqd/freqd/cmd/freqd")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// fileExistsE2E reports whether a file exists at p.
func fileExistsE2E(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// envWithoutFreqd is the test's environment minus FREQD_* variables, which
// would override the config files.
func envWithoutFreqd() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "FREQD_") {
			env = append(env, kv)
		}
	}
	return env
}

// freeLoopbackPorts returns n API ports and n peer ports (free for TCP) and
// n gossip ports (free for TCP and UDP) on 127.0.0.1, all distinct. They
// are held open until all are chosen, then released for the servers to
// bind.
func freeLoopbackPorts(t *testing.T, n int) (api, peer, gossip []int) {
	t.Helper()
	var held []io.Closer
	defer func() {
		for _, h := range held {
			_ = h.Close()
		}
	}()
	grab := func(udp bool) int {
		for range 100 {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatalf("listen on loopback: %v", err)
			}
			port := l.Addr().(*net.TCPAddr).Port
			if !udp {
				held = append(held, l)
				return port
			}
			u, err := net.ListenPacket("udp", loopback(port))
			if err != nil {
				_ = l.Close()
				continue
			}
			held = append(held, l, u)
			return port
		}
		t.Fatal("found no port free for both TCP and UDP on 127.0.0.1")
		return 0
	}
	for range n {
		api = append(api, grab(false))
		peer = append(peer, grab(false))
		gossip = append(gossip, grab(true))
	}
	return api, peer, gossip
}

func loopback(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// nodeYAML is the config file of one node of the e2e cluster.
func nodeYAML(name, dataDir, api, peer, gossip string, seeds []string) string {
	q := func(ss []string) string {
		var b strings.Builder
		for i, s := range ss {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(strconv.Quote(s))
		}
		return "[" + b.String() + "]"
	}
	return fmt.Sprintf(`# Written by TestMultiProcessCluster.
node:
  name: %s
  data_dir: %s
api:
  addr: %s
peer:
  addr: %s
gossip:
  addr: %s
  seeds: %s
  profile: %s
pool:
  ranges: %s
  partitions: %d
replication:
  factor: %d
cluster:
  bootstrap_expect: 3
log:
  level: info
`, name, strconv.Quote(dataDir), api, peer, gossip, q(seeds), config.ProfileLocal, q(e2ePoolRanges), e2ePartitions, e2eFactor)
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestDevConfigs checks the per-node configs `freqd dev` builds.
func TestDevConfigs(t *testing.T) {
	base := devOptions{
		nodes: 3, pool: []string{"10-15", "20-25"}, partitions: 4, apiPort: 7101, peerPort: 7301, gossipPort: 7947,
		factor: 3, strategy: config.StrategyLocalFirst, profile: config.ProfileLocal, logLevel: config.LevelWarn,
	}
	with := func(f func(*devOptions)) devOptions {
		o := base
		f(&o)
		return o
	}
	tests := []struct {
		name    string
		opts    devOptions
		wantErr []string // substrings of the error; nil means success
	}{
		{"Default", base, nil},
		{"OneNode", with(func(o *devOptions) { o.nodes = 1 }), nil},
		{"MaxNodes", with(func(o *devOptions) { o.nodes = 64; o.gossipPort = 8000 }), nil},
		{"RoundRobinFast", with(func(o *devOptions) {
			o.strategy, o.profile, o.factor, o.partitions = config.StrategyRoundRobin, config.ProfileFast, 1, 0
		}), nil},
		{"ZeroNodes", with(func(o *devOptions) { o.nodes = 0 }), []string{"--nodes 0", "1 to 64"}},
		{"NegativeNodes", with(func(o *devOptions) { o.nodes = -1 }), []string{"--nodes -1"}},
		{"TooManyNodes", with(func(o *devOptions) { o.nodes = 65 }), []string{"--nodes 65", "1 to 64"}},
		{"PortPastMax", with(func(o *devOptions) { o.apiPort = 65534 }), []string{"node n3", "api.addr", "65536"}},
		{"PeerPortPastMax", with(func(o *devOptions) { o.peerPort = 65534 }), []string{"node n3", "peer.addr", "65536"}},
		{"PeerOverlapsAPI", with(func(o *devOptions) { o.peerPort = 7103 }), []string{"--api-port 7101", "--peer-port 7103", "overlap"}},
		{"PeerOverlapsGossip", with(func(o *devOptions) { o.peerPort = 7945 }), []string{"--peer-port 7945", "--gossip-port 7947", "overlap"}},
		{"APIOverlapsGossip", with(func(o *devOptions) { o.gossipPort = 7100 }), []string{"--api-port 7101", "--gossip-port 7100", "overlap"}},
		{"BadProfile", with(func(o *devOptions) { o.profile = "wan" }), []string{"node n1", "gossip.profile"}},
		{"BadRange", with(func(o *devOptions) { o.pool = []string{"15-10"} }), []string{"node n1", "pool.ranges[0]"}},
		{"BadLogLevel", with(func(o *devOptions) { o.logLevel = "loud" }), []string{"node n1", "log.level"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfgs, err := devConfigs(tt.opts)
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("devConfigs succeeded; want an error mentioning %q", tt.wantErr)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not mention %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			checkDevConfigs(t, tt.opts, cfgs)
		})
	}
}

// checkDevConfigs checks the configs devConfigs built from o.
func checkDevConfigs(t *testing.T, o devOptions, cfgs []config.Config) {
	t.Helper()
	if len(cfgs) != o.nodes {
		t.Fatalf("%d configs for %d nodes", len(cfgs), o.nodes)
	}
	ports := map[string]string{} // port -> which node's which address
	names := map[string]bool{}
	var gossip []string
	for _, c := range cfgs {
		gossip = append(gossip, c.Gossip.Addr)
	}
	for i, c := range cfgs {
		if err := c.Validate(); err != nil {
			t.Errorf("config %d does not validate: %v", i, err)
		}
		if want := fmt.Sprintf("n%d", i+1); c.Node.Name != want || names[c.Node.Name] {
			t.Errorf("config %d is named %q; want %q, once", i, c.Node.Name, want)
		}
		names[c.Node.Name] = true
		for _, a := range []struct{ what, addr string }{{"api", c.API.Addr}, {"peer", c.Peer.Addr}, {"gossip", c.Gossip.Addr}} {
			host, port, err := net.SplitHostPort(a.addr)
			if err != nil || host != "127.0.0.1" {
				t.Errorf("%s %s addr %q; want 127.0.0.1:port", c.Node.Name, a.what, a.addr)
				continue
			}
			if prev, dup := ports[port]; dup {
				t.Errorf("%s %s port %s is also %s", c.Node.Name, a.what, port, prev)
			}
			ports[port] = c.Node.Name + " " + a.what
		}
		if want := loopback(o.apiPort + i); c.API.Addr != want {
			t.Errorf("%s api.addr %q; want %q", c.Node.Name, c.API.Addr, want)
		}
		if want := loopback(o.peerPort + i); c.Peer.Addr != want {
			t.Errorf("%s peer.addr %q; want %q", c.Node.Name, c.Peer.Addr, want)
		}
		if want := loopback(o.gossipPort + i); c.Gossip.Addr != want {
			t.Errorf("%s gossip.addr %q; want %q", c.Node.Name, c.Gossip.Addr, want)
		}
		// The seeds are every other node's gossip address, never its own.
		want := slices.Delete(slices.Clone(gossip), i, i+1)
		if !slices.Equal(c.Gossip.Seeds, want) {
			t.Errorf("%s seeds %v; want %v", c.Node.Name, c.Gossip.Seeds, want)
		}
		if slices.Contains(c.Gossip.Seeds, c.Gossip.Addr) {
			t.Errorf("%s seeds itself", c.Node.Name)
		}
		if c.Cluster.BootstrapExpect != o.nodes {
			t.Errorf("%s bootstrap_expect %d; want %d", c.Node.Name, c.Cluster.BootstrapExpect, o.nodes)
		}
		if !slices.Equal(c.Pool.Ranges, o.pool) || c.Pool.Partitions != o.partitions || c.Replication.Factor != o.factor ||
			c.Routing.Strategy != o.strategy || c.Gossip.Profile != o.profile || c.Log.Level != o.logLevel {
			t.Errorf("%s does not carry the options %+v: %+v", c.Node.Name, o, c)
		}
		if c.Node.DataDir == "" || (i > 0 && c.Node.DataDir == cfgs[0].Node.DataDir) {
			t.Errorf("%s data_dir %q; want one of its own", c.Node.Name, c.Node.DataDir)
		}
	}
}
