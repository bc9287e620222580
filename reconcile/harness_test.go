package reconcile

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/distribution/reference"
	"github.com/rs/zerolog"

	"github.com/dtkbot/dtkbot/builder"
	"github.com/dtkbot/dtkbot/imageread"
	"github.com/dtkbot/dtkbot/internal/citest"
	"github.com/dtkbot/dtkbot/internal/graphtest"
	"github.com/dtkbot/dtkbot/internal/payloadtest"
	"github.com/dtkbot/dtkbot/internal/rctest"
	"github.com/dtkbot/dtkbot/internal/registrytest"
	"github.com/dtkbot/dtkbot/ledger"
	"github.com/dtkbot/dtkbot/plan"
	"github.com/dtkbot/dtkbot/promote"
	"github.com/dtkbot/dtkbot/registry"
	"github.com/dtkbot/dtkbot/state"
	"github.com/dtkbot/dtkbot/verify"
	"github.com/dtkbot/dtkbot/watcher"
)

// harness is the test world of a pass: a registry with payloads, an update
// graph, a state file, and fakes for the effects that speak to the registry.
type harness struct {
	t         testing.TB
	srv       *registrytest.Server
	world     *payloadtest.World
	graph     *graphtest.Server
	rc        *rctest.Server
	rcStreams []string // release-controller streams read (none: not read)
	statePath string
	store     *state.Store
	builder   *fakeBuilder
	notifier  *fakeNotifier
	now       time.Time
	channels  []string
	arches    []string // graph arches (default amd64)
	releases  []string // config pullspecs
	target    plan.Target
	policy    BuildPolicy
	regOpts   registry.Options
}

func newHarness(t testing.TB) *harness {
	t.Helper()
	same := func(h http.Handler) http.Handler { return h }
	return newHarnessWith(t, same, same)
}

// newHarnessWith serves the registry and the graph behind wrappers (fault
// injectors).
func newHarnessWith(t testing.TB, wrapRegistry, wrapGraph func(http.Handler) http.Handler) *harness {
	t.Helper()
	srv := registrytest.New().ServerWith(wrapRegistry)
	t.Cleanup(srv.Close)
	g := graphtest.NewWith(wrapGraph)
	t.Cleanup(g.Close)
	rc := rctest.NewWith(wrapGraph)
	t.Cleanup(rc.Close)
	h := &harness{
		t: t, srv: srv, world: payloadtest.New(srv.Registry, srv.Host()), graph: g, rc: rc,
		statePath: filepath.Join(t.TempDir(), "dtkbot.db"),
		now:       time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC),
		channels:  []string{"stable-4.16"},
		arches:    []string{"amd64"},
		target: plan.Target{
			Repository:  srv.Host() + "/dtkbot/driver-toolkit",
			KernelTag:   "{{.KernelFull}}",
			ReleaseTags: []string{"{{.Release}}{{.StreamSuffix}}"},
		},
		policy: BuildPolicy{Timeout: time.Hour, MaxAttempts: 3, Backoff: 10 * time.Minute},
	}
	h.world.ContentSize = 16 << 10
	// The registry wants bearer tokens for the pull secret, as quay.io does.
	srv.RequireBearerAuth("pull-bot", "s3cret")
	h.regOpts.AuthFile = filepath.Join(t.TempDir(), "auth.json")
	auth := base64.StdEncoding.EncodeToString([]byte("pull-bot:s3cret"))
	if err := os.WriteFile(h.regOpts.AuthFile, []byte(fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, srv.Host(), auth)), 0o600); err != nil {
		t.Fatal(err)
	}
	h.builder = &fakeBuilder{world: h.world, sync: true}
	h.notifier = &fakeNotifier{}
	h.open()
	t.Cleanup(func() { h.store.Close() })
	return h
}

func (h *harness) open() {
	s, err := state.Open(h.statePath, time.Second)
	if err != nil {
		h.t.Fatal(err)
	}
	h.store = s
}

// restart closes and reopens the state file, as a new process would.
func (h *harness) restart() {
	h.store.Close()
	h.open()
}

