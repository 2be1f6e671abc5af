package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
)

// Report is every figure of a run. Its JSON form is documented in the
// package doc; field names are stable.
type Report struct {
	RunID           string   `json:"run_id"`
	Mix             Mix      `json:"mix"`
	Addrs           []string `json:"addrs"`
	Clients         int      `json:"clients"`
	TTLSeconds      float64  `json:"ttl_s"`
	WarmupSeconds   float64  `json:"warmup_s"`
	DurationSeconds float64  `json:"duration_s"`
	MeasuredSeconds float64  `json:"measured_s"`
	Interrupted     bool     `json:"interrupted"`
	EndedEarly      string   `json:"ended_early"`

	Ops          int64            `json:"ops"`
	OpsPerSec    float64          `json:"ops_per_s"`
	Latency      Latency          `json:"latency"`
	Errors       int64            `json:"errors"`
	Failed       int64            `json:"failed"`
	ErrorsByCode map[string]int64 `json:"errors_by_code"`

	WarmupOps     int64 `json:"warmup_ops"`
	TailOps       int64 `json:"tail_ops"`
	CleanupCalls  int64 `json:"cleanup_calls"`
	CleanupErrors int64 `json:"cleanup_errors"`
	LeftHeld      int64 `json:"left_held"`

	ServerCPU *ServerCPU `json:"server_cpu"`
	BenchCPU  *CPUFigure `json:"bench_cpu"`
	Floors    []Floor    `json:"floors"`
	Notes     []string   `json:"notes"`
}

// Latency summarises a latency histogram, in microseconds.
type Latency struct {
	Count  uint64  `json:"count"`
	MeanUS float64 `json:"mean_us"`
	P50US  float64 `json:"p50_us"`
	P90US  float64 `json:"p90_us"`
	P99US  float64 `json:"p99_us"`
	P999US float64 `json:"p999_us"`
	MaxUS  float64 `json:"max_us"`
}

func latencyOf(s *HistSnapshot) Latency {
	us := func(ns int64) float64 { return float64(ns) / 1e3 }
	return Latency{
		Count:  s.Count,
		MeanUS: s.Mean() / 1e3,
		P50US:  us(s.Quantile(0.50)),
		P90US:  us(s.Quantile(0.90)),
		P99US:  us(s.Quantile(0.99)),
		P999US: us(s.Quantile(0.999)),
		MaxUS:  us(s.Max),
	}
}

// CPUFigure is CPU time used during the measured period.
type CPUFigure struct {
	Seconds float64 `json:"seconds"`
	PerOpUS float64 `json:"per_op_us"`
}

// ServerCPU is the servers' CPU during the measured period.
type ServerCPU struct {
	CPUFigure
	ClockTicks uint64    `json:"clock_ticks_per_s"`
	Processes  []ProcCPU `json:"processes"`
}

// ProcCPU is one server process's CPU.
type ProcCPU struct {
	PID     int      `json:"pid"`
	Comm    string   `json:"comm"`
	Addrs   []string `json:"addrs"`
	Seconds float64  `json:"seconds"`
	// Self is true when the server is the bench process itself (its CPU
	// then includes the load generator's).
	Self bool `json:"self"`
}

// Floor is one loopback floor's result.
type Floor struct {
	Name            string  `json:"name"`
	Clients         int     `json:"clients"`
	MeasuredSeconds float64 `json:"measured_s"`
	Ops             int64   `json:"ops"`
	OpsPerSec       float64 `json:"ops_per_s"`
	Latency         Latency `json:"latency"`
	Errors          int64   `json:"errors"`
	// MainRatio is the main figure's ops/s divided by this floor's.
	MainRatio float64 `json:"main_ratio"`
	// Error says why the floor could not run ("" when it ran).
	Error string `json:"error"`
}

// floorLabels are the floors' names in the text summary.
var floorLabels = map[string]string{
	FloorConnectEcho: "connect echo",
	FloorRawTCP:      "raw TCP",
}

