package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestDefaultIsValid(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	// The values the rest of freqd and the docs rely on.
	if c.Node.Name != "freqd" || c.Node.DataDir != "./data/freqd" || c.API.Addr != "127.0.0.1:7100" ||
		c.Peer.Addr != "127.0.0.1:7300" || c.Gossip.Addr != "127.0.0.1:7946" || len(c.Gossip.Seeds) != 0 || c.Gossip.Profile != ProfileLAN ||
		c.Gossip.RejoinInterval != 5*time.Second || strings.Join(c.Pool.Ranges, ",") != "10-15,20-25" ||
		c.Pool.Partitions != 0 || c.Replication.Factor != 1 || c.Routing.Strategy != StrategyLocalFirst ||
		c.Cluster.BootstrapExpect != 1 || c.Log.Level != LevelInfo || c.Log.Format != FormatText {
		t.Errorf("Default() = %+v", c)
	}
}

// TestDefaultIgnoresEnv checks Default is the embedded file only.
func TestDefaultIgnoresEnv(t *testing.T) {
	t.Setenv("FREQD_NODE_NAME", "from-env")
	if got := Default().Node.Name; got != "freqd" {
		t.Errorf("Default().Node.Name = %q", got)
	}
}

// TestValidate mutates a valid config one field at a time; ok cases must
// pass, the others must report exactly the key given.
func TestValidate(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*Config)
		key    string // "" = valid
		want   string
	}{
		{"ipv6 listen", func(c *Config) { c.API.Addr = "[::1]:7100" }, "", ""},
		{"all interfaces", func(c *Config) { c.API.Addr = ":7100" }, "", ""},
		{"peer ipv6 listen", func(c *Config) { c.Peer.Addr = "[::1]:7300" }, "", ""},
		{"peer all interfaces", func(c *Config) { c.Peer.Addr = ":7300" }, "", ""},
		{"peer host name", func(c *Config) { c.Peer.Addr = "node-a.example.com:7300" }, "", ""},
		{"peer same port, other host", func(c *Config) { c.Peer.Addr = "127.0.0.2:7100" }, "", ""},
		{"hostname seed", func(c *Config) { c.Gossip.Seeds = []string{"node-b.example.com:7946", "node_c:1"} }, "", ""},
		{"advertise", func(c *Config) { c.Gossip.Advertise = "192.0.2.1:7946" }, "", ""},
		{"one frequency", func(c *Config) { c.Pool.Ranges = []string{"7"} }, "", ""},
		{"adjacent ranges", func(c *Config) { c.Pool.Ranges = []string{"16-20", "10-15"}; c.Pool.Partitions = 2 }, "", ""},
		{"whole uint32", func(c *Config) { c.Pool.Ranges = []string{"0-4294967295"}; c.Pool.Partitions = 1 << 20 }, "", ""},
		{"partitions = frequencies", func(c *Config) { c.Pool.Partitions = 12 }, "", ""},
		{"profile overrides", func(c *Config) {
			c.Gossip.ProbeInterval, c.Gossip.ProbeTimeout, c.Gossip.SuspicionMult = time.Second, 200*time.Millisecond, 3
		}, "", ""},
		{"only a timeout", func(c *Config) { c.Gossip.ProbeTimeout = time.Minute }, "", ""},

		{"empty name", func(c *Config) { c.Node.Name = "" }, "node.name", `node.name = "": must not be empty`},
		{"control in name", func(c *Config) { c.Node.Name = "a\x00b" }, "node.name", "control characters"},
		{"invalid utf-8 name", func(c *Config) { c.Node.Name = "a\xffb" }, "node.name", "not valid UTF-8"},
		{"seed missing port", func(c *Config) { c.Gossip.Seeds = []string{"127.0.0.1:7948", "127.0.0.1"} },
			"gossip.seeds[1]", `config: gossip.seeds[1] = "127.0.0.1": missing port`},
		{"seed empty port", func(c *Config) { c.Gossip.Seeds = []string{"127.0.0.1:"} }, "gossip.seeds[0]", "missing port"},
		{"seed bad brackets", func(c *Config) { c.Gossip.Seeds = []string{"[nothost]:1"} }, "gossip.seeds[0]", "not an IPv6 address"},
		{"seed ipv6 unspecified", func(c *Config) { c.Gossip.Seeds = []string{"[::]:1"} }, "gossip.seeds[0]", "cannot be dialed"},
		{"seed label too long", func(c *Config) { c.Gossip.Seeds = []string{strings.Repeat("a", 64) + ":1"} }, "gossip.seeds[0]", "not an IP address or host name"},
		{"seed label dash", func(c *Config) { c.Gossip.Seeds = []string{"-a:1"} }, "gossip.seeds[0]", "not an IP address or host name"},
		{"garbage address", func(c *Config) { c.API.Addr = "a:b:c" }, "api.addr", "needs brackets"},
		{"wildcard clash", func(c *Config) { c.API.Addr = ":7946" }, "api.addr", "same port as gossip.addr"},
		{"peer empty", func(c *Config) { c.Peer.Addr = "" }, "peer.addr", `peer.addr = "": empty; want host:port`},
		{"peer missing port", func(c *Config) { c.Peer.Addr = "127.0.0.1" }, "peer.addr", "missing port"},
		{"peer port out of range", func(c *Config) { c.Peer.Addr = "127.0.0.1:65536" }, "peer.addr", "port 65536 is out of range 1-65535"},
		{"peer garbage", func(c *Config) { c.Peer.Addr = "a:b:c" }, "peer.addr", "needs brackets"},
		{"peer bad host", func(c *Config) { c.Peer.Addr = "bad host:7300" }, "peer.addr", "not an IP address or host name"},
		{"peer clashes with api", func(c *Config) { c.Peer.Addr = "127.0.0.1:7100" }, "peer.addr",
			`peer.addr = "127.0.0.1:7100": same port as api.addr = "127.0.0.1:7100"`},
		{"peer wildcard clashes with api", func(c *Config) { c.Peer.Addr = "0.0.0.0:7100" }, "peer.addr", "same port as api.addr"},
		{"peer clashes with gossip", func(c *Config) { c.Peer.Addr = ":7946" }, "peer.addr", "same port as gossip.addr"},
		{"advertise unspecified", func(c *Config) { c.Gossip.Advertise = "0.0.0.0:1" }, "gossip.advertise", "cannot be dialed"},
		{"negative push pull", func(c *Config) { c.Gossip.PushPullInterval = -time.Second }, "gossip.push_pull_interval", "= -1s: must not be negative"},
		{"timeout over interval", func(c *Config) { c.Gossip.ProbeInterval, c.Gossip.ProbeTimeout = time.Second, 2*time.Second },
			"gossip.probe_timeout", "gossip.probe_timeout = 2s: must be less than gossip.probe_interval = 1s"},
		{"nil ranges", func(c *Config) { c.Pool.Ranges = nil }, "pool.ranges", "no frequency ranges"},
		{"overlap later in list", func(c *Config) { c.Pool.Ranges = []string{"1-100", "200-300", "50-60"} },
			"pool.ranges[2]", `pool.ranges[2] = "50-60": overlaps pool.ranges[0] = "1-100"`},
		{"overlap reported on later entry", func(c *Config) { c.Pool.Ranges = []string{"50-60", "1-100"} },
			"pool.ranges[1]", `overlaps pool.ranges[0] = "50-60"`},
		{"single inside range", func(c *Config) { c.Pool.Ranges = []string{"10-20", "15"} }, "pool.ranges[1]", "overlaps pool.ranges[0]"},
		{"too many partitions", func(c *Config) { c.Pool.Partitions = 13 }, "pool.partitions", "more than the 12 frequencies"},
		{"unknown strategy", func(c *Config) { c.Routing.Strategy = "" }, "routing.strategy", `routing.strategy = "": unknown strategy; want local-first, round-robin or most-free`},
		{"unknown profile", func(c *Config) { c.Gossip.Profile = "LAN" }, "gossip.profile", "want lan, local or fast"},
		{"bootstrap negative", func(c *Config) { c.Cluster.BootstrapExpect = -1 }, "cluster.bootstrap_expect", "must be at least 1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			tc.mutate(&c)
			err := c.Validate()
			if tc.key == "" {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			errs := allErrors(err)
			if len(errs) != 1 || errs[0].Key != tc.key {
				t.Fatalf("errors for keys %q, want exactly %q:\n%v", keysOf(err), tc.key, err)
			}
			if !strings.Contains(err.Error(), tc.want) || errs[0].Source != "" {
				t.Errorf("error %q (source %q), want it to contain %q and no source", err, errs[0].Source, tc.want)
			}
		})
	}
}

