// Package node is one freqd process: a raft replica of some of the pool's
// partitions, the leader of some of them, and a router that answers any
// client request, serving it from a partition it leads or forwarding it one
// hop, over the peer transport, to the node that leads it.
//
// A Node ties together gossip membership (package membership), the
// consistent-hash ring (package ring), one raft group per partition, all
// run by one driver loop (package multiraft), the partition state machines
// (package partition), the data directory (package store), the
// node-to-node transport (package peer) and the client API (package
// transport, served with connect-go). It owns:
//
//   - one shard per partition, created in New and never replaced: the
//     group's state machine, written only by the driver's loop under the
//     shard's RWMutex, plus the leader's lease clock under the shard's lmu;
//   - the ring, the directory (raft id to member) and the placement (each
//     group's target voters and preferred leader), rebuilt whole from
//     membership and published with atomic pointers;
//   - a routing view (each partition's leader and free count, from gossip,
//     overlaid with what this node's own replicas know), rebuilt at most
//     every 100 ms.
//
// Each group's leader moves its voters towards the ring's replica list
// (placement); writes need a majority of the replication factor in voters;
// a new cluster's pool is created by exactly one node (bootstrap).
// docs/replication.md describes the protocols and the failures handled,
// docs/architecture.md the goroutines and owners of state, and
// docs/storage.md what the node keeps on disk.
//
// Build a Node with New (or from a config with OptionsFromConfig), start it
// with Start, and stop it with Leave (graceful: waits until no group has
// it as a replica) and Close.
package node
