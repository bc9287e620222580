package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/dtkbot/dtkbot/config"
	"github.com/dtkbot/dtkbot/coverage"
	"github.com/dtkbot/dtkbot/daemon"
	"github.com/dtkbot/dtkbot/internal/citest"
	"github.com/dtkbot/dtkbot/internal/cvotest"
	"github.com/dtkbot/dtkbot/internal/githubtest"
	"github.com/dtkbot/dtkbot/internal/graphtest"
	"github.com/dtkbot/dtkbot/internal/kmodtest"
	"github.com/dtkbot/dtkbot/internal/payloadtest"
	"github.com/dtkbot/dtkbot/internal/rctest"
	"github.com/dtkbot/dtkbot/internal/registrytest"
	"github.com/dtkbot/dtkbot/internal/sigtest"
	"github.com/dtkbot/dtkbot/kmm"
	"github.com/dtkbot/dtkbot/state"
)

// runDemo is the offline demo, clearly labelled as such. It starts, on
// loopback, a registry filled with sample payloads of every era (the test
// world), an update graph publishing them, and a CI stand-in that "builds" a
// DTK image when dtkbot's signed webhook asks, and a GitHub stand-in for the
// issues and pull requests; then it runs the real
// commands against them: release-info, a reconcile, and a second reconcile
// that finds nothing to do. A newcomer sees the whole flow with no pull
// secret and no network.
func runDemo(ctx context.Context, env *cliEnv, args []string) int {
	fs := newFlagSet(env, "demo", "")
	if _, err := parseInterleaved(fs, args); err != nil {
		return usageExit(err)
	}
	dir, err := os.MkdirTemp("", "dtkbot-demo-")
	if err != nil {
		errorf(env, "demo: %v", err)
		return exitFailed
	}
	defer os.RemoveAll(dir)

	// The registry wants bearer tokens for a pull secret, as quay.io does.
	reg := registrytest.New()
	reg.RequireBearerAuth("demo-pull-bot", "demo-pull-secret")
	regHost, stopReg, err := serve(reg)
	if err != nil {
		errorf(env, "demo: starting the local registry: %v", err)
		return exitFailed
	}
	defer stopReg()
	graph := graphtest.New()
	defer graph.Close()
	world := payloadtest.New(reg, regHost)
	world.ContentSize = 1 << 20

	gh := githubtest.New("acme", "driver-ci")
	defer gh.Close()
	gh.AddToken("demo-github-token", "dtkbot-demo")
	gh.SetFile("main", "kernels.yaml", "# kernels our driver CI builds for (DEMO)\n")
	authFile := filepath.Join(dir, "pull-secret.json")
	pull := base64.StdEncoding.EncodeToString([]byte("demo-pull-bot:demo-pull-secret"))
	if err := os.WriteFile(authFile, []byte(fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, regHost, pull)), 0o600); err != nil {
		errorf(env, "demo: %v", err)
		return exitFailed
	}
	tokenFile := filepath.Join(dir, "github-token")
	if err := os.WriteFile(tokenFile, []byte("demo-github-token"), 0o600); err != nil {
		errorf(env, "demo: %v", err)
		return exitFailed
	}

	secret := "demo-webhook-secret"
	// The CI stand-in's DTKs carry a real kernel's files (Debian 12's, see
	// internal/kmodtest) and its kmod images real kbuild-built modules. Two
	// kernels differ: 5.14.0-427.40.1's DTK carries kernel-rt's kABI (a
	// stand-in for a z-stream that changes symbols the modules use: its ABI
	// verdict says which), its modules built to match; 5.14.0-427.50.1's
	// modules are built for kernel-rt, rejected on its standard kernel.
	demoCI := &citest.CI{Secret: []byte(secret), Dedupe: true}
	demoCI.SetWorld(world)
	demoCI.Change(func(b *citest.Builds) {
		b.WholeSymvers = true
		b.KernelABI = map[string]string{"5.14.0-427.40.1.el9_4": kmodtest.RT}
		b.Flavour = map[string]string{"5.14.0-427.40.1.el9_4": kmodtest.FlavourRT, "5.14.0-427.50.1.el9_4": kmodtest.FlavourRT}
	})
	ci, stopCI, err := serve(http.HandlerFunc(demoCI.Webhook))
	if err != nil {
		errorf(env, "demo: starting the CI stand-in: %v", err)
		return exitFailed
	}
	defer stopCI()

	// A signing key of the demo's own, and a signature store that holds
	// signatures for every payload of the graph but one.
	key, err := sigtest.NewKey("dtkbot demo release key")
	if err != nil {
		errorf(env, "demo: making a signing key: %v", err)
		return exitFailed
	}
	sigs := &sigtest.Store{}
	store, stopStore, err := serve(sigs)
	if err != nil {
		errorf(env, "demo: starting the signature store: %v", err)
		return exitFailed
	}
	defer stopStore()
	publish := func(channel string, p *payloadtest.Payload, signed bool) {
		graph.Publish(channel, "amd64", p.Version, p.Pullspec)
		if signed {
			sig, err := key.Sign(p.Digest, p.TagPullspec)
			if err == nil {
				sigs.Put(p.Digest, 1, sig)
			}
		}
	}

	var pullspecs []string
	for _, spec := range payloadtest.Eras() {
		p := world.Release(spec)
		pullspecs = append(pullspecs, p.TagPullspec)
		if p.Minor >= 16 && len(spec.Arches) == 0 {
			publish(fmt.Sprintf("stable-4.%d", p.Minor), p, true)
		}
	}
	// z-streams sharing a kernel, a new kernel, an inconsistent payload (DTK
	// kernel != OS kernel), an unsigned one, and one whose image-references
	// names two images for the DTK (held for good).
	for i, s := range []payloadtest.Stream{
		{Kernel: "5.14.0-427.37.1.el9_4", RTKernel: "5.14.0-427.37.1.el9_4"},
		{Kernel: "5.14.0-427.40.1.el9_4", RTKernel: "5.14.0-427.40.1.el9_4"},
		{Kernel: "5.14.0-427.42.1.el9_4", DTKKernel: "5.14.0-427.44.1.el9_4"},
		{Kernel: "5.14.0-427.50.1.el9_4"},
	} {
		v := fmt.Sprintf("4.16.%d", 16+i)
		publish("stable-4.16", world.Release(payloadtest.ReleaseSpec{Version: v, Stream: s}), v != "4.16.19")
	}
	// A release-controller with an engineering candidate of the next minor,
	// accepted weeks before any graph channel lists it.
	rc := rctest.New()
	defer rc.Close()
	ec := world.Release(payloadtest.ReleaseSpec{Version: "4.23.0-ec.1", Stream: payloadtest.Stream{Kernel: "5.14.0-611.5.1.el9_7"}})
	rc.Publish("4-dev-preview", "4.23.0-ec.1", "Accepted", ec.TagPullspec)
	if sig, err := key.Sign(ec.Digest, ec.TagPullspec); err == nil {
		sigs.Put(ec.Digest, 1, sig)
	}
	publish("stable-4.16", world.Release(payloadtest.ReleaseSpec{Version: "4.16.20", Stream: payloadtest.Stream{Kernel: "5.14.0-427.55.1.el9_4"},
		Tweak: payloadtest.DuplicateTag("driver-toolkit", regHost+"/"+world.ComponentRepo+"@sha256:"+strings.Repeat("0", 64))}), true)
	// The updates of stable-4.16: from 4.16.16, to 4.16.17 (its drivers
	// will be ready) and to 4.16.19 (whose kmod image will be rejected).
	graph.SetEdges("stable-4.16", "amd64", [][2]string{{"4.16.15", "4.16.16"}, {"4.16.15", "4.16.17"}, {"4.16.16", "4.16.17"},
		{"4.16.16", "4.16.19"}, {"4.16.17", "4.16.18"}, {"4.16.17", "4.16.19"}, {"4.16.18", "4.16.19"}, {"4.16.19", "4.16.20"}})
	pub, err := key.PublicKey()
	if err != nil {
		errorf(env, "demo: %v", err)
		return exitFailed
	}
	keyFile := filepath.Join(dir, "demo-release-key.asc")
	if err := os.WriteFile(keyFile, pub, 0o600); err != nil {
		errorf(env, "demo: %v", err)
		return exitFailed
	}
	secretFile := filepath.Join(dir, "webhook-secret")
	if err := os.WriteFile(secretFile, []byte(secret), 0o600); err != nil {
		errorf(env, "demo: %v", err)
		return exitFailed
	}
	cfg := filepath.Join(dir, "config.yaml")
	err = os.WriteFile(cfg, []byte(fmt.Sprintf(`# DEMO config: everything on loopback.
schedule: "@every 30m"
state: dtkbot.db
log: {level: error, format: json}
graph:
  url: %s
  channels: [stable-4.16, stable-4.19, stable-4.22]
release_controllers:
  - url: %s
    arch: amd64
    streams: [4-dev-preview]
registry:
  authfile: %s
  tls_verify: false
  registries_conf: /dev/null
target:
  repository: %s/demo/driver-toolkit
  release_tags: ["{{.Release}}{{.StreamSuffix}}"]
  floating_tags: ["{{.Minor}}{{.StreamSuffix}}"]
build:
  backend: webhook
  webhook:
    url: http://%s/build
    secret_file: %s
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
    build:
      backend: webhook
      max_attempts: 1
      webhook:
        url: http://%s/build
        secret_file: %s
    target:
      repository: %s/demo/simple-kmod
    verify: {label: kernel-version}
    # The CI stand-in's kmod images hold dtkbot_user and dtkbot_hello, which
    # it needs: the Module loads dtkbot_user, verified to be there.
    kmm: {module_name: dtkbot_user, namespace: demo-drivers}
verify:
  mode: warn
  signature_store: http://%s
  public_keys: [%s]
`, graph.URL(), rc.URL(), authFile, regHost, ci, secretFile, gh.URL(), tokenFile, ci, secretFile, regHost, store, keyFile)), 0o600)
	if err != nil {
		errorf(env, "demo: %v", err)
		return exitFailed
	}

	fmt.Fprintf(env.stdout, "DEMO: everything below runs on this machine: a registry at %s with sample payloads of every era,\n"+
		"DEMO: an update graph at %s, a CI stand-in that builds DTK images, and the kmod images of the\n"+
		"DEMO: consumer simple-kmod FROM them, on dtkbot's signed webhook,\n"+
		"DEMO: a GitHub stand-in at %s with the repository acme/driver-ci, a release signature\n"+
		"DEMO: store at %s signed with a key made for this demo (real releases: Red Hat's key, built in),\n"+
		"DEMO: and a release-controller at %s whose 4-dev-preview stream has accepted 4.23.0-ec.1.\n\n", regHost, graph.HTTP.URL, gh.HTTP.URL, store, rc.URL())

	fmt.Fprintln(env.stdout, "DEMO 1/4: dtkbot release-info --tls-verify=false --authfile <the demo pull secret> <one payload per era>")
	before := reg.Stats()
	code := runReleaseInfo(ctx, env, append([]string{"--tls-verify=false", "--registries-conf=/dev/null", "--authfile=" + authFile}, pullspecs...))
	cost := reg.Stats().Sub(before)
	fmt.Fprintf(env.stdout, "\nDEMO: %d payloads read with %d registry requests (+%d ping, %d tokens) and %d bytes, never a content layer.\n\n",
		len(pullspecs), cost.Requests, cost.Pings, cost.Tokens, cost.BytesServed)
	if code != exitOK {
		return code
	}

	fmt.Fprintln(env.stdout, "DEMO 2/4: dtkbot reconcile --config <demo config>   (discover, inspect, build once per kernel, verify, promote)")
	if code := runReconcile(ctx, env, []string{"--config", cfg}); code != exitOK && code != exitFailed {
		return code
	}
	fmt.Fprintf(env.stdout, "\nDEMO: tags now in %s/demo/driver-toolkit (kernel tags only ever hold verified images; builds push\n"+
		"DEMO: to staging-* tags, removed once promoted): %v\n", regHost, reg.Tags("demo/driver-toolkit"))
	if err := printTrust(env, cfg); err != nil {
		errorf(env, "demo: %v", err)
		return exitFailed
	}
	fmt.Fprintf(env.stdout, "DEMO: kmod images of the consumer simple-kmod, built FROM each promoted DTK (pinned by digest), verified to load\n"+
		"DEMO: on its kernel (every module's vermagic, symbol versions against the DTK's Module.symvers, dependencies),\n"+
		"DEMO: then promoted: %v\n", reg.Tags("demo/simple-kmod"))
	if err := printKmodVerdicts(env, cfg); err != nil {
		errorf(env, "demo: %v", err)
		return exitFailed
	}
	if err := printKMM(env, cfg); err != nil {
		errorf(env, "demo: %v", err)
		return exitFailed
	}
	fmt.Fprintln(env.stdout, "DEMO: issues and pull requests in acme/driver-ci:")
	for _, i := range gh.Issues() {
		fmt.Fprintf(env.stdout, "DEMO:   issue #%d [%s] %s\n", i.Number, i.State, i.Title)
	}
	for _, p := range gh.Pulls() {
		fmt.Fprintf(env.stdout, "DEMO:   pull request #%d [%s] %s (%s -> %s)\n", p.Number, p.State, p.Title, p.Head, p.Base)
		for _, f := range gh.Files(p.Head) {
			if strings.HasPrefix(f, "kmm/") {
				fmt.Fprintf(env.stdout, "DEMO:     with %s\n", f)
			}
		}
	}
	fmt.Fprintln(env.stdout)

	fmt.Fprintln(env.stdout, "DEMO 3/4: dtkbot reconcile again   (nothing new: one conditional graph request per channel, no payload read)")
	before = reg.Stats()
	code = runReconcile(ctx, env, []string{"--config", cfg})
	cost = reg.Stats().Sub(before)
	fmt.Fprintf(env.stdout, "DEMO: that pass made %d registry requests.\n", cost.Requests)
	if code != exitOK {
		return code
	}

	fmt.Fprintln(env.stdout, "\nDEMO: dtkbot report --config <demo config>   (the coverage, from the state file alone)")
	if code := runReport(ctx, env, []string{"--config", cfg}); code != exitOK {
		return code
	}
	page := filepath.Join(os.TempDir(), "dtkbot-demo-coverage.html")
	if code := runReport(ctx, env, []string{"--config", cfg, "-o", "html", "--out", page}); code != exitOK {
		return code
	}
	fmt.Fprintf(env.stdout, "DEMO: the coverage page, as dtkbot run serves it at / (and /api/v1/releases, /api/v1/kernels): file://%s\n", page)
	if err := printClusterUpdates(ctx, env, cfg); err != nil {
		errorf(env, "demo: %v", err)
		return exitFailed
	}
	return demoKubernetes(ctx, env, demoKube{dir: dir, reg: reg, regHost: regHost, world: world, graphURL: graph.URL(), authFile: authFile})
}

