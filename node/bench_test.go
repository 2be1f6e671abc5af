package node

import (
	"context"
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
