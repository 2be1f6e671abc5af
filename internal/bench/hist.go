package bench

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// The histogram is HDR-style: values (nanoseconds) below 2^(subBits+1) get
// one bucket each; above, every power-of-two range is cut into 2^subBits
// equal buckets, so a bucket is never wider than 1/2^subBits (0.78 %) of
// the values in it. Values of maxTrackable or more land in the last bucket
// (the exact maximum is kept apart).
const (
	subBits      = 7
	subCount     = 1 << subBits
	maxTrackable = int64(1) << 42 // ~73 minutes
	numBuckets   = (42-subBits)*subCount + subCount
	histShards   = 16
)

// bucketOf returns the bucket index of v (v >= 0).
func bucketOf(v int64) int {
	if v >= maxTrackable {
		v = maxTrackable - 1
	}
	u := uint64(v)
	shift := max(bits.Len64(u)-(subBits+1), 0)
	return shift<<subBits + int(u>>uint(shift))
}

// bucketBounds returns the lowest and highest value that fall in bucket i.
func bucketBounds(i int) (lo, hi int64) {
	if i < 2*subCount {
		return int64(i), int64(i)
	}
	shift := i>>subBits - 1
	m := int64(i&(subCount-1) + subCount)
	return m << uint(shift), (m+1)<<uint(shift) - 1
}

type histShard struct {
	counts [numBuckets]atomic.Uint64
	sum    atomic.Int64
	_      [64]byte // keep shards' hot words apart
}

// Histogram records latencies concurrently: writers pick a shard (one per
// worker, modulo), readers may take a Snapshot at any time.
type Histogram struct {
	shards [histShards]histShard
	max    atomic.Int64
}

// NewHistogram returns an empty histogram.
func NewHistogram() *Histogram { return &Histogram{} }

// Record adds one value d, into the shard chosen by shard.
func (h *Histogram) Record(shard int, d time.Duration) {
	v := max(int64(d), 0)
	s := &h.shards[uint(shard)%histShards]
	s.counts[bucketOf(v)].Add(1)
	s.sum.Add(v)
	for {
		m := h.max.Load()
		if v <= m || h.max.CompareAndSwap(m, v) {
			return
		}
	}
}

// Snapshot merges the shards into a HistSnapshot.
func (h *Histogram) Snapshot() *HistSnapshot {
	s := &HistSnapshot{Max: h.max.Load()}
	for i := range h.shards {
		sh := &h.shards[i]
		for b := range sh.counts {
			if c := sh.counts[b].Load(); c != 0 {
				s.counts[b] += c
				s.Count += c
			}
		}
		s.Sum += sh.sum.Load()
	}
	return s
}

// HistSnapshot is a merged, frozen copy of a Histogram.
type HistSnapshot struct {
	counts [numBuckets]uint64
	// Count is how many values were recorded, Sum their total and Max the
	// largest (nanoseconds).
	Count uint64
	Sum   int64
	Max   int64
}

// Quantile returns the value at quantile q (0 < q <= 1): the smallest
// recorded value v such that at least ceil(q*Count) values are <= v, to
// within one bucket (reported as the bucket's highest value, never above
// Max). It is 0 when nothing was recorded.
func (s *HistSnapshot) Quantile(q float64) int64 {
	if s.Count == 0 {
		return 0
	}
	if q >= 1 {
		return s.Max
	}
	rank := uint64(math.Ceil(q * float64(s.Count)))
	rank = min(max(rank, 1), s.Count)
	var seen uint64
	for b, c := range s.counts {
		seen += c
		if seen >= rank {
			_, hi := bucketBounds(b)
			return min(hi, s.Max)
		}
	}
	return s.Max
}

// Mean is the average value (0 when empty).
func (s *HistSnapshot) Mean() float64 {
	if s.Count == 0 {
		return 0
	}
	return float64(s.Sum) / float64(s.Count)
}
