package config

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// cleanEnv blanks every FREQD_ variable this package reads, so a stray one
// in the developer's shell cannot change a test. An empty variable counts
// as unset.
func cleanEnv(t *testing.T) {
	t.Helper()
	for _, f := range fields() {
		t.Setenv(f.env(), "")
	}
}

// writeFile writes body to a file named name in a fresh temp dir.
func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// allErrors flattens err (possibly from errors.Join) into its *Error parts.
func allErrors(err error) []*Error {
	var out []*Error
	var walk func(error)
	walk = func(err error) {
		if err == nil {
			return
		}
		if e, ok := err.(*Error); ok {
			out = append(out, e)
			return
		}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		walk(errors.Unwrap(err))
	}
	walk(err)
	return out
}

// errorFor returns the *Error in err for key, or nil.
func errorFor(err error, key string) *Error {
	for _, e := range allErrors(err) {
		if e.Key == key {
			return e
		}
	}
	return nil
}

func keysOf(err error) []string {
	var keys []string
	for _, e := range allErrors(err) {
		keys = append(keys, e.Key)
	}
	return keys
}
