package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/freqd/freqd/config"
	"github.com/freqd/freqd/node"
)

// devOptions shape the local cluster `freqd dev` starts.
type devOptions struct {
	nodes      int
	pool       []string
	partitions int
	apiPort    int
	peerPort   int
	gossipPort int
	factor     int
	strategy   string
	profile    string
	logLevel   string
	// dataDir holds one directory per node; "" means "data" (relative).
	dataDir string
	fsync   string
}

// devConfigs builds one config per node of a loopback cluster.
func devConfigs(o devOptions) ([]config.Config, error) {
	if o.nodes < 1 || o.nodes > 64 {
		return nil, fmt.Errorf("--nodes %d: want 1 to 64", o.nodes)
	}
	bases := []struct {
		flag string
		port int
	}{{"--api-port", o.apiPort}, {"--peer-port", o.peerPort}, {"--gossip-port", o.gossipPort}}
	for i, a := range bases {
		for _, b := range bases[i+1:] {
			if a.port < b.port+o.nodes && b.port < a.port+o.nodes {
				return nil, fmt.Errorf("%s %d and %s %d: the %d ports from each overlap", a.flag, a.port, b.flag, b.port, o.nodes)
			}
		}
	}
	var gossip []string
	for i := 0; i < o.nodes; i++ {
		gossip = append(gossip, fmt.Sprintf("127.0.0.1:%d", o.gossipPort+i))
	}
	var cfgs []config.Config
	for i := 0; i < o.nodes; i++ {
		c := config.Default()
		c.Node.Name = fmt.Sprintf("n%d", i+1)
		base := o.dataDir
		if base == "" {
			base = "data"
		}
		c.Node.DataDir = filepath.Join(base, c.Node.Name)
		if o.fsync != "" {
			c.Node.Fsync = o.fsync
		}
		c.API.Addr = fmt.Sprintf("127.0.0.1:%d", o.apiPort+i)
		c.Peer.Addr = fmt.Sprintf("127.0.0.1:%d", o.peerPort+i)
		c.Gossip.Addr = gossip[i]
		c.Gossip.Seeds = nil
		for j, g := range gossip {
			if j != i {
				c.Gossip.Seeds = append(c.Gossip.Seeds, g)
			}
		}
		c.Gossip.Profile = o.profile
		c.Gossip.RejoinInterval = time.Second
		c.Pool.Ranges = o.pool
		c.Pool.Partitions = o.partitions
		c.Replication.Factor = o.factor
		c.Routing.Strategy = o.strategy
		c.Cluster.BootstrapExpect = o.nodes
		c.Log.Level = o.logLevel
		if err := c.Validate(); err != nil {
			return nil, fmt.Errorf("node %s: %w", c.Node.Name, err)
		}
		cfgs = append(cfgs, c)
	}
	return cfgs, nil
}

func newDevCmd() *cobra.Command {
	o := devOptions{}
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Start a local cluster on loopback (3 nodes by default) until Ctrl-C",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.dataDir == "" {
				// A fresh cluster each time, unless asked to keep one.
				tmp, err := os.MkdirTemp("", "freqd-dev-")
				if err != nil {
					return fmt.Errorf("data directory: %w", err)
				}
				defer os.RemoveAll(tmp)
				o.dataDir = tmp
			}
			cfgs, err := devConfigs(o)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runDev(ctx, cmd.OutOrStdout(), cfgs)
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.nodes, "nodes", 3, "number of nodes")
	f.StringSliceVar(&o.pool, "pool", []string{"10-15", "20-25"}, "frequency ranges, comma-separated")
	f.IntVar(&o.partitions, "partitions", 4, "partition count (0 = default)")
	f.IntVar(&o.apiPort, "api-port", 7101, "API port of the first node; the others follow")
	f.IntVar(&o.peerPort, "peer-port", 7301, "peer (node-to-node) port of the first node; the others follow")
	f.IntVar(&o.gossipPort, "gossip-port", 7947, "gossip port of the first node; the others follow")
	f.IntVar(&o.factor, "replication-factor", 3, "replication factor")
	f.StringVar(&o.strategy, "strategy", config.StrategyLocalFirst, "routing strategy: local-first, round-robin or most-free")
	f.StringVar(&o.profile, "profile", config.ProfileLocal, "gossip timing profile: lan, local or fast")
	f.StringVar(&o.logLevel, "log-level", "warn", "log level: debug, info, warn or error")
	f.StringVar(&o.dataDir, "data-dir", "", "keep the nodes' state in DIR/n1, DIR/n2, ... across runs (default: a temporary directory removed at exit)")
	f.StringVar(&o.fsync, "fsync", config.FsyncAlways, "fsync policy: always, interval or none")
	return cmd
}

