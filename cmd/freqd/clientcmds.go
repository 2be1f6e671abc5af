package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/freqd/freqd/client"
	freqdv1 "github.com/freqd/freqd/gen/freqd/v1"
)

// clientFlags are shared by every command that talks to a node.
type clientFlags struct {
	addr    string
	json    bool
	timeout time.Duration
}

func (f *clientFlags) bind(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.addr, "addr", defaultAddrs, "node API address (host:port); several comma-separated are tried in turn")
	cmd.Flags().BoolVar(&f.json, "json", false, "print JSON for scripts")
	cmd.Flags().DurationVar(&f.timeout, "timeout", 10*time.Second, "give up after this long")
}

// run calls fn with a client for --addr and a context bounded by
// --timeout.
func (f *clientFlags) run(fn func(ctx context.Context, c *client.Client) error) error {
	c, err := client.New(strings.Split(f.addr, ","))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), f.timeout)
	defer cancel()
	return fn(ctx, c)
}

// printJSON writes a message as indented protojson.
func printJSON(w io.Writer, m proto.Message) error {
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  ", EmitUnpopulated: true}.Marshal(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(b))
	return err
}

// defaultAddrs reaches both the default single node (freqd serve, 7100)
// and the local cluster of freqd dev (7101-7103): the client moves on
// when a connection is refused.
const defaultAddrs = "127.0.0.1:7100,127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103"

func parseFreq(s string) (uint32, error) {
	v, err := strconv.ParseUint(strings.TrimSpace(s), 10, 32)
	if err != nil {
		return 0, fmt.Errorf("frequency %q is not a number from 0 to 4294967295", s)
	}
	return uint32(v), nil
}

func clientCommands() []*cobra.Command {
	return []*cobra.Command{allocCmd(), releaseCmd(), releaseAllCmd(), keepaliveCmd(), holderCmd(), statusCmd(), membersCmd(), ringCmd(), joinCmd(), leaveCmd()}
}

func allocCmd() *cobra.Command {
	var f clientFlags
	var id, freq string
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "alloc --client ID [--freq F] [--ttl D]",
		Short: "Allocate a free frequency (or frequency F) to a client, leased for D if --ttl is set",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req := client.AllocateRequest{ClientID: id, TTL: ttl}
			if freq != "" {
				fv, err := parseFreq(freq)
				if err != nil {
					return err
				}
				req.Frequency = &fv
			}
			return f.run(func(ctx context.Context, c *client.Client) error {
				g, err := c.AllocateWith(ctx, req)
				if err != nil {
					return err
				}
				out := cmd.OutOrStdout()
				if f.json {
					m := &freqdv1.AllocateResponse{Frequency: g.Frequency, Partition: g.Partition, Node: g.Node, Since: tsOf(g.Since), Duplicate: g.Duplicate}
					if g.TTL > 0 {
						m.Ttl, m.Expires = durationpb.New(g.TTL), tsOf(g.Expires)
					}
					return printJSON(out, m)
				}
				lease := ""
				if g.TTL > 0 {
					lease = fmt.Sprintf(", leased for %v until %s unless renewed (freqd keepalive --client %s)", g.TTL, g.Expires.Format(time.RFC3339), id)
				}
				fmt.Fprintf(out, "allocated %d to %s (partition %d on %s)%s\n", g.Frequency, id, g.Partition, g.Node, lease)
				return nil
			})
		},
	}
	f.bind(cmd)
	cmd.Flags().StringVar(&id, "client", "", "client id (required)")
	cmd.Flags().StringVar(&freq, "freq", "", "ask for exactly this frequency")
	cmd.Flags().DurationVar(&ttl, "ttl", 0, "lease the frequency for this long (1s to 24h): released unless the client renews")
	_ = cmd.MarkFlagRequired("client")
	return cmd
}

func releaseCmd() *cobra.Command {
	var f clientFlags
	var id, freq string
	cmd := &cobra.Command{
		Use:   "release --client ID --freq F",
		Short: "Release a frequency held by a client",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fv, err := parseFreq(freq)
			if err != nil {
				return err
			}
			return f.run(func(ctx context.Context, c *client.Client) error {
				res, err := c.ReleaseDetail(ctx, id, fv)
				if err != nil {
					return err
				}
				if f.json {
					return printJSON(cmd.OutOrStdout(), res)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "released %d from %s (partition %d on %s)\n", fv, id, res.GetPartition(), res.GetNode())
				return nil
			})
		},
	}
	f.bind(cmd)
	cmd.Flags().StringVar(&id, "client", "", "client id (required)")
	cmd.Flags().StringVar(&freq, "freq", "", "frequency to release (required)")
	_ = cmd.MarkFlagRequired("client")
	_ = cmd.MarkFlagRequired("freq")
	return cmd
}

