package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// kind is the type of a key's value.
type kind int

const (
	kindString   kind = iota // a YAML string
	kindStrings              // a YAML list of strings, or one comma-separated string
	kindInt                  // a YAML integer, or a string holding one
	kindDuration             // a string such as "5s"; a bare 0 is allowed
)

// field is one configuration key: its type, where it lives in Config and
// the flag that sets it, if any.
type field struct {
	key   string // dotted key, e.g. "gossip.seeds"
	kind  kind
	flag  string // flag name without dashes, "" for none
	usage string // flag usage
	ref   func(*Config) any
}

// section returns the part of the key before the dot.
func (f field) section() string { return f.key[:strings.IndexByte(f.key, '.')] }

// env returns the environment variable that sets the key.
func (f field) env() string { return envName(f.key) }

// envName maps "node.data_dir" to "FREQD_NODE_DATA_DIR".
func envName(key string) string {
	return "FREQD_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// fields lists every key, in the order of default.yaml. It is the single
// source of truth for file keys, env names and flags.
func fields() []field {
	return []field{
		{"node.name", kindString, "name", "node name, unique in the cluster (node.name)",
			func(c *Config) any { return &c.Node.Name }},
		{"node.data_dir", kindString, "data-dir", "directory for persistent state (node.data_dir)",
			func(c *Config) any { return &c.Node.DataDir }},
		{"node.fsync", kindString, "fsync", "when to fsync the data directory: always, interval or none (node.fsync)",
			func(c *Config) any { return &c.Node.Fsync }},
		{"node.fsync_interval", kindDuration, "", "",
			func(c *Config) any { return &c.Node.FsyncInterval }},
		{"api.addr", kindString, "api-addr", "client API listen address host:port (api.addr)",
			func(c *Config) any { return &c.API.Addr }},
		{"peer.addr", kindString, "peer-addr", "node-to-node (peer) listen address host:port (peer.addr)",
			func(c *Config) any { return &c.Peer.Addr }},
		{"gossip.addr", kindString, "gossip-addr", "gossip listen address host:port (gossip.addr)",
			func(c *Config) any { return &c.Gossip.Addr }},
		{"gossip.advertise", kindString, "", "",
			func(c *Config) any { return &c.Gossip.Advertise }},
		{"gossip.seeds", kindStrings, "seeds", "gossip addresses to join, host:port,... (gossip.seeds)",
			func(c *Config) any { return &c.Gossip.Seeds }},
		{"gossip.profile", kindString, "profile", "gossip timing profile: lan, local or fast (gossip.profile)",
			func(c *Config) any { return &c.Gossip.Profile }},
		{"gossip.probe_interval", kindDuration, "", "",
			func(c *Config) any { return &c.Gossip.ProbeInterval }},
		{"gossip.probe_timeout", kindDuration, "", "",
			func(c *Config) any { return &c.Gossip.ProbeTimeout }},
		{"gossip.suspicion_mult", kindInt, "", "",
			func(c *Config) any { return &c.Gossip.SuspicionMult }},
		{"gossip.gossip_interval", kindDuration, "", "",
			func(c *Config) any { return &c.Gossip.GossipInterval }},
		{"gossip.push_pull_interval", kindDuration, "", "",
			func(c *Config) any { return &c.Gossip.PushPullInterval }},
		{"gossip.rejoin_interval", kindDuration, "", "",
			func(c *Config) any { return &c.Gossip.RejoinInterval }},
		{"pool.ranges", kindStrings, "ranges", "frequency ranges first-last,... (pool.ranges)",
			func(c *Config) any { return &c.Pool.Ranges }},
		{"pool.partitions", kindInt, "partitions", "partition count, 0 = pool decides (pool.partitions)",
			func(c *Config) any { return &c.Pool.Partitions }},
		{"replication.factor", kindInt, "replication-factor", "copies of each partition (replication.factor)",
			func(c *Config) any { return &c.Replication.Factor }},
		{"routing.strategy", kindString, "strategy", "local-first, round-robin or most-free (routing.strategy)",
			func(c *Config) any { return &c.Routing.Strategy }},
		{"cluster.bootstrap_expect", kindInt, "bootstrap-expect", "members a new cluster waits for (cluster.bootstrap_expect)",
			func(c *Config) any { return &c.Cluster.BootstrapExpect }},
		{"log.level", kindString, "log-level", "debug, info, warn or error (log.level)",
			func(c *Config) any { return &c.Log.Level }},
		{"log.format", kindString, "", "",
			func(c *Config) any { return &c.Log.Format }},
	}
}

// zero returns the raw value a YAML null stands for: the empty value of the
// kind, so that `advertise:` means "" and `seeds:` means [].
func (k kind) zero() any {
	switch k {
	case kindStrings:
		return []any{}
	case kindInt, kindDuration:
		return 0
	default:
		return ""
	}
}

// decode converts raw (from the file, the environment, a flag or the
// default) to the field's type and stores it in c. Strings from the
// environment are what make ints and lists accept strings.
func (f field) decode(raw any, c *Config) []*Error {
	switch f.kind {
	case kindString:
		s, ok := raw.(string)
		if !ok {
			return []*Error{problem(f.key, raw, "want a string (quote it)")}
		}
		*f.ref(c).(*string) = s
	case kindInt:
		n, err := toInt(raw)
		if err != nil {
			return []*Error{problem(f.key, raw, "%w", err)}
		}
		*f.ref(c).(*int) = n
	case kindDuration:
		d, err := toDuration(raw)
		if err != nil {
			return []*Error{problem(f.key, raw, "%w", err)}
		}
		*f.ref(c).(*time.Duration) = d
	case kindStrings:
		list, errs := toStrings(f.key, raw)
		if len(errs) > 0 {
			return errs
		}
		*f.ref(c).(*[]string) = list
	default:
		panic(fmt.Sprintf("config: field %s has unknown kind %d", f.key, f.kind))
	}
	return nil
}

func toInt(raw any) (int, error) {
	switch v := raw.(type) {
	case int:
		return v, nil
	case int64:
		if v < math.MinInt || v > math.MaxInt {
			return 0, fmt.Errorf("integer out of range")
		}
		return int(v), nil
	case string:
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
				return 0, fmt.Errorf("integer out of range")
			}
			return 0, fmt.Errorf("want an integer")
		}
		return n, nil
	default:
		return 0, fmt.Errorf("want an integer")
	}
}

