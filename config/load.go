package config

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// Loader builds a Config from the layers, lowest first: the built-in
// default, a config file, FREQD_* environment variables, and command-line
// flags. It wraps viper, which no other package uses; each Load uses a
// fresh viper instance. Call BindFlags (optional) before Load; Load may be
// called any number of times and reads the flags, the environment and the
// file afresh each time.
type Loader struct {
	flags map[string]*pflag.Flag // config key -> flag defined by BindFlags
}

// NewLoader returns a Loader with no flags bound.
func NewLoader() *Loader {
	return &Loader{flags: make(map[string]*pflag.Flag)}
}

// BindFlags defines on fs one flag for each common key, and makes Load use
// the flags the user set; a flag left unset does not override anything.
// The flags, each with its key:
//
//	--name                node.name
//	--data-dir            node.data_dir
//	--fsync               node.fsync
//	--api-addr            api.addr
//	--peer-addr           peer.addr
//	--gossip-addr         gossip.addr
//	--seeds a:1,b:2       gossip.seeds (repeatable; --seeds= clears)
//	--profile             gossip.profile
//	--ranges 1-10,20-30   pool.ranges (repeatable)
//	--partitions          pool.partitions
//	--replication-factor  replication.factor
//	--strategy            routing.strategy
//	--bootstrap-expect    cluster.bootstrap_expect
//	--log-level           log.level
//
// The other keys are set in the file or the environment. BindFlags panics,
// as pflag does, if fs already has a flag of one of these names.
func (l *Loader) BindFlags(fs *pflag.FlagSet) {
	if l.flags == nil {
		l.flags = make(map[string]*pflag.Flag)
	}
	for _, f := range fields() {
		if f.flag == "" {
			continue
		}
		switch f.kind {
		case kindString:
			fs.String(f.flag, "", f.usage)
		case kindStrings:
			fs.StringSlice(f.flag, nil, f.usage)
		case kindInt:
			fs.Int(f.flag, 0, f.usage)
		default:
			panic(fmt.Sprintf("config: no flag type for %s", f.key))
		}
		l.flags[f.key] = fs.Lookup(f.flag)
	}
}

// Load builds the Config: the built-in default, overlaid by file (if file
// is not ""), by the FREQD_* environment variables, and by the flags the
// user set, then validates it. On any problem it returns the zero Config
// and an error naming the file, or every bad key with its value and where
// that value came from.
func (l *Loader) Load(file string) (Config, error) {
	var fv *fileValues
	if file != "" {
		data, err := os.ReadFile(file)
		if err != nil {
			return Config{}, fmt.Errorf("config: %w", err)
		}
		if fv, err = parseFile(file, data); err != nil {
			return Config{}, err
		}
	}
	return l.load(fv)
}

// LoadFile loads file (or, if file is "", only the default) with the
// environment but no flags: NewLoader().Load(file).
func LoadFile(file string) (Config, error) { return NewLoader().Load(file) }

// load layers default < fv (may be nil) < env < flags, decodes and
// validates.
func (l *Loader) load(fv *fileValues) (Config, error) {
	def, err := parseFile("default.yaml", defaultYAML)
	if err != nil {
		return Config{}, fmt.Errorf("config: embedded default: %w", err)
	}
	v := viper.New()
	fs := fields()
	for _, f := range fs {
		v.SetDefault(f.key, def.values[f.key])
		if err := v.BindEnv(f.key, f.env()); err != nil {
			return Config{}, fmt.Errorf("config: bind %s: %w", f.env(), err)
		}
		if fl := l.flags[f.key]; fl != nil {
			if err := v.BindPFlag(f.key, fl); err != nil {
				return Config{}, fmt.Errorf("config: bind --%s: %w", fl.Name, err)
			}
		}
	}
	if fv != nil {
		if err := v.MergeConfigMap(fv.nested()); err != nil {
			return Config{}, fmt.Errorf("config: %s: %w", fv.name, err)
		}
	}

	var c Config
	var ps []*Error
	for _, f := range fs {
		ps = append(ps, f.decode(v.Get(f.key), &c)...)
	}
	// Validate too, but skip the keys that did not decode: their zero
	// values would only add noise.
	failed := make(map[string]bool, len(ps))
	for _, p := range ps {
		failed[baseKey(p.Key)] = true
	}
	for _, p := range c.problems() {
		if !failed[baseKey(p.Key)] {
			ps = append(ps, p)
		}
	}
	if len(ps) > 0 {
		for _, p := range ps {
			p.Source = l.source(p.Key, fv)
		}
		return Config{}, join(ps)
	}
	return c, nil
}

// source says where the value of key (maybe "gossip.seeds[1]") came from,
// following the same precedence as viper.
func (l *Loader) source(key string, fv *fileValues) string {
	key = baseKey(key)
	if fl := l.flags[key]; fl != nil && fl.Changed {
		return "flag --" + fl.Name
	}
	if val, ok := os.LookupEnv(envName(key)); ok && val != "" {
		return "env " + envName(key)
	}
	if fv != nil {
		if line, ok := fv.lines[key]; ok {
			return fmt.Sprintf("%s:%d", fv.name, line)
		}
	}
	return "default"
}

// baseKey strips a list index: "gossip.seeds[1]" -> "gossip.seeds".
func baseKey(key string) string {
	if i := strings.IndexByte(key, '['); i >= 0 {
		return key[:i]
	}
	return key
}
