package freqmodel

import (
	"container/heap"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
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

		// Calls with an unknown outcome.
		{"unknown alloc that took effect", func(r *Recorder) {
			r.RecordUnknown(0, Input{Kind: Alloc, Client: "c"}, at(1))
			r.Record(1, Input{Kind: Holder, Freq: 11}, at(3), at(4), Output{Result: OK, Held: true, Holder: "c"})
			r.Record(1, Input{Kind: Alloc, Client: "b"}, at(5), at(6), Output{Result: OK, Freq: 10})
		}, true},
		{"unknown alloc that did not take effect", func(r *Recorder) {
			r.RecordUnknown(0, Input{Kind: Alloc, Client: "c"}, at(1))
			r.Record(1, Input{Kind: Alloc, Client: "a"}, at(3), at(4), Output{Result: OK, Freq: 10})
			r.Record(1, Input{Kind: Alloc, Client: "b"}, at(5), at(6), Output{Result: OK, Freq: 11})
			r.Record(1, Input{Kind: Holder, Freq: 11}, at(7), at(8), Output{Result: OK, Held: true, Holder: "b"})
		}, true},
		{"unknown alloc that took effect long after its call", func(r *Recorder) {
			r.RecordUnknown(0, Input{Kind: Alloc, Client: "c"}, at(1))
			r.Record(1, Input{Kind: Alloc, Client: "a"}, at(2), at(3), Output{Result: OK, Freq: 10})
			r.Record(1, Input{Kind: Alloc, Client: "b"}, at(4), at(5), Output{Result: OK, Freq: 11})
			r.Record(1, Input{Kind: Release, Client: "a", Freq: 10}, at(6), at(7), Output{Result: OK})
			r.Record(1, Input{Kind: Holder, Freq: 10}, at(8), at(9), Output{Result: OK, Held: true, Holder: "c"})
		}, true},
		{"double grant with unknowns around", func(r *Recorder) {
			r.Record(0, Input{Kind: Alloc, Client: "a"}, at(1), at(2), Output{Result: OK, Freq: 10})
			r.RecordUnknown(2, Input{Kind: Alloc, Client: "c"}, at(2))
			r.RecordUnknown(3, Input{Kind: Release, Client: "b", Freq: 10}, at(2))
			r.RecordUnknown(4, Input{Kind: AllocFreq, Client: "b", Freq: 10}, at(2))
			r.RecordUnknown(5, Input{Kind: Holder, Freq: 10}, at(2))
			r.Record(1, Input{Kind: Alloc, Client: "b"}, at(3), at(4), Output{Result: OK, Freq: 10})
		}, false},
		{"unknown release by the holder explains a regrant", func(r *Recorder) {
			r.Record(0, Input{Kind: Alloc, Client: "a"}, at(1), at(2), Output{Result: OK, Freq: 10})
			r.RecordUnknown(0, Input{Kind: Release, Client: "a", Freq: 10}, at(3))
			r.Record(1, Input{Kind: AllocFreq, Client: "b", Freq: 10}, at(4), at(5), Output{Result: OK, Freq: 10})
		}, true},
		{"one unknown alloc takes one frequency, not two", func(r *Recorder) {
			r.RecordUnknown(0, Input{Kind: Alloc, Client: "c"}, at(1))
			r.Record(1, Input{Kind: Holder, Freq: 10}, at(3), at(4), Output{Result: OK, Held: true, Holder: "c"})
			r.Record(1, Input{Kind: Holder, Freq: 11}, at(5), at(6), Output{Result: OK, Held: true, Holder: "c"})
		}, false},
		{"unknown alloc explains exhaustion", func(r *Recorder) {
			r.Record(0, Input{Kind: Alloc, Client: "a"}, at(1), at(2), Output{Result: OK, Freq: 10})
			r.RecordUnknown(2, Input{Kind: Alloc, Client: "c"}, at(1))
			r.Record(1, Input{Kind: Alloc, Client: "b"}, at(3), at(4), Output{Result: Exhausted})
			r.Record(1, Input{Kind: Holder, Freq: 11}, at(5), at(6), Output{Result: OK, Held: true, Holder: "c"})
		}, true},
		{"exhaustion the unknown alloc cannot explain", func(r *Recorder) {
			r.Record(0, Input{Kind: Alloc, Client: "a"}, at(1), at(2), Output{Result: OK, Freq: 10})
			r.RecordUnknown(2, Input{Kind: Alloc, Client: "c"}, at(1))
			r.Record(1, Input{Kind: Alloc, Client: "b"}, at(3), at(4), Output{Result: Exhausted})
			r.Record(1, Input{Kind: Holder, Freq: 11}, at(5), at(6), Output{Result: OK})
		}, false},
		{"unknown alloc of a held frequency cannot take it", func(r *Recorder) {
			r.Record(0, Input{Kind: AllocFreq, Client: "a", Freq: 10}, at(1), at(2), Output{Result: OK, Freq: 10})
			r.RecordUnknown(1, Input{Kind: AllocFreq, Client: "c", Freq: 10}, at(3))
			r.Record(0, Input{Kind: Holder, Freq: 10}, at(5), at(6), Output{Result: OK, Held: true, Holder: "c"})
		}, false},
		{"unknown alloc of a free frequency that took effect", func(r *Recorder) {
			r.RecordUnknown(1, Input{Kind: AllocFreq, Client: "c", Freq: 11}, at(1))
			r.Record(0, Input{Kind: Alloc, Client: "a"}, at(3), at(4), Output{Result: OK, Freq: 10})
			r.Record(0, Input{Kind: Alloc, Client: "a"}, at(5), at(6), Output{Result: Exhausted})
		}, true},
		{"unknown release by a non-holder cannot free", func(r *Recorder) {
			r.Record(0, Input{Kind: Alloc, Client: "a"}, at(1), at(2), Output{Result: OK, Freq: 10})
			r.RecordUnknown(1, Input{Kind: Release, Client: "b", Freq: 10}, at(3))
			r.Record(2, Input{Kind: Holder, Freq: 10}, at(5), at(6), Output{Result: OK})
		}, false},
		{"unknown holder changes nothing", func(r *Recorder) {
			r.RecordUnknown(1, Input{Kind: Holder, Freq: 10}, at(1))
			r.Record(0, Input{Kind: Holder, Freq: 10}, at(2), at(3), Output{Result: OK})
		}, true},
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

func TestRecordUnknown(t *testing.T) {
	r := &Recorder{start: time.Unix(0, 0)}
	r.RecordUnknown(3, Input{Kind: Alloc, Client: "a"}, time.Unix(0, 50))
	ops := r.Operations()
	if len(ops) != 1 || ops[0].Call != 50 || ops[0].Return != math.MaxInt64 || ops[0].ClientId != 3 ||
		ops[0].Output != (Output{Result: Unknown}) || ops[0].Input != (Input{Kind: Alloc, Client: "a"}) {
		t.Fatalf("recorded %+v", ops)
	}
	if Unknown.String() != "unknown" || Result(99).String() != "?" || Holder.String() != "holder" || Kind(99).String() != "?" {
		t.Fatalf("String: %q %q %q %q", Unknown, Result(99), Holder, Kind(99))
	}
}

// TestUnknownStep checks the next states of each kind of unknown call
// from a pool of 10-12 where 10 is held by "a".
func TestUnknownStep(t *testing.T) {
	nm := NondeterministicModel([]uint32{12, 10, 11})
	next := nm.Step(nm.Init()[0], Input{Kind: AllocFreq, Client: "a", Freq: 10}, Output{Result: OK, Freq: 10})
	if len(next) != 1 {
		t.Fatalf("setup: %d states", len(next))
	}
	s := next[0]
	tests := []struct {
		in   Input
		want []string // DescribeState of each next state
	}{
		{Input{Kind: Alloc, Client: "c"}, []string{"10:a ", "10:a 11:c ", "10:a 12:c "}},
		{Input{Kind: AllocFreq, Client: "c", Freq: 11}, []string{"10:a ", "10:a 11:c "}},
		{Input{Kind: AllocFreq, Client: "c", Freq: 10}, []string{"10:a "}},
		{Input{Kind: AllocFreq, Client: "a", Freq: 10}, []string{"10:a "}},
		{Input{Kind: AllocFreq, Client: "c", Freq: 99}, []string{"10:a "}},
		{Input{Kind: Release, Client: "a", Freq: 10}, []string{"10:a ", ""}},
		{Input{Kind: Release, Client: "c", Freq: 10}, []string{"10:a "}},
		{Input{Kind: Release, Client: "c", Freq: 11}, []string{"10:a "}},
		{Input{Kind: Holder, Freq: 10}, []string{"10:a "}},
	}
	for _, tt := range tests {
		var got []string
		for _, n := range nm.Step(s, tt.in, Output{Result: Unknown}) {
			got = append(got, nm.DescribeState(n))
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%+v: next states %q, want %q", tt.in, got, tt.want)
		}
	}
	for _, tt := range []struct {
		in   Input
		out  Output
		want int
	}{
		{Input{Kind: Alloc, Client: "c"}, Output{Result: OK, Freq: 10}, 0},
		{Input{Kind: Alloc, Client: "c"}, Output{Result: OK, Freq: 11}, 1},
		{Input{Kind: Holder, Freq: 10}, Output{Result: OK, Held: true, Holder: "a"}, 1},
		{Input{Kind: Holder, Freq: 10}, Output{Result: OK, Held: true, Holder: "never-seen"}, 0},
		{Input{Kind: Release, Client: "a", Freq: 10}, Output{Result: OK}, 1},
		{Input{Kind: Release, Client: "b", Freq: 10}, Output{Result: NotHolder}, 1},
		{Input{Kind: Release, Client: "b", Freq: 11}, Output{Result: NotHeld}, 1},
		{Input{Kind: Alloc, Client: "b"}, Output{Result: Exhausted}, 0},
	} {
		if got := len(nm.Step(s, tt.in, tt.out)); got != tt.want {
			t.Errorf("%+v -> %+v: %d next states, want %d", tt.in, tt.out, got, tt.want)
		}
	}
}

// simulate returns a linearizable history of about nops calls by nclients
// clients over freqs, made by running the calls against a real pool (a
// FIFO free queue, as freqd's), each taking effect at one instant inside
// its interval. unknowns calls, chosen at random, time out: those take effect at a
// random later instant, maybe after the client's next calls, or never, and
// are recorded with RecordUnknown. It also returns how many unknown calls
// other than Holder were applied.
func simulate(seed uint64, nops, nclients int, freqs []uint32, unknowns int) (*Recorder, int) {
	rng := rand.New(rand.NewPCG(seed, 99))
	rec := &Recorder{start: time.Unix(0, 0)}
	at := func(ns int64) time.Time { return rec.start.Add(time.Duration(ns)) }

	// The real pool.
	holder := map[uint32]string{}
	free := slices.Clone(freqs)
	apply := func(in Input) Output {
		switch in.Kind {
		case Alloc:
			if len(free) == 0 {
				return Output{Result: Exhausted}
			}
			f := free[0]
			free = free[1:]
			holder[f] = in.Client
			return Output{Result: OK, Freq: f}
		case AllocFreq:
			switch h := holder[in.Freq]; h {
			case "":
				free = slices.DeleteFunc(free, func(f uint32) bool { return f == in.Freq })
				holder[in.Freq] = in.Client
				return Output{Result: OK, Freq: in.Freq}
			case in.Client:
				return Output{Result: OK, Freq: in.Freq}
			}
			return Output{Result: AlreadyHeld}
		case Release:
			switch h := holder[in.Freq]; h {
			case in.Client:
				delete(holder, in.Freq)
				free = append(free, in.Freq)
				return Output{Result: OK}
			case "":
				return Output{Result: NotHeld}
			}
			return Output{Result: NotHolder}
		default:
			h := holder[in.Freq]
			return Output{Result: OK, Held: h != "", Holder: h}
		}
	}

	type op struct {
		client  int
		in      Input
		call    int64
		out     Output
		unknown bool
		applied bool
	}
	names := make([]string, nclients)
	mine := make([]map[uint32]bool, nclients) // what each client believes it holds
	for i := range names {
		names[i] = fmt.Sprintf("c%d", i)
		mine[i] = map[uint32]bool{}
	}
	var ops []*op
	unknown := map[int]bool{}
	for _, i := range rng.Perm(nops)[:min(unknowns, nops)] {
		unknown[i] = true
	}
	q := &events{}
	start := func(client int, now int64) {
		if len(ops) >= nops {
			return
		}
		o := &op{client: client, call: now, unknown: unknown[len(ops)]}
		id := names[client]
		held := slices.Sorted(func(yield func(uint32) bool) {
			for f := range mine[client] {
				if !yield(f) {
					return
				}
			}
		})
		switch r := rng.IntN(100); {
		case r < 40 && len(held) < 3:
			o.in = Input{Kind: Alloc, Client: id}
		case r < 50:
			o.in = Input{Kind: AllocFreq, Client: id, Freq: freqs[rng.IntN(len(freqs))]}
		case r < 80 && len(held) > 0:
			o.in = Input{Kind: Release, Client: id, Freq: held[rng.IntN(len(held))]}
		case r < 88:
			o.in = Input{Kind: Release, Client: id, Freq: freqs[rng.IntN(len(freqs))]}
		default:
			o.in = Input{Kind: Holder, Freq: freqs[rng.IntN(len(freqs))]}
		}
		ops = append(ops, o)
		if o.unknown {
			// The client gives up after a timeout and goes on; the call
			// takes effect later (even after the client's next calls) or
			// never.
			if rng.IntN(2) == 0 {
				heap.Push(q, event{t: now + 1 + rng.Int64N(20_000), kind: evApply, op: len(ops) - 1})
			}
			heap.Push(q, event{t: now + 5_000, kind: evNext, client: client})
			return
		}
		lin := now + 1 + rng.Int64N(1_000)
		heap.Push(q, event{t: lin, kind: evApply, op: len(ops) - 1})
		heap.Push(q, event{t: lin + 1 + rng.Int64N(1_000), kind: evReturn, op: len(ops) - 1})
	}
	for c := range nclients {
		start(c, rng.Int64N(1_000))
	}
	for q.Len() > 0 {
		e := heap.Pop(q).(event)
		switch e.kind {
		case evApply:
			o := ops[e.op]
			o.out, o.applied = apply(o.in), true
		case evReturn:
			o := ops[e.op]
			rec.Record(o.client, o.in, at(o.call), at(e.t), o.out)
			switch {
			case o.out.Result == OK && (o.in.Kind == Alloc || o.in.Kind == AllocFreq):
				mine[o.client][o.out.Freq] = true
			case o.in.Kind == Release:
				delete(mine[o.client], o.in.Freq)
			case o.in.Kind == Holder && o.out.Holder == names[o.client]:
				mine[o.client][o.in.Freq] = true // found one it did not know of
			}
			start(o.client, e.t+rng.Int64N(2_000))
		case evNext:
			start(e.client, e.t)
		}
	}
	took := 0
	for _, o := range ops {
		if o.unknown {
			rec.RecordUnknown(o.client, o.in, at(o.call))
			if o.applied && o.in.Kind != Holder {
				took++
			}
		}
	}
	return rec, took
}

const (
	evApply = iota
	evReturn
	evNext
)

type event struct {
	t      int64
	kind   int
	op     int
	client int
}

// events is a min-heap by time, then kind (effects before returns at the
// same instant).
type events []event

func (h events) Len() int { return len(h) }
func (h events) Less(i, j int) bool {
	return h[i].t < h[j].t || (h[i].t == h[j].t && h[i].kind < h[j].kind)
}
func (h events) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *events) Push(x any)   { *h = append(*h, x.(event)) }
func (h *events) Pop() any     { old := *h; e := old[len(old)-1]; *h = old[:len(old)-1]; return e }
func unknownCount(r *Recorder) int {
	n := 0
	for _, o := range r.Operations() {
		if o.Output.(Output).Result == Unknown {
			n++
		}
	}
	return n
}