func (h *harness) client() *registry.Client {
	f := false
	o := h.regOpts
	o.TLSVerify = &f
	if o.RegistriesConf == "" {
		o.RegistriesConf = "/dev/null" // never the machine's
	}
	if o.Backoff == 0 {
		o.Backoff = 5 * time.Millisecond
	}
	if o.Attempts == 0 {
		o.Attempts = 2
	}
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Second
	}
	return registry.New(o)
}

func (h *harness) reconciler() *Reconciler {
	reg := h.client()
	var rcs []*watcher.ReleaseController
	if len(h.rcStreams) > 0 {
		rcs = append(rcs, &watcher.ReleaseController{URL: h.rc.URL(), Arch: "amd64", Streams: h.rcStreams})
		for _, st := range h.rcStreams {
			h.rc.AddStream(st)
		}
	}
	return &Reconciler{
		Discoverer: &watcher.Discoverer{
			Graph:    &watcher.GraphClient{URL: h.graph.URL()},
			Channels: h.channels, Arches: h.arches, Releases: h.releases, Store: h.store,
			ReleaseControllers: rcs, Streams: h.store,
		},
		Registry: reg, Limits: imageread.DefaultLimits(), Store: h.store, Checker: reg,
		Builder: h.builder, Promoter: promote.NewRemote(reg), Notifier: h.notifier,
		Target: h.target, Build: h.policy, Concurrency: 4, Log: zerolog.Nop(),
		// As config.yaml's defaults: candidates are built and tagged.
		Policy:     plan.Policy{BuildKinds: []string{"rc", "ec"}, PrereleaseTags: true},
		Prerelease: PrereleasePolicy{OnWithdrawn: WithdrawTags},
		ResolveTTL: time.Hour,
	}
}

// verifying is reconciler with the DTK's verifier, as build.verify: true
// (the default) wires it.
func (h *harness) verifying() *Reconciler {
	r := h.reconciler()
	r.Verifier = &verify.DTK{Registry: r.Registry, Limits: r.Limits}
	return r
}

// publish builds a release and adds it to the channel.
func (h *harness) publish(channel, version string, s payloadtest.Stream) *payloadtest.Payload {
	return h.publishSpec(channel, payloadtest.ReleaseSpec{Version: version, Stream: s})
}

// publishSpec builds a release as spec says and adds it to the channel.
func (h *harness) publishSpec(channel string, spec payloadtest.ReleaseSpec) *payloadtest.Payload {
	p := h.world.Release(spec)
	h.graph.Publish(channel, "amd64", spec.Version, p.Pullspec)
	return p
}

func (h *harness) pass(opts Options) *Result {
	h.t.Helper()
	res, err := h.reconciler().RunOnce(context.Background(), h.now, opts)
	if err != nil {
		h.t.Fatalf("pass: %v", err)
	}
	return res
}

// count counts the actions of a type ("build"), or of a type and kind
// ("promote:kernel", "promote:release").
func count(res *Result, typ string) int {
	typ, kind, _ := strings.Cut(typ, ":")
	n := 0
	for _, a := range res.Actions {
		if a.Type == typ && (kind == "" || a.Kind == kind) {
			n++
		}
	}
	return n
}

