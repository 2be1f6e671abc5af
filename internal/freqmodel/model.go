// Package freqmodel is the sequential specification of a freqd pool, as a
// porcupine model, and a recorder for concurrent histories. Tests record
// every client call with its start and end time and check the history for
// linearizability: that some order of the calls, each taking effect at one
// instant between its start and end, explains every answer. That implies
// the promise freqd makes: no frequency is ever held by two clients.
package freqmodel

import (
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/freqd/freqd"
)

// Kind is the kind of a call.
type Kind uint8

// Call kinds.
const (
	Alloc     Kind = iota + 1 // allocate any frequency
	AllocFreq                 // allocate a given frequency
	Release                   // release a frequency
	Holder                    // who holds a frequency
)

func (k Kind) String() string {
	return [...]string{"?", "alloc", "allocFreq", "release", "holder"}[min(int(k), 4)]
}

// Input is a call.
type Input struct {
	Kind   Kind
	Client string
	Freq   uint32
}

// Result classifies an answer.
type Result uint8

// Results.
const (
	OK          Result = iota + 1
	Exhausted          // freqd.ErrNoFrequency
	AlreadyHeld        // freqd.ErrAlreadyHeld
	NotHeld            // freqd.ErrNotHeld
	NotHolder          // freqd.ErrNotHolder
)

func (r Result) String() string {
	return [...]string{"?", "ok", "exhausted", "already-held", "not-held", "not-holder"}[min(int(r), 5)]
}

// Output is an answer.
type Output struct {
	Result Result
	Freq   uint32 // granted frequency (Alloc)
	Held   bool   // Holder
	Holder string // Holder
}

// Classify maps a call's error to a Result. ok is false for errors the
// model does not explain (unavailable, network): such calls failed.
func Classify(err error) (r Result, ok bool) {
	switch {
	case err == nil:
		return OK, true
	case errors.Is(err, freqd.ErrNoFrequency):
		return Exhausted, true
	case errors.Is(err, freqd.ErrAlreadyHeld):
		return AlreadyHeld, true
	case errors.Is(err, freqd.ErrNotHeld):
		return NotHeld, true
	case errors.Is(err, freqd.ErrNotHolder):
		return NotHolder, true
	}
	return 0, false
}

// state maps each pool position to its holder ("" = free); never mutated.
type state []string

// Model returns the porcupine model of a pool holding freqs.
func Model(freqs []uint32) porcupine.Model {
	freqs = slices.Clone(freqs)
	slices.Sort(freqs)
	index := make(map[uint32]int, len(freqs))
	for i, f := range freqs {
		index[f] = i
	}
	return porcupine.Model{
		Init: func() interface{} { return make(state, len(freqs)) },
		Step: func(st, in, out interface{}) (bool, interface{}) {
			s, i, o := st.(state), in.(Input), out.(Output)
			set := func(pos int, v string) state {
				c := slices.Clone(s)
				c[pos] = v
				return c
			}
			switch i.Kind {
			case Alloc:
				switch o.Result {
				case OK:
					pos, ok := index[o.Freq]
					if !ok || s[pos] != "" {
						return false, s
					}
					return true, set(pos, i.Client)
				case Exhausted:
					return !slices.Contains(s, ""), s
				}
				return false, s
			case AllocFreq:
				pos, ok := index[i.Freq]
				if !ok {
					return false, s
				}
				switch o.Result {
				case OK:
					if s[pos] != "" && s[pos] != i.Client {
						return false, s
					}
					return o.Freq == i.Freq, set(pos, i.Client)
				case AlreadyHeld:
					return s[pos] != "" && s[pos] != i.Client, s
				}
				return false, s
			case Release:
				pos, ok := index[i.Freq]
				if !ok {
					return false, s
				}
				switch o.Result {
				case OK:
					if s[pos] != i.Client {
						return false, s
					}
					return true, set(pos, "")
				case NotHeld:
					return s[pos] == "", s
				case NotHolder:
					return s[pos] != "" && s[pos] != i.Client, s
				}
				return false, s
			case Holder:
				pos, ok := index[i.Freq]
				if !ok || o.Result != OK {
					return false, s
				}
				return o.Held == (s[pos] != "") && o.Holder == s[pos], s
			}
			return false, s
		},
		Equal: func(a, b interface{}) bool { return slices.Equal(a.(state), b.(state)) },
		Hash: func(st interface{}) uint64 {
			h := fnv.New64a()
			for _, v := range st.(state) {
				h.Write([]byte(v))
				h.Write([]byte{0})
			}
			return h.Sum64()
		},
		DescribeOperation: func(in, out interface{}) string {
			i, o := in.(Input), out.(Output)
			switch i.Kind {
			case Alloc:
				return fmt.Sprintf("alloc(%s) -> %s %d", i.Client, o.Result, o.Freq)
			case Holder:
				return fmt.Sprintf("holder(%d) -> %q", i.Freq, o.Holder)
			}
			return fmt.Sprintf("%s(%s, %d) -> %s", i.Kind, i.Client, i.Freq, o.Result)
		},
		DescribeState: func(st interface{}) string {
			var b strings.Builder
			for i, v := range st.(state) {
				if v != "" {
					fmt.Fprintf(&b, "%d:%s ", freqs[i], v)
				}
			}
			return b.String()
		},
	}
}

// Recorder collects a concurrent history. Safe for concurrent use.
type Recorder struct {
	mu    sync.Mutex
	start time.Time
	ops   []porcupine.Operation
}

// NewRecorder starts a history now.
func NewRecorder() *Recorder { return &Recorder{start: time.Now()} }

// Record adds one completed call by client (a small integer).
func (r *Recorder) Record(client int, in Input, call, ret time.Time, out Output) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops = append(r.ops, porcupine.Operation{
		ClientId: client, Input: in, Output: out,
		Call: call.Sub(r.start).Nanoseconds(), Return: ret.Sub(r.start).Nanoseconds(),
	})
}

// Operations returns the history recorded so far, ordered by call time.
func (r *Recorder) Operations() []porcupine.Operation {
	r.mu.Lock()
	defer r.mu.Unlock()
	ops := slices.Clone(r.ops)
	sort.Slice(ops, func(i, j int) bool { return ops[i].Call < ops[j].Call })
	return ops
}

// Check checks the history against the model of freqs within timeout. It
// returns an error describing the outcome unless it is linearizable.
func (r *Recorder) Check(freqs []uint32, timeout time.Duration) error {
	ops := r.Operations()
	res, _ := porcupine.CheckOperationsVerbose(Model(freqs), ops, timeout)
	switch res {
	case porcupine.Ok:
		return nil
	case porcupine.Illegal:
		return fmt.Errorf("history of %d operations is NOT linearizable", len(ops))
	default:
		return fmt.Errorf("linearizability check of %d operations timed out after %v (unknown)", len(ops), timeout)
	}
}
