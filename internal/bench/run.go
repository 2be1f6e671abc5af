package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"time"

	"github.com/freqd/freqd"
	"github.com/freqd/freqd/client"
)

// cleanupTimeout bounds each client's release of what it still holds.
const cleanupTimeout = 30 * time.Second

// releaseAllAbove is how many held grants make the clean-up try one
// ReleaseAll before releasing grants one by one.
const releaseAllAbove = 64

// span is one range of the pool.
type span struct{ first, last uint32 }

// pool picks random frequencies of the pool.
type pool struct {
	spans []span
	total uint64
}

func (p *pool) pick() uint32 {
	r := rand.Uint64N(p.total)
	for _, s := range p.spans {
		n := uint64(s.last-s.first) + 1
		if r < n {
			return s.first + uint32(r)
		}
		r -= n
	}
	return p.spans[len(p.spans)-1].last // not reached
}

func newPool(spans []span) (*pool, error) {
	p := &pool{}
	for _, s := range spans {
		if s.last < s.first {
			continue
		}
		p.spans = append(p.spans, s)
		p.total += uint64(s.last-s.first) + 1
	}
	if p.total == 0 {
		return nil, errors.New("the pool is empty")
	}
	return p, nil
}

// fetchPool asks the cluster for the pool's ranges: Status, else Ring.
func fetchPool(ctx context.Context, cfg *Config) (*pool, error) {
	c, closeConns, err := newClient(cfg.Addrs)
	if err != nil {
		return nil, err
	}
	defer closeConns()
	cctx, cancel := context.WithTimeout(ctx, cfg.CallTimeout)
	defer cancel()
	st, serr := c.Status(cctx)
	if serr == nil {
		var spans []span
		for _, r := range st.GetRanges() {
			spans = append(spans, span{r.GetFirst(), r.GetLast()})
		}
		if p, err := newPool(spans); err == nil {
			return p, nil
		}
	}
	rg, rerr := c.Ring(cctx)
	if rerr != nil {
		return nil, fmt.Errorf("reading the pool bounds: status: %v; ring: %w", serr, rerr)
	}
	var spans []span
	for _, p := range rg.GetPartitions() {
		spans = append(spans, span{p.GetFirst(), p.GetLast()})
	}
	p, err := newPool(spans)
	if err != nil {
		return nil, fmt.Errorf("reading the pool bounds: %w", err)
	}
	return p, nil
}

// rotate returns addrs starting at element i mod len, so that clients
// spread their first calls (and, as the client sticks to the node that
// last answered, their load) over the nodes.
func rotate(addrs []string, i int) []string {
	k := i % len(addrs)
	return append(append([]string(nil), addrs[k:]...), addrs[:k]...)
}

// newRunID is a short random id for the clients' ids.
func newRunID() string { return strconv.FormatUint(rand.Uint64()&0xffffff, 16) }

// ClientID is the id of client i of run runID.
func ClientID(runID string, i int) string { return fmt.Sprintf("bench-%s-%d", runID, i) }

// mainWork is the worker of the main measurement.
func mainWork(cfg *Config, runID string, p *pool) workFunc {
	return func(ctx context.Context, i int, m *meter) func() {
		c, closeConns, err := newClient(rotate(cfg.Addrs, i))
		if err != nil {
			m.record(0, err)
			return nil
		}
		id := ClientID(runID, i)
		var held []client.Grant
		op := func(fn func(ctx context.Context) error) error {
			cctx, cancel := context.WithTimeout(ctx, cfg.CallTimeout)
			defer cancel()
			t := time.Now()
			err := fn(cctx)
			m.record(time.Since(t), err)
			return err
		}
		alloc := func(freq *uint32) (client.Grant, error) {
			var g client.Grant
			err := op(func(ctx context.Context) (err error) {
				g, err = c.AllocateWith(ctx, client.AllocateRequest{ClientID: id, Frequency: freq, TTL: cfg.TTL})
				return err
			})
			return g, err
		}
		release := func(g client.Grant) {
			err := op(func(ctx context.Context) error { return c.ReleaseGrant(ctx, id, g) })
			if maybeApplied(err) {
				held = append(held, g) // its outcome is unknown: release it again at the end
			}
		}
		for !m.stopping(ctx) {
			switch cfg.Mix {
			case MixAllocRelease:
				if g, err := alloc(nil); err == nil {
					release(g)
				} else if maybeApplied(err) {
					held = append(held, client.Grant{}) // outcome unknown: ReleaseAll at the end
				}
			case MixAlloc:
				g, err := alloc(nil)
				switch {
				case err == nil:
					held = append(held, g)
				case errors.Is(err, freqd.ErrNoFrequency):
					return cleanupFunc(ctx, cfg.CallTimeout, c, id, held, m, closeConns)
				case maybeApplied(err):
					held = append(held, client.Grant{})
				}
			case MixSpecific:
				f := p.pick()
				if g, err := alloc(&f); err == nil {
					release(g)
				} else if maybeApplied(err) {
					held = append(held, client.Grant{})
				}
			case MixHolder:
				f := p.pick()
				_ = op(func(ctx context.Context) error { _, err := c.Holder(ctx, f); return err })
			}
		}
		return cleanupFunc(ctx, cfg.CallTimeout, c, id, held, m, closeConns)
	}
}

