package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/dtkbot/dtkbot/config"
	"github.com/dtkbot/dtkbot/coverage"
	"github.com/dtkbot/dtkbot/state"
)

func newReportCommand(env *cliEnv) *cobra.Command {
	var (
		path, outFile string
		f             coverage.Filter
	)
	cmd := &cobra.Command{
		Use:   "report [--config config.yaml] [-o table|html|json|yaml|name] [--out FILE]",
		Short: "The coverage page, the kernel index or a table, from the state file",
		Long: `The coverage page (-o html), the kernel index (-o json or yaml, what /api/v1 serves), the releases
(-o name) or a table, from the state file alone: what 'dtkbot run' serves, for CronJob users who
have no daemon.`,
		Args: noArgs,
	}
	fs := cmd.Flags()
	fs.StringVar(&path, "config", "config.yaml", "the config file")
	out := addOutputFlag(fs, "table", "html", "json", "yaml", "name")
	fs.StringVar(&outFile, "out", "", "write to this file instead of standard output")
	fs.StringVar(&f.Channel, "channel", "", "only releases of this channel")
	fs.StringVar(&f.Minor, "minor", "", "only releases of this minor (4.16)")
	fs.StringVar(&f.State, "state", "", "only releases with a stream in this state")
	cmd.RunE = func(*cobra.Command, []string) error {
		if err := out.check(); err != nil {
			return err
		}
		return exit(report(env, path, out.value, outFile, f))
	}
	return cmd
}

// report renders the coverage page, the kernel index or a table from the
// state file alone.
func report(env *cliEnv, path, output, out string, f coverage.Filter) int {
	cfg, ok := loadConfig(env, path)
	if !ok {
		return exitUsage
	}
	store, err := openStateToRead(cfg, path)
	if err != nil {
		errorf(env, "report: %v", err)
		return exitFailed
	}
	snap, err := store.Snapshot()
	var graphs []coverage.UpdateGraph
	if err == nil && output == "html" {
		graphs = updatePictures(cfg, store, f.Channel)
	}
	store.Close()
	if err != nil {
		errorf(env, "reading state: %v", err)
		return exitFailed
	}
	ix := coverage.Build(snap, time.Now().UTC(), coverage.Options{Variants: cfg.ConsumerVariants()})
	var buf bytes.Buffer
	switch output {
	case "html":
		err = coverage.WritePage(&buf, ix, coverage.PageOptions{Filter: f, UpdateGraphs: graphs})
	case "json", "yaml":
		filtered := *ix
		filtered.Releases = nil
		for _, r := range ix.Releases {
			if f.Match(r) {
				filtered.Releases = append(filtered.Releases, r)
			}
		}
		if filtered.Releases == nil {
			filtered.Releases = []coverage.Release{}
		}
		err = writeDocument(&buf, output, reportDoc{Index: &filtered, ConsumerVariants: ix.VariantCounts(f)})
	case "name":
		for _, r := range ix.Releases {
			if f.Match(r) {
				fmt.Fprintf(&buf, "%s/%s\n", r.Release, r.Arch)
			}
		}
	default:
		err = coverage.WriteTable(&buf, ix, f)
	}
	if err != nil {
		errorf(env, "report: %v", err)
		return exitFailed
	}
	if out == "" {
		_, _ = env.stdout.Write(buf.Bytes())
		return exitOK
	}
	if err := writeFileAtomic(out, buf.Bytes()); err != nil {
		errorf(env, "report: %v", err)
		return exitFailed
	}
	fmt.Fprintf(env.stdout, "wrote %s (%d releases, %d kernels)\n", out, len(ix.Releases), len(ix.Kernels))
	return exitOK
}

// reportDoc is `report -o json|yaml`: the kernel index, and the consumers'
// images counted per kernel variant.
type reportDoc struct {
	*coverage.Index
	ConsumerVariants []coverage.VariantCount `json:"consumer_variants,omitempty"`
}

// errNoState is a state file that is not there yet.
var errNoState = errors.New("no state yet")

// openStateToRead opens the state file of a config to read, saying where
// it looked and what to run when there is none yet.
func openStateToRead(cfg *config.Config, configPath string) (*state.Store, error) {
	p := cfg.StatePath()
	if abs, err := filepath.Abs(p); err == nil {
		p = abs
	}
	if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w at %s: run `dtkbot reconcile --config %s` first", errNoState, p, configPath)
	}
	return state.OpenReadOnly(p, 5*time.Second)
}

// writeFileAtomic replaces path with data, never leaving half a file.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
