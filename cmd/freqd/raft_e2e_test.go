package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/freqd/freqd/client"
	"github.com/freqd/freqd/config"
	freqdv1 "github.com/freqd/freqd/gen/freqd/v1"
	"github.com/freqd/freqd/gen/freqd/v1/freqdv1connect"
)

// Tests of the raft-replicated cluster as processes: a leader paused with
// SIGSTOP under load, the failover time after kill -9 of a leader, and the
// split between the API port (FreqdService only) and the peer port
// (node-to-node frames, not HTTP).

const (
	// raftFastElection is the longest election timeout of the fast
	// profile (node/config.go, raftTiming: 20 ms ticks, election 10 ticks,
	// randomized by raft in [10, 20) ticks): after it, the followers of a
	// silent leader have campaigned.
	raftFastElection = 400 * time.Millisecond

	// sigstopPause is how long TestSIGSTOPLeaderUnderLoad keeps the leader
	// stopped, sigstopAfter how long the load runs on after SIGCONT.
	sigstopPause = 5 * time.Second
	sigstopAfter = 3 * time.Second
	// sigstopWorkers clients run the load: two start on each node, so
	// those of the two running nodes keep going while the stopped node
	// holds the calls of its two.
	sigstopWorkers = 6
	// sigstopPoll is the interval between two Status polls of each running
	// node during the pause; at most sigstopInflight polls per node are
	// under way at once: Status fans out to every member gossip does not
	// yet call dead, and a call to the stopped node waits until the peer
	// transport gives its connection up (its idle timeout, 1 s), so the
	// polls sent before gossip declared it dead all answer about then.
	sigstopPoll     = 20 * time.Millisecond
	sigstopInflight = 64

	// killRounds is how many leaders TestKillLeaderFailoverTime kills,
	// killPoll the interval of its Status polls, killWritable the bound
	// on a failover (the only timing it asserts: every partition must be
	// writable again at all).
	killRounds   = 10
	killPoll     = 10 * time.Millisecond
	killWritable = 10 * time.Second
)

// mostLeader returns the running node that leads the most partitions by
// the ring (the first in node order on a tie) and the partitions it leads.
func (c *dcCluster) mostLeader() (*dcNode, []uint32) {
	c.t.Helper()
	led := map[string][]uint32{}
	for _, p := range c.ring().GetPartitions() {
		led[p.GetHolder()] = append(led[p.GetHolder()], p.GetId())
	}
	var best *dcNode
	for _, n := range c.nodes {
		if !n.down && (best == nil || len(led[n.name]) > len(led[best.name])) {
			best = n
		}
	}
	if best == nil || len(led[best.name]) == 0 {
		c.t.Fatalf("no running node leads a partition: %v", led)
	}
	return best, led[best.name]
}

// partitionOfFreq maps every frequency of the pool to its partition, from
// the ring.
func (c *dcCluster) partitionOfFreq() map[uint32]uint32 {
	c.t.Helper()
	out := map[uint32]uint32{}
	for _, p := range c.ring().GetPartitions() {
		for f := p.GetFirst(); f <= p.GetLast(); f++ {
			out[f] = p.GetId()
		}
	}
	return out
}

// writableWatch runs probes, each every interval with at most inflight
// calls of it under way, and remembers the first call (of any of them)
// made after since that found every partition writable.
type writableWatch struct {
	since time.Time
	stop  chan struct{}
	wg    sync.WaitGroup

	mu sync.Mutex
	// first is when the first all-writable answer came; via says from
	// where. Guarded by mu.
	first time.Time
	via   string
	// polls and failed count the answers and the failed calls. Guarded
	// by mu.
	polls, failed int
	// last is the last answer that was not all writable, or the last
	// error. Guarded by mu.
	last string
}

// writableProbe asks once whether every partition is writable; via names
// what it asked.
type writableProbe struct {
	via string
	ask func(ctx context.Context) (bool, string, error)
}

// statusProbe asks n's Status (which fans out to every live node).
func statusProbe(n *dcNode) writableProbe {
	return writableProbe{via: "status via " + n.name, ask: func(ctx context.Context) (bool, string, error) {
		st, err := n.cl.Status(ctx)
		if err != nil {
			return false, "", err
		}
		if st.GetWritable() == dcPartitions && len(st.GetUnavailable()) == 0 {
			return true, "", nil
		}
		return false, fmt.Sprintf("%d of %d writable: %v", st.GetWritable(), dcPartitions, st.GetProblems()), nil
	}}
}

