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
