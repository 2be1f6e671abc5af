package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

// TestLoadRejects is the table of bad config files: each must fail, with
// an *Error for exactly the key named, whose message shows the value and
// the file line it came from.
func TestLoadRejects(t *testing.T) {
	cleanEnv(t)
	cases := []struct {
		name string
		yaml string
		key  string // the *Error that must be present
		want string // substring of that error's message
	}{
		{"unknown top-level key", "nodes:\n  name: x\n", "nodes", "unknown key; did you mean node?"},
		{"unknown top-level key, no guess", "frobnicate: 1\n", "frobnicate", "unknown key; the sections are"},
		{"nested key at top level", "seeds: [127.0.0.1:1]\n", "seeds", "did you mean gossip.seeds?"},
		{"unknown nested key", "gossip:\n  sedes: [127.0.0.1:7948]\n", "gossip.sedes",
			`gossip.sedes = ["127.0.0.1:7948"]: unknown key; did you mean gossip.seeds?`},
		{"unknown nested key, no guess", "pool:\n  colour: red\n", "pool.colour", `= "red": unknown key`},
		{"upper-case key", "node:\n  Name: x\n", "node.Name", "unknown key; did you mean node.name?"},
		{"mapping below a key", "gossip:\n  seeds:\n    a: 1\n", "gossip.seeds", "want a list of strings, found a mapping"},
		{"duplicate key", "node:\n  name: a\n  name: b\n", "node.name", `node.name = "b": duplicate key; also on line 2`},
		{"duplicate section", "log:\n  level: info\nlog:\n  format: json\n", "log", "duplicate key; also on line 1"},
		{"section is a scalar", "gossip: 5\n", "gossip", "gossip = 5: want a mapping of gossip.* keys, found an integer"},
		{"section is a list", "api: [a]\n", "api", "want a mapping of api.* keys, found a list"},
		{"peer section is a scalar", "peer: 127.0.0.1:7300\n", "peer", "want a mapping of peer.* keys, found a string"},
		{"unknown peer key", "peer:\n  adr: 127.0.0.1:7300\n", "peer.adr", "unknown key; did you mean peer.addr?"},
		{"unknown peer key, no guess", "peer:\n  advertise: 192.0.2.1:7300\n", "peer.advertise", `= "192.0.2.1:7300": unknown key`},
		{"peer misspelt", "peers:\n  addr: 127.0.0.1:7300\n", "peers", "unknown key; did you mean peer?"},
		{"peer addr not a string", "peer:\n  addr: 7300\n", "peer.addr", "peer.addr = 7300: want a string"},
		{"int is a word", "pool:\n  partitions: four\n", "pool.partitions", `pool.partitions = "four": want an integer`},
		{"int is a float", "pool:\n  partitions: 1.5\n", "pool.partitions", "pool.partitions = 1.5: want an integer"},
		{"int is a list", "replication:\n  factor: [3]\n", "replication.factor", "want an integer, found a list"},
		{"string is a number", "node:\n  name: 5\n", "node.name", "node.name = 5: want a string"},
		{"string is a bool", "routing:\n  strategy: true\n", "routing.strategy", "want a string"},
		{"list item not a string", "gossip:\n  seeds: [127.0.0.1:1, 7]\n", "gossip.seeds[1]", "gossip.seeds[1] = 7: want a string"},
		{"list item a list", "pool:\n  ranges: [[1, 2]]\n", "pool.ranges[0]", "want a string, found a list"},
		{"reversed range", "pool:\n  ranges: [\"15-10\"]\n", "pool.ranges[0]",
			`pool.ranges[0] = "15-10": pool range "15-10": reversed: first 15 is greater than last 10`},
		{"overlapping ranges", "pool:\n  ranges: [\"10-15\", \"12-20\"]\n", "pool.ranges[1]",
			`pool.ranges[1] = "12-20": overlaps pool.ranges[0] = "10-15"`},
		{"duplicate ranges", "pool:\n  ranges: [\"10-15\", \"10-15\"]\n", "pool.ranges[1]", "overlaps pool.ranges[0]"},
		{"empty ranges", "pool:\n  ranges: []\n", "pool.ranges", "pool.ranges = []: no frequency ranges"},
		{"null ranges", "pool:\n  ranges:\n", "pool.ranges", "no frequency ranges"},
		{"empty range string", "pool:\n  ranges: [\"\"]\n", "pool.ranges[0]", `pool.ranges[0] = "": pool range "": empty`},
		{"non-numeric range", "pool:\n  ranges: [\"a-b\"]\n", "pool.ranges[0]", `"a" is not a frequency`},
		{"range too big", "pool:\n  ranges: [\"1-4294967296\"]\n", "pool.ranges[0]", `"4294967296" is not a frequency (0..4294967295)`},
		{"negative range", "pool:\n  ranges: [\"-5\"]\n", "pool.ranges[0]", "cannot be negative"},
		{"api addr without port", "api:\n  addr: localhost\n", "api.addr", `api.addr = "localhost": missing port`},
		{"api port out of range", "api:\n  addr: 127.0.0.1:70000\n", "api.addr", "port 70000 is out of range 1-65535"},
		{"api port zero", "api:\n  addr: 127.0.0.1:0\n", "api.addr", "port 0 is out of range"},
		{"api port a name", "api:\n  addr: 127.0.0.1:http\n", "api.addr", `port "http" is not a number`},
		{"api addr empty", "api:\n  addr: \"\"\n", "api.addr", "empty; want host:port"},
		{"peer addr without port", "peer:\n  addr: localhost\n", "peer.addr", `peer.addr = "localhost": missing port`},
		{"peer port out of range", "peer:\n  addr: 127.0.0.1:70000\n", "peer.addr", "port 70000 is out of range 1-65535"},
		{"peer port zero", "peer:\n  addr: 127.0.0.1:0\n", "peer.addr", "port 0 is out of range"},
		{"peer port a name", "peer:\n  addr: 127.0.0.1:http\n", "peer.addr", `port "http" is not a number`},
		{"peer addr empty", "peer:\n  addr: \"\"\n", "peer.addr", "empty; want host:port"},
		{"peer addr null", "peer:\n  addr:\n", "peer.addr", "empty; want host:port"},
		{"peer ipv6 without brackets", "peer:\n  addr: \"::1:7300\"\n", "peer.addr", "needs brackets"},
		{"peer and api share a port", "peer:\n  addr: 127.0.0.1:7100\n", "peer.addr", `same port as api.addr = "127.0.0.1:7100"`},
		{"peer and gossip share a port", "peer:\n  addr: 127.0.0.1:7946\n", "peer.addr", `same port as gossip.addr = "127.0.0.1:7946"`},
		{"gossip addr bad host", "gossip:\n  addr: \"bad host:7946\"\n", "gossip.addr", `host "bad host" is not an IP address or host name`},
		{"ipv6 without brackets", "gossip:\n  addr: \"::1:7946\"\n", "gossip.addr", "needs brackets"},
		{"api and gossip share a port", "api:\n  addr: 127.0.0.1:7946\n", "api.addr", `same port as gossip.addr = "127.0.0.1:7946"`},
		{"bad seed", "gossip:\n  seeds: [\"127.0.0.1:7948\", \"127.0.0.1\"]\n", "gossip.seeds[1]",
			`config: gossip.seeds[1] = "127.0.0.1": missing port`},
		{"seed without host", "gossip:\n  seeds: [\":7948\"]\n", "gossip.seeds[0]", "missing host"},
		{"seed unspecified", "gossip:\n  seeds: [\"0.0.0.0:7948\"]\n", "gossip.seeds[0]", "cannot be dialed"},
		{"duplicate seed", "gossip:\n  seeds: [\"h:1\", \"h:1\"]\n", "gossip.seeds[1]", "duplicate of gossip.seeds[0]"},
		{"bad advertise", "gossip:\n  advertise: 192.0.2.1\n", "gossip.advertise", "missing port"},
		{"factor 0", "replication:\n  factor: 0\n", "replication.factor", "replication.factor = 0: must be at least 1"},
		{"factor negative", "replication:\n  factor: -2\n", "replication.factor", "must be at least 1"},
		{"unknown profile", "gossip:\n  profile: wan\n", "gossip.profile", `gossip.profile = "wan": unknown profile`},
		{"unknown strategy", "routing:\n  strategy: random\n", "routing.strategy", `routing.strategy = "random": unknown strategy`},
		{"negative duration", "gossip:\n  probe_interval: -1s\n", "gossip.probe_interval", "gossip.probe_interval = -1s: must not be negative"},
		{"negative rejoin", "gossip:\n  rejoin_interval: -5m\n", "gossip.rejoin_interval", "must not be negative"},
		{"duration without unit", "gossip:\n  rejoin_interval: 5\n", "gossip.rejoin_interval", `rejoin_interval = 5: a duration needs a unit`},
		{"duration garbage", "gossip:\n  gossip_interval: soon\n", "gossip.gossip_interval", `"soon": want a duration`},
		{"probe timeout not below interval", "gossip:\n  probe_interval: 1s\n  probe_timeout: 1s\n", "gossip.probe_timeout",
			"must be less than gossip.probe_interval = 1s"},
		{"negative suspicion mult", "gossip:\n  suspicion_mult: -1\n", "gossip.suspicion_mult", "must not be negative"},
		{"negative partitions", "pool:\n  partitions: -1\n", "pool.partitions", "pool.partitions = -1: must not be negative"},
		{"partitions over frequencies", "pool:\n  ranges: [\"1-10\"]\n  partitions: 11\n", "pool.partitions", "more than the 10 frequencies"},
		{"partitions under ranges", "pool:\n  ranges: [\"1-10\", \"20-30\", \"40\"]\n  partitions: 2\n", "pool.partitions", "fewer than the 3 entries"},
		{"partitions over max", "pool:\n  ranges: [\"0-4294967295\"]\n  partitions: 2000000\n", "pool.partitions", "more than the maximum"},
		{"bootstrap_expect 0", "cluster:\n  bootstrap_expect: 0\n", "cluster.bootstrap_expect", "cluster.bootstrap_expect = 0: must be at least 1"},
		{"bad log level", "log:\n  level: verbose\n", "log.level", `log.level = "verbose": unknown level`},
		{"upper-case log level", "log:\n  level: INFO\n", "log.level", "unknown level"},
		{"bad log format", "log:\n  format: xml\n", "log.format", `log.format = "xml": unknown format`},
		{"empty name", "node:\n  name: \"\"\n", "node.name", "must not be empty"},
		{"null name", "node:\n  name:\n", "node.name", "must not be empty"},
		{"name with space", "node:\n  name: \"n 1\"\n", "node.name", "must not contain spaces"},
		{"empty data dir", "node:\n  data_dir: \"\"\n", "node.data_dir", "must not be empty"},
		{"unknown fsync policy", "node:\n  fsync: sometimes\n", "node.fsync", "must be always, interval or none"},
		{"zero fsync interval", "node:\n  fsync_interval: 0s\n", "node.fsync_interval", "must be positive"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, "bad.yaml", tc.yaml)
			c, err := LoadFile(path)
			if err == nil {
				t.Fatalf("loaded %+v, want an error for %s", c, tc.key)
			}
			if !reflect.DeepEqual(c, Config{}) {
				t.Errorf("returned a non-zero Config with the error: %+v", c)
			}
			e := errorFor(err, tc.key)
			if e == nil {
				t.Fatalf("no error for key %q; got keys %q:\n%v", tc.key, keysOf(err), err)
			}
			if !strings.Contains(e.Error(), tc.want) {
				t.Errorf("error for %s:\n  %v\nwant it to contain\n  %s", tc.key, e, tc.want)
			}
			if !strings.HasPrefix(e.Error(), "config: "+tc.key) {
				t.Errorf("error %q does not start with the key", e)
			}
			if !strings.Contains(e.Source, "bad.yaml:") {
				t.Errorf("error %q: source %q, want the file and line", e, e.Source)
			}
		})
	}
}

