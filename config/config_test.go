package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestExampleConfigLoads(t *testing.T) {
	cfg, err := Load("../config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Schedule != "@every 30m" || cfg.Registry.Timeout.Duration != 2*time.Minute || len(cfg.Graph.Channels) != 2 {
		t.Errorf("unexpected values: %+v", cfg)
	}
	if cfg.StatePath() != filepath.Join("..", "dtkbot.db") {
		t.Errorf("state path %q", cfg.StatePath())
	}
}

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestUnknownKeyIsAnErrorWithItsLine(t *testing.T) {
	p := writeConfig(t, "graph:\n  channels: [stable-4.16]\n  chanels: [stable-4.17]\n")
	_, err := Load(p)
	if err == nil || !strings.Contains(err.Error(), "line 3") || !strings.Contains(err.Error(), "chanels") {
		t.Fatalf("error %v", err)
	}
}

func TestValidateListsEveryProblemWithItsLine(t *testing.T) {
	p := writeConfig(t, `schedule: "@every 30m"
graph:
  url: ftp://example.com
  channels: [stable-4.16, nightly]
  arches: [amd64, sparc]
registry:
  concurrency: 0
  timeout: 10 parsecs
`)
	_, err := Load(p)
	if err == nil || !strings.Contains(err.Error(), "line 8") || !strings.Contains(err.Error(), "not a duration") {
		t.Fatalf("a bad duration: %v", err)
	}
	p = writeConfig(t, `graph:
  url: ftp://example.com
  channels: [stable-4.16, nightly]
  arches: [amd64, sparc]
registry:
  concurrency: 0
target:
  repository: quay.io/acme/dtk:latest
releases: ["not a pullspec!"]
`)
	_, err = Load(p)
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		"line 2: graph.url", "line 3: graph.channels[1]", "line 4: graph.arches[1]",
		"line 6: registry.concurrency", "line 8: target.repository", "line 9: releases[0]",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %q:\n%v", want, err)
		}
	}
}

func TestEmptyFileNeedsSomethingToWatch(t *testing.T) {
	_, err := Load(writeConfig(t, ""))
	if err == nil || !strings.Contains(err.Error(), "nothing to watch") {
		t.Fatalf("error %v", err)
	}
	cfg, err := Load(writeConfig(t, "releases: [quay.io/openshift-release-dev/ocp-release:4.16.15-x86_64]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Graph.URL == "" || cfg.Registry.Attempts != 4 {
		t.Errorf("defaults not applied: %+v", cfg)
	}
}

// TestPublicKeysLeftOutMeansRedHatsKey: left out, the default trust;
// an explicit empty list, no OpenPGP trust (which strict mode refuses).
func TestPublicKeysLeftOutMeansRedHatsKey(t *testing.T) {
	base := "releases: [quay.io/openshift-release-dev/ocp-release:4.16.15-x86_64]\n"
	cfg, err := Load(writeConfig(t, base+"verify: {mode: strict}\n"))
	if err != nil || cfg.Verify.PublicKeys != nil {
		t.Fatalf("left out: %v, keys %#v", err, cfg.Verify.PublicKeys)
	}
	cfg, err = Load(writeConfig(t, base+"verify: {mode: warn, public_keys: []}\n"))
	if err != nil || cfg.Verify.PublicKeys == nil || len(cfg.Verify.PublicKeys) != 0 {
		t.Fatalf("empty: %v, keys %#v", err, cfg.Verify.PublicKeys)
	}
	if _, err := Load(writeConfig(t, base+"verify: {mode: strict, public_keys: []}\n")); err == nil || !strings.Contains(err.Error(), "line 2: verify.public_keys") {
		t.Errorf("strict with no trust: %v", err)
	}
}

func TestStagingAndAuditAreChecked(t *testing.T) {
	base := "releases: [quay.io/openshift-release-dev/ocp-release:4.16.15-x86_64]\ntarget:\n  repository: quay.io/acme/dtk\n"
	cfg, err := Load(writeConfig(t, base))
	if err != nil || cfg.Target.Staging.Tag != "staging-{{.KernelFull}}" || cfg.Target.Audit.Interval.Duration != 24*time.Hour || cfg.Target.Audit.OnDrift != "repoint" {
		t.Fatalf("defaults: %v %+v", err, cfg.Target)
	}
	_, err = Load(writeConfig(t, base+"  staging: {tag: \"{{.KernelFull}}\"}\n  audit: {interval: 1h, on_drift: ignore}\n"))
	for _, want := range []string{"target.staging.tag", "visible before it is verified", "target.audit.on_drift"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %q: %v", want, err)
		}
	}
	// Another repository makes the same tag safe.
	if _, err := Load(writeConfig(t, base+"  staging: {repository: quay.io/acme/dtk-staging, tag: \"{{.KernelFull}}\"}\n")); err != nil {
		t.Errorf("a staging repository: %v", err)
	}
}

