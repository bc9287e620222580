// Package demo is dtkbot's offline demo (cmd/dtkbot-demo, `make demo`):
// it starts, on loopback, a registry filled with sample payloads of every
// era (the test world), an update graph publishing them, a
// release-controller, a release signature store, a CI stand-in that
// "builds" DTK and kmod images when dtkbot's signed webhook asks, and a
// GitHub stand-in; then it runs the dtkbot command itself against them, as
// a user would, and tells what happened in a story that fits 100 columns,
// with the details (each command's whole output, dtkbot's log) in files it
// names.
//
// It is a package of its own so that the deployed dtkbot binary carries
// none of it: no test world, no API server runner, no module world.
package demo

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/rs/zerolog"

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
	"github.com/dtkbot/dtkbot/ledger"
	"github.com/dtkbot/dtkbot/releaseinfo"
	"github.com/dtkbot/dtkbot/state"
	"github.com/dtkbot/dtkbot/upgradegraph"
)

// Options say where the demo writes and how it runs dtkbot.
type Options struct {
	// Stdout receives the story.
	Stdout io.Writer
	// Dir receives the demo's files: its config, the state, each
	// command's whole output, dtkbot's log, the coverage page. It is
	// emptied first.
	Dir string
	// Dtkbot makes the command that runs `dtkbot args...` (the built
	// binary; a test binary in tests).
	Dtkbot func(ctx context.Context, args ...string) *exec.Cmd
}

// Exit codes of Run.
const (
	exitOK     = 0
	exitFailed = 1
)

// demo is one run: its world and where it writes.
type demo struct {
	Options
	story
	log *os.File // dtkbot's standard error, every command's
}

// Run runs the demo and returns its exit code.
func Run(ctx context.Context, opts Options) int {
	d := &demo{Options: opts, story: story{opts.Stdout}}
	if err := d.run(ctx); err != nil {
		d.say("demo: %v", err)
		if d.log != nil {
			d.say("dtkbot's log: %s", d.log.Name())
		}
		return exitFailed
	}
	return exitOK
}

// errStep is a step of the demo that went wrong; it has been said.
var errStep = errors.New("the demo stopped")

