package simnet

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine behind: gossip
// pumps, HTTP connections and memberlist loops must all stop. One
// memberlist goroutine is let off: Shutdown does not wait for a probe in
// flight, which ends by itself within one probe interval.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/hashicorp/memberlist.(*Memberlist).probeNode"))
}