// TestLoadReportsEverything checks that one load reports every problem,
// and that a key that fails to decode is not reported twice.
func TestLoadReportsEverything(t *testing.T) {
	cleanEnv(t)
	path := writeFile(t, "many.yaml", `
api:
  addr: nowhere
gossip:
  seeds: [127.0.0.1]
pool:
  ranges: ["15-10"]
  partitions: many
replication:
  factor: 0
`)
	_, err := LoadFile(path)
	got := keysOf(err)
	want := []string{"pool.partitions", "api.addr", "gossip.seeds[0]", "pool.ranges[0]", "replication.factor"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("error keys %q, want %q; error:\n%v", got, want, err)
	}
	if e := errorFor(err, "replication.factor"); e.Source != path+":10" {
		t.Errorf("source %q, want %s:10", e.Source, path)
	}
}

// TestLoadFileErrors covers files that are not a config at all: each
// error names the file.
func TestLoadFileErrors(t *testing.T) {
	cleanEnv(t)
	cases := []struct{ name, body, want string }{
		{"empty", "", "file is empty"},
		{"blank", "  \n\n\t\n", "file is empty"},
		{"comments only", "# nothing\n# here\n", "no settings, only comments"},
		{"null document", "~\n", "no settings"},
		{"empty document", "---\n", "no settings"},
		{"garbage", "{{{ not yaml", "yaml:"},
		{"binary", "\x00\x01\x02\xff", "yaml:"},
		{"tab indent", "node:\n\tname: x\n", "yaml:"},
		{"top-level scalar", "hello\n", "want a mapping of sections"},
		{"top-level list", "- node\n- api\n", "want a mapping of sections (node:, api:, peer:, gossip:, ...), found a list"},
		{"two documents", "node:\n  name: a\n---\nnode:\n  name: b\n", "a second YAML document"},
		{"unclosed quote", "node:\n  name: \"n1\n", "yaml:"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, "f.yaml", tc.body)
			_, err := LoadFile(path)
			if err == nil {
				t.Fatal("loaded, want an error")
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "config: ") || !strings.Contains(msg, path) || !strings.Contains(msg, tc.want) {
				t.Errorf("error %q: want it to start with config:, name %s and contain %q", msg, path, tc.want)
			}
		})
	}
	t.Run("missing file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "nope.yaml")
		_, err := LoadFile(path)
		if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), path) {
			t.Errorf("error %v: want ErrNotExist naming %s", err, path)
		}
	})
}

