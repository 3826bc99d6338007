package fsm_test

import (
	"errors"
	"os/exec"
	"strings"
	"testing"
)

// forbiddenDeps are the import-path prefixes fsm must never depend on (STYLE.md,
// "Dependency rule"). The raft prefix also covers raft-boltdb.
var forbiddenDeps = []string{
	"github.com/hashicorp/raft",
	"google.golang.org/grpc",
	"github.com/conclave-dev/conclave/cluster",
	"github.com/conclave-dev/conclave/server",
	"github.com/conclave-dev/conclave/client",
	"github.com/conclave-dev/conclave/cmd",
}

func forbidden(path string) (string, bool) {
	for _, f := range forbiddenDeps {
		if path == f || strings.HasPrefix(path, f+"/") || strings.HasPrefix(path, f+"-") {
			return f, true
		}
	}
	return "", false
}

// TestFSM_Imports keeps the dependency rule: `go list -deps` of fsm lists no raft, no grpc
// and none of the packages above fsm. A failure names the allowed package through which
// each forbidden one enters.
func TestFSM_Imports(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go not found in PATH")
	}
	out, err := exec.Command(goBin, "list", "-deps", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, ".").Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list -deps: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go list -deps: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if last := strings.Fields(lines[len(lines)-1]); len(last) == 0 || last[0] != "github.com/conclave-dev/conclave/fsm" {
		t.Fatalf("go list -deps did not end with the fsm package:\n%s", out)
	}
	for _, line := range lines {
		fields := strings.Fields(line)
		pkg, imports := fields[0], fields[1:]
		if _, bad := forbidden(pkg); bad {
			continue // reported where it enters
		}
		reported := map[string]bool{}
		for _, imp := range imports {
			if rule, bad := forbidden(imp); bad && !reported[rule] {
				reported[rule] = true
				t.Errorf("fsm depends on %s (rule: no %s): imported by %s", imp, rule, pkg)
			}
		}
	}
}
