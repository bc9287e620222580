package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/dtkbot/dtkbot/config"
	"github.com/dtkbot/dtkbot/coverage"
	"github.com/dtkbot/dtkbot/state"
	"github.com/dtkbot/dtkbot/upgradegraph"
	"github.com/dtkbot/dtkbot/watcher"
)

func newUpgradeCheckCommand(env *cliEnv) *cobra.Command {
	var path, server, channel, arch, from, to string
	cmd := &cobra.Command{
		Use:   "upgrade-check --channel C --from V [--to V] [--config config.yaml | --server URL]",
		Short: "The updates from a version, each with its drivers ready or not",
		Long: `The updates a cluster at --from is offered by the update graph dtkbot serves, newest first: for
each, whether its drivers are ready (every kernel it ships has a promoted, verified DTK and image
of each consumer) or what they wait for. It reads the state file, or asks a running dtkbot
(/api/v1/upgrades) with --server.

With --to: exit 0 when that update's drivers are ready, 1 when they are not, 2 when it cannot tell.`,
		Example: `  dtkbot upgrade-check --channel stable-4.16 --from 4.16.10
  dtkbot upgrade-check --channel stable-4.16 --from 4.16.10 --to 4.16.15 --server https://dtkbot.example.com`,
		Args: noArgs,
	}
	fs := cmd.Flags()
	fs.StringVar(&path, "config", "config.yaml", "the config file (its state file is read)")
	fs.StringVar(&server, "server", "", "ask a running dtkbot at this URL instead of reading the state file")
	fs.StringVar(&channel, "channel", "", "the cluster's channel (stable-4.16)")
	fs.StringVar(&arch, "arch", "amd64", "the cluster's arch: amd64, arm64, s390x, ppc64le, multi")
	fs.StringVar(&from, "from", "", "the version the cluster runs")
	fs.StringVar(&to, "to", "", "only the update to this version")
	out := addOutputFlag(fs, "table", "json", "yaml", "name")
	deadline := addDeadlineFlag(fs, 2*time.Minute)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if channel == "" || from == "" {
			return usagef("--channel and --from are required")
		}
		if err := out.check(); err != nil {
			return err
		}
		ctx, cancel := withDeadline(cmd.Context(), *deadline)
		defer cancel()
		return exit(runUpgradeCheck(ctx, env, path, server, channel, arch, from, to, out.value))
	}
	return cmd
}

// runUpgradeCheck lists the updates from a version as the update graph
// dtkbot serves offers them, each with its drivers ready or not and what
// they wait for: from the state file, or from a running daemon
// (/api/v1/upgrades). With --to it exits 0 when that update's drivers are
// ready, 1 when they are not, 2 when it cannot tell.
func runUpgradeCheck(ctx context.Context, env *cliEnv, path, server, channel, arch, from, to, output string) int {
	now := time.Now()
	var check *upgradegraph.Check
	var err error
	if server != "" {
		check, err = askServer(ctx, server, channel, arch, from, to)
	} else {
		cfg, ok := loadConfig(env, path)
		if !ok {
			return exitUsage
		}
		check, err = upgradeCheck(cfg, path, channel, arch, from, to, now)
	}
	if err != nil {
		errorf(env, "upgrade-check: %v", explainDeadline(ctx, err))
		return exitCannotTell
	}
	switch output {
	case "json", "yaml":
		err = writeDocument(env.stdout, output, check)
	case "name":
		for _, t := range check.Targets {
			fmt.Fprintln(env.stdout, t.Version)
		}
	default:
		err = check.WriteTable(env.stdout, now)
	}
	if err != nil {
		errorf(env, "upgrade-check: %v", err)
		return exitCannotTell
	}
	if to != "" && !check.Ready() {
		return exitFailed
	}
	return exitOK
}

// exitCannotTell: the command could not say (as `kmod check`'s 2).
const exitCannotTell = 2

// upgradeCheck computes, from the state file, what the daemon serves at
// /api/v1/upgrades.
func upgradeCheck(cfg *config.Config, configPath, channel, arch, from, to string, now time.Time) (*upgradegraph.Check, error) {
	store, err := openStateToRead(cfg, configPath)
	if err != nil {
		return nil, err
	}
	defer store.Close()
	served, st, err := servedFromState(cfg, store, channel, arch)
	if errors.Is(err, upgradegraph.ErrNoUpstream) {
		return nil, fmt.Errorf("%w: run `dtkbot reconcile --config %s` first", err, configPath)
	}
	if err != nil {
		return nil, err
	}
	return served.Check(from, to, upgradegraph.UpstreamAt(st.ReadAt, st.Failure, st.FailedAt, now))
}

// servedFromState is the update graph of channel and arch the daemon
// serves, computed from the state file (the daemon's caches aside).
func servedFromState(cfg *config.Config, store *state.Store, channel, arch string) (*upgradegraph.Served, watcher.GraphState, error) {
	snap, st, err := store.GraphView(channel, arch, nil)
	if err != nil {
		return nil, st, fmt.Errorf("reading state: %w", err)
	}
	served, err := upgradegraph.Compute(upgradegraph.Input{Options: upgradeOptions(cfg), Channel: channel, Arch: arch,
		Upstream: st.Upstream, Snapshot: snap, PageURL: pageURL(cfg)})
	return served, st, err
}

// updatePictures draws, from the state, the update graph of each watched
// channel (only channel, when set) and arch for the coverage page.
func updatePictures(cfg *config.Config, store *state.Store, channel string) []coverage.UpdateGraph {
	var out []coverage.UpdateGraph
	for _, ch := range cfg.Graph.Channels {
		if channel != "" && ch != channel {
			continue
		}
		for _, arch := range cfg.Graph.Arches {
			g := coverage.UpdateGraph{Channel: ch, Arch: arch}
			if served, _, err := servedFromState(cfg, store, ch, arch); err != nil {
				g.Note = err.Error()
			} else {
				g.Picture = served.Picture(upgradegraph.PictureOptions{})
			}
			out = append(out, g)
		}
	}
	return out
}

// pageURL is the coverage page risks link to: upgrades.public_url, else
// the daemon's listener on this host.
func pageURL(cfg *config.Config) string {
	if cfg.Upgrades.PublicURL != "" {
		return cfg.Upgrades.PublicURL
	}
	scheme, host := "http", cfg.Listen
	if cfg.ListenTLS != nil {
		scheme = "https"
	}
	if strings.HasPrefix(host, ":") {
		host = "localhost" + host
	}
	return scheme + "://" + host + "/"
}

// askServer gets /api/v1/upgrades of a running dtkbot.
func askServer(ctx context.Context, server, channel, arch, from, to string) (*upgradegraph.Check, error) {
	u, err := url.Parse(strings.TrimSuffix(server, "/") + "/api/v1/upgrades")
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--server %q is not an http(s) URL", server)
	}
	q := url.Values{"channel": {channel}, "arch": {arch}, "from": {from}}
	if to != "" {
		q.Set("to", to)
	}
	u.RawQuery = q.Encode()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", "dtkbot/"+version)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("asking %s: %w", u.Redacted(), err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("reading the answer of %s: %w", u.Redacted(), err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Kind, Value string }
		if json.Unmarshal(body, &e) == nil && e.Value != "" {
			return nil, fmt.Errorf("%s: %s", resp.Status, e.Value)
		}
		return nil, fmt.Errorf("%s answered %s", u.Redacted(), resp.Status)
	}
	var check upgradegraph.Check
	if err := json.Unmarshal(body, &check); err != nil {
		return nil, fmt.Errorf("reading the answer of %s: %w", u.Redacted(), err)
	}
	return &check, nil
}
