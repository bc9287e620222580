package builder

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dtkbot/dtkbot/internal/poll"
)

// TestABuildDiesWithDtkbot: a podman (or buildah) build is dtkbot's child,
// in a process group of its own, and dies when dtkbot is killed: no build
// of an attempt outlives the process that asked for it, so a recorded,
// unacknowledged attempt can be asked again (AsksOnce) without two builds
// pushing. The process here is the test binary running a build whose
// "podman" writes its pid and sleeps.
func TestABuildDiesWithDtkbot(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "podman.pid")
	podman := filepath.Join(dir, "podman")
	if err := os.WriteFile(podman, []byte("#!/bin/sh\necho $$ > "+pidFile+".tmp && mv "+pidFile+".tmp "+pidFile+"\nexec sleep 600\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	dtkbot := exec.Command(os.Args[0])
	dtkbot.Env = append(os.Environ(), "DTKBOT_TEST_BUILD="+podman)
	if err := dtkbot.Start(); err != nil {
		t.Fatal(err)
	}
	var pid int
	poll.Until(t, "the build to start", 2*time.Minute, func() bool {
		data, err := os.ReadFile(pidFile)
		if err != nil {
			return false
		}
		pid, err = strconv.Atoi(string(bytes.TrimSpace(data)))
		return err == nil
	})
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("the build %d is not running: %v", pid, err)
	}
	if err := dtkbot.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = dtkbot.Wait()
	poll.Until(t, "the build to die with dtkbot", 2*time.Minute, func() bool {
		return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) || zombie(pid)
	})
	if !AsksOnceFor(&CommandBuilder{}) {
		t.Error("a podman build is not asked again")
	}
}

// zombie reports whether pid is a process that died and waits to be
// reaped (its parent, killed, left it to init).
func zombie(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	// pid (comm) state ...: the state follows the last ')'.
	i := bytes.LastIndexByte(data, ')')
	return i > 0 && i+2 < len(data) && data[i+2] == 'Z'
}

// TestWebhookDeliveryNamesTheAttempt: X-Dtkbot-Delivery is the same for a
// request sent twice (a receiver drops the repeat) and differs for the next
// attempt or round (a receiver that drops repeats still builds it). A
// webhook's receiver may ignore the header: it is not asked again.
func TestWebhookDeliveryNamesTheAttempt(t *testing.T) {
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Header.Get("X-Dtkbot-Delivery"))
		mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	}))
	defer srv.Close()
	b := &WebhookBuilder{URL: srv.URL, Secret: []byte("s"), Attempts: 1}
	r := req
	r.Attempt = 1
	second, nextRound := r, r
	second.Attempt, nextRound.Round = 2, 1
	for _, x := range []Request{r, r, second, nextRound} {
		if err := b.Build(context.Background(), x); err != nil {
			t.Fatal(err)
		}
	}
	if len(got) != 4 || got[0] == "" || got[0] != got[1] || got[2] == got[0] || got[3] == got[0] || got[3] == got[2] {
		t.Errorf("deliveries %q: want the first two alike, the others each their own", got)
	}
	if AsksOnceFor(b) {
		t.Error("a webhook, whose receiver may build a request twice, is asked again")
	}
}