// TestPartialFileKeepsDefaults checks that keys a file leaves out keep
// their defaults, and that null and [] mean "empty".
func TestPartialFileKeepsDefaults(t *testing.T) {
	cleanEnv(t)
	path := writeFile(t, "p.yaml", `
node:
  name: solo
gossip:
  advertise:
  seeds: []
log:
`)
	got, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Node.Name = "solo"
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	if got.Gossip.Seeds == nil || got.Pool.Ranges == nil {
		t.Error("lists must be empty, not nil")
	}
}

// TestPrecedence checks default < file < env < flag, key by key, and
// that a bound flag the user did not set overrides nothing.
func TestPrecedence(t *testing.T) {
	cleanEnv(t)
	path := writeFile(t, "n.yaml", `
node:
  name: from-file
api:
  addr: 127.0.0.1:7201
peer:
  addr: 127.0.0.1:7401
gossip:
  seeds: [127.0.0.1:7301]
pool:
  partitions: 4
log:
  level: debug
`)
	t.Setenv("FREQD_NODE_NAME", "from-env")
	t.Setenv("FREQD_API_ADDR", "127.0.0.1:7202")
	t.Setenv("FREQD_PEER_ADDR", "127.0.0.1:7402")
	t.Setenv("FREQD_POOL_PARTITIONS", "8")
	t.Setenv("FREQD_ROUTING_STRATEGY", "most-free")

	fs := pflag.NewFlagSet("freqd", pflag.ContinueOnError)
	l := NewLoader()
	l.BindFlags(fs)
	if err := fs.Parse([]string{"--api-addr", "127.0.0.1:7203", "--replication-factor=2"}); err != nil {
		t.Fatal(err)
	}
	got, err := l.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		key       string
		got, want any
	}{
		{"api.addr (flag > env > file)", got.API.Addr, "127.0.0.1:7203"},
		{"peer.addr (env > file, flag unset)", got.Peer.Addr, "127.0.0.1:7402"},
		{"node.name (env > file)", got.Node.Name, "from-env"},
		{"pool.partitions (env > file, flag unset)", got.Pool.Partitions, 8},
		{"routing.strategy (env > default)", got.Routing.Strategy, StrategyMostFree},
		{"replication.factor (flag > default)", got.Replication.Factor, 2},
		{"gossip.seeds (file > default, flag unset)", got.Gossip.Seeds, []string{"127.0.0.1:7301"}},
		{"log.level (file > default)", got.Log.Level, LevelDebug},
		{"node.data_dir (default)", got.Node.DataDir, "./data/freqd"},
		{"cluster.bootstrap_expect (default, flag unset)", got.Cluster.BootstrapExpect, 1},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %#v, want %#v", c.key, c.got, c.want)
		}
	}

	// Without a file: default < env < flag.
	got, err = l.Load("")
	if err != nil {
		t.Fatal(err)
	}
	if got.API.Addr != "127.0.0.1:7203" || got.Node.Name != "from-env" || got.Log.Level != LevelInfo {
		t.Errorf("without a file: api.addr %q node.name %q log.level %q", got.API.Addr, got.Node.Name, got.Log.Level)
	}
}

