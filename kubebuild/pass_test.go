package kubebuild

import (
	"cmp"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dtkbot/dtkbot/builder"
	"github.com/dtkbot/dtkbot/imageread"
	"github.com/dtkbot/dtkbot/internal/graphtest"
	"github.com/dtkbot/dtkbot/internal/payloadtest"
	"github.com/dtkbot/dtkbot/ledger"
	"github.com/dtkbot/dtkbot/plan"
	"github.com/dtkbot/dtkbot/promote"
	"github.com/dtkbot/dtkbot/reconcile"
	"github.com/dtkbot/dtkbot/registry"
	"github.com/dtkbot/dtkbot/state"
	"github.com/dtkbot/dtkbot/verify"
	"github.com/dtkbot/dtkbot/watcher"
)

// passWorld is dtkbot's whole pass with build.backend kubernetes: a
// payload in an update graph, the DTK built by a Job the node stand-in
// runs, verified and promoted, the state file reopened between passes as
// a restarted daemon would.
type passWorld struct {
	*fixture
	graph     *graphtest.Server
	statePath string
	store     *state.Store
	now       time.Time
	kernel    string
	// wrap, if set, stands between the pass and its Builder.
	wrap func(builder.Builder) builder.Builder
	// maxAttempts is build.max_attempts (default 3); opts the next pass's.
	maxAttempts int
	opts        reconcile.Options
}

func newPassWorld(t *testing.T, kernel string) *passWorld {
	f := setup(t)
	w := &passWorld{fixture: f, graph: graphtest.New(), statePath: filepath.Join(t.TempDir(), "dtkbot.db"),
		now: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC), kernel: kernel}
	t.Cleanup(w.graph.Close)
	world := payloadtest.New(f.reg, f.host)
	world.ContentSize = 16 << 10
	p := world.Release(payloadtest.ReleaseSpec{Version: "4.16.15", Stream: payloadtest.Stream{Kernel: kernel}})
	w.graph.Publish("stable-4.16", "amd64", "4.16.15", p.Pullspec)
	t.Cleanup(func() {
		if w.store != nil {
			w.store.Close()
		}
	})
	return w
}

// pass runs one pass as a new process would: the state file opened again,
// a new Builder and a new registry client.
func (w *passWorld) pass(t *testing.T) *reconcile.Result {
	t.Helper()
	if w.store != nil {
		w.store.Close()
	}
	var err error
	if w.store, err = state.Open(w.statePath, time.Second); err != nil {
		t.Fatal(err)
	}
	no := false
	reg := registry.New(registry.Options{TLSVerify: &no, RegistriesConf: "/dev/null", Attempts: 2, Timeout: 10 * time.Second})
	r := &reconcile.Reconciler{
		Discoverer: &watcher.Discoverer{Graph: &watcher.GraphClient{URL: w.graph.URL()}, Channels: []string{"stable-4.16"},
			Arches: []string{"amd64"}, Store: w.store, Streams: w.store},
		Registry: reg, Limits: imageread.DefaultLimits(), Store: w.store, Checker: reg,
		Builder:  w.passBuilder(t),
		Verifier: &verify.DTK{Registry: reg, Limits: imageread.DefaultLimits()},
		Promoter: promote.NewRemote(reg),
		Target: plan.Target{Repository: w.host + "/acme/driver-toolkit", KernelTag: "{{.KernelFull}}",
			ReleaseTags: []string{"{{.Release}}"}},
		Build:       reconcile.BuildPolicy{Timeout: 2 * time.Hour, MaxAttempts: cmp.Or(w.maxAttempts, 3), Backoff: 15 * time.Minute},
		Concurrency: 4, Log: zerolog.Nop(), ResolveTTL: time.Hour,
	}
	res, err := r.RunOnce(testContext(t), w.now, w.opts)
	if err != nil {
		t.Fatalf("pass: %v", err)
	}
	return res
}

func (w *passWorld) passBuilder(t *testing.T) builder.Builder {
	var b builder.Builder = w.builder(t, nil)
	if w.wrap != nil {
		b = w.wrap(b)
	}
	return b
}

