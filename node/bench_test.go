package node

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
)

// BenchmarkAllocateRelease measures one allocate-then-release of a given
// frequency, sent to the node holding its partition ("owner") and to a
// node that must forward it one hop ("forwarded"). Each iteration is two
// calls. Compare the two with benchstat over -count runs.
func BenchmarkAllocateRelease(b *testing.B) {
	c := startCluster(b, 3, clusterOpts{ranges: []string{"1-100000"}, partitions: 12})
	live := c.live()
	holder := live[0]
	led := holder.led()
	if len(led) == 0 {
		b.Fatal("first node leads no partition")
	}
	sp, _ := c.layout.Span(led[0])
	f := sp.First
	var other *Node
	for _, n := range live[1:] {
		other = n
	}
	for _, bc := range []struct {
		name string
		addr string
	}{
		{"owner", holder.APIAddr()},
		{"forwarded", other.APIAddr()},
	} {
		b.Run(bc.name, func(b *testing.B) {
			cl := c.client(bc.addr)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := cl.AllocateFrequency(ctx, "bench", f); err != nil {
					b.Fatal(err)
				}
				if err := cl.Release(ctx, "bench", f); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkAllocateReleaseParallel measures allocate-any + release pairs
// from many concurrent clients (b.SetParallelism goroutines per CPU), all
// entering at one node, on a 3-node cluster with replication factor 3. The
// cmds/append metric is the average number of commands one Append carried
// to a follower: group commit makes it grow with concurrency.
func BenchmarkAllocateReleaseParallel(b *testing.B) {
	for _, par := range []int{1, 16} {
		b.Run(fmt.Sprintf("clients=%d", par*runtime.GOMAXPROCS(0)), func(b *testing.B) {
			c := startCluster(b, 3, clusterOpts{ranges: []string{"1-100000"}, partitions: 12})
			cl := c.client(c.addrs()...)
			ctx := context.Background()
			var id atomic.Int64
			a0, c0 := c.replicationStats()
			b.SetParallelism(par)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				client := fmt.Sprintf("bench-%d", id.Add(1))
				for pb.Next() {
					g, err := cl.Allocate(ctx, client)
					if err != nil {
						b.Error(err)
						return
					}
					if err := cl.Release(ctx, client, g.Frequency); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			a1, c1 := c.replicationStats()
			if a1 > a0 {
				b.ReportMetric(float64(c1-c0)/float64(a1-a0), "cmds/append")
			}
		})
	}
}

// replicationStats sums ReplicationStats over the live nodes.
func (c *testCluster) replicationStats() (appends, commands uint64) {
	for _, n := range c.live() {
		a, k := n.ReplicationStats()
		appends += a
		commands += k
	}
	return appends, commands
}
