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