func (w *passWorld) image(t *testing.T) ledger.Image {
	t.Helper()
	var m ledger.Image
	if err := w.store.View(func(tx *state.Tx) error {
		dtks, err := tx.DTKs()
		for _, k := range dtks {
			if k.Kernel == w.kernel {
				m = k
			}
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return m
}

// waitJob waits until the Job of attempt reads want (a Job runs on its own
// time, not the pass's).
func (w *passWorld) waitJob(t *testing.T, attempt int, want State) {
	t.Helper()
	waitOutcome(t, w.builder(t, nil), w.requestOf(t, attempt), want)
}

// requestOf is the request of the kernel's DTK at attempt (of its current
// round), as the pass makes it from the ledger.
func (w *passWorld) requestOf(t *testing.T, attempt int) Request {
	t.Helper()
	m := w.image(t)
	return Request{Kernel: m.Kernel, KernelFull: m.KernelFull, RTKernel: m.RTKernel, RHEL: m.RHEL, Stream: m.Stream, Arch: m.Arch,
		Image: w.host + "/acme/driver-toolkit:staging-" + m.KernelFull, Releases: m.Releases, DTKImage: m.DTKImage, Attempt: attempt, Round: m.Round}
}

// TestPassesBuildOnceThroughAJob: the first pass asks for one Job; passes
// and restarts while it runs ask for none; once the node pushed, the next
// pass verifies and promotes the image; no pass after that makes a Job.
func TestPassesBuildOnceThroughAJob(t *testing.T) {
	w := newPassWorld(t, "5.14.0-427.37.1.el9_4")
	w.node.HoldBuild(w.kernel + ".x86_64")
	w.pass(t)
	if m := w.image(t); m.State != ledger.StateBuildRequested || m.Attempts != 1 {
		t.Fatalf("after the first pass: %s, %d attempts", m.State, m.Attempts)
	}
	w.waitJob(t, 1, Running)
	for range 2 {
		w.pass(t) // restarts while the Job runs
	}
	if jobs := w.jobs(t); len(jobs) != 1 {
		t.Fatalf("%d jobs while one build runs, want 1", len(jobs))
	}
	if !w.node.ReleaseBuild(testContext(t), w.kernel+".x86_64") { // the build ends and pushes
		t.Fatal("the node holds no build of the kernel")
	}
	w.waitJob(t, 1, Succeeded)
	w.pass(t)
	m := w.image(t)
	if m.State != ledger.StatePromoted {
		t.Fatalf("after the Job succeeded: %s (%s)", m.State, m.Reason)
	}
	if d, err := w.check.Digest(testContext(t), w.host+"/acme/driver-toolkit:4.16.15"); err != nil || d.String() != m.ImageDigest {
		t.Errorf("the release tag: %s %v, want %s", d, err, m.ImageDigest)
	}
	w.pass(t)
	if jobs := w.jobs(t); len(jobs) != 1 {
		t.Errorf("%d jobs for one kernel across passes and restarts, want 1", len(jobs))
	}
}

// TestFailedJobIsRetriedAfterTheBackoff: a Job that fails spends its attempt
// at once (not after build.timeout), with a public reason and the log tail
// kept aside; no new Job before the backoff, one after, which succeeds.
func TestFailedJobIsRetriedAfterTheBackoff(t *testing.T) {
	w := newPassWorld(t, "5.14.0-503.11.1.el9_5")
	w.node.FailBuild(w.kernel+".x86_64", 1, "Error: building at STEP \"RUN dnf -y install kernel-devel\": exit status 1\n", true)
	w.pass(t)
	w.waitJob(t, 1, Failed)
	w.pass(t)
	m := w.image(t)
	if m.State != ledger.StateNew || m.Attempts != 1 || !strings.Contains(m.Reason, "failed") || !strings.Contains(m.Detail, "exit status 1") ||
		m.NextAttemptAt != w.now.Add(15*time.Minute) {
		t.Fatalf("after the Job failed: %s, %d attempts, next %s, reason %q, detail %q", m.State, m.Attempts, m.NextAttemptAt, m.Reason, m.Detail)
	}
	w.now = w.now.Add(10 * time.Minute) // within the backoff
	w.pass(t)
	if jobs := w.jobs(t); len(jobs) != 1 {
		t.Fatalf("%d jobs within the backoff, want 1", len(jobs))
	}
	w.now = w.now.Add(10 * time.Minute)
	w.pass(t)
	if m := w.image(t); m.Attempts != 2 || len(w.jobs(t)) != 2 {
		t.Fatalf("after the backoff: %d attempts, %d jobs", m.Attempts, len(w.jobs(t)))
	}
	w.waitJob(t, 2, Succeeded)
	w.pass(t)
	if m := w.image(t); m.State != ledger.StatePromoted {
		t.Errorf("the second attempt: %s (%s)", m.State, m.Reason)
	}
}

// TestDeletedJobIsNoBuild: a Job deleted while it runs spends its attempt
// and builds nothing: the image is never taken as built.
func TestDeletedJobIsNoBuild(t *testing.T) {
	w := newPassWorld(t, "5.14.0-570.12.1.el9_6")
	w.node.HoldBuild(w.kernel + ".x86_64")
	w.pass(t)
	w.waitJob(t, 1, Running)
	policy := metav1.DeletePropagationBackground
	if err := w.batch.Jobs(w.ns).Delete(testContext(t), w.jobs(t)[0].Name, metav1.DeleteOptions{PropagationPolicy: &policy}); err != nil {
		t.Fatal(err)
	}
	w.waitJob(t, 1, Gone)
	w.pass(t)
	m := w.image(t)
	if m.State != ledger.StateNew || m.Attempts != 1 || !strings.Contains(m.Reason, "is gone") || m.ImageDigest != "" {
		t.Errorf("after the Job was deleted: %s, %d attempts, %q", m.State, m.Attempts, m.Reason)
	}
}

// killedAtTheRequest is a backend whose process dies exactly when the
// pass asks it for a build: after the attempt is recorded (intent first),
// before anything reaches the API server.
type killedAtTheRequest struct{ builder.Builder }

type killed struct{}

func (killedAtTheRequest) Build(context.Context, builder.Request) error { panic(killed{}) }

// TestAKillBetweenIntentAndJobSpendsNoAttempt: a pass dies between
// recording an attempt and creating its Job. The next pass (a new process)
// finds no Job and no outcome for an attempt never asked for: it creates
// that attempt's Job rather than spend the attempt, and the build goes on
// to promotion.
func TestAKillBetweenIntentAndJobSpendsNoAttempt(t *testing.T) {
	w := newPassWorld(t, "5.14.0-427.44.1.el9_4")
	w.wrap = func(b builder.Builder) builder.Builder { return killedAtTheRequest{b} }
	func() {
		defer func() {
			if p := recover(); p != nil {
				if _, ok := p.(killed); !ok {
					panic(p)
				}
			}
		}()
		w.pass(t)
		t.Fatal("the pass was not killed")
	}()
	if m := w.image(t); m.State != ledger.StateBuildRequested || m.Attempts != 1 || len(w.jobs(t)) != 0 {
		t.Fatalf("after the kill: %s, %d attempts, %d jobs: want the attempt recorded and no Job", m.State, m.Attempts, len(w.jobs(t)))
	}
	w.store.Close()
	w.store = nil

	w.wrap = nil
	w.node.HoldBuild(w.kernel + ".x86_64") // the pass must not outlast the build
	w.pass(t)
	m := w.image(t)
	jobs := w.jobs(t)
	if m.State != ledger.StateBuildRequested || m.Attempts != 1 || m.Reason != "" || len(jobs) != 1 || jobs[0].Annotations[AnnotAttempt] != "1" {
		t.Fatalf("the pass after the kill: %s, %d attempts, reason %q, %d jobs: want attempt 1's Job created, no attempt spent", m.State, m.Attempts, m.Reason, len(jobs))
	}
	w.waitJob(t, 1, Running)
	if !w.node.ReleaseBuild(testContext(t), w.kernel+".x86_64") {
		t.Fatal("the node holds no build of the kernel")
	}
	w.waitJob(t, 1, Succeeded)
	w.pass(t)
	if m := w.image(t); m.State != ledger.StatePromoted || m.Attempts != 1 || len(w.jobs(t)) != 1 {
		t.Errorf("after the build: %s, %d attempts, %d jobs (%s)", m.State, m.Attempts, len(w.jobs(t)), m.Reason)
	}
}

// TestRetryFailedMakesANewJob: a kernel failed after its one attempt (its
// Job failed, and is kept for days by its TTL); `--retry-failed` starts a
// new round from attempt 1, which is a new Job, never the failed one taken
// for the request.
func TestRetryFailedMakesANewJob(t *testing.T) {
	w := newPassWorld(t, "5.14.0-427.45.1.el9_4")
	w.maxAttempts = 1
	w.node.FailBuild(w.kernel+".x86_64", 1, "Error: building at STEP \"RUN dnf -y install kernel-devel\": exit status 1\n", true)
	w.pass(t)
	w.waitJob(t, 1, Failed)
	w.pass(t)
	if m := w.image(t); m.State != ledger.StateFailed {
		t.Fatalf("after the one attempt failed: %s (%s)", m.State, m.Reason)
	}
	w.node.Mend(w.kernel+".x86_64", 1) // the recipe is fixed
	w.opts = reconcile.Options{RetryFailed: true}
	w.node.HoldBuild(w.kernel + ".x86_64") // the pass must not outlast the build
	w.pass(t)
	w.opts = reconcile.Options{}
	if m, jobs := w.image(t), w.jobs(t); m.State != ledger.StateBuildRequested || m.Attempts != 1 || len(jobs) != 2 {
		t.Fatalf("after --retry-failed: %s, %d attempts, %d Jobs: want attempt 1 of a new round, a new Job", m.State, m.Attempts, len(jobs))
	}
	w.waitJob(t, 1, Running)
	if !w.node.ReleaseBuild(testContext(t), w.kernel+".x86_64") {
		t.Fatal("the node holds no build of the kernel")
	}
	w.waitJob(t, 1, Succeeded)
	w.pass(t)
	if m := w.image(t); m.State != ledger.StatePromoted {
		t.Errorf("the new round's build: %s (%s)", m.State, m.Reason)
	}
}
