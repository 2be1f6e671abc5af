package node

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/freqd/freqd"
	"github.com/freqd/freqd/partition"
)

// leaderOf returns the live node leading partition id.
func (c *testCluster) leaderOf(t *testing.T, id int) *Node {
	t.Helper()
	var out *Node
	waitFor(t, 10*time.Second, fmt.Sprintf("a leader of partition %d", id), func() bool {
		for _, n := range c.live() {
			if _, err := n.leaderShard(id); err == nil {
				out = n
				return true
			}
		}
		return false
	})
	return out
}

// grantAt proposes a grant of any frequency in partition id through its
// leader, as a forwarded attempt would: for request with binding gen.
func (c *testCluster) grantAt(t *testing.T, ctx context.Context, id int, client, request string, home bool, gen uint32) (*shardResult, error) {
	t.Helper()
	n := c.leaderOf(t, id)
	s, err := n.leaderShard(id)
	if err != nil {
		return nil, err
	}
	return n.propose(ctx, s, partition.Command{Op: partition.OpGrant, Client: client, Any: true, Request: request, Home: home, Gen: gen, At: time.Now().UnixNano()})
}

// TestStalledAttemptCommitsLate: the first attempt of an allocation with a
// request id, bound to partition q, stalls; the client's retry finds q
// full, q records its refusal, the request is bound to another partition
// and granted there; then q frees a frequency and the stalled attempt
// finally commits in q. It must grant nothing: one request id, at most
// one frequency, ever.
func TestStalledAttemptCommitsLate(t *testing.T) {
	c := startCluster(t, 3, clusterOpts{ranges: []string{"1-8"}, partitions: 4})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n := c.live()[0]
	const client, request = "cl", "req-1"
	home := n.homePartition(client, request)
	q := (home + 1) % 4
	other := (home + 2) % 4

	// Fill the pool: the filler holds every frequency.
	cl := c.client(c.addrs()...)
	byPart := map[int][]uint32{}
	for i := 0; i < 8; i++ {
		g, err := cl.Allocate(ctx, "filler")
		if err != nil {
			t.Fatal(err)
		}
		byPart[int(g.Partition)] = append(byPart[int(g.Partition)], g.Frequency)
	}

	// The first attempt's binding: home -> q at generation 1. The attempt
	// itself stalls (it is not delivered yet).
	b, hg, err := n.note(ctx, home, client, request, q, 1)
	if err != nil || hg != nil || b.part != q || b.gen != 1 {
		t.Fatalf("bind to %d: %+v %v %v", q, b, hg, err)
	}
	// The client retries: home is full and bound to q; q is full, records
	// its refusal of generation 1; the request is bound again, to the
	// one partition that now has a free frequency, and granted there.
	if err := cl.Release(ctx, "filler", byPart[other][0]); err != nil {
		t.Fatal(err)
	}
	g, err := n.Allocate(ctx, client, nil, request, 0)
	if err != nil {
		t.Fatalf("retry: %v", err)
	}
	if int(g.GetPartition()) != other || g.GetFrequency() != byPart[other][0] {
		t.Fatalf("retry granted %d in partition %d; want %d in %d", g.GetFrequency(), g.GetPartition(), byPart[other][0], other)
	}
	// q frees a frequency; only now does the stalled attempt commit there.
	if err := cl.Release(ctx, "filler", byPart[q][0]); err != nil {
		t.Fatal(err)
	}
	r, err := c.grantAt(t, ctx, q, client, request, false, 1)
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(r.res.Err, freqd.ErrNoFrequency) {
		t.Fatalf("the stalled attempt committed late in partition %d and answered %+v; want it refused", q, r.res)
	}
	if h, err := cl.Holder(ctx, byPart[q][0]); err != nil || h.Held {
		t.Fatalf("frequency %d after the late attempt: %+v %v; want it free", byPart[q][0], h, err)
	}
	// A retry now answers the first grant; so does a late copy of the home
	// attempt.
	g2, err := n.Allocate(ctx, client, nil, request, 0)
	if err != nil || g2.GetFrequency() != g.GetFrequency() || !g2.GetDuplicate() {
		t.Fatalf("second retry: %+v %v; want the first grant %d as a duplicate", g2, err, g.GetFrequency())
	}
	r, err = c.grantAt(t, ctx, home, client, request, true, 0)
	if err != nil || !r.res.Noted || int(r.res.Freq) != other {
		t.Fatalf("late home attempt: %+v %v; want it to report the binding to %d", r, err, other)
	}
	// The client holds exactly the one frequency.
	var held []uint32
	for f := uint32(1); f <= 8; f++ {
		h, err := cl.Holder(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		if h.Held && h.ClientID == client {
			held = append(held, f)
		}
	}
	if len(held) != 1 || held[0] != g.GetFrequency() {
		t.Fatalf("client %s holds %v; want exactly [%d]", client, held, g.GetFrequency())
	}
}
