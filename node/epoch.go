package node

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	freqdv1 "github.com/freqd/freqd/gen/freqd/v1"
)

// Epoch numbers a partition's configurations (docs/replication.md). Epochs
// are ordered by Term, then by Node, the name of the node that minted it,
// then by that node's Incarnation: a node that restarted without its state
// does not know which terms its previous incarnation used, and must never
// mint an epoch equal to one of them.
type Epoch struct {
	Term        uint64
	Node        string
	Incarnation uint64
}

// Compare orders epochs: -1 if e is older than o, 0 if equal, +1 if newer.
func (e Epoch) Compare(o Epoch) int {
	if c := cmp.Compare(e.Term, o.Term); c != 0 {
		return c
	}
	if c := strings.Compare(e.Node, o.Node); c != 0 {
		return c
	}
	return cmp.Compare(e.Incarnation, o.Incarnation)
}

// IsZero reports whether e is the zero epoch (older than every real one).
func (e Epoch) IsZero() bool { return e == Epoch{} }

func (e Epoch) String() string { return fmt.Sprintf("%d/%s", e.Term, e.Node) }

// ReplicaID names one incarnation of a node: a node that restarts without
// its state is a new replica (rule I1).
type ReplicaID struct {
	Name        string
	Incarnation uint64
}

func (r ReplicaID) String() string { return fmt.Sprintf("%s#%08x", r.Name, r.Incarnation&0xffffffff) }

// Config is a partition's configuration: its epoch and its replicas, the
// primary first. A Config is never mutated once built.
type Config struct {
	Epoch   Epoch
	Members []ReplicaID
}

// IsZero reports whether c is the empty configuration.
func (c Config) IsZero() bool { return c.Epoch.IsZero() && len(c.Members) == 0 }

// Has reports whether id is a member of c.
func (c Config) Has(id ReplicaID) bool { return slices.Contains(c.Members, id) }

// HasName reports whether a node of that name (any incarnation) is a member.
func (c Config) HasName(name string) bool {
	return slices.ContainsFunc(c.Members, func(m ReplicaID) bool { return m.Name == name })
}

// Primary is the configuration's primary (its first member).
func (c Config) Primary() ReplicaID {
	if len(c.Members) == 0 {
		return ReplicaID{}
	}
	return c.Members[0]
}

// Majority is maj(C) = |C|/2+1, the quorum for takeovers.
func (c Config) Majority() int { return len(c.Members)/2 + 1 }

// WriteQuorum is wq(C) = max(maj(C), N/2+1): a write needs a majority of
// the members and of the configured replication factor N.
func (c Config) WriteQuorum(factor int) int { return max(c.Majority(), factor/2+1) }

// sameMembers reports whether c lists exactly ids, in order.
func (c Config) sameMembers(ids []ReplicaID) bool { return slices.Equal(c.Members, ids) }

func (c Config) String() string {
	names := make([]string, len(c.Members))
	for i, m := range c.Members {
		names[i] = m.String()
	}
	return fmt.Sprintf("epoch %v [%s]", c.Epoch, strings.Join(names, " "))
}

// memberNames renders the members for reports.
func (c Config) memberNames() []string {
	out := make([]string, len(c.Members))
	for i, m := range c.Members {
		out[i] = m.String()
	}
	return out
}

func epochToPB(e Epoch) *freqdv1.Epoch {
	return &freqdv1.Epoch{Term: e.Term, Node: e.Node, Incarnation: e.Incarnation}
}

func epochFromPB(e *freqdv1.Epoch) Epoch {
	return Epoch{Term: e.GetTerm(), Node: e.GetNode(), Incarnation: e.GetIncarnation()}
}

func replicaToPB(r ReplicaID) *freqdv1.ReplicaID {
	return &freqdv1.ReplicaID{Name: r.Name, Incarnation: r.Incarnation}
}

func replicaFromPB(r *freqdv1.ReplicaID) ReplicaID {
	return ReplicaID{Name: r.GetName(), Incarnation: r.GetIncarnation()}
}

func configToPB(c Config) *freqdv1.Config {
	if c.IsZero() {
		return nil
	}
	out := &freqdv1.Config{Epoch: epochToPB(c.Epoch)}
	for _, m := range c.Members {
		out.Members = append(out.Members, replicaToPB(m))
	}
	return out
}

func configFromPB(c *freqdv1.Config) Config {
	if c == nil {
		return Config{}
	}
	out := Config{Epoch: epochFromPB(c.GetEpoch())}
	for _, m := range c.GetMembers() {
		out.Members = append(out.Members, replicaFromPB(m))
	}
	return out
}