// openDemoState loads the demo's config and opens its state file to read.
func openDemoState(cfgPath string) (*config.Config, *state.Store, error) {
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return nil, nil, err
	}
	s, err := state.OpenReadOnly(cfg.StatePath(), 5*time.Second)
	return cfg, s, err
}

// demoSnapshot loads the demo's config and reads its state file whole.
func demoSnapshot(cfgPath string) (*config.Config, *state.Snapshot, error) {
	cfg, s, err := openDemoState(cfgPath)
	if err != nil {
		return nil, nil, err
	}
	defer s.Close()
	snap, err := s.Snapshot()
	return cfg, snap, err
}

// printKMM shows, from the state file, the KMM manifests of one kernel, as
// dtkbot run serves them under /api/v1/kmm/.
func printKMM(env *cliEnv, cfgPath string) error {
	cfg, snap, err := demoSnapshot(cfgPath)
	if err != nil {
		return err
	}
	ix := coverage.Build(snap, time.Now())
	pre := ix.Preflights("4.16.17", "amd64", "")
	if len(pre) == 0 {
		return fmt.Errorf("no preflight for 4.16.17")
	}
	mod, err := kmm.NewModule("simple-kmod", kmmModules(cfg)["simple-kmod"], ix.KernelMappings("simple-kmod"))
	if err != nil {
		return err
	}
	out, err := kmm.YAML(pre[0], mod)
	if err != nil {
		return err
	}
	fmt.Fprintln(env.stdout, "DEMO: KMM manifests: the PreflightValidationOCP for 4.16.17 (GET /api/v1/kmm/preflights?release=4.16.17)")
	fmt.Fprintln(env.stdout, "DEMO: and the Module of simple-kmod, one kernel mapping per promoted kmod image (GET /api/v1/kmm/modules/simple-kmod):")
	for _, line := range strings.Split(strings.TrimSuffix(string(out), "\n"), "\n") {
		fmt.Fprintf(env.stdout, "DEMO:   %s\n", line)
	}
	return nil
}