func (d *demo) run(ctx context.Context) error {
	if err := os.MkdirAll(d.Dir, 0o700); err != nil {
		return err
	}
	log, err := os.Create(filepath.Join(d.Dir, "dtkbot.log"))
	if err != nil {
		return err
	}
	defer log.Close()
	d.log = log

	// The registry wants bearer tokens for a pull secret, as quay.io does.
	reg := registrytest.New()
	reg.RequireBearerAuth("demo-pull-bot", "demo-pull-secret")
	regHost, stopReg, err := serve(reg)
	if err != nil {
		return fmt.Errorf("starting the local registry: %w", err)
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
		return fmt.Errorf("starting the CI stand-in: %w", err)
	}
	defer stopCI()

	// A signing key of the demo's own, and a signature store that holds
	// signatures for every payload of the graph but one.
	key, err := sigtest.NewKey("dtkbot demo release key")
	if err != nil {
		return fmt.Errorf("making a signing key: %w", err)
	}
	sigs := &sigtest.Store{}
	sigStore, stopStore, err := serve(sigs)
	if err != nil {
		return fmt.Errorf("starting the signature store: %w", err)
	}
	defer stopStore()
	publish := func(channel string, p *payloadtest.Payload, signed bool) {
		graph.Publish(channel, "amd64", p.Version, p.Pullspec)
		if signed {
			if sig, err := key.Sign(p.Digest, p.TagPullspec); err == nil {
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
		return err
	}
	pull := base64.StdEncoding.EncodeToString([]byte("demo-pull-bot:demo-pull-secret"))
	files := map[string]string{
		"pull-secret.json":     fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, regHost, pull),
		"github-token":         "demo-github-token",
		"webhook-secret":       secret,
		"demo-release-key.asc": string(pub),
		"config.yaml": fmt.Sprintf(`# DEMO config: everything on loopback; paths are relative to this file.
schedule: "@every 30m"
state: dtkbot.db
log: {level: info, format: json}
graph:
  url: %s
  channels: [stable-4.16, stable-4.19, stable-4.22, stable-4.23]
release_controllers:
  - url: %s
    arch: amd64
    streams: [4-dev-preview]
registry:
  authfile: pull-secret.json
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
    secret_file: webhook-secret
github:
  api_url: %s
  token_file: github-token
  repository: acme/driver-ci
  mutation_interval: 1ms
  pull_request:
    path: kernels.yaml
    kmm: {}
consumers:
  - name: simple-kmod
    # An image for the default kernel and one for the RT kernel (nodes of
    # kernelType: realtime), each with its own uname -r: its kernel tag.
    variants: [default, rt]
    build:
      backend: webhook
      max_attempts: 1
      webhook:
        url: http://%s/build
        secret_file: webhook-secret
    target:
      repository: %s/demo/simple-kmod
    verify: {label: kernel-version}
    # The CI stand-in's kmod images hold dtkbot_user and dtkbot_hello, which
    # it needs: the Module loads dtkbot_user, verified to be there.
    kmm: {module_name: dtkbot_user, namespace: demo-drivers}
verify:
  mode: warn
  signature_store: http://%s
  public_keys: [demo-release-key.asc]
`, graph.URL(), rc.URL(), regHost, ci, gh.URL(), ci, regHost, sigStore),
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(d.Dir, name), []byte(body), 0o600); err != nil {
			return err
		}
	}

	d.say("dtkbot demo: the servers below run in this process, on loopback; dtkbot runs as a user runs it.")
	d.say("Its files (the config, each command's whole output, dtkbot's log) are in %s/", d.Dir)
	d.say("")
	for _, s := range [][2]string{
		{"registry", regHost + "  payloads of 4.6 to a dual-stream 4.22, behind a pull secret"},
		{"update graph", hostOf(graph.URL()) + "  channels stable-4.16, 4.19, 4.22 (and 4.23, empty for now)"},
		{"release-controller", hostOf(rc.URL()) + "  its 4-dev-preview stream has accepted 4.23.0-ec.1"},
		{"CI", ci + "  builds DTK images, and simple-kmod's images FROM them"},
		{"GitHub", hostOf(gh.URL()) + "  the repository acme/driver-ci"},
		{"signature store", sigStore + "  signed with the demo's key (real releases: Red Hat's)"},
	} {
		d.say("  %-19s %s", s[0], s[1])
	}

	// 1: release-info.
	d.say("")
	d.say("1/6  What does each release ship? One payload per era, a few kilobytes each:")
	d.say("     $ dtkbot release-info -a pull-secret.json --insecure <%d payloads> -o json", len(pullspecs))
	before := reg.Stats()
	out, code, err := d.dtkbot(ctx, "release-info.json", append([]string{"release-info", "-a", "pull-secret.json", "--insecure",
		"--registries-conf", "/dev/null", "-o", "json"}, pullspecs...)...)
	if err != nil {
		return err
	}
	cost := reg.Stats().Sub(before)
	if code != 0 {
		d.say("     dtkbot release-info exited %d: see %s", code, d.log.Name())
		return errStep
	}
	var reports []releaseinfo.Report
	if err := json.Unmarshal(out, &reports); err != nil {
		return fmt.Errorf("reading release-info's JSON: %w", err)
	}
	d.printReleases(reports)
	d.say("     %d payloads: %d registry requests (+%d ping, %d tokens), %d KB, never a content layer.",
		len(pullspecs), cost.Requests, cost.Pings, cost.Tokens, cost.BytesServed/1024)
	d.say("     (every field of each: release-info.json)")

	// 2: a pass.
	d.say("")
	d.say("2/6  One pass: discover, read new payloads, build once per kernel, verify, promote, tell GitHub")
	d.say("     $ dtkbot reconcile --config config.yaml")
	table, code, err := d.dtkbot(ctx, "pass-1.txt", "reconcile", "--config", "config.yaml")
	if err != nil {
		return err
	}
	if code != 0 && code != 1 { // 1: a kmod image was rejected, as the demo means
		d.say("     dtkbot reconcile exited %d: see %s", code, d.log.Name())
		return errStep
	}
	d.summarisePass(table, "pass-1.txt")
	cfg, snap, err := d.snapshot()
	if err != nil {
		return err
	}
	d.printImages(reg, regHost)
	d.printRT(snap)
	d.printTrust(snap)
	d.printKmodVerdicts(snap)
	if err := d.printKMM(cfg, snap); err != nil {
		return err
	}
	d.say("     GitHub, acme/driver-ci:")
	for _, i := range gh.Issues() {
		d.say("       issue #%d [%s] %s", i.Number, i.State, i.Title)
	}
	var example []string
	for _, p := range gh.Pulls() {
		var kmmFiles []string
		for _, f := range gh.Files(p.Head) {
			if strings.HasPrefix(f, "kmm/") {
				kmmFiles = append(kmmFiles, f)
			}
		}
		d.say("       pull request #%d [%s] %s, %d KMM files", p.Number, p.State, p.Title, len(kmmFiles))
		if len(kmmFiles) > len(example) && strings.Contains(p.Title, "(rhel-9") { // the first of RHEL 9 with both
			example = kmmFiles
		}
	}
	if len(example) > 0 {
		d.say("     A pull request's KMM files, the kernel's PreflightValidationOCP and kernel mappings:")
		for _, f := range example {
			d.say("       %s", f)
		}
	}

	// 3: nothing new.
	d.say("")
	d.say("3/6  The same pass again: nothing new, one conditional graph request per channel, no payload read")
	d.say("     $ dtkbot reconcile --config config.yaml")
	before = reg.Stats()
	table, code, err = d.dtkbot(ctx, "pass-2.txt", "reconcile", "--config", "config.yaml")
	if err != nil {
		return err
	}
	cost = reg.Stats().Sub(before)
	d.summarisePass(table, "pass-2.txt")
	d.say("     that pass made %d registry requests.", cost.Requests)
	if code != 0 {
		d.say("     dtkbot reconcile exited %d: see %s", code, d.log.Name())
		return errStep
	}

	// 4: a GA release whose kernel a candidate shipped: ready before it.
	ga := world.Release(payloadtest.ReleaseSpec{Version: "4.23.0", Stream: payloadtest.Stream{Kernel: "5.14.0-611.5.1.el9_7"}})
	publish("stable-4.23", ga, true)
	d.say("")
	d.say("4/6  4.23.0 reaches channel stable-4.23. It ships the kernel of 4.23.0-ec.1, the candidate pass 1")
	d.say("     found on the release-controller: that kernel's DTK and kmod images are promoted already.")
	d.say("     $ dtkbot reconcile --config config.yaml")
	before = reg.Stats()
	table, code, err = d.dtkbot(ctx, "pass-3.txt", "reconcile", "--config", "config.yaml")
	if err != nil {
		return err
	}
	cost = reg.Stats().Sub(before)
	d.summarisePass(table, "pass-3.txt")
	if code != 0 {
		d.say("     dtkbot reconcile exited %d: see %s", code, d.log.Name())
		return errStep
	}
	if _, snap, err = d.snapshot(); err != nil {
		return err
	}
	d.printLead(snap, "4.23.0")
	d.say("     One payload read and its tags written: %d registry requests, no build.", cost.Requests)

	// 5: the coverage.
	d.say("")
	d.say("5/6  The coverage, from the state file alone (what dtkbot run serves at / and /api/v1)")
	d.say("     $ dtkbot report --config config.yaml")
	out, code, err = d.dtkbot(ctx, "report.txt", "report", "--config", "config.yaml")
	if err != nil {
		return err
	}
	if code != 0 {
		d.say("     dtkbot report exited %d: see %s", code, d.log.Name())
		return errStep
	}
	d.summariseReport(out)
	page := filepath.Join(d.Dir, "coverage.html")
	if _, code, err = d.dtkbot(ctx, "", "report", "--config", "config.yaml", "-o", "html", "--out", page); err != nil {
		return err
	} else if code != 0 {
		d.say("     dtkbot report -o html exited %d: see %s", code, d.log.Name())
		return errStep
	}
	d.say("     The coverage page, with the update graph and the lead times drawn:")
	d.say("     file://%s", page)

	// 5: a cluster's view.
	if err := d.printClusterUpdates(ctx, cfg); err != nil {
		return err
	}

	if err := d.kubernetes(ctx, demoKube{reg: reg, regHost: regHost, world: world, graphURL: graph.URL()}); err != nil {
		return err
	}
	d.say("")
	d.say("The demo's files, its config among them: %s/ (dtkbot's log: dtkbot.log)", d.Dir)
	return nil
}