func toDuration(raw any) (time.Duration, error) {
	switch v := raw.(type) {
	case time.Duration:
		return v, nil
	case string:
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil {
			return 0, fmt.Errorf(`want a duration such as "500ms", "5s" or "1m30s"`)
		}
		return d, nil
	case int, int64:
		if v == 0 || v == int64(0) {
			return 0, nil
		}
		return 0, fmt.Errorf(`a duration needs a unit, as in "5s"`)
	default:
		return 0, fmt.Errorf(`want a duration such as "500ms", "5s" or "1m30s"`)
	}
}

// toStrings accepts a list of strings, or one string holding a
// comma-separated list (as from FREQD_GOSSIP_SEEDS="a:1,b:2"); items of
// the latter are trimmed, and a blank string is the empty list.
func toStrings(key string, raw any) ([]string, []*Error) {
	switch v := raw.(type) {
	case []string:
		return append([]string{}, v...), nil
	case []any:
		out := make([]string, 0, len(v))
		var errs []*Error
		for i, e := range v {
			s, ok := e.(string)
			if !ok {
				errs = append(errs, problem(fmt.Sprintf("%s[%d]", key, i), e, "want a string (quote it)"))
				continue
			}
			out = append(out, s)
		}
		return out, errs
	case string:
		out := []string{}
		if strings.TrimSpace(v) == "" {
			return out, nil
		}
		for _, s := range strings.Split(v, ",") {
			out = append(out, strings.TrimSpace(s))
		}
		return out, nil
	default:
		return nil, []*Error{problem(key, raw, "want a list of strings")}
	}
}
