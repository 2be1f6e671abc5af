package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/freqd/freqd"
	freqdv1 "github.com/freqd/freqd/gen/freqd/v1"
	"github.com/freqd/freqd/gen/freqd/v1/freqdv1connect"
	"github.com/freqd/freqd/transport"
)

// fakeService is a minimal in-memory FreqdService: one pool [first, last]
// behind a mutex. served counts the Allocate, Release, Holder and
// ReleaseAll calls it answered.
type fakeService struct {
	freqdv1connect.UnimplementedFreqdServiceHandler
	first, last uint32

	mu      sync.Mutex
	held    map[uint32]fakeGrant
	clients map[string]bool
	seq     int64

	served atomic.Int64
	status atomic.Int64
}

type fakeGrant struct {
	client string
	since  time.Time
}

// wire is an error as a freqd node sends it: its sentinel's code and
// reason (without the reason the client takes it for an unknown outcome).
func wire(format string, a ...any) error { return transport.ToWire(fmt.Errorf(format, a...)) }

func newFake(first, last uint32) *fakeService {
	return &fakeService{first: first, last: last, held: map[uint32]fakeGrant{}, clients: map[string]bool{}}
}

func (s *fakeService) grant(f uint32, id string) *connect.Response[freqdv1.AllocateResponse] {
	g, ok := s.held[f]
	if !ok {
		s.seq++
		g = fakeGrant{client: id, since: time.Unix(1700000000, s.seq)} // unique per grant
		s.held[f] = g
	}
	return connect.NewResponse(&freqdv1.AllocateResponse{Frequency: f, Since: timestamppb.New(g.since), Node: "fake", Duplicate: ok})
}

func (s *fakeService) Allocate(_ context.Context, req *connect.Request[freqdv1.AllocateRequest]) (*connect.Response[freqdv1.AllocateResponse], error) {
	defer s.served.Add(1)
	id := req.Msg.GetClientId()
	if id == "" {
		return nil, wire("empty client id: %w", freqd.ErrInvalidClientID)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clients[id] = true
	if req.Msg.Frequency != nil {
		f := req.Msg.GetFrequency()
		if f < s.first || f > s.last {
			return nil, wire("%d: %w", f, freqd.ErrOutOfRange)
		}
		if g, ok := s.held[f]; ok && g.client != id {
			return nil, wire("%d: %w", f, freqd.ErrAlreadyHeld)
		}
		return s.grant(f, id), nil
	}
	for f := s.first; ; f++ {
		if _, ok := s.held[f]; !ok {
			return s.grant(f, id), nil
		}
		if f == s.last {
			return nil, wire("fake pool: %w", freqd.ErrNoFrequency)
		}
	}
}

func (s *fakeService) Release(_ context.Context, req *connect.Request[freqdv1.ReleaseRequest]) (*connect.Response[freqdv1.ReleaseResponse], error) {
	defer s.served.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	f := req.Msg.GetFrequency()
	g, ok := s.held[f]
	switch {
	case !ok || (req.Msg.Since != nil && !req.Msg.GetSince().AsTime().Equal(g.since)):
		return nil, wire("%d: %w", f, freqd.ErrNotHeld)
	case g.client != req.Msg.GetClientId():
		return nil, wire("%d: %w", f, freqd.ErrNotHolder)
	}
	delete(s.held, f)
	return connect.NewResponse(&freqdv1.ReleaseResponse{Node: "fake"}), nil
}

func (s *fakeService) ReleaseAll(_ context.Context, req *connect.Request[freqdv1.ReleaseAllRequest]) (*connect.Response[freqdv1.ReleaseAllResponse], error) {
	defer s.served.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	var freed []uint32
	for f, g := range s.held {
		if g.client == req.Msg.GetClientId() {
			delete(s.held, f)
			freed = append(freed, f)
		}
	}
	return connect.NewResponse(&freqdv1.ReleaseAllResponse{Released: uint64(len(freed)), Frequencies: freed}), nil
}

func (s *fakeService) Holder(_ context.Context, req *connect.Request[freqdv1.HolderRequest]) (*connect.Response[freqdv1.HolderResponse], error) {
	defer s.served.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	f := req.Msg.GetFrequency()
	if f < s.first || f > s.last {
		return nil, wire("%d: %w", f, freqd.ErrOutOfRange)
	}
	res := &freqdv1.HolderResponse{Frequency: f, Node: "fake"}
	if g, ok := s.held[f]; ok {
		res.Held, res.ClientId, res.Since = true, g.client, timestamppb.New(g.since)
	}
	return connect.NewResponse(res), nil
}

func (s *fakeService) Status(context.Context, *connect.Request[freqdv1.StatusRequest]) (*connect.Response[freqdv1.StatusResponse], error) {
	s.status.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	total := uint64(s.last-s.first) + 1
	held := uint64(len(s.held))
	return connect.NewResponse(&freqdv1.StatusResponse{Node: "fake", Total: total, Held: held, Free: total - held,
		Ranges: []*freqdv1.Range{{First: s.first, Last: s.last}}}), nil
}

func (s *fakeService) heldCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.held)
}

