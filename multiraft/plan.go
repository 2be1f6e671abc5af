package multiraft

import (
	"slices"

	pb "go.etcd.io/raft/v3/raftpb"
)

// actionKind is what a group's leader should do next to move its voters
// towards the placement's target.
type actionKind uint8

const (
	actNone       actionKind = iota
	actAddLearner            // add id as a learner (it catches up first)
	actPromote               // promote the caught-up learner id to voter
	actRemove                // remove id (voter or learner) from the group
	actTransfer              // transfer leadership to id
	actLeaveJoint            // leave a joint configuration
)

type action struct {
	kind actionKind
	id   uint64
}

// planInput is everything plan looks at: plain data copied from the
// leader's raft status, so plan is a pure function that tests can drive
// with tables.
type planInput struct {
	self      uint64
	conf      pb.ConfState
	match     map[uint64]uint64 // each replica's match index, from the leader's progress
	active    map[uint64]bool   // replicas heard from recently (raft's RecentActive)
	lastIndex uint64            // the leader's last log index
	commit    uint64
	pending   bool     // a conf change is proposed and not applied yet
	target    []uint64 // the voters the placement wants; empty: no opinion
	preferred uint64   // the replica the placement wants as leader (0: none)
	// mayTransfer is false while a recent transfer has not settled.
	mayTransfer bool
}

// plan returns the next single step from the group's configuration
// towards in.target: add missing replicas as learners, promote them once
// caught up, remove learners and then voters that are not in the target,
// and hand leadership to the preferred replica when it is a caught-up,
// active voter. One change at a time (each a simple configuration
// change, never joint), and additions before removals, so the group never
// has fewer voters of the target than it started with. A leader that is
// itself to be removed first transfers leadership to a caught-up target
// voter; the new leader removes it.
func plan(in planInput) action {
	if in.pending || len(in.target) == 0 {
		return action{}
	}
	if len(in.conf.VotersOutgoing) > 0 {
		return action{kind: actLeaveJoint}
	}
	isVoter := func(id uint64) bool { return slices.Contains(in.conf.Voters, id) }
	isLearner := func(id uint64) bool { return slices.Contains(in.conf.Learners, id) }
	inTarget := func(id uint64) bool { return slices.Contains(in.target, id) }
	caughtUp := func(id uint64) bool { return in.match[id] >= in.commit && in.active[id] }

	for _, id := range sortedCopy(in.target) {
		if !isVoter(id) && !isLearner(id) {
			return action{kind: actAddLearner, id: id}
		}
	}
	for _, id := range sortedCopy(in.conf.Learners) {
		if inTarget(id) && caughtUp(id) {
			return action{kind: actPromote, id: id}
		}
	}
	for _, id := range sortedCopy(in.conf.Learners) {
		if !inTarget(id) {
			return action{kind: actRemove, id: id}
		}
	}
	// Remove voters that are not in the target only once every target
	// member is a voter, so the group grows before it shrinks.
	for _, id := range in.target {
		if !isVoter(id) {
			return action{}
		}
	}
	for _, id := range sortedCopy(in.conf.Voters) {
		if inTarget(id) {
			continue
		}
		if id != in.self {
			return action{kind: actRemove, id: id}
		}
		if !in.mayTransfer {
			return action{}
		}
		if to := transferee(in, caughtUp); to != 0 {
			return action{kind: actTransfer, id: to}
		}
		return action{}
	}
	if in.preferred != 0 && in.preferred != in.self && in.mayTransfer &&
		isVoter(in.preferred) && in.active[in.preferred] && in.match[in.preferred] >= in.lastIndex {
		return action{kind: actTransfer, id: in.preferred}
	}
	return action{}
}

// transferee picks who should lead when the leader must go: the preferred
// replica if it is a caught-up target voter, else the lowest such id.
func transferee(in planInput, caughtUp func(uint64) bool) uint64 {
	ok := func(id uint64) bool {
		return id != in.self && slices.Contains(in.conf.Voters, id) && slices.Contains(in.target, id) && caughtUp(id)
	}
	if in.preferred != 0 && ok(in.preferred) {
		return in.preferred
	}
	for _, id := range sortedCopy(in.target) {
		if ok(id) {
			return id
		}
	}
	return 0
}

func sortedCopy(ids []uint64) []uint64 {
	out := slices.Clone(ids)
	slices.Sort(out)
	return out
}

// confChange builds the raft configuration change for a.
func (a action) confChange() pb.ConfChangeV2 {
	var t pb.ConfChangeType
	switch a.kind {
	case actAddLearner:
		t = pb.ConfChangeAddLearnerNode
	case actPromote:
		t = pb.ConfChangeAddNode
	case actRemove:
		t = pb.ConfChangeRemoveNode
	case actLeaveJoint:
		return pb.ConfChangeV2{}
	}
	return pb.ConfChangeV2{Changes: []pb.ConfChangeSingle{{Type: t, NodeID: a.id}}}
}
