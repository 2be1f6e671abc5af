package node

import (
	"fmt"
	"log/slog"

	"github.com/freqd/freqd/config"
	"github.com/freqd/freqd/membership"
	"github.com/freqd/freqd/pool"
	"github.com/freqd/freqd/store"
)

// OptionsFromConfig turns a validated config into node Options: it parses
// the pool into its layout and resolves the gossip profile with the
// config's per-field overrides.
func OptionsFromConfig(cfg config.Config, logger *slog.Logger) (Options, error) {
	if err := cfg.Validate(); err != nil {
		return Options{}, err
	}
	ranges, err := pool.ParseRanges(cfg.Pool.Ranges)
	if err != nil {
		return Options{}, fmt.Errorf("config: pool.ranges: %w", err)
	}
	layout, err := pool.NewLayout(ranges, cfg.Pool.Partitions)
	if err != nil {
		return Options{}, fmt.Errorf("config: pool.partitions = %d: %w", cfg.Pool.Partitions, err)
	}
	strategy, err := ParseStrategy(cfg.Routing.Strategy)
	if err != nil {
		return Options{}, fmt.Errorf("config: routing.strategy: %w", err)
	}
	prof, err := membership.ProfileByName(cfg.Gossip.Profile)
	if err != nil {
		return Options{}, fmt.Errorf("config: gossip.profile: %w", err)
	}
	sync, err := store.ParseSyncPolicy(cfg.Node.Fsync)
	if err != nil {
		return Options{}, fmt.Errorf("config: node.fsync: %w", err)
	}
	g := cfg.Gossip
	if g.ProbeInterval > 0 {
		prof.ProbeInterval = g.ProbeInterval
	}
	if g.ProbeTimeout > 0 {
		prof.ProbeTimeout = g.ProbeTimeout
	}
	if g.SuspicionMult > 0 {
		prof.SuspicionMult = g.SuspicionMult
	}
	if g.GossipInterval > 0 {
		prof.GossipInterval = g.GossipInterval
	}
	if g.PushPullInterval > 0 {
		prof.PushPullInterval = g.PushPullInterval
	}
	return Options{
		Name:              cfg.Node.Name,
		APIAddr:           cfg.API.Addr,
		Layout:            layout,
		ReplicationFactor: cfg.Replication.Factor,
		Strategy:          strategy,
		BootstrapExpect:   cfg.Cluster.BootstrapExpect,
		Gossip: membership.Config{
			BindAddr:       g.Addr,
			AdvertiseAddr:  g.Advertise,
			Seeds:          g.Seeds,
			Profile:        prof,
			RejoinInterval: g.RejoinInterval,
		},
		Logger:       logger,
		DataDir:      cfg.Node.DataDir,
		Sync:         sync,
		SyncInterval: cfg.Node.FsyncInterval,
	}, nil
}