// dtkbot runs `dtkbot args...` in the demo's folder: its standard output
// is returned (and kept in the file out, when named), its standard error
// goes to dtkbot.log. An error is a command that could not run at all.
func (d *demo) dtkbot(ctx context.Context, out string, args ...string) ([]byte, int, error) {
	cmd := d.Dtkbot(ctx, args...)
	cmd.Dir = d.Dir
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	fmt.Fprintf(d.log, "$ dtkbot %s\n", strings.Join(args, " "))
	cmd.Stderr = d.log
	err := cmd.Run()
	code := 0
	var exitErr *exec.ExitError
	switch {
	case errors.As(err, &exitErr):
		code = exitErr.ExitCode()
	case err != nil:
		return nil, 0, fmt.Errorf("running dtkbot %s: %w", args[0], err)
	}
	if out != "" {
		if err := os.WriteFile(filepath.Join(d.Dir, out), stdout.Bytes(), 0o600); err != nil {
			return nil, 0, err
		}
	}
	return stdout.Bytes(), code, nil
}

// printReleases is release-info's answer, narrowed to what fits: a row per
// stream.
func (d *demo) printReleases(reports []releaseinfo.Report) {
	d.say("     %-14s %-8s %-33s %-5s %s", "RELEASE", "STREAM", "KERNEL", "RHEL", "READ FROM")
	for _, r := range reports {
		for _, s := range r.Streams {
			kernel, from := s.KernelFull, s.KernelSource
			if kernel == "" {
				kernel = "unknown (not in any small file)"
			}
			if k, _, ok := strings.Cut(from, ":"); ok {
				from = k
			}
			if !s.Consistent && s.KernelFull != "" {
				from += ", INCONSISTENT"
			}
			d.say("     %-14s %-8s %-33s %-5s %s", r.Release, s.Stream, kernel, dashed(s.RHELVersion), from)
		}
	}
}

