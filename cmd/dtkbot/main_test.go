package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/dtkbot/dtkbot/internal/payloadtest"
	"github.com/dtkbot/dtkbot/internal/registrytest"
)

func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestReleaseInfoJSON(t *testing.T) {
	srv := registrytest.New().Server()
	defer srv.Close()
	w := payloadtest.New(srv.Registry, srv.Host())
	var pullspecs []string
	for _, spec := range payloadtest.Eras() {
		pullspecs = append(pullspecs, w.Release(spec).TagPullspec)
	}
	args := append([]string{"release-info"}, pullspecs...)
	args = append(args, "--tls-verify=false", "--registries-conf=/dev/null", "-o", "json")
	code, stdout, stderr := runCLI(t, args...)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var reports []map[string]any
	if err := json.Unmarshal([]byte(stdout), &reports); err != nil {
		t.Fatalf("%v: %s", err, stdout)
	}
	if len(reports) != len(pullspecs) {
		t.Fatalf("%d reports for %d pullspecs", len(reports), len(pullspecs))
	}
	for _, key := range []string{"release", "pullspec", "digest", "arch", "streams"} {
		if _, ok := reports[0][key]; !ok {
			t.Errorf("report has no %q", key)
		}
	}
	stream := reports[4]["streams"].([]any)[0].(map[string]any)
	for _, key := range []string{"stream", "os_tag", "os_image", "rhcos_version", "dtk_image", "kernel", "kernel_full", "rt_kernel", "rhel_version", "kernel_source", "consistent", "warnings"} {
		if _, ok := stream[key]; !ok && key != "warnings" {
			t.Errorf("stream has no %q: %v", key, stream)
		}
	}
	if stream["kernel"] != "5.14.0-427.37.1.el9_4" || stream["kernel_full"] != "5.14.0-427.37.1.el9_4.x86_64" || stream["consistent"] != true {
		t.Errorf("4.16.15 stream %v", stream)
	}
}

func TestReleaseInfoTableAndFailures(t *testing.T) {
	srv := registrytest.New().Server()
	defer srv.Close()
	w := payloadtest.New(srv.Registry, srv.Host())
	good := w.Release(payloadtest.Eras()[4]).TagPullspec
	missing := srv.Host() + "/openshift-release-dev/ocp-release:4.16.99-x86_64"
	code, stdout, stderr := runCLI(t, "release-info", "--tls-verify=false", "--registries-conf=/dev/null", good, missing)
	if code != exitFailed {
		t.Fatalf("exit %d, want %d", code, exitFailed)
	}
	if !strings.Contains(stdout, "4.16.15") || !strings.Contains(stdout, "5.14.0-427.37.1.el9_4.x86_64") {
		t.Errorf("table:\n%s", stdout)
	}
	if !strings.Contains(stderr, missing) || !strings.Contains(stderr, "1 of 2 releases could not be read") {
		t.Errorf("stderr:\n%s", stderr)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{}, {"frobnicate"}, {"release-info"}, {"release-info", "x", "-o", "yaml"}, {"release-info", "--config", "/nonexistent.yaml", "x"}} {
		if code, _, _ := runCLI(t, args...); code != exitUsage {
			t.Errorf("%q: exit %d, want %d", args, code, exitUsage)
		}
	}
	if code, out, _ := runCLI(t, "version"); code != exitOK || !strings.HasPrefix(out, "dtkbot ") {
		t.Errorf("version: %d %q", code, out)
	}
}