// TestFlags checks every flag reaches its key, slice flags included, and
// that --seeds= clears the file's seeds.
func TestFlags(t *testing.T) {
	cleanEnv(t)
	path := writeFile(t, "n.yaml", "gossip:\n  seeds: [127.0.0.1:7301]\n")
	fs := pflag.NewFlagSet("freqd", pflag.ContinueOnError)
	l := NewLoader()
	l.BindFlags(fs)
	args := []string{
		"--name=f1", "--data-dir=/tmp/f1", "--api-addr=127.0.0.1:8100", "--peer-addr=127.0.0.1:8300", "--gossip-addr=127.0.0.1:8946",
		"--seeds=127.0.0.1:8947,127.0.0.1:8948", "--seeds=127.0.0.1:8949", "--profile=fast",
		"--ranges=1-100", "--ranges=200-300,400", "--partitions=8", "--replication-factor=3",
		"--strategy=round-robin", "--bootstrap-expect=2", "--log-level=warn",
	}
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	got, err := l.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Node.Name, want.Node.DataDir = "f1", "/tmp/f1"
	want.API.Addr = "127.0.0.1:8100"
	want.Peer.Addr = "127.0.0.1:8300"
	want.Gossip.Addr = "127.0.0.1:8946"
	want.Gossip.Seeds = []string{"127.0.0.1:8947", "127.0.0.1:8948", "127.0.0.1:8949"}
	want.Gossip.Profile = ProfileFast
	want.Pool = Pool{Ranges: []string{"1-100", "200-300", "400"}, Partitions: 8}
	want.Replication.Factor = 3
	want.Routing.Strategy = StrategyRoundRobin
	want.Cluster.BootstrapExpect = 2
	want.Log.Level = LevelWarn
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}

	fs2 := pflag.NewFlagSet("freqd", pflag.ContinueOnError)
	l2 := NewLoader()
	l2.BindFlags(fs2)
	if err := fs2.Parse([]string{"--seeds="}); err != nil {
		t.Fatal(err)
	}
	got, err = l2.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Gossip.Seeds) != 0 {
		t.Errorf("--seeds= left seeds %q, want none", got.Gossip.Seeds)
	}
}

