package node

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/freqd/freqd"
	"github.com/freqd/freqd/client"
)

// fakeClock is real time plus an offset the test advances: leases are
// decided against it, so a test can jump over a TTL at once.
type fakeClock struct{ off atomic.Int64 }

func (c *fakeClock) now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *fakeClock) advance(d time.Duration) { c.off.Add(int64(d)) }

// holderOf reads who holds f (through any node).
func holderOf(t *testing.T, cl *client.Client, f uint32) client.Holding {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h, err := cl.Holder(ctx, f)
	if err != nil {
		t.Fatalf("holder of %d: %v", f, err)
	}
	return h
}

// stillHeld checks for a while (several lease ticks) that f stays held by
// client.
func stillHeld(t *testing.T, cl *client.Client, f uint32, client string) {
	t.Helper()
	for range 5 {
		if h := holderOf(t, cl, f); !h.Held || h.ClientID != client {
			t.Fatalf("%d: held %v by %q; want still held by %s", f, h.Held, h.ClientID, client)
		}
		time.Sleep(2 * leaseTick)
	}
}

// waitFreed waits until f is free.
func waitFreed(t *testing.T, cl *client.Client, f uint32) {
	t.Helper()
	waitFor(t, 10*time.Second, "the lease to expire", func() bool { return !holderOf(t, cl, f).Held })
}

