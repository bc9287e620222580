package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/dtkbot/dtkbot/coverage"
	"github.com/dtkbot/dtkbot/internal/graphtest"
	"github.com/dtkbot/dtkbot/internal/loopback"
	"github.com/dtkbot/dtkbot/internal/payloadtest"
	"github.com/dtkbot/dtkbot/internal/registrytest"
	"github.com/dtkbot/dtkbot/state"
)

// TestReportFromTheStateFile: what a CronJob user gets without a daemon,
// the same index the API serves, from the state file alone.
func TestReportFromTheStateFile(t *testing.T) {
	cw := newCLIWorld(t, "")
	if code, _, stderr := runCLI(t, "reconcile", "--config", cw.config); code != exitOK {
		t.Fatalf("reconcile: %s", stderr)
	}
	code, stdout, stderr := runCLI(t, "report", "--config", cw.config, "-o", "json")
	if code != exitOK {
		t.Fatalf("report -o json: %d %s", code, stderr)
	}
	var got coverage.Index
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatal(err)
	}
	s, err := state.OpenReadOnly(filepath.Join(filepath.Dir(cw.config), "dtkbot.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	snap, _ := s.Snapshot()
	s.Close()
	want := coverage.Build(snap, got.GeneratedAt, coverage.Options{})
	roundTrip := func(v any) any {
		b, _ := json.Marshal(v)
		var out any
		_ = json.Unmarshal(b, &out)
		return out
	}
	if !reflect.DeepEqual(roundTrip(got.ReleasesDoc()), roundTrip(want.ReleasesDoc())) || !reflect.DeepEqual(roundTrip(got.KernelsDoc()), roundTrip(want.KernelsDoc())) {
		t.Errorf("report -o json differs from the index of the state:\n%s", stdout)
	}
	if len(got.Releases) != 3 || len(got.Kernels) != 2 || got.Releases[0].Release != "4.16.17" || got.LastPass == nil {
		t.Errorf("index %+v", got)
	}

	out := filepath.Join(t.TempDir(), "coverage.html")
	if code, _, stderr := runCLI(t, "report", "--config", cw.config, "-o", "html", "--out", out); code != exitOK {
		t.Fatalf("report -o html: %s", stderr)
	}
	page, _ := os.ReadFile(out)
	if !strings.Contains(string(page), "Driver Toolkit coverage") || !strings.Contains(string(page), `data-release="4.16.15"`) {
		t.Errorf("the HTML report:\n%s", page)
	}
	code, stdout, _ = runCLI(t, "report", "--config", cw.config, "--minor", "4.16", "--state", "pending")
	if code != exitOK || !strings.Contains(stdout, "4.16.17") || !strings.Contains(stdout, "3 of 3 releases") {
		t.Errorf("report table:\n%s", stdout)
	}
	if code, _, _ := runCLI(t, "report", "--config", cw.config, "-o", "xml"); code != exitUsage {
		t.Errorf("-o xml: %d", code)
	}
	code, stdout, _ = runCLI(t, "report", "--config", cw.config, "-o", "yaml")
	if code != exitOK || !strings.Contains(stdout, "releases:\n- arch: amd64") || !strings.Contains(stdout, "kernel_full: ") {
		t.Errorf("-o yaml: %d\n%s", code, stdout)
	}
	code, stdout, _ = runCLI(t, "report", "--config", cw.config, "-o", "name", "--minor", "4.16")
	if code != exitOK || !strings.Contains(stdout, "4.16.17/amd64\n") {
		t.Errorf("-o name: %d\n%s", code, stdout)
	}
}

// TestReleaseInfoForPeople: a bare version means the official release
// repository (here mirrored by registries.conf, as in a disconnected
// cluster), and --channel every release of a graph channel.
func TestReleaseInfoForPeople(t *testing.T) {
	srv := registrytest.New().Server()
	defer srv.Close()
	w := payloadtest.New(srv.Registry, "quay.io")
	w.ContentSize = 4 << 10
	g := graphtest.New()
	defer g.Close()
	for i, k := range []string{"5.14.0-427.37.1.el9_4", "5.14.0-427.40.1.el9_4"} {
		v := fmt.Sprintf("4.16.%d", 15+i)
		g.Publish("stable-4.16", "amd64", v, w.Release(payloadtest.ReleaseSpec{Version: v, Stream: payloadtest.Stream{Kernel: k}}).Pullspec)
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "registries.conf")
	_ = os.WriteFile(conf, []byte(fmt.Sprintf("[[registry]]\nlocation = \"quay.io/openshift-release-dev\"\n[[registry.mirror]]\nlocation = \"%s/openshift-release-dev\"\ninsecure = true\n", srv.Host())), 0o600)
	cfg := filepath.Join(dir, "config.yaml")
	_ = os.WriteFile(cfg, []byte(fmt.Sprintf("graph:\n  url: %s\n  channels: [stable-4.16]\nregistry:\n  registries_conf: %s\nverify: {mode: off}\n", g.URL(), conf)), 0o600)

	// The mirror must answer: were it to fail, containers/image would fall
	// back to quay.io itself, which the loopback guard refuses; a refusal
	// is this test's failure, whatever the command made of it.
	offMirror := func(what string) {
		t.Helper()
		if left := loopback.Refused(); len(left) > 0 {
			t.Fatalf("%s: the mirror failed and dtkbot asked %q", what, left)
		}
	}
	before := srv.Stats()
	code, stdout, stderr := runCLI(t, "release-info", "4.16.15", "--config", cfg, "-o", "json")
	offMirror("a bare version")
	if s := srv.Stats().Sub(before); s.ManifestGETs == 0 {
		t.Fatalf("a bare version: the mirror served no manifest (%+v)", s)
	}
	var reports []map[string]any
	if code != exitOK || json.Unmarshal([]byte(stdout), &reports) != nil || len(reports) != 1 ||
		reports[0]["pullspec"] != "quay.io/openshift-release-dev/ocp-release:4.16.15-x86_64" {
		t.Fatalf("a bare version: %d %s %s", code, stdout, stderr)
	}
	code, stdout, stderr = runCLI(t, "release-info", "--channel", "stable-4.16", "--config", cfg)
	offMirror("a channel")
	if code != exitOK || !strings.Contains(stdout, "4.16.15") || !strings.Contains(stdout, "5.14.0-427.40.1.el9_4.x86_64") {
		t.Fatalf("a channel: %d %s %s", code, stdout, stderr)
	}
	if code, _, stderr := runCLI(t, "release-info", "--channel", "stable-4.99", "--config", cfg); code != exitFailed || !strings.Contains(stderr, "stable-4.99") {
		t.Errorf("an empty channel: %d %s", code, stderr)
	}
	if got, err := releasePullspec("4.17.0-ec.2", "arm64"); got != "quay.io/openshift-release-dev/ocp-release:4.17.0-ec.2-aarch64" {
		t.Errorf("arm64: %s %v", got, err)
	}
	if got, err := releasePullspec("4.18.14", "multi"); got != "quay.io/openshift-release-dev/ocp-release:4.18.14-multi" {
		t.Errorf("multi: %s %v", got, err)
	}
}
