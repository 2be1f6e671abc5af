package freqmodel

import (
	"testing"
	"time"
)

func TestModelAcceptsAndRejects(t *testing.T) {
	freqs := []uint32{10, 11}
	at := func(s int) time.Time { return time.Unix(0, 0).Add(time.Duration(s) * time.Second) }
	tests := []struct {
		name string
		ops  func(r *Recorder)
		ok   bool
	}{
		{"sequential alloc release", func(r *Recorder) {
			r.Record(0, Input{Kind: Alloc, Client: "a"}, at(1), at(2), Output{Result: OK, Freq: 10})
			r.Record(0, Input{Kind: Release, Client: "a", Freq: 10}, at(3), at(4), Output{Result: OK})
			r.Record(1, Input{Kind: Holder, Freq: 10}, at(5), at(6), Output{Result: OK})
		}, true},
		{"double grant of one frequency", func(r *Recorder) {
			r.Record(0, Input{Kind: Alloc, Client: "a"}, at(1), at(2), Output{Result: OK, Freq: 10})
			r.Record(1, Input{Kind: Alloc, Client: "b"}, at(3), at(4), Output{Result: OK, Freq: 10})
		}, false},
		{"exhausted while a frequency is free", func(r *Recorder) {
			r.Record(0, Input{Kind: Alloc, Client: "a"}, at(1), at(2), Output{Result: OK, Freq: 10})
			r.Record(1, Input{Kind: Alloc, Client: "b"}, at(3), at(4), Output{Result: Exhausted})
		}, false},
		{"exhausted when full", func(r *Recorder) {
			r.Record(0, Input{Kind: Alloc, Client: "a"}, at(1), at(2), Output{Result: OK, Freq: 10})
			r.Record(1, Input{Kind: Alloc, Client: "b"}, at(1), at(2), Output{Result: OK, Freq: 11})
			r.Record(2, Input{Kind: Alloc, Client: "c"}, at(3), at(4), Output{Result: Exhausted})
		}, true},
		{"release by non-holder accepted", func(r *Recorder) {
			r.Record(0, Input{Kind: Alloc, Client: "a"}, at(1), at(2), Output{Result: OK, Freq: 10})
			r.Record(1, Input{Kind: Release, Client: "b", Freq: 10}, at(3), at(4), Output{Result: OK})
		}, false},
		{"concurrent ops may reorder", func(r *Recorder) {
			r.Record(0, Input{Kind: Alloc, Client: "a"}, at(1), at(5), Output{Result: OK, Freq: 10})
			r.Record(1, Input{Kind: Holder, Freq: 10}, at(2), at(3), Output{Result: OK})
		}, true},
		{"stale holder read", func(r *Recorder) {
			r.Record(0, Input{Kind: Alloc, Client: "a"}, at(1), at(2), Output{Result: OK, Freq: 10})
			r.Record(1, Input{Kind: Holder, Freq: 10}, at(3), at(4), Output{Result: OK})
		}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := &Recorder{start: time.Unix(0, 0)}
			tc.ops(r)
			err := r.Check(freqs, 5*time.Second)
			if (err == nil) != tc.ok {
				t.Fatalf("Check = %v, want linearizable=%v", err, tc.ok)
			}
		})
	}
}
