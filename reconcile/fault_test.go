package reconcile

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/sirupsen/logrus"
	"go.uber.org/goleak"

	"github.com/dtkbot/dtkbot/breaker"
	"github.com/dtkbot/dtkbot/builder"
	"github.com/dtkbot/dtkbot/internal/citest"
	"github.com/dtkbot/dtkbot/internal/faulttest"
	"github.com/dtkbot/dtkbot/internal/githubtest"
	"github.com/dtkbot/dtkbot/internal/need"
	"github.com/dtkbot/dtkbot/internal/payloadtest"
	"github.com/dtkbot/dtkbot/notify"
	"github.com/dtkbot/dtkbot/plan"
	"github.com/dtkbot/dtkbot/registry"
)

// endState is what a run leaves in the world, comparable across worlds.
type endState struct {
	Kernels      map[string]string // kernel key -> state
	Tags         map[string]string // tag -> digest
	Issues       []string          // titles, with state
	Pulls        []string
	UniqueBuilds int
}

// faultyRun is one world of 12 releases and 4 kernels on two channels,
// reconciled pass after pass until nothing is left to do, with every server
// (registry, update graph, build webhook, GitHub) behind inj.
type faultyRun struct {
	state      endState
	passes     int
	cut        int // passes their hang guard ended
	deliveries int
}

// callTimeout bounds every call of this suite's clients (registry, graph,
// build webhook, GitHub). A stalled answer never ends by itself (the stall
// lasts until its client hangs up), so it is what makes stalls end; a live
// answer of these in-process servers on loopback takes milliseconds, a
// thousandth of it. Were a loaded machine ever to make a live call outlast
// it, that call would be one more fault of the kind the suite injects, and
// the verdict (the end state equals the clean run's) is the same: it costs
// time, never the outcome.
const callTimeout = 2 * time.Second

// passHangGuard ends a pass that hangs. A pass of this suite takes well
// under a second plus a callTimeout for each stall it meets; one the guard
// ends is a pass some client waited on without a timeout, and fails the
// suite.
const passHangGuard = 2 * time.Minute

