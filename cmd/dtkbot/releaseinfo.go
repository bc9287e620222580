package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dtkbot/dtkbot/config"
	"github.com/dtkbot/dtkbot/registry"
	"github.com/dtkbot/dtkbot/releaseinfo"
	"github.com/dtkbot/dtkbot/state"
	releaseversion "github.com/dtkbot/dtkbot/version"
	"github.com/dtkbot/dtkbot/watcher"
)

// registryFlags are the registry options every command that reads images
// takes, spelled as podman and skopeo spell them. They override config.yaml.
type registryFlags struct {
	configPath     string
	authfile       string
	tlsVerify      bool
	registriesConf string
	timeout        time.Duration
	fs             *flag.FlagSet
}

func addRegistryFlags(fs *flag.FlagSet) *registryFlags {
	rf := &registryFlags{fs: fs}
	fs.StringVar(&rf.configPath, "config", "", "config.yaml to take registry settings from")
	fs.StringVar(&rf.authfile, "authfile", "", "containers auth.json / pull secret (default $REGISTRY_AUTH_FILE, then the containers defaults)")
	fs.BoolVar(&rf.tlsVerify, "tls-verify", true, "require HTTPS and verify certificates")
	fs.StringVar(&rf.registriesConf, "registries-conf", "", "registries.conf with mirrors and insecure registries")
	fs.DurationVar(&rf.timeout, "timeout", 0, "timeout of each registry call (default 2m)")
	return rf
}

// options merges config.yaml (if given) and the flags set on the command line.
func (rf *registryFlags) options() (registry.Options, error) {
	cfg := config.Default()
	if rf.configPath != "" {
		loaded, err := config.Load(rf.configPath)
		if err != nil {
			return registry.Options{}, err
		}
		cfg = *loaded
	}
	opts := registryOptions(&cfg)
	rf.fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "authfile":
			opts.AuthFile = rf.authfile
		case "tls-verify":
			v := rf.tlsVerify
			opts.TLSVerify = &v
		case "registries-conf":
			opts.RegistriesConf = rf.registriesConf
		case "timeout":
			opts.Timeout = rf.timeout
		}
	})
	return opts, nil
}

// releaseRepository is where OpenShift's official release payloads are, as
// `oc adm release info 4.16.15` finds them.
const releaseRepository = "quay.io/openshift-release-dev/ocp-release"

var bareVersion = regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+(?:-[0-9A-Za-z.-]+)?$`)

// releasePullspec turns a bare version into the official release's pullspec
// for arch (4.16.15 → quay.io/openshift-release-dev/ocp-release:4.16.15-x86_64);
// anything else is taken as a pullspec.
func releasePullspec(arg, arch string) string {
	if !bareVersion.MatchString(arg) {
		return arg
	}
	suffix := releaseinfo.KernelArch(arch)
	if arch == "multi" {
		suffix = "multi"
	}
	return releaseRepository + ":" + arg + "-" + suffix
}

func runReleaseInfo(ctx context.Context, env *cliEnv, args []string) int {
	fs := newFlagSet(env, "release-info", "PULLSPEC|VERSION... [--channel C] [flags]")
	arch := fs.String("arch", "amd64", "architecture: the instance of multi-arch payloads, the suffix of bare versions, the graph's arch (amd64, arm64, s390x, ppc64le)")
	output := fs.String("o", "table", "output format: table or json")
	concurrency := fs.Int("concurrency", 16, "releases inspected at once")
	channel := fs.String("channel", "", "every release of this update graph channel (stable-4.16)")
	rf := addRegistryFlags(fs)
	args, err := parseInterleaved(fs, args)
	if err != nil {
		return usageExit(err)
	}
	if len(args) == 0 && *channel == "" {
		errorf(env, "release-info: give release pullspecs or versions, or --channel")
		fs.Usage()
		return exitUsage
	}
	if *output != "table" && *output != "json" {
		errorf(env, "release-info: -o %q: want table or json", *output)
		return exitUsage
	}
	opts, err := rf.options()
	if err != nil {
		errorf(env, "%v", err)
		return exitUsage
	}
	var pullspecs []string
	for _, a := range args {
		pullspecs = append(pullspecs, releasePullspec(a, *arch))
	}
	if *channel != "" {
		nodes, err := channelReleases(ctx, rf.configPath, *channel, *arch)
		if err != nil {
			errorf(env, "release-info: %v", err)
			return exitFailed
		}
		pullspecs = append(pullspecs, nodes...)
	}
	inspectorOpts := releaseinfo.Options{Arch: *arch, Concurrency: *concurrency}
	if *arch == "multi" {
		inspectorOpts.Arch = "amd64"
	}
	// With a config, inspections already in its state file answer for free.
	if rf.configPath != "" {
		if store, err := openStateForReading(rf.configPath); err == nil {
			defer store.Close()
			inspectorOpts.Cache = store
		} else {
			env.log.Debug().Err(err).Msg("inspections are not reused")
		}
	}
	in := releaseinfo.New(registry.New(opts), inspectorOpts)
	results := in.InspectAll(ctx, pullspecs, nil)

	var reports []*releaseinfo.Report
	failed := 0
	for _, r := range results {
		if r.Err != nil {
			failed++
			errorf(env, "%v", r.Err)
			continue
		}
		reports = append(reports, r.Report)
	}
	if *output == "json" {
		if reports == nil {
			reports = []*releaseinfo.Report{}
		}
		enc := json.NewEncoder(env.stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(reports)
	} else {
		printReports(env.stdout, reports)
	}
	if failed > 0 {
		errorf(env, "%d of %d releases could not be read", failed, len(pullspecs))
		return exitFailed
	}
	return exitOK
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
