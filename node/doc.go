// Package node is one freqd process: a shard that holds some of the pool's
// partitions and a router that answers any client request, serving it from
// a partition it holds or forwarding it one hop to the node that does.
//
// A Node ties together gossip membership (package membership), the
// consistent-hash ring (package ring), the partition state machines
// (package partition) and the API (package transport, served with
// connect-go). It owns:
//
//   - its shards: the partitions it holds, each a serial state machine
//     guarded by its own mutex, in a map guarded by Node.mu;
//   - the ring, rebuilt whole by one goroutine on each batch of membership
//     changes and published with an atomic pointer;
//   - a routing view (who holds each partition and how many frequencies it
//     has free, from gossip, overlaid with exact local counts), rebuilt at
//     most every 100 ms.
//
// Partitions move between nodes by push handoff with increasing epochs
// when the ring changes (join, graceful leave); a new cluster's pool is
// created by exactly one node (bootstrap). docs/architecture.md describes
// the protocols, the goroutines and the failures handled.
//
// Build a Node with New (or from a config with OptionsFromConfig), start it
// with Start, and stop it with Leave (graceful: hands its partitions off)
// and Close.
package node
