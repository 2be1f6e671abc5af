package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	"github.com/freqd/freqd"
	"github.com/freqd/freqd/transport"
)

// Phases of a loop. Every op is counted in the phase current when it
// completes, so each op is counted exactly once.
const (
	phaseWarmup int32 = iota
	phaseMeasure
	phaseTail // measurement over: workers finish their round and clean up
)

// answerSentinels are the errors with which a freqd handler answers a
// client's call: the call was served, it is an op. (Node-to-node
// sentinels never reach a client; they would show as their connect code.)
var answerSentinels = []struct {
	err  error
	name string
}{
	{freqd.ErrNoFrequency, "no-frequency"},
	{freqd.ErrNotHeld, "not-held"},
	{freqd.ErrNotHolder, "not-holder"},
	{freqd.ErrAlreadyHeld, "already-held"},
	{freqd.ErrOutOfRange, "out-of-range"},
	{freqd.ErrInvalidClientID, "invalid-client-id"},
	{freqd.ErrInvalidArgument, "invalid-argument"},
}

// answered reports whether a call that returned err was answered by the
// server: success, an error a freqd handler sent (it carries a freqd
// reason), or one of the answer sentinels (servers that send only a code).
// Transport failures, timeouts and outcome-unknown errors are not.
func answered(err error) bool {
	if err == nil || transport.Answered(err) {
		return true
	}
	for _, s := range answerSentinels {
		if errors.Is(err, s.err) {
			return true
		}
	}
	return false
}

// maybeApplied reports whether a call that failed with err may still have
// been applied: it was not answered, and it is not known to have never
// been applied (freqd.ErrUnavailable without an unknown outcome, such as
// a refused connection).
func maybeApplied(err error) bool {
	if err == nil || answered(err) {
		return false
	}
	return errors.Is(err, freqd.ErrOutcomeUnknown) || !errors.Is(err, freqd.ErrUnavailable)
}

// errorCode names err for the error table: the freqd sentinel it matches,
// else the connect code, else "other".
func errorCode(err error) string {
	for _, s := range answerSentinels {
		if errors.Is(err, s.err) {
			return s.name
		}
	}
	code := connect.CodeOf(err)
	switch {
	case errors.Is(err, context.DeadlineExceeded) || code == connect.CodeDeadlineExceeded:
		return "deadline_exceeded"
	case errors.Is(err, context.Canceled) || code == connect.CodeCanceled:
		return "canceled"
	case errors.Is(err, freqd.ErrUnavailable):
		return "unavailable"
	case errors.Is(err, freqd.ErrOutcomeUnknown):
		var ce *connect.Error
		if errors.As(err, &ce) {
			return "outcome-unknown/" + ce.Code().String()
		}
		return "outcome-unknown"
	}
	var ce *connect.Error
	if errors.As(err, &ce) {
		return ce.Code().String()
	}
	return "other"
}

// engine runs one closed loop: warm-up, measurement, tail.
type engine struct {
	phase    atomic.Int32
	hist     *Histogram
	measOps  atomic.Int64 // ops in the measured phase, for the live line
	measErrs atomic.Int64
	looping  atomic.Int64 // workers still in their loop
	allQuit  chan struct{}
	quitOnce sync.Once
}

// meter is one worker's counters; only that worker writes them, and they
// are read after it returns.
type meter struct {
	e     *engine
	shard int

	warmupOps, ops, tailOps int64
	errs                    int64 // measured errors (answered or not)
	failed                  int64 // measured calls not answered
	byCode                  map[string]int64
	cleanupCalls            int64
	cleanupErrs             int64
	leftHeld                int64
	quit                    bool
}

// stopping reports whether the worker should end its loop.
func (m *meter) stopping(ctx context.Context) bool {
	return m.e.phase.Load() == phaseTail || ctx.Err() != nil
}

// record counts one call that took lat and returned err; it reports
// whether the call was answered.
func (m *meter) record(lat time.Duration, err error) bool {
	ok := answered(err)
	switch m.e.phase.Load() {
	case phaseWarmup:
		if ok {
			m.warmupOps++
		}
	case phaseMeasure:
		if ok {
			m.ops++
			m.e.measOps.Add(1)
			m.e.hist.Record(m.shard, lat)
		} else {
			m.failed++
		}
		if err != nil {
			m.errs++
			m.e.measErrs.Add(1)
			m.byCode[errorCode(err)]++
		}
	default:
		if ok {
			m.tailOps++
		}
	}
	return ok
}

// cleanup counts one clean-up call; it reports whether it was answered.
func (m *meter) cleanup(err error) bool {
	ok := answered(err)
	if ok {
		m.cleanupCalls++
	}
	if err != nil {
		m.cleanupErrs++
	}
	return ok
}

