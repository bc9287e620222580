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
	"syscall"
	"testing"
	"time"

	"github.com/dtkbot/dtkbot/internal/citest"
	"github.com/dtkbot/dtkbot/internal/githubtest"
	"github.com/dtkbot/dtkbot/internal/payloadtest"
	"github.com/dtkbot/dtkbot/rebuild"
	"github.com/dtkbot/dtkbot/state"
)

// TestMain lets the test binary act as dtkbot itself, so crash tests can
// start it as a real process and kill it.
func TestMain(m *testing.M) {
	if os.Getenv("DTKBOT_RUN_MAIN") == "1" {
		var args []string
		_ = json.Unmarshal([]byte(os.Getenv("DTKBOT_ARGS")), &args)
		os.Exit(run(context.Background(), args, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
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

// TestKilledPassesLoseNothingAndRepeatNothing kills `dtkbot reconcile`
// (SIGKILL, a real process) at 50 random points of its passes over a world
// of 24 releases and 8 kernels with a build webhook and GitHub, then lets it
// finish, and checks the end state: the state file opens after every kill,
// every release is recorded, every kernel's image was requested exactly once,
// every release tag points at its kernel's image, and there is exactly one
// issue and one pull request per kernel.
func TestKilledPassesLoseNothingAndRepeatNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("starts dtkbot processes")
	}
	secret := "crash-test-secret"
	ci := &citest.CI{Secret: []byte(secret)} // no de-duplication: a second request is a second build
	ciServer := httptest.NewServer(http.HandlerFunc(ci.Webhook))
	defer ciServer.Close()
	secretFile := filepath.Join(t.TempDir(), "webhook-secret")
	_ = os.WriteFile(secretFile, []byte(secret+"\n"), 0o600)

	gh := githubtest.New("acme", "driver-ci")
	defer gh.Close()
	gh.AddToken("ghp_crash_token", "dtkbot-user")
	gh.SetFile("main", "kernels.yaml", "")
	tokenFile := filepath.Join(t.TempDir(), "github-token")
	_ = os.WriteFile(tokenFile, []byte("ghp_crash_token"), 0o600)

	cw := newCLIWorld(t, fmt.Sprintf(`build:
  backend: webhook
  timeout: 1s
  max_attempts: 20
  backoff: 1ms
  webhook:
    url: %s
    secret_file: %s
github:
  api_url: %s
  token_file: %s
  repository: acme/driver-ci
  mutation_interval: 1ms
  pull_request:
    path: kernels.yaml
`, ciServer.URL, secretFile, gh.URL(), tokenFile))
	ci.World = cw.world
	kernelOf := map[string]string{"4.16.15": "5.14.0-427.37.1.el9_4", "4.16.16": "5.14.0-427.37.1.el9_4", "4.16.17": "5.14.0-427.40.1.el9_4"}
	statePath := filepath.Join(filepath.Dir(cw.config), "dtkbot.db")
	rng := rand.New(rand.NewPCG(1, 2))
	// Each round publishes a release (a new kernel every fourth), starts a
	// pass and kills it at a random point while it works; rounds go on
	// until 50 passes were killed mid-work.
	// Kill points are drawn within the time a pass with one new release
	// takes on this machine now (start-up included), so that they fall
	// among the work however loaded the machine is.
	publish := func(round int) {
		v := fmt.Sprintf("4.16.%d", 18+round)
		k := fmt.Sprintf("5.14.0-427.%d.1.el9_4", 50+round/4)
		kernelOf[v] = k
		cw.graph.Publish("stable-4.16", "amd64", v, cw.world.Release(payloadtest.ReleaseSpec{Version: v, Stream: payloadtest.Stream{Kernel: k}}).Pullspec)
	}
	// A first pass does the work of the releases already there; the next,
	// with one new release, is the one measured.
	if err := startDtkbot(t, "reconcile", "--config", cw.config).Wait(); err != nil {
		t.Logf("the first pass: %v", err)
	}
	publish(0)
	start := time.Now()
	_ = startDtkbot(t, "reconcile", "--config", cw.config).Wait()
	pass := time.Since(start)
	kills, rounds := 0, 1
	for ; kills < 50 && rounds < 200; rounds++ {
		if rounds < 120 {
			publish(rounds)
		}
		cmd := startDtkbot(t, "reconcile", "--config", cw.config)
		time.Sleep(pass/4 + time.Duration(rng.Int64N(int64(pass))))
		_ = cmd.Process.Signal(syscall.SIGKILL)
		if err := cmd.Wait(); err != nil && cmd.ProcessState != nil && !cmd.ProcessState.Exited() {
			kills++ // killed by the signal, not exited on its own
		}
		if rounds%10 == 9 {
			s, err := state.OpenReadOnly(statePath, time.Second)
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
		t.Errorf("only %d passes were killed mid-work in %d rounds", kills, rounds)
	}
	// The kills must have fallen among the work, not only before it: the
	// killed passes together made progress.
	if s, err := state.OpenReadOnly(statePath, time.Second); err == nil {
		exp, _ := s.Export()
		s.Close()
		t.Logf("by the last kill: %d of %d releases recorded, %d journal entries, %d builds requested", len(exp.Releases), len(kernelOf), len(exp.Journal), len(ci.Builds()))
		if len(exp.Releases) < len(kernelOf)/2 || len(exp.Journal) == 0 {
			t.Errorf("the killed passes made little progress: %d releases, %d journal entries", len(exp.Releases), len(exp.Journal))
		}
	}
	kernels := map[string]bool{}
	for _, k := range kernelOf {
		kernels[k] = true
	}
	// Then let it finish: passes until nothing is left to do (a build whose
	// request was lost in a kill is retried after build.timeout).
	for i := 0; i < 10; i++ {
		code, stdout, stderr := runCLI(t, "reconcile", "--config", cw.config, "-o", "json")
		var res struct {
			Actions []rebuild.Action `json:"actions"`
		}
		_ = json.Unmarshal([]byte(stdout), &res)
		pending := 0
		for _, a := range res.Actions {
			if a.Type != "notify" {
				pending++
			}
		}
		if code == exitOK && pending == 0 && i > 0 {
			break
		}
		_ = stderr
		time.Sleep(1100 * time.Millisecond)
	}
	t.Logf("%d passes killed mid-work in %d rounds (a pass with one new release took %s; %d releases, %d kernels)", kills, rounds, pass.Round(time.Millisecond), len(kernelOf), len(kernels))

	store, err := state.OpenReadOnly(statePath, time.Second)
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
	for _, k := range exp.Kernels {
		if k.State != state.KernelPromoted {
			t.Errorf("kernel %s ended %s (%s)", k.Kernel, k.State, k.Reason)
		}
	}
	builds := ci.Builds()
	if len(builds) != len(kernels) {
		t.Errorf("%d kernels built, want %d", len(builds), len(kernels))
	}
	for image, n := range builds {
		if n != 1 {
			t.Errorf("%s requested %d times", image, n)
		}
	}
	if len(gh.Issues()) != len(kernels) || len(gh.Pulls()) != len(kernels) {
		t.Errorf("%d issues and %d pull requests for %d kernels", len(gh.Issues()), len(gh.Pulls()), len(kernels))
	}
	for v, k := range kernelOf {
		got, ok := cw.srv.TagDigest("dtkbot/driver-toolkit", v)
		want, _ := cw.srv.TagDigest("dtkbot/driver-toolkit", k+".x86_64")
		if !ok || got != want {
			t.Errorf("tag %s at %s, want %s", v, got, want)
		}
	}
}
