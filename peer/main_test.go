package peer

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine behind: every
// lane, reader, writer, handler and delivery goroutine must stop on Close.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