// summarisePass says what a pass did: its first line, its warnings, and
// its actions counted by kind (the table is in the file named).
func (d *demo) summarisePass(table []byte, file string) {
	lines := strings.Split(strings.TrimRight(string(table), "\n"), "\n")
	if len(lines) == 0 {
		return
	}
	d.say("     %s", lines[0])
	counts := map[string]int{}
	var kinds []string
	inTable := false
	for _, l := range lines[1:] {
		switch {
		case strings.HasPrefix(l, "  ! "):
			d.say("     %s", strings.TrimSpace(l))
		case strings.HasPrefix(l, "ACTION"):
			inTable = true
		case inTable && strings.TrimSpace(l) != "":
			f := strings.Fields(l)
			kind := f[0]
			if len(f) > 1 && !strings.Contains(f[1], ".") && f[1] != "-" { // "build simple-kmod"
				kind += " " + f[1]
			}
			if counts[kind] == 0 {
				kinds = append(kinds, kind)
			}
			counts[kind]++
		}
	}
	if len(kinds) > 0 {
		var parts []string
		for _, k := range kinds {
			parts = append(parts, fmt.Sprintf("%d %s", counts[k], k))
		}
		d.say("     actions: %s (the whole table: %s)", strings.Join(parts, ", "), file)
	}
}