// replicasProbe asks every node of ns for its own raft replicas (no fan
// out) and finds every partition with a writable leader among them.
func (c *dcCluster) replicasProbe(ns []*dcNode) writableProbe {
	var names []string
	for _, n := range ns {
		names = append(names, n.name)
	}
	return writableProbe{via: "replicas of " + strings.Join(names, ","), ask: func(ctx context.Context) (bool, string, error) {
		writable := map[uint32]bool{}
		for _, n := range ns {
			res, err := freqdv1connect.NewFreqdServiceClient(c.fo.hc, "http://"+n.api).Replicas(ctx, connect.NewRequest(&freqdv1.ReplicasRequest{}))
			if err != nil {
				return false, "", fmt.Errorf("replicas of %s: %w", n.name, err)
			}
			for _, st := range res.Msg.GetReplicas() {
				if st.GetRole() == "leader" && st.GetWritable() {
					writable[st.GetPartition()] = true
				}
			}
		}
		if len(writable) == dcPartitions {
			return true, "", nil
		}
		return false, fmt.Sprintf("writable leaders for %d of %d partitions", len(writable), dcPartitions), nil
	}}
}

// watchWritable starts running the probes; stop it with halt.
func (c *dcCluster) watchWritable(probes []writableProbe, since time.Time, interval time.Duration, inflight int) *writableWatch {
	w := &writableWatch{since: since, stop: make(chan struct{})}
	c.t.Cleanup(w.halt)
	for _, p := range probes {
		w.wg.Go(func() {
			sem := make(chan struct{}, inflight)
			tick := time.NewTicker(interval)
			defer tick.Stop()
			var calls sync.WaitGroup
			defer calls.Wait()
			for {
				select {
				case <-w.stop:
					return
				case <-tick.C:
				}
				select {
				case sem <- struct{}{}:
				default:
					continue // as many under way as allowed
				}
				calls.Go(func() {
					defer func() { <-sem }()
					w.poll(p)
				})
			}
		})
	}
	return w
}

// poll runs p once.
func (w *writableWatch) poll(p writableProbe) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	sent := time.Now()
	ok, desc, err := p.ask(ctx)
	got := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case err != nil:
		w.failed++
		w.last = fmt.Sprintf("%s: %v", p.via, err)
	case ok:
		w.polls++
		if sent.After(w.since) && (w.first.IsZero() || got.Before(w.first)) {
			w.first, w.via = got, p.via
		}
	default:
		w.polls++
		w.last = p.via + ": " + desc
	}
}

// halt stops the polls and waits for them.
func (w *writableWatch) halt() {
	w.mu.Lock()
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	w.mu.Unlock()
	w.wg.Wait()
}

// result returns when every partition was first seen writable (zero if
// not yet) and by which probe, the counts of answers and failed calls,
// and the last answer that was not all writable.
func (w *writableWatch) result() (first time.Time, via string, polls, failed int, last string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.first, w.via, w.polls, w.failed, w.last
}

