package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dtkbot/dtkbot/internal/graphtest"
	"github.com/dtkbot/dtkbot/internal/payloadtest"
	"github.com/dtkbot/dtkbot/internal/registrytest"
)

// cliWorld is a registry, a graph and a config file pointing at them.
type cliWorld struct {
	srv    *registrytest.Server
	graph  *graphtest.Server
	world  *payloadtest.World
	config string
}

func newCLIWorld(t *testing.T, extra string) *cliWorld {
	t.Helper()
	return newCLIWorldWith(t, extra, func(h http.Handler) http.Handler { return h })
}

// newCLIWorldWith serves the registry behind wrap.
func newCLIWorldWith(t *testing.T, extra string, wrap func(http.Handler) http.Handler) *cliWorld {
	t.Helper()
	srv := registrytest.New().ServerWith(wrap)
	t.Cleanup(srv.Close)
	g := graphtest.New()
	t.Cleanup(g.Close)
	w := payloadtest.New(srv.Registry, srv.Host())
	w.ContentSize = 16 << 10
	for i, s := range []payloadtest.Stream{
		{Kernel: "5.14.0-427.37.1.el9_4"}, {Kernel: "5.14.0-427.37.1.el9_4"}, {Kernel: "5.14.0-427.40.1.el9_4"},
	} {
		v := fmt.Sprintf("4.16.%d", 15+i)
		g.Publish("stable-4.16", "amd64", v, w.Release(payloadtest.ReleaseSpec{Version: v, Stream: s}).Pullspec)
	}
	dir := t.TempDir()
	if !strings.HasPrefix(extra, "verify:") && !strings.Contains(extra, "\nverify:") {
		// Tests reach nothing beyond loopback: not the official signature
		// store. (A consumer's `verify:` is no top-level key: the crash
		// test's asked mirror.openshift.com 85 times before the guard.)
		extra += "verify:\n  mode: off\n"
	}
	cfg := fmt.Sprintf(`schedule: "@every 30m"
state: dtkbot.db
log: {level: warn, format: json}
graph:
  url: %s
  channels: [stable-4.16]
registry:
  tls_verify: false
  registries_conf: /dev/null
  attempts: 1
target:
  repository: %s/dtkbot/driver-toolkit
%s`, g.URL(), srv.Host(), extra)
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return &cliWorld{srv: srv, graph: g, world: w, config: path}
}

func TestReconcileCommand(t *testing.T) {
	cw := newCLIWorld(t, "")
	code, stdout, stderr := runCLI(t, "reconcile", "--config", cw.config, "--dry-run", "-o", "json")
	if code != exitOK {
		t.Fatalf("dry run exit %d: %s", code, stderr)
	}
	var res struct {
		Releases  int              `json:"releases"`
		Inspected int              `json:"inspected"`
		Actions   []map[string]any `json:"actions"`
	}
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("%v: %s", err, stdout)
	}
	if res.Releases != 3 || res.Inspected != 3 || len(res.Actions) != 2 || res.Actions[0]["type"] != "build" {
		t.Fatalf("dry run: %s", stdout)
	}
	for _, key := range []string{"type", "kernel", "stream", "arch", "releases", "image", "reason"} {
		if _, ok := res.Actions[0][key]; !ok {
			t.Errorf("action lacks %q: %v", key, res.Actions[0])
		}
	}

	// Without a build backend the real pass plans the builds and says why
	// nothing was built; the table is for people.
	code, stdout, stderr = runCLI(t, "reconcile", "--config", cw.config)
	if code != exitOK || !strings.Contains(stdout, "skipped: build backend (build.backend) not configured") || !strings.Contains(stdout, "3 releases, 3 newly inspected") {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}

	code, stdout, _ = runCLI(t, "state", "export", "--config", cw.config)
	var exp struct {
		Releases []map[string]any `json:"releases"`
		Kernels  []map[string]any `json:"kernels"`
		Schema   int              `json:"schema"`
	}
	if code != exitOK || json.Unmarshal([]byte(stdout), &exp) != nil || len(exp.Releases) != 3 || len(exp.Kernels) != 2 || exp.Schema != 2 {
		t.Fatalf("state export %d: %s", code, stdout)
	}

	cw.graph.Fail.Store(500)
	code, _, stderr = runCLI(t, "reconcile", "--config", cw.config)
	if code != exitFailed || !strings.Contains(stderr, "500") {
		t.Errorf("a failing graph: exit %d, %s", code, stderr)
	}
}

func TestValidateConfigCommand(t *testing.T) {
	if code, out, errOut := runCLI(t, "validate-config", "--config", "../../config.yaml"); code != exitOK || !strings.Contains(out, "ok") {
		t.Errorf("the example config: %d %s %s", code, out, errOut)
	}
	bad := filepath.Join(t.TempDir(), "config.yaml")
	_ = os.WriteFile(bad, []byte("schedule: sometimes\ngraph:\n  channels: [stable-4.16]\n  arches: [vax]\nbuild:\n  backend: magic\n"), 0o600)
	code, _, errOut := runCLI(t, "validate-config", "--config", bad)
	if code != exitUsage {
		t.Errorf("exit %d", code)
	}
	for _, want := range []string{"line 1: schedule", "line 4: graph.arches[0]", "line 6: build.backend"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("validate-config does not say %q:\n%s", want, errOut)
		}
	}
}
