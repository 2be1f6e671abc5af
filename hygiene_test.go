package freqd_test

import (
	"bytes"
	"go/format"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestGofmt fails if any Go file in the module is not gofmt-formatted.
func TestGofmt(t *testing.T) {
	var bad []string
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") && path != "." || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		out, err := format.Source(src)
		if err != nil {
			bad = append(bad, path+": "+err.Error())
		} else if !bytes.Equal(out, src) {
			bad = append(bad, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(bad) > 0 {
		t.Fatalf("not gofmt-formatted (run gofmt -w):\n%s", strings.Join(bad, "\n"))
	}
}

// goCommand is the go command that runs this test: the one in
// $GOROOT/bin as `go env GOROOT` reports it, else the first on PATH.
func goCommand(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err == nil {
		if p := filepath.Join(strings.TrimSpace(string(out)), "bin", "go"); fileExists(p) {
			return p
		}
	}
	return "go"
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// TestVet runs go vet over the whole module.
func TestVet(t *testing.T) {
	if testing.Short() {
		t.Skip("go vet skipped in -short mode")
	}
	cmd := exec.Command(goCommand(t), "vet", "./...")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go vet ./...: %v\n%s", err, out)
	}
}

// TestStaticcheck runs staticcheck (pinned as a tool in go.mod) over the
// whole module, tests included.
func TestStaticcheck(t *testing.T) {
	if testing.Short() {
		t.Skip("staticcheck skipped in -short mode")
	}
	cmd := exec.Command(goCommand(t), "tool", "staticcheck", "./...")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go tool staticcheck ./...: %v\n%s", err, out)
	}
}
