package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	freqdv1 "github.com/freqd/freqd/gen/freqd/v1"
)

// leaseTTL is the TTL of the leases TestLeaseCLI takes.
const leaseTTL = 2 * time.Second

// leaseFreedDeadline bounds the wait for a lapsed lease to be freed: a TTL
// and much more (the test asserts no upper bound on expiry, only that it
// happens).
const leaseFreedDeadline = leaseTTL + 15*time.Second

// TestLeaseCLI drives leases with the CLI against a three-process cluster,
// in real time: a leased allocation shows its expiry, stays held while
// `freqd keepalive --every` runs and is freed once it stops (never before
// the expiry the last renewal announced); `freqd release-all` frees every
// frequency of one client, leased or not; and a lease renewed over the
// keepalive stream stays held while its partition's raft leader is killed
// with kill -9 and the cluster fails over.
func TestLeaseCLI(t *testing.T) {
	dir, bin, seed := dcSetup(t)
	c := dcNew(t, bin, dir, seed)
	c.startAll()

	// One after the other on the same cluster (not subtests: the cluster's
	// helpers fail the test that made it).
	c.checkKeepAlive(t)
	c.checkReleaseAll(t)
	c.checkLeaseAcrossKill(t)
}

// allocRE is what `freqd alloc --ttl` prints.
var allocRE = regexp.MustCompile(`^allocated (\d+) to (\S+) \(partition (\d+) on (n\d)\), leased for (\S+) until (\S+) unless renewed \(freqd keepalive --client (\S+)\)\n$`)

// holderLeaseRE is what `freqd holder F` prints for a leased frequency.
var holderLeaseRE = regexp.MustCompile(`^(\d+) is held by (\S+) since \S+ \(partition (\d+) on (n\d)\), lease of (\S+) expires (\S+)\n$`)

// checkKeepAlive takes a lease with the CLI, keeps it past twice its TTL
// with `freqd keepalive --every`, stops that and waits for the expiry.
func (c *dcCluster) checkKeepAlive(t *testing.T) {
	e, addr := c.fo.e, c.addrs()
	before := time.Now()
	out := e.ok(t, "alloc", "--addr", addr, "--client", "L", "--ttl", leaseTTL.String())
	after := time.Now()
	m := allocRE.FindStringSubmatch(out)
	if m == nil || m[2] != "L" || m[5] != leaseTTL.String() || m[7] != "L" {
		t.Fatalf("alloc --ttl printed %q", out)
	}
	fs := m[1]
	until, err := time.Parse(time.RFC3339, m[6])
	if err != nil {
		t.Fatalf("alloc --ttl printed an expiry %q: %v", m[6], err)
	}
	// Printed to the second: within a second of the call plus the TTL.
	if until.Before(before.Add(leaseTTL-time.Second)) || until.After(after.Add(leaseTTL+time.Second)) {
		t.Errorf("alloc at %v..%v printed expiry %v; want about %v later", before, after, until, leaseTTL)
	}

	out = e.ok(t, "holder", fs, "--addr", addr)
	hm := holderLeaseRE.FindStringSubmatch(out)
	if hm == nil || hm[1] != fs || hm[2] != "L" || hm[3] != m[3] || hm[5] != leaseTTL.String() {
		t.Fatalf("holder %s printed %q; want held by L in partition %s with a lease of %v", fs, out, m[3], leaseTTL)
	}
	expires, err := time.Parse(time.RFC3339Nano, hm[6])
	if err != nil {
		t.Fatalf("holder printed an expiry %q: %v", hm[6], err)
	}
	if expires.Before(before) || expires.After(time.Now().Add(leaseTTL)) {
		t.Errorf("holder shows expiry %v; the lease was taken at %v..%v for %v", expires, before, after, leaseTTL)
	}
	var h freqdv1.HolderResponse
	e.okJSON(t, &h, "holder", fs, "--addr", addr, "--json")
	if !h.GetHeld() || h.GetClientId() != "L" || h.GetTtl().AsDuration() != leaseTTL || h.GetExpires() == nil {
		t.Errorf("holder --json = %v; want held by L with ttl %v and an expiry", &h, leaseTTL)
	}

	ka := c.startCLI(t, "keepalive-L", "keepalive", "--addr", addr, "--client", "L", "--every", "500ms")
	c.holdUntil(t, fs, "L", after.Add(2*leaseTTL+500*time.Millisecond))
	stopped := time.Now()
	c.stopCLI(t, ka)
	renewals := c.renewals(t, ka, "L")
	if len(renewals) < 4 {
		t.Errorf("keepalive printed %d renewals of L's lease; want one every 500ms for over %v", len(renewals), 2*leaseTTL)
	}
	freed := c.waitFreed(t, fs, "L", renewals)
	t.Logf("%s held by L for %v with keepalive; free %v after keepalive stopped (TTL %v)", fs,
		stopped.Sub(after).Round(time.Millisecond), freed.Sub(stopped).Round(time.Millisecond), leaseTTL)
}