func releaseAllCmd() *cobra.Command {
	var f clientFlags
	var id string
	cmd := &cobra.Command{
		Use:   "release-all --client ID",
		Short: "Release every frequency a client holds, leased or not",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.run(func(ctx context.Context, c *client.Client) error {
				freed, err := c.ReleaseAll(ctx, id)
				if err != nil {
					return err
				}
				out := cmd.OutOrStdout()
				if f.json {
					return printJSON(out, &freqdv1.ReleaseAllResponse{Released: uint64(len(freed)), Frequencies: freed})
				}
				fmt.Fprintf(out, "released %d frequencies of %s%s\n", len(freed), id, listSuffix(freed))
				return nil
			})
		},
	}
	f.bind(cmd)
	cmd.Flags().StringVar(&id, "client", "", "client id (required)")
	_ = cmd.MarkFlagRequired("client")
	return cmd
}

// listSuffix is ": a b c" for up to 20 frequencies, or "".
func listSuffix(fs []uint32) string {
	if len(fs) == 0 || len(fs) > 20 {
		return ""
	}
	var b strings.Builder
	b.WriteString(":")
	for _, f := range fs {
		fmt.Fprintf(&b, " %d", f)
	}
	return b.String()
}

func keepaliveCmd() *cobra.Command {
	var f clientFlags
	var id string
	var every time.Duration
	cmd := &cobra.Command{
		Use:   "keepalive --client ID [--every D]",
		Short: "Renew every lease a client holds (once, or every D until interrupted)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			show := func(r client.Renewal) error {
				if f.json {
					m := &freqdv1.KeepAliveResponse{ClientId: id, Leased: r.Leased, Partitions: r.Partitions, Unconfirmed: r.Unconfirmed}
					if !r.Expires.IsZero() {
						m.Expires = tsOf(r.Expires)
					}
					return printJSON(out, m)
				}
				line := fmt.Sprintf("renewed %d leased frequencies of %s in %d partitions", r.Leased, id, r.Partitions)
				if !r.Expires.IsZero() {
					line += ", earliest expiry " + r.Expires.Format(time.RFC3339Nano)
				}
				if len(r.Unconfirmed) > 0 {
					line += fmt.Sprintf("; partitions %v not reached (retry within the TTL)", r.Unconfirmed)
				}
				_, err := fmt.Fprintln(out, line)
				return err
			}
			if every <= 0 {
				return f.run(func(ctx context.Context, c *client.Client) error {
					r, err := c.KeepAlive(ctx, id)
					if err != nil {
						return err
					}
					return show(r)
				})
			}
			c, err := client.New(strings.Split(f.addr, ","))
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			_ = c.KeepAliveLoop(ctx, id, every, func(r client.Renewal, err error) {
				if err != nil {
					fmt.Fprintln(cmd.ErrOrStderr(), "keepalive:", err)
					return
				}
				_ = show(r)
			})
			return nil
		},
	}
	f.bind(cmd)
	cmd.Flags().StringVar(&id, "client", "", "client id (required)")
	cmd.Flags().DurationVar(&every, "every", 0, "keep renewing at this interval over one stream until interrupted (a third of the TTL is a good choice)")
	_ = cmd.MarkFlagRequired("client")
	return cmd
}

func holderCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "holder F",
		Short: "Show who holds frequency F and since when",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			fv, err := parseFreq(args[0])
			if err != nil {
				return err
			}
			return f.run(func(ctx context.Context, c *client.Client) error {
				h, err := c.Holder(ctx, fv)
				if err != nil {
					return err
				}
				out := cmd.OutOrStdout()
				if f.json {
					m := &freqdv1.HolderResponse{Frequency: h.Frequency, Held: h.Held, ClientId: h.ClientID, Partition: h.Partition, Node: h.Node}
					if h.Held {
						m.Since = tsOf(h.Since)
					}
					if h.TTL > 0 {
						m.Ttl, m.Expires = durationpb.New(h.TTL), tsOf(h.Expires)
					}
					return printJSON(out, m)
				}
				if !h.Held {
					fmt.Fprintf(out, "%d is free (partition %d on %s)\n", h.Frequency, h.Partition, h.Node)
					return nil
				}
				lease := ""
				if h.TTL > 0 {
					lease = fmt.Sprintf(", lease of %v expires %s", h.TTL, h.Expires.Format(time.RFC3339Nano))
				}
				fmt.Fprintf(out, "%d is held by %s since %s (partition %d on %s)%s\n", h.Frequency, h.ClientID, h.Since.Format(time.RFC3339), h.Partition, h.Node, lease)
				return nil
			})
		},
	}
	f.bind(cmd)
	return cmd
}

func statusCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show members, partitions per node and free/held totals",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.run(func(ctx context.Context, c *client.Client) error {
				st, err := c.Status(ctx)
				if err != nil {
					return err
				}
				out := cmd.OutOrStdout()
				if f.json {
					return printJSON(out, st)
				}
				var rs []string
				for _, r := range st.GetRanges() {
					rs = append(rs, rangeString(r.GetFirst(), r.GetLast()))
				}
				fmt.Fprintf(out, "pool %s: %d frequencies in %d partitions, %d free, %d held (as seen by %s)\n",
					strings.Join(rs, ","), st.GetTotal(), st.GetPartitions(), st.GetFree(), st.GetHeld(), st.GetNode())
				fmt.Fprintf(out, "replication factor %d, routing %s; %d of %d partitions writable\n",
					st.GetReplicationFactor(), st.GetStrategy(), st.GetWritable(), st.GetPartitions())
				if !st.GetExact() {
					fmt.Fprintln(out, "(some nodes did not answer: partitions they lead are counted as not writable)")
				}
				for _, p := range st.GetProblems() {
					fmt.Fprintf(out, "NOT WRITABLE partition %d: %s\n", p.GetPartition(), p.GetReason())
				}
				printMembers(out, st.GetMembers())
				return nil
			})
		},
	}
	f.bind(cmd)
	return cmd
}

func membersCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "members",
		Short: "List cluster members with their state and health",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.run(func(ctx context.Context, c *client.Client) error {
				st, err := c.Status(ctx)
				if err != nil {
					return err
				}
				if f.json {
					return printJSON(cmd.OutOrStdout(), &freqdv1.StatusResponse{Node: st.GetNode(), Members: st.GetMembers()})
				}
				printMembers(cmd.OutOrStdout(), st.GetMembers())
				return nil
			})
		},
	}
	f.bind(cmd)
	return cmd
}

func printMembers(out io.Writer, ms []*freqdv1.Member) {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tAPI\tGOSSIP\tSTATE\tHEALTH\tPARTITIONS\tFREE\tHELD")
	for _, m := range ms {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\n", m.GetName(), m.GetApiAddr(), m.GetGossipAddr(), m.GetState(), m.GetHealth(), m.GetPartitions(), m.GetFree(), m.GetHeld())
	}
	_ = tw.Flush()
	for _, m := range ms {
		if m.GetProblem() != "" {
			fmt.Fprintf(out, "%s: %s\n", m.GetName(), m.GetProblem())
		}
	}
}

func ringCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "ring",
		Short: "Show each partition's range, ring owner and replicas, and its raft group: leader, term, voters, learners, writable",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.run(func(ctx context.Context, c *client.Client) error {
				r, err := c.Ring(ctx)
				if err != nil {
					return err
				}
				out := cmd.OutOrStdout()
				if f.json {
					return printJSON(out, r)
				}
				tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "PARTITION\tRANGE\tOWNER\tRING REPLICAS\tLEADER\tTERM\tVOTERS\tWRITABLE\tFREE\tHELD")
				var reasons []string
				for _, p := range r.GetPartitions() {
					leader, term, cfg, writable := "-", "-", "-", "yes"
					if p.GetHolder() != "" {
						leader = p.GetHolder()
						term = fmt.Sprint(p.GetTerm())
						cfg = strings.Join(p.GetVoters(), ",")
						if ls := p.GetLearners(); len(ls) > 0 {
							cfg += " (learners " + strings.Join(ls, ",") + ")"
						}
					}
					if !p.GetWritable() {
						writable = "NO"
						reasons = append(reasons, fmt.Sprintf("partition %d: %s", p.GetId(), p.GetReason()))
					}
					fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\n", p.GetId(), rangeString(p.GetFirst(), p.GetLast()),
						p.GetOwner(), strings.Join(p.GetReplicas(), ","), leader, term, cfg, writable, p.GetFree(), p.GetHeld())
				}
				if err := tw.Flush(); err != nil {
					return err
				}
				for _, s := range reasons {
					fmt.Fprintln(out, "not writable:", s)
				}
				return nil
			})
		},
	}
	f.bind(cmd)
	return cmd
}

func joinCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "join --addr NODE SEED...",
		Short: "Ask a running node to join more seed peers (gossip host:port)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.run(func(ctx context.Context, c *client.Client) error {
				k, err := c.Join(ctx, args)
				if err != nil {
					return err
				}
				if f.json {
					return printJSON(cmd.OutOrStdout(), &freqdv1.JoinResponse{Joined: uint32(k)})
				}
				fmt.Fprintf(cmd.OutOrStdout(), "joined %d of %d seeds\n", k, len(args))
				return nil
			})
		},
	}
	f.bind(cmd)
	return cmd
}

func leaveCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "leave --addr NODE",
		Short: "Make a node hand its partitions to their new owners and leave",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.run(func(ctx context.Context, c *client.Client) error {
				k, err := c.Leave(ctx)
				if err != nil {
					return err
				}
				if f.json {
					return printJSON(cmd.OutOrStdout(), &freqdv1.LeaveResponse{HandedOff: uint32(k)})
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s handed off %d partitions and left\n", c.Addrs()[0], k)
				return nil
			})
		},
	}
	f.bind(cmd)
	return cmd
}

func rangeString(first, last uint32) string {
	if first == last {
		return strconv.FormatUint(uint64(first), 10)
	}
	return fmt.Sprintf("%d-%d", first, last)
}
