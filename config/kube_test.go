package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestKubernetesBackend(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "Containerfile"), []byte("FROM x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	head := "graph:\n  channels: [stable-4.18]\ntarget:\n  repository: quay.io/acme/driver-toolkit\n"
	write := func(body string) string {
		p := filepath.Join(dir, "config.yaml")
		if err := os.WriteFile(p, []byte(head+body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Run("a good one", func(t *testing.T) {
		cfg, err := Load(write(`build:
  backend: kubernetes
  kubernetes:
    namespace: dtkbot
    push_secret: dtkbot-build-push
    rhsm_secret: dtkbot-build-rhsm
    containerfile: Containerfile
    context: .
    resources:
      requests: {cpu: 500m, memory: 1Gi}
    ttl_seconds_after_finished: 86400
    security: user-namespace
    qps: 50
    burst: 100
consumers:
  - name: acme-nic
    target: {repository: quay.io/acme/acme-nic}
    build:
      backend: kubernetes
      kubernetes:
        containerfile: Containerfile
`))
		if err != nil {
			t.Fatal(err)
		}
		k := cfg.Build.Kubernetes
		if k.Resources.Requests["cpu"] != "500m" || k.Resources.Limits != nil || k.Security != "user-namespace" {
			t.Errorf("build.kubernetes %+v", k)
		}
		cf, ctx, base, _ := cfg.Build.KubeRecipe()
		if cf != "Containerfile" || ctx != "." || !strings.Contains(base, "ubi{{.RHELMajor}}") {
			t.Errorf("recipe %s %s %s", cf, ctx, base)
		}
		if _, ctx, _, _ := cfg.Consumers[0].Build.KubeRecipe(); ctx != DefaultKmodContext {
			t.Errorf("a consumer's context %q, want podman's default %q", ctx, DefaultKmodContext)
		}
		if k.QPS != 50 || k.Burst != 100 {
			t.Errorf("qps %v, burst %d", k.QPS, k.Burst)
		}
		if k := cfg.Consumers[0].Build.Kubernetes; k.Resources.Requests["cpu"] != "500m" || k.Namespace != "dtkbot" ||
			k.PushSecret != "dtkbot-build-push" || k.RHSMSecret != "" || k.Security != "user-namespace" || k.QPS != 50 || k.Burst != 100 {
			t.Errorf("a consumer takes build.kubernetes's cluster settings (never its RHSM secret): %+v", k)
		}
	})
	t.Run("every mistake with its line", func(t *testing.T) {
		_, err := Load(write(`build:
  backend: kubernetes
  kubernetes:
    namespace: Not_A_Namespace
    kubeconfig: nowhere/kubeconfig
    rhsm_secret: "secret with spaces"
    containerfile: missing/Containerfile
    resources:
      limits: {memory: lots}
    ttl_seconds_after_finished: 60
    security: root
    storage_driver: btrfs
    qps: -1
    burst: -5
consumers:
  - name: acme-nic
    target: {repository: quay.io/acme/acme-nic}
    build:
      backend: kubernetes
      kubernetes:
        push_secret: dtkbot-build-push
        rhsm_secret: dtkbot-build-rhsm
`))
		if err == nil {
			t.Fatal("no error")
		}
		for _, want := range []string{
			"line 8: build.kubernetes.namespace", "line 9: build.kubernetes.kubeconfig", "line 10: build.kubernetes.rhsm_secret",
			"line 11: build.kubernetes.containerfile", "line 13: build.kubernetes.resources.limits.memory", "build.kubernetes.push_secret",
			"line 14: build.kubernetes.ttl_seconds_after_finished", "line 15: build.kubernetes.security", "line 16: build.kubernetes.storage_driver",
			"line 17: build.kubernetes.qps", "line 18: build.kubernetes.burst", "line 26: consumers[0].build.kubernetes.rhsm_secret",
		} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("the error lacks %q:\n%v", want, err)
			}
		}
	})
}
