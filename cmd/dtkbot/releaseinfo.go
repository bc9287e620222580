package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/distribution/reference"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/dtkbot/dtkbot/config"
	"github.com/dtkbot/dtkbot/registry"
	"github.com/dtkbot/dtkbot/releaseinfo"
	"github.com/dtkbot/dtkbot/state"
	releaseversion "github.com/dtkbot/dtkbot/version"
	"github.com/dtkbot/dtkbot/watcher"
)

// registryFlags are the registry options every command that reads images
// takes, spelled as podman, skopeo and oc spell them. They override
// config.yaml.
type registryFlags struct {
	configPath     string
	authfile       string
	tlsVerify      bool
	insecure       bool
	registriesConf string
	timeout        time.Duration
	fs             *pflag.FlagSet
}

func addRegistryFlags(fs *pflag.FlagSet) *registryFlags {
	rf := &registryFlags{fs: fs}
	fs.StringVar(&rf.configPath, "config", "", "a config.yaml to take the registry settings from")
	fs.StringVarP(&rf.authfile, "authfile", "a", "", "the pull secret, a containers auth.json; --registry-config is the same flag, as oc names it "+
		"(default $REGISTRY_AUTH_FILE, then the containers defaults)")
	fs.BoolVar(&rf.tlsVerify, "tls-verify", true, "require HTTPS and verify certificates")
	fs.BoolVar(&rf.insecure, "insecure", false, "allow plain HTTP and unverified certificates, as oc's --insecure (the same as --tls-verify=false)")
	fs.StringVar(&rf.registriesConf, "registries-conf", "", "registries.conf with mirrors and insecure registries")
	fs.DurationVar(&rf.timeout, "timeout", 2*time.Minute, "each registry call (a call that gets no answer in time is not tried again)")
	// oc's name of the pull secret flag.
	fs.SetNormalizeFunc(func(_ *pflag.FlagSet, name string) pflag.NormalizedName {
		if name == "registry-config" {
			name = "authfile"
		}
		return pflag.NormalizedName(name)
	})
	return rf
}

// options merges config.yaml (if given) and the flags set on the command
// line. A flag that cannot be right (a pull secret that is not there,
// --insecure against --tls-verify) is a usageError.
func (rf *registryFlags) options() (registry.Options, error) {
	cfg := config.Default()
	if rf.configPath != "" {
		loaded, err := config.Load(rf.configPath)
		if err != nil {
			return registry.Options{}, usageError{err}
		}
		cfg = *loaded
	}
	opts := registryOptions(&cfg)
	if rf.fs.Changed("authfile") {
		if _, err := os.Stat(rf.authfile); err != nil {
			return registry.Options{}, usagef("--authfile: %v", err)
		}
		opts.AuthFile = rf.authfile
	}
	if rf.fs.Changed("tls-verify") && rf.fs.Changed("insecure") && rf.tlsVerify == rf.insecure {
		return registry.Options{}, usagef("--insecure=%t and --tls-verify=%t say opposite things", rf.insecure, rf.tlsVerify)
	}
	switch {
	case rf.fs.Changed("tls-verify"):
		v := rf.tlsVerify
		opts.TLSVerify = &v
	case rf.fs.Changed("insecure"):
		v := !rf.insecure
		opts.TLSVerify = &v
	}
	if rf.fs.Changed("registries-conf") {
		opts.RegistriesConf = rf.registriesConf
	}
	if rf.fs.Changed("timeout") {
		if rf.timeout <= 0 {
			return registry.Options{}, usagef("--timeout %s: must be positive", rf.timeout)
		}
		opts.Timeout = rf.timeout
	}
	// A one-shot command: a registry that does not answer costs it one
	// timeout, not one per attempt and per image.
	opts.OneShot = true
	return opts, nil
}

// releaseRepository is where OpenShift's official release payloads are, as
// `oc adm release info 4.16.15` finds them.
const releaseRepository = "quay.io/openshift-release-dev/ocp-release"

var (
	bareVersion = regexp.MustCompile(`^v?([0-9]+\.[0-9]+\.[0-9]+(?:-[0-9A-Za-z.-]+)?)$`)
	bareMinor   = regexp.MustCompile(`^v?([0-9]+\.[0-9]+)$`)
	// archTag is a version with the arch suffix of the official tags
	// (4.16.15-x86_64, 4.16.0-rc.1-aarch64, 4.16.15-multi).
	archTag = regexp.MustCompile(`^v?([0-9]+\.[0-9]+\.[0-9]+(?:-[0-9A-Za-z.-]+?)?)-(x86_64|aarch64|s390x|ppc64le|multi)$`)
)

