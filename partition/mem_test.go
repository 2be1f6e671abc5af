package partition

import (
	"fmt"
	"runtime"
	"strconv"
	"testing"
	"unsafe"

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
// (arrays, interned ids, index, request window), measured with
// runtime.ReadMemStats. With requests, every grant carries its own request
// id, so the window ends full.
func heldMemory(tb testing.TB, n int, ids []string, requests bool) float64 {
	tb.Helper()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	p := New(0, 1, uint32(n))
	var buf []byte
	for i := range n {
		c := Command{Op: OpGrant, Any: true, Client: ids[i%len(ids)], At: int64(i)}
		if requests {
			buf = strconv.AppendInt(append(buf[:0], "req-"...), int64(i), 10)
			c.Request = string(buf)
		}
		if res := p.Apply(c); res.Err != nil {
			tb.Fatal(res.Err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if p.Held() != n || p.Clients() != len(ids) || (requests && p.Requests() != min(n, DedupWindow)) {
		tb.Fatalf("held %d by %d clients, %d requests", p.Held(), p.Clients(), p.Requests())
	}
	runtime.KeepAlive(p)
	return float64(after.HeapAlloc-before.HeapAlloc) / float64(n)
}

// TestMemoryPerHeld checks the design budget of under 64 bytes per held
// frequency (the arrays take 24: holder, since, ttl, next, prev) with 1M
// held across 1000 clients, with and without a request id on every grant
// (a full request window). At 1M it also checks the measured ~24-25
// bytes stays under 28, to catch a regression well inside the budget
// (with 100k held, in -short mode, the fixed cost of the window and the
// clients weighs more per frequency, so only the budget is checked).
func TestMemoryPerHeld(t *testing.T) {
	n := 1_000_000
	if testing.Short() {
		n = 100_000
	}
	ids := clientIDs(1000)
	for _, requests := range []bool{false, true} {
		per := heldMemory(t, n, ids, requests)
		t.Logf("%.1f bytes per held frequency (%d held, %d clients, request ids %v)", per, n, len(ids), requests)
		if per >= 64 {
			t.Fatalf("%.1f bytes per held frequency, budget is under 64", per)
		}
		if !testing.Short() && per >= 28 {
			t.Fatalf("%.1f bytes per held frequency, measured at 24-25 when the ttl array was added", per)
		}
	}
}

// TestMemoryWindow logs the heap a full request window takes: the fixed
// cost a busy partition pays on top of its per-frequency arrays. It checks
// a loose bound of 128 bytes per record.
func TestMemoryWindow(t *testing.T) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	p := New(0, 0, 0)
	for i := range DedupWindow {
		p.Apply(Command{Op: OpNote, Client: "c", Request: strconv.Itoa(i), Freq: 1, Gen: 1})
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(p)
	total := float64(after.HeapAlloc - before.HeapAlloc)
	t.Logf("full window: %.0f KiB, %.1f bytes per record", total/1024, total/DedupWindow)
	if total/DedupWindow > 128 {
		t.Fatalf("%.1f bytes per window record", total/DedupWindow)
	}
}

// BenchmarkHeldMemory reports bytes per held frequency for 1M held across
// 1000 clients, each grant with a request id.
func BenchmarkHeldMemory(b *testing.B) {
	ids := clientIDs(1000)
	var per float64
	for b.Loop() {
		per = heldMemory(b, 1_000_000, ids, true)
	}
	b.ReportMetric(per, "B/held")
}

// BenchmarkGrantRetry measures a grant with a request id answered from the
// window (a retry), on a partition with a full window.
func BenchmarkGrantRetry(b *testing.B) {
	p := New(0, 0, 1<<16-1)
	for i := range DedupWindow {
		p.Apply(Command{Op: OpGrant, Any: true, Client: "c", Request: strconv.Itoa(i), At: int64(i)})
	}
	c := Command{Op: OpGrant, Any: true, Client: "c", Request: "17", At: 1 << 40}
	b.ReportAllocs()
	for b.Loop() {
		if res := p.Apply(c); !res.Dup {
			b.Fatalf("not a dup: %+v", res)
		}
	}
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

// BenchmarkGrantRequestRelease is BenchmarkGrantRelease with a new request
// id on every grant, so each one records into a full window, evicting the
// oldest record.
func BenchmarkGrantRequestRelease(b *testing.B) {
	const n = 1 << 16
	ids := clientIDs(1000)
	reqs := make([]string, 2*DedupWindow)
	for i := range reqs {
		reqs[i] = "req-" + strconv.Itoa(i)
	}
	p := New(0, 0, n-1)
	for i := range n / 2 {
		p.Apply(Command{Op: OpGrant, Any: true, Client: ids[i%len(ids)], Request: reqs[i%len(reqs)], At: int64(i)})
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		c := ids[i%len(ids)]
		res := p.Apply(Command{Op: OpGrant, Any: true, Client: c, Request: reqs[i%len(reqs)], At: int64(n + i)})
		if res.Err != nil || res.Dup {
			b.Fatal(res)
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

func TestResultSize(t *testing.T) {
	if n := unsafe.Sizeof(Result{}); n > 32 {
		t.Fatalf("Result is %d bytes; over 32 the compiler returns it through memory (see its doc)", n)
	}
}

func TestMaxSizeMatchesPool(t *testing.T) {
	if MaxSize != pool.MaxSpanSize {
		t.Fatalf("partition.MaxSize %d != pool.MaxSpanSize %d", MaxSize, pool.MaxSpanSize)
	}
}