// printLead says how long before a release was first seen its kernel's
// images were promoted.
func (d *demo) printLead(snap *state.Snapshot, release string) {
	ix := coverage.Build(snap, time.Now(), coverage.Options{})
	for _, row := range ix.Timeline(coverage.Filter{Release: release}, 4) {
		line := fmt.Sprintf("     %s %s: kernel %s first seen %s", row.Release, row.Stream, row.Kernel, coverage.Lead(row.KernelSeen.Sub(row.ReleaseSeen)))
		if !row.DTKPromoted.IsZero() {
			line += ", DTK promoted " + coverage.Lead(row.DTKPromoted.Sub(row.ReleaseSeen))
		}
		for _, c := range row.Consumers {
			if !c.Promoted.IsZero() {
				line += ", " + c.Consumer + " " + coverage.Lead(c.Promoted.Sub(row.ReleaseSeen))
			}
		}
		d.say("%s: ahead of the release itself (a real candidate comes weeks ahead; the page draws each release so)", line)
	}
}

// snapshot loads the demo's config and reads its state file whole.
func (d *demo) snapshot() (*config.Config, *state.Snapshot, error) {
	cfg, err := config.Load(filepath.Join(d.Dir, "config.yaml"))
	if err != nil {
		return nil, nil, err
	}
	s, err := state.OpenReadOnly(cfg.StatePath(), 5*time.Second)
	if err != nil {
		return nil, nil, err
	}
	defer s.Close()
	snap, err := s.Snapshot()
	return cfg, snap, err
}

// printImages lists the DTK images promoted, by kernel, with the releases
// each serves, and the kmod images.
func (d *demo) printImages(reg *registrytest.Registry, regHost string) {
	d.say("     DTK images, tagged in %s/demo/driver-toolkit (a kernel tag only ever holds a", regHost)
	d.say("     verified image: builds push to staging-* tags, removed once promoted):")
	tags := reg.Tags("demo/driver-toolkit")
	d.say("       %s", strings.Join(tags, " "))
	d.say("     kmod images of simple-kmod in %s/demo/simple-kmod, built FROM each promoted DTK", regHost)
	d.say("     (pinned by digest), verified to load on its kernel (vermagic, symbol versions against the")
	d.say("     DTK's Module.symvers, dependencies), then promoted:")
	d.say("       %s", strings.Join(reg.Tags("demo/simple-kmod"), " "))
}

// printRT says what simple-kmod's RT images are: one per kernel whose DTK
// carries the RT kernel, built, verified and mapped for its own uname -r.
func (d *demo) printRT(snap *state.Snapshot) {
	promoted, example := 0, ""
	for _, c := range snap.Consumers {
		if c.Variant == ledger.VariantRT && c.State == ledger.StatePromoted {
			promoted++
			if c.Kernel == "5.14.0-427.37.1.el9_4" {
				example = c.KernelFull
			}
		}
	}
	d.say("     simple-kmod asks for variants [default, rt]: %d RT images promoted (the tags ending _rt),", promoted)
	if example != "" {
		d.say("     e.g. for nodes of kernelType realtime booting %s: built with", example)
	}
	d.say("     KERNEL_VARIANT=rt FROM the same DTK, which carries kernel-rt's files, verified against those")
	d.say("     (vermagic preempt_rt, the RT kernel's CRCs), and mapped for KMM by that uname -r.")
}

// printTrust shows each release's signature and the payloads held.
func (d *demo) printTrust(snap *state.Snapshot) {
	d.say("     Release signatures:")
	rels := slices.Clone(snap.Releases)
	sort.SliceStable(rels, func(i, j int) bool { return rels[i].Version < rels[j].Version })
	for _, r := range rels {
		sig := shortDigests(r.Signature)
		d.say("       %-12s %s", r.Version, sig)
	}
	d.say("     Held (never built from; a payload is read again only with dtkbot reconcile --retry-held):")
	for _, h := range snap.Held {
		d.say("       %-12s %s: %s", h.Version, h.Kind, shortDigests(h.Reason))
	}
	for _, r := range rels {
		for _, st := range r.Streams {
			if st.Held != "" && st.Kernel != "" {
				d.say("       %-12s %s: %s", r.Version, st.Stream, st.Held)
			}
		}
	}
}

