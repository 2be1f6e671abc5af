// Package multiraft runs every raft group of a freqd node (one group per
// partition) on go.etcd.io/raft/v3's RawNode, the pure, synchronous raft
// core: no clock, goroutine or I/O of its own.
//
// # The driver
//
// A Driver owns all of a node's RawNodes, their raft.MemoryStorage and
// their StateMachines, in one loop goroutine. Other goroutines hand it work
// through queues guarded by Driver.mu (inbound message batches, proposals,
// reads, operations) and wait on a channel per call. Each round:
//
//  1. steps every queued message and proposal, and ticks every group if
//     the ticker fired (one ticker for all groups);
//  2. collects the Ready of every group that has one;
//  3. appends each such group's entries, HardState and snapshot as one
//     record to the Disk and waits once for the last of them, so one
//     fsync (per the store's policy) covers every group: group commit
//     across partitions;
//  4. sends the messages, coalesced into one batch per destination node;
//  5. applies committed entries to the state machines and answers the
//     proposals and reads they complete;
//  6. advances every RawNode.
//
// A single loop, not a pool of shard workers: on the 2-core machines freqd
// is measured on, one loop keeps group commit whole (every partition's
// writes share one fsync) and leaves the other core to the transport and
// the API; raft's own work per message is small next to I/O.
//
// Raft runs with PreVote and CheckQuorum (a paused or cut-off leader steps
// down, a minority commits nothing), ReadOnlySafe reads (ReadIndex through
// the leader), pipelined appends (MaxInflightMsgs) and proposal forwarding
// off: a proposal at a follower fails at once with a *NotLeaderError naming
// the leader, so nothing is proposed twice by a hidden hop.
//
// # Proposals
//
// A proposal's entry is its command prefixed by the driver's random nonce
// and a sequence number; when the entry is applied on the node that
// proposed it, the waiting caller gets StateMachine.Apply's result. A
// leader that steps down fails its pending proposals with an error
// wrapping freqd.ErrOutcomeUnknown: they may still commit.
//
// # Placement and reconfiguration
//
// Config.Placement names each group's target voters and preferred leader
// (freqd derives them from the consistent-hash ring). Every other tick each
// group's leader takes one step towards it (plan, a pure function):
// a missing replica joins as a learner and catches up (by snapshot), is
// promoted once caught up, and only then are replicas outside the target
// removed; a leader that is itself leaving transfers leadership first, and
// leadership moves to the preferred replica when it is a caught-up voter.
// A node that receives an append or a snapshot for a group it does not
// host creates an empty replica for raft to fill; anything else for such a
// group is dropped. A replica is never dropped once created: one that
// applies its own removal stays, passive (not promotable, so it never
// campaigns, and not Hosted in GroupInfo), with its log and HardState; one
// removed without learning it is quiesced (Quiesce: no more ticks) once
// freqd sees from the group's leader that it is not a member. So a leader
// that re-adds the node, or that still counts its old match index, always
// finds every entry the replica acknowledged; an empty replica told to
// commit entries it lacks would make raft panic. A message from a leader
// wakes a quiesced replica.
//
// # Disk
//
// Per group, the Disk holds records (encodeRecord: HardState, snapshot,
// entries; the format also has a removal tombstone, which the driver no
// longer writes and restores as "not hosted") and a checkpoint (encodeCheckpoint: the
// group's snapshot, HardState and the entries after the snapshot), which
// replaces every earlier record of the group. A group snapshots and
// checkpoints after Config.SnapshotEntries applied entries, so the log on
// disk and in memory stays proportional to the live state. New rebuilds
// every group from its recovered checkpoint and records, and applies the
// entries they show committed before the loop starts. CheckpointAll
// checkpoints every hosted group (freqd calls it on a clean stop). After a
// failed Append or Wait the driver persists, sends and applies nothing
// more, fails the pending calls with the disk error and reports it in Err.
//
// # Wire
//
// EncodeBatch/DecodeBatch carry a round's messages for one destination.
// HandleBatch drops any message whose From is not the authenticated sender,
// whose To is not this node, or which only a node may send itself.
package multiraft
