package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/dtkbot/dtkbot/internal/demo"
	"github.com/dtkbot/dtkbot/internal/kubeapi"
)

// TestDemoRuns runs the demo (internal/demo, `make demo`) with this test
// binary as its dtkbot, and checks the story it tells (every line within
// 100 columns, no log line, the expected rejection said once and said to
// be expected) and the files it names.
func TestDemoRuns(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	code := demo.Run(context.Background(), demo.Options{Stdout: &out, Dir: dir, Dtkbot: dtkbotCommand})
	story := out.String()
	if code != 0 {
		t.Fatalf("demo exit %d:\n%s\nlog:\n%s", code, story, mustRead(t, filepath.Join(dir, "dtkbot.log")))
	}
	longest := 0
	for i, line := range strings.Split(story, "\n") {
		if n := utf8.RuneCountInString(line); n > demo.Width {
			t.Errorf("story line %d is %d columns, over %d:\n%s", i+1, n, demo.Width, line)
		} else if n > longest {
			longest = n
		}
		if strings.HasPrefix(strings.TrimSpace(line), `{"level"`) {
			t.Errorf("story line %d is a log line: %s", i+1, line)
		}
	}
	t.Logf("the story: %d lines, the longest %d columns:\n%s", strings.Count(story, "\n"), longest, story)
	// The story unwrapped, to find what a wrap split.
	flat := strings.Join(strings.Fields(story), " ")
	file := func(name string) string {
		t.Helper()
		if !strings.Contains(story, name) {
			t.Errorf("the story does not name %s", name)
		}
		return mustRead(t, filepath.Join(dir, name))
	}
	for _, want := range []string{"4.22.0", "rhel-10", "6.12.0-55.9.1.el10_1.x86_64", "4.22.0-rhel-10", "inconsistent payload",
		"0 newly inspected", "that pass made 0 registry requests", "issue #1 [closed] New kernel", "pull request #",
		"4.16.15 verified by OpenPGP key", "4.16.19 unverified: no signature", "4.16.20 content:", "appears twice with different images",
		"1 held", "coverage.html", "10 of 10 releases", "4.23.0-ec.1",
		// A GA release whose kernel a candidate shipped: its images were ready before it.
		"4.23.0 rhel-9: kernel 5.14.0-611.5.1.el9_7.x86_64 first seen", "ahead, DTK promoted", "no build",
		// The consumer: built FROM each promoted DTK, verified, promoted; its KMM manifests.
		"build simple-kmod", "verify simple-kmod", "promote simple-kmod", "demo/simple-kmod", "5.14.0-427.37.1.el9_4.x86_64",
		"kmm/rhel-9-amd64/5.14.0-427.37.1.el9_4.x86_64/kernel-mappings.yaml",
		// The RT variant: an image of its own per kernel, for its own uname -r.
		"simple-kmod asks for variants [default, rt]:", "5.14.0-427.37.1.el9_4.x86_64_rt",
		"booting 5.14.0-427.37.1.el9_4.x86_64+rt", "KERNEL_VARIANT=rt", "simple-kmod (rt): the modules for",
		"8 of 10 streams covered",
		// Verified means it loads: a CRC mismatch rejected with the symbols named, and ABI verdicts.
		"EXPECTED: simple-kmod's image for 5.14.0-427.50.1.el9_4.x86_64 was rejected and never promoted",
		"dtkbot_hello.ko: vermagic", "6 symbol versions differ from kernel 5.14.0-427.50.1.el9_4.x86_64's (disagrees about version of symbol mutex_lock",
		"on 5.14.0-427.40.1.el9_4.x86_64: simple-kmod: the modules for 5.14.0-427.37.1.el9_4.x86_64 would not load: 6 symbol versions changed (kmalloc_caches",
		"would load (every symbol version matches)",
		// What a cluster whose update service is dtkbot is offered: one
		// update ready, one waiting for a rejected kmod image.
		"6/6 A cluster at 4.16.16", `oc patch clusterversion version --type merge -p '{"spec":{"upstream":"http://127.0.0.1:`,
		"Recommended updates:", "4.16.17 127.0.0.1:", "Updates with known issues:", "Version: 4.16.19",
		"Reason: KernelModuleNotReady_simple_kmod_5_14_0_427_50_1_el9_4_x86_64",
		"Message: No verified simple-kmod image for kernel 5.14.0-427.50.1.el9_4.x86_64 (rhel-9) yet:",
		"oc adm upgrade --to=4.16.19 --allow-not-recommended"} {
		if !strings.Contains(flat, want) {
			t.Errorf("the story lacks %q:\n%s", want, story)
		}
	}
	// The expected rejection is told once, in the kmod verdicts (the
	// cluster's view names the risk it makes, not the verdict again).
	if n := strings.Count(flat, "dtkbot_hello.ko: vermagic"); n != 1 {
		t.Errorf("the rejection's verdict is told %d times, want once:\n%s", n, story)
	}
	// The details are in the files the story names.
	for name, wants := range map[string][]string{
		"release-info.json": {`"kernel_full": "6.12.0-55.9.1.el10_1.x86_64"`, `"stream": "rhel-10"`},
		"pass-1.txt":        {"ACTION", "requested", "build simple-kmod", "verify simple-kmod", "promote simple-kmod", "demo/simple-kmod:5.14.0-427.37.1.el9_4.x86_64"},
		"pass-2.txt":        {"0 newly inspected"},
		"report.txt":        {"RELEASE", "10 of 10 releases"},
		"pass-3.txt":        {"1 newly inspected"},
		"kmm.yaml": {"kind: PreflightValidationOCP", "kernelVersion: 5.14.0-427.40.1.el9_4.x86_64", "kind: Module", "moduleName: dtkbot_user",
			"literal: 6.12.0-55.9.1.el10_1.x86_64"},
		"dtkbot.log":    {`"level":"error"`, "$ dtkbot reconcile --config config.yaml"},
		"coverage.html": {"<svg", "4.16.19"},
		"oc-adm-upgrade.txt": {"Message: No verified simple-kmod image for kernel 5.14.0-427.50.1.el9_4.x86_64 (rhel-9) yet: rejected: its modules would not load",
			"/acme/driver-ci/issues/"},
	} {
		text := file(name)
		for _, want := range wants {
			if !strings.Contains(text, want) {
				t.Errorf("%s lacks %q", name, want)
			}
		}
	}
	// build.backend kubernetes, where the API server's binaries are (CI:
	// DTKBOT_REQUIRE_TOOLS=1, and the demo fails without them).
	kube := []string{"build.backend kubernetes is not shown", "make kube-assets"}
	if _, err := kubeapi.Assets(); err == nil {
		kube = []string{"+1 build.backend kubernetes", "--kubeconfig kubeconfig -n dtkbot-demo", "kubectl get jobs -n dtkbot-demo",
			"dtk-5-14-0-427-37-1-el9-4-x86-64-a1-", "dtk-5-14-0-427-50-1-el9-4-x86-64-a1-", "Complete builds=1 (dtk)",
			"demo/driver-toolkit-kube: [4.16.15 4.16.16 4.16.17 4.16.19 5.14.0-427.37.1.el9_4.x86_64"}
	}
	for _, want := range kube {
		if !strings.Contains(flat, want) {
			t.Errorf("the story lacks %q:\n%s", want, story)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "kube-pass-2.txt")); err != nil && len(kube) > 2 {
		t.Errorf("the kubernetes passes' output: %v", err)
	}
}
