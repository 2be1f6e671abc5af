package multiraft

import (
	"fmt"
	"testing"
)

// BenchmarkRound measures one loop round in a formed 3-node deterministic
// cluster with one write per group per tick: the cost of stepping,
// persisting (in memory), sending and applying, per group.
func BenchmarkRound(b *testing.B) {
	for _, groups := range []int{1, 16, 128} {
		b.Run(fmt.Sprintf("groups=%d", groups), func(b *testing.B) {
			c := formed(b, 1, 3, groups)
			l := newLoad(c)
			b.ResetTimer()
			for range b.N {
				l.step(1)
			}
			b.StopTimer()
			b.ReportMetric(float64(l.total())/float64(b.N), "acked/tick")
		})
	}
}

func BenchmarkEncodeDecodeBatch(b *testing.B) {
	msgs := sampleMessages()
	var buf []byte
	for range b.N {
		buf = EncodeBatch(buf[:0], msgs)
		if _, err := DecodeBatch(buf, 128); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(buf)))
}
