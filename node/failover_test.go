package node

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/freqd/freqd"
	"github.com/freqd/freqd/client"
)

// A node crashes under load; the partitions it led are taken over by the
// ring's new owners from a majority of their replicas: every acknowledged
// allocation and release survives, the history stays linearizable, and
// every partition is writable again.
func TestCrashFailoverLosesNothing(t *testing.T) {
	c := startCluster(t, 5, clusterOpts{ranges: []string{"1-160"}, partitions: 16})
	w := newWorkload(t, c)
	w.tolerant = true
	addrs := c.addrs()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.run(ctx, addrs, 8, 1<<30, 3)
	}()
	waitFor(t, 10*time.Second, "some load", func() bool { return w.ops.Load() > 300 })

	live := c.live()
	victim := live[2]
	if len(victim.led()) == 0 {
		t.Fatal("victim leads no partition")
	}
	crashed := time.Now()
	if err := victim.Close(); err != nil { // a crash, as far as the others can tell
		t.Logf("close: %v", err)
	}
	c.forget(victim)
	c.waitStable(30 * time.Second)
	t.Logf("every partition writable again %v after the crash (profile local)", time.Since(crashed).Round(time.Millisecond))
	before := w.ops.Load()
	waitFor(t, 10*time.Second, "load after the failover", func() bool { return w.ops.Load() > before+300 })
	cancel()
	<-done
	cctx, ccancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer ccancel()
	w.check(cctx, c.addrs())
}

// With fewer live replicas than a majority of the replication factor, a
// partition grants nothing, and Status says which and why.
func TestMinorityGrantsNothing(t *testing.T) {
	c := startCluster(t, 3, clusterOpts{ranges: []string{"1-30"}, partitions: 3, quickDetect: true})
	live := c.live()
	survivor := live[0]
	for _, n := range live[1:] {
		if err := n.Close(); err != nil {
			t.Logf("close: %v", err)
		}
		c.forget(n)
	}
	cl, err := client.New([]string{survivor.APIAddr()}, client.WithoutRetry())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	waitFor(t, 20*time.Second, "the survivor to see the others dead", func() bool { return survivor.ring.Load().Len() == 1 })
	for _, sp := range c.layout.Spans() {
		_, err := cl.AllocateFrequency(ctx, "x", sp.First)
		if !errors.Is(err, freqd.ErrUnavailable) {
			t.Errorf("allocate %d on a lone survivor of factor 3 = %v, want ErrUnavailable", sp.First, err)
		}
	}
	if _, err := cl.Allocate(ctx, "y"); !errors.Is(err, freqd.ErrUnavailable) && !errors.Is(err, freqd.ErrOutcomeUnknown) {
		t.Errorf("allocate any on a lone survivor = %v, want unavailable", err)
	}
	st := survivor.Status(ctx)
	if st.GetWritable() != 0 || len(st.GetProblems()) != c.layout.Partitions() {
		t.Fatalf("status: %d writable, problems %v; want 0 writable and every partition explained", st.GetWritable(), st.GetProblems())
	}
	for _, p := range st.GetProblems() {
		if p.GetReason() == "" {
			t.Errorf("partition %d: no reason given", p.GetPartition())
		}
		t.Logf("partition %d: %s", p.GetPartition(), p.GetReason())
	}
}

// A retried allocation with the same request id returns the first grant,
// also when the home partition is full (the grant was made elsewhere after
// a note), and also after the granting partition's primary crashed.
func TestRequestIDDeduplicates(t *testing.T) {
	c := startCluster(t, 4, clusterOpts{ranges: []string{"1-40"}, partitions: 4, quickDetect: true})
	cl := c.client(c.addrs()...)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	n0 := c.live()[0]

	g1, err := cl.AllocateWithID(ctx, "dup", "req-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	g2, err := cl.AllocateWithID(ctx, "dup", "req-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if g2.Frequency != g1.Frequency || !g2.Duplicate || g1.Duplicate {
		t.Fatalf("retry granted %+v after %+v; want the same frequency marked duplicate", g2, g1)
	}
	if g3, err := cl.AllocateWithID(ctx, "dup", "req-2", nil); err != nil || g3.Frequency == g1.Frequency {
		t.Fatalf("a new request id got %+v, %v; want another frequency", g3, err)
	}

	// Fill the home partition of ("dup", "req-full"), then allocate.
	home := n0.homePartition("dup", "req-full")
	sp, _ := c.layout.Span(home)
	for f := sp.First; f <= sp.Last; f++ {
		if _, err := cl.AllocateFrequency(ctx, "filler", f); err != nil && !errors.Is(err, freqd.ErrAlreadyHeld) {
			t.Fatal(err)
		}
	}
	g4, err := cl.AllocateWithID(ctx, "dup", "req-full", nil)
	if err != nil {
		t.Fatal(err)
	}
	if g4.Partition == uint32(home) {
		t.Fatalf("granted %d in the full home partition %d", g4.Frequency, home)
	}
	g5, err := cl.AllocateWithID(ctx, "dup", "req-full", nil)
	if err != nil || g5.Frequency != g4.Frequency || !g5.Duplicate {
		t.Fatalf("retry via the note granted %+v, %v; want %d marked duplicate", g5, err, g4.Frequency)
	}

	// Crash the primary of the partition that granted g4, then retry.
	var victim *Node
	for _, n := range c.live() {
		if n.leads(int(g4.Partition)) {
			victim = n
		}
	}
	if victim == nil {
		t.Fatal("no primary found for the granting partition")
	}
	if err := victim.Close(); err != nil {
		t.Logf("close: %v", err)
	}
	c.forget(victim)
	c.waitStable(30 * time.Second)
	cl2 := c.client(c.addrs()...)
	g6, err := cl2.AllocateWithID(ctx, "dup", "req-full", nil)
	if err != nil || g6.Frequency != g4.Frequency || !g6.Duplicate {
		t.Fatalf("retry after the failover granted %+v, %v; want %d marked duplicate", g6, err, g4.Frequency)
	}
	if !strings.Contains(g6.Node, "n") {
		t.Fatalf("odd node %q", g6.Node)
	}
}
