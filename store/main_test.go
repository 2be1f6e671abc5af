package store

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine behind: the
// writer goroutine must stop on Close.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