// printKmodVerdicts shows, from the state file, a kmod image rejected
// because its modules would not load, and the ABI verdicts of the 4.16
// kernels.
func printKmodVerdicts(env *cliEnv, cfgPath string) error {
	_, snap, err := demoSnapshot(cfgPath)
	if err != nil {
		return err
	}
	for _, c := range snap.Consumers {
		if c.Kernel == "5.14.0-427.50.1.el9_4" && len(c.Rejections) > 0 {
			_, why, _ := strings.Cut(c.Rejections[0].Reason, "rejected: ")
			fmt.Fprintf(env.stdout, "DEMO: rejected, never promoted: simple-kmod's image for %s (its modules were built for kernel-rt):\nDEMO:   %s\n", c.KernelFull, why)
		}
	}
	fmt.Fprintln(env.stdout, "DEMO: ABI verdicts (would each consumer's newest modules of another kernel load on this one?):")
	for _, k := range snap.Kernels {
		if k.Kernel == "5.14.0-427.37.1.el9_4" || k.Kernel == "5.14.0-427.40.1.el9_4" {
			for _, v := range k.ABI {
				fmt.Fprintf(env.stdout, "DEMO:   on %s: %s\n", k.KernelFull, v)
			}
		}
	}
	return nil
}

// printTrust shows, from the state file, each release's signature and the
// payloads held.
func printTrust(env *cliEnv, cfgPath string) error {
	_, s, err := openDemoState(cfgPath)
	if err != nil {
		return err
	}
	defer s.Close()
	exp, err := s.Export()
	if err != nil {
		return err
	}
	fmt.Fprintln(env.stdout, "DEMO: release signatures (state export):")
	for _, r := range exp.Releases {
		sig := r.Signature
		if len(sig) > 90 {
			sig = sig[:87] + "..."
		}
		fmt.Fprintf(env.stdout, "DEMO:   %-8s %s\n", r.Version, sig)
	}
	fmt.Fprintln(env.stdout, "DEMO: held payloads (never built from; not read again unless dtkbot reconcile --retry-held):")
	for _, h := range exp.Held {
		fmt.Fprintf(env.stdout, "DEMO:   %-8s %s: %s\n", h.Version, h.Kind, h.Reason)
	}
	return nil
}