// printKmodVerdicts shows, once, the kmod image the demo means to be
// rejected, and the ABI verdicts of two kernels.
func (d *demo) printKmodVerdicts(snap *state.Snapshot) {
	for _, c := range snap.Consumers {
		if c.Kernel == "5.14.0-427.50.1.el9_4" && len(c.Rejections) > 0 {
			_, why, _ := strings.Cut(c.Rejections[0].Reason, "rejected: ")
			d.say("     EXPECTED: simple-kmod's image for %s was rejected and never promoted:", c.KernelFull)
			d.say("     the demo's CI builds its modules for kernel-rt on purpose. The verdict (in pass-1.txt and")
			d.say("     the log too):")
			d.say("       %s", why)
		}
	}
	d.say("     ABI verdicts (would a consumer's newest modules of another kernel load on this one?):")
	for _, k := range snap.Kernels {
		if k.Kernel == "5.14.0-427.37.1.el9_4" || k.Kernel == "5.14.0-427.40.1.el9_4" {
			for _, v := range k.ABI {
				d.say("       on %s: %s", k.KernelFull, v)
			}
		}
	}
}

// printKMM writes the KMM manifests of one kernel to a file, as dtkbot run
// serves them under /api/v1/kmm/, and says what they hold.
func (d *demo) printKMM(cfg *config.Config, snap *state.Snapshot) error {
	ix := coverage.Build(snap, time.Now(), coverage.Options{Variants: cfg.ConsumerVariants()})
	pre := ix.Preflights("4.16.17", "amd64", "")
	if len(pre) == 0 {
		return fmt.Errorf("no preflight for 4.16.17")
	}
	c := cfg.Consumers[0]
	mappings := ix.KernelMappings("simple-kmod")
	mod, err := kmm.NewModule("simple-kmod", kmm.ModuleOptions{Namespace: c.KMM.Namespace, ModuleName: c.KMM.ModuleName, Selector: c.KMM.Selector}, mappings)
	if err != nil {
		return err
	}
	out, err := kmm.YAML(pre[0], mod)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(d.Dir, "kmm.yaml"), out, 0o600); err != nil {
		return err
	}
	d.say("     KMM manifests (kmm.yaml): the PreflightValidationOCP for 4.16.17 and simple-kmod's Module")
	d.say("     with %d kernel mappings, one per promoted kmod image (dtkbot run serves /api/v1/kmm/...)", len(mappings))
	return nil
}

// summariseReport says how many streams are in each state, and the
// report's lines of totals: releases shown, streams covered.
func (d *demo) summariseReport(table []byte) {
	lines := strings.Split(strings.TrimRight(string(table), "\n"), "\n")
	counts := map[string]int{}
	var shown, covered string
	for _, l := range lines {
		switch {
		case strings.HasSuffix(l, " releases"):
			shown = l
		case strings.Contains(l, " streams covered"):
			covered, _, _ = strings.Cut(l, " (")
		}
	}
	for _, l := range lines[1:] {
		if strings.TrimSpace(l) == "" {
			break // the releases' rows end; the consumers' variants follow
		}
		for _, st := range coverage.States {
			if slices.Contains(strings.Fields(l), st) {
				counts[st]++
				break
			}
		}
	}
	var parts []string
	for _, st := range coverage.States {
		if counts[st] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[st], st))
		}
	}
	d.say("     %s: streams %s (the table: report.txt)", shown, strings.Join(parts, ", "))
	if covered != "" {
		d.say("     %s: their DTK and simple-kmod's default and RT images promoted", covered)
	}
}

