package bench

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// Mix is what each client does in a loop.
type Mix string

// The mixes.
const (
	// MixAllocRelease allocates any free frequency, then releases the grant
	// (two ops per round).
	MixAllocRelease Mix = "alloc-release"
	// MixAlloc only allocates; a client stops when the pool is exhausted.
	MixAlloc Mix = "alloc"
	// MixHolder asks who holds random frequencies of the pool.
	MixHolder Mix = "holder"
	// MixSpecific allocates a random frequency of the pool, then releases
	// it if it was granted.
	MixSpecific Mix = "specific"
)

// Mixes lists the valid mixes.
var Mixes = []Mix{MixAllocRelease, MixAlloc, MixHolder, MixSpecific}

// Limits on the configuration.
const (
	MinClients  = 1
	MaxClients  = 4096
	MinDuration = time.Second
	MaxDuration = 10 * time.Minute
	// MaxWarmup bounds --warmup (which may be 0).
	MaxWarmup = 10 * time.Minute
	// DefaultWarmup is --warmup's default.
	DefaultWarmup = 2 * time.Second
	// DefaultFloorCap is the longest default floor duration.
	DefaultFloorCap = 5 * time.Second
	// DefaultCallTimeout bounds each call (the client retries inside it).
	DefaultCallTimeout = 5 * time.Second
	// MinTTL and MaxTTL bound --ttl (0: no lease), as the server does.
	MinTTL = time.Second
	MaxTTL = 24 * time.Hour
)

// Config is one benchmark run. Validate fills in the defaults of
// FloorDuration and CallTimeout; Warmup 0 means no warm-up (the command's
// flag defaults to DefaultWarmup).
type Config struct {
	// Addrs are the node API addresses (host:port or http:// URLs).
	Addrs []string
	// Clients is the number of closed-loop clients (1..4096).
	Clients int
	// Duration is the measured period (1s..10m).
	Duration time.Duration
	// Warmup is the unmeasured period before it (0..10m).
	Warmup time.Duration
	// Mix is what the clients do.
	Mix Mix
	// TTL leases every allocation (0: no lease; else 1s..24h, whole ms).
	TTL time.Duration
	// Floor runs the loopback floors after the main measurement.
	Floor bool
	// FloorDuration is each floor's measured period (1s..10m); 0 means
	// min(Duration, 5s).
	FloorDuration time.Duration
	// PIDs are the server processes whose CPU to measure; empty: find them
	// by the ports of the loopback addresses in Addrs.
	PIDs []int
	// CallTimeout bounds each call (0: 5s).
	CallTimeout time.Duration
	// Live receives one progress line per second (nil: none).
	Live io.Writer
}

// FlagError is a configuration error; Flag names the offending flag.
type FlagError struct {
	Flag string
	Msg  string
}

func (e *FlagError) Error() string { return "--" + e.Flag + " " + e.Msg }

func flagErr(flag, format string, a ...any) error {
	return &FlagError{Flag: flag, Msg: fmt.Sprintf(format, a...)}
}

// ParseMix parses a --mix value.
func ParseMix(s string) (Mix, error) {
	for _, m := range Mixes {
		if string(m) == s {
			return m, nil
		}
	}
	names := make([]string, len(Mixes))
	for i, m := range Mixes {
		names[i] = string(m)
	}
	return "", flagErr("mix", "%q: want one of %s", s, strings.Join(names, ", "))
}

// Validate checks c and fills in the defaults of FloorDuration and
// CallTimeout. Every error is a *FlagError naming the flag.
func (c *Config) Validate() error {
	var addrs []string
	for _, a := range c.Addrs {
		if a = strings.TrimSpace(a); a != "" {
			addrs = append(addrs, a)
		}
	}
	if len(addrs) == 0 {
		return flagErr("addr", "is empty: want one or more node addresses, comma-separated")
	}
	c.Addrs = addrs
	if c.Clients < MinClients || c.Clients > MaxClients {
		return flagErr("clients", "%d: want %d to %d", c.Clients, MinClients, MaxClients)
	}
	if c.Duration < MinDuration || c.Duration > MaxDuration {
		return flagErr("duration", "%v: want %v to %v", c.Duration, MinDuration, MaxDuration)
	}
	if c.Warmup < 0 || c.Warmup > MaxWarmup {
		return flagErr("warmup", "%v: want 0 to %v", c.Warmup, MaxWarmup)
	}
	if _, err := ParseMix(string(c.Mix)); err != nil {
		return err
	}
	if c.TTL != 0 {
		if c.Mix == MixHolder {
			return flagErr("ttl", "%v: the holder mix allocates nothing to lease", c.TTL)
		}
		if c.TTL < MinTTL || c.TTL > MaxTTL || c.TTL%time.Millisecond != 0 {
			return flagErr("ttl", "%v: want 0 (no lease) or %v to %v in whole milliseconds", c.TTL, MinTTL, MaxTTL)
		}
	}
	if c.FloorDuration == 0 {
		c.FloorDuration = min(c.Duration, DefaultFloorCap)
	}
	if c.FloorDuration < MinDuration || c.FloorDuration > MaxDuration {
		return flagErr("floor-duration", "%v: want %v to %v", c.FloorDuration, MinDuration, MaxDuration)
	}
	for _, p := range c.PIDs {
		if p <= 0 {
			return flagErr("pid", "%d: want a process id above 0", p)
		}
	}
	if c.CallTimeout == 0 {
		c.CallTimeout = DefaultCallTimeout
	}
	if c.CallTimeout < 10*time.Millisecond || c.CallTimeout > time.Hour {
		return flagErr("call-timeout", "%v: want 10ms to 1h", c.CallTimeout)
	}
	return nil
}