func kernels(t testing.TB, s *state.Store) map[string]ledger.Image {
	t.Helper()
	out := map[string]ledger.Image{}
	if err := s.View(func(tx *state.Tx) error {
		ks, err := tx.DTKs()
		for _, k := range ks {
			out[k.Kernel] = k
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// fakeBuilder "builds" by pushing a DTK-like image under the requested
// reference, at once (sync) or when told (Finish).
type fakeBuilder struct {
	world *payloadtest.World
	sync  bool
	mu    sync.Mutex
	calls map[string]int
	queue []builder.Request
	// before, if set, runs first (to simulate a crash or a failure).
	before func(builder.Request) error
	// The DTKs it pushes carry the kernel's files of a real kernel (as
	// dtkbot's recipe copies them): kernelABI maps a kernel to the Debian
	// kernel whose files stand in (default kmodtest.Cloud), noKernelFiles
	// are kernels whose DTK has none (a recipe of the user's own).
	// noVariantFiles are kernels whose DTK declares the variants' kernels
	// asked for without their files.
	kernelABI      map[string]string
	noKernelFiles  map[string]bool
	noVariantFiles map[string]bool
	wholeSymvers   bool
	// notTar are kernels whose DTK's top layer is not a tar (a broken
	// build); asList are kernels whose build pushes a manifest list: the
	// DTK for amd64 and an image of someone else's for arm64 (with
	// "arm64 only", no amd64 instance at all). Set under mu.
	notTar map[string]bool
	asList map[string]string
	// lists are the manifest lists pushed, by kernel.
	lists map[string]payloadtest.Pushed
}

func (b *fakeBuilder) Build(_ context.Context, req builder.Request) error {
	if b.before != nil {
		if err := b.before(req); err != nil {
			return err
		}
	}
	b.mu.Lock()
	if b.calls == nil {
		b.calls = map[string]int{}
	}
	b.calls[req.Kernel]++
	b.queue = append(b.queue, req)
	b.mu.Unlock()
	if b.sync {
		b.Finish()
	}
	return nil
}

// Finish pushes every queued build.
func (b *fakeBuilder) Finish() {
	b.mu.Lock()
	q := b.queue
	b.queue = nil
	b.mu.Unlock()
	for _, req := range q {
		named, err := reference.ParseNormalizedNamed(req.Image)
		if err != nil {
			panic(err)
		}
		tagged := named.(reference.NamedTagged)
		repo := strings.TrimPrefix(reference.Path(named), "")
		b.mu.Lock()
		top := citest.DTKTopLayer(citest.DTKBuild{KernelFull: req.KernelFull, RTKernel: req.RTKernel, RHEL: req.RHEL, Variants: req.Variants,
			ABI: b.kernelABI[req.Kernel], WholeSymvers: b.wholeSymvers, NoKernelFiles: b.noKernelFiles[req.Kernel], NoVariantFiles: b.noVariantFiles[req.Kernel]})
		notTar, asList := b.notTar[req.Kernel], b.asList[req.Kernel]
		b.mu.Unlock()
		layer := payloadtest.TarGz(top...)
		if notTar {
			layer = []byte("a build log pushed as a layer: neither gzip, zstd nor a tar, for kernel " + req.Kernel)
		}
		dtk := payloadtest.Image{
			Labels: map[string]string{"kernel-version": req.Kernel},
			Layers: [][]byte{payloadtest.NoiseLayer("dtk-"+req.Kernel, 4096), layer},
		}
		if asList == "" {
			b.world.PushImage(repo, tagged.Tag(), dtk)
			continue
		}
		dtk.Arch = "amd64"
		arm := b.world.PushImage(repo, "", payloadtest.Image{Arch: "arm64", Layers: [][]byte{payloadtest.NoiseLayer("not a DTK at all", 4096)}})
		instances := []payloadtest.Pushed{b.world.PushImage(repo, "", dtk), arm}
		if asList == "arm64 only" {
			instances = instances[1:]
		}
		list := b.world.PushList(repo, tagged.Tag(), true, instances...)
		b.set(func(b *fakeBuilder) {
			if b.lists == nil {
				b.lists = map[string]payloadtest.Pushed{}
			}
			b.lists[req.Kernel] = list
		})
	}
}

// set changes the builder's knobs under its lock.
func (b *fakeBuilder) set(f func(b *fakeBuilder)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	f(b)
}

func (b *fakeBuilder) total() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, c := range b.calls {
		n += c
	}
	return n
}

type fakeNotifier struct {
	mu      sync.Mutex
	notices []string
}

func (n *fakeNotifier) Notify(_ context.Context, k ledger.Image) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.notices = append(n.notices, k.Kernel+"="+k.State)
	return nil
}

func writeFile(path, content string) error { return os.WriteFile(path, []byte(content), 0o600) }
