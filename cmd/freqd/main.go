// Command freqd runs a freqd node (serve), a local development cluster
// (dev), and talks to a running cluster (alloc, release, holder, status,
// members, ring, join, leave). Run `freqd help` for the commands.
package main

import (
	"fmt"
	"os"
)

func main() {
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "freqd:", err)
		os.Exit(1)
	}
}