// releasePullspec reads a release argument as oc does: a version is the
// official release for arch (4.16.15 → quay.io/openshift-release-dev/
// ocp-release:4.16.15-x86_64; v4.16.15 too), a version with its arch
// suffix is that official tag, and anything else is a pullspec with its
// registry (docker:// is taken off). A minor, or a name with no registry
// (which would go to Docker Hub), is refused with a hint.
func releasePullspec(arg, arch string) (string, error) {
	if m := bareMinor.FindStringSubmatch(arg); m != nil {
		return "", fmt.Errorf("%q: a minor is not a release: try --channel stable-%s, or a release such as %s.0", arg, m[1], m[1])
	}
	if m := archTag.FindStringSubmatch(arg); m != nil {
		if want := archSuffix(arch); want != m[2] {
			return "", fmt.Errorf("%q: the tag is for %s, and --arch is %s (%s)", arg, m[2], arch, want)
		}
		return releaseRepository + ":" + m[1] + "-" + m[2], nil
	}
	if m := bareVersion.FindStringSubmatch(arg); m != nil {
		return releaseRepository + ":" + m[1] + "-" + archSuffix(arch), nil
	}
	return imagePullspec(arg)
}

// archSuffix is the arch suffix of official release tags.
func archSuffix(arch string) string {
	if arch == "multi" {
		return "multi"
	}
	return releaseinfo.KernelArch(arch)
}

// otherTransports are containers/image's transports other than docker,
// whose references skopeo takes: dtkbot reads registries only.
var otherTransports = []string{"oci", "oci-archive", "docker-archive", "docker-daemon", "containers-storage", "dir", "tarball", "sif"}

// imagePullspec takes an image argument as a pullspec: docker:// is taken
// off (skopeo's and oc's transport name), and a name with no registry is
// refused, not sent to Docker Hub (name docker.io to mean it).
func imagePullspec(arg string) (string, error) {
	ref := strings.TrimPrefix(arg, "docker://")
	if transport, _, ok := strings.Cut(ref, "://"); ok {
		return "", fmt.Errorf("%q: only registries are read (docker://...), not %s://", arg, transport)
	}
	first, _, hasSlash := strings.Cut(ref, "/")
	if name, _, ok := strings.Cut(ref, ":"); ok && slices.Contains(otherTransports, name) {
		return "", fmt.Errorf("%q: only registries are read (docker://...), not %s:", arg, name)
	}
	if !hasSlash || (!strings.ContainsAny(first, ".:") && first != "localhost") {
		return "", fmt.Errorf("%q names no registry: give a version (4.16.15) or a pullspec with its registry "+
			"(quay.io/openshift-release-dev/ocp-release:4.16.15-x86_64; docker.io/... for Docker Hub)", arg)
	}
	if _, err := reference.ParseNormalizedNamed(ref); err != nil {
		return "", fmt.Errorf("%q is not an image reference: %v", arg, err)
	}
	return ref, nil
}

func newReleaseInfoCommand(env *cliEnv) *cobra.Command {
	var (
		arch, channel string
		concurrency   int
	)
	cmd := &cobra.Command{
		Use:   "release-info (VERSION | PULLSPEC)... [--channel C]",
		Short: "The kernels of release payloads, read from a few kilobytes each",
		Long: `The RHCOS kernel, RT kernel, RHEL version and DTK image of each release payload, per stream, read
from a few kilobytes of each payload (never an OS or DTK content layer).

A release is named as oc names it: 4.16.15 (the official payload for --arch), 4.16.15-x86_64,
quay.io/openshift-release-dev/ocp-release:4.16.15-x86_64, a pullspec by digest, or docker://....`,
		Example: `  dtkbot release-info 4.16.15
  dtkbot release-info --channel stable-4.16 -o json
  dtkbot release-info quay.io/openshift-release-dev/ocp-release@sha256:<digest> -a ~/pull-secret.json`,
	}
	fs := cmd.Flags()
	fs.StringVar(&arch, "arch", "amd64", "the instance of multi-arch payloads, the suffix of bare versions, the graph's arch (amd64, arm64, s390x, ppc64le, multi)")
	out := addOutputFlag(fs, "table", "json", "yaml", "name")
	fs.IntVar(&concurrency, "concurrency", 16, "releases inspected at once")
	fs.StringVar(&channel, "channel", "", "every release of this update graph channel (stable-4.16)")
	rf := addRegistryFlags(fs)
	deadline := addDeadlineFlag(fs, 10*time.Minute)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 && channel == "" {
			return usagef("give release versions or pullspecs, or --channel")
		}
		if err := out.check(); err != nil {
			return err
		}
		if concurrency < 1 {
			return usagef("--concurrency %d: want at least 1", concurrency)
		}
		var pullspecs []string
		for _, a := range args {
			p, err := releasePullspec(a, arch)
			if err != nil {
				return usageError{err}
			}
			pullspecs = append(pullspecs, p)
		}
		opts, err := rf.options()
		if err != nil {
			return err
		}
		ctx, cancel := withDeadline(cmd.Context(), *deadline)
		defer cancel()
		return exit(releaseInfo(ctx, env, opts, rf.configPath, pullspecs, channel, arch, concurrency, out.value))
	}
	return cmd
}

