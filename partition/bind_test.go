package partition

import (
	"errors"
	"strings"
	"testing"

	"github.com/freqd/freqd"
)

// The partitions of TestBindings: a home of two frequencies and two
// targets of one each.
const (
	home = 0 // 10-11
	q1   = 1 // 20
	q2   = 2 // 30
)

func homeAttempt(c, req string, at int64) Command {
	return Command{Op: OpGrant, Client: c, Request: req, Any: true, Home: true, At: at}
}

func boundAttempt(c, req string, gen uint32, at int64) Command {
	return Command{Op: OpGrant, Client: c, Request: req, Any: true, Gen: gen, At: at}
}

// TestBindings runs the node's allocation protocol by hand over a home
// partition and two targets, step by step, checking each result, whether
// the partition's version moved, and at the end what each partition
// remembers of the request. Every partition must also survive a snapshot
// round trip unchanged.
func TestBindings(t *testing.T) {
	type step struct {
		in      int // partition
		cmd     Command
		want    Result // Err: the sentinel
		errText string // with Err: part of the message
		changed bool
	}
	type ask struct {
		in  int
		rec Record
		ok  bool
	}
	// fillHome, fillQ1 and fillQ2 fill a partition with another client's
	// grants.
	fillHome := []step{
		{home, grant("x", 10, 1), Result{Freq: 10, Since: 1}, "", true},
		{home, grant("x", 11, 1), Result{Freq: 11, Since: 1}, "", true},
	}
	fillQ1 := step{q1, grant("x", 20, 1), Result{Freq: 20, Since: 1}, "", true}
	fillQ2 := step{q2, grant("x", 30, 1), Result{Freq: 30, Since: 1}, "", true}
	seq := func(parts ...[]step) []step {
		var out []step
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	noFreq := Result{Err: freqd.ErrNoFrequency}
	tests := []struct {
		name  string
		steps []step
		asks  []ask // of ("a", "r")
	}{
		{
			name: "home attempt grants in the home, a retry is a dup",
			steps: []step{
				{home, homeAttempt("a", "r", 5), Result{Freq: 10, Since: 5}, "", true},
				{home, homeAttempt("a", "r", 6), Result{Freq: 10, Since: 5, Dup: true}, "", false},
			},
			asks: []ask{{home, Record{RecordGrant, 10, 5}, true}, {q1, Record{}, false}},
		},
		{
			name: "home full, bind, grant in the target; a home attempt finds the binding",
			steps: seq(fillHome, []step{
				{home, homeAttempt("a", "r", 5), noFreq, "all 2 frequencies held", false},
				{home, note("a", "r", q1, 1), Result{Freq: q1, Since: 1}, "", true},
				{q1, boundAttempt("a", "r", 1, 6), Result{Freq: 20, Since: 6}, "", true},
				{q1, boundAttempt("a", "r", 1, 7), Result{Freq: 20, Since: 6, Dup: true}, "", false},
				{home, release("x", 10), Result{Freq: 10, Since: 1}, "", true},
				// A late copy of the first home attempt, with the home no
				// longer full: it grants nothing and names the binding.
				{home, homeAttempt("a", "r", 8), Result{Freq: q1, Since: 1, Noted: true}, "", false},
				{home, homeAttempt("a", "r", 9), Result{Freq: q1, Since: 1, Noted: true}, "", false},
			}),
			asks: []ask{{home, Record{RecordNote, q1, 1}, true}, {q1, Record{RecordGrant, 20, 6}, true}},
		},
		{
			name: "a grant without home ignores the binding",
			steps: seq(fillHome[:1], []step{
				{home, note("a", "r", q1, 1), Result{Freq: q1, Since: 1}, "", true},
				{home, grantReq("a", "r", 5), Result{Freq: 11, Since: 5}, "", true},
			}),
			asks: []ask{{home, Record{RecordGrant, 11, 5}, true}},
		},
		{
			name: "bound attempt refused, refused again for its generation, not for a higher one",
			steps: seq(fillHome, []step{
				fillQ1,
				{home, note("a", "r", q1, 1), Result{Freq: q1, Since: 1}, "", true},
				{q1, boundAttempt("a", "r", 1, 5), noFreq, `all 1 frequencies held: request "r" of "a" refused for generation 1`, true},
				{q1, boundAttempt("a", "r", 1, 6), noFreq, `request "r" of "a" refused for generation 1 (refused up to generation 1)`, false},
				// Rebind to q2, also full: refused there for generation 2.
				{home, note("a", "r", q2, 2), Result{Freq: q2, Since: 2}, "", true},
				fillQ2,
				{q2, boundAttempt("a", "r", 2, 7), noFreq, "refused for generation 2", true},
				// Generation 3 goes back to q1, which has room now: an
				// older refusal does not stop a newer generation.
				{q1, release("x", 20), Result{Freq: 20, Since: 1}, "", true},
				{home, note("a", "r", q1, 3), Result{Freq: q1, Since: 3}, "", true},
				{q1, boundAttempt("a", "r", 3, 8), Result{Freq: 20, Since: 8}, "", true},
				// A late copy of generation 1 is answered with that grant.
				{q1, boundAttempt("a", "r", 1, 9), Result{Freq: 20, Since: 8, Dup: true}, "", false},
			}),
			asks: []ask{
				{home, Record{RecordNote, q1, 3}, true}, {q1, Record{RecordGrant, 20, 8}, true},
				{q2, Record{RecordRefused, 2, 0}, true},
			},
		},
		{
			name: "a late copy of a refused attempt does not grant",
			steps: seq(fillHome, []step{
				fillQ1,
				{home, note("a", "r", q1, 1), Result{Freq: q1, Since: 1}, "", true},
				{q1, boundAttempt("a", "r", 1, 5), noFreq, "refused for generation 1", true},
				{home, note("a", "r", q2, 2), Result{Freq: q2, Since: 2}, "", true},
				{q2, boundAttempt("a", "r", 2, 6), Result{Freq: 30, Since: 6}, "", true},
				// q1 frees its frequency; the stalled copy of the first
				// attempt arrives: still refused, no second frequency.
				{q1, release("x", 20), Result{Freq: 20, Since: 1}, "", true},
				{q1, boundAttempt("a", "r", 1, 7), noFreq, "refused for generation 1 (refused up to generation 1)", false},
			}),
			asks: []ask{
				{home, Record{RecordNote, q2, 2}, true}, {q1, Record{RecordRefused, 1, 0}, true},
				{q2, Record{RecordGrant, 30, 6}, true},
			},
		},
		{
			name: "an older generation than the refused one is refused",
			steps: []step{
				fillQ1,
				{q1, boundAttempt("a", "r", 3, 5), noFreq, "refused for generation 3", true},
				{q1, release("x", 20), Result{Freq: 20, Since: 1}, "", true},
				{q1, boundAttempt("a", "r", 2, 6), noFreq, "refused for generation 2 (refused up to generation 3)", false},
				{q1, boundAttempt("a", "r", 4, 7), Result{Freq: 20, Since: 7}, "", true},
			},
			asks: []ask{{q1, Record{RecordGrant, 20, 7}, true}},
		},
		{
			name: "a refusal replaces a released grant; a higher refusal replaces a lower",
			steps: []step{
				{q1, boundAttempt("a", "r", 1, 5), Result{Freq: 20, Since: 5}, "", true},
				{q1, release("a", 20), Result{Freq: 20, Since: 5}, "", true},
				fillQ1,
				{q1, boundAttempt("a", "r", 1, 6), noFreq, "refused for generation 1", true},
				{q1, boundAttempt("a", "r", 2, 7), noFreq, "refused for generation 2", true},
			},
			asks: []ask{{q1, Record{RecordRefused, 2, 0}, true}},
		},
		{
			name: "a home attempt never records a refusal",
			steps: seq(fillHome, []step{
				{home, homeAttempt("a", "r", 5), noFreq, "all 2 frequencies held", false},
				{home, release("x", 11), Result{Freq: 11, Since: 1}, "", true},
				{home, homeAttempt("a", "r", 6), Result{Freq: 11, Since: 6}, "", true},
			}),
			asks: []ask{{home, Record{RecordGrant, 11, 6}, true}},
		},
		{
			name: "note: the first binding wins, a stale one returns it, g-1 advances",
			steps: []step{
				{home, note("a", "r", q1, 1), Result{Freq: q1, Since: 1}, "", true},
				// A concurrent binder of generation 1 to q2 loses.
				{home, note("a", "r", q2, 1), Result{Freq: q1, Since: 1}, "", false},
				// The same binding again changes nothing.
				{home, note("a", "r", q1, 1), Result{Freq: q1, Since: 1}, "", false},
				// Generation 3 skips one: it returns the binding in force.
				{home, note("a", "r", q2, 3), Result{Freq: q1, Since: 1}, "", false},
				{home, note("a", "r", q2, 2), Result{Freq: q2, Since: 2}, "", true},
				// A late binder of generation 2 loses to the winner.
				{home, note("a", "r", q1, 2), Result{Freq: q2, Since: 2}, "", false},
				{home, note("a", "r", q1, 1), Result{Freq: q2, Since: 2}, "", false},
				{home, note("a", "r", q1, 3), Result{Freq: q1, Since: 3}, "", true},
			},
			asks: []ask{{home, Record{RecordNote, q1, 3}, true}},
		},
		{
			name: "note with no binding above generation 1 is unavailable",
			steps: []step{
				{home, note("a", "r", q1, 2), Result{Err: freqd.ErrUnavailable}, `binding of request "r" of "a" is at generation 0, not 1; retry`, false},
				{home, note("a", "r", q1, 1), Result{Freq: q1, Since: 1}, "", true},
			},
			asks: []ask{{home, Record{RecordNote, q1, 1}, true}},
		},
		{
			name: "note after a home grant returns the grant",
			steps: []step{
				{home, homeAttempt("a", "r", 5), Result{Freq: 10, Since: 5}, "", true},
				{home, note("a", "r", q1, 1), Result{Freq: 10, Since: 5, Dup: true}, "", false},
				{home, note("a", "r", q1, 2), Result{Freq: 10, Since: 5, Dup: true}, "", false},
				{home, homeAttempt("a", "r", 6), Result{Freq: 10, Since: 5, Dup: true}, "", false},
			},
			asks: []ask{{home, Record{RecordGrant, 10, 5}, true}},
		},
		{
			name: "note over a released home grant binds generation 1",
			steps: []step{
				{home, homeAttempt("a", "r", 5), Result{Freq: 10, Since: 5}, "", true},
				{home, release("a", 10), Result{Freq: 10, Since: 5}, "", true},
				{home, note("a", "r", q1, 2), Result{Err: freqd.ErrUnavailable}, "at generation 0, not 1", false},
				{home, note("a", "r", q1, 1), Result{Freq: q1, Since: 1}, "", true},
			},
			asks: []ask{{home, Record{RecordNote, q1, 1}, true}},
		},
		{
			name: "note over a refusal binds generation 1",
			steps: []step{
				fillQ1,
				{q1, boundAttempt("a", "r", 2, 5), noFreq, "refused for generation 2", true},
				{q1, note("a", "r", q2, 2), Result{Err: freqd.ErrUnavailable}, "at generation 0, not 1", false},
				{q1, note("a", "r", q2, 1), Result{Freq: q2, Since: 1}, "", true},
			},
			asks: []ask{{q1, Record{RecordNote, q2, 1}, true}},
		},
		{
			name: "bindings are per client and request",
			steps: []step{
				{home, note("a", "r", q1, 1), Result{Freq: q1, Since: 1}, "", true},
				{home, homeAttempt("b", "r", 5), Result{Freq: 10, Since: 5}, "", true},
				{home, homeAttempt("a", "r2", 6), Result{Freq: 11, Since: 6}, "", true},
				{home, homeAttempt("a", "r", 7), Result{Freq: q1, Since: 1, Noted: true}, "", false},
			},
			asks: []ask{{home, Record{RecordNote, q1, 1}, true}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ps := []*Partition{New(home, 10, 11), New(q1, 20, 20), New(q2, 30, 30)}
			for i, st := range tt.steps {
				p := ps[st.in]
				v := p.Version()
				before, _ := p.Snapshot()
				got := p.Apply(st.cmd)
				w := st.want
				if w.Err != nil {
					if !errors.Is(got.Err, w.Err) || !strings.Contains(got.Err.Error(), st.errText) || got != (Result{Err: got.Err}) {
						t.Fatalf("step %d in %d: %v = %+v, want %v containing %q", i, st.in, st.cmd, got, w.Err, st.errText)
					}
				} else if got != w {
					t.Fatalf("step %d in %d: %v = %+v, want %+v", i, st.in, st.cmd, got, w)
				}
				if changed := p.Version() != v; changed != st.changed {
					t.Fatalf("step %d in %d: %v: version %d -> %d, want changed=%v", i, st.in, st.cmd, v, p.Version(), st.changed)
				}
				if after, _ := p.Snapshot(); !st.changed && string(after) != string(before) {
					t.Fatalf("step %d in %d: %v changed the state without changing the version", i, st.in, st.cmd)
				}
				if err := p.check(); err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
			}
			for _, a := range tt.asks {
				if rec, ok := ps[a.in].Request("a", "r"); rec != a.rec || ok != a.ok {
					t.Errorf("partition %d: Request(a, r) = %+v %v, want %+v %v", a.in, rec, ok, a.rec, a.ok)
				}
			}
			for _, p := range ps {
				snap, err := p.Snapshot()
				if err != nil {
					t.Fatal(err)
				}
				q, err := Restore(snap)
				if err != nil || !q.Equal(p) {
					t.Fatalf("partition %d: snapshot round trip: %v", p.ID(), err)
				}
			}
		})
	}
}

// TestSnapshotAllRecordKinds round-trips a window holding every record
// kind, notes of several generations included, and checks that Request
// reports each, and Equal tells apart a note's generation and a refused
// generation.
func TestSnapshotAllRecordKinds(t *testing.T) {
	build := func(noteGen, refusedGen uint32) *Partition {
		p := New(4, 10, 10)
		for _, c := range []Command{
			boundAttempt("a", "g", 1, 5), // a grant record, still held
			grantReq("b", "stale", 6),    // no room: records nothing
			note("a", "n1", 7, 1),
			boundAttempt("a", "x", refusedGen, 7), // full: a refusal
		} {
			p.Apply(c)
		}
		for g := uint32(1); g <= noteGen; g++ {
			p.Apply(note("a", "n", 3, g))
		}
		return p
	}
	p := build(3, 2)
	snap, err := p.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if snap[0] != snapshotVersion {
		t.Fatalf("snapshot version %d, want %d", snap[0], snapshotVersion)
	}
	q, err := Restore(snap)
	if err != nil || !q.Equal(p) {
		t.Fatalf("restore: %v", err)
	}
	again, _ := q.Snapshot()
	if string(again) != string(snap) {
		t.Fatal("snapshot of the restored partition differs")
	}
	for _, tc := range []struct {
		client, request string
		rec             Record
	}{
		{"a", "g", Record{RecordGrant, 10, 5}},
		{"a", "n1", Record{RecordNote, 7, 1}},
		{"a", "n", Record{RecordNote, 3, 3}},
		{"a", "x", Record{RecordRefused, 2, 0}},
	} {
		if rec, ok := q.Request(tc.client, tc.request); !ok || rec != tc.rec {
			t.Errorf("Request(%q, %q) = %+v %v, want %+v", tc.client, tc.request, rec, ok, tc.rec)
		}
	}
	if _, ok := q.Request("b", "stale"); ok {
		t.Error("a failed plain grant recorded a request")
	}
	if q.Requests() != 4 {
		t.Errorf("Requests() = %d, want 4", q.Requests())
	}
	// The restored partition carries on the protocol: the binding advances
	// from 3, the refusal holds.
	if res := q.Apply(note("a", "n", 9, 4)); res != (Result{Freq: 9, Since: 4}) {
		t.Errorf("note of generation 4 after restore: %+v", res)
	}
	if res := q.Apply(boundAttempt("a", "x", 2, 9)); !errors.Is(res.Err, freqd.ErrNoFrequency) {
		t.Errorf("refused generation after restore: %+v", res)
	}
	// Versions differ too, so compare windows directly for what Equal
	// must notice on its own.
	for _, other := range []*Partition{build(2, 2), build(3, 1)} {
		if other.window.equal(&p.window) {
			t.Error("window.equal missed a different generation")
		}
	}
}
