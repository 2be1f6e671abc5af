// Package membership tells a freqd node who else is in the cluster, what
// each member announces about itself, and how loaded each one is.
//
// It wraps github.com/hashicorp/memberlist (SWIM gossip: members probe
// each other, suspect and then declare dead those that stop answering, and
// spread what they learn piggybacked on probes and gossip rounds).
// memberlist is an implementation detail: nothing in the API exposes it
// except Config.Transport, which lets tests supply their own transport.
//
// # What a member carries
//
// Each node announces a small Meta (API address, peer address, lifecycle
// State, whether its cluster's pool exists, the pool layout Fingerprint,
// ClusterID, Incarnation and the Degraded flag) inside memberlist's alive
// messages. A node refuses any member whose metadata does not decode or
// whose Fingerprint differs from its own (memberlist's AliveDelegate and
// MergeDelegate), logging an error that names both fingerprints, so two
// clusters with different pool layouts never merge.
//
// The metadata is encoded in a compact versioned binary format (laid out
// byte by byte in meta.go): a version byte, state, flags, the three 64-bit
// fields, then the API address and the peer address, each as a uvarint
// length and at most MaxAddrLen bytes, so the whole always fits
// memberlist.MetaMaxSize. The peer address (Meta.PeerAddr) is the
// host:port of the node's peer transport, which carries node-to-node
// traffic (raft messages, forwarded requests); the API address carries
// client calls only. Decoding is strict: only the current version, 3, is
// accepted, and nothing may follow the last field. Version 3 added the
// peer address; a node refuses members that announce version 2 (the format
// of the epoch-protocol releases), so a rolling upgrade from those
// releases is not supported: stop every node, upgrade, and start them
// again.
//
// Each node also reports its Load (per partition it leads: raft term, free and
// held counts) with SetLoad. Loads spread two ways: as broadcasts on a
// memberlist TransmitLimitedQueue (each node's Load cut into messages that
// fit one gossip packet, tagged with the sender's name and a per-sender
// sequence number; receivers gossip news on), and as the whole table of
// every node's latest Load in memberlist's TCP push-pull exchange, so a node
// that joins late learns everything at once. A receiver keeps, per sender,
// the Load with the highest sequence number.
//
// # Health
//
// memberlist v0.7.0 reports joins, leaves and metadata updates through its
// EventDelegate but does not expose a remote node's state: the State field
// of the nodes it hands out is never updated. So Health comes from the
// events: a member is HealthAlive after a join or update; when memberlist
// drops it, it is HealthLeft if its last metadata said StateLeaving
// (Membership.Leave announces that before leaving) and HealthDead
// otherwise. HealthSuspect is defined but not reported: a suspect member
// shows as alive, which is also how memberlist treats it (it still routes
// to suspects). Dead and left members are forgotten after
// Config.ForgetAfter.
//
// # Concurrency
//
// memberlist calls the callbacks (type hooks) from its own goroutines,
// often with its node lock held. They only decode, record under
// Membership.mu and signal the capacity-1 Changes channel without
// blocking; nothing is ever called on memberlist or the broadcast queue
// with mu held. Membership.mu owns the member table, the load table, the
// local metadata and load, and the seed list. Two goroutines run until
// Close: the rejoin loop (every RejoinInterval it joins again the seeds
// that are not alive members, which memberlist never does by itself after a
// partition heals) and the load loop (every LoadInterval it broadcasts the
// local Load if it changed, and forgets long-dead members). Join runs the
// memberlist join in a worker goroutine so that its context can bound the
// wait. Close cancels them, shuts memberlist down and waits for them all.
package membership
