package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/dtkbot/dtkbot/internal/kubeapi"
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

func TestDemoRuns(t *testing.T) {
	code, stdout, stderr := runCLI(t, "demo")
	if code != exitOK {
		t.Fatalf("demo exit %d: %s", code, stderr)
	}
	for _, want := range []string{"DEMO:", "4.22.0", "rhel-10", "6.12.0-55.9.1.el10_1.x86_64", "requested", "4.22.0-rhel-10", "inconsistent payload",
		"0 newly inspected", "that pass made 0 registry requests", "issue #1 [closed] New kernel", "pull request #",
		"4.16.15  verified by OpenPGP key", "4.16.19  unverified: no signature", "4.16.20  content:", "appears twice with different images",
		"1 held", "dtkbot-demo-coverage.html", "9 of 9 releases", "4.23.0-ec.1",
		// The consumer: built FROM each promoted DTK, verified, promoted; its KMM manifests.
		"build simple-kmod", "verify simple-kmod", "promote simple-kmod", "demo/simple-kmod:5.14.0-427.37.1.el9_4.x86_64",
		"kind: PreflightValidationOCP", "kernelVersion: 5.14.0-427.40.1.el9_4.x86_64", "kind: Module", "moduleName: dtkbot_user",
		"literal: 6.12.0-55.9.1.el10_1.x86_64", "kmm/rhel-9-amd64/5.14.0-427.37.1.el9_4.x86_64/kernel-mappings.yaml",
		// Verified means it loads: a CRC mismatch rejected with the symbols named, and ABI verdicts.
		"rejected, never promoted: simple-kmod's image for 5.14.0-427.50.1.el9_4.x86_64",
		"dtkbot_hello.ko: vermagic", "6 symbol versions differ from kernel 5.14.0-427.50.1.el9_4.x86_64's (disagrees about version of symbol mutex_lock",
		"on 5.14.0-427.40.1.el9_4.x86_64: simple-kmod: the modules for 5.14.0-427.37.1.el9_4.x86_64 would not load: 6 symbol versions changed (kmalloc_caches",
		"would load (every symbol version matches)",
		// What a cluster whose update service is dtkbot is offered: one
		// update ready, one waiting for a rejected kmod image.
		"DEMO 4/4: a cluster at 4.16.16", `oc patch clusterversion version --type merge -p '{"spec":{"upstream":"http://127.0.0.1:`,
		"Recommended updates:", "    4.16.17     127.0.0.1:", "Updates with known issues:", "Version: 4.16.19",
		"Reason: KernelModuleNotReady_simple_kmod_5_14_0_427_50_1_el9_4_x86_64",
		"Message: No verified simple-kmod image for kernel 5.14.0-427.50.1.el9_4.x86_64 (rhel-9) yet: rejected: its modules would not load",
		"/acme/driver-ci/issues/", "oc adm upgrade --to=4.16.19 --allow-not-recommended"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("demo output lacks %q:\n%s", want, stdout)
		}
	}
	// build.backend kubernetes, where the API server's binaries are (CI:
	// DTKBOT_REQUIRE_TOOLS=1, and the demo fails without them).
	kube := []string{"build.backend kubernetes is not shown", "make kube-assets"}
	if _, err := kubeapi.Assets(); err == nil {
		kube = []string{"DEMO +1: build.backend kubernetes", "kubectl get jobs -n dtkbot-demo",
			"dtk-5-14-0-427-37-1-el9-4-x86-64-a1-", "Complete  kind=dtk kernel=5.14.0-427.50.1.el9_4.x86_64 arch=amd64 builds=1",
			"demo/driver-toolkit-kube: [4.16.15 4.16.16 4.16.17 4.16.19 5.14.0-427.37.1.el9_4.x86_64"}
	}
	for _, want := range kube {
		if !strings.Contains(stdout, want) {
			t.Errorf("demo output lacks %q:\n%s", want, stdout)
		}
	}
}