// cleanupFunc releases, best effort, what client id may still hold: held
// lists its grants, a zero Grant standing for an allocation whose outcome
// is unknown (only ReleaseAll can find those).
func cleanupFunc(ctx context.Context, callTimeout time.Duration, c *client.Client, id string, held []client.Grant, m *meter, closeConns func()) func() {
	return func() {
		defer closeConns()
		if len(held) == 0 {
			return
		}
		// Clean up even after Ctrl-C, within bounds.
		all, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		call := func(fn func(context.Context) error) bool {
			cctx, cancel := context.WithTimeout(all, callTimeout)
			defer cancel()
			err := fn(cctx)
			return m.cleanup(err) && err == nil
		}
		unknown := 0
		for _, g := range held {
			if g.Since.IsZero() {
				unknown++
			}
		}
		if unknown > 0 || len(held) > releaseAllAbove {
			if call(func(ctx context.Context) error { _, err := c.ReleaseAll(ctx, id); return err }) {
				return
			}
			m.leftHeld += int64(unknown) // only ReleaseAll could find those
		}
		for _, g := range held {
			if g.Since.IsZero() {
				continue
			}
			if all.Err() != nil {
				m.leftHeld++
				continue
			}
			if !call(func(ctx context.Context) error {
				err := c.ReleaseGrant(ctx, id, g)
				if errors.Is(err, freqd.ErrNotHeld) || errors.Is(err, freqd.ErrNotHolder) {
					return nil // not ours any more (a lease lapsed, or an earlier attempt freed it)
				}
				return err
			}) {
				m.leftHeld++
			}
		}
	}
}

// cpuSampler measures CPU over the measured period.
type cpuSampler struct {
	hz            uint64
	procs         []serverProc
	before, after map[int]uint64 // by pid; 0 is this process
	notes         []string
}

const selfKey = 0

func (s *cpuSampler) sample() map[int]uint64 {
	out := make(map[int]uint64, len(s.procs)+1)
	if t, err := cpuTicks("self"); err == nil {
		out[selfKey] = t
	}
	for _, p := range s.procs {
		if t, err := cpuTicks(strconv.Itoa(p.PID)); err == nil {
			out[p.PID] = t
		}
	}
	return out
}

func (s *cpuSampler) start() { s.before = s.sample() }
func (s *cpuSampler) end()   { s.after = s.sample() }

// figures turns the samples into the report's CPU fields.
func (s *cpuSampler) figures(ops int64) (server *ServerCPU, self *CPUFigure, notes []string) {
	notes = s.notes
	if s.before == nil || s.after == nil {
		return nil, nil, notes
	}
	secs := func(k int) (float64, bool) {
		b, ok1 := s.before[k]
		a, ok2 := s.after[k]
		if !ok1 || !ok2 || a < b {
			return 0, false
		}
		return float64(a-b) / float64(s.hz), true
	}
	perOp := func(sec float64) float64 {
		if ops == 0 {
			return 0
		}
		return sec * 1e6 / float64(ops)
	}
	if v, ok := secs(selfKey); ok {
		self = &CPUFigure{Seconds: v, PerOpUS: perOp(v)}
	} else {
		notes = append(notes, "could not read this process's CPU time from /proc/self/stat")
	}
	me := os.Getpid()
	for _, p := range s.procs {
		v, ok := secs(p.PID)
		if !ok {
			notes = append(notes, fmt.Sprintf("could not read the CPU time of pid %d before and after the measurement", p.PID))
			continue
		}
		if server == nil {
			server = &ServerCPU{ClockTicks: s.hz, Processes: []ProcCPU{}}
		}
		server.Seconds += v
		server.Processes = append(server.Processes, ProcCPU{PID: p.PID, Comm: p.Comm, Addrs: p.Addrs, Seconds: v, Self: p.PID == me})
	}
	if server != nil {
		server.PerOpUS = perOp(server.Seconds)
	}
	return server, self, notes
}

