// Package pool describes the frequency pool and how it is cut into
// partitions.
//
// The pool is a list of inclusive frequency ranges from config, for example
// "10-15" and "20-25" (the two back ends of the original Erlang frequency
// server). Frequencies are uint32. ParseRange and ParseRanges turn config
// strings into Range values and reject malformed, reversed and overlapping
// ranges with an error that names the offending input.
//
// A Layout cuts the ranges into P partitions: contiguous sub-ranges (Span)
// that never span two configured ranges, numbered 0..P-1 in ascending
// frequency order. Partitions are the unit the cluster places on its hash
// ring, replicates and moves between nodes; everything inside one partition
// is decided by one owner (see package partition).
//
// How NewLayout shares the partitions out:
//
//   - every range gets at least one partition (so P >= number of ranges);
//   - the remaining P - len(ranges) partitions are shared in proportion to
//     range size by the largest-remainder method, ties going to the range
//     with the lower frequencies, and never giving a range more partitions
//     than it has frequencies;
//   - inside a range the partitions are as equal as possible: sizes differ
//     by at most one, the larger ones first.
//
// The result depends only on the ranges and P, so every node computes the
// same layout from the same config. Layout.Fingerprint hashes the spans so
// nodes can refuse to cluster with a node whose layout differs.
//
// Layout.Lookup maps a frequency to its partition by binary search over the
// spans, O(log P).
package pool
