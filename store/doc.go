// Package store keeps a freqd node's data durable: one write-ahead log
// shared by every partition, plus one checkpoint file per partition so the
// log can be cut short. Disk use follows the live state, not the history.
//
// The node encodes its own records; to the store they are opaque bytes
// tagged with a partition id. The store frames them, checksums them, gives
// them a global LSN, writes them in order, fsyncs them per the SyncPolicy,
// reads them back at Open (reporting damage instead of failing), and
// deletes log segments once checkpoints cover them. docs/storage.md has
// the full design, the benchmarks behind it and how the node uses it.
//
// # Writing
//
// Append queues a record and returns its LSN at once; Wait blocks until
// that LSN is durable. One writer goroutine does every log write: it takes
// everything queued, writes it with one write call, fsyncs once (under
// SyncAlways) and wakes the waiters, so concurrent appenders share fsyncs
// (group commit). Checkpoint replaces a partition's checkpoint and then
// deletes the segments every record of which checkpoints cover; Due says
// which partitions to checkpoint so that old segments can go.
//
// # Files
//
// Everything lives in one directory. Integers are little-endian;
// checksums are CRC-32C (Castagnoli).
//
//   - wal-<first LSN, 16 hex digits>.log: a log segment. A 20-byte header
//     (magic "FQWL", version u16 = 1, flags u16, first LSN u64, CRC u32 of
//     the 16 bytes before it), then frames: payload length u32, partition
//     u32, LSN u64, payload CRC u32, header CRC u32 of the 20 bytes before
//     it, then the payload. LSNs run consecutively from the header's first
//     LSN. When the log rolls past Options.SegmentBytes, the old segment
//     gets a seal frame (partition 0xFFFFFFFF, empty payload, LSN = the next
//     segment's first LSN) which is fsynced before the next segment is
//     used. A seal may skip LSNs forward (numbers reserved but never
//     written, for instance records lost with a failure); the next segment
//     starts exactly at the seal's LSN. Header flag 1 marks a segment
//     written by Rebase: every segment before it is superseded.
//   - part-<id %06d>.ckpt: a partition's checkpoint. Magic "FQCP",
//     version u16 = 1, flags u16 (1 = the partition holds nothing),
//     partition u32, LSN u64, payload length u64, payload, CRC u32 of
//     everything before it.
//   - <name>.meta: a small named file (ReadMeta, WriteMeta). Magic "FQMT",
//     length u32, data, CRC u32 of everything before it.
//   - <any of the above>.tmp: a file being written; renamed into place
//     after an fsync, removed by Open if left over.
//
// # Recovery
//
// Open never fails on damage; it reports it in Recovery:
//
//   - The last segment ending inside a frame (or with a zero-filled tail)
//     is a write torn by a crash: the file is truncated to the last
//     complete frame and a Note names the file, offset and bytes dropped.
//   - A complete frame whose payload fails its checksum damages its
//     partition: Damaged[part] names the file and offset; the frame is
//     skipped and the partition's later records are dropped.
//   - A frame header failing its checksum, an LSN out of sequence, a bad
//     segment header, a segment missing (the LSN chain breaks) or a sealed
//     segment truncated cannot be tied to partitions: All says what and
//     where, and every partition must be treated as damaged. What came
//     before stays in Partitions.
//   - A checkpoint file failing any check damages its partition, whose log
//     records are then not returned.
//   - Leftover temporary files are removed; unknown files are left alone
//     and noted.
//
// A damaged file stays until checkpoints cover it: the node rebuilds the
// partition (from its replicas) and checkpoints it, and the damage is gone
// at the next Open. A checkpoint taken after Open covers every record
// recovered at Open, so a refetched partition may be checkpointed with LSN
// 0. After All, the damaged segments go once every partition the store
// knows of has been checkpointed since that Open (or after a Rebase);
// until then every Open reports All again.
//
// # Failure
//
// A write, fsync or rename that fails (ENOSPC, EROFS, EIO) fails the
// store: every waiter of a record not yet durable gets the error (it wraps
// ErrFailed, freqd.ErrUnavailable and the OS error), Append refuses, and
// nothing is reported durable until Rebase rewrites every partition's
// state into a fresh segment. Open on a directory it cannot write returns
// a failed store with the recovery.
package store