// printClusterUpdates shows what a cluster at 4.16.16 whose update service
// is dtkbot is offered: dtkbot serves its update graph (as dtkbot run
// does, from the state file), the cluster-version-operator reads it
// (internal/cvotest, written from its source), and `oc adm upgrade
// --include-not-recommended` prints it.
func printClusterUpdates(ctx context.Context, env *cliEnv, cfgPath string) error {
	cfg, s, err := openDemoState(cfgPath)
	if err != nil {
		return err
	}
	defer s.Close()
	d := &daemon.Daemon{Store: s, Log: env.log, Upgrades: daemon.UpgradeOptions{Options: upgradeOptions(cfg)}}
	host, stop, err := serve(d.Handler())
	if err != nil {
		return err
	}
	defer stop()
	upstream := "http://" + host + "/api/upgrades_info/v1/graph"
	fmt.Fprintf(env.stdout, "\nDEMO 4/4: a cluster at 4.16.16 in channel stable-4.16 takes its updates from dtkbot (dtkbot run serves them; here from the state file):\n"+
		"DEMO:   oc patch clusterversion version --type merge -p '{\"spec\":{\"upstream\":\"%s\"}}'\n"+
		"DEMO: its cluster-version-operator asks GET %s?arch=amd64&channel=stable-4.16&id=<cluster id>&version=4.16.16,\n"+
		"DEMO: and `oc adm upgrade --include-not-recommended` prints:\n", upstream, upstream)
	_, updates, conditional, err := cvotest.Fetch(ctx, http.DefaultClient, upstream, "amd64", "stable-4.16", "6a1b1cbd-7a29-4c1e-9d43-6f4ab5f0c1de", "4.16.16")
	if err != nil {
		return fmt.Errorf("reading the update graph as the cluster-version-operator does: %w", err)
	}
	var out strings.Builder
	cvotest.PrintUpgrade(&out, upstream, "stable-4.16", updates, conditional)
	for _, line := range strings.Split(strings.TrimRight(out.String(), "\n"), "\n") {
		fmt.Fprintf(env.stdout, "DEMO:   %s\n", line)
	}
	fmt.Fprintln(env.stdout, "DEMO: the risk clears by itself once simple-kmod's image for that kernel is verified and promoted; an admin who accepts it:\n"+
		"DEMO:   oc adm upgrade --to=4.16.19 --allow-not-recommended\n"+
		"DEMO: (dtkbot upgrade-check --channel stable-4.16 --from 4.16.16 says the same; the coverage page draws the graph)")
	return nil
}

// serve starts h on a loopback port.
func serve(h http.Handler) (host string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h}
	go func() { _ = srv.Serve(ln) }()
	return ln.Addr().String(), func() { _ = srv.Close() }, nil
}
