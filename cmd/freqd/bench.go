package main

import (
	"context"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/freqd/freqd/internal/bench"
)

func newBenchCmd() *cobra.Command {
	var (
		cfg    bench.Config
		addr   string
		mix    string
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "bench --addr A,B,C --clients C --duration D [--mix M]",
		Short: "Load a cluster with closed-loop clients and report ops/s, latency, server CPU per op and the loopback floors",
		Long: `bench runs --clients closed-loop clients, each with its own connection and
client id, through the Go client against the nodes at --addr: an unmeasured
warm-up, then the measured period, with a progress line on stderr each
second. The summary (stdout) gives ops/s (answered calls per second),
latency percentiles, errors by code, the servers' CPU per op (servers found
by their ports on 127.0.0.1, or given with --pid) and the bench's own CPU.

Then, unless --floor=false, it measures two loopback floors with the same
client count: an in-process connect echo service called through the same
client path, and raw 32-byte TCP echoes; the main figure is reported as a
fraction of each. Ctrl-C ends the run early and still prints what was
measured.

  --mix alloc-release   allocate, then release the grant (two ops)
  --mix alloc           allocate only; a client stops when the pool is full
  --mix holder          look up who holds random frequencies of the pool
  --mix specific        allocate a random frequency, release it if granted`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			m, err := bench.ParseMix(mix)
			if err != nil {
				return err
			}
			cfg.Mix = m
			cfg.Addrs = strings.Split(addr, ",")
			cfg.Live = cmd.ErrOrStderr()
			if err := cfg.Validate(); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			// A second signal kills at once.
			context.AfterFunc(ctx, stop)
			rep, err := bench.Run(ctx, cfg)
			if err != nil {
				return err
			}
			if asJSON {
				return rep.WriteJSON(cmd.OutOrStdout())
			}
			return rep.WriteText(cmd.OutOrStdout())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&addr, "addr", defaultAddrs, "node API addresses (host:port), comma-separated; client i starts with the i-th")
	fl.IntVar(&cfg.Clients, "clients", 16, "closed-loop clients (1 to 4096), each with its own connection and client id")
	fl.DurationVar(&cfg.Duration, "duration", 10*time.Second, "measured period (1s to 10m)")
	fl.DurationVar(&cfg.Warmup, "warmup", bench.DefaultWarmup, "unmeasured warm-up before it (0 to 10m)")
	fl.StringVar(&mix, "mix", string(bench.MixAllocRelease), "what each client does: alloc-release, alloc, holder or specific")
	fl.DurationVar(&cfg.TTL, "ttl", 0, "lease every allocation for this long (1s to 24h; 0: no lease)")
	fl.BoolVar(&asJSON, "json", false, "print the summary as one JSON object (fields: go doc ./internal/bench)")
	fl.BoolVar(&cfg.Floor, "floor", true, "also measure the loopback floors (connect echo, raw TCP)")
	fl.DurationVar(&cfg.FloorDuration, "floor-duration", 0, "each floor's measured period (1s to 10m; default min(duration, 5s))")
	fl.IntSliceVar(&cfg.PIDs, "pid", nil, "server process ids whose CPU to measure (repeatable or comma-separated; default: found by the --addr ports on 127.0.0.1)")
	fl.DurationVar(&cfg.CallTimeout, "call-timeout", bench.DefaultCallTimeout, "bound on each call, the client's retries included (10ms to 1h)")
	return cmd
}