// TestSIGSTOPLeaderUnderLoad runs three `freqd serve` processes (factor 3,
// gossip profile fast, fsync none) under closed-loop load from the Go
// client for the whole test, and stops the node that leads the most
// partitions with SIGSTOP for sigstopPause: it keeps its sockets and its
// belief that it leads, but says nothing (a long GC pause, a frozen VM).
// The other two must elect new leaders and serve: Status on them (polled
// every 20 ms) must show every partition writable before the SIGCONT, and
// the load must have acknowledged writes in the window after an election
// timeout, in the stopped node's partitions among others. After SIGCONT
// the resumed node must step down where it was deposed, the load runs on
// for sigstopAfter, and the cluster must settle back (every partition
// writable, led by its owner, every node a voter at its leader's state).
// At the end the history must be linearizable (porcupine) and every
// acknowledged allocation held by its client, read through every node.
// It logs the time from SIGSTOP until every partition was writable again.
func TestSIGSTOPLeaderUnderLoad(t *testing.T) {
	start := time.Now()
	dir, bin, seed := dcSetup(t)
	c := dcNewWith(t, bin, dir, seed, func(cfg *config.Config) { cfg.Node.Fsync = config.FsyncNone })
	c.startAll()
	t.Logf("3 nodes (profile fast, fsync none) formed %v after the start; ids %v", time.Since(start).Round(time.Millisecond), c.ids())
	partOf := c.partitionOfFreq()

	l := c.startLoadN(seed, sigstopWorkers, 0)
	l.waitProgress(300)

	v, led := c.mostLeader()
	var others []*dcNode
	for _, n := range c.nodes {
		if n != v {
			others = append(others, n)
		}
	}
	stopAt := time.Now()
	if err := v.proc.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatalf("SIGSTOP %s: %v", v.name, err)
	}
	// SIGKILL (the cleanups) ends a stopped process too; a SIGCONT first
	// lets it be reaped the same way whatever happens below.
	t.Cleanup(func() { _ = v.proc.cmd.Process.Signal(syscall.SIGCONT) })
	var probes []writableProbe
	for _, n := range others {
		probes = append(probes, statusProbe(n))
	}
	w := c.watchWritable(probes, stopAt, sigstopPoll, sigstopInflight)
	// The raft view alone, without Status's fan-out (which may wait for
	// the stopped node until gossip declares it dead): for the log.
	wr := c.watchWritable([]writableProbe{c.replicasProbe(others)}, stopAt, sigstopPoll, sigstopInflight)
	callsAtStop := l.calls.Load()

	pause := time.NewTimer(sigstopPause)
	for waiting := true; waiting; {
		select {
		case <-pause.C:
			waiting = false
		case <-time.After(foPoll):
			for _, n := range others {
				if ex, err := n.proc.exited(); ex {
					t.Fatalf("%s exited during the pause: %v", n.name, err)
				}
			}
		}
	}
	contAt := time.Now()
	if err := v.proc.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatalf("SIGCONT %s: %v", v.name, err)
	}
	callsInPause := l.calls.Load() - callsAtStop
	w.halt()
	wr.halt()
	first, via, polls, failed, last := w.result()
	if rf, rvia, rpolls, rfailed, rlast := wr.result(); rf.IsZero() {
		t.Logf("the %s never showed a writable leader for every partition during the pause (%d answers, %d failed; last: %s)", rvia, rpolls, rfailed, rlast)
	} else {
		t.Logf("the %s showed a writable leader for every partition %v after the SIGSTOP", rvia, rf.Sub(stopAt).Round(time.Millisecond))
	}
	if first.IsZero() || first.After(contAt) {
		t.Errorf("SIGSTOP %s (leader of partitions %v): the other two did not make every partition writable within the %v pause (%d answers, %d failed polls; last: %s)",
			v.name, led, sigstopPause, polls, failed, last)
	} else {
		took := first.Sub(stopAt)
		t.Logf("SIGSTOP %s (leader of partitions %v): every partition writable again after %v (first seen by %s; %d answers, %d failed polls, every %v on %d nodes)",
			v.name, led, took.Round(time.Millisecond), via, polls, failed, sigstopPoll, len(others))
		t.Logf("sigstop-leader ms: writable-again=%d", took.Milliseconds())
	}

	// The load runs on with the resumed node, then the cluster must settle
	// back.
	after := time.NewTimer(sigstopAfter)
	for waiting := true; waiting; {
		select {
		case <-after.C:
			waiting = false
		case <-time.After(foPoll):
			for _, n := range c.nodes {
				if ex, err := n.proc.exited(); ex {
					t.Fatalf("%s exited after the SIGCONT: %v", n.name, err)
				}
			}
		}
	}
	settle := time.Now()
	c.waitSettled("the cluster to settle back after SIGCONT of " + v.name)
	t.Logf("settled %v after the SIGCONT (%v of load after it first)", time.Since(contAt).Round(time.Millisecond), settle.Sub(contAt).Round(time.Millisecond))

	c.finish(l)
	// Served during the pause: writes acknowledged after an election
	// timeout and before the SIGCONT, also in the partitions the stopped
	// node led.
	window := stopAt.Add(raftFastElection)
	inWindow, inLed := 0, 0
	for _, cl := range l.clients {
		for _, wr := range cl.writes {
			if wr.start.Before(window) || wr.end.After(contAt) {
				continue
			}
			inWindow++
			if slices.Contains(led, partOf[wr.freq]) {
				inLed++
			}
		}
	}
	t.Logf("during the pause: %d calls completed; %d writes acknowledged between SIGSTOP+%v and SIGCONT, %d of them in %s's partitions %v",
		callsInPause, inWindow, raftFastElection, inLed, v.name, led)
	if inWindow == 0 || inLed == 0 {
		t.Errorf("the running nodes acknowledged %d writes (%d in the stopped %s's partitions %v) between an election timeout after SIGSTOP and SIGCONT; want some of each",
			inWindow, inLed, v.name, led)
	}
	c.waitUntil("every replica to hold its leader's state", c.replicasErr)
	t.Logf("total %v, seed %d", time.Since(start).Round(time.Millisecond), seed)
}