// WriteJSON writes r as one indented JSON object.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

func fmtUS(us float64) string { return fmtNanos(int64(us * 1e3)) }

func fmtLatency(l Latency) string {
	return fmt.Sprintf("p50 %s  p90 %s  p99 %s  p99.9 %s  max %s",
		fmtUS(l.P50US), fmtUS(l.P90US), fmtUS(l.P99US), fmtUS(l.P999US), fmtUS(l.MaxUS))
}

// WriteText writes the human summary.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	ttl := ""
	if r.TTLSeconds > 0 {
		ttl = fmt.Sprintf(", ttl %gs", r.TTLSeconds)
	}
	fmt.Fprintf(&b, "freqd bench %s: mix %s%s, %d clients, %s\n", r.RunID, r.Mix, ttl, r.Clients, strings.Join(r.Addrs, ","))
	state := ""
	switch {
	case r.Interrupted:
		state = " (interrupted)"
	case r.EndedEarly != "":
		state = " (ended early: " + r.EndedEarly + ")"
	}
	fmt.Fprintf(&b, "measured  %.2fs of %gs after %gs warm-up%s\n", r.MeasuredSeconds, r.DurationSeconds, r.WarmupSeconds, state)
	fmt.Fprintf(&b, "ops       %d answered calls = %.1f ops/s\n", r.Ops, r.OpsPerSec)
	fmt.Fprintf(&b, "latency   %s  (mean %s)\n", fmtLatency(r.Latency), fmtUS(r.Latency.MeanUS))
	fmt.Fprintf(&b, "errors    %d (%d calls not answered)\n", r.Errors, r.Failed)
	codes := make([]string, 0, len(r.ErrorsByCode))
	for c := range r.ErrorsByCode {
		codes = append(codes, c)
	}
	sort.Strings(codes)
	for _, c := range codes {
		fmt.Fprintf(&b, "  %-24s %d\n", c, r.ErrorsByCode[c])
	}
	if r.ServerCPU != nil {
		procs := "processes"
		if len(r.ServerCPU.Processes) == 1 {
			procs = "process"
		}
		fmt.Fprintf(&b, "server CPU %.2fs in %d %s = %.1f µs/op\n", r.ServerCPU.Seconds, len(r.ServerCPU.Processes), procs, r.ServerCPU.PerOpUS)
		for _, p := range r.ServerCPU.Processes {
			self := ""
			if p.Self {
				self = " (this process: includes the load generator)"
			}
			addrs := strings.Join(p.Addrs, ",")
			if addrs == "" {
				addrs = "(--pid)"
			}
			fmt.Fprintf(&b, "  pid %-7d %-12s %-24s %.2fs%s\n", p.PID, p.Comm, addrs, p.Seconds, self)
		}
	} else {
		b.WriteString("server CPU not measured\n")
	}
	if r.BenchCPU != nil {
		fmt.Fprintf(&b, "bench CPU %.2fs = %.1f µs/op\n", r.BenchCPU.Seconds, r.BenchCPU.PerOpUS)
	}
	fmt.Fprintf(&b, "cleanup   %d calls, %d errors, %d frequencies possibly still held\n", r.CleanupCalls, r.CleanupErrors, r.LeftHeld)
	if len(r.Floors) > 0 {
		b.WriteString("loopback floors (same client count, this machine):\n")
		for _, f := range r.Floors {
			label := floorLabels[f.Name]
			if f.Error != "" {
				fmt.Fprintf(&b, "  %-13s failed: %s\n", label, f.Error)
				continue
			}
			fmt.Fprintf(&b, "  %-13s %10.1f ops/s in %.2fs  %s\n", label, f.OpsPerSec, f.MeasuredSeconds, fmtLatency(f.Latency))
		}
		for _, f := range r.Floors {
			if f.Error == "" && f.OpsPerSec > 0 {
				fmt.Fprintf(&b, "main figure is %.2fx of the %s floor\n", f.MainRatio, floorLabels[f.Name])
			}
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