// runDev starts the nodes, waits for the cluster to form, prints how to
// talk to it, and stops every node when ctx ends.
func runDev(ctx context.Context, out io.Writer, cfgs []config.Config) error {
	var nodes []*node.Node
	defer func() {
		for _, n := range nodes {
			_ = n.Close()
		}
	}()
	for _, c := range cfgs {
		logger, err := newLogger(c.Log)
		if err != nil {
			return err
		}
		opts, err := node.OptionsFromConfig(c, logger.With("node", c.Node.Name))
		if err != nil {
			return err
		}
		n, err := node.New(opts)
		if err != nil {
			return err
		}
		if err := n.Start(ctx); err != nil {
			return err
		}
		nodes = append(nodes, n)
	}
	// A node told to leave (freqd leave) stops, as `freqd serve` would.
	for _, n := range nodes {
		go func() {
			select {
			case <-n.Left():
				_ = n.Close()
			case <-ctx.Done():
			}
		}()
	}
	if err := waitFormed(ctx, nodes); err != nil {
		return err
	}
	first := nodes[0].APIAddr()
	fmt.Fprintf(out, "freqd dev: %d nodes, pool %s, replication factor %d\n", len(cfgs), strings.Join(cfgs[0].Pool.Ranges, ","), cfgs[0].Replication.Factor)
	for i, n := range nodes {
		fmt.Fprintf(out, "  %s  api %s  peer %s  gossip %s\n", n.Name(), n.APIAddr(), n.PeerAddr(), cfgs[i].Gossip.Addr)
	}
	fmt.Fprintf(out, `
Try, from another terminal (any node answers any request):
  freqd alloc   --addr %[1]s --client alice
  freqd alloc   --addr %[1]s --client bob --freq 20
  freqd holder  --addr %[1]s 20
  freqd release --addr %[1]s --client bob --freq 20
  freqd alloc   --addr %[1]s --client dave --ttl 30s
  freqd keepalive --addr %[1]s --client dave
  freqd release-all --addr %[1]s --client alice
  freqd status  --addr %[1]s
  freqd members --addr %[1]s
  freqd ring    --addr %[1]s
  freqd leave   --addr %[2]s
  curl -s -H 'Content-Type: application/json' -d '{"clientId":"carol"}' http://%[1]s/freqd.v1.FreqdService/Allocate
(go run ./cmd/freqd ... works in place of freqd.) Ctrl-C stops the cluster.
`, first, nodes[len(nodes)-1].APIAddr())
	<-ctx.Done()
	fmt.Fprintln(out, "freqd dev: stopping")
	return nil
}

// waitFormed waits until every node has joined and the pool is placed.
func waitFormed(ctx context.Context, nodes []*node.Node) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		ready := true
		for _, n := range nodes {
			st := n.Status(ctx)
			if !n.Active() || len(st.GetUnavailable()) > 0 {
				ready = false
				break
			}
		}
		if ready {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("dev cluster did not form within 30s (are the ports free? see --api-port, --peer-port, --gossip-port)")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
