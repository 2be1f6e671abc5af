package config

import (
	"os"
	"reflect"
	"testing"
	"time"
)

// loadBytes loads data as a config file through the full Loader path
// (default < file < env), without flags.
func loadBytes(name string, data []byte) (Config, error) {
	fv, err := parseFile(name, data)
	if err != nil {
		return Config{}, err
	}
	return NewLoader().load(fv)
}

// TestYAMLRoundTrip checks that YAML writes a file that loads back to the
// same Config, for the default and for one with every field changed.
func TestYAMLRoundTrip(t *testing.T) {
	cleanEnv(t)
	full := Config{
		Node: Node{Name: "n-1", DataDir: "/var/lib/freqd #1", Fsync: FsyncNone, FsyncInterval: 250 * time.Millisecond},
		API:  API{Addr: "[::1]:7100"},
		Peer: Peer{Addr: "[::1]:7300"},
		Gossip: Gossip{
			Addr: "0.0.0.0:7946", Advertise: "192.0.2.1:7946",
			Seeds: []string{"192.0.2.2:7946", "host.example:7946"}, Profile: ProfileFast,
			ProbeInterval: 1500 * time.Millisecond, ProbeTimeout: 100 * time.Millisecond, SuspicionMult: 2,
			GossipInterval: 20 * time.Millisecond, PushPullInterval: 90 * time.Second, RejoinInterval: 0,
		},
		Pool:        Pool{Ranges: []string{"1-1000", "2000"}, Partitions: 16},
		Replication: Replication{Factor: 3},
		Routing:     Routing{Strategy: StrategyMostFree},
		Cluster:     Cluster{BootstrapExpect: 3},
		Log:         Log{Level: LevelDebug, Format: FormatJSON},
	}
	if err := full.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]Config{"default": Default(), "full": full} {
		t.Run(name, func(t *testing.T) {
			data, err := c.YAML()
			if err != nil {
				t.Fatal(err)
			}
			got, err := loadBytes("roundtrip.yaml", data)
			if err != nil {
				t.Fatalf("%v\n%s", err, data)
			}
			if !reflect.DeepEqual(got, c) {
				t.Errorf("round trip\n got  %+v\n want %+v\n%s", got, c, data)
			}
		})
	}
}

// TestYAMLNilLists checks a Config built by hand with nil lists writes []
// (not null) and stays loadable.
func TestYAMLNilLists(t *testing.T) {
	cleanEnv(t)
	c := Default()
	c.Gossip.Seeds = nil
	data, err := c.YAML()
	if err != nil {
		t.Fatal(err)
	}
	got, err := loadBytes("nil.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	if got.Gossip.Seeds == nil || len(got.Gossip.Seeds) != 0 {
		t.Errorf("seeds %#v", got.Gossip.Seeds)
	}
}

// TestDefaultFileIsLoadable checks default.yaml loads as an ordinary file
// and documents every key with a comment.
func TestDefaultFileIsLoadable(t *testing.T) {
	cleanEnv(t)
	got, err := LoadFile("default.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, Default()) {
		t.Errorf("default.yaml loads to %+v, Default() is %+v", got, Default())
	}
	fv, err := parseFile("default.yaml", defaultYAML)
	if err != nil {
		t.Fatal(err)
	}
	if len(fv.values) != len(fields()) {
		t.Errorf("default.yaml sets %d keys; there are %d", len(fv.values), len(fields()))
	}
	data, _ := os.ReadFile("default.yaml")
	if string(data) != string(defaultYAML) {
		t.Error("embedded default differs from default.yaml")
	}
}
