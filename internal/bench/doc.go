// Package bench is `freqd bench`, the load generator behind every
// performance figure the project quotes.
//
// # What it measures
//
// Clients (Config.Clients) goroutines run a closed loop, each through its
// own client.Client (its own HTTP/2 connection per node, built exactly as
// the client package builds its default) with its own client id,
// "bench-<run>-<i>". Client i lists the nodes starting at the i-th, so the
// clients spread over the nodes. The mix says what one round is:
//
//   - alloc-release: Allocate, then ReleaseGrant of the grant (two ops);
//   - alloc: Allocate only; a client stops when it gets no-frequency;
//   - holder: Holder of a random frequency of the pool;
//   - specific: AllocateFrequency of a random frequency of the pool, then
//     ReleaseGrant if it was granted.
//
// The pool's bounds come from Status (else Ring). Each call is bounded by
// Config.CallTimeout; the client's own retries happen inside it.
//
// An op is one answered call: a success, or an error a freqd handler sent
// (no-frequency, not-held, already-held, ...). Transport failures,
// timeouts and outcome-unknown errors are counted as errors but are not
// ops, and their latency is not recorded. Every op is counted in the phase
// in which it completed: warm-up (unmeasured), measured, or tail (the
// rounds in flight when the measured period ended). After its loop each
// client releases, best effort, whatever it may still hold (ReleaseAll if
// it holds many or an allocation's outcome is unknown, else its grants one
// by one); those calls are counted apart, as clean-up.
//
// ops/s is measured ops divided by the measured seconds. Latencies go
// into an HDR-style histogram (power-of-two ranges cut into 128 buckets:
// under 0.8 % error). Server CPU is utime+stime of the server processes
// (found by the TCP ports of the loopback --addr entries in
// /proc/net/tcp{,6} and /proc/PID/fd, or given by --pid) read before and
// after the measured period, in ticks of USER_HZ (read from the auxiliary
// vector, else 100); the bench process's own CPU is read the same way.
//
// Then, unless disabled, two loopback floors run on the same number of
// clients for the floor duration: "connect-echo", the same client path
// (client.Client.Holder over connect, h2c) against an in-process handler
// that answers at once, and "raw-tcp", one TCP connection per client
// writing 32 bytes and reading the 32-byte echo. Each floor's main_ratio
// is the main ops/s over the floor's: what fraction of what this machine's
// loopback and RPC stack could carry at best the cluster reached.
//
// # JSON
//
// With --json the command prints one object (Report); its fields are:
//
//	run_id            string   id of the run, in the client ids
//	mix               string   alloc-release | alloc | holder | specific
//	addrs             [string] node addresses
//	clients           int      closed-loop clients
//	ttl_s             number   lease of each allocation (0: none)
//	warmup_s          number   requested warm-up
//	duration_s        number   requested measured period
//	measured_s        number   actual measured period
//	interrupted       bool     ended early by a signal
//	ended_early       string   why the run ended early otherwise ("": it did not)
//	ops               int      answered calls in the measured period
//	ops_per_s         number   ops / measured_s
//	latency           object   of the measured ops, microseconds:
//	                           count, mean_us, p50_us, p90_us, p99_us, p999_us, max_us
//	errors            int      calls that returned an error (answered or not)
//	failed            int      calls not answered (not ops)
//	errors_by_code    {string: int}  errors by freqd sentinel ("no-frequency",
//	                           "already-held", "unavailable", ...) or connect
//	                           code ("deadline_exceeded", "unimplemented", ...)
//	warmup_ops        int      ops in the warm-up
//	tail_ops          int      ops completed after the measured period
//	cleanup_calls     int      answered clean-up calls (releases)
//	cleanup_errors    int      clean-up calls that failed
//	left_held         int      grants the clean-up could not release
//	server_cpu        object | null (not measured):
//	                           seconds, per_op_us, clock_ticks_per_s,
//	                           processes: [{pid, comm, addrs, seconds, self}]
//	                           (self: the server is this process)
//	bench_cpu         object | null: seconds, per_op_us of this process
//	floors            [object] name ("connect-echo" | "raw-tcp"), clients,
//	                           measured_s, ops, ops_per_s, latency, errors,
//	                           main_ratio, error ("" unless it could not run)
//	notes             [string] caveats: addresses not measured, unreadable
//	                           processes, interruptions
package bench
