package node

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/freqd/freqd"
	"github.com/freqd/freqd/client"
	"github.com/freqd/freqd/internal/freqmodel"
)

// workload drives concurrent clients against a cluster, records the
// history for the linearizability check, and remembers what each client
// was acknowledged to hold.
type workload struct {
	t     testing.TB
	freqs []uint32
	rec   *freqmodel.Recorder

	ops      atomic.Int64
	failures atomic.Int64
	errMu    sync.Mutex
	errs     []error // first few unexplained failures

	heldMu sync.Mutex
	held   map[string]map[uint32]time.Time // client -> acknowledged holdings, with their grant times
	// With tolerant set (faults are injected), calls that fail without
	// effect are counted, not failures, and calls whose outcome is unknown
	// are recorded as such. Guarded by heldMu: uncertain frequencies and
	// clients with an allocation of unknown outcome.
	tolerant     bool
	unavailable  atomic.Int64
	unknowns     atomic.Int64
	uncertain    map[uint32]bool
	uncertainAny map[string]bool
}

func newWorkload(t testing.TB, c *testCluster) *workload {
	var freqs []uint32
	for _, sp := range c.layout.Spans() {
		for f := uint64(sp.First); f <= uint64(sp.Last); f++ {
			freqs = append(freqs, uint32(f))
		}
	}
	return &workload{t: t, freqs: freqs, rec: freqmodel.NewRecorder(), held: make(map[string]map[uint32]time.Time),
		uncertain: make(map[uint32]bool), uncertainAny: make(map[string]bool)}
}

func (w *workload) fail(err error) {
	w.failures.Add(1)
	w.errMu.Lock()
	defer w.errMu.Unlock()
	if len(w.errs) < 40 {
		w.errs = append(w.errs, err)
	}
}

// run starts `clients` workers, worker i talking first to addrs[i%len],
// until ctx ends or each has made maxOps calls. It blocks until all stop.
func (w *workload) run(ctx context.Context, addrs []string, clients, maxOps int, seed uint64) {
	var wg sync.WaitGroup
	for i := 0; i < clients; i++ {
		rot := append(slices.Clone(addrs[i%len(addrs):]), addrs[:i%len(addrs)]...)
		cl, err := client.New(rot)
		if err != nil {
			w.t.Fatal(err)
		}
		id := fmt.Sprintf("c%d", i)
		w.heldMu.Lock()
		if w.held[id] == nil {
			w.held[id] = make(map[uint32]time.Time)
		}
		w.heldMu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.worker(ctx, cl, i, id, maxOps, rand.New(rand.NewPCG(seed, uint64(i))))
		}()
	}
	wg.Wait()
}

func (w *workload) mine(id string) []uint32 {
	w.heldMu.Lock()
	defer w.heldMu.Unlock()
	var out []uint32
	for f := range w.held[id] {
		out = append(out, f)
	}
	slices.Sort(out)
	return out
}

// since returns the grant time of id's acknowledged holding of f.
func (w *workload) since(id string, f uint32) (time.Time, bool) {
	w.heldMu.Lock()
	defer w.heldMu.Unlock()
	t, ok := w.held[id][f]
	return t, ok
}

func (w *workload) setHeld(id string, f uint32, on bool, since time.Time) {
	w.heldMu.Lock()
	defer w.heldMu.Unlock()
	if on {
		w.held[id][f] = since
	} else {
		delete(w.held[id], f)
	}
}

func (w *workload) worker(ctx context.Context, cl *client.Client, num int, id string, maxOps int, rnd *rand.Rand) {
	for k := 0; k < maxOps && ctx.Err() == nil; k++ {
		mine := w.mine(id)
		var in freqmodel.Input
		r := rnd.IntN(100)
		switch {
		case r < 40 && len(mine) < 3:
			in = freqmodel.Input{Kind: freqmodel.Alloc, Client: id}
		case r < 50:
			in = freqmodel.Input{Kind: freqmodel.AllocFreq, Client: id, Freq: w.freqs[rnd.IntN(len(w.freqs))]}
		case r < 80 && len(mine) > 0:
			in = freqmodel.Input{Kind: freqmodel.Release, Client: id, Freq: mine[rnd.IntN(len(mine))]}
		case r < 88:
			in = freqmodel.Input{Kind: freqmodel.Release, Client: id, Freq: w.freqs[rnd.IntN(len(w.freqs))]}
		default:
			in = freqmodel.Input{Kind: freqmodel.Holder, Freq: w.freqs[rnd.IntN(len(w.freqs))]}
		}
		w.do(ctx, cl, num, in)
	}
}

