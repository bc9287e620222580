package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
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
	"github.com/dtkbot/dtkbot/internal/githubtest"
	"github.com/dtkbot/dtkbot/internal/loopback"
	"github.com/dtkbot/dtkbot/internal/payloadtest"
	"github.com/dtkbot/dtkbot/ledger"
	"github.com/dtkbot/dtkbot/reconcile"
	"github.com/dtkbot/dtkbot/state"
)

// TestMain lets the test binary act as dtkbot itself, so crash tests can
// start it as a real process and kill it; the tests, and that process,
// stay on loopback (internal/loopback: it inherits the proxy variables).
func TestMain(m *testing.M) {
	if os.Getenv("DTKBOT_RUN_MAIN") == "1" {
		loopback.GuardResolver()
		var args []string
		_ = json.Unmarshal([]byte(os.Getenv("DTKBOT_ARGS")), &args)
		os.Exit(run(context.Background(), args, os.Stdout, os.Stderr))
	}
	os.Exit(loopback.Run(m))
}

// startDtkbot runs the test binary as `dtkbot args...`.
func startDtkbot(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	raw, _ := json.Marshal(args)
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "DTKBOT_RUN_MAIN=1", "DTKBOT_ARGS="+string(raw))
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd
}

// killer stands in front of every server a pass talks to after the graph
// (registry, build webhook, GitHub) and SIGKILLs the running dtkbot when
// the request it was armed for arrives: kill points are chosen by how much
// work a pass has done, never by the clock, so they fall among the work
// however fast or loaded the machine is. The request that triggers the kill
// is still served: the server did the work, the client never saw the answer.
type killer struct {
	mu       sync.Mutex
	cmd      *exec.Cmd
	at, seen int
	killed   bool
	inflight sync.WaitGroup
}

func (k *killer) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k.inflight.Add(1)
		defer k.inflight.Done()
		k.mu.Lock()
		k.seen++
		if k.cmd != nil && k.seen == k.at {
			_ = k.cmd.Process.Kill()
			k.killed = true
		}
		k.mu.Unlock()
		h.ServeHTTP(w, r)
	})
}

// arm starts counting a new pass's requests, to kill cmd at the at-th
// (0: never).
func (k *killer) arm(cmd *exec.Cmd, at int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.cmd, k.at, k.seen, k.killed = cmd, at, 0, false
}

// disarm returns how many requests the pass made and whether it was killed.
func (k *killer) disarm() (int, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.cmd = nil
	return k.seen, k.killed
}

