// Package peer is freqd's node-to-node transport: batched raft messages,
// large raft snapshots and forwarded client requests travel over it, on a
// port of its own. It knows nothing of raft or of freqd's requests: a
// message or a request is opaque bytes, addressed by node id.
//
// Transport is the interface: Send (one-way, never blocks, may drop),
// Call (request and reply, bounded by a context) and Close. A Handler
// receives what peers send. TCP implements it over persistent
// connections; MemNetwork gives in-memory transports with injected faults
// and a deterministic manual mode for tests. One conformance suite runs
// against both.
//
// # Connections
//
// Each node dials each peer it sends to, lazily on the first Send or
// Call, and keeps the connection: node A's connection to B carries A's
// messages and A's calls, and B writes its replies to A's calls back on
// it; B's traffic to A goes on B's own connection to A. There are two
// lanes per pair, each its own TCP connection: the main lane for messages
// up to Config.MaxFrame bytes and for calls, the bulk lane (dialed on the
// first large message) for messages up to Config.MaxMessage bytes, sent
// in chunks so that a snapshot never delays a heartbeat. Messages on one
// lane arrive in the order sent or not at all; the two lanes are not
// ordered with each other.
//
// A failed dial or handshake fails what was queued (messages dropped,
// calls not delivered) and starts a backoff (Config.BackoffMin doubling
// up to BackoffMax, with jitter) during which Send and Call to that peer
// fail fast. A lost connection fails the calls written on it (outcome
// unknown) and is redialed as soon as something is queued; what was
// queued but not yet written goes on the new connection. An acceptor that
// admits a new connection from a peer on a lane closes the old one and
// waits for its reader first, so nothing from the old one is delivered
// after the new one's first message.
//
// # Wire format
//
// Integers are little-endian; checksums are CRC-32C (Castagnoli).
//
// Handshake. The dialer sends a hello; the acceptor answers with a
// welcome or a refusal, each in the same format:
//
//	offset size
//	0      4    magic "FQPR"
//	4      2    version = 1
//	6      1    kind: 1 hello (dialer), 2 welcome, 3 refusal (acceptor)
//	7      1    lane: 0 main, 1 bulk
//	8      8    cluster id, nonzero
//	16     8    node id, nonzero
//	24     4    max frame (the sender's Config.MaxFrame)
//	28     4    max message (the sender's Config.MaxMessage)
//	32     2    name length n, 1..128
//	34     2    reason length m, 0..512; nonzero only in a refusal
//	36     n    name: UTF-8, no spaces or control characters
//	36+n   m    reason: UTF-8, why the acceptor refused
//	36+n+m 4    CRC of every byte before it
//
// The decoder reads the 36 fixed bytes, checks magic, version and the two
// lengths, then reads exactly the rest (at most 680 bytes in all) and
// checks the checksum and every field. Each side bounds the handshake by
// Config.HandshakeTimeout. The acceptor refuses (writes a refusal, closes
// and logs at WARN the remote address, the claimed identity and the
// reason) a hello from another cluster, with other limits (MaxFrame and
// MaxMessage must match cluster-wide), or that Config.Admit rejects;
// nothing of a refused connection reaches the Handler. A hello that does
// not decode is logged and closed without an answer. The dialer checks
// that the welcome names the node it meant to reach (same cluster, the
// node id it dialed) with the same limits, and closes otherwise.
//
// Frames. After the handshake both sides write frames:
//
//	offset size
//	0      4    payload length, at most max frame
//	4      1    type
//	5      1    flags = 0
//	6      2    reserved = 0
//	8      8    id: call id or message id, per type
//	16     8    arg, per type
//	24     4    CRC of the payload (0 if empty)
//	28     4    CRC of the 28 header bytes before it
//	32     -    payload
//
// The reader checks the header's checksum, then every field (the length
// against the frame limit included) before it allocates the payload, then
// the payload's checksum. Any failure, an unknown type, or a type not
// expected from that side on that lane closes the connection, with a
// WARN log line naming the peer and the problem. Types, with the side and
// lane that send them:
//
//	1 message  dialer, main   id 0, arg 0; the payload is one message
//	2 chunk    dialer, bulk   id message id (nonzero); arg offset u32, then
//	                          total u32; part of a message of total bytes,
//	                          more than max frame, at most max message
//	3 call     dialer, main   id call id (nonzero); arg the time left until
//	                          the caller's deadline in nanoseconds, taken
//	                          as the frame is written (0: no deadline)
//	4 reply    acceptor, main id call id; arg 0; the payload is the reply
//	5 error    acceptor, main id call id; arg the code (u32); the payload
//	                          is the message (per Config.ErrorCodec)
//	6 fail     acceptor, main id call id; arg 1 busy or 2 closing (the
//	                          handler did not run), 3 the reply was over
//	                          max frame (it ran); no payload
//	7 cancel   dialer, main   id call id; arg 0; no payload: the caller
//	                          gave up, cancel the handler's ctx
//	8 ping     dialer, both   id any; arg 0; no payload
//	9 pong     acceptor, both id that of the ping; arg 0; no payload
//
// Chunks of one message come in order, each starting where the last
// ended; at most 2 messages may be in reassembly on a connection, their
// totals together at most max message. Call ids and message ids are
// unique per lane of a dialing transport; replies to unknown ids (calls
// given up) are ignored, as are cancels of calls no longer running. The
// handler's ctx carries the deadline as the time left when the frame was
// written, counted from when it is read (the transit is not subtracted).
//
// Keepalive: the dialer pings every Config.KeepAlive, the acceptor
// answers; either side closes a connection on which nothing was read for
// Config.IdleTimeout, which also bounds every write.
//
// # Goroutines and owners of state
//
// A TCP has:
//
//   - one accept goroutine, which hands each accepted connection to a
//     goroutine of its own; that goroutine runs the handshake (at most 64
//     at once) and then becomes the connection's reader, calling
//     HandleMessage inline (so a slow handler pushes back on its peer)
//     and starting one goroutine per call (at most MaxCallsPerConn);
//   - per accepted connection, one writer goroutine for replies and
//     pongs (inConn: its mu guards the write queue and the calls being
//     served);
//   - per peer sent to, two lane goroutines (main and bulk), each of which
//     dials when work is queued, writes the connection (everything queued
//     with one write call per wake-up: 100 queued messages are one
//     syscall), and redials after failures; plus, while connected, one
//     reader goroutine for the replies and pongs. The lane's mu (outLane)
//     guards its queue, its calls in flight and its connection state;
//     Send and Call append under it and never wait for the network.
//   - TCP.mu guards only the maps of peers and accepted connections and
//     the closed flag; no lock is held across network I/O.
//
// Every goroutine stops on Close, which cancels the transport's context
// (dials and handshakes end, handlers see their ctx canceled), closes the
// listener and every connection, fails every pending call, and waits for
// all of them, handlers included.
//
// # In-memory network
//
// MemNetwork's state is guarded by its one mutex. In real-time mode each
// link (sender, receiver, lane) is a queue ordered by due time, drained
// by a goroutine owned by the receiving transport; calls run on
// goroutines of the callee's. In manual mode envelopes wait in one list
// until the test calls Step, which delivers one (a message to
// HandleMessage, a request to HandleCall inline, whose reply becomes a new
// envelope, a reply to the waiting Call) on the test's goroutine, every
// fault drawn from the seeded source at that Step.
package peer