// serveFake serves a fake pool on 127.0.0.1:0 as a node serves its API.
func serveFake(t *testing.T, first, last uint32) (*fakeService, string) {
	t.Helper()
	fake := newFake(first, last)
	srv, err := serveService(fake)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopServer(srv) })
	return fake, srv.Addr()
}

// lockedBuffer is a goroutine-safe live-line sink.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// checkAccounting checks that every call the fake answered is counted in
// exactly one of the report's phases, and the internal consistency of the
// figures.
func checkAccounting(t *testing.T, rep *Report, fake *fakeService) {
	t.Helper()
	counted := rep.WarmupOps + rep.Ops + rep.TailOps + rep.CleanupCalls
	if served := fake.served.Load(); served != counted {
		t.Errorf("fake served %d calls; report counts %d = warm-up %d + measured %d + tail %d + clean-up %d",
			served, counted, rep.WarmupOps, rep.Ops, rep.TailOps, rep.CleanupCalls)
	}
	if uint64(rep.Ops) != rep.Latency.Count {
		t.Errorf("ops %d but %d latencies recorded", rep.Ops, rep.Latency.Count)
	}
	var byCode int64
	for _, n := range rep.ErrorsByCode {
		byCode += n
	}
	if byCode != rep.Errors {
		t.Errorf("errors %d but errors_by_code sums to %d (%v)", rep.Errors, byCode, rep.ErrorsByCode)
	}
	if rep.MeasuredSeconds > 0 && math.Abs(rep.OpsPerSec-float64(rep.Ops)/rep.MeasuredSeconds) > 1e-6*rep.OpsPerSec {
		t.Errorf("ops/s %g, but %d ops in %gs", rep.OpsPerSec, rep.Ops, rep.MeasuredSeconds)
	}
	if rep.Latency.Count > 0 {
		l := rep.Latency
		if !(l.P50US > 0 && l.P50US <= l.P90US && l.P90US <= l.P99US && l.P99US <= l.P999US && l.P999US <= l.MaxUS && l.MeanUS > 0 && l.MeanUS <= l.MaxUS) {
			t.Errorf("latency figures out of order: %+v", l)
		}
	}
	if h := fake.heldCount(); h != 0 || rep.LeftHeld != 0 {
		t.Errorf("after the run the fake holds %d frequencies, report says %d left held", h, rep.LeftHeld)
	}
}

// The keys the package doc promises in the JSON object.
var jsonKeys = []string{"run_id", "mix", "addrs", "clients", "ttl_s", "warmup_s", "duration_s", "measured_s", "interrupted",
	"ended_early", "ops", "ops_per_s", "latency", "errors", "failed", "errors_by_code", "warmup_ops", "tail_ops",
	"cleanup_calls", "cleanup_errors", "left_held", "server_cpu", "bench_cpu", "floors", "notes"}