func runToConvergence(t *testing.T, inj *faulttest.Injector) faultyRun {
	t.Helper()
	wrap := func(h http.Handler) http.Handler { return h }
	if inj != nil {
		wrap = inj.Wrap
	}
	h := newHarnessWith(t, wrap, wrap)
	h.channels = []string{"stable-4.16", "fast-4.16"}
	h.regOpts = registry.Options{AuthFile: h.regOpts.AuthFile, Timeout: callTimeout, Attempts: 6, Backoff: 5 * time.Millisecond}
	// A build request a proxy acknowledged but never delivered (a 200 with
	// garbage) is only noticed when the build does not appear in time: with
	// the clock moving a minute per pass, three passes.
	h.policy = BuildPolicy{Timeout: 3 * time.Minute, MaxAttempts: 50, Backoff: time.Millisecond}

	gh := githubtest.NewWith("acme", "driver-ci", wrap)
	t.Cleanup(gh.Close)
	gh.AddToken("ghp_fault", "dtkbot-user")
	gh.SetFile("main", "kernels.yaml", "")

	// The CI drops repeated deliveries of one build, as the header invites.
	ci := &citest.CI{Secret: []byte("s"), Dedupe: true}
	ci.SetWorld(h.world)
	ciServer := httptest.NewServer(wrap(http.HandlerFunc(ci.Webhook)))
	t.Cleanup(ciServer.Close)

	for i := 0; i < 12; i++ {
		k := payloadtest.Stream{Kernel: fmt.Sprintf("5.14.0-427.%d.1.el9_4", 30+i/3)}
		ch := []string{"stable-4.16", "fast-4.16"}[i%2]
		h.publish(ch, fmt.Sprintf("4.16.%d", 10+i), k)
	}
	// Every client has its timeout, as dtkbot wires them (breaker.Transport).
	timed := func(service string) *http.Client {
		return &http.Client{Transport: &breaker.Transport{Service: service, Timeout: callTimeout}}
	}
	client, _ := notify.NewClientWith(gh.URL(), notify.TokenAuth{File: writeToken(t, "ghp_fault")}, &breaker.Transport{Service: "github", Timeout: callTimeout})
	newReconciler := func() *Reconciler {
		r := realEffects(h, &builder.WebhookBuilder{URL: ciServer.URL, Secret: []byte("s"), Attempts: 3, Backoff: time.Millisecond, HTTP: timed("build-webhook")})()
		r.Discoverer.Graph.HTTP = timed("update-graph")
		n, err := notify.New(client, notify.TokenAuth{File: writeToken(t, "ghp_fault")}, notify.Options{Repository: "acme/driver-ci",
			CloseWhenPromoted: true, MutationInterval: time.Millisecond, MaxWait: 2 * time.Second,
			PullRequest: &notify.PullRequestOptions{Path: "kernels.yaml"}}, h.store, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		r.Notifier = n
		return r
	}

	var run faultyRun
	quiet := 0
	for run.passes = 1; run.passes <= 80 && quiet < 2; run.passes++ {
		ctx, cancel := context.WithTimeout(context.Background(), passHangGuard)
		res, err := newReconciler().RunOnce(ctx, h.now, Options{})
		if ctx.Err() != nil {
			run.cut++
		}
		cancel()
		pending := 0
		for _, a := range res.Actions {
			if a.Type != plan.ActionHold {
				pending++
			}
		}
		settled := true
		for _, k := range kernels(t, h.store) {
			settled = settled && (k.State == "promoted" || k.State == "failed")
		}
		if err == nil && pending == 0 && len(res.Errors) == 0 && res.Releases == 12 && settled {
			quiet++
		} else {
			quiet = 0
		}
		h.now = h.now.Add(time.Minute) // lets rate limits and backoffs expire
		if run.passes%10 == 0 {
			h.restart()
		}
	}
	run.passes--
	if inj != nil {
		inj.SetOn(false)
		inj.Release() // none should be left: every client gave up on its stalls
	}

	run.state = endState{Kernels: map[string]string{}, Tags: map[string]string{}}
	exp, err := h.store.Export()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range exp.Kernels {
		run.state.Kernels[k.Key()] = k.State
	}
	for _, tag := range h.srv.Tags("dtkbot/driver-toolkit") {
		d, _ := h.srv.TagDigest("dtkbot/driver-toolkit", tag)
		run.state.Tags[tag] = d.String()
	}
	for _, i := range gh.Issues() {
		run.state.Issues = append(run.state.Issues, i.State+" "+i.Title)
	}
	for _, p := range gh.Pulls() {
		run.state.Pulls = append(run.state.Pulls, p.State+" "+p.Head)
	}
	sort.Strings(run.state.Issues)
	sort.Strings(run.state.Pulls)
	builds := ci.Builds()
	run.state.UniqueBuilds = len(builds)
	for _, n := range builds {
		run.deliveries += n
	}
	return run
}

func init() {
	// containers/image logs its reconnections at info level: not this suite's news.
	logrus.SetLevel(logrus.WarnLevel)
}

func writeToken(t *testing.T, tok string) string {
	t.Helper()
	p := t.TempDir() + "/token"
	if err := writeFile(p, tok); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestFaultsConverge is the fault-injection suite: with 30% of the requests
// to every server failing (5xx, 429 with Retry-After, connections cut
// mid-body, bodies that stall until the client gives up, corrupt bytes,
// garbage), repeated passes reach the same end state as a clean run, every
// stall is given up by its client (counted by the injector: no stall ends
// by itself), no pass needs its hang guard, and no goroutine is left
// behind. Nothing is timed: the verdicts are states and counts.
func TestFaultsConverge(t *testing.T) {
	need.Long(t, "runs dozens of passes")
	t.Cleanup(func() { goleak.VerifyNone(t, goleak.IgnoreCurrent()) })
	clean := runToConvergence(t, nil)
	inj := faulttest.New(0.30, 42, faulttest.ServerError, faulttest.Unavailable, faulttest.TooMany, faulttest.Reset,
		faulttest.Stall, faulttest.Corrupt, faulttest.Garbage)
	inj.Skip = func(r *http.Request) bool { return r.URL.Path == "/v2/" } // the ping has no body to damage; its 5xx are covered elsewhere
	t.Cleanup(inj.Release)
	faulty := runToConvergence(t, inj)
	counts, total := inj.Counts()
	stalls, givenUp := inj.Stalls()
	t.Logf("clean: %d passes; with faults: %d passes, %d requests, injected %v, %d bodies stalled, %d given up by their client; build requests received %d for %d kernels",
		clean.passes, faulty.passes, total, counts, stalls, givenUp, faulty.deliveries, faulty.state.UniqueBuilds)
	if !reflect.DeepEqual(clean.state, faulty.state) {
		t.Errorf("end states differ:\nclean  %+v\nfaulty %+v", clean.state, faulty.state)
	}
	if len(clean.state.Kernels) != 4 || clean.state.UniqueBuilds != 4 || len(clean.state.Issues) != 4 || len(clean.state.Pulls) != 4 {
		t.Errorf("clean end state %+v", clean.state)
	}
	for _, st := range clean.state.Kernels {
		if st != "promoted" {
			t.Errorf("a kernel ended %s", st)
		}
	}
	for _, i := range faulty.state.Issues {
		if !strings.HasPrefix(i, "closed ") {
			t.Errorf("issue %q", i)
		}
	}
	if stalls == 0 || givenUp != stalls {
		t.Errorf("%d of %d stalled bodies were given up by their client; the others waited for the end of the run", givenUp, stalls)
	}
	if clean.cut+faulty.cut != 0 {
		t.Errorf("%d passes ran into their %s hang guard", clean.cut+faulty.cut, passHangGuard)
	}
}
