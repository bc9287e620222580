package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/dtkbot/dtkbot/config"
	"github.com/dtkbot/dtkbot/daemon"
	"github.com/dtkbot/dtkbot/plan"
	"github.com/dtkbot/dtkbot/reconcile"
	"github.com/dtkbot/dtkbot/registry"
	"github.com/dtkbot/dtkbot/state"
)

func cronParse(spec string) (cron.Schedule, error) { return daemon.ParseSchedule(spec) }

// stringList is a repeatable flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// loadConfig loads --config and builds the logger it configures.
func loadConfig(env *cliEnv, path string) (*config.Config, bool) {
	cfg, err := config.Load(path)
	if err != nil {
		errorf(env, "%v", err)
		return nil, false
	}
	env.log = newLogger(env.stderr, cfg.Log.Level, cfg.Log.Format)
	return cfg, true
}

func runReconcile(ctx context.Context, env *cliEnv, args []string) int {
	fs := newFlagSet(env, "reconcile", "[--config config.yaml] [--dry-run] [--channel C]... [--release V] [--retry-held] [--retry-failed] [-o table|json]")
	path := fs.String("config", "config.yaml", "the config file")
	dryRun := fs.Bool("dry-run", false, "print the plan; change nothing but the inspection cache")
	retryHeld := fs.Bool("retry-held", false, "read again the payloads held for broken content")
	retryFailed := fs.Bool("retry-failed", false, "give failed kernels a new round of build attempts")
	release := fs.String("release", "", "only this release version")
	output := fs.String("o", "table", "output format: table or json")
	var channels stringList
	fs.Var(&channels, "channel", "only this channel (repeatable)")
	if _, err := parseInterleaved(fs, args); err != nil {
		return usageExit(err)
	}
	if *output != "table" && *output != "json" {
		errorf(env, "reconcile: -o %q: want table or json", *output)
		return exitUsage
	}
	p, code := openPass(env, *path)
	if p == nil {
		return code
	}
	defer p.store.Close()
	r := p.reconciler
	if isTerminal(env.stderr) {
		r.Progress = func(done, total int) {
			if total >= 10 {
				fmt.Fprintf(env.stderr, "\rinspecting payloads: %d/%d", done, total)
				if done == total {
					fmt.Fprintln(env.stderr)
				}
			}
		}
	}
	res, err := r.RunOnce(ctx, time.Now().UTC(), reconcile.Options{DryRun: *dryRun, Channels: channels, Release: *release,
		RetryHeld: *retryHeld, RetryFailed: *retryFailed})
	if *output == "json" {
		enc := json.NewEncoder(env.stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(res)
	} else {
		printPass(env.stdout, res)
	}
	if err != nil {
		for _, e := range res.Errors {
			errorf(env, "%s", e)
		}
		return exitFailed
	}
	return exitOK
}

// printPass writes a pass's actions for people.
func printPass(w io.Writer, res *reconcile.Result) {
	mode := ""
	if res.DryRun {
		mode = " (dry run: nothing was done)"
	}
	held := ""
	if res.Held > 0 {
		held = fmt.Sprintf(", %d held", res.Held)
	}
	fmt.Fprintf(w, "%d releases, %d newly inspected%s, %d actions%s\n", res.Releases, res.Inspected, held, len(res.Actions), mode)
	for _, warning := range res.Warnings {
		fmt.Fprintf(w, "  ! %s\n", warning)
	}
	for _, s := range res.Services {
		if s.Open {
			fmt.Fprintf(w, "  ! %s stopped answering: %d requests not sent for the rest of the pass, after %s\n", s.Service, s.Skipped, s.Reason)
		}
	}
	if len(res.Actions) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\nACTION\tKERNEL\tSTREAM\tARCH\tRELEASE\tTAG / IMAGE\tREASON\tRESULT")
	for _, a := range res.Actions {
		rel := a.Release
		if a.Type == plan.ActionBuild || a.Type == plan.ActionNotify {
			rel = strings.Join(a.Releases, ",")
		}
		target := a.Tag
		if target == "" {
			target = a.Image
		}
		reason := a.Reason
		if len(reason) > 80 {
			reason = reason[:77] + "..."
		}
		what := a.Type
		if a.Consumer != "" {
			what += " " + a.Consumer // a consumer's image, not the DTK
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", what, dash(a.Kernel), dash(a.Stream), dash(a.Arch), dash(rel), dash(target), dash(reason), dash(a.Result))
	}
	_ = tw.Flush()
}

// pass is what reconcile and run share: the config, the open state file
// and the wired reconciler.
type pass struct {
	cfg        *config.Config
	store      *state.Store
	reconciler *reconcile.Reconciler
	registry   *registry.Client
}

// openPass loads the config, opens the state file and wires the pass; on
// failure it has said why and returns the exit code.
func openPass(env *cliEnv, path string) (*pass, int) {
	cfg, ok := loadConfig(env, path)
	if !ok {
		return nil, exitUsage
	}
	store, err := state.Open(cfg.StatePath(), 2*time.Second)
	if err != nil {
		errorf(env, "%v", err)
		return nil, exitFailed
	}
	r, reg, err := newReconciler(cfg, store, env.log)
	if err != nil {
		store.Close()
		errorf(env, "%v", err)
		return nil, exitUsage
	}
	return &pass{cfg: cfg, store: store, reconciler: r, registry: reg}, exitOK
}

func runDaemon(ctx context.Context, env *cliEnv, args []string) int {
	fs := newFlagSet(env, "run", "[--config config.yaml]")
	path := fs.String("config", "config.yaml", "the config file")
	if _, err := parseInterleaved(fs, args); err != nil {
		return usageExit(err)
	}
	p, code := openPass(env, *path)
	if p == nil {
		return code
	}
	defer p.store.Close()
	cfg := p.cfg
	var token []byte
	if p := cfg.TriggerTokenPath(); p != "" {
		raw, err := os.ReadFile(p)
		if err != nil {
			errorf(env, "reading trigger_token_file: %v", err)
			return exitUsage
		}
		token = []byte(strings.TrimSpace(string(raw)))
	}
	d := &daemon.Daemon{
		Passer: p.reconciler, Store: p.store, Registry: p.registry, Schedule: cfg.Schedule, Listen: cfg.Listen,
		TriggerToken: token, StaleAfter: staleAfter(cfg.Schedule, time.Now()), Version: version, Log: env.log,
		SignatureMode: cfg.Verify.Mode, KMMModules: kmmModules(cfg),
		Upgrades: daemon.UpgradeOptions{Options: upgradeOptions(cfg), PublicURL: cfg.Upgrades.PublicURL,
			Rate: cfg.Upgrades.RateLimit, Burst: cfg.Upgrades.Burst},
	}
	if certFile, keyFile, ok := cfg.ListenTLSFiles(); ok {
		d.TLS = &daemon.TLSFiles{CertFile: certFile, KeyFile: keyFile}
	}
	if s := p.reconciler.Signatures; s != nil {
		d.SignatureTrust = s.Trust()
	}
	if err := d.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		errorf(env, "%v", err)
		return exitFailed
	}
	return exitOK
}

func runValidateConfig(_ context.Context, env *cliEnv, args []string) int {
	fs := newFlagSet(env, "validate-config", "[--config config.yaml]")
	path := fs.String("config", "config.yaml", "the config file")
	if _, err := parseInterleaved(fs, args); err != nil {
		return usageExit(err)
	}
	if _, err := config.Load(*path); err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintln(env.stderr, line)
		}
		return exitUsage
	}
	fmt.Fprintf(env.stdout, "%s: ok\n", *path)
	return exitOK
}

