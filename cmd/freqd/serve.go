package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/freqd/freqd/config"
	"github.com/freqd/freqd/node"
)

func newServeCmd() *cobra.Command {
	var file string
	loader := config.NewLoader()
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run one node until SIGINT or SIGTERM (then leave the cluster cleanly)",
		Long: `Run one freqd node. Without --config it runs the embedded default: a single
node with its API on 127.0.0.1:7100 and its peer (node-to-node) port on
127.0.0.1:7300. Settings come from, highest first: flags, FREQD_* environment
variables (FREQD_GOSSIP_SEEDS, FREQD_API_ADDR, FREQD_PEER_ADDR, ...), the
config file, the defaults.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loader.Load(file)
			if err != nil {
				return err
			}
			logger, err := newLogger(cfg.Log)
			if err != nil {
				return err
			}
			opts, err := node.OptionsFromConfig(cfg, logger)
			if err != nil {
				return err
			}
			n, err := node.New(opts)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if err := n.Start(ctx); err != nil {
				return err
			}
			logger.Info("serving", "node", cfg.Node.Name, "api", n.APIAddr(), "peer", n.PeerAddr(), "gossip", cfg.Gossip.Addr)
			select {
			case <-ctx.Done():
				logger.Info("signal received: leaving the cluster")
				lctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				if _, err := n.Leave(lctx); err != nil {
					logger.Warn("leave did not complete", "err", err)
				}
				cancel()
			case <-n.Left():
				logger.Info("left the cluster on request")
			}
			return n.Close()
		},
	}
	cmd.Flags().StringVarP(&file, "config", "c", "", "YAML config file (default: the embedded single-node config)")
	loader.BindFlags(cmd.Flags())
	return cmd
}

// newLogger builds the process logger from the log section.
func newLogger(l config.Log) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(l.Level)); err != nil {
		return nil, fmt.Errorf("log.level %q: %w", l.Level, err)
	}
	o := &slog.HandlerOptions{Level: level}
	if l.Format == config.FormatJSON {
		return slog.New(slog.NewJSONHandler(os.Stderr, o)), nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, o)), nil
}
