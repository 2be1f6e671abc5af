package main

import (
	"github.com/spf13/cobra"
)

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "freqd",
		Short: "freqd hands out frequencies from a pool shared by a cluster of nodes",
		Long: `freqd is a distributed frequency-allocation cluster. Every node holds some
partitions of the pool and routes any request to the node that holds the
partition it needs.

  freqd dev                      start a local 3-node cluster to play with
  freqd serve --config n1.yaml   run one node
  freqd alloc --client c1        ask any node for a frequency`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newServeCmd(), newDevCmd())
	root.AddCommand(newBenchCmd())
	root.AddCommand(clientCommands()...)
	return root
}