// runState is `dtkbot state export|check|recover`.
func runState(ctx context.Context, env *cliEnv, args []string) int {
	const usage = "usage: dtkbot state export|check|recover [--config config.yaml]"
	if len(args) == 0 {
		errorf(env, usage)
		return exitUsage
	}
	switch args[0] {
	case "export":
		return runStateExport(ctx, env, args[1:])
	case "check":
		return runStateCheck(ctx, env, args[1:])
	case "recover":
		return runStateRecover(ctx, env, args[1:])
	}
	errorf(env, "state %q: %s", args[0], usage)
	return exitUsage
}

func runStateExport(_ context.Context, env *cliEnv, args []string) int {
	fs := newFlagSet(env, "state export", "[--config config.yaml] [-o json]")
	path := fs.String("config", "config.yaml", "the config file")
	output := fs.String("o", "json", "output format: json")
	if _, err := parseInterleaved(fs, args); err != nil {
		return usageExit(err)
	}
	if *output != "json" {
		errorf(env, "state export: -o %q: only json", *output)
		return exitUsage
	}
	cfg, ok := loadConfig(env, *path)
	if !ok {
		return exitUsage
	}
	store, err := state.OpenReadOnly(cfg.StatePath(), 2*time.Second)
	if err != nil {
		errorf(env, "%v", err)
		return exitFailed
	}
	defer store.Close()
	exp, err := store.Export()
	if err != nil {
		errorf(env, "exporting state: %v", err)
		return exitFailed
	}
	enc := json.NewEncoder(env.stdout)
	enc.SetIndent("", "  ")
	_ = enc.Encode(exp)
	return exitOK
}

