// Package freqmodel is the sequential specification of a freqd pool, as a
// porcupine model, and a recorder for concurrent histories. Tests record
// every client call with its start and end time and check the history for
// linearizability: that some order of the calls, each taking effect at one
// instant between its start and end, explains every answer. That implies
// the promise freqd makes: no frequency is ever held by two clients.
//
// A call whose outcome is unknown (a timeout, or an Unavailable after
// which it may still have been applied) is recorded with RecordUnknown:
// it has no end, so it may take effect at any instant after its start, or
// never, and the model allows every outcome it could have had. The model
// is therefore nondeterministic (porcupine.NondeterministicModel); Model
// returns it converted to a porcupine.Model, whose states are sets of
// pool states.
//
// Unknown calls are cheap to check when the history is linearizable:
// 5,000 calls over 16 frequencies with 50 unknown check in tens of
// milliseconds with 8 concurrent clients and in 0.3-2 s with 16
// (TestCheckerSpeed). But they make a violation expensive to prove: a
// call that never returns stays a candidate at every later point, so the
// checker must try each pending call both applied and not yet applied
// everywhere after its start. With a double grant appended to 400 calls
// over 4 frequencies, proving it took 1 ms with no unknown call, 3 ms with
// 3, 0.1 s with 7, 1 s with 9, 8 s with 11, and over a minute with 13. A
// check that runs out of time returns an error, so a violation is never
// passed, only reported as a timeout rather than as not linearizable.
// Keep unknown calls rare where a violation must be diagnosed.
package freqmodel

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/cespare/xxhash/v2"

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

// String returns the kind's name, or "?" for an unknown kind.
func (k Kind) String() string {
	names := [...]string{"?", "alloc", "allocFreq", "release", "holder"}
	if int(k) >= len(names) {
		return "?"
	}
	return names[k]
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
	// Unknown: the call may or may not have taken effect, and its answer
	// is lost. Record such calls with Recorder.RecordUnknown.
	Unknown
)

// String returns the result's name, or "?" for an unknown result.
func (r Result) String() string {
	names := [...]string{"?", "ok", "exhausted", "already-held", "not-held", "not-holder", "unknown"}
	if int(r) >= len(names) {
		return "?"
	}
	return names[r]
}

// Output is an answer.
type Output struct {
	Result Result
	Freq   uint32 // granted frequency (Alloc)
	Held   bool   // Holder
	Holder string // Holder
}

