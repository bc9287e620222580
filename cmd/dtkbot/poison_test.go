package main

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dtkbot/dtkbot/internal/citest"
	"github.com/dtkbot/dtkbot/internal/need"
)

// TestPoisonImageIsFailed: an image whose verification kills dtkbot is not
// verified again forever. Here the verifier's process is SIGKILLed as it
// reads the built DTK's layers, as the kernel's OOM killer ends a process
// that an image makes allocate without bound. Each verification is
// recorded in the state before the image is read: the first interruption
// may be a coincidence, and the image is read again; after the second
// (build.verify_interruptions: 2), the next start rejects it without
// reading it, says why, and the pass ends by itself.
func TestPoisonImageIsFailed(t *testing.T) {
	need.Long(t, "starts dtkbot processes")
	var mu sync.Mutex
	var running *exec.Cmd
	reads := 0
	poison := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/v2/dtkbot/driver-toolkit/blobs/") {
				mu.Lock()
				reads++
				if running != nil {
					_ = running.Process.Kill()
				}
				mu.Unlock()
			}
			h.ServeHTTP(w, r)
		})
	}
	ci := &citest.CI{Secret: []byte("hook")}
	hook := httptest.NewServer(http.HandlerFunc(ci.Webhook))
	defer hook.Close()
	secret := filepath.Join(t.TempDir(), "hook")
	_ = os.WriteFile(secret, []byte("hook"), 0o600)
	cw := newCLIWorldWith(t, fmt.Sprintf("build:\n  backend: webhook\n  max_attempts: 1\n  webhook: {url: %s, secret_file: %s}\n", hook.URL, secret), poison)
	ci.SetWorld(cw.world)

	// One release, one kernel: one DTK, built once, read by each pass.
	pass := func() (killed bool) {
		cmd := startDtkbot(t, "reconcile", "--config", cw.config, "--release", "4.16.15")
		mu.Lock()
		running = cmd
		mu.Unlock()
		guard := time.AfterFunc(passHangGuard, func() { _ = cmd.Process.Kill() })
		err := cmd.Wait()
		guard.Stop()
		mu.Lock()
		running = nil
		mu.Unlock()
		var exit *exec.ExitError
		return errors.As(err, &exit) && exit.ExitCode() == -1 // ended by a signal
	}
	for i := 1; i <= 2; i++ {
		if !pass() {
			t.Fatalf("pass %d was not killed reading the image", i)
		}
	}
	if pass() {
		t.Fatal("pass 3 read the image again, and died of it")
	}
	mu.Lock()
	n := reads
	mu.Unlock()
	if n != 2 {
		t.Errorf("the poison image was read %d times, want 2", n)
	}
	exp := exportState(t, filepath.Join(filepath.Dir(cw.config), "dtkbot.db"))
	if len(exp.Kernels) != 1 {
		t.Fatalf("kernels %+v", exp.Kernels)
	}
	k := exp.Kernels[0]
	if k.State != "failed" || len(k.Rejections) != 1 || !strings.Contains(k.Rejections[0].Reason, "verifying it stopped the process 2 times") || k.Verifying != nil {
		t.Errorf("the poison DTK: %s, verifying %+v, rejections %+v", k.State, k.Verifying, k.Rejections)
	}
	if tags := cw.srv.Tags("dtkbot/driver-toolkit"); len(tags) != 0 {
		t.Errorf("tags %v", tags)
	}
	if n := len(ci.Requests()); n != 1 {
		t.Errorf("%d builds asked, want 1", n)
	}
}
