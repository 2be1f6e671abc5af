package partition

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/freqd/freqd/pool"
)

func clientIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("client-%04d", i)
	}
	return ids
}

// heldMemory builds a partition of n frequencies, all held, spread round
// robin over the clients, and returns the heap bytes per held frequency
// (arrays, interned ids, index), measured with runtime.ReadMemStats.
func heldMemory(tb testing.TB, n int, ids []string) float64 {
	tb.Helper()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	p := New(0, 1, uint32(n))
	for i := range n {
		if res := p.Apply(Command{Op: OpGrant, Any: true, Client: ids[i%len(ids)], At: int64(i)}); res.Err != nil {
			tb.Fatal(res.Err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if p.Held() != n || p.Clients() != len(ids) {
		tb.Fatalf("held %d by %d clients", p.Held(), p.Clients())
	}
	runtime.KeepAlive(p)
	return float64(after.HeapAlloc-before.HeapAlloc) / float64(n)
}

// TestMemoryPerHeld checks the design budget of under 64 bytes per held
// frequency (the arrays take 20) with 1M held across 1000 clients.
func TestMemoryPerHeld(t *testing.T) {
	n := 1_000_000
	if testing.Short() {
		n = 100_000
	}
	ids := clientIDs(1000)
	per := heldMemory(t, n, ids)
	t.Logf("%.1f bytes per held frequency (%d held, %d clients)", per, n, len(ids))
	if per >= 64 {
		t.Fatalf("%.1f bytes per held frequency, budget is under 64", per)
	}
}

// BenchmarkHeldMemory reports bytes per held frequency for 1M held across
// 1000 clients.
func BenchmarkHeldMemory(b *testing.B) {
	ids := clientIDs(1000)
	var per float64
	for b.Loop() {
		per = heldMemory(b, 1_000_000, ids)
	}
	b.ReportMetric(per, "B/held")
}

// BenchmarkGrantRelease measures one grant-any plus one release on a
// half-full partition of 64Ki frequencies with 1000 clients.
func BenchmarkGrantRelease(b *testing.B) {
	const n = 1 << 16
	ids := clientIDs(1000)
	p := New(0, 0, n-1)
	for i := range n / 2 {
		p.Apply(Command{Op: OpGrant, Any: true, Client: ids[i%len(ids)], At: int64(i)})
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		c := ids[i%len(ids)]
		res := p.Apply(Command{Op: OpGrant, Any: true, Client: c, At: int64(i)})
		if res.Err != nil {
			b.Fatal(res.Err)
		}
		if rel := p.Apply(Command{Op: OpRelease, Client: c, Freq: res.Freq}); rel.Err != nil {
			b.Fatal(rel.Err)
		}
		i++
	}
}

// BenchmarkGrantSpecificRelease measures a grant of a named frequency
// (removal from the middle of the free queue) plus its release.
func BenchmarkGrantSpecificRelease(b *testing.B) {
	const n = 1 << 16
	p := New(0, 0, n-1)
	b.ReportAllocs()
	i := uint32(0)
	for b.Loop() {
		f := (i * 40503) % n
		if res := p.Apply(Command{Op: OpGrant, Client: "c", Freq: f}); res.Err != nil {
			b.Fatal(res.Err)
		}
		if rel := p.Apply(Command{Op: OpRelease, Client: "c", Freq: f}); rel.Err != nil {
			b.Fatal(rel.Err)
		}
		i++
	}
}

func TestMaxSizeMatchesPool(t *testing.T) {
	if MaxSize != pool.MaxSpanSize {
		t.Fatalf("partition.MaxSize %d != pool.MaxSpanSize %d", MaxSize, pool.MaxSpanSize)
	}
}