// Classify maps a call's error to a Result. ok is false for errors the
// model does not explain (unavailable, network, timeout): the caller
// either treats the call as failed or, if it may have been applied,
// records it with Recorder.RecordUnknown.
func Classify(err error) (r Result, ok bool) {
	switch {
	case err == nil:
		return OK, true
	case errors.Is(err, freqd.ErrOutcomeUnknown):
		// Checked first: such an error may also wrap a definite answer of
		// a later attempt, which does not tell what the first one did.
		return 0, false
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

// state is a pool state: 2 bytes per pool position (in ascending frequency
// order), the little-endian number of its holder, 0 = free. It is a string
// so that states are immutable, compared with ==, and hold no pointers for
// the garbage collector to scan: the checker keeps many of them.
type state string

// pool is what the model knows of a pool: its frequencies and the numbers
// given to client ids.
type pool struct {
	freqs []uint32       // ascending
	index map[uint32]int // frequency -> position

	mu      sync.Mutex // guards names and numbers; Step may run on several goroutines
	names   []string   // number -> client id; names[0] = "" (free)
	numbers map[string]uint16
}

// number returns the number of client id, giving it one if new. The
// numbering depends on the order steps run, but only equality of numbers
// matters, and that is the equality of ids.
func (p *pool) number(id string) uint16 {
	if id == "" {
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	n, ok := p.numbers[id]
	if !ok {
		if len(p.names) > math.MaxUint16 {
			panic(fmt.Sprintf("freqmodel: more than %d client ids", math.MaxUint16))
		}
		n = uint16(len(p.names))
		p.names = append(p.names, id)
		p.numbers[id] = n
	}
	return n
}

func (p *pool) name(n uint16) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.names[n]
}

// at returns the holder number of position pos in s.
func at(s state, pos int) uint16 { return uint16(s[2*pos]) | uint16(s[2*pos+1])<<8 }

// set returns s with position pos held by client number n.
func set(s state, pos int, n uint16) state {
	b := []byte(s)
	b[2*pos], b[2*pos+1] = byte(n), byte(n>>8)
	return state(b)
}

// Model returns the porcupine model of a pool holding freqs: the
// nondeterministic model of NondeterministicModel, converted with ToModel.
func Model(freqs []uint32) porcupine.Model {
	nm := NondeterministicModel(freqs)
	return nm.ToModel()
}

// NondeterministicModel returns the sequential specification of a pool
// holding freqs. A call with a definite Output has at most one next state
// (none if the answer is impossible). A call with Result Unknown has
// several: unchanged, or any one effect the call could have had:
//
//   - Alloc: any one free frequency now held by the client.
//   - AllocFreq: the frequency held by the client, if it was free (or
//     already the client's, which is unchanged).
//   - Release: the frequency free, if the client held it.
//   - Holder: unchanged only.
func NondeterministicModel(freqs []uint32) porcupine.NondeterministicModel {
	p := &pool{freqs: slices.Clone(freqs), names: []string{""}, numbers: map[string]uint16{}}
	slices.Sort(p.freqs)
	p.index = make(map[uint32]int, len(p.freqs))
	for i, f := range p.freqs {
		p.index[f] = i
	}
	empty := state(make([]byte, 2*len(p.freqs)))
	return porcupine.NondeterministicModel{
		Init: func() []interface{} { return []interface{}{empty} },
		Step: func(st, in, out interface{}) []interface{} {
			s, i, o := st.(state), in.(Input), out.(Output)
			if o.Result == Unknown {
				return p.unknownStep(s, i)
			}
			if ok, next := p.definiteStep(s, i, o); ok {
				return []interface{}{next}
			}
			return nil
		},
		Equal: func(a, b interface{}) bool { return a.(state) == b.(state) },
		Hash:  func(st interface{}) uint64 { return xxhash.Sum64String(string(st.(state))) },
		DescribeOperation: func(in, out interface{}) string {
			i, o := in.(Input), out.(Output)
			switch {
			case o.Result == Unknown && i.Kind == Alloc:
				return fmt.Sprintf("alloc(%s) -> unknown", i.Client)
			case o.Result == Unknown:
				return fmt.Sprintf("%s(%s, %d) -> unknown", i.Kind, i.Client, i.Freq)
			case i.Kind == Alloc:
				return fmt.Sprintf("alloc(%s) -> %s %d", i.Client, o.Result, o.Freq)
			case i.Kind == Holder:
				return fmt.Sprintf("holder(%d) -> %q", i.Freq, o.Holder)
			}
			return fmt.Sprintf("%s(%s, %d) -> %s", i.Kind, i.Client, i.Freq, o.Result)
		},
		DescribeState: func(st interface{}) string {
			s := st.(state)
			var b strings.Builder
			for pos, f := range p.freqs {
				if n := at(s, pos); n != 0 {
					fmt.Fprintf(&b, "%d:%s ", f, p.name(n))
				}
			}
			return b.String()
		},
	}
}

// unknownStep returns every state a call with an unknown outcome may leave:
// s itself first, then each effect it could have had.
func (p *pool) unknownStep(s state, i Input) []interface{} {
	next := []interface{}{s}
	c := p.number(i.Client)
	switch i.Kind {
	case Alloc:
		for pos := range p.freqs {
			if at(s, pos) == 0 {
				next = append(next, set(s, pos, c))
			}
		}
	case AllocFreq:
		if pos, ok := p.index[i.Freq]; ok && at(s, pos) == 0 {
			next = append(next, set(s, pos, c))
		}
	case Release:
		if pos, ok := p.index[i.Freq]; ok && c != 0 && at(s, pos) == c {
			next = append(next, set(s, pos, 0))
		}
	}
	return next
}

// definiteStep is the deterministic step for a call with a known answer.
func (p *pool) definiteStep(s state, i Input, o Output) (bool, state) {
	c := p.number(i.Client)
	switch i.Kind {
	case Alloc:
		switch o.Result {
		case OK:
			pos, ok := p.index[o.Freq]
			if !ok || at(s, pos) != 0 {
				return false, s
			}
			return true, set(s, pos, c)
		case Exhausted:
			for pos := range p.freqs {
				if at(s, pos) == 0 {
					return false, s
				}
			}
			return true, s
		}
		return false, s
	case AllocFreq:
		pos, ok := p.index[i.Freq]
		if !ok {
			return false, s
		}
		h := at(s, pos)
		switch o.Result {
		case OK:
			if h != 0 && h != c {
				return false, s
			}
			return o.Freq == i.Freq, set(s, pos, c)
		case AlreadyHeld:
			return h != 0 && h != c, s
		}
		return false, s
	case Release:
		pos, ok := p.index[i.Freq]
		if !ok {
			return false, s
		}
		h := at(s, pos)
		switch o.Result {
		case OK:
			if h != c {
				return false, s
			}
			return true, set(s, pos, 0)
		case NotHeld:
			return h == 0, s
		case NotHolder:
			return h != 0 && h != c, s
		}
		return false, s
	case Holder:
		pos, ok := p.index[i.Freq]
		if !ok || o.Result != OK {
			return false, s
		}
		h := at(s, pos)
		return o.Held == (h != 0) && p.number(o.Holder) == h, s
	}
	return false, s
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

// RecordUnknown adds a call by client, started at call, whose outcome is
// unknown: it may have taken effect at any later instant, or never. Its
// return time is "never" (math.MaxInt64, after every other event; the
// checker then linearizes it anywhere after call, or last, where the
// unchanged outcome is always possible) and its Output is Result Unknown.
func (r *Recorder) RecordUnknown(client int, in Input, call time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops = append(r.ops, porcupine.Operation{
		ClientId: client, Input: in, Output: Output{Result: Unknown},
		Call: call.Sub(r.start).Nanoseconds(), Return: math.MaxInt64,
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
// returns an error describing the outcome unless it is linearizable; a
// timeout is an error too (see the package doc on unknown calls).
func (r *Recorder) Check(freqs []uint32, timeout time.Duration) error {
	ops := r.Operations()
	// Not CheckOperationsVerbose: its partial linearizations cost
	// O(depth) on every backtrack, and the answer is all we use.
	res := porcupine.CheckOperationsTimeout(Model(freqs), ops, timeout)
	switch res {
	case porcupine.Ok:
		return nil
	case porcupine.Illegal:
		return fmt.Errorf("history of %d operations is NOT linearizable", len(ops))
	default:
		unknown := 0
		for _, op := range ops {
			if op.Output.(Output).Result == Unknown {
				unknown++
			}
		}
		return fmt.Errorf("linearizability check of %d operations (%d of unknown outcome, each making a violation slower to prove) timed out after %v: result unknown",
			len(ops), unknown, timeout)
	}
}
