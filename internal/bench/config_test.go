package bench

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func validConfig() Config {
	return Config{Addrs: []string{"127.0.0.1:7101"}, Clients: 4, Duration: 3 * time.Second, Warmup: DefaultWarmup, Mix: MixAllocRelease, Floor: true}
}

func TestValidateNamesTheBadFlag(t *testing.T) {
	cases := []struct {
		name string
		edit func(*Config)
		flag string
	}{
		{"no address", func(c *Config) { c.Addrs = nil }, "addr"},
		{"blank addresses", func(c *Config) { c.Addrs = []string{" ", ""} }, "addr"},
		{"zero clients", func(c *Config) { c.Clients = 0 }, "clients"},
		{"negative clients", func(c *Config) { c.Clients = -3 }, "clients"},
		{"too many clients", func(c *Config) { c.Clients = MaxClients + 1 }, "clients"},
		{"duration too short", func(c *Config) { c.Duration = 999 * time.Millisecond }, "duration"},
		{"duration zero", func(c *Config) { c.Duration = 0 }, "duration"},
		{"duration too long", func(c *Config) { c.Duration = MaxDuration + time.Second }, "duration"},
		{"negative warmup", func(c *Config) { c.Warmup = -time.Second }, "warmup"},
		{"warmup too long", func(c *Config) { c.Warmup = MaxWarmup + time.Second }, "warmup"},
		{"unknown mix", func(c *Config) { c.Mix = "alloc-only" }, "mix"},
		{"empty mix", func(c *Config) { c.Mix = "" }, "mix"},
		{"ttl too short", func(c *Config) { c.TTL = 500 * time.Millisecond }, "ttl"},
		{"ttl too long", func(c *Config) { c.TTL = MaxTTL + time.Hour }, "ttl"},
		{"ttl not whole ms", func(c *Config) { c.TTL = time.Second + time.Microsecond }, "ttl"},
		{"ttl on holder", func(c *Config) { c.Mix, c.TTL = MixHolder, 10*time.Second }, "ttl"},
		{"floor too short", func(c *Config) { c.FloorDuration = 10 * time.Millisecond }, "floor-duration"},
		{"floor too long", func(c *Config) { c.FloorDuration = 11 * time.Minute }, "floor-duration"},
		{"bad pid", func(c *Config) { c.PIDs = []int{12, 0} }, "pid"},
		{"call timeout too short", func(c *Config) { c.CallTimeout = time.Millisecond }, "call-timeout"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := validConfig()
			c.edit(&cfg)
			err := cfg.Validate()
			var fe *FlagError
			if !errors.As(err, &fe) || fe.Flag != c.flag {
				t.Fatalf("error %v, want one naming --%s", err, c.flag)
			}
			if !strings.HasPrefix(err.Error(), "--"+c.flag+" ") {
				t.Fatalf("message %q does not start with --%s", err, c.flag)
			}
			// Run refuses it too, before doing anything.
			if _, err := Run(context.Background(), func() Config { k := validConfig(); c.edit(&k); return k }()); !errors.As(err, &fe) || fe.Flag != c.flag {
				t.Fatalf("Run: %v, want the --%s error", err, c.flag)
			}
		})
	}
}

func TestValidateAcceptsAndFillsDefaults(t *testing.T) {
	cases := []struct {
		name            string
		edit            func(*Config)
		floor, callTime time.Duration
	}{
		{"defaults, short duration", func(c *Config) {}, 3 * time.Second, DefaultCallTimeout},
		{"long duration caps the floor", func(c *Config) { c.Duration = time.Minute }, DefaultFloorCap, DefaultCallTimeout},
		{"explicit floor and timeout", func(c *Config) { c.FloorDuration, c.CallTimeout = 2*time.Second, time.Second }, 2 * time.Second, time.Second},
		{"bounds", func(c *Config) {
			c.Clients, c.Duration, c.Warmup, c.Mix, c.TTL = MaxClients, MaxDuration, 0, MixSpecific, MaxTTL
		}, DefaultFloorCap, DefaultCallTimeout},
		{"min bounds", func(c *Config) { c.Clients, c.Duration, c.TTL = MinClients, MinDuration, MinTTL }, MinDuration, DefaultCallTimeout},
	}
	for _, c := range cases {
		cfg := validConfig()
		c.edit(&cfg)
		if err := cfg.Validate(); err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if cfg.FloorDuration != c.floor || cfg.CallTimeout != c.callTime {
			t.Errorf("%s: floor %v call timeout %v, want %v %v", c.name, cfg.FloorDuration, cfg.CallTimeout, c.floor, c.callTime)
		}
	}
	for _, m := range Mixes {
		if got, err := ParseMix(string(m)); err != nil || got != m {
			t.Errorf("ParseMix(%q) = %q, %v", m, got, err)
		}
	}
}