// TestKillLeaderFailoverTime measures the failover time of a three-node
// cluster (gossip profile fast) under light load: killRounds times, it
// kills with kill -9 the node that leads the most partitions, polls Status
// on a survivor every killPoll until every partition is writable, then
// restarts the killed node (same data directory, same incarnation) and
// waits until the cluster has settled. It logs each time and the median
// (grep for "failover-after-kill ms:"), and fails only if a partition is
// not writable again within killWritable (no timing floor is asserted).
// The load's history is checked at the end like every multi-process test
// (porcupine, every acknowledged allocation held).
func TestKillLeaderFailoverTime(t *testing.T) {
	start := time.Now()
	dir, bin, seed := dcSetup(t)
	c := dcNew(t, bin, dir, seed)
	c.startAll()
	l := c.startLoadN(seed, 2, 10*time.Millisecond)
	l.waitProgress(100)

	var times []time.Duration
	var ms []int64
	for round := range killRounds {
		v, led := c.mostLeader()
		var survivors []*dcNode
		for _, n := range c.nodes {
			if n != v && !n.down {
				survivors = append(survivors, n)
			}
		}
		s := survivors[c.fo.rng.IntN(len(survivors))]
		killAt := time.Now()
		c.kill(v)
		// The raft view alone (each survivor's own replicas), for the log.
		wr := c.watchWritable([]writableProbe{c.replicasProbe(survivors)}, killAt, killPoll, sigstopInflight)
		var took time.Duration
		var last string
		for {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			st, err := s.cl.Status(ctx)
			cancel()
			now := time.Now()
			if err == nil && st.GetWritable() == dcPartitions && len(st.GetUnavailable()) == 0 {
				took = now.Sub(killAt)
				break
			}
			if err != nil {
				last = err.Error()
			} else {
				last = fmt.Sprintf("%d of %d writable: %v", st.GetWritable(), dcPartitions, st.GetProblems())
			}
			if now.Sub(killAt) > killWritable {
				t.Fatalf("round %d: kill -9 %s (leader of partitions %v): not every partition writable via %s within %v; last: %s\nrings:%s",
					round+1, v.name, led, s.name, killWritable, last, c.fo.rings())
			}
			time.Sleep(killPoll)
		}
		wr.halt()
		raftView := "not seen"
		if rf, _, _, _, _ := wr.result(); !rf.IsZero() {
			raftView = rf.Sub(killAt).Round(time.Millisecond).String()
		}
		times = append(times, took)
		ms = append(ms, took.Milliseconds())
		t.Logf("round %d/%d: kill -9 %s (leader of partitions %v): every partition writable via %s after %v (the survivors' replicas: a writable leader for each after %s)",
			round+1, killRounds, v.name, led, s.name, took.Round(time.Millisecond), raftView)
		c.restart(v)
		c.waitSettled("the restarted " + v.name + " to rejoin as " + v.id)
		l.waitProgress(20)
	}
	sum := foSummarize(config.ProfileFast, times, foSuspicions{}, 0)
	t.Logf("failover-after-kill ms: %v median=%d max=%d (3 nodes, profile fast, %d partitions, factor %d, light load)",
		ms, sum.median.Milliseconds(), sum.max.Milliseconds(), dcPartitions, dcFactor)
	c.finish(l)
	t.Logf("total %v, seed %d", time.Since(start).Round(time.Millisecond), seed)
}

