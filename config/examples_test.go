package config

import (
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
)

func loadExamples(t *testing.T, dir string, names ...string) []Config {
	t.Helper()
	var cs []Config
	for _, n := range names {
		c, err := LoadFile(filepath.Join("examples", dir, n))
		if err != nil {
			t.Fatalf("%s/%s: %v", dir, n, err)
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("%s/%s: %v", dir, n, err)
		}
		cs = append(cs, c)
	}
	return cs
}

// checkCluster checks the files describe one cluster: distinct names and
// addresses, the same pool and replication, each node seeding all others.
func checkCluster(t *testing.T, cs []Config, dial func(Config) string) {
	t.Helper()
	names, apis, peers, gossips := map[string]bool{}, map[string]bool{}, map[string]bool{}, map[string]bool{}
	for i, c := range cs {
		if names[c.Node.Name] || apis[c.API.Addr] || peers[c.Peer.Addr] || gossips[dial(c)] {
			t.Errorf("node %d reuses a name or address: %+v", i, c)
		}
		names[c.Node.Name], apis[c.API.Addr], peers[c.Peer.Addr], gossips[dial(c)] = true, true, true, true
		// The others dial the peer address: it must name this node.
		if host, _, err := splitAddr(c.Peer.Addr); err != nil || host == "" || host == "0.0.0.0" {
			t.Errorf("node %s: peer.addr %q is not an address the others can dial", c.Node.Name, c.Peer.Addr)
		}
		if !reflect.DeepEqual(c.Pool, cs[0].Pool) || c.Replication != cs[0].Replication || c.Cluster != cs[0].Cluster {
			t.Errorf("node %s: pool/replication/cluster differ from node %s", c.Node.Name, cs[0].Node.Name)
		}
		var others []string
		for j, o := range cs {
			if j != i {
				others = append(others, dial(o))
			}
		}
		if got := slices.Sorted(slices.Values(c.Gossip.Seeds)); !reflect.DeepEqual(got, others) {
			t.Errorf("node %s seeds %q, want the others %q", c.Node.Name, got, others)
		}
		if c.Cluster.BootstrapExpect != len(cs) || c.Replication.Factor != 3 {
			t.Errorf("node %s: bootstrap_expect %d, factor %d", c.Node.Name, c.Cluster.BootstrapExpect, c.Replication.Factor)
		}
	}
}

func TestExamplesLocal3(t *testing.T) {
	cleanEnv(t)
	cs := loadExamples(t, "local-3", "n1.yaml", "n2.yaml", "n3.yaml")
	for i, c := range cs {
		n := i + 1
		if c.Node.Name != fmt.Sprintf("n%d", n) ||
			c.API.Addr != fmt.Sprintf("127.0.0.1:%d", 7100+n) ||
			c.Peer.Addr != fmt.Sprintf("127.0.0.1:%d", 7300+n) ||
			c.Gossip.Addr != fmt.Sprintf("127.0.0.1:%d", 7946+n) ||
			!reflect.DeepEqual(c.Pool, Pool{Ranges: []string{"1-1000"}, Partitions: 16}) {
			t.Errorf("n%d: %+v", n, c)
		}
	}
	checkCluster(t, cs, func(c Config) string { return c.Gossip.Addr })
}

func TestExamplesHosts3(t *testing.T) {
	cleanEnv(t)
	cs := loadExamples(t, "hosts-3", "node-a.yaml", "node-b.yaml", "node-c.yaml")
	for i, c := range cs {
		ip := fmt.Sprintf("192.0.2.%d", 11+i)
		if c.API.Addr != ip+":7100" || c.Peer.Addr != ip+":7300" || c.Gossip.Advertise != ip+":7946" || c.Gossip.Addr != "0.0.0.0:7946" {
			t.Errorf("%s: %+v", c.Node.Name, c)
		}
	}
	checkCluster(t, cs, func(c Config) string { return c.Gossip.Advertise })
}
