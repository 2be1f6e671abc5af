package node

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/freqd/freqd"
)

func TestClusterConcurrentClientsLinearizable(t *testing.T) {
	for _, tc := range []struct {
		nodes    int
		strategy Strategy
	}{
		{3, LocalFirst},
		{5, MostFree},
		{3, RoundRobin},
	} {
		t.Run(fmt.Sprintf("%dnodes-%s", tc.nodes, tc.strategy), func(t *testing.T) {
			c := startCluster(t, tc.nodes, clusterOpts{partitions: 4, strategy: tc.strategy})
			w := newWorkload(t, c)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			w.run(ctx, c.addrs(), 8, 120, 1)
			w.check(ctx, c.addrs())
		})
	}
}

func TestClusterExhaustionIsExact(t *testing.T) {
	c := startCluster(t, 3, clusterOpts{partitions: 4})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	addrs := c.addrs()
	got := make(map[uint32]bool)
	for i := 0; i < int(c.layout.Size()); i++ {
		cl := c.client(addrs[i%len(addrs)])
		g, err := cl.Allocate(ctx, fmt.Sprintf("c%d", i))
		if err != nil {
			t.Fatalf("allocation %d of %d: %v", i+1, c.layout.Size(), err)
		}
		if got[g.Frequency] {
			t.Fatalf("frequency %d granted twice", g.Frequency)
		}
		got[g.Frequency] = true
	}
	for _, a := range addrs {
		_, err := c.client(a).Allocate(ctx, "late")
		if !errors.Is(err, freqd.ErrNoFrequency) {
			t.Fatalf("allocate via %s on a full pool = %v, want ErrNoFrequency", a, err)
		}
	}
	// Free one frequency on one node: every node must find it.
	if err := c.client(addrs[0]).Release(ctx, "c5", 0); !errors.Is(err, freqd.ErrOutOfRange) {
		t.Fatalf("release of 0 = %v, want ErrOutOfRange", err)
	}
	var freed uint32
	for f := range got {
		freed = f
		break
	}
	h, err := c.client(addrs[1]).Holder(ctx, freed)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.client(addrs[2]).Release(ctx, h.ClientID, freed); err != nil {
		t.Fatal(err)
	}
	g, err := c.client(addrs[0]).Allocate(ctx, "late")
	if err != nil || g.Frequency != freed {
		t.Fatalf("allocate after freeing %d = %v, %v; want that frequency", freed, g, err)
	}
}

func TestClusterErrors(t *testing.T) {
	c := startCluster(t, 3, clusterOpts{partitions: 4})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	addrs := c.addrs()
	a := c.client(addrs[0])
	if _, err := a.AllocateFrequency(ctx, "alice", 12); err != nil {
		t.Fatal(err)
	}
	long := make([]byte, freqd.MaxClientIDLen+1)
	for i := range long {
		long[i] = 'x'
	}
	for _, addr := range addrs {
		cl := c.client(addr)
		tests := []struct {
			name string
			call func() error
			want error
		}{
			{"release by non-holder", func() error { return cl.Release(ctx, "bob", 12) }, freqd.ErrNotHolder},
			{"release free", func() error { return cl.Release(ctx, "bob", 13) }, freqd.ErrNotHeld},
			{"release free again", func() error { return cl.Release(ctx, "bob", 13) }, freqd.ErrNotHeld},
			{"allocate held", func() error { _, err := cl.AllocateFrequency(ctx, "bob", 12); return err }, freqd.ErrAlreadyHeld},
			{"allocate held by self", func() error { _, err := cl.AllocateFrequency(ctx, "alice", 12); return err }, nil},
			{"allocate out of pool", func() error { _, err := cl.AllocateFrequency(ctx, "bob", 17); return err }, freqd.ErrOutOfRange},
			{"release out of pool", func() error { return cl.Release(ctx, "bob", 1000) }, freqd.ErrOutOfRange},
			{"holder out of pool", func() error { _, err := cl.Holder(ctx, 9); return err }, freqd.ErrOutOfRange},
			{"empty client", func() error { _, err := cl.Allocate(ctx, ""); return err }, freqd.ErrInvalidClientID},
			{"oversized client", func() error { _, err := cl.Allocate(ctx, string(long)); return err }, freqd.ErrInvalidClientID},
			{"control char client", func() error { _, err := cl.Allocate(ctx, "a\x00b"); return err }, freqd.ErrInvalidClientID},
		}
		for _, tc := range tests {
			if err := tc.call(); !isErr(err, tc.want) {
				t.Errorf("via %s: %s = %v, want %v", addr, tc.name, err, tc.want)
			}
		}
		h, err := cl.Holder(ctx, 12)
		if err != nil || !h.Held || h.ClientID != "alice" {
			t.Errorf("via %s: holder(12) = %+v, %v; want alice", addr, h, err)
		}
	}
}

func TestClusterJoinAndLeaveUnderLoad(t *testing.T) {
	c := startCluster(t, 3, clusterOpts{ranges: []string{"1-200"}, partitions: 16})
	w := newWorkload(t, c)
	addrs := c.addrs()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.run(ctx, addrs, 8, 1<<30, 2)
	}()
	waitFor(t, 10*time.Second, "some load", func() bool { return w.ops.Load() > 200 })

	n4 := c.addNode("n4")
	c.waitStable(30 * time.Second)
	if len(n4.led()) == 0 {
		t.Fatal("n4 joined but leads no partition")
	}
	before := w.ops.Load()
	waitFor(t, 10*time.Second, "load after the join", func() bool { return w.ops.Load() > before+200 })

	leaver := c.live()[1]
	lctx, lcancel := context.WithTimeout(context.Background(), 30*time.Second)
	moved, err := leaver.Leave(lctx)
	lcancel()
	if err != nil {
		t.Fatalf("leave %s: %v", leaver.Name(), err)
	}
	if moved == 0 {
		t.Fatalf("%s left handing off no partitions", leaver.Name())
	}
	if err := leaver.Close(); err != nil {
		t.Logf("close %s: %v", leaver.Name(), err)
	}
	c.waitStable(30 * time.Second)
	before = w.ops.Load()
	waitFor(t, 10*time.Second, "load after the leave", func() bool { return w.ops.Load() > before+200 })
	cancel()
	<-done
	cctx, ccancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer ccancel()
	w.check(cctx, c.addrs())
}

// Two clusters that formed apart each have their own copy of the pool;
// letting them merge would hand out every frequency twice. They refuse.
func TestClustersFormedApartDoNotMerge(t *testing.T) {
	a := startCluster(t, 1, clusterOpts{prefix: "a", factor: 1})
	b := startCluster(t, 1, clusterOpts{prefix: "b", factor: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := b.client(b.addrs()[0]).Join(ctx, a.seeds)
	if err == nil {
		t.Fatal("joining a node of another cluster succeeded")
	}
	t.Logf("join refused as expected: %v", err)
	for _, c := range []*testCluster{a, b} {
		n := c.live()[0]
		if got := n.ring.Load().Len(); got != 1 {
			t.Errorf("%s: ring has %d members after the refused merge, want 1", n.Name(), got)
		}
		if k := len(n.led()); k != c.layout.Partitions() {
			t.Errorf("%s leads %d partitions, want all %d", n.Name(), k, c.layout.Partitions())
		}
	}
}
