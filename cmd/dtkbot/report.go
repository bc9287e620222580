package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/dtkbot/dtkbot/coverage"
	"github.com/dtkbot/dtkbot/state"
)

// runReport renders the coverage page, the kernel index or a table from the
// state file alone: what `dtkbot run` serves at / and /api/v1, for CronJob
// users who have no daemon.
func runReport(_ context.Context, env *cliEnv, args []string) int {
	fs := newFlagSet(env, "report", "[--config config.yaml] [-o html|json|table] [--out FILE] [--channel C] [--minor 4.16] [--state S]")
	path := fs.String("config", "config.yaml", "the config file")
	output := fs.String("o", "table", "output format: html (the coverage page), json (the kernel index), table")
	out := fs.String("out", "", "write to this file instead of standard output")
	var f coverage.Filter
	fs.StringVar(&f.Channel, "channel", "", "only releases of this channel")
	fs.StringVar(&f.Minor, "minor", "", "only releases of this minor (4.16)")
	fs.StringVar(&f.State, "state", "", "only releases with a stream in this state")
	if _, err := parseInterleaved(fs, args); err != nil {
		return usageExit(err)
	}
	if *output != "html" && *output != "json" && *output != "table" {
		errorf(env, "report: -o %q: want html, json or table", *output)
		return exitUsage
	}
	cfg, ok := loadConfig(env, *path)
	if !ok {
		return exitUsage
	}
	store, err := state.OpenReadOnly(cfg.StatePath(), 5*time.Second)
	if err != nil {
		errorf(env, "%v", err)
		return exitFailed
	}
	snap, err := store.Snapshot()
	var graphs []coverage.UpdateGraph
	if err == nil && *output == "html" {
		graphs = updatePictures(cfg, store, f.Channel)
	}
	store.Close()
	if err != nil {
		errorf(env, "reading state: %v", err)
		return exitFailed
	}
	ix := coverage.Build(snap, time.Now().UTC())
	var buf bytes.Buffer
	switch *output {
	case "html":
		err = coverage.WritePage(&buf, ix, coverage.PageOptions{Filter: f, UpdateGraphs: graphs})
	case "json":
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
		enc := json.NewEncoder(&buf)
		enc.SetIndent("", "  ")
		err = enc.Encode(&filtered)
	default:
		err = coverage.WriteTable(&buf, ix, f)
	}
	if err != nil {
		errorf(env, "report: %v", err)
		return exitFailed
	}
	if *out == "" {
		_, _ = env.stdout.Write(buf.Bytes())
		return exitOK
	}
	if err := writeFileAtomic(*out, buf.Bytes()); err != nil {
		errorf(env, "report: %v", err)
		return exitFailed
	}
	fmt.Fprintf(env.stdout, "wrote %s (%d releases, %d kernels)\n", *out, len(ix.Releases), len(ix.Kernels))
	return exitOK
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
