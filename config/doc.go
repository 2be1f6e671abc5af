// Package config loads and checks the configuration of a freqd node.
//
// The configuration is a plain struct, Config, with one sub-struct per
// section of the YAML file (node, api, peer, gossip, pool, replication,
// routing, cluster, log). Nothing outside this package sees viper: callers get a
// Config value and nothing else.
//
// # Layers
//
// A Loader builds a Config from four layers, each overriding the one
// before:
//
//  1. the built-in default, default.yaml, embedded in the binary; it is
//     also the reference documentation of every key;
//  2. a YAML config file, which need only set the keys it changes;
//  3. environment variables FREQD_<SECTION>_<KEY>, such as
//     FREQD_GOSSIP_SEEDS or FREQD_NODE_DATA_DIR; list keys take a
//     comma-separated value (FREQD_POOL_RANGES="10-15,20-25"); an empty
//     variable counts as unset;
//  4. command-line flags defined by Loader.BindFlags, only those the user
//     actually set.
//
// Default returns layer 1 alone. LoadFile is the common case without flags.
//
// # Strictness
//
// A bad configuration is rejected at start, never half-used. Load rejects
// an empty or unparsable file (naming the file), unknown or duplicate keys
// at any depth (with a guess at the key meant), values of the wrong type,
// and then everything Validate rejects: addresses that are not host:port
// with a port 1-65535, malformed, reversed or overlapping frequency
// ranges, unknown profiles, strategies and log levels, negative durations
// and counts. Every problem is reported, not just the first, each as an
// *Error naming the key, the value and where it came from:
//
//	config: gossip.seeds[1] = "127.0.0.1": missing port (from n1.yaml:12)
//	config: pool.ranges[1] = "12-20": overlaps pool.ranges[0] = "10-15" (from env FREQD_POOL_RANGES)
//
// Validate checks the fields and the rules between them but knows nothing
// of the network or the disk. The node still builds the pool layout with
// package pool, which repeats the range checks and owns the partitioning
// rules; config checks the same syntax so that a bad file fails before
// anything starts.
//
// Config.YAML writes a Config back as a file that loads to the same
// value, for tools that write per-node config files. Working
// examples live in config/examples: local-3 (three nodes on one host) and
// hosts-3 (three hosts).
package config
