package bench

import (
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestBucketsTileTheRange(t *testing.T) {
	if lo, _ := bucketBounds(0); lo != 0 {
		t.Fatalf("bucket 0 starts at %d", lo)
	}
	for i := 0; i < numBuckets-1; i++ {
		_, hi := bucketBounds(i)
		lo, _ := bucketBounds(i + 1)
		if hi+1 != lo {
			t.Fatalf("bucket %d ends at %d but bucket %d starts at %d", i, hi, i+1, lo)
		}
	}
	if _, hi := bucketBounds(numBuckets - 1); hi != maxTrackable-1 {
		t.Fatalf("last bucket ends at %d, want %d", hi, maxTrackable-1)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 100000 {
		v := rng.Int64N(maxTrackable)
		b := bucketOf(v)
		lo, hi := bucketBounds(b)
		if v < lo || v > hi {
			t.Fatalf("%d in bucket %d = [%d, %d]", v, b, lo, hi)
		}
		if v >= 2*subCount && float64(hi-lo+1) > float64(lo)/subCount {
			t.Fatalf("bucket %d = [%d, %d] is wider than 1/%d of its values", b, lo, hi, subCount)
		}
	}
}

func TestQuantilesMatchSortedReference(t *testing.T) {
	gens := []struct {
		name string
		gen  func(*rand.Rand) int64
	}{
		{"small exact values", func(r *rand.Rand) int64 { return r.Int64N(256) }},
		{"uniform to 1ms", func(r *rand.Rand) int64 { return r.Int64N(1e6) }},
		{"log-normal around 200µs", func(r *rand.Rand) int64 { return int64(math.Exp(r.NormFloat64()*1.2 + math.Log(200e3))) }},
		{"bimodal with a slow tail", func(r *rand.Rand) int64 {
			if r.IntN(100) == 0 {
				return 50e6 + r.Int64N(1e9)
			}
			return 30e3 + r.Int64N(20e3)
		}},
	}
	qs := []float64{0.0001, 0.25, 0.5, 0.9, 0.99, 0.999, 0.9999, 1}
	for _, g := range gens {
		for _, n := range []int{1, 7, 1000, 100000} {
			rng := rand.New(rand.NewPCG(42, uint64(n)))
			h := NewHistogram()
			ref := make([]int64, n)
			var sum int64
			for i := range ref {
				v := min(g.gen(rng), maxTrackable-1)
				ref[i] = v
				sum += v
				h.Record(i, time.Duration(v))
			}
			slices.Sort(ref)
			s := h.Snapshot()
			if s.Count != uint64(n) || s.Max != ref[n-1] || s.Sum != sum {
				t.Fatalf("%s n=%d: count %d max %d sum %d, want %d %d %d", g.name, n, s.Count, s.Max, s.Sum, n, ref[n-1], sum)
			}
			for _, q := range qs {
				rank := max(int(math.Ceil(q*float64(n))), 1)
				want := ref[rank-1]
				got := s.Quantile(q)
				if bucketOf(got) != bucketOf(want) || got < want || got > s.Max {
					t.Errorf("%s n=%d q=%g: got %d, want %d (its bucket [%d, %d])", g.name, n, q, got, want, bucketLo(want), bucketHi(want))
				}
				if want >= 2*subCount && float64(got-want) > float64(want)/subCount {
					t.Errorf("%s n=%d q=%g: got %d, more than 1/%d above %d", g.name, n, q, got, subCount, want)
				}
				if want < 2*subCount && got != want {
					t.Errorf("%s n=%d q=%g: got %d, want exactly %d", g.name, n, q, got, want)
				}
			}
		}
	}
}

func bucketLo(v int64) int64 { lo, _ := bucketBounds(bucketOf(v)); return lo }
func bucketHi(v int64) int64 { _, hi := bucketBounds(bucketOf(v)); return hi }

func TestHistogramEdges(t *testing.T) {
	h := NewHistogram()
	s := h.Snapshot()
	if s.Count != 0 || s.Quantile(0.5) != 0 || s.Mean() != 0 {
		t.Fatalf("empty histogram: count %d p50 %d mean %g", s.Count, s.Quantile(0.5), s.Mean())
	}
	h.Record(0, -5)                             // clamped to 0
	h.Record(1, time.Duration(maxTrackable)*10) // beyond the range: last bucket, max exact
	s = h.Snapshot()
	if s.Count != 2 || s.Quantile(0.5) != 0 || s.Max != maxTrackable*10 || s.Quantile(1) != maxTrackable*10 {
		t.Fatalf("count %d p50 %d max %d p100 %d", s.Count, s.Quantile(0.5), s.Max, s.Quantile(1))
	}
}

func TestHistogramConcurrentRecord(t *testing.T) {
	h := NewHistogram()
	var wg sync.WaitGroup
	const workers, each = 8, 5000
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				h.Record(w, time.Duration(i))
				if i%1000 == 0 {
					_ = h.Snapshot().Quantile(0.99)
				}
			}
		})
	}
	wg.Wait()
	s := h.Snapshot()
	if s.Count != workers*each || s.Max != each-1 {
		t.Fatalf("count %d max %d, want %d %d", s.Count, s.Max, workers*each, each-1)
	}
}