// TestSignatureStoreIsAURLOrADirectory: verify.signature_store takes an
// http(s) URL, a directory (relative to the config file) or a file:// URL
// of one; anything else is an error on its line, as are the new durations.
func TestSignatureStoreIsAURLOrADirectory(t *testing.T) {
	base := "releases: [quay.io/openshift-release-dev/ocp-release:4.16.15-x86_64]\n"
	cfg, err := Load(writeConfig(t, base))
	if err != nil || cfg.Verify.Timeout.Duration != 10*time.Second || cfg.Verify.Recheck.Duration != 6*time.Hour {
		t.Fatalf("defaults: %v %+v", err, cfg.Verify)
	}
	p := writeConfig(t, base)
	dir := filepath.Join(filepath.Dir(p), "signatures")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, store := range []string{"signatures", dir, "file://" + dir, "https://mirror.example.com/signatures"} {
		_ = os.WriteFile(p, []byte(base+"verify:\n  signature_store: "+store+"\n"), 0o600)
		cfg, err := Load(p)
		if err != nil {
			t.Errorf("%s: %v", store, err)
			continue
		}
		if got := cfg.SignatureStore(); !strings.HasPrefix(store, "https://") && got != dir && got != "file://"+dir {
			t.Errorf("%s resolves to %s", store, got)
		}
	}
	_ = os.WriteFile(filepath.Join(dir, "file"), nil, 0o600)
	for store, want := range map[string]string{
		"missing":                "line 4: verify.signature_store: stat",
		"signatures/file":        "is not a directory",
		"ftp://mirror.example/x": "is not an http(s) URL, a file:// URL or a directory",
		"file:///nonexistent":    "no such file",
	} {
		_ = os.WriteFile(p, []byte(base+"verify:\n  mode: strict\n  signature_store: "+store+"\n"), 0o600)
		if _, err := Load(p); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", store, err, want)
		}
	}
	_ = os.WriteFile(p, []byte(base+"verify:\n  timeout: 0s\n  recheck: -1h\n"), 0o600)
	_, err = Load(p)
	for _, want := range []string{"line 3: verify.timeout: must be positive", "line 4: verify.recheck: must not be negative"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %q: %v", want, err)
		}
	}
}

// TestEveryProblemAtOnceWithKeysAndSuggestions: unknown keys and values of
// the wrong type are reported among the other problems, each with its key
// path and line, an unknown key with the known one it is closest to; an
// address that run would refuse is refused here.
func TestEveryProblemAtOnceWithKeysAndSuggestions(t *testing.T) {
	p := writeConfig(t, `schedul: "@every 1h"
listen: 18099
graph:
  channels: [stable-4.16]
  chanels: [stable-4.17]
registry:
  concurrency: three
  timout: 1m
  tls_verify: maybe
  timeout: 10 parsecs
target:
  repository: quay.io/acme/dtk:latest
consumers:
  - name: simple-kmod
    biuld: {backend: podman}
    verify: {abi: sometimes}
github:
  api_url: ftp://github.example.com
  frobnicate: 1
`)
	_, err := Load(p)
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	for _, want := range []string{
		"line 1: schedul: unknown key (did you mean schedule?)",
		`line 2: listen: "18099" is not host:port (":18099" listens on every address)`,
		"line 5: graph.chanels: unknown key (did you mean channels?)",
		`line 7: registry.concurrency: want a whole number, got "three"`,
		"line 8: registry.timout: unknown key (did you mean timeout?)",
		`line 9: registry.tls_verify: want true or false, got "maybe"`,
		`line 10: registry.timeout: "10 parsecs" is not a duration (30s, 2m, 1h)`,
		"line 12: target.repository",
		"line 15: consumers[0].biuld: unknown key (did you mean build?)",
		`line 16: consumers[0].verify.abi: want true or false, got "sometimes"`,
		`line 18: github.api_url: "ftp://github.example.com" is not an http(s) URL`,
		"line 19: github.frobnicate: unknown key",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("the problems do not say %q:\n%s", want, msg)
		}
	}
	// In the order of the file.
	if strings.Index(msg, "line 2:") > strings.Index(msg, "line 19:") {
		t.Errorf("not in the file's order:\n%s", msg)
	}
	for _, never := range []string{"config.Config", "!!str", "field schedul not found"} {
		if strings.Contains(msg, never) {
			t.Errorf("the problems say %q, a Go or YAML internal:\n%s", never, msg)
		}
	}
	for addr, ok := range map[string]bool{":8080": true, "127.0.0.1:18099": true, "[::1]:80": true, ":http": true, "18099": false,
		"localhost": false, ":99999": false, ":nosuchservice": false} {
		if err := checkListen(addr); (err == nil) != ok {
			t.Errorf("listen %q: %v", addr, err)
		}
	}
}

// TestDefaultReleaseTagsNameTheArchWithTwoArches: a default is never
// invalid: with two arches read, the default release tag names the arch;
// a release tag written in the file is the user's, and checked.
func TestDefaultReleaseTagsNameTheArchWithTwoArches(t *testing.T) {
	base := "graph:\n  channels: [stable-4.16]\n  arches: [amd64, arm64]\ntarget:\n  repository: quay.io/acme/dtk\n"
	cfg, err := Load(writeConfig(t, base))
	if err != nil {
		t.Fatalf("two arches and the default tags: %v", err)
	}
	if got := cfg.Target.ReleaseTags; len(got) != 1 || got[0] != "{{.Release}}{{.StreamSuffix}}-{{.Arch}}" {
		t.Errorf("release tags %v", got)
	}
	if _, err := Load(writeConfig(t, base+"  release_tags: [\"{{.Release}}\"]\n")); err == nil || !strings.Contains(err.Error(), "does not name the arch") {
		t.Errorf("a release tag written without the arch: %v", err)
	}
	cfg, err = Load(writeConfig(t, "graph:\n  channels: [stable-4.16]\n"))
	if err != nil || cfg.Target.ReleaseTags[0] != DefaultReleaseTag {
		t.Errorf("one arch: %v %v", err, cfg)
	}
}