func releaseInfo(ctx context.Context, env *cliEnv, opts registry.Options, configPath string, pullspecs []string, channel, arch string, concurrency int, output string) int {
	if channel != "" {
		nodes, err := channelReleases(ctx, configPath, channel, arch)
		if err != nil {
			errorf(env, "release-info: %v", explainDeadline(ctx, err))
			return exitFailed
		}
		pullspecs = append(pullspecs, nodes...)
	}
	inspectorOpts := releaseinfo.Options{Arch: arch, Concurrency: concurrency}
	if arch == "multi" {
		inspectorOpts.Arch = "amd64"
	}
	// With a config, inspections already in its state file answer for free.
	if configPath != "" {
		if store, err := openStateForReading(configPath); err == nil {
			defer store.Close()
			inspectorOpts.Cache = store
		} else {
			env.log.Debug().Err(err).Msg("inspections are not reused")
		}
	}
	opts.Slow = slowReporter(env)
	in := releaseinfo.New(registry.New(opts), inspectorOpts)
	results := in.InspectAll(ctx, pullspecs, nil)

	var reports []*releaseinfo.Report
	failed := 0
	for _, r := range results {
		if r.Err != nil {
			failed++
			errorf(env, "%v", explainDeadline(ctx, r.Err))
			continue
		}
		reports = append(reports, r.Report)
	}
	switch output {
	case "json", "yaml":
		if reports == nil {
			reports = []*releaseinfo.Report{}
		}
		_ = writeDocument(env.stdout, output, reports)
	case "name":
		for _, r := range reports {
			fmt.Fprintln(env.stdout, pinned(r.Pullspec, r.Digest))
		}
	default:
		printReports(env.stdout, reports)
	}
	if failed > 0 {
		errorf(env, "%d of %d releases could not be read", failed, len(pullspecs))
		return exitFailed
	}
	return exitOK
}

// pinned is a pullspec by digest: the repository of pullspec, @digest.
func pinned(pullspec, digest string) string {
	n, err := reference.ParseNormalizedNamed(pullspec)
	if err != nil || digest == "" {
		return pullspec
	}
	return n.Name() + "@" + digest
}

// channelReleases lists the payloads of a graph channel for arch, oldest
// first, from the config's update service (or the official one).
func channelReleases(ctx context.Context, configPath, channel, arch string) ([]string, error) {
	cfg := config.Default()
	if configPath != "" {
		loaded, err := config.Load(configPath)
		if err != nil {
			return nil, err
		}
		cfg = *loaded
	}
	g := &watcher.GraphClient{URL: cfg.Graph.URL, HTTP: &http.Client{Timeout: cfg.Graph.Timeout.Duration}, MaxBytes: cfg.Graph.MaxBytes, UserAgent: "dtkbot/" + version}
	res, err := g.Fetch(ctx, channel, arch, watcher.GraphState{})
	if err != nil {
		return nil, err
	}
	nodes := res.State.Nodes
	sort.Slice(nodes, func(i, j int) bool { return releaseversion.Compare(nodes[i].Version, nodes[j].Version) < 0 })
	var out []string
	for _, n := range nodes {
		out = append(out, n.Payload)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("channel %s has no release for %s", channel, arch)
	}
	return out, nil
}

// openStateForReading opens the state file of a config read-only.
func openStateForReading(configPath string) (*state.Store, error) {
	cfg, err := config.Load(configPath)
	if err != nil {
		return nil, err
	}
	return state.OpenReadOnly(cfg.StatePath(), time.Second)
}

// printReports writes the table people read: one row per stream, then the
// warnings under it.
func printReports(w io.Writer, reports []*releaseinfo.Report) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "RELEASE\tARCH\tSTREAM\tKERNEL\tRT KERNEL\tRHEL\tRHCOS\tSOURCE\tCONSISTENT")
	var notes []string
	for _, r := range reports {
		for _, s := range r.Streams {
			consistent := "yes"
			if !s.Consistent {
				consistent = "NO"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Release, r.Arch, s.Stream,
				dash(s.KernelFull), dash(s.RTKernelFull), dash(s.RHELVersion), dash(s.RHCOSVersion), shortSource(s.KernelSource), consistent)
			for _, warning := range s.Warnings {
				notes = append(notes, fmt.Sprintf("%s %s %s: %s", r.Release, r.Arch, s.Stream, warning))
			}
		}
		for _, warning := range r.Warnings {
			notes = append(notes, fmt.Sprintf("%s %s: %s", r.Release, r.Arch, warning))
		}
	}
	_ = tw.Flush()
	if len(notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range notes {
			fmt.Fprintln(w, "  ! "+n)
		}
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// shortSource keeps the kind of a kernel source for the table.
func shortSource(s string) string {
	kind, _, _ := strings.Cut(s, ":")
	return kind
}
