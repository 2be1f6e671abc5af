// Package partition is the state machine of one partition: a contiguous
// range of frequencies, which of them are free, for each held one its
// holder (a client id), when it was granted and its lease TTL, and a
// window of recent client requests so that retries are answered rather
// than applied twice.
//
// # Commands
//
// Every change is a Command (grant one frequency, grant any frequency,
// release one, bind a request, release a client's frequencies) applied in
// order by Partition.Apply. Apply is pure,
// synchronous and deterministic: no goroutines, clocks, randomness, map
// iteration or I/O. The caller stamps Command.At (unix nanoseconds) before
// Apply, so replicas that apply the same commands from the same snapshot
// reach the same state, and Snapshot returns the same bytes on each. The
// caller also owns concurrency: a Partition is not safe for concurrent use.
//
// Errors in Result.Err wrap the sentinels of package freqd. Unlike the
// seed's frequency server, releasing a free frequency is ErrNotHeld and
// changes nothing (the seed pushed it onto the free list a second time, so
// two clients later got the same frequency), and only the holder may
// release (ErrNotHolder). Granting a frequency the client already holds
// succeeds without change and returns the original grant time, so retries
// are idempotent.
//
// # Leases
//
// A grant may carry a lease TTL (Command.TTL: 0 for none, else a whole
// number of milliseconds in MinTTL..MaxTTL, 1s..24h), kept with the held
// frequency until it is released (Partition.TTL). An idempotent re-grant,
// or a retry answered from the request window, changes nothing, the TTL
// included: the first grant's TTL stays.
//
// The partition has no clock and makes no expiry decisions. The primary
// node tracks each client's last renewal and, when it measures that a
// client has been silent for d, replicates one OpReleaseClient with TTL d:
// every frequency the client holds with a lease TTL of at most d is
// released (not those without a lease, nor longer leases). With TTL 0,
// OpReleaseClient releases all the client's frequencies. Either way the
// released frequencies join the back of the free queue in the client's
// grant order, as releases one by one would; Result.Freq is the count;
// releasing nothing succeeds and leaves Version unchanged, so the node
// need not log or replicate it. It costs O(frequencies the client holds
// here). Partition.Leases and Partition.ClientLease report, per client,
// the shortest lease TTL and the number of leased frequencies, for the
// primary to schedule its expiry checks.
//
// # Request window
//
// A grant of any frequency is not idempotent by itself: a client that
// retries after a lost answer would get a second frequency. So a Command
// may carry the client's request id (Command.Request, checked by
// freqd.ValidateRequestID). Each partition keeps the last DedupWindow
// (8192) request records in FIFO order; when full, recording a new request
// evicts the oldest record. A record is a grant (this request got
// frequency F at time T here), a note (this request is bound to partition
// P at generation G: see Request bindings) or a refusal (an attempt of
// generation G found this partition full). Recording a request that
// already has a record replaces it: the old one is removed and the new
// one appended.
//
// A grant with a request id whose grant record names a frequency the
// client still holds with the same grant time is a retry: Apply returns
// that grant with Result.Dup set and changes nothing, Version included.
// Otherwise the grant is applied as usual and, if it changed the state,
// recorded; failures and idempotent re-grants record nothing. Once the
// client releases the frequency, the record no longer matches and a retry
// grants afresh (the window remembers grants, not releases). A grant time
// identifies the grant, so callers stamp At so that one client does not
// get the same frequency twice at the same instant. Partition.Request
// reports a request's record under the same rule.
//
// # Request bindings
//
// A request id is exact across partitions through its binding. The node
// picks one home partition per (client, request) and tries it first with
// Command.Home set. If the home is full it binds the request to another
// partition q with OpNote, a compare-and-set on a generation: the note of
// generation g is recorded only over generation g-1 (no binding is
// generation 0), and otherwise the binding in force is returned, so
// concurrent binders agree on one partition per generation. The node then
// grants in q with Command.Gen g (a bound attempt). If q is full it
// records a refusal of generation g, and the node may bind generation g+1
// to another partition.
//
// No late copy of an attempt grants a second frequency while its records
// last: a home attempt that finds a binding grants nothing and returns it
// (Result.Noted), and a bound attempt of a generation q refused is
// refused again, whatever q has freed since. A note over a home grant the
// client still holds returns that grant (Dup), so the request stays in
// the home. The records are in the window, so the guarantee lasts as long
// as they do (DedupWindow records per partition). Apply's doc has every
// case; it is the contract the node codes against.
//
// Records are keyed by xxhash.Sum64String(client + "\x00" + request),
// not by the ids, to keep them small. We assume distinct pairs never
// collide: a lookup matches another pair's record with probability
// n/2⁶⁴ for n records (2⁻⁵¹ for a full window), and even then a grant
// record only answers a retry of the client holding its frequency. Valid ids contain no NUL, so
// distinct pairs hash distinct strings. The window is part of the
// replicated state: it depends only on the commands applied, is in the
// snapshot and is compared by Equal.
//
// # Reuse order
//
// Grant with Any hands out the free frequency released longest ago: the
// free frequencies form a FIFO queue, initially in ascending order, and a
// released frequency joins the back. The seed's free list was LIFO, so it
// handed the frequency just released straight out again, concentrating all
// wear, interference and stale-holder confusion (a late message from the
// old holder) on a few frequencies. FIFO spreads use over the whole
// partition and maximises the time before a frequency is reused.
//
// HeldBy lists a client's frequencies in grant order (oldest grant first).
//
// # Data structure and memory
//
// All operations are O(1) except HeldBy, ClientLease and client releases
// (O(held by that client)), Leases (O(held)), Equal, Snapshot and Restore
// (O(size + window)). State is kept in dense per-offset arrays, offset =
// frequency - First:
//
//	holder []uint32 // interned client slot, 0 = free         4 bytes
//	since  []int64  // grant time, unix ns                    8 bytes
//	ttl    []uint32 // lease TTL in ms, 0 = none (or free)    4 bytes
//	next   []uint32 // intrusive doubly-linked list links     4 bytes
//	prev   []uint32 //                                        4 bytes
//
// Every frequency is in exactly one list: the free FIFO queue or its
// holder's list. That is 24 bytes per frequency, free or held (measured by
// TestMemoryPerHeld and BenchmarkHeldMemory at about 24-25 bytes per held
// frequency with 1M held across 1000 clients, with or without a request id
// on every grant). Client ids are interned: one copy of each distinct
// id, in a slot with its list head, tail and count (about 32 bytes) plus one
// map entry; a slot is reference-counted by the number of frequencies held
// and is dropped, and its slot reused, when that reaches zero.
//
// The request window is a doubly-linked FIFO over a slice of records (key,
// kind, value, time and links: 32 bytes) plus a map from key to slot. It
// grows with use and is allocated lazily; full, it takes about 0.5 MiB
// (TestMemoryWindow), a fixed cost per busy partition independent of its
// size. Recording is O(1): a replaced record is unlinked and relinked at
// the back, and when full the oldest record's slot is reused.
//
// Slot numbers are internal: Snapshot writes clients sorted by id, so the
// snapshot bytes depend only on the logical state (free order, holders,
// grant times, TTLs, each client's grant order and the version), never on
// slot numbers or map order.
//
// # Snapshot format
//
// Version byte 4, then uvarints id, first, last, version, the free count
// and the free queue as zig-zag deltas of offsets; the client count and for
// each client (ascending id) its id, held count, and each held offset
// (zig-zag delta) with its grant time (varint) and lease TTL in
// milliseconds (uvarint, 0 for none); the request record count
// and each record oldest first: key (8 bytes, little-endian), kind byte
// (1 grant, 2 note, 3 refused), value (uvarint: frequency, partition id
// or refused generation) and time (varint: grant time, note generation
// 1..2³²-1, or 0 for a refusal); then a CRC-32C of all that,
// little-endian.
// Restore is strict: it rejects a bad checksum, non-minimal varints,
// unsorted or duplicate clients, any frequency missing or present twice,
// more than DedupWindow records, duplicate record keys, unknown kinds,
// grant records outside the range, notes of generation 0, refusals of
// generation 0 or with a time, TTLs neither 0 nor in MinTTL..MaxTTL, and
// trailing bytes, all wrapping freqd.ErrInvalidArgument. Version 3 (no
// refusals, and a note's time is 0) is read with every note at
// generation 1, its only binding then; version 2 (version 3 without
// TTLs) likewise, and as no frequency leased. Snapshot always writes
// version 4. Version 1 (no window) is not read.
//
// # Command encoding
//
// Commands travel from the primary to the replicas as Command.MarshalBinary
// bytes: version byte 5, op (1 grant, 2 release, 3 note, 4
// release-client), flags (bit 0: Any, bit 1: Home), uvarint Freq, varint
// At, uvarint TTL in milliseconds (non-zero only on a grant or a client
// release), then the client id and the request id, each a uvarint length
// and its bytes, varint Since (non-zero only on a release) and uvarint
// Gen (non-zero only on a note, where it is required, or a grant with a
// request id). The decoder is as strict as Restore. It also reads version
// 4, the same without Gen and the Home flag, as Gen 0 except on a note,
// read as generation 1 (its only binding then); older encodings were
// never persisted and are not read.
package partition