// TestAPIPortHasNoPeerService runs one `freqd serve` node and checks the
// split of its ports: the API port serves FreqdService (a Status call
// answers) and nothing of the old PeerService (its Install and Append
// routes are 404), and the peer port does not speak HTTP (an HTTP request
// gets the connection closed, or an answer that is not HTTP, or nothing).
func TestAPIPortHasNoPeerService(t *testing.T) {
	if testing.Short() {
		t.Skip("builds freqd and runs a node; skipped with -short")
	}
	dir := t.TempDir()
	e := &e2eCluster{t: t, bin: buildFreqd(t, dir), dir: dir, env: envWithoutFreqd()}
	api, peerPort, gossip := freeLoopbackPorts(t, 1)
	cfg := config.Default()
	cfg.Node.Name = "n1"
	cfg.Node.DataDir = filepath.Join(dir, "data", "n1")
	cfg.API.Addr, cfg.Peer.Addr, cfg.Gossip.Addr = loopback(api[0]), loopback(peerPort[0]), loopback(gossip[0])
	cfg.Gossip.Seeds = nil
	cfg.Gossip.Profile = config.ProfileFast
	cfg.Pool.Ranges, cfg.Pool.Partitions = []string{"1-60"}, 4
	cfg.Replication.Factor, cfg.Cluster.BootstrapExpect = 1, 1
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	y, err := cfg.YAML()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(cfg.Node.DataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	e.startServe("n1", cfg.API.Addr, cfg.Gossip.Addr, writeFile(t, dir, "n1.yaml", string(y)))
	hc := &http.Client{Timeout: 5 * time.Second}
	t.Cleanup(hc.CloseIdleConnections)
	cl, err := client.New([]string{cfg.API.Addr}, client.WithHTTPClient(hc), client.WithoutRetry())
	if err != nil {
		t.Fatal(err)
	}
	e.waitFor("the node to create its pool", func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		st, err := cl.Status(ctx)
		if err != nil {
			return false, err.Error()
		}
		if st.GetWritable() != 4 {
			return false, fmt.Sprintf("%d of 4 partitions writable: %v", st.GetWritable(), st.GetProblems())
		}
		return true, ""
	})

	post := func(addr, path string) (int, string, error) {
		resp, err := hc.Post("http://"+addr+path, "application/json", strings.NewReader("{}"))
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return resp.StatusCode, string(b), nil
	}
	// The control: the API port answers FreqdService in JSON.
	if code, body, err := post(cfg.API.Addr, "/freqd.v1.FreqdService/Status"); err != nil || code != http.StatusOK {
		t.Fatalf("POST /freqd.v1.FreqdService/Status on the API port: %d %q, %v; want 200", code, body, err)
	}
	for _, m := range []string{"Install", "Append"} {
		path := "/freqd.v1.PeerService/" + m
		code, body, err := post(cfg.API.Addr, path)
		if err != nil || code != http.StatusNotFound {
			t.Errorf("POST %s on the API port: %d %q, %v; want 404", path, code, body, err)
		}
	}

	// The peer port: an HTTP request by hand, then through an HTTP client.
	conn, err := net.DialTimeout("tcp", cfg.Peer.Addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial the peer port %s: %v", cfg.Peer.Addr, err)
	}
	defer conn.Close()
	req := fmt.Sprintf("POST /freqd.v1.PeerService/Install HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}", cfg.Peer.Addr)
	if _, err := conn.Write([]byte(req)); err != nil {
		t.Logf("peer port: the request could not even be written: %v", err)
	} else {
		_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
		b, err := io.ReadAll(io.LimitReader(conn, 64))
		var ne net.Error
		switch {
		case bytes.HasPrefix(b, []byte("HTTP/")):
			t.Errorf("the peer port answered an HTTP request in HTTP: %q", b)
		case len(b) > 0:
			t.Logf("the peer port answered an HTTP request with %d bytes that are not HTTP (%q), then %v", len(b), b, err)
		case errors.As(err, &ne) && ne.Timeout():
			t.Logf("the peer port did not answer an HTTP request within 3s")
		default:
			t.Logf("the peer port closed the connection of an HTTP request (%v)", err)
		}
	}
	for _, m := range []string{"Install", "Append"} {
		path := "/freqd.v1.PeerService/" + m
		if code, body, err := post(cfg.Peer.Addr, path); err == nil && code == http.StatusOK {
			t.Errorf("POST %s on the peer port: 200 %q; want no HTTP answer", path, body)
		} else {
			t.Logf("POST %s on the peer port: %d, %v", path, code, err)
		}
	}
	if code, body, err := post(cfg.Peer.Addr, "/freqd.v1.FreqdService/Status"); err == nil && code == http.StatusOK {
		t.Errorf("POST /freqd.v1.FreqdService/Status on the peer port: 200 %q; want no HTTP answer", body)
	}
	// And the node still serves after the garbage on its peer port.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := cl.Allocate(ctx, "after-peer-probe"); err != nil {
		t.Errorf("allocate after the probes of the peer port: %v", err)
	}
}