// do makes one call and records it.
func (w *workload) do(ctx context.Context, cl *client.Client, num int, in freqmodel.Input) {
	// Calls run to completion even when the test stops the workload: a
	// cancelled call's outcome is unknown, which would blur the final check.
	cctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	start := time.Now()
	var out freqmodel.Output
	var err error
	var since time.Time
	switch in.Kind {
	case freqmodel.Alloc:
		var g client.Grant
		g, err = cl.Allocate(cctx, in.Client)
		out.Freq, since = g.Frequency, g.Since
	case freqmodel.AllocFreq:
		var g client.Grant
		g, err = cl.AllocateFrequency(cctx, in.Client, in.Freq)
		out.Freq, since = g.Frequency, g.Since
	case freqmodel.Release:
		// A holding of ours is released by naming its grant, so a late
		// copy of the call cannot free a later grant (docs/replication.md).
		if since, ok := w.since(in.Client, in.Freq); ok {
			err = cl.ReleaseGrant(cctx, in.Client, client.Grant{Frequency: in.Freq, Since: since})
		} else {
			err = cl.Release(cctx, in.Client, in.Freq)
		}
	case freqmodel.Holder:
		var h client.Holding
		h, err = cl.Holder(cctx, in.Freq)
		out.Held, out.Holder = h.Held, h.ClientID
	}
	end := time.Now()
	w.ops.Add(1)
	res, ok := freqmodel.Classify(err)
	switch {
	case ok:
	case w.tolerant && errors.Is(err, freqd.ErrUnavailable):
		w.unavailable.Add(1) // not applied
		return
	case w.tolerant:
		w.unknowns.Add(1)
		w.rec.RecordUnknown(num, in, start)
		w.heldMu.Lock()
		if in.Kind == freqmodel.Alloc {
			w.uncertainAny[in.Client] = true
		} else if in.Kind != freqmodel.Holder {
			w.uncertain[in.Freq] = true
		}
		w.heldMu.Unlock()
		return
	default:
		w.fail(fmt.Errorf("%s by %s (%d): %w", in.Kind, in.Client, in.Freq, err))
		return
	}
	out.Result = res
	w.rec.Record(num, in, start, end, out)
	if res == freqmodel.OK {
		switch in.Kind {
		case freqmodel.Alloc, freqmodel.AllocFreq:
			w.setHeld(in.Client, out.Freq, true, since)
		case freqmodel.Release:
			w.setHeld(in.Client, in.Freq, false, time.Time{})
		}
	}
}

// check fails the test on any unexplained failure, a history that is not
// linearizable, or a cluster whose holders differ from what clients were
// acknowledged (an allocation lost or doubled). Holder is asked of every
// node in addrs, which must agree.
func (w *workload) check(ctx context.Context, addrs []string) {
	t := w.t
	t.Helper()
	if n := w.failures.Load(); n > 0 {
		t.Errorf("%d of %d calls failed; first: %v", n, w.ops.Load(), errors.Join(w.errs...))
	}
	want := make(map[uint32]string)
	w.heldMu.Lock()
	for id, fs := range w.held {
		for f := range fs {
			if other, dup := want[f]; dup {
				t.Errorf("frequency %d acknowledged to both %s and %s", f, other, id)
			}
			want[f] = id
		}
	}
	w.heldMu.Unlock()
	for _, a := range addrs {
		cl, err := client.New([]string{a})
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range w.freqs {
			start := time.Now()
			h, err := cl.Holder(ctx, f)
			if err != nil {
				t.Errorf("holder(%d) via %s: %v", f, a, err)
				continue
			}
			w.rec.Record(1<<20, freqmodel.Input{Kind: freqmodel.Holder, Freq: f}, start, time.Now(), freqmodel.Output{Result: freqmodel.OK, Held: h.Held, Holder: h.ClientID})
			if h.ClientID == want[f] && h.Held == (want[f] != "") {
				continue
			}
			// Only a call of unknown outcome explains a difference: one on
			// this frequency, or an allocation of any by the holder found.
			w.heldMu.Lock()
			explained := w.uncertain[f] || want[f] == "" && w.uncertainAny[h.ClientID]
			w.heldMu.Unlock()
			if !explained {
				t.Errorf("holder(%d) via %s = %q (held %v), clients were acknowledged %q", f, a, h.ClientID, h.Held, want[f])
			}
		}
	}
	if err := w.rec.Check(w.freqs, 120*time.Second); err != nil {
		t.Errorf("porcupine: %v", err)
	}
	t.Logf("%d calls (%d unavailable, %d of unknown outcome), %d recorded in the history with the final reads, linearizable",
		w.ops.Load(), w.unavailable.Load(), w.unknowns.Load(), len(w.rec.Operations()))
}

// isErr reports whether err matches target, for table tests.
func isErr(err, target error) bool {
	if target == nil {
		return err == nil
	}
	return errors.Is(err, target)
}

var _ = freqd.ErrNoFrequency
