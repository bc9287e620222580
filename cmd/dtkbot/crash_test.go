package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
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
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	imgspec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/dtkbot/dtkbot/internal/citest"
	"github.com/dtkbot/dtkbot/internal/githubtest"
	"github.com/dtkbot/dtkbot/internal/loopback"
	"github.com/dtkbot/dtkbot/internal/need"
	"github.com/dtkbot/dtkbot/internal/payloadtest"
	"github.com/dtkbot/dtkbot/internal/registrytest"
	"github.com/dtkbot/dtkbot/state"
)

// TestMain lets the test binary act as dtkbot itself, so crash tests can
// start it as a real process and kill it; the tests, and that process,
// stay on loopback (internal/loopback: it inherits the proxy variables).
func TestMain(m *testing.M) {
	if os.Getenv("DTKBOT_RUN_MAIN") == "1" {
		// The process is dtkbot itself, main and all: what the built
		// binary does with these arguments.
		loopback.GuardResolver()
		var args []string
		_ = json.Unmarshal([]byte(os.Getenv("DTKBOT_ARGS")), &args)
		os.Args = append([]string{"dtkbot"}, args...)
		main()
		os.Exit(exitOK)
	}
	os.Exit(loopback.Run(m))
}

// dtkbotCommand is the test binary as the command `dtkbot args...`.
func dtkbotCommand(ctx context.Context, args ...string) *exec.Cmd {
	raw, _ := json.Marshal(args)
	cmd := exec.CommandContext(ctx, os.Args[0])
	cmd.Env = append(os.Environ(), "DTKBOT_RUN_MAIN=1", "DTKBOT_ARGS="+string(raw))
	return cmd
}

// startDtkbot runs the test binary as `dtkbot args...`.
func startDtkbot(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	cmd := dtkbotCommand(context.Background(), args...)
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
// A build request that triggers it (wrapLate) is served only once the next
// pass is over, as a CI still running the build would: that pass must wait
// for the build it cannot see, not ask for it again.
type killer struct {
	mu       sync.Mutex
	cmd      *exec.Cmd
	at, seen int
	// atBuild kills at the pass's first build request instead.
	atBuild  bool
	builds   int
	killed   bool
	inflight sync.WaitGroup
	// late holds the build requests of the last kill until the end of the
	// next pass; later, those of this pass's kill.
	late, later []chan struct{}
	held        int // build requests held so far
}

func (k *killer) wrap(h http.Handler) http.Handler { return k.wrapWith(h, false) }

func (k *killer) wrapLate(h http.Handler) http.Handler { return k.wrapWith(h, true) }

func (k *killer) wrapWith(h http.Handler, late bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k.inflight.Add(1)
		defer k.inflight.Done()
		var hold chan struct{}
		k.mu.Lock()
		k.seen++
		if late {
			k.builds++
		}
		if k.cmd != nil && !k.killed && (k.seen == k.at || (k.atBuild && late && k.builds == 1)) {
			_ = k.cmd.Process.Kill()
			k.killed = true
			if late {
				hold = make(chan struct{})
				k.later = append(k.later, hold)
				k.held++
			}
		}
		k.mu.Unlock()
		if hold != nil {
			<-hold
		}
		h.ServeHTTP(w, r)
	})
}

// arm starts counting a new pass's requests, to kill cmd at the at-th
// (0: never), or at its first build request (atBuild).
func (k *killer) arm(cmd *exec.Cmd, at int, atBuild bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.cmd, k.at, k.atBuild, k.seen, k.builds, k.killed = cmd, at, atBuild, 0, 0, false
}

// disarm returns how many requests the pass made and whether it was
// killed, and serves the build requests held since the pass before.
func (k *killer) disarm() (int, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.cmd = nil
	for _, c := range k.late {
		close(c)
	}
	k.late, k.later = k.later, nil
	return k.seen, k.killed
}

// release serves every build request held.
func (k *killer) release() {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, c := range append(k.late, k.later...) {
		close(c)
	}
	k.late, k.later = nil, nil
}

