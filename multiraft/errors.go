package multiraft

import (
	"errors"
	"fmt"

	"github.com/freqd/freqd"
)

// ErrClosed is returned by calls on a closed Driver; it wraps
// freqd.ErrUnavailable.
var ErrClosed = fmt.Errorf("multiraft: driver closed: %w", freqd.ErrUnavailable)

// NotLeaderError says a group's write or read was refused because this
// replica does not lead the group: nothing was applied, so the caller may
// retry at Leader (0: unknown). It wraps freqd.ErrNotOwner.
type NotLeaderError struct {
	Group  int
	Leader uint64
	Hosted bool // this node hosts a replica of the group
}

func (e *NotLeaderError) Error() string {
	switch {
	case !e.Hosted:
		return fmt.Sprintf("partition %d: no replica on this node", e.Group)
	case e.Leader == 0:
		return fmt.Sprintf("partition %d: no leader known", e.Group)
	default:
		return fmt.Sprintf("partition %d: led by %016x", e.Group, e.Leader)
	}
}

// Unwrap makes errors.Is(err, freqd.ErrNotOwner) hold.
func (e *NotLeaderError) Unwrap() error { return freqd.ErrNotOwner }

// errLostLeadership is wrapped by the errors of proposals that were
// pending when their leader stepped down: they may still commit.
var errLostLeadership = errors.New("multiraft: leadership lost while the proposal was pending")
