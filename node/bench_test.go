package node

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/freqd/freqd/store"
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
// entering at one node, on a 3-node cluster with replication factor 3.
func BenchmarkAllocateReleaseParallel(b *testing.B) {
	for _, par := range []int{1, 16} {
		b.Run(fmt.Sprintf("clients=%d", par*runtime.GOMAXPROCS(0)), func(b *testing.B) {
			c := startCluster(b, 3, clusterOpts{ranges: []string{"1-100000"}, partitions: 12})
			cl := c.client(c.addrs()...)
			ctx := context.Background()
			var id atomic.Int64
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
		})
	}
}

// BenchmarkAllocateReleaseDurable measures allocate-any + release pairs
// from 64 concurrent clients on a 3-node cluster with replication factor 3
// and a data directory per node, for each fsync policy, in one run so the
// policies compare on the same machine state. pairs/s is the throughput;
// fsyncs/op counts the fsyncs of all three nodes per pair (group commit
// makes it far below the 3 x 2 x 2 = 12 disk writes a pair causes).
func BenchmarkAllocateReleaseDurable(b *testing.B) {
	for _, pol := range []store.SyncPolicy{store.SyncNone, store.SyncAlways} {
		b.Run("fsync="+pol.String(), func(b *testing.B) {
			c := startCluster(b, 3, clusterOpts{ranges: []string{"1-100000"}, partitions: 12, durable: true, sync: pol})
			cl := c.client(c.addrs()...)
			ctx := context.Background()
			var id atomic.Int64
			f0 := c.fsyncs()
			b.SetParallelism((64 + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
			start := time.Now()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				client := fmt.Sprintf("bench-%d", id.Add(1))
				for pb.Next() {
					g, err := cl.Allocate(ctx, client)
					if err != nil {
						b.Error(err)
						return
					}
					if err := cl.ReleaseGrant(ctx, client, g); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "pairs/s")
			b.ReportMetric(float64(c.fsyncs()-f0)/float64(b.N), "fsyncs/op")
		})
	}
}

// fsyncs sums the data directories' fsync counts over the live nodes.
func (c *testCluster) fsyncs() uint64 {
	var k uint64
	for _, n := range c.live() {
		if n.st != nil {
			k += n.st.Stats().Fsyncs
		}
	}
	return k
}
