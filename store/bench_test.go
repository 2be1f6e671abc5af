package store

import (
	"encoding/binary"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// The benchmarks that chose a write-ahead log over bbolt (docs/storage.md):
// c goroutines each append a 100-byte record and wait until it is durable,
// b.N records in all, spread over 16 partitions.

var benchConc = []int{1, 8, 64}

const benchParts = 16

func BenchmarkAppend(b *testing.B) {
	for _, policy := range []SyncPolicy{SyncAlways, SyncNone} {
		for _, c := range benchConc {
			b.Run(fmt.Sprintf("%s/%d", policy, c), func(b *testing.B) {
				s, _, err := Open(Options{Dir: b.TempDir(), Sync: policy})
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				rec := make([]byte, 100)
				var n atomic.Int64
				var wg sync.WaitGroup
				b.ResetTimer()
				for g := range c {
					wg.Go(func() {
						for n.Add(1) <= int64(b.N) {
							lsn, err := s.Append(g%benchParts, rec)
							if err == nil {
								err = s.Wait(b.Context(), lsn)
							}
							if err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				wg.Wait()
				b.StopTimer()
				st := s.Stats()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
				b.ReportMetric(float64(st.Appends)/float64(max(st.Batches, 1)), "records/batch")
			})
		}
	}
}

// BenchmarkBolt does the same with bbolt, one bucket per partition, key
// the LSN: sync and nosync use db.Batch (bbolt's group commit, which waits
// up to MaxBatchDelay, 10ms by default, to fill a batch); update uses one
// db.Update (one fsynced transaction) per record, for comparison.
func BenchmarkBolt(b *testing.B) {
	for _, mode := range []string{"sync", "nosync", "update"} {
		for _, c := range benchConc {
			b.Run(fmt.Sprintf("%s/%d", mode, c), func(b *testing.B) {
				db, err := bolt.Open(filepath.Join(b.TempDir(), "bolt.db"), 0o600, &bolt.Options{NoSync: mode == "nosync"})
				if err != nil {
					b.Fatal(err)
				}
				defer db.Close()
				buckets := make([][]byte, benchParts)
				err = db.Update(func(tx *bolt.Tx) error {
					for i := range buckets {
						buckets[i] = fmt.Appendf(nil, "part-%06d", i)
						if _, err := tx.CreateBucket(buckets[i]); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
				rec := make([]byte, 100)
				var n atomic.Int64
				var lsn atomic.Uint64
				var wg sync.WaitGroup
				b.ResetTimer()
				for g := range c {
					wg.Go(func() {
						for n.Add(1) <= int64(b.N) {
							key := binary.BigEndian.AppendUint64(nil, lsn.Add(1))
							put := func(tx *bolt.Tx) error { return tx.Bucket(buckets[g%benchParts]).Put(key, rec) }
							var err error
							if mode == "update" {
								err = db.Update(put)
							} else {
								err = db.Batch(put)
							}
							if err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				wg.Wait()
				b.StopTimer()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
			})
		}
	}
}

// BenchmarkRecover measures Open on a log of 100,000 100-byte records
// (about 12 MiB) in 16 partitions, no checkpoints.
func BenchmarkRecover(b *testing.B) {
	dir := b.TempDir()
	s, _, err := Open(Options{Dir: dir, Sync: SyncNone})
	if err != nil {
		b.Fatal(err)
	}
	rec := make([]byte, 100)
	var lsn uint64
	for i := range 100000 {
		if lsn, err = s.Append(i%benchParts, rec); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.Wait(b.Context(), lsn); err != nil {
		b.Fatal(err)
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	var bytes int64
	for b.Loop() {
		s, r, err := Open(Options{Dir: dir, Sync: SyncNone})
		if err != nil {
			b.Fatal(err)
		}
		bytes = r.Bytes
		b.StopTimer()
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.SetBytes(bytes)
}