// Run validates cfg, runs the benchmark and, unless cfg.Floor is false or
// the run was interrupted, the loopback floors. Cancelling ctx (Ctrl-C)
// ends the run early; the report then covers what was measured and has
// Interrupted set. The error is non-nil only if the run could not start.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	runID := newRunID()
	rep := &Report{
		RunID: runID, Mix: cfg.Mix, Addrs: cfg.Addrs, Clients: cfg.Clients,
		TTLSeconds: cfg.TTL.Seconds(), WarmupSeconds: cfg.Warmup.Seconds(), DurationSeconds: cfg.Duration.Seconds(),
		ErrorsByCode: map[string]int64{}, Floors: []Floor{}, Notes: []string{},
	}
	var p *pool
	if cfg.Mix == MixHolder || cfg.Mix == MixSpecific {
		var err error
		if p, err = fetchPool(ctx, &cfg); err != nil {
			return nil, err
		}
	}
	cpu := &cpuSampler{hz: clockTicks()}
	if len(cfg.PIDs) > 0 {
		for _, pid := range cfg.PIDs {
			cpu.procs = append(cpu.procs, serverProc{PID: pid, Comm: procComm(pid)})
		}
	} else {
		cpu.procs, cpu.notes = findServers(cfg.Addrs)
	}
	if cfg.Live != nil {
		fmt.Fprintf(cfg.Live, "freqd bench %s: %d clients, mix %s, warming up for %v, then measuring for %v\n", runID, cfg.Clients, cfg.Mix, cfg.Warmup, cfg.Duration)
	}
	res := runLoop(ctx, loopSpec{clients: cfg.Clients, warmup: cfg.Warmup, duration: cfg.Duration, live: cfg.Live,
		onStart: cpu.start, onEnd: cpu.end}, mainWork(&cfg, runID, p))

	t := res.total
	rep.MeasuredSeconds = res.measured.Seconds()
	rep.Interrupted = res.interrupted
	if res.allQuit && !res.interrupted {
		rep.EndedEarly = "every client stopped: the pool is exhausted (no-frequency)"
	}
	rep.Ops, rep.Errors, rep.Failed, rep.ErrorsByCode = t.ops, t.errs, t.failed, t.byCode
	if res.measured > 0 {
		rep.OpsPerSec = float64(t.ops) / res.measured.Seconds()
	}
	rep.Latency = latencyOf(res.hist)
	rep.WarmupOps, rep.TailOps = t.warmupOps, t.tailOps
	rep.CleanupCalls, rep.CleanupErrors, rep.LeftHeld = t.cleanupCalls, t.cleanupErrs, t.leftHeld
	var notes []string
	rep.ServerCPU, rep.BenchCPU, notes = cpu.figures(t.ops)
	rep.Notes = append(rep.Notes, notes...)
	if rep.ServerCPU != nil {
		for _, pr := range rep.ServerCPU.Processes {
			if pr.Self {
				rep.Notes = append(rep.Notes, "a server runs inside this process: its CPU includes the load generator's")
				break
			}
		}
	}

	if cfg.Floor && !rep.Interrupted {
		floors := []struct {
			name string
			run  func(context.Context, *Config) Floor
		}{{FloorConnectEcho, runConnectFloor}, {FloorRawTCP, runRawTCPFloor}}
		for _, fl := range floors {
			if cfg.Live != nil {
				fmt.Fprintf(cfg.Live, "floor %s: %d clients for %v\n", fl.name, cfg.Clients, cfg.FloorDuration)
			}
			f := fl.run(ctx, &cfg)
			if f.OpsPerSec > 0 {
				f.MainRatio = rep.OpsPerSec / f.OpsPerSec
			}
			rep.Floors = append(rep.Floors, f)
			if ctx.Err() != nil {
				rep.Interrupted = true
				rep.Notes = append(rep.Notes, "interrupted during the floor "+fl.name+": its figure covers what was measured")
				break
			}
		}
	}
	return rep, nil
}
