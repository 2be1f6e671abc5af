package config_test

import (
	"fmt"
	"log"

	"github.com/spf13/pflag"

	"github.com/freqd/freqd/config"
)

// A command binds the flags, parses its arguments, and loads the file the
// user named; flags beat FREQD_* variables, which beat the file.
func ExampleLoader() {
	fs := pflag.NewFlagSet("freqd", pflag.ContinueOnError)
	loader := config.NewLoader()
	loader.BindFlags(fs)
	if err := fs.Parse([]string{"--log-level=debug"}); err != nil {
		log.Fatal(err)
	}
	cfg, err := loader.Load("examples/local-3/n1.yaml")
	if err != nil {
		log.Fatal(err) // names the key, the value and where it came from
	}
	fmt.Println(cfg.Node.Name, cfg.API.Addr, cfg.Peer.Addr, cfg.Gossip.Seeds, cfg.Log.Level)
	// Output: n1 127.0.0.1:7101 127.0.0.1:7301 [127.0.0.1:7948 127.0.0.1:7949] debug
}

func ExampleConfig_Validate() {
	cfg := config.Default()
	cfg.Gossip.Seeds = []string{"127.0.0.1:7948", "127.0.0.1"}
	cfg.Replication.Factor = 0
	fmt.Println(cfg.Validate())
	// Output:
	// config: gossip.seeds[1] = "127.0.0.1": missing port
	// config: replication.factor = 0: must be at least 1
}
