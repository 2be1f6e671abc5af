package ring

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// replicaSetChanges compares the replica sets of a and b partition by
// partition. It returns how many partitions have a different set (order
// ignored) and how many replica slots were gained in all: the sum over
// partitions of the members in b's set that were not in a's, which is the
// number of partition copies that must be shipped to new holders.
func replicaSetChanges(a, b *Ring) (changed, gained int) {
	for p := range a.Config().Partitions {
		ra, rb := a.Replicas(p), b.Replicas(p)
		n := 0
		for _, m := range rb {
			if !slices.Contains(ra, m) {
				n++
			}
		}
		// A set can also shrink (fewer members than N) without gaining.
		if n > 0 || len(ra) != len(rb) {
			changed++
		}
		gained += n
	}
	return changed, gained
}

// without returns members minus name.
func without(members []string, name string) []string {
	return slices.DeleteFunc(slices.Clone(members), func(m string) bool { return m == name })
}

// TestPartitionMovement measures how much placement changes when one node
// joins or leaves, against the ideal of a perfectly even hand-off, and logs a
// table (run with -v). Owner moves are what a node must hand off; replica
// slots gained are the copies that must be shipped.
//
// Bounds asserted: owner moves on join and on leave (averaged over every
// choice of leaver) are at most 3x ideal; every partition of a leaver moves;
// a joiner takes at least one partition and nothing moves except to the
// joiner or between the rings' shared members; replica slots gained stay
// within 3x the ideal copy count (N times the owner ideal).
func TestPartitionMovement(t *testing.T) {
	const rf = 3
	var table strings.Builder
	fmt.Fprintf(&table, "\nOwner moves (partitions whose owner changes), ideal = P/(N+1) on join, P/N on leave;\n"+
		"leave figures are averages over every choice of leaving node; collateral = moved but not to the\n"+
		"joiner / not owned by the leaver. Replica sets at ReplicationFactor %d: partitions whose set changes,\n"+
		"and replica slots gained (copies to ship), ideal = the joiner's / leaver's even share of copies.\n"+
		"warm = share of partitions moved on leave whose new owner was already one of their replicas.\n\n", rf)
	fmt.Fprintf(&table, "%4s %3s | %-36s | %-38s | %-27s | %-28s | %s\n", "P", "N",
		"JOIN owner moves (ideal) ratio", "LEAVE avg owner moves (ideal) ratio", "JOIN sets chg/slots (ideal)", "LEAVE sets chg/slots (ideal)", "warm")
	for _, P := range []int{271, 128} {
		for _, N := range []int{3, 5, 10} {
			cfg := Config{Partitions: P, ReplicationFactor: rf}
			members := nodes(N)
			base := mustNew(t, cfg, members)

			// Join.
			joiner := fmt.Sprintf("node-%d", N+1)
			joined := mustNew(t, cfg, append(slices.Clone(members), joiner))
			joinMoves := Moves(base, joined)
			joinIdeal := float64(P) / float64(N+1)
			toJoiner := 0
			for _, p := range joinMoves {
				if o, _ := joined.Owner(p); o == joiner {
					toJoiner++
				}
			}
			if len(joined.Owned(joiner)) == 0 {
				t.Errorf("P=%d N=%d: joiner owns nothing", P, N)
			}
			if toJoiner != len(joined.Owned(joiner)) {
				t.Errorf("P=%d N=%d: joiner owns %d partitions but %d moved to it", P, N, len(joined.Owned(joiner)), toJoiner)
			}
			if float64(len(joinMoves)) > 3*joinIdeal {
				t.Errorf("P=%d N=%d: %d owner moves on join, more than 3x ideal %.1f", P, N, len(joinMoves), joinIdeal)
			}
			joinChanged, joinGained := replicaSetChanges(base, joined)

			// Leave, averaged over every choice of leaver.
			var leaveMoves, leaveCollateral, leaveChanged, leaveGained, leaveWarm int
			for _, leaver := range members {
				left := mustNew(t, cfg, without(members, leaver))
				moves := Moves(base, left)
				owned := base.Owned(leaver)
				for _, p := range owned {
					if !slices.Contains(moves, p) {
						t.Errorf("P=%d N=%d: partition %d of leaver %s did not move", P, N, p, leaver)
					}
				}
				for _, p := range moves {
					if o, _ := left.Owner(p); base.IsReplica(p, o) {
						leaveWarm++
					}
				}
				leaveMoves += len(moves)
				leaveCollateral += len(moves) - len(owned)
				c, g := replicaSetChanges(base, left)
				leaveChanged += c
				leaveGained += g
			}
			avg := func(n int) float64 { return float64(n) / float64(N) }
			leaveIdeal := float64(P) / float64(N)
			if avg(leaveMoves) > 3*leaveIdeal {
				t.Errorf("P=%d N=%d: %.1f owner moves on leave on average, more than 3x ideal %.1f", P, N, avg(leaveMoves), leaveIdeal)
			}
			// Ideal copies shipped. Join: the newcomer takes its even share
			// of the P*min(rf, N+1) copies. Leave: the survivors must hold
			// P*min(rf, N-1) copies and already hold all but the leaver's
			// even share of the P*min(rf, N) copies.
			joinCopyIdeal := float64(P*min(rf, N+1)) / float64(N+1)
			leaveCopyIdeal := max(0, float64(P*min(rf, N-1))-float64(P*min(rf, N))*float64(N-1)/float64(N))
			if float64(joinGained) > 3*joinCopyIdeal {
				t.Errorf("P=%d N=%d: %d replica slots gained on join, more than 3x ideal %.1f", P, N, joinGained, joinCopyIdeal)
			}
			if avg(leaveGained) > 3*leaveCopyIdeal {
				t.Errorf("P=%d N=%d: %.1f replica slots gained on leave, more than 3x ideal %.1f", P, N, avg(leaveGained), leaveCopyIdeal)
			}

			fmt.Fprintf(&table, "%4d %3d | %-36s | %-38s | %-27s | %-28s | %3.0f%%\n", P, N,
				fmt.Sprintf("%3d (%5.1f) %4.2fx, collateral %3d",
					len(joinMoves), joinIdeal, float64(len(joinMoves))/joinIdeal, len(joinMoves)-toJoiner),
				fmt.Sprintf("%5.1f (%5.1f) %4.2fx, collateral %4.1f",
					avg(leaveMoves), leaveIdeal, avg(leaveMoves)/leaveIdeal, avg(leaveCollateral)),
				fmt.Sprintf("%3d / %3d (%5.1f)", joinChanged, joinGained, joinCopyIdeal),
				fmt.Sprintf("%5.1f / %5.1f (%5.1f)", avg(leaveChanged), avg(leaveGained), leaveCopyIdeal),
				100*float64(leaveWarm)/float64(leaveMoves))
		}
	}
	t.Log(table.String())
}
