package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestConsumerDefaults(t *testing.T) {
	p := writeConfig(t, `graph: {channels: [stable-4.19]}
target: {repository: quay.io/acme/dtk}
consumers:
- name: acme-nic
  target: {repository: quay.io/acme/acme-nic-kmod}
  kmm: {module_name: acme_nic, namespace: acme}
`)
	cfg, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	k := cfg.Consumers[0]
	if k.Build.Backend != "none" || k.Build.Timeout.Duration != 2*time.Hour || k.Build.MaxAttempts != 3 || k.Build.Backoff.Duration != 15*time.Minute ||
		k.Build.Podman.Containerfile != DefaultKmodContainerfile || k.Build.GitHubActions.Workflow != "build-kmod.yml" ||
		k.Target.KernelTag != "{{.KernelFull}}" || k.Target.Staging.Tag == "" || k.Verify.ModulePath != "opt/lib/modules/{{.KernelFull}}/" {
		t.Fatalf("defaults: %+v", k)
	}
	if tgt := k.Target; tgt.Repository != "quay.io/acme/acme-nic-kmod" || tgt.KernelTag != "{{.KernelFull}}" {
		t.Fatalf("target %+v", tgt)
	}
}

func TestConsumerMistakesAreNamed(t *testing.T) {
	p := writeConfig(t, `graph: {channels: [stable-4.19]}
target: {repository: quay.io/acme/dtk}
consumers:
- name: Acme_NIC
  target: {repository: quay.io/acme/dtk, kernel_tag: "{{.Kernal}}"}
  build: {backend: podman, podman: {containerfile: nowhere/Containerfile, base_image: ubi9}}
  verify: {module_path: /opt/lib/modules/}
  kmm: {module_name: "acme nic", namespace: Acme}
- name: twice
  target: {repository: quay.io/acme/twice}
  build: {backend: webhook, webhook: {url: "ftp://ci"}}
- name: twice
  target: {repository: "quay.io/acme/kmod:latest"}
`)
	_, err := Load(p)
	if err == nil {
		t.Fatal("loaded")
	}
	for _, want := range []string{
		"consumers[0].name", "consumers[0].target.repository: \"quay.io/acme/dtk\" is also target.repository",
		"consumers[0].target.kernel_tag", "consumers[0].build.podman.containerfile", "consumers[0].build.podman: base_image",
		"consumers[0].verify.module_path", "without the leading /", "consumers[0].kmm.module_name",
		"consumers[0].kmm.namespace", "consumers[1].build.webhook.url", "consumers[1].build.webhook.secret_file",
		"consumers[2].name: \"twice\" names two consumers", "consumers[2].target.repository",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if !strings.Contains(err.Error(), "line 5: consumers[0].target.repository") {
		t.Errorf("no line for the repository:\n%v", err)
	}
	p = writeConfig(t, "graph: {channels: [stable-4.19]}\ntarget: {repository: quay.io/a/dtk}\nconsumers:\n- name: a\n  target: {repository: quay.io/a/b}\n  verify: {module_path: opt/lib/modules/}\n")
	if _, err := Load(p); err == nil || !strings.Contains(err.Error(), "does not name the kernel") {
		t.Fatalf("a module path for any kernel: %v", err)
	}
	// An unknown key inside a consumer is an error too.
	p = writeConfig(t, "graph: {channels: [stable-4.19]}\nconsumers:\n- name: a\n  modul_path: x\n")
	if _, err := Load(p); err == nil || !strings.Contains(err.Error(), "modul_path") {
		t.Fatalf("unknown key: %v", err)
	}
	// Consumers need a DTK to build FROM.
	p = writeConfig(t, "graph: {channels: [stable-4.19]}\nconsumers:\n- name: a\n  target: {repository: quay.io/a/b}\n")
	if _, err := Load(p); err == nil || !strings.Contains(err.Error(), "set target.repository") {
		t.Fatalf("no DTK target: %v", err)
	}
}

func TestKMMPathsAreChecked(t *testing.T) {
	p := writeConfig(t, `graph: {channels: [stable-4.19]}
github:
  repository: acme/ci
  token_file: token
  pull_request:
    path: kernels.yaml
    kmm: {preflight_path: "kmm/{{.Kernal}}.yaml", mappings_path: kmm/mappings.yaml}
`)
	_ = writeFileNextTo(t, p, "token", "t")
	_, err := Load(p)
	if err == nil || !strings.Contains(err.Error(), "github.pull_request.kmm.preflight_path") || !strings.Contains(err.Error(), "does not name the kernel") {
		t.Fatalf("err %v", err)
	}
	p = writeConfig(t, "graph: {channels: [stable-4.19]}\ngithub:\n  repository: acme/ci\n  token_file: token\n  pull_request:\n    path: kernels.yaml\n    kmm: {}\n")
	_ = writeFileNextTo(t, p, "token", "t")
	cfg, err := Load(p)
	if err != nil || cfg.GitHub.PullRequest.KMM == nil {
		t.Fatalf("kmm: {} takes the defaults: %v", err)
	}
}

// writeFileNextTo writes name beside the config file at cfgPath.
func writeFileNextTo(t *testing.T, cfgPath, name, content string) string {
	t.Helper()
	p := filepath.Join(filepath.Dir(cfgPath), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSigningCertsAreReadAtLoad: verify.signing_certs are read and parsed
// when the config loads (relative to the config file), each error naming
// the key and the file; verify.abi defaults to true.
func TestSigningCertsAreReadAtLoad(t *testing.T) {
	pem, err := os.ReadFile("../kmod/testdata/certs/trusted.pem")
	if err != nil {
		t.Fatal(err)
	}
	der, err := os.ReadFile("../kmod/testdata/certs/trusted.der")
	if err != nil {
		t.Fatal(err)
	}
	cfgText := "graph: {channels: [stable-4.19]}\ntarget: {repository: quay.io/a/dtk}\nconsumers:\n- name: a\n  target: {repository: quay.io/a/b}\n  verify: {signing_certs: [%s]}\n"
	p := writeConfig(t, strings.Replace(cfgText, "%s", "sb.pem, sb.der", 1))
	dir := filepath.Dir(p)
	_ = os.WriteFile(filepath.Join(dir, "sb.pem"), pem, 0o600)
	_ = os.WriteFile(filepath.Join(dir, "sb.der"), der, 0o600)
	cfg, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if v := cfg.Consumers[0].Verify; len(v.Certs) != 2 || !v.RequireABI() || !strings.Contains(v.Certs[0].Subject.String(), "dtkbot test signing key (trusted)") {
		t.Fatalf("verify: %+v", v)
	}
	_ = os.WriteFile(filepath.Join(dir, "bad.pem"), []byte("not a certificate"), 0o600)
	p2 := filepath.Join(dir, "bad.yaml")
	_ = os.WriteFile(p2, []byte(strings.Replace(cfgText, "%s", "sb.pem, bad.pem, missing.pem", 1)), 0o600)
	_, err = Load(p2)
	for _, want := range []string{"consumers[0].verify.signing_certs[1]", "bad.pem", "consumers[0].verify.signing_certs[2]", "missing.pem"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("the error %v lacks %q", err, want)
		}
	}
	if err != nil && strings.Contains(err.Error(), "signing_certs[0]") {
		t.Errorf("a good certificate named: %v", err)
	}
	p3 := filepath.Join(dir, "noabi.yaml")
	_ = os.WriteFile(p3, []byte(strings.Replace(cfgText, "{signing_certs: [%s]}", "{abi: false}", 1)), 0o600)
	if cfg, err := Load(p3); err != nil || cfg.Consumers[0].Verify.RequireABI() {
		t.Errorf("abi: false: %v", err)
	}
}

// TestConsumerVariantsAreChecked: a consumer's kernel variants default to
// the default kernel's; an unknown one, one named twice, one for an arch no
// payload read has, and a tag template that would give two variants' images
// one tag are each named with their key.
func TestConsumerVariantsAreChecked(t *testing.T) {
	head := "graph: {channels: [stable-4.16], arches: [ARCHES]}\ntarget: {repository: quay.io/acme/dtk}\nconsumers:\n- name: acme-nic\n  target: {repository: quay.io/acme/nic, release_tags: [TAGS]}\n"
	load := func(arches, tags, variants string) (*Config, error) {
		s := strings.NewReplacer("ARCHES", arches, "TAGS", tags).Replace(head)
		if variants != "" {
			s += "  variants: " + variants + "\n"
		}
		return Load(writeConfig(t, s))
	}
	cfg, err := load("amd64", `"{{.Release}}"`, "")
	if err != nil {
		t.Fatal(err)
	}
	if v := cfg.Consumers[0].Variants; len(v) != 1 || v[0] != "default" || len(cfg.ConsumerVariants()["acme-nic"]) != 1 || cfg.ConsumerVariants()["acme-nic"][0] != "" {
		t.Fatalf("default variants %v, %v", v, cfg.ConsumerVariants())
	}
	cfg, err = load("amd64, arm64", `"{{.Release}}-{{.Arch}}{{.VariantSuffix}}"`, "[default, rt, 64k]")
	if err != nil {
		t.Fatalf("every variant, tags naming it: %v", err)
	}
	if got := cfg.ConsumerVariants()["acme-nic"]; strings.Join(got, ",") != ",rt,64k" {
		t.Errorf("variants as the ledger spells them: %q", got)
	}
	for _, tc := range []struct{ arches, tags, variants, want string }{
		{"amd64", `"{{.Release}}{{.VariantSuffix}}"`, "[default, realtime]", `consumers[0].variants[1]: "realtime" is not a kernel variant: one of default, rt, 64k`},
		{"amd64", `"{{.Release}}{{.VariantSuffix}}"`, "[rt, rt]", `consumers[0].variants[1]: "rt" is named twice`},
		{"amd64", `"{{.Release}}{{.VariantSuffix}}"`, "[default, 64k]", "consumers[0].variants[1]: 64k kernels exist for arm64 only, and dtkbot reads no arm64 payload"},
		{"arm64", `"{{.Release}}{{.VariantSuffix}}"`, "[rt]", "consumers[0].variants[0]: rt kernels exist for amd64 only"},
		{"amd64", `"{{.Release}}"`, "[default, rt]", `consumers[0].target.release_tags[0]: "{{.Release}}" does not name the kernel variant`},
	} {
		if _, err := load(tc.arches, tc.tags, tc.variants); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s %s: want %q in: %v", tc.arches, tc.variants, tc.want, err)
		}
	}
}