func TestRunAgainstFake(t *testing.T) {
	fake, addr := serveFake(t, 1000, 1999)
	live := &lockedBuffer{}
	rep, err := Run(context.Background(), Config{Addrs: []string{addr}, Clients: 4, Duration: time.Second,
		Warmup: 200 * time.Millisecond, Mix: MixAllocRelease, Floor: true, Live: live})
	if err != nil {
		t.Fatal(err)
	}
	checkAccounting(t, rep, fake)
	if rep.Ops == 0 || rep.WarmupOps == 0 {
		t.Fatalf("measured %d ops after %d warm-up ops, want both > 0", rep.Ops, rep.WarmupOps)
	}
	if rep.Errors != 0 || rep.Failed != 0 || rep.CleanupErrors != 0 {
		t.Errorf("errors %d (%v), failed %d, clean-up errors %d; want none", rep.Errors, rep.ErrorsByCode, rep.Failed, rep.CleanupErrors)
	}
	if rep.MeasuredSeconds < 1 || rep.MeasuredSeconds > 3 {
		t.Errorf("measured %gs for a 1s run", rep.MeasuredSeconds)
	}
	if rep.Interrupted || rep.EndedEarly != "" {
		t.Errorf("interrupted %v, ended early %q", rep.Interrupted, rep.EndedEarly)
	}
	// Each client used its own id.
	fake.mu.Lock()
	ids := fake.clients
	fake.mu.Unlock()
	if len(ids) != 4 {
		t.Errorf("fake saw client ids %v, want 4", ids)
	}
	for i := range 4 {
		if !ids[ClientID(rep.RunID, i)] {
			t.Errorf("no calls from %s (saw %v)", ClientID(rep.RunID, i), ids)
		}
	}
	if !regexp.MustCompile(`^bench-[0-9a-f]+-0$`).MatchString(ClientID(rep.RunID, 0)) {
		t.Errorf("client id %q", ClientID(rep.RunID, 0))
	}

	// The fake runs in this process: the port lookup must find it.
	if runtime.GOOS == "linux" {
		if rep.ServerCPU == nil || len(rep.ServerCPU.Processes) != 1 || rep.ServerCPU.Processes[0].PID != os.Getpid() || !rep.ServerCPU.Processes[0].Self {
			t.Errorf("server CPU %+v (notes %q), want this process", rep.ServerCPU, rep.Notes)
		}
		if rep.BenchCPU == nil || rep.ServerCPU == nil || rep.ServerCPU.ClockTicks == 0 {
			t.Errorf("bench CPU %+v, server CPU %+v", rep.BenchCPU, rep.ServerCPU)
		} else if rep.ServerCPU.Seconds != rep.BenchCPU.Seconds { // the same process, sampled at the same moments
			t.Errorf("server (this process) %gs, bench %gs", rep.ServerCPU.Seconds, rep.BenchCPU.Seconds)
		}
	}

	if len(rep.Floors) != 2 || rep.Floors[0].Name != FloorConnectEcho || rep.Floors[1].Name != FloorRawTCP {
		t.Fatalf("floors %+v", rep.Floors)
	}
	for _, f := range rep.Floors {
		if f.Error != "" || f.OpsPerSec <= 0 || f.Ops == 0 || f.Errors != 0 || uint64(f.Ops) != f.Latency.Count || f.Clients != 4 {
			t.Errorf("floor %+v", f)
		}
		if f.MeasuredSeconds < 1 || f.MeasuredSeconds > 3 {
			t.Errorf("floor %s measured %gs, want the 1s floor duration", f.Name, f.MeasuredSeconds)
		}
		if want := rep.OpsPerSec / f.OpsPerSec; math.Abs(f.MainRatio-want) > 1e-9*want {
			t.Errorf("floor %s ratio %g, want %g", f.Name, f.MainRatio, want)
		}
	}

	var text bytes.Buffer
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ops/s", "p99", "x of the connect echo floor", "x of the raw TCP floor", "server CPU", "bench CPU"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, text.String())
		}
	}
	t.Logf("summary:\n%s", text.String())
	if !strings.Contains(live.String(), "warming up") {
		t.Errorf("live output %q", live.String())
	}

	var js bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(js.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range jsonKeys {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON lacks %q", k)
		}
	}
	if len(m) != len(jsonKeys) {
		t.Errorf("JSON has %d keys, the doc lists %d: update both", len(m), len(jsonKeys))
	}
	if m["ops"].(float64) != float64(rep.Ops) {
		t.Errorf("JSON ops %v, want %d", m["ops"], rep.Ops)
	}
}