// TestSimulatedHistories checks that histories a real pool produces, with
// calls of unknown outcome, are linearizable, and that one with a double
// grant appended is not. The second uses few unknown calls: each makes
// proving a violation about twice as slow (see the package doc).
func TestSimulatedHistories(t *testing.T) {
	freqs := []uint32{10, 11, 12, 13}
	for seed := range uint64(20) {
		rec, took := simulate(seed, 400, 4, freqs, 20)
		if err := rec.Check(freqs, time.Minute); err != nil {
			t.Fatalf("seed %d (%d unknown, %d took effect): %v", seed, unknownCount(rec), took, err)
		}
		rec, _ = simulate(seed, 400, 4, freqs, 3)
		ops := rec.Operations()
		last := ops[len(ops)-1].Call
		// x takes 13 and y is granted it too, after every other call.
		bad := append(slices.Clone(ops),
			porcupine.Operation{ClientId: 90, Input: Input{Kind: AllocFreq, Client: "x", Freq: 13}, Output: Output{Result: OK, Freq: 13},
				Call: last + 1e6, Return: last + 2e6},
			porcupine.Operation{ClientId: 91, Input: Input{Kind: Alloc, Client: "y"}, Output: Output{Result: OK, Freq: 13},
				Call: last + 3e6, Return: last + 4e6})
		if res := porcupine.CheckOperationsTimeout(Model(freqs), bad, time.Minute); res != porcupine.Illegal {
			t.Fatalf("seed %d (%d unknown): double grant appended: %v, want Illegal", seed, unknownCount(rec), res)
		}
	}
}

// TestCheckerSpeed logs how long the checker takes on a history of about
// 5,000 calls over 16 frequencies with about 50 of unknown outcome. It
// asserts only that the history is linearizable (the generous timeout
// guards against a hang, not a slowdown).
func TestCheckerSpeed(t *testing.T) {
	freqs := make([]uint32, 16)
	for i := range freqs {
		freqs[i] = 1000 + uint32(i)
	}
	nops := 5_000
	if testing.Short() {
		nops = 1_000
	}
	for _, tc := range []struct {
		seed              uint64
		clients, unknowns int
	}{{7, 8, 0}, {7, 8, 50}, {9, 16, 50}} {
		rec, took := simulate(tc.seed, nops, tc.clients, freqs, tc.unknowns)
		n := len(rec.Operations())
		begin := time.Now()
		if err := rec.Check(freqs, 5*time.Minute); err != nil {
			t.Fatalf("%d clients: %v", tc.clients, err)
		}
		t.Logf("seed %d: %d ops, %d clients, %d unknown (%d applied), 16 frequencies: checked in %v",
			tc.seed, n, tc.clients, unknownCount(rec), took, time.Since(begin).Round(time.Millisecond))
	}
}