// loopDone marks the end of the worker's loop (it may still clean up).
func (m *meter) loopDone() {
	if m.quit {
		return
	}
	m.quit = true
	if m.e.looping.Add(-1) == 0 {
		m.e.quitOnce.Do(func() { close(m.e.allQuit) })
	}
}

// workFunc is one worker: it loops (calling m.record per op) until
// m.stopping, then returns a clean-up (or nil), run once every worker has
// returned from its loop.
type workFunc func(ctx context.Context, i int, m *meter) (cleanup func())

// loopSpec shapes one loop.
type loopSpec struct {
	clients          int
	warmup, duration time.Duration
	live             io.Writer // one line per second, or nil
	// onStart and onEnd run as the measured period starts and ends
	// (CPU samples).
	onStart, onEnd func()
}

// loopResult is what a loop measured.
type loopResult struct {
	measured    time.Duration
	interrupted bool
	allQuit     bool // every worker ended its loop by itself, before the end
	hist        *HistSnapshot
	total       meter // the workers' meters summed
}

// runLoop runs work on spec.clients goroutines through a warm-up and the
// measured period, and returns once every worker has returned.
func runLoop(ctx context.Context, spec loopSpec, work workFunc) loopResult {
	e := &engine{hist: NewHistogram(), allQuit: make(chan struct{})}
	e.looping.Store(int64(spec.clients))
	meters := make([]*meter, spec.clients)
	var wg sync.WaitGroup
	for i := range meters {
		m := &meter{e: e, shard: i, byCode: map[string]int64{}}
		meters[i] = m
		wg.Go(func() {
			cleanup := work(ctx, i, m)
			m.loopDone()
			if cleanup != nil {
				// Clean up only once every client has left its loop, so
				// that no release feeds a client still allocating.
				<-e.allQuit
				cleanup()
			}
		})
	}

	var res loopResult
	wait := func(d time.Duration) bool { // false: interrupted or all quit
		if d <= 0 {
			return ctx.Err() == nil
		}
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return true
		case <-ctx.Done():
		case <-e.allQuit:
			res.allQuit = true
		}
		return false
	}
	if wait(spec.warmup) {
		if spec.onStart != nil {
			spec.onStart()
		}
		e.phase.Store(phaseMeasure)
		t0 := time.Now()
		end := time.NewTimer(spec.duration)
		tick := time.NewTicker(time.Second)
		prevOps, prevT := int64(0), t0
	measure:
		for {
			select {
			case <-end.C:
				break measure
			case <-ctx.Done():
				break measure
			case <-e.allQuit:
				res.allQuit = true
				break measure
			case now := <-tick.C:
				if spec.live != nil {
					ops := e.measOps.Load()
					rate := float64(ops-prevOps) / now.Sub(prevT).Seconds()
					fmt.Fprintf(spec.live, "[%4.0fs] %10.0f ops/s  p99 %-9s errors %d\n",
						now.Sub(t0).Seconds(), rate, fmtNanos(e.hist.Snapshot().Quantile(0.99)), e.measErrs.Load())
					prevOps, prevT = ops, now
				}
			}
		}
		end.Stop()
		tick.Stop()
		e.phase.Store(phaseTail)
		res.measured = time.Since(t0)
		if spec.onEnd != nil {
			spec.onEnd()
		}
	} else {
		e.phase.Store(phaseTail)
	}
	wg.Wait()

	res.interrupted = ctx.Err() != nil
	res.hist = e.hist.Snapshot()
	res.total.byCode = map[string]int64{}
	for _, m := range meters {
		t := &res.total
		t.warmupOps += m.warmupOps
		t.ops += m.ops
		t.tailOps += m.tailOps
		t.errs += m.errs
		t.failed += m.failed
		t.cleanupCalls += m.cleanupCalls
		t.cleanupErrs += m.cleanupErrs
		t.leftHeld += m.leftHeld
		for k, v := range m.byCode {
			t.byCode[k] += v
		}
	}
	return res
}

// fmtNanos prints a latency with three significant digits.
func fmtNanos(ns int64) string {
	d := time.Duration(ns)
	switch {
	case d < time.Microsecond:
		return fmt.Sprintf("%dns", ns)
	case d < time.Millisecond:
		return trimUnit(float64(ns)/1e3, "µs")
	case d < time.Second:
		return trimUnit(float64(ns)/1e6, "ms")
	default:
		return trimUnit(float64(ns)/1e9, "s")
	}
}

func trimUnit(v float64, unit string) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f%s", v, unit)
	case v >= 10:
		return fmt.Sprintf("%.1f%s", v, unit)
	default:
		return fmt.Sprintf("%.2f%s", v, unit)
	}
}