// checkReleaseAll gives client X a leased and a plain frequency, Y one,
// and releases all of X's.
func (c *dcCluster) checkReleaseAll(t *testing.T) {
	e, addr := c.fo.e, c.addrs()
	var x []uint32
	for _, args := range [][]string{{"--ttl", "30s"}, nil, {"--ttl", "1m"}} {
		var g freqdv1.AllocateResponse
		e.okJSON(t, &g, append([]string{"alloc", "--addr", addr, "--client", "X", "--json"}, args...)...)
		x = append(x, g.GetFrequency())
	}
	var y freqdv1.AllocateResponse
	e.okJSON(t, &y, "alloc", "--addr", addr, "--client", "Y", "--ttl", "30s", "--json")

	out := e.ok(t, "release-all", "--addr", addr, "--client", "X")
	m := regexp.MustCompile(`^released (\d+) frequencies of X: ([\d ]+)\n$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("release-all printed %q", out)
	}
	var got []uint32
	for _, s := range strings.Fields(m[2]) {
		f, _ := strconv.ParseUint(s, 10, 32)
		got = append(got, uint32(f))
	}
	slices.Sort(got)
	slices.Sort(x)
	if !slices.Equal(got, x) || m[1] != strconv.Itoa(len(x)) {
		t.Errorf("release-all released %s: %v; X held %v", m[1], got, x)
	}
	for _, f := range x {
		var h freqdv1.HolderResponse
		e.okJSON(t, &h, "holder", strconv.FormatUint(uint64(f), 10), "--addr", addr, "--json")
		if h.GetHeld() {
			t.Errorf("after release-all, %d is held: %v", f, &h)
		}
	}
	var h freqdv1.HolderResponse
	e.okJSON(t, &h, "holder", strconv.FormatUint(uint64(y.GetFrequency()), 10), "--addr", addr, "--json")
	if !h.GetHeld() || h.GetClientId() != "Y" {
		t.Errorf("release-all of X changed Y's %d: %v", y.GetFrequency(), &h)
	}
	if out := e.ok(t, "release-all", "--addr", addr, "--client", "X"); out != "released 0 frequencies of X\n" {
		t.Errorf("a second release-all printed %q", out)
	}
	var r freqdv1.ReleaseAllResponse
	e.okJSON(t, &r, "release-all", "--addr", addr, "--client", "Y", "--json")
	if r.GetReleased() != 1 || !slices.Equal(r.GetFrequencies(), []uint32{y.GetFrequency()}) {
		t.Errorf("release-all --json of Y = %v; want %d", &r, y.GetFrequency())
	}
}

// checkLeaseAcrossKill takes a lease, renews it with `freqd keepalive
// --every` over its stream, and kills its partition's raft leader with kill
// -9: the lease must stay held through the failover and after the node is
// back, then lapse once keepalive stops.
func (c *dcCluster) checkLeaseAcrossKill(t *testing.T) {
	e, addr := c.fo.e, c.addrs()
	var g freqdv1.AllocateResponse
	e.okJSON(t, &g, "alloc", "--addr", addr, "--client", "K", "--ttl", leaseTTL.String(), "--json")
	fs := strconv.FormatUint(uint64(g.GetFrequency()), 10)
	v := c.node(c.partition(g.GetPartition()).GetHolder())
	if v == nil {
		t.Fatalf("partition %d has no leader", g.GetPartition())
	}
	ka := c.startCLI(t, "keepalive-K", "keepalive", "--addr", addr, "--client", "K", "--every", "500ms")
	c.waitUntil("keepalive to renew K's lease", func() error {
		if n := len(c.renewals(t, ka, "K")); n < 2 {
			return fmt.Errorf("%d renewals", n)
		}
		return nil
	})

	c.kill(v)
	killed := time.Now()
	atKill := len(c.renewals(t, ka, "K"))
	// Held at every look, through the failover and 3 TTLs past it.
	var settled time.Time
	deadline := killed.Add(dcDeadline + 3*leaseTTL)
	for settled.IsZero() || time.Since(settled) < 3*leaseTTL {
		c.checkHeldBy(t, fs, "K", false)
		if settled.IsZero() && c.settledErr() == nil {
			settled = time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatalf("after kill -9 %s: the cluster did not settle: %v\nrings:%s", v.name, c.settledErr(), c.fo.rings())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if n := len(c.renewals(t, ka, "K")); n < atKill+4 {
		t.Errorf("keepalive printed %d renewals after kill -9 %s; want one every 500ms", n-atKill, v.name)
	}
	t.Logf("kill -9 %s (leader of partition %d, holding K's %s): failed over in %v; the lease stayed held %v past that",
		v.name, g.GetPartition(), fs, settled.Sub(killed).Round(time.Millisecond), 3*leaseTTL)

	c.restart(v)
	c.waitSettled(v.name + " to come back")
	c.checkHeldBy(t, fs, "K", true)

	stopped := time.Now()
	c.stopCLI(t, ka)
	freed := c.waitFreed(t, fs, "K", c.renewals(t, ka, "K"))
	t.Logf("K's %s free %v after keepalive stopped", fs, freed.Sub(stopped).Round(time.Millisecond))
}

// checkHeldBy checks that f is held by id: through the cluster, tolerating
// errors (a failover), or through every running node, requiring answers.
func (c *dcCluster) checkHeldBy(t *testing.T, fs, id string, everyNode bool) {
	t.Helper()
	f, _ := strconv.ParseUint(fs, 10, 32)
	via := []*dcNode{nil}
	if everyNode {
		via = slices.DeleteFunc(slices.Clone(c.nodes), func(n *dcNode) bool { return n.down })
	}
	for _, n := range via {
		cl, name := c.all, "the cluster"
		if n != nil {
			cl, name = n.rcl, n.name
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		h, err := cl.Holder(ctx, uint32(f))
		cancel()
		switch {
		case err != nil && everyNode:
			t.Errorf("holder %s via %s: %v", fs, name, err)
		case err != nil:
			t.Logf("holder %s via %s: %v", fs, name, err)
		case !h.Held || h.ClientID != id:
			t.Fatalf("holder %s via %s: held %v by %q; want held by %s (lease)", fs, name, h.Held, h.ClientID, id)
		}
	}
}

// holdUntil checks that f stays held by id until the time end, looking
// every 250ms.
func (c *dcCluster) holdUntil(t *testing.T, fs, id string, end time.Time) {
	t.Helper()
	for time.Now().Before(end) {
		c.checkHeldBy(t, fs, id, true)
		time.Sleep(250 * time.Millisecond)
	}
}

// waitFreed polls until f is free and returns when it saw that. It fails
// if f was freed before the expiry the last renewal announced (a lease
// must never lapse early) or not within leaseFreedDeadline.
func (c *dcCluster) waitFreed(t *testing.T, fs, id string, renewals []leaseRenewal) time.Time {
	t.Helper()
	f, _ := strconv.ParseUint(fs, 10, 32)
	var last time.Time
	for _, r := range renewals {
		if r.expires.After(last) {
			last = r.expires
		}
	}
	deadline := time.Now().Add(leaseFreedDeadline)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		h, err := c.all.Holder(ctx, uint32(f))
		cancel()
		seen := time.Now()
		switch {
		case err != nil:
			t.Logf("holder %s: %v", fs, err)
		case !h.Held:
			// The leader announced the expiry by its wall clock; this
			// host's is the same clock. Allow rounding.
			if seen.Before(last.Add(-50 * time.Millisecond)) {
				t.Errorf("%s freed at %v, before the expiry %v the last renewal announced", fs, seen, last)
			}
			c.logExpiry(t, id)
			return seen
		}
		if seen.After(deadline) {
			t.Fatalf("%s still held %v after keepalive stopped: %+v", fs, leaseFreedDeadline, h)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// logExpiry logs the leader's account of the expiry of id's leases:
// after how long without renewal it released them.
func (c *dcCluster) logExpiry(t *testing.T, id string) {
	t.Helper()
	for _, n := range c.nodes {
		if n.down {
			continue
		}
		for _, line := range c.logLines(n, `msg="leases expired"`) {
			if slogAttr(line, "client") == id {
				t.Logf("%s expired %s's leases in partition %s %s after the last renewal it saw", n.name, id, slogAttr(line, "partition"), slogAttr(line, "after"))
			}
		}
	}
}

// startCLI starts the CLI in the background, its output in <name>.stdout
// and .stderr, and registers a cleanup that kills and reaps it.
func (c *dcCluster) startCLI(t *testing.T, name string, args ...string) *e2eProc {
	t.Helper()
	e := c.fo.e
	stdout, err := os.Create(filepath.Join(e.dir, name+".stdout"))
	if err != nil {
		t.Fatal(err)
	}
	defer stdout.Close()
	stderr, err := os.Create(filepath.Join(e.dir, name+".stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer stderr.Close()
	cmd := exec.Command(e.bin, args...)
	cmd.Stdout, cmd.Stderr, cmd.Env, cmd.Dir = stdout, stderr, e.env, e.dir
	if err := cmd.Start(); err != nil {
		t.Fatalf("freqd %s: %v", strings.Join(args, " "), err)
	}
	p := &e2eProc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		if ex, _ := p.exited(); !ex {
			_ = cmd.Process.Kill()
		}
		<-p.done
		if t.Failed() {
			for _, f := range []string{".stdout", ".stderr"} {
				b, _ := os.ReadFile(filepath.Join(e.dir, name+f))
				t.Logf("==== %s%s ====\n%s", name, f, b)
			}
		}
	})
	return p
}

// stopCLI interrupts a background CLI (SIGINT) and requires a clean exit.
func (c *dcCluster) stopCLI(t *testing.T, p *e2eProc) {
	t.Helper()
	if err := p.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatalf("interrupt %s: %v", p.name, err)
	}
	select {
	case <-p.done:
		if p.err != nil {
			t.Errorf("%s exited with %v after SIGINT; want status 0", p.name, p.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("%s still running 10s after SIGINT", p.name)
	}
}

// leaseRenewal is one line of `freqd keepalive --every`.
type leaseRenewal struct {
	leased, partitions int
	expires            time.Time // zero if none
	unreached          string
}

// renewalRE matches a line of `freqd keepalive` (clientcmds.go).
var renewalRE = regexp.MustCompile(`^renewed (\d+) leased frequencies of (\S+) in (\d+) partitions(?:, earliest expiry (\S+))?(?:; partitions (\[[\d ]*\]) not reached \(retry within the TTL\))?$`)

// parseRenewal parses one line of `freqd keepalive` for client id.
func parseRenewal(line, id string) (leaseRenewal, error) {
	m := renewalRE.FindStringSubmatch(line)
	if m == nil || m[2] != id {
		return leaseRenewal{}, fmt.Errorf("not a renewal of %s: %q", id, line)
	}
	var r leaseRenewal
	var err error
	if r.leased, err = strconv.Atoi(m[1]); err != nil {
		return leaseRenewal{}, fmt.Errorf("%q: %w", line, err)
	}
	if r.partitions, err = strconv.Atoi(m[3]); err != nil {
		return leaseRenewal{}, fmt.Errorf("%q: %w", line, err)
	}
	if m[4] != "" {
		if r.expires, err = time.Parse(time.RFC3339Nano, m[4]); err != nil {
			return leaseRenewal{}, fmt.Errorf("%q: %w", line, err)
		}
	}
	r.unreached = m[5]
	return r, nil
}

// renewals reads the renewals a background keepalive for id printed so
// far; each must renew exactly one lease.
func (c *dcCluster) renewals(t *testing.T, p *e2eProc, id string) []leaseRenewal {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(c.fo.e.dir, p.name+".stdout"))
	if err != nil {
		t.Fatal(err)
	}
	var out []leaseRenewal
	lines := strings.Split(string(b), "\n")
	for i, line := range lines {
		if line == "" || i == len(lines)-1 {
			continue // the last line may be half written
		}
		r, err := parseRenewal(line, id)
		if err != nil {
			t.Fatalf("%s: %v", p.name, err)
		}
		if r.unreached == "" && (r.leased != 1 || r.partitions != 1 || r.expires.IsZero()) {
			t.Errorf("%s: %q; want one lease renewed, with its expiry", p.name, line)
		}
		out = append(out, r)
	}
	return out
}

// FuzzParseRenewal checks that parseRenewal never panics and that what it
// accepts has a well-formed shape.
func FuzzParseRenewal(f *testing.F) {
	f.Add("renewed 1 leased frequencies of L in 1 partitions, earliest expiry 2026-11-21T08:59:18.245Z", "L")
	f.Add("renewed 0 leased frequencies of K in 0 partitions; partitions [3 4] not reached (retry within the TTL)", "K")
	f.Add("renewed 99999999999999999999 leased frequencies of L in 1 partitions", "L")
	f.Fuzz(func(t *testing.T, line, id string) {
		r, err := parseRenewal(line, id)
		if err != nil {
			return
		}
		if r.leased < 0 || r.partitions < 0 || !strings.Contains(line, " of "+id+" ") {
			t.Fatalf("parseRenewal(%q, %q) = %+v", line, id, r)
		}
	})
}
