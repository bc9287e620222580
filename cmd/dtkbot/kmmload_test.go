package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dtkbot/dtkbot/internal/citest"
)

// TestConsumerImageWithoutTheModuleKMMLoadsIsRejected: the Module dtkbot
// serves for a consumer loads consumers[].kmm.module_name; a kmod image
// that does not hold that module (here, one holding dtkbot_hello and
// dtkbot_user, both loading fine) would fail `modprobe simple-kmod` on
// every node: it is rejected, naming the modules it holds, and never
// tagged.
func TestConsumerImageWithoutTheModuleKMMLoadsIsRejected(t *testing.T) {
	ci := &citest.CI{Secret: []byte("hook")}
	hook := httptest.NewServer(http.HandlerFunc(ci.Webhook))
	defer hook.Close()
	secret := filepath.Join(t.TempDir(), "hook")
	_ = os.WriteFile(secret, []byte("hook"), 0o600)
	config := func(module string) string {
		return fmt.Sprintf(`build:
  backend: webhook
  max_attempts: 1
  webhook: {url: %s, secret_file: %s}
consumers:
  - name: simple-kmod
    build:
      backend: webhook
      max_attempts: 1
      webhook: {url: %s, secret_file: %s}
    target:
      repository: REGISTRY/dtkbot/simple-kmod
    kmm: {module_name: %s}
`, hook.URL, secret, hook.URL, secret, module)
	}
	cw := newCLIWorld(t, config("simple-kmod"))
	cfg := strings.Replace(mustRead(t, cw.config), "REGISTRY/", cw.srv.Host()+"/", 1)
	if err := os.WriteFile(cw.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	ci.SetWorld(cw.world)
	statePath := filepath.Join(filepath.Dir(cw.config), "dtkbot.db")
	consumer := func() (string, string) {
		t.Helper()
		for _, c := range exportState(t, statePath).Consumers {
			if c.Kernel == "5.14.0-427.37.1.el9_4" {
				reasons := []string{}
				for _, r := range c.Rejections {
					reasons = append(reasons, r.Reason)
				}
				return c.State, strings.Join(reasons, "; ")
			}
		}
		return "", ""
	}
	for i := 0; i < 2; i++ {
		runCLI(t, "reconcile", "--config", cw.config)
	}
	st, reasons := consumer()
	if st != "failed" || !strings.Contains(reasons, "simple-kmod (modprobe), is not under /opt/lib/modules/5.14.0-427.37.1.el9_4.x86_64/: the image holds dtkbot_hello.ko, dtkbot_user.ko") {
		t.Errorf("the image without simple-kmod: %s, rejections %q", st, reasons)
	}
	for _, tag := range cw.srv.Tags("dtkbot/simple-kmod") {
		if !strings.HasPrefix(tag, "staging-") {
			t.Errorf("the image without the module KMM loads is tagged %s", tag)
		}
	}

}
