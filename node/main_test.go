package node

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine behind: every
// node goroutine, gossip loop and HTTP connection must stop on Close. One
// memberlist goroutine is let off: Shutdown does not wait for a probe in
// flight, which ends by itself within one probe interval.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/hashicorp/memberlist.(*Memberlist).probeNode"))
}