// TestEnvEveryKey sets every key through its FREQD_ variable, nested keys
// and lists included, and checks each lands in its field.
func TestEnvEveryKey(t *testing.T) {
	cleanEnv(t)
	env := map[string]string{
		"FREQD_NODE_NAME":                 "e1",
		"FREQD_NODE_DATA_DIR":             "/srv/e1",
		"FREQD_NODE_FSYNC":                "interval",
		"FREQD_NODE_FSYNC_INTERVAL":       "20ms",
		"FREQD_API_ADDR":                  "[::1]:9100",
		"FREQD_PEER_ADDR":                 "[::1]:9300",
		"FREQD_GOSSIP_ADDR":               "0.0.0.0:9946",
		"FREQD_GOSSIP_ADVERTISE":          "e1.example.com:9946",
		"FREQD_GOSSIP_SEEDS":              "10.0.0.2:9946, 10.0.0.3:9946",
		"FREQD_GOSSIP_PROFILE":            "local",
		"FREQD_GOSSIP_PROBE_INTERVAL":     "2s",
		"FREQD_GOSSIP_PROBE_TIMEOUT":      "500ms",
		"FREQD_GOSSIP_SUSPICION_MULT":     "6",
		"FREQD_GOSSIP_GOSSIP_INTERVAL":    "100ms",
		"FREQD_GOSSIP_PUSH_PULL_INTERVAL": "1m",
		"FREQD_GOSSIP_REJOIN_INTERVAL":    "30s",
		"FREQD_POOL_RANGES":               "10-15,20-25,100-199",
		"FREQD_POOL_PARTITIONS":           " 12 ",
		"FREQD_REPLICATION_FACTOR":        "2",
		"FREQD_ROUTING_STRATEGY":          "round-robin",
		"FREQD_CLUSTER_BOOTSTRAP_EXPECT":  "5",
		"FREQD_LOG_LEVEL":                 "error",
		"FREQD_LOG_FORMAT":                "json",
	}
	if len(env) != len(fields()) {
		t.Fatalf("test sets %d variables for %d keys", len(env), len(fields()))
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	got, err := LoadFile("")
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		Node: Node{Name: "e1", DataDir: "/srv/e1", Fsync: FsyncInterval, FsyncInterval: 20 * time.Millisecond},
		API:  API{Addr: "[::1]:9100"},
		Peer: Peer{Addr: "[::1]:9300"},
		Gossip: Gossip{
			Addr: "0.0.0.0:9946", Advertise: "e1.example.com:9946",
			Seeds: []string{"10.0.0.2:9946", "10.0.0.3:9946"}, Profile: ProfileLocal,
			ProbeInterval: 2 * time.Second, ProbeTimeout: 500 * time.Millisecond, SuspicionMult: 6,
			GossipInterval: 100 * time.Millisecond, PushPullInterval: time.Minute, RejoinInterval: 30 * time.Second,
		},
		Pool:        Pool{Ranges: []string{"10-15", "20-25", "100-199"}, Partitions: 12},
		Replication: Replication{Factor: 2},
		Routing:     Routing{Strategy: StrategyRoundRobin},
		Cluster:     Cluster{BootstrapExpect: 5},
		Log:         Log{Level: LevelError, Format: FormatJSON},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	// Every field differs from the default, so no key was missed.
	def := reflect.ValueOf(Default())
	for i := 0; i < def.NumField(); i++ {
		sec, dsec := reflect.ValueOf(got).Field(i), def.Field(i)
		for j := 0; j < sec.NumField(); j++ {
			if reflect.DeepEqual(sec.Field(j).Interface(), dsec.Field(j).Interface()) {
				t.Errorf("%s.%s still has its default value", def.Type().Field(i).Name, sec.Type().Field(j).Name)
			}
		}
	}
}

// TestEnvErrorsNameTheVariable checks that a bad value from the
// environment or a flag says so.
func TestEnvErrorsNameTheVariable(t *testing.T) {
	cleanEnv(t)
	t.Setenv("FREQD_GOSSIP_SEEDS", "127.0.0.1:1,127.0.0.1")
	t.Setenv("FREQD_REPLICATION_FACTOR", "three")
	fs := pflag.NewFlagSet("freqd", pflag.ContinueOnError)
	l := NewLoader()
	l.BindFlags(fs)
	if err := fs.Parse([]string{"--strategy=nearest"}); err != nil {
		t.Fatal(err)
	}
	_, err := l.Load("")
	for key, want := range map[string]string{
		"gossip.seeds[1]":    `config: gossip.seeds[1] = "127.0.0.1": missing port (from env FREQD_GOSSIP_SEEDS)`,
		"replication.factor": `config: replication.factor = "three": want an integer (from env FREQD_REPLICATION_FACTOR)`,
		"routing.strategy":   `(from flag --strategy)`,
	} {
		e := errorFor(err, key)
		if e == nil || !strings.Contains(e.Error(), want) {
			t.Errorf("error for %s: %v, want it to contain %q", key, e, want)
		}
	}
}

// TestEmptyEnvIsUnset documents that FREQD_X="" does not override.
func TestEmptyEnvIsUnset(t *testing.T) {
	cleanEnv(t)
	path := writeFile(t, "n.yaml", "gossip:\n  seeds: [127.0.0.1:7301]\n")
	t.Setenv("FREQD_GOSSIP_SEEDS", "")
	got, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Gossip.Seeds, []string{"127.0.0.1:7301"}) {
		t.Errorf("seeds %q", got.Gossip.Seeds)
	}
}

// TestLoaderReloads checks that Load reads the file afresh each time and
// that one file's keys do not leak into the next load.
func TestLoaderReloads(t *testing.T) {
	cleanEnv(t)
	l := NewLoader()
	a := writeFile(t, "a.yaml", "node:\n  name: a\nlog:\n  level: debug\n")
	b := writeFile(t, "b.yaml", "node:\n  name: b\n")
	ca, err := l.Load(a)
	if err != nil {
		t.Fatal(err)
	}
	cb, err := l.Load(b)
	if err != nil {
		t.Fatal(err)
	}
	if ca.Node.Name != "a" || ca.Log.Level != LevelDebug || cb.Node.Name != "b" || cb.Log.Level != LevelInfo {
		t.Errorf("a: %+v\nb: %+v", ca, cb)
	}
}