func TestLeaseExpiryAndRenewal(t *testing.T) {
	clk := &fakeClock{}
	c := startCluster(t, 3, clusterOpts{now: clk.now})
	cl := c.client(c.addrs()...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	leased, err := cl.AllocateLease(ctx, "lc", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if leased.TTL != 10*time.Second || leased.Expires.Before(leased.Since) {
		t.Fatalf("grant %+v: want a 10s lease expiring after its grant", leased)
	}
	plain, err := cl.Allocate(ctx, "lc")
	if err != nil {
		t.Fatal(err)
	}
	h := holderOf(t, cl, leased.Frequency)
	if h.TTL != 10*time.Second || h.Expires.IsZero() {
		t.Fatalf("holder %+v: want the lease shown", h)
	}
	if h := holderOf(t, cl, plain.Frequency); h.TTL != 0 || !h.Expires.IsZero() {
		t.Fatalf("holder of an unleased grant %+v: want no lease", h)
	}

	clk.advance(6 * time.Second)
	r, err := cl.KeepAlive(ctx, "lc")
	if err != nil {
		t.Fatal(err)
	}
	if r.Leased != 1 || r.Partitions != 1 || len(r.Unconfirmed) != 0 {
		t.Fatalf("keepalive %+v: want 1 leased frequency in 1 partition, all confirmed", r)
	}
	clk.advance(6 * time.Second) // 12s after the grant, 6s after the renewal
	stillHeld(t, cl, leased.Frequency, "lc")
	clk.advance(5 * time.Second) // 11s after the renewal
	waitFreed(t, cl, leased.Frequency)
	if h := holderOf(t, cl, plain.Frequency); !h.Held || h.ClientID != "lc" {
		t.Fatalf("the unleased grant %d was released with the lease: %+v", plain.Frequency, h)
	}
	r, err = cl.KeepAlive(ctx, "lc")
	if err != nil || r.Leased != 0 {
		t.Fatalf("keepalive after expiry: %+v, %v; want nothing leased", r, err)
	}
}

func TestLeaseStreamKeepsAlive(t *testing.T) {
	clk := &fakeClock{}
	c := startCluster(t, 3, clusterOpts{now: clk.now})
	cl := c.client(c.addrs()...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	g, err := cl.AllocateLease(ctx, "ls", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	lctx, stop := context.WithCancel(ctx)
	renewals := make(chan client.Renewal, 100)
	done := make(chan error, 1)
	go func() {
		done <- cl.KeepAliveLoop(lctx, "ls", 20*time.Millisecond, func(r client.Renewal, err error) {
			if err == nil {
				select {
				case renewals <- r:
				default:
				}
			}
		})
	}()
	// Time jumps 2s per step, 5 steps: 10s in all, but never 5s without a
	// renewal.
	for range 5 {
		n := len(renewals)
		waitFor(t, 5*time.Second, "a renewal", func() bool { return len(renewals) > n })
		clk.advance(2 * time.Second)
		time.Sleep(50 * time.Millisecond)
		n = len(renewals)
		waitFor(t, 5*time.Second, "a renewal", func() bool { return len(renewals) > n })
	}
	stillHeld(t, cl, g.Frequency, "ls")
	stop()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("KeepAliveLoop ended with %v; want context.Canceled", err)
	}
	clk.advance(6 * time.Second)
	waitFreed(t, cl, g.Frequency)
}

func TestReleaseAll(t *testing.T) {
	c := startCluster(t, 3, clusterOpts{})
	cl := c.client(c.addrs()...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	want := map[uint32]bool{}
	for i := range 6 {
		var g client.Grant
		var err error
		if i%2 == 0 {
			g, err = cl.AllocateLease(ctx, "ra", time.Minute)
		} else {
			g, err = cl.Allocate(ctx, "ra")
		}
		if err != nil {
			t.Fatal(err)
		}
		want[g.Frequency] = true
	}
	other, err := cl.Allocate(ctx, "other")
	if err != nil {
		t.Fatal(err)
	}
	freed, err := cl.ReleaseAll(ctx, "ra")
	if err != nil {
		t.Fatal(err)
	}
	if len(freed) != len(want) {
		t.Fatalf("released %v; want %d frequencies", freed, len(want))
	}
	for _, f := range freed {
		if !want[f] {
			t.Fatalf("released %d, not held by ra", f)
		}
		if h := holderOf(t, cl, f); h.Held {
			t.Fatalf("%d still held by %s after ReleaseAll", f, h.ClientID)
		}
	}
	if h := holderOf(t, cl, other.Frequency); !h.Held || h.ClientID != "other" {
		t.Fatalf("another client's frequency changed: %+v", h)
	}
	again, err := cl.ReleaseAll(ctx, "ra")
	if err != nil || len(again) != 0 {
		t.Fatalf("second ReleaseAll: %v, %v; want nothing, no error", again, err)
	}
	if _, err := cl.ReleaseAll(ctx, ""); !errors.Is(err, freqd.ErrInvalidClientID) {
		t.Fatalf("ReleaseAll of an empty client id: %v", err)
	}
}

func TestLeaseBadTTL(t *testing.T) {
	c := startCluster(t, 1, clusterOpts{factor: 1})
	cl := c.client(c.addrs()...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, ttl := range []time.Duration{time.Millisecond, -time.Second, 25 * time.Hour, 1500*time.Millisecond + time.Microsecond} {
		if _, err := cl.AllocateLease(ctx, "bad", ttl); !errors.Is(err, freqd.ErrInvalidArgument) {
			t.Errorf("ttl %v: %v; want ErrInvalidArgument", ttl, err)
		}
	}
}

// primaryOf returns the live node that is primary of the partition of f.
func (c *testCluster) primaryOf(t *testing.T, f uint32) *Node {
	t.Helper()
	id, ok := c.layout.Lookup(f)
	if !ok {
		t.Fatalf("%d outside the pool", f)
	}
	for _, n := range c.live() {
		if n.leads(id) {
			return n
		}
	}
	t.Fatalf("partition %d has no primary", id)
	return nil
}

// TestLeaseAcrossFailover: a renewed lease outlives its primary's crash
// (the new primary starts it afresh: never early), and a lease that lapses
// during the failover is still expired, a full TTL after the takeover.
func TestLeaseAcrossFailover(t *testing.T) {
	clk := &fakeClock{}
	c := startCluster(t, 3, clusterOpts{now: clk.now, quickDetect: true, ranges: []string{"1-60"}, partitions: 6})
	cl := c.client(c.addrs()...)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	live, err := cl.AllocateLease(ctx, "alive", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// A frequency in the same partition for a client that will die.
	id, _ := c.layout.Lookup(live.Frequency)
	sp, _ := c.layout.Span(id)
	var dead client.Grant
	for f := sp.First; f <= sp.Last; f++ {
		if f != live.Frequency {
			if dead, err = cl.AllocateWith(ctx, client.AllocateRequest{ClientID: "dead", Frequency: &f, TTL: 10 * time.Second}); err == nil {
				break
			}
		}
	}
	if dead.Frequency == 0 {
		t.Fatalf("no second frequency in partition %d: %v", id, err)
	}

	clk.advance(8 * time.Second)
	if _, err := cl.KeepAlive(ctx, "alive"); err != nil {
		t.Fatal(err)
	}
	old := c.primaryOf(t, live.Frequency)
	t.Logf("crashing %s, primary of partition %d", old.Name(), id)
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	c.forget(old)
	cl = c.client(c.addrs()...)
	c.waitStable(30 * time.Second)
	// 8s after the grant of "dead", 0s after the renewal of "alive": the
	// new primary started both afresh at its takeover.
	clk.advance(5 * time.Second) // dead: 13s after its grant, > its TTL
	stillHeld(t, cl, dead.Frequency, "dead")
	stillHeld(t, cl, live.Frequency, "alive")
	if _, err := cl.KeepAlive(ctx, "alive"); err != nil {
		t.Fatal(err)
	}
	clk.advance(6 * time.Second) // 11s after the takeover
	waitFreed(t, cl, dead.Frequency)
	stillHeld(t, cl, live.Frequency, "alive")
}
