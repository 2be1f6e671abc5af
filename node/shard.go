package node

import (
	"context"
	"fmt"
	"sync"

	"github.com/freqd/freqd"
	"github.com/freqd/freqd/partition"
)

// shardState is where a locally held partition is in its life.
type shardState uint8

const (
	// shardServing: this node holds the partition and applies commands.
	shardServing shardState = iota + 1
	// shardHandingOff: a transfer to the new owner is in flight; commands
	// wait until it ends, then are applied (transfer failed before delivery)
	// or answered ErrNotOwner (transfer done).
	shardHandingOff
	// shardGone: the partition now lives on movedTo; the shard is dropped.
	shardGone
)

// shard is one partition held by this node. Its mutex guards every field;
// it is never held across network I/O.
type shard struct {
	id int

	mu      sync.Mutex
	p       *partition.Partition
	epoch   uint64
	state   shardState
	movedTo string
	// settled is closed and replaced whenever state leaves
	// shardHandingOff, waking the commands that wait on it.
	settled chan struct{}
}

func newShard(p *partition.Partition, epoch uint64) *shard {
	return &shard{id: p.ID(), p: p, epoch: epoch, state: shardServing, settled: make(chan struct{})}
}

// apply runs fn on the partition while it is serving, waiting out a
// handoff in flight. It returns ErrNotOwner (naming the new holder) if the
// partition has moved away.
func (s *shard) apply(ctx context.Context, fn func(p *partition.Partition), self string) error {
	for {
		s.mu.Lock()
		switch s.state {
		case shardServing:
			fn(s.p)
			s.mu.Unlock()
			return nil
		case shardGone:
			to := s.movedTo
			s.mu.Unlock()
			return &NotOwnerError{Partition: s.id, Holder: to, Node: self}
		}
		ch := s.settled
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("partition %d: waiting for its handoff to finish: %w: %w", s.id, freqd.ErrUnavailable, ctx.Err())
		}
	}
}

// tryApply runs fn if the shard is serving, without waiting; it reports
// whether fn ran.
func (s *shard) tryApply(fn func(p *partition.Partition)) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != shardServing {
		return false
	}
	fn(s.p)
	return true
}

// load reports the shard's counters, or ok=false if it no longer serves.
func (s *shard) load() (free, held int, version, epoch uint64, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == shardGone {
		return 0, 0, 0, 0, false
	}
	return s.p.Free(), s.p.Held(), s.p.Version(), s.epoch, true
}

// beginHandoff freezes the shard and returns its snapshot and the next
// epoch. ok is false if the shard is not serving.
func (s *shard) beginHandoff() (snap []byte, epoch uint64, ok bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != shardServing {
		return nil, 0, false, nil
	}
	snap, err = s.p.Snapshot()
	if err != nil {
		return nil, 0, false, fmt.Errorf("partition %d: snapshot: %w", s.id, err)
	}
	s.state = shardHandingOff
	return snap, s.epoch + 1, true, nil
}

// endHandoff settles a handoff: done moves the shard away for good;
// otherwise it serves again (only when the transfer surely did not land).
func (s *shard) endHandoff(done bool, to string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != shardHandingOff {
		return
	}
	if done {
		s.state = shardGone
		s.movedTo = to
	} else {
		s.state = shardServing
	}
	close(s.settled)
	s.settled = make(chan struct{})
}

// retire marks a shard replaced by a newer copy of its partition on this
// node: commands waiting on it are told to route again (and find the new
// one), and a handoff still in flight can no longer revive it.
func (s *shard) retire(self string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == shardGone {
		return
	}
	wasHandingOff := s.state == shardHandingOff
	s.state = shardGone
	s.movedTo = self
	if wasHandingOff {
		close(s.settled)
		s.settled = make(chan struct{})
	}
}