// TestKilledPassesLoseNothingAndRepeatNothing kills `dtkbot reconcile`
// (SIGKILL, a real process) at 50 points of its passes, each drawn among
// the requests a pass makes, over a world that gains a release (and every
// fourth time a kernel) each round, with a build webhook and GitHub. It
// checks the state file opens after every ten rounds, then lets dtkbot
// finish and checks the end state: every release recorded, every kernel's
// build requested exactly once, every release tag at its kernel's image,
// exactly one issue and one pull request per kernel.
func TestKilledPassesLoseNothingAndRepeatNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("starts dtkbot processes")
	}
	k := &killer{}
	secret := "crash-test-secret"
	ci := &citest.CI{Secret: []byte(secret)} // no de-duplication: a second request is a second build
	ciServer := httptest.NewServer(k.wrap(http.HandlerFunc(ci.Webhook)))
	defer ciServer.Close()
	secretFile := filepath.Join(t.TempDir(), "webhook-secret")
	_ = os.WriteFile(secretFile, []byte(secret+"\n"), 0o600)

	gh := githubtest.NewWith("acme", "driver-ci", k.wrap)
	defer gh.Close()
	gh.AddToken("ghp_crash_token", "dtkbot-user")
	gh.SetFile("main", "kernels.yaml", "")
	tokenFile := filepath.Join(t.TempDir(), "github-token")
	_ = os.WriteFile(tokenFile, []byte("ghp_crash_token"), 0o600)

	// build.timeout is long while passes are killed: a build whose request a
	// kill lost is only asked again in the end phase, once every request in
	// flight has been served, so a slow machine cannot make a second request
	// for a build that is still being pushed.
	config := func(buildTimeout, registry string) string {
		// The DTK's and the consumer's builds, through the same webhook.
		build := fmt.Sprintf("{backend: webhook, timeout: %s, max_attempts: 20, backoff: 1ms, webhook: {url: %q, secret_file: %q}}",
			buildTimeout, ciServer.URL, secretFile)
		return fmt.Sprintf(`build: %s
github:
  api_url: %s
  token_file: %s
  repository: acme/driver-ci
  mutation_interval: 1ms
  pull_request:
    path: kernels.yaml
    kmm: {}
consumers:
  - name: simple-kmod
    build: %s
    target:
      repository: %s/dtkbot/simple-kmod
    verify: {label: kernel-version}
`, build, gh.URL(), tokenFile, build, registry)
	}
	// The registry's address is known once it runs: the consumer's
	// repository is written into the config then.
	cw := newCLIWorldWith(t, config("1h", "REGISTRY"), k.wrap)
	host := cw.srv.Host()
	if err := os.WriteFile(cw.config, []byte(strings.Replace(mustRead(t, cw.config), config("1h", "REGISTRY"), config("1h", host), 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	ci.World = cw.world
	kernelOf := map[string]string{"4.16.15": "5.14.0-427.37.1.el9_4", "4.16.16": "5.14.0-427.37.1.el9_4", "4.16.17": "5.14.0-427.40.1.el9_4"}
	statePath := filepath.Join(filepath.Dir(cw.config), "dtkbot.db")
	rng := rand.New(rand.NewPCG(1, 2))
	publish := func(round int) {
		v := fmt.Sprintf("4.16.%d", 18+round)
		kv := fmt.Sprintf("5.14.0-427.%d.1.el9_4", 50+round/4)
		kernelOf[v] = kv
		cw.graph.Publish("stable-4.16", "amd64", v, cw.world.Release(payloadtest.ReleaseSpec{Version: v, Stream: payloadtest.Stream{Kernel: kv}}).Pullspec)
	}
	pass := func(at int) (requests int, killed bool) {
		cmd := startDtkbot(t, "reconcile", "--config", cw.config)
		k.arm(cmd, at)
		_ = cmd.Wait()
		return k.disarm()
	}
	// A first pass does the work of the releases already there; the next,
	// with one new release and a new kernel, is the one measured: its
	// requests are where kill points are drawn from.
	pass(0)
	publish(0)
	perPass, _ := pass(0)
	if perPass < 10 {
		t.Fatalf("a pass with a new kernel made only %d requests", perPass)
	}
	kills, rounds := 0, 1
	for ; kills < 50 && rounds < 120; rounds++ {
		publish(rounds)
		if _, killed := pass(1 + rng.IntN(perPass)); killed {
			kills++
		}
		if rounds%10 == 9 {
			s, err := state.OpenReadOnly(statePath, 5*time.Second)
			if err != nil {
				t.Fatalf("after round %d the state file does not open: %v", rounds+1, err)
			}
			if _, err := s.Export(); err != nil {
				t.Fatalf("after round %d the state file does not read: %v", rounds+1, err)
			}
			s.Close()
		}
	}
	if kills < 50 {
		t.Fatalf("only %d passes were killed mid-work in %d rounds", kills, rounds)
	}
	// The kills fell among the work: the killed passes together made progress.
	if s, err := state.OpenReadOnly(statePath, 5*time.Second); err == nil {
		exp, _ := s.Export()
		s.Close()
		t.Logf("by the last kill: %d of %d releases recorded, %d journal entries, %d builds requested", len(exp.Releases), len(kernelOf), len(exp.Journal), len(ci.Builds()))
		if len(exp.Releases) < len(kernelOf)/2 || len(exp.Journal) == 0 {
			t.Errorf("the killed passes made little progress: %d releases, %d journal entries", len(exp.Releases), len(exp.Journal))
		}
	}
	kernels := map[string]bool{}
	for _, kv := range kernelOf {
		kernels[kv] = true
	}

	// Then let it finish, once every request of the killed passes has been
	// served: passes until every kernel is promoted (a build whose request
	// was lost in a kill is asked again after build.timeout), polled with a
	// generous deadline.
	k.inflight.Wait()
	if err := os.WriteFile(cw.config, []byte(strings.Replace(mustRead(t, cw.config), config("1h", host), config("1s", host), 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	finished := func() bool {
		s, err := state.OpenReadOnly(statePath, 5*time.Second)
		if err != nil {
			return false
		}
		defer s.Close()
		exp, err := s.Export()
		if err != nil || len(exp.Releases) != len(kernelOf) || len(exp.Kernels) != len(kernels) {
			return false
		}
		if len(exp.Consumers) != len(kernels) {
			return false
		}
		byKernel := map[string][]ledger.Image{}
		for _, c := range exp.Consumers {
			if c.State != ledger.StatePromoted {
				return false
			}
			byKernel[c.KernelKey()] = append(byKernel[c.KernelKey()], c)
		}
		for _, kr := range exp.Kernels {
			if kr.State != ledger.StatePromoted || kr.NotifiedHash != reconcile.NoticeHash(kr, byKernel[kr.Key()]) {
				return false
			}
		}
		return true
	}
	endPasses := 0
	for deadline := time.Now().Add(3 * time.Minute); !finished(); endPasses++ {
		if time.Now().After(deadline) {
			t.Fatalf("not finished after %d passes in 3 minutes", endPasses)
		}
		pass(0)
		time.Sleep(100 * time.Millisecond) // a poll: lost builds wait for build.timeout of real time
	}
	t.Logf("%d passes killed mid-work in %d rounds, kill points drawn among the %d requests of a pass with a new kernel; %d passes to finish; %d releases, %d kernels",
		kills, rounds, perPass, endPasses, len(kernelOf), len(kernels))

	store, err := state.OpenReadOnly(statePath, 5*time.Second)
	if err != nil {
		t.Fatalf("the state file does not open after the kills: %v", err)
	}
	defer store.Close()
	exp, err := store.Export()
	if err != nil {
		t.Fatal(err)
	}
	if len(exp.Releases) != len(kernelOf) {
		t.Errorf("%d releases recorded, want %d", len(exp.Releases), len(kernelOf))
	}
	builds := ci.Builds() // by image: each kernel's DTK and its kmod image
	if len(builds) != 2*len(kernels) {
		t.Errorf("%d images built, want %d (a DTK and a kmod image per kernel)", len(builds), 2*len(kernels))
	}
	for image, n := range builds {
		if n != 1 {
			t.Errorf("%s requested %d times", image, n)
		}
	}
	if len(gh.Issues()) != len(kernels) || len(gh.Pulls()) != len(kernels) {
		t.Errorf("%d issues and %d pull requests for %d kernels", len(gh.Issues()), len(gh.Pulls()), len(kernels))
	}
	for v, kv := range kernelOf {
		got, ok := cw.srv.TagDigest("dtkbot/driver-toolkit", v)
		want, _ := cw.srv.TagDigest("dtkbot/driver-toolkit", kv+".x86_64")
		if !ok || got != want {
			t.Errorf("tag %s at %s, want %s", v, got, want)
		}
	}
	// Every kmod image is at its kernel tag, built FROM its kernel's DTK,
	// and each kernel's pull request carries its KMM manifests.
	for _, c := range exp.Consumers {
		got, ok := cw.srv.TagDigest("dtkbot/simple-kmod", c.KernelFull)
		if !ok || got.String() != c.ImageDigest {
			t.Errorf("kmod image of %s at %s, want %s", c.Kernel, got, c.ImageDigest)
		}
		if !strings.HasPrefix(c.DTKImage, host+"/dtkbot/driver-toolkit@sha256:") {
			t.Errorf("kmod image of %s built FROM %q", c.Kernel, c.DTKImage)
		}
	}
	for _, p := range gh.Pulls() {
		files := strings.Join(gh.Files(p.Head), " ")
		if !strings.Contains(files, "/kernel-mappings.yaml") || !strings.Contains(files, "/preflightvalidationocp.yaml") {
			t.Errorf("pull request %s has files %s", p.Head, files)
		}
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
