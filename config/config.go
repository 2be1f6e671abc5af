package config

import (
	"bytes"
	_ "embed"
	"fmt"
	"time"

	"go.yaml.in/yaml/v3"
)

// defaultYAML is the built-in configuration; it documents every key.
//
//go:embed default.yaml
var defaultYAML []byte

// Routing strategies, the values of routing.strategy.
const (
	// StrategyLocalFirst tries a partition this node owns first.
	StrategyLocalFirst = "local-first"
	// StrategyRoundRobin rotates over the partitions with free space (by gossip).
	StrategyRoundRobin = "round-robin"
	// StrategyMostFree tries the partition with the most free frequencies.
	StrategyMostFree = "most-free"
)

// Gossip timing profiles, the values of gossip.profile.
const (
	// ProfileLAN is memberlist's default for a data-center network.
	ProfileLAN = "lan"
	// ProfileLocal is memberlist's default for one host on loopback.
	ProfileLocal = "local"
	// ProfileFast is shorter still, for tests that kill nodes.
	ProfileFast = "fast"
)

// Log levels, the values of log.level, as in log/slog.
const (
	LevelDebug = "debug"
	LevelInfo  = "info"
	LevelWarn  = "warn"
	LevelError = "error"
)

// Log formats, the values of log.format: slog's TextHandler or JSONHandler.
const (
	FormatText = "text"
	FormatJSON = "json"
)

// Config is the whole configuration of one node. It is a plain value: build
// it with Default, LoadFile or a Loader, change fields freely, and call
// Validate before use.
type Config struct {
	Node        Node
	API         API
	Peer        Peer
	Gossip      Gossip
	Pool        Pool
	Replication Replication
	Routing     Routing
	Cluster     Cluster
	Log         Log
}

// Node names the node and its storage (keys node.*).
type Node struct {
	// Name is unique in the cluster; never empty, no spaces (node.name).
	Name string
	// DataDir holds the node's persistent state; never empty (node.data_dir).
	DataDir string
	// Fsync is when the data directory is fsynced: FsyncAlways (before
	// every acknowledgement, group commit), FsyncInterval or FsyncNone
	// (node.fsync).
	Fsync string
	// FsyncInterval is the period of FsyncInterval; positive
	// (node.fsync_interval).
	FsyncInterval time.Duration
}

// The fsync policies of node.fsync (docs/storage.md says what each risks).
const (
	FsyncAlways   = "always"
	FsyncInterval = "interval"
	FsyncNone     = "none"
)

// API is the client-facing listener (keys api.*).
type API struct {
	// Addr is the listen address, host:port; an empty host means every
	// interface (api.addr).
	Addr string
}

// Peer is the node-to-node listener (keys peer.*): raft messages and
// forwarded requests go over it, never over the API.
type Peer struct {
	// Addr is the listen address, host:port; an empty host means every
	// interface. The node announces the address it listens on and every
	// other node dials it, so it should name an address they can all
	// reach (peer.addr).
	Addr string
}

// Gossip configures cluster membership (keys gossip.*). A zero duration or
// SuspicionMult means "use the profile's value".
type Gossip struct {
	// Addr is the memberlist listen address, host:port (gossip.addr).
	Addr string
	// Advertise is the address peers should use; "" means Addr
	// (gossip.advertise).
	Advertise string
	// Seeds are the gossip addresses to join at start; empty means start
	// alone (gossip.seeds).
	Seeds []string
	// Profile is ProfileLAN, ProfileLocal or ProfileFast (gossip.profile).
	Profile string
	// ProbeInterval overrides the profile's; 0 keeps it
	// (gossip.probe_interval).
	ProbeInterval time.Duration
	// ProbeTimeout overrides the profile's; 0 keeps it. Less than
	// ProbeInterval when both are set (gossip.probe_timeout).
	ProbeTimeout time.Duration
	// SuspicionMult overrides the profile's; 0 keeps it
	// (gossip.suspicion_mult).
	SuspicionMult int
	// GossipInterval overrides the profile's; 0 keeps it
	// (gossip.gossip_interval).
	GossipInterval time.Duration
	// PushPullInterval overrides the profile's; 0 keeps it
	// (gossip.push_pull_interval).
	PushPullInterval time.Duration
	// RejoinInterval is how often to re-join seeds that are not alive members; 0 means
	// the node's built-in value (gossip.rejoin_interval).
	RejoinInterval time.Duration
}

// Pool is the set of frequencies and its partitioning (keys pool.*). Every
// node of a cluster must have the same Pool.
type Pool struct {
	// Ranges are inclusive ranges "first-last" or single frequencies "f",
	// 0..4294967295, not overlapping; at least one (pool.ranges).
	Ranges []string
	// Partitions is the partition count; 0 lets package pool choose
	// (pool.partitions).
	Partitions int
}

// Replication sets how many copies of each partition exist (keys
// replication.*).
type Replication struct {
	// Factor is the number of copies, at least 1 (replication.factor).
	Factor int
}

