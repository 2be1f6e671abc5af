// Package simnet is the chaos harness's network: an in-memory, seeded,
// fault-injecting network that carries both a node's RPC traffic (as a
// transport.Network) and its gossip (as a memberlist.NodeAwareTransport).
// Unlike memberlist's MockNetwork it can kill hosts and partition them.
//
// # Model
//
// A Net holds hosts, named simulated machines made with Net.Host. A host
// listens and dials through Host.Network and makes one gossip transport per
// memberlist instance with Host.NewGossipTransport. Every address is
// 127.0.0.1:port, but ports are labels in the Net's own port space: no real
// socket is ever bound, and the host owning a port is whoever listens on it.
//
// Connections are buffered, unbounded byte streams in each direction, with
// full net.Conn semantics (deadlines, Close waking blocked readers, EOF
// after the peer's Close). Writes never block; each write is delivered
// after its delay, in the order written. Gossip packets are delivered one
// by one on the receiver's PacketCh, possibly reordered by their delays;
// incoming streams arrive on StreamCh. Traffic within one host is never
// dropped or delayed.
//
// # Faults
//
// Faults take effect at once and are safe to inject from any goroutine.
//
//   - Kill(host) is a crash. Its listeners and gossip transports close, and
//     every connection to or from it is reset: reads and writes on both
//     ends fail with ErrConnReset. Dials to or from it fail and packets to
//     it are lost until Restart, after which the caller makes new
//     listeners and transports (a new process); the old ones stay closed.
//   - Isolate and Partition cut hosts off from each other; Heal removes
//     every cut. A dial across a cut fails at once, and a packet across a
//     cut is lost (also one in flight when the cut is made). An open
//     connection across a cut stalls, like TCP: writes still
//     succeed and are buffered, nothing is delivered (reads block until
//     their deadline), and after Heal the held-back bytes arrive in order.
//     Bytes that had already arrived before the cut stay readable.
//   - SetDrop loses gossip packets and fails new dials with a probability;
//     SetDelay delays packets, dials and writes. Neither touches bytes on
//     an established connection other than delaying them.
//
// Every failed dial is a *net.OpError with Op "dial" wrapping
// transport.ErrNoRoute, so transport.NotSent reports that nothing was
// sent.
//
// # Seeds
//
// All fault decisions (which packet or dial is dropped, how long each delay
// is) come from one PCG generator seeded by New's seed, so a failing run's
// seed (Net.Seed) drives the same decisions again. Goroutine scheduling
// still decides the order in which traffic asks for them, so a whole run is
// not reproducible bit for bit.
//
// # Goroutines
//
// Each gossip transport runs one goroutine that hands packets and streams
// to memberlist; it exits on Shutdown, Kill or Net.Close. Connections and
// listeners start none: delayed bytes wait in the connection and its reader
// waits for them. Close the Net at the end of a test to stop everything.
//
// # Memberlist after a partition or a restart
//
// memberlist does not reliably heal a partition by itself once each side
// has declared the other dead: it neither probes nor push-pulls with nodes
// it holds dead, and the death broadcasts have used up their retransmits
// by the time the cut heals. (With DefaultLocalConfig some runs reconverged
// after about GossipToTheDeadTime, 15s; others had not after 20s.) After
// Heal, one node must Join any node on the other side, in either
// direction; the push-pull makes each side refute its death and all
// converge within tens of milliseconds.
//
// A killed node comes back by Restart, a new gossip transport on its old
// address (Host.NewGossipTransportAt) and a Join: the others still hold it
// dead at that address, and it refutes. At a new address the others refuse
// it as a conflict unless DeadNodeReclaimTime is set. See
// TestMemberlistKillPartitionHeal.
package simnet
