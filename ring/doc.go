// Package ring decides where each partition of the pool lives.
//
// The frequency pool is cut into P partitions, numbered 0..P-1. A Ring maps
// every partition to its owner, the node that serves it, and to its replica
// list: the owner first, then the next members that keep copies, N names in
// all (fewer if the cluster has fewer than N members). Nothing else is in
// here: ring knows no network, no memberlist, no configuration files. It is a
// pure function from (Config, member names) to placement tables.
//
// # How placement works
//
// Placement is github.com/buraksezer/consistent v1.1.0 (consistent hashing
// with bounded loads) with an xxhash hasher. Each member is hashed onto a
// circle at Config.VirtualNodes points; our partition i is consistent's
// partition i, whose owner is the first member clockwise from the hash of i
// that is not yet full. "Full" is the bounded-load rule: no member owns more
// than ceil(P/members*Load) partitions, so the load stays even while a
// membership change moves only about P/members partitions. The replica list
// of partition i is consistent's GetClosestNForPartition(i, N): the owner,
// then the members that follow it when members are ordered by the hash of
// their names.
//
// # Determinism
//
// The same Config and the same member set give the same Ring on every node,
// whatever order the names arrive in: New sorts them first, and the result is
// a function of the sorted set alone. Version hashes the configuration and
// the sorted names, so two nodes can compare one number to check that they
// agree on placement. Moves lists the partitions whose owner changes between
// two rings, which is what a node hands off or fetches after a change.
//
// # Using it in a node
//
// A Ring is immutable: New computes every owner and replica list up front, and
// the methods are lookups that take no lock, so any number of goroutines may
// read one Ring at once. A node never updates a Ring in place. It keeps the
// current one in an atomic.Pointer and, when membership changes (batched, so
// a burst of joins gives one rebuild), builds a whole new Ring and swaps it
// in:
//
//	var cur atomic.Pointer[ring.Ring]
//
//	// On each (coalesced) membership change, in the one goroutine that
//	// handles membership:
//	next, err := ring.New(cfg, aliveMembers)
//	if err != nil {
//		return fmt.Errorf("rebuild ring: %w", err)
//	}
//	prev := cur.Swap(next)
//	for _, p := range ring.Moves(prev, next) {
//		// hand off or fetch partition p
//	}
//
//	// In any request handler:
//	r := cur.Load()
//	owner, ok := r.Owner(p)
//
// A reader that loads the pointer once and uses that Ring for the whole
// request sees one consistent snapshot, never a half-updated mix of two.
package ring
