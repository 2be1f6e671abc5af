package multiraft

import (
	"testing"

	pb "go.etcd.io/raft/v3/raftpb"
)

func TestPlan(t *testing.T) {
	all := map[uint64]bool{1: true, 2: true, 3: true, 4: true}
	caught := map[uint64]uint64{1: 10, 2: 10, 3: 10, 4: 10}
	tests := []struct {
		name string
		in   planInput
		want action
	}{
		{"no target", planInput{self: 1, conf: pb.ConfState{Voters: []uint64{1}}}, action{}},
		{"pending change waits", planInput{self: 1, conf: pb.ConfState{Voters: []uint64{1}}, target: []uint64{1, 2}, pending: true}, action{}},
		{"add missing as learner, lowest first", planInput{self: 1, conf: pb.ConfState{Voters: []uint64{1}}, target: []uint64{3, 1, 2}, match: caught, active: all, commit: 10, lastIndex: 10}, action{actAddLearner, 2}},
		{"promote caught-up learner", planInput{self: 1, conf: pb.ConfState{Voters: []uint64{1}, Learners: []uint64{2}}, target: []uint64{1, 2}, match: caught, active: all, commit: 10, lastIndex: 10}, action{actPromote, 2}},
		{"learner behind is not promoted", planInput{self: 1, conf: pb.ConfState{Voters: []uint64{1}, Learners: []uint64{2}}, target: []uint64{1, 2}, match: map[uint64]uint64{1: 10, 2: 3}, active: all, commit: 10, lastIndex: 10}, action{}},
		{"inactive learner is not promoted", planInput{self: 1, conf: pb.ConfState{Voters: []uint64{1}, Learners: []uint64{2}}, target: []uint64{1, 2}, match: caught, active: map[uint64]bool{1: true}, commit: 10, lastIndex: 10}, action{}},
		{"stray learner removed", planInput{self: 1, conf: pb.ConfState{Voters: []uint64{1, 2}, Learners: []uint64{4}}, target: []uint64{1, 2}, match: caught, active: all, commit: 10, lastIndex: 10}, action{actRemove, 4}},
		{"no removal before target complete", planInput{self: 1, conf: pb.ConfState{Voters: []uint64{1, 2, 3}, Learners: []uint64{4}}, target: []uint64{1, 2, 4}, match: map[uint64]uint64{1: 10, 2: 10, 3: 10, 4: 2}, active: all, commit: 10, lastIndex: 10}, action{}},
		{"remove extra voter once target complete", planInput{self: 1, conf: pb.ConfState{Voters: []uint64{1, 2, 3, 4}}, target: []uint64{1, 2, 4}, match: caught, active: all, commit: 10, lastIndex: 10}, action{actRemove, 3}},
		{"leader to be removed transfers first, to preferred", planInput{self: 1, conf: pb.ConfState{Voters: []uint64{1, 2, 3, 4}}, target: []uint64{2, 3, 4}, preferred: 3, match: caught, active: all, commit: 10, lastIndex: 10, mayTransfer: true}, action{actTransfer, 3}},
		{"leader to be removed waits for a caught-up transferee", planInput{self: 1, conf: pb.ConfState{Voters: []uint64{1, 2}}, target: []uint64{2}, match: map[uint64]uint64{1: 10, 2: 4}, active: all, commit: 10, lastIndex: 10, mayTransfer: true}, action{}},
		{"transfer to preferred caught-up voter", planInput{self: 1, conf: pb.ConfState{Voters: []uint64{1, 2, 3}}, target: []uint64{1, 2, 3}, preferred: 2, match: caught, active: all, commit: 10, lastIndex: 10, mayTransfer: true}, action{actTransfer, 2}},
		{"no transfer while one settles", planInput{self: 1, conf: pb.ConfState{Voters: []uint64{1, 2, 3}}, target: []uint64{1, 2, 3}, preferred: 2, match: caught, active: all, commit: 10, lastIndex: 10}, action{}},
		{"no transfer to a lagging preferred", planInput{self: 1, conf: pb.ConfState{Voters: []uint64{1, 2, 3}}, target: []uint64{1, 2, 3}, preferred: 2, match: map[uint64]uint64{1: 10, 2: 9, 3: 10}, active: all, commit: 10, lastIndex: 10, mayTransfer: true}, action{}},
		{"no transfer to an inactive preferred", planInput{self: 1, conf: pb.ConfState{Voters: []uint64{1, 2, 3}}, target: []uint64{1, 2, 3}, preferred: 2, match: caught, active: map[uint64]bool{1: true, 3: true}, commit: 10, lastIndex: 10, mayTransfer: true}, action{}},
		{"already preferred leader", planInput{self: 2, conf: pb.ConfState{Voters: []uint64{1, 2, 3}}, target: []uint64{1, 2, 3}, preferred: 2, match: caught, active: all, commit: 10, lastIndex: 10, mayTransfer: true}, action{}},
		{"leave joint", planInput{self: 1, conf: pb.ConfState{Voters: []uint64{1, 2}, VotersOutgoing: []uint64{1, 3}}, target: []uint64{1, 2}}, action{kind: actLeaveJoint}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := plan(tt.in); got != tt.want {
				t.Fatalf("plan = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestConfChangeOfAction(t *testing.T) {
	for _, tt := range []struct {
		a    action
		want pb.ConfChangeType
	}{{action{actAddLearner, 5}, pb.ConfChangeAddLearnerNode}, {action{actPromote, 5}, pb.ConfChangeAddNode}, {action{actRemove, 5}, pb.ConfChangeRemoveNode}} {
		cc := tt.a.confChange()
		if len(cc.Changes) != 1 || cc.Changes[0].Type != tt.want || cc.Changes[0].NodeID != 5 {
			t.Fatalf("%+v: %v", tt.a, cc.String())
		}
	}
	if cc := (action{kind: actLeaveJoint}).confChange(); !cc.LeaveJoint() {
		t.Fatalf("leave joint: %v", cc.String())
	}
}
