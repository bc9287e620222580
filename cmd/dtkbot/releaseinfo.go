package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dtkbot/dtkbot/config"
	"github.com/dtkbot/dtkbot/registry"
	"github.com/dtkbot/dtkbot/releaseinfo"
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

func runReleaseInfo(ctx context.Context, env *cliEnv, args []string) int {
	fs := newFlagSet(env, "release-info", "PULLSPEC... [flags]")
	arch := fs.String("arch", "amd64", "architecture to read from multi-arch payloads (amd64, arm64, s390x, ppc64le)")
	output := fs.String("o", "table", "output format: table or json")
	concurrency := fs.Int("concurrency", 4, "releases inspected at once")
	rf := addRegistryFlags(fs)
	pullspecs, err := parseInterleaved(fs, args)
	if err != nil {
		return usageExit(err)
	}
	if len(pullspecs) == 0 {
		errorf(env, "release-info: give at least one release pullspec")
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
	in := releaseinfo.New(registry.New(opts), releaseinfo.Options{Arch: *arch, Concurrency: *concurrency})
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
