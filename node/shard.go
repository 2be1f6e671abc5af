package node

import (
	"fmt"
	"sync"
	"time"

	"github.com/freqd/freqd"
	"github.com/freqd/freqd/multiraft"
	"github.com/freqd/freqd/partition"
)

// shard is one partition's replicated state machine on this node: the
// raft group's StateMachine. The driver's loop goroutine is the only
// writer of p (Apply, Restore); other goroutines read counts under mu's
// read lock (routing hints, gossip) and ask the driver (Read) when they
// need a linearizable answer.
type shard struct {
	id    int
	first uint32
	last  uint32

	mu sync.RWMutex // guards p
	p  *partition.Partition

	// lmu guards the leader's lease clock: leases is non-nil while this
	// node leads the partition and has adopted its leases, at leaseTerm.
	lmu       sync.Mutex
	leases    *leaseTable
	leaseTerm uint64
}

var _ multiraft.StateMachine = (*shard)(nil)

func (n *Node) newShard(id int) *shard {
	sp, _ := n.layout.Span(id)
	return &shard{id: id, first: sp.First, last: sp.Last, p: partition.New(id, sp.First, sp.Last)}
}

// shardResult is what Apply hands the proposer of a command.
type shardResult struct {
	res     partition.Result
	version uint64        // the partition's version after the command
	ttl     time.Duration // a grant's lease TTL (0: none)
	freqs   []uint32      // OpReleaseClient: the frequencies it released
}

// Apply applies one committed partition command. A command that does not
// decode is a bug or a corrupted log: it changes nothing, on every replica
// alike, and its proposer gets the error.
func (s *shard) Apply(_ uint64, b []byte) any {
	var c partition.Command
	if err := c.UnmarshalBinary(b); err != nil {
		return &shardResult{res: partition.Result{Err: fmt.Errorf("partition %d: undecodable command: %w: %w", s.id, err, freqd.ErrInvalidArgument)}}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var freqs []uint32
	if c.Op == partition.OpReleaseClient && c.TTL == 0 {
		freqs = s.p.HeldBy(c.Client)
	}
	out := &shardResult{res: s.p.Apply(c)}
	out.version = s.p.Version()
	if c.Op == partition.OpGrant && out.res.Err == nil && !out.res.Noted {
		out.ttl = s.p.TTL(out.res.Freq)
	}
	if out.res.Err == nil {
		out.freqs = freqs
	}
	return out
}

// Snapshot encodes the whole partition.
func (s *shard) Snapshot() []byte {
	s.mu.RLock()
	defer s.mu.RUnlock()
	b, err := s.p.Snapshot()
	if err != nil {
		// Snapshot fails only on a state that breaks its own invariants.
		panic(fmt.Sprintf("partition %d: snapshot: %v", s.id, err))
	}
	return b
}

// Restore replaces the partition by a snapshot's (nil: empty).
func (s *shard) Restore(data []byte) error {
	p := partition.New(s.id, s.first, s.last)
	if data != nil {
		var err error
		if p, err = partition.Restore(data); err != nil {
			return err
		}
		if p.ID() != s.id || p.First() != s.first || p.Last() != s.last {
			return fmt.Errorf("snapshot is of partition %d (%d-%d), not %d (%d-%d): %w",
				p.ID(), p.First(), p.Last(), s.id, s.first, s.last, freqd.ErrInvalidArgument)
		}
	}
	s.mu.Lock()
	s.p = p
	s.mu.Unlock()
	return nil
}

// counts returns the local replica's free and held counts (possibly stale
// on a follower).
func (s *shard) counts() (free, held uint64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return uint64(s.p.Free()), uint64(s.p.Held())
}