func TestRunMixes(t *testing.T) {
	cases := []struct {
		name        string
		mix         Mix
		first, last uint32
		warmup      time.Duration
		check       func(t *testing.T, rep *Report, fake *fakeService)
	}{
		{"holder", MixHolder, 50, 99, 200 * time.Millisecond, func(t *testing.T, rep *Report, fake *fakeService) {
			if rep.Ops == 0 || rep.Errors != 0 || rep.CleanupCalls != 0 {
				t.Errorf("ops %d errors %v cleanup %d", rep.Ops, rep.ErrorsByCode, rep.CleanupCalls)
			}
			if fake.status.Load() != 1 {
				t.Errorf("%d Status calls, want 1 (the pool bounds)", fake.status.Load())
			}
		}},
		{"specific on a tiny pool", MixSpecific, 7, 8, 200 * time.Millisecond, func(t *testing.T, rep *Report, fake *fakeService) {
			// 4 clients fight over 2 frequencies: some find them held.
			if rep.Ops == 0 || rep.ErrorsByCode["already-held"] == 0 || rep.Failed != 0 {
				t.Errorf("ops %d errors %v failed %d", rep.Ops, rep.ErrorsByCode, rep.Failed)
			}
			for code := range rep.ErrorsByCode {
				if code != "already-held" && code != "not-held" {
					t.Errorf("unexpected error code %q (%v)", code, rep.ErrorsByCode)
				}
			}
		}},
		{"alloc exhausts the pool", MixAlloc, 1, 40, 0, func(t *testing.T, rep *Report, fake *fakeService) {
			// 40 grants and one no-frequency per client, then each stops.
			if got := rep.WarmupOps + rep.Ops; got != 44 {
				t.Errorf("%d ops, want 40 grants + 4 no-frequency", got)
			}
			if rep.ErrorsByCode["no-frequency"] > 4 || (rep.WarmupOps == 0 && rep.ErrorsByCode["no-frequency"] != 4) || rep.Failed != 0 {
				t.Errorf("errors %v failed %d", rep.ErrorsByCode, rep.Failed)
			}
			if rep.EndedEarly == "" || rep.MeasuredSeconds >= 1 {
				t.Errorf("ended early %q after %gs, want an early end", rep.EndedEarly, rep.MeasuredSeconds)
			}
			if rep.CleanupCalls != 40 || rep.CleanupErrors != 0 {
				t.Errorf("clean-up %d calls %d errors, want the 40 grants released", rep.CleanupCalls, rep.CleanupErrors)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			fake, addr := serveFake(t, c.first, c.last)
			rep, err := Run(context.Background(), Config{Addrs: []string{addr}, Clients: 4, Duration: time.Second,
				Warmup: c.warmup, Mix: c.mix, Floor: false})
			if err != nil {
				t.Fatal(err)
			}
			checkAccounting(t, rep, fake)
			if len(rep.Floors) != 0 {
				t.Errorf("floors ran with Floor false: %+v", rep.Floors)
			}
			c.check(t, rep, fake)
		})
	}
}

// signalWriter closes first when a live progress line arrives.
type signalWriter struct {
	once  sync.Once
	first chan struct{}
}

func (w *signalWriter) Write(p []byte) (int, error) {
	if bytes.HasPrefix(p, []byte("[")) {
		w.once.Do(func() { close(w.first) })
	}
	return len(p), nil
}

func TestRunInterrupted(t *testing.T) {
	fake, addr := serveFake(t, 1, 1000)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	live := &signalWriter{first: make(chan struct{})}
	done := make(chan struct{})
	go func() {
		defer close(done)
		select {
		case <-live.first: // measuring for a second: interrupt (Ctrl-C)
			cancel()
		case <-time.After(30 * time.Second):
		}
	}()
	start := time.Now()
	rep, err := Run(ctx, Config{Addrs: []string{addr}, Clients: 4, Duration: time.Minute, Warmup: 100 * time.Millisecond,
		Mix: MixAllocRelease, Floor: true, Live: live})
	<-done
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Interrupted || time.Since(start) > 20*time.Second {
		t.Fatalf("interrupted %v after %v", rep.Interrupted, time.Since(start))
	}
	if rep.MeasuredSeconds < 1 || rep.MeasuredSeconds > 10 || rep.Ops == 0 || len(rep.Floors) != 0 {
		t.Errorf("measured %gs, %d ops, floors %v", rep.MeasuredSeconds, rep.Ops, rep.Floors)
	}
	// Calls cut short by the interrupt may have been served but not
	// counted: at most one per client.
	counted := rep.WarmupOps + rep.Ops + rep.TailOps + rep.CleanupCalls
	if served := fake.served.Load(); served < counted || served > counted+4 {
		t.Errorf("fake served %d, report counts %d", served, counted)
	}
	if h := fake.heldCount(); h != 0 {
		t.Errorf("fake still holds %d after the clean-up", h)
	}
	var text bytes.Buffer
	if err := rep.WriteText(&text); err != nil || !strings.Contains(text.String(), "(interrupted)") {
		t.Errorf("summary %q, %v", text.String(), err)
	}
}

func TestRunUnreachable(t *testing.T) {
	// Nothing listens on port 1 of 127.0.0.1: every call fails, none is an op.
	rep, err := Run(context.Background(), Config{Addrs: []string{"127.0.0.1:1"}, Clients: 2, Duration: time.Second,
		Mix: MixAllocRelease, Floor: false, CallTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Ops != 0 || rep.Errors == 0 || rep.Failed != rep.Errors || rep.OpsPerSec != 0 {
		t.Errorf("ops %d errors %d failed %d ops/s %g", rep.Ops, rep.Errors, rep.Failed, rep.OpsPerSec)
	}
	for code := range rep.ErrorsByCode {
		if code == "other" || strings.HasPrefix(code, "no-") {
			t.Errorf("code %q for a refused connection (%v)", code, rep.ErrorsByCode)
		}
	}
	t.Logf("errors: %v; notes: %q", rep.ErrorsByCode, rep.Notes)
}
