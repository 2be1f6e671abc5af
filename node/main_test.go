package node

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine behind: every
// node goroutine, gossip loop and HTTP connection must stop on Close.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