// printClusterUpdates shows what a cluster at 4.16.16 whose update service
// is dtkbot is offered: dtkbot serves its update graph (as dtkbot run
// does, from the state file), the cluster-version-operator reads it
// (internal/cvotest, written from its source), and `oc adm upgrade
// --include-not-recommended` prints it.
func (d *demo) printClusterUpdates(ctx context.Context, cfg *config.Config) error {
	s, err := state.OpenReadOnly(cfg.StatePath(), 5*time.Second)
	if err != nil {
		return err
	}
	defer s.Close()
	opts := upgradegraph.Options{Channels: cfg.Graph.Channels, Arches: cfg.Graph.Arches, BuildKinds: cfg.Prerelease.Build}
	for _, c := range cfg.Consumers {
		opts.Consumers = append(opts.Consumers, c.Name)
	}
	dm := &daemon.Daemon{Store: s, Log: zerologTo(d.log), Upgrades: daemon.UpgradeOptions{Options: opts}}
	host, stop, err := serve(dm.Handler())
	if err != nil {
		return err
	}
	defer stop()
	upstream := "http://" + host + "/api/upgrades_info/v1/graph"
	d.say("")
	d.say("6/6  A cluster at 4.16.16 in channel stable-4.16 takes its updates from dtkbot (as dtkbot run")
	d.say("     serves them; here from the state file):")
	d.say("     $ oc patch clusterversion version --type merge -p '{\"spec\":{\"upstream\":\"%s\"}}'", upstream)
	d.say("     Its cluster-version-operator asks that URL (?arch=amd64&channel=stable-4.16&version=4.16.16")
	d.say("     &id=…), and oc prints (lines cut at 100 columns; all of it: oc-adm-upgrade.txt):")
	d.say("     $ oc adm upgrade --include-not-recommended")
	_, updates, conditional, err := cvotest.Fetch(ctx, http.DefaultClient, upstream, "amd64", "stable-4.16", "6a1b1cbd-7a29-4c1e-9d43-6f4ab5f0c1de", "4.16.16")
	if err != nil {
		return fmt.Errorf("reading the update graph as the cluster-version-operator does: %w", err)
	}
	var out strings.Builder
	cvotest.PrintUpgrade(&out, upstream, "stable-4.16", updates, conditional)
	if err := os.WriteFile(filepath.Join(d.Dir, "oc-adm-upgrade.txt"), []byte(out.String()), 0o600); err != nil {
		return err
	}
	for _, line := range strings.Split(strings.TrimRight(out.String(), "\n"), "\n") {
		d.say("%s", cut("     "+line, Width))
	}
	d.say("     The risk clears by itself once simple-kmod's image for that kernel is verified and promoted.")
	d.say("     An admin who accepts it: oc adm upgrade --to=4.16.19 --allow-not-recommended")
	d.say("     (dtkbot upgrade-check --channel stable-4.16 --from 4.16.16 says the same; the page draws it)")
	return nil
}

// zerologTo is a JSON logger into w (the demo's own servers log there).
func zerologTo(w io.Writer) zerolog.Logger { return zerolog.New(w).With().Timestamp().Logger() }

var digestPattern = regexp.MustCompile(`sha256:([0-9a-f]{12})[0-9a-f]{52}`)

// shortDigests shortens every sha256 digest of s to its first 12 hex
// digits, as people read them.
func shortDigests(s string) string { return digestPattern.ReplaceAllString(s, "sha256:$1…") }

// cut shortens a line to width columns, ending it with "…".
func cut(line string, width int) string {
	r := []rune(line)
	if len(r) <= width {
		return line
	}
	return string(r[:width-1]) + "…"
}

func hostOf(u string) string {
	u = strings.TrimPrefix(strings.TrimPrefix(u, "http://"), "https://")
	h, _, _ := strings.Cut(u, "/")
	return h
}

func dashed(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// serve starts h on a loopback port.
func serve(h http.Handler) (host string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: time.Minute}
	go func() { _ = srv.Serve(ln) }()
	return ln.Addr().String(), func() { _ = srv.Close() }, nil
}