func TestParseRange(t *testing.T) {
	cases := []struct {
		in          string
		first, last uint32
		err         string // substring; "" = ok
	}{
		{"10-15", 10, 15, ""},
		{" 10 - 15 ", 10, 15, ""},
		{"7", 7, 7, ""},
		{"0", 0, 0, ""},
		{"0-4294967295", 0, 4294967295, ""},
		{"0010-12", 10, 12, ""},
		{"5-5", 5, 5, ""},
		{"", 0, 0, "empty"},
		{"   ", 0, 0, "empty"},
		{"15-10", 0, 0, "first 15 is greater than last 10"},
		{"-5", 0, 0, "cannot be negative"},
		{"-", 0, 0, "cannot be negative"},
		{"1-", 0, 0, "last: missing frequency"},
		{"1--2", 0, 0, "want \"first-last\""},
		{"1-2-3", 0, 0, "want \"first-last\""},
		{"a", 0, 0, `"a" is not a frequency`},
		{"1-b", 0, 0, `last: "b" is not a frequency`},
		{"+1", 0, 0, "is not a frequency"},
		{"1.5", 0, 0, "is not a frequency"},
		{"1 2", 0, 0, "is not a frequency"},
		{"0x10", 0, 0, "is not a frequency"},
		{"4294967296", 0, 0, "is not a frequency (0..4294967295)"},
		{"1-99999999999999999999999", 0, 0, "is not a frequency (0..4294967295)"},
	}
	for _, tc := range cases {
		r, err := parseRange(tc.in)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("parseRange(%q): %v", tc.in, err)
		case tc.err == "" && (r.first != tc.first || r.last != tc.last):
			t.Errorf("parseRange(%q) = %d-%d, want %d-%d", tc.in, r.first, r.last, tc.first, tc.last)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("parseRange(%q) error %v, want %q", tc.in, err, tc.err)
		}
	}
}

func TestCheckRangesTotal(t *testing.T) {
	total, ps := checkRanges([]string{"0-4294967295"})
	if len(ps) != 0 || total != 1<<32 {
		t.Errorf("total %d, problems %v", total, ps)
	}
	total, ps = checkRanges([]string{"10-15", "20-25", "7"})
	if len(ps) != 0 || total != 13 {
		t.Errorf("total %d, problems %v", total, ps)
	}
}

func TestErrorFormat(t *testing.T) {
	long := strings.Repeat("x", 500)
	e := problem("node.name", long, "bad")
	if len(e.Value) > maxShow+3 || !strings.HasSuffix(e.Value, "...") {
		t.Errorf("long value not cut: %d bytes", len(e.Value))
	}
	e = &Error{Key: "a.b", Value: show([]any{"x", int64(1), map[string]any{"k": true}}), Err: errors.New("bad"), Source: "f.yaml:3"}
	if got, want := e.Error(), `config: a.b = ["x", 1, {k: true}]: bad (from f.yaml:3)`; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}