// TestKilledPassesLoseNothingAndRepeatNothing kills `dtkbot reconcile`
// (SIGKILL, a real process) at 50 points of its passes, each drawn among
// the requests a pass makes (every eighth round at the new kernel's build
// request, served only after the next pass), over a world that gains a
// release (and every fourth time a kernel) each round, with a build webhook
// and GitHub. It checks the state file opens after every ten rounds, then
// runs passes until the world (crashWorld: the registry's tags and images,
// GitHub's issues and pull requests) is as a finished dtkbot leaves it,
// and checks every image was requested exactly once and one more pass
// changes nothing.
func TestKilledPassesLoseNothingAndRepeatNothing(t *testing.T) {
	need.Long(t, "starts dtkbot processes")
	k := &killer{}
	secret := "crash-test-secret"
	ci := &citest.CI{Secret: []byte(secret)} // no de-duplication: a second request is a second build
	ciServer := httptest.NewServer(k.wrapLate(http.HandlerFunc(ci.Webhook)))
	defer ciServer.Close()
	secretFile := filepath.Join(t.TempDir(), "webhook-secret")
	_ = os.WriteFile(secretFile, []byte(secret+"\n"), 0o600)

	gh := githubtest.NewWith("acme", "driver-ci", k.wrap)
	defer gh.Close()
	gh.AddToken("ghp_crash_token", "dtkbot-user")
	gh.SetFile("main", "kernels.yaml", "")
	tokenFile := filepath.Join(t.TempDir(), "github-token")
	_ = os.WriteFile(tokenFile, []byte("ghp_crash_token"), 0o600)

	// build.timeout is longer than the test can run while passes are
	// killed (see killedPhaseTimeout): a build whose request a kill lost is
	// only asked again in the end phase, once every request in flight has
	// been served, so however slow the machine, no second request is made
	// for a build that is still being pushed.
	config := func(buildTimeout, registry string) string {
		// The DTK's and the consumer's builds, through the same webhook.
		build := fmt.Sprintf("{backend: webhook, timeout: %s, max_attempts: 20, backoff: 1ns, webhook: {url: %q, secret_file: %q}}",
			buildTimeout, ciServer.URL, secretFile)
		// Passes are killed on purpose, some while they verify an image,
		// maybe the same one twice in a row: no image here kills its
		// verifier, so none may be taken for one (TestPoisonImageIsFailed
		// tests that rule).
		dtkBuild := strings.Replace(build, "{backend: webhook,", "{backend: webhook, verify_interruptions: 1000,", 1)
		return fmt.Sprintf(`build: %s
github:
  api_url: %s
  token_file: %s
  repository: acme/driver-ci
  mutation_interval: 1ms
  close_when_promoted: true
  pull_request:
    path: kernels.yaml
    kmm: {}
consumers:
  - name: simple-kmod
    build: %s
    target:
      repository: %s/dtkbot/simple-kmod
    verify: {label: kernel-version}
`, dtkBuild, gh.URL(), tokenFile, build, registry)
	}
	// The registry's address is known once it runs: the consumer's
	// repository is written into the config then.
	cw := newCLIWorldWith(t, config(killedPhaseTimeout, "REGISTRY"), k.wrap)
	host := cw.srv.Host()
	if err := os.WriteFile(cw.config, []byte(strings.Replace(mustRead(t, cw.config), config(killedPhaseTimeout, "REGISTRY"), config(killedPhaseTimeout, host), 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	ci.SetWorld(cw.world)
	kernelOf := map[string]string{"4.16.15": "5.14.0-427.37.1.el9_4", "4.16.16": "5.14.0-427.37.1.el9_4", "4.16.17": "5.14.0-427.40.1.el9_4"}
	statePath := filepath.Join(filepath.Dir(cw.config), "dtkbot.db")
	rng := rand.New(rand.NewPCG(1, 2))
	publish := func(round int) {
		v := fmt.Sprintf("4.16.%d", 18+round)
		kv := fmt.Sprintf("5.14.0-427.%d.1.el9_4", 50+round/4)
		kernelOf[v] = kv
		cw.graph.Publish("stable-4.16", "amd64", v, cw.world.Release(payloadtest.ReleaseSpec{Version: v, Stream: payloadtest.Stream{Kernel: kv}}).Pullspec)
	}
	pass := func(at int, atBuild bool) (requests int, killed bool) {
		cmd := startDtkbot(t, "reconcile", "--config", cw.config)
		k.arm(cmd, at, atBuild)
		// A hang guard, never a verdict on speed: a pass takes well under a
		// second; one still running after passHangGuard is stuck.
		var hung atomic.Bool
		guard := time.AfterFunc(passHangGuard, func() { hung.Store(true); _ = cmd.Process.Kill() })
		_ = cmd.Wait()
		guard.Stop()
		if hung.Load() {
			t.Fatalf("a pass was still running after %s: killed as hung", passHangGuard)
		}
		return k.disarm()
	}
	// A first pass does the work of the releases already there; the next,
	// with one new release and a new kernel, is the one measured: its
	// requests are where kill points are drawn from.
	pass(0, false)
	publish(0)
	perPass, _ := pass(0, false)
	if perPass < 10 {
		t.Fatalf("a pass with a new kernel made only %d requests", perPass)
	}
	kills, rounds := 0, 1
	for ; kills < 50 && rounds < 120; rounds++ {
		publish(rounds)
		// Every eighth round (half those with a new kernel) the kill falls
		// on the new kernel's build request; the others, anywhere.
		if _, killed := pass(1+rng.IntN(perPass), rounds%8 == 0); killed {
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

	// Then let it finish. Once every request of the killed passes has been
	// served, every build the CI stand-in will ever push is in the registry
	// (it pushes before it answers), so a requested build whose image is
	// not there never will be: build.timeout can be as short as can be
	// written, and it expires for the builds a kill lost and no other. A
	// build asked for from here on is in the registry before its request
	// returns, so before the pass looks for it: the timeout cannot expire
	// for it, however slow the machine. Passes are counted, not timed.
	k.release()
	k.inflight.Wait()
	if err := os.WriteFile(cw.config, []byte(strings.Replace(mustRead(t, cw.config), config(killedPhaseTimeout, host), config("1ns", host), 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	w := crashWorld{reg: cw.srv.Registry, gh: gh, host: host, kernelOf: kernelOf}
	const maxEndPasses = 20 // a lost build costs two: one to time it out, one to ask again
	endPasses := 0
	for ; ; endPasses++ {
		missing := w.unfinished()
		if len(missing) == 0 {
			break
		}
		if endPasses == maxEndPasses {
			t.Fatalf("after %d passes with nothing killed, the world is not finished:\n%s", endPasses, strings.Join(missing[:min(len(missing), 20)], "\n"))
		}
		pass(0, false)
	}
	t.Logf("%d passes killed mid-work in %d rounds (%d at a build request), kill points drawn among the %d requests of a pass with a new kernel; %d passes to finish; %d releases, %d kernels",
		kills, rounds, k.held, perPass, endPasses, len(kernelOf), len(kernels))

	// Finished, a pass has nothing left to do: it asks for no build and
	// sends no request to the registry or GitHub (the steady state costs
	// no request).
	builds, ghRequests, regRequests := len(ci.Requests()), len(gh.Requests()), cw.srv.Registry.Stats().Requests
	pass(0, false)
	if n := len(ci.Requests()) - builds; n != 0 {
		t.Errorf("a pass after the end asked for %d builds", n)
	}
	if n := len(gh.Requests()) - ghRequests; n != 0 {
		t.Errorf("a pass after the end sent GitHub %d requests", n)
	}
	if n := cw.srv.Registry.Stats().Requests - regRequests; n != 0 {
		t.Errorf("a pass after the end sent the registry %d requests", n)
	}
	if missing := w.unfinished(); len(missing) != 0 {
		t.Errorf("a pass after the end undid the end: %s", strings.Join(missing, "; "))
	}

	byImage := ci.Builds() // by image: each kernel's DTK and its kmod image
	if len(byImage) != 2*len(kernels) {
		t.Errorf("%d images built, want %d (a DTK and a kmod image per kernel)", len(byImage), 2*len(kernels))
	}
	for image, n := range byImage {
		if n != 1 {
			t.Errorf("%s requested %d times", image, n)
		}
	}
	// The state file agrees with the world.
	exp := exportState(t, statePath)
	if len(exp.Releases) != len(kernelOf) || len(exp.Kernels) != len(kernels) || len(exp.Consumers) != len(kernels) {
		t.Errorf("the state file records %d releases, %d kernels, %d consumer images; want %d, %d, %d",
			len(exp.Releases), len(exp.Kernels), len(exp.Consumers), len(kernelOf), len(kernels), len(kernels))
	}
	for _, c := range exp.Consumers {
		got, ok := cw.srv.TagDigest("dtkbot/simple-kmod", c.KernelFull)
		if !ok || got.String() != c.ImageDigest {
			t.Errorf("kmod image of %s at %s, the state file says %s", c.Kernel, got, c.ImageDigest)
		}
	}
}

// killedPhaseTimeout is build.timeout while passes are killed: longer than
// the test can last (see passHangGuard), so it never expires there.
const killedPhaseTimeout = "24h"

// passHangGuard is how long one dtkbot pass may run before the test takes
// it for hung.
const passHangGuard = 5 * time.Minute

// crashWorld is what the crash test's dtkbot leaves behind, read from the
// registry and the fake GitHub alone. What it should hold is computed from
// the test's fixture (kernelOf) and citest's image layout, never from the
// state file or dtkbot's own functions: it is the oracle of "finished".
type crashWorld struct {
	reg      *registrytest.Registry
	gh       *githubtest.Server
	host     string
	kernelOf map[string]string // release -> kernel
}

// unfinished lists what the world lacks of the end state (nothing: done):
//   - each kernel's tag in dtkbot/driver-toolkit holds an image whose
//     /etc/driver-toolkit-release.json names the kernel, and each release's
//     tag points at that same image;
//   - each kernel's tag in dtkbot/simple-kmod holds an image labelled as
//     built FROM that DTK image, holding a module for the kernel;
//   - no other tag is left in either repository (staging tags removed);
//   - one issue per kernel, carrying dtkbot's hidden marker, naming the DTK
//     and kmod digests and every release tag of the kernel, closed by
//     dtkbot (close_when_promoted);
//   - one pull request per kernel, whose KMM kernel mapping names the kmod
//     image.
func (w crashWorld) unfinished() []string {
	var out []string
	releasesOf := map[string][]string{}
	for v, kv := range w.kernelOf {
		releasesOf[kv] = append(releasesOf[kv], v)
	}
	wantDTKTags, wantKmodTags := map[string]bool{}, map[string]bool{}
	issues, pulls := w.gh.Issues(), w.gh.Pulls()
	for kv, releases := range releasesOf {
		full := kv + ".x86_64"
		wantDTKTags[full], wantKmodTags[full] = true, true
		dtk, ok := w.reg.TagDigest("dtkbot/driver-toolkit", full)
		if !ok {
			out = append(out, "no DTK at the kernel tag "+full)
			continue
		}
		_, files, err := imageAt(w.reg, "dtkbot/driver-toolkit", dtk.String())
		var rel struct {
			Kernel string `json:"KERNEL_VERSION"`
		}
		if err == nil {
			err = json.Unmarshal(files["etc/driver-toolkit-release.json"], &rel)
		}
		if err != nil || rel.Kernel != full {
			out = append(out, fmt.Sprintf("the DTK at %s carries kernel %q (%v)", full, rel.Kernel, err))
		}
		for _, v := range releases {
			wantDTKTags[v] = true
			if d, ok := w.reg.TagDigest("dtkbot/driver-toolkit", v); !ok || d != dtk {
				out = append(out, fmt.Sprintf("release tag %s at %q, want the DTK of %s (%s)", v, d, kv, dtk))
			}
		}
		kmod, ok := w.reg.TagDigest("dtkbot/simple-kmod", full)
		if !ok {
			out = append(out, "no kmod image at the kernel tag "+full)
			continue
		}
		labels, files, err := imageAt(w.reg, "dtkbot/simple-kmod", kmod.String())
		from := w.host + "/dtkbot/driver-toolkit@" + dtk.String()
		modules := 0 // citest lays modules out under /opt/lib/modules/<kernel>/
		for name := range files {
			if strings.HasPrefix(name, "opt/lib/modules/"+full+"/") && strings.HasSuffix(name, ".ko") {
				modules++
			}
		}
		if err != nil || labels["io.acme.built-from"] != from || modules == 0 {
			out = append(out, fmt.Sprintf("the kmod image at %s, with %d modules for it, is built FROM %q, want %s (%v)", full, modules, labels["io.acme.built-from"], from, err))
		}
		var found []githubtest.Issue
		for _, i := range issues {
			if strings.Contains(i.Body, "<!-- dtkbot:kernel rhel-9/amd64/"+kv+" -->") {
				found = append(found, i)
			}
		}
		if len(found) != 1 {
			out = append(out, fmt.Sprintf("%d issues for %s", len(found), kv))
		} else {
			i := found[0]
			want := []string{dtk.String(), kmod.String()}
			for _, v := range releases {
				want = append(want, "`"+w.host+"/dtkbot/driver-toolkit:"+v+"`")
			}
			for _, s := range want {
				if !strings.Contains(i.Body, s) {
					out = append(out, fmt.Sprintf("the issue of %s does not name %s", kv, s))
				}
			}
			if i.User != "dtkbot-user" || i.State != "closed" || i.ClosedBy != "dtkbot-user" {
				out = append(out, fmt.Sprintf("the issue of %s, by %s, is %s (closed by %q), want closed by dtkbot-user (close_when_promoted)", kv, i.User, i.State, i.ClosedBy))
			}
		}
		var prs []githubtest.Pull
		for _, p := range pulls {
			if slices.Contains(w.gh.Files(p.Head), "kmm/rhel-9-amd64/"+full+"/kernel-mappings.yaml") {
				prs = append(prs, p)
			}
		}
		if len(prs) != 1 {
			out = append(out, fmt.Sprintf("%d pull requests for %s", len(prs), kv))
		} else {
			dir := "kmm/rhel-9-amd64/" + full + "/"
			mapping, _ := w.gh.File(prs[0].Head, dir+"kernel-mappings.yaml")
			_, preflight := w.gh.File(prs[0].Head, dir+"preflightvalidationocp.yaml")
			if !strings.Contains(mapping, w.host+"/dtkbot/simple-kmod") || !preflight {
				out = append(out, fmt.Sprintf("the pull request of %s maps %q (preflight: %v)", kv, mapping, preflight))
			}
		}
	}
	if len(issues) != len(releasesOf) || len(pulls) != len(releasesOf) {
		out = append(out, fmt.Sprintf("%d issues and %d pull requests for %d kernels", len(issues), len(pulls), len(releasesOf)))
	}
	for repo, want := range map[string]map[string]bool{"dtkbot/driver-toolkit": wantDTKTags, "dtkbot/simple-kmod": wantKmodTags} {
		for _, tag := range w.reg.Tags(repo) {
			if !want[tag] {
				out = append(out, fmt.Sprintf("%s:%s is left", repo, tag))
			}
		}
	}
	slices.Sort(out)
	return out
}

// imageAt reads an image stored in reg: its labels, and the files of its
// layers (gzipped tars, a later layer's file over an earlier one's).
func imageAt(reg *registrytest.Registry, repo, ref string) (map[string]string, map[string][]byte, error) {
	body, _, ok := reg.Manifest(repo, ref)
	if !ok {
		return nil, nil, fmt.Errorf("no manifest %s@%s", repo, ref)
	}
	var m imgspec.Manifest
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, nil, err
	}
	raw, ok := reg.Blob(m.Config.Digest)
	var cfg imgspec.Image
	if !ok || json.Unmarshal(raw, &cfg) != nil {
		return nil, nil, fmt.Errorf("no config %s", m.Config.Digest)
	}
	files := map[string][]byte{}
	for _, l := range m.Layers {
		raw, ok := reg.Blob(l.Digest)
		if !ok {
			return nil, nil, fmt.Errorf("no layer %s", l.Digest)
		}
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			return nil, nil, err
		}
		tr := tar.NewReader(zr)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				return nil, nil, err
			}
			b, err := io.ReadAll(tr)
			if err != nil {
				return nil, nil, err
			}
			files[strings.TrimPrefix(h.Name, "./")] = b
		}
	}
	return cfg.Config.Labels, files, nil
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// exportState is the state file at path, read as another process would
// while dtkbot may hold it (read-only, waiting for its lock).
func exportState(t *testing.T, path string) *state.Export {
	t.Helper()
	s, err := state.OpenReadOnly(path, 5*time.Second)
	if err != nil {
		t.Fatalf("opening the state file %s: %v", path, err)
	}
	defer s.Close()
	exp, err := s.Export()
	if err != nil {
		t.Fatal(err)
	}
	return exp
}