// Routing chooses where an "any frequency" request goes first (keys
// routing.*).
type Routing struct {
	// Strategy is StrategyLocalFirst, StrategyRoundRobin or
	// StrategyMostFree (routing.strategy).
	Strategy string
}

// Cluster configures cluster formation (keys cluster.*).
type Cluster struct {
	// BootstrapExpect is how many members a brand-new cluster must see
	// before it creates its pool; at least 1 (cluster.bootstrap_expect).
	BootstrapExpect int
}

// Log configures the node's logger (keys log.*).
type Log struct {
	// Level is LevelDebug, LevelInfo, LevelWarn or LevelError (log.level).
	Level string
	// Format is FormatText or FormatJSON (log.format).
	Format string
}

// Default returns the built-in configuration (the embedded default.yaml):
// one node named "freqd" on 127.0.0.1 with API port 7100, peer port 7300
// and gossip port 7946, no seeds, pool ranges "10-15" and "20-25". It does not read the
// environment. It is valid: Default().Validate() == nil.
func Default() Config {
	file, err := parseFile("default.yaml", defaultYAML)
	if err != nil {
		panic(fmt.Sprintf("config: embedded default.yaml: %v", err))
	}
	var c Config
	for _, f := range fields() {
		if errs := f.decode(file.values[f.key], &c); len(errs) > 0 {
			panic(fmt.Sprintf("config: embedded default.yaml: %v", errs[0]))
		}
	}
	return c
}

// YAML returns c as a config file that loads back to c: every key, in the
// order of default.yaml, durations written as "5s", for tools that write
// per-node config files. It does not validate c.
func (c Config) YAML() ([]byte, error) {
	type node struct {
		Name          string `yaml:"name"`
		DataDir       string `yaml:"data_dir"`
		Fsync         string `yaml:"fsync"`
		FsyncInterval string `yaml:"fsync_interval"`
	}
	type api struct {
		Addr string `yaml:"addr"`
	}
	type peer struct {
		Addr string `yaml:"addr"`
	}
	type gossip struct {
		Addr             string   `yaml:"addr"`
		Advertise        string   `yaml:"advertise"`
		Seeds            []string `yaml:"seeds"`
		Profile          string   `yaml:"profile"`
		ProbeInterval    string   `yaml:"probe_interval"`
		ProbeTimeout     string   `yaml:"probe_timeout"`
		SuspicionMult    int      `yaml:"suspicion_mult"`
		GossipInterval   string   `yaml:"gossip_interval"`
		PushPullInterval string   `yaml:"push_pull_interval"`
		RejoinInterval   string   `yaml:"rejoin_interval"`
	}
	type pool struct {
		Ranges     []string `yaml:"ranges"`
		Partitions int      `yaml:"partitions"`
	}
	type replication struct {
		Factor int `yaml:"factor"`
	}
	type routing struct {
		Strategy string `yaml:"strategy"`
	}
	type cluster struct {
		BootstrapExpect int `yaml:"bootstrap_expect"`
	}
	type logc struct {
		Level  string `yaml:"level"`
		Format string `yaml:"format"`
	}
	type file struct {
		Node        node        `yaml:"node"`
		API         api         `yaml:"api"`
		Peer        peer        `yaml:"peer"`
		Gossip      gossip      `yaml:"gossip"`
		Pool        pool        `yaml:"pool"`
		Replication replication `yaml:"replication"`
		Routing     routing     `yaml:"routing"`
		Cluster     cluster     `yaml:"cluster"`
		Log         logc        `yaml:"log"`
	}
	// Never write null for a list: null would mean "unset" to a reader.
	nonNil := func(s []string) []string {
		if s == nil {
			return []string{}
		}
		return s
	}
	g := c.Gossip
	out := file{
		Node: node{Name: c.Node.Name, DataDir: c.Node.DataDir, Fsync: c.Node.Fsync, FsyncInterval: c.Node.FsyncInterval.String()},
		API:  api{Addr: c.API.Addr},
		Peer: peer{Addr: c.Peer.Addr},
		Gossip: gossip{
			Addr: g.Addr, Advertise: g.Advertise, Seeds: nonNil(g.Seeds), Profile: g.Profile,
			ProbeInterval: g.ProbeInterval.String(), ProbeTimeout: g.ProbeTimeout.String(),
			SuspicionMult: g.SuspicionMult, GossipInterval: g.GossipInterval.String(),
			PushPullInterval: g.PushPullInterval.String(), RejoinInterval: g.RejoinInterval.String(),
		},
		Pool:        pool{Ranges: nonNil(c.Pool.Ranges), Partitions: c.Pool.Partitions},
		Replication: replication{Factor: c.Replication.Factor},
		Routing:     routing{Strategy: c.Routing.Strategy},
		Cluster:     cluster{BootstrapExpect: c.Cluster.BootstrapExpect},
		Log:         logc{Level: c.Log.Level, Format: c.Log.Format},
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(out); err != nil {
		return nil, fmt.Errorf("config: encode YAML: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("config: encode YAML: %w", err)
	}
	return buf.Bytes(), nil
}