// runStateCheck reads the whole state file (state.Check): exit 0 when this
// dtkbot can use it, 1 when it cannot (each problem said).
func runStateCheck(_ context.Context, env *cliEnv, args []string) int {
	fs := newFlagSet(env, "state check", "[--config config.yaml]")
	path := fs.String("config", "config.yaml", "the config file")
	if _, err := parseInterleaved(fs, args); err != nil {
		return usageExit(err)
	}
	cfg, ok := loadConfig(env, *path)
	if !ok {
		return exitUsage
	}
	h, err := state.Check(cfg.StatePath(), 2*time.Second)
	if err != nil {
		errorf(env, "%v", err)
		return exitFailed
	}
	if h.OK() {
		fmt.Fprintf(env.stdout, "%s: ok (schema %d)\n", h.Path, h.Schema)
		return exitOK
	}
	fmt.Fprintf(env.stdout, "%s: this dtkbot cannot use it:\n", h.Path)
	for _, p := range h.Problems {
		fmt.Fprintf(env.stdout, "  %s\n", p)
	}
	if h.Newer {
		fmt.Fprintln(env.stdout, "Upgrade dtkbot: a newer one wrote this file.")
	} else {
		fmt.Fprintf(env.stdout, "`dtkbot state recover --config %s` moves it aside and starts empty; the next pass rebuilds the state from the registry and GitHub.\n", *path)
	}
	return exitFailed
}

// runStateRecover moves an unusable state file aside and starts empty
// (state.Recover), loudly: on standard error and in the log.
func runStateRecover(_ context.Context, env *cliEnv, args []string) int {
	fs := newFlagSet(env, "state recover", "[--config config.yaml] [--force]")
	path := fs.String("config", "config.yaml", "the config file")
	force := fs.Bool("force", false, "move the file aside even when it is sound, or of a newer schema")
	if _, err := parseInterleaved(fs, args); err != nil {
		return usageExit(err)
	}
	cfg, ok := loadConfig(env, *path)
	if !ok {
		return exitUsage
	}
	rec, err := state.Recover(cfg.StatePath(), time.Now(), *force)
	switch {
	case errors.Is(err, state.ErrSound):
		fmt.Fprintf(env.stdout, "%s: ok (schema %d): nothing to recover (--force moves it aside all the same)\n", cfg.StatePath(), rec.Health.Schema)
		return exitOK
	case err != nil:
		errorf(env, "recovering the state: %v", err)
		return exitFailed
	}
	for _, p := range rec.Health.Problems {
		env.log.Error().Str("state", cfg.StatePath()).Str("problem", p).Msg("the state file cannot be used")
	}
	env.log.Error().Str("state", cfg.StatePath()).Str("moved_to", rec.MovedTo).
		Msg("the state file was moved aside and an empty one started: the next pass rebuilds it from the registry and GitHub")
	fmt.Fprintf(env.stderr, "dtkbot: MOVED the state file %s ASIDE to %s and started an empty one.\n"+
		"The next pass rebuilds the state from the world: it finds the images at dtkbot's tags (and verifies them again),\n"+
		"its issues and pull requests by their markers, and reads each payload once more. Nothing was deleted.\n", cfg.StatePath(), rec.MovedTo)
	return exitOK
}
