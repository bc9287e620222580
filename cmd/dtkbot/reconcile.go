package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/robfig/cron/v3"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/dtkbot/dtkbot/config"
	"github.com/dtkbot/dtkbot/daemon"
	"github.com/dtkbot/dtkbot/plan"
	"github.com/dtkbot/dtkbot/reconcile"
	"github.com/dtkbot/dtkbot/registry"
	"github.com/dtkbot/dtkbot/state"
)

func cronParse(spec string) (cron.Schedule, error) { return daemon.ParseSchedule(spec) }

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

func newReconcileCommand(env *cliEnv) *cobra.Command {
	var (
		path, release                  string
		dryRun, retryHeld, retryFailed bool
		channels                       []string
		kube                           kubeFlags
	)
	cmd := &cobra.Command{
		Use:   "reconcile [--config config.yaml] [--dry-run]",
		Short: "One pass: discover releases, read new payloads, build, verify, promote, audit, notify",
		Long: `One pass, as 'dtkbot run' runs on its schedule: discover releases, read each new payload's kernels,
build a DTK once per kernel and each consumer's kmod image FROM it, verify, promote, audit the tags,
tell GitHub. Exit 1 when something the pass did failed (after doing everything it could).`,
		Example: `  dtkbot reconcile --config config.yaml --dry-run
  dtkbot reconcile --config config.yaml --channel stable-4.16 -o json`,
		Args: noArgs,
	}
	fs := cmd.Flags()
	fs.StringVar(&path, "config", "config.yaml", "the config file")
	fs.BoolVar(&dryRun, "dry-run", false, "print the plan; change nothing but the inspection cache")
	fs.BoolVar(&retryHeld, "retry-held", false, "read again the payloads held for broken content")
	fs.BoolVar(&retryFailed, "retry-failed", false, "give failed images a new round of build attempts")
	fs.StringVar(&release, "release", "", "only this release version")
	fs.StringArrayVar(&channels, "channel", nil, "only this channel (repeatable)")
	out := addOutputFlag(fs, "table", "json", "yaml")
	kube.add(fs)
	deadline := addDeadlineFlag(fs, 0)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := out.check(); err != nil {
			return err
		}
		ctx, cancel := withDeadline(cmd.Context(), *deadline)
		defer cancel()
		return exit(reconcileOnce(ctx, env, path, kube, out.value, reconcile.Options{DryRun: dryRun, Channels: channels, Release: release,
			RetryHeld: retryHeld, RetryFailed: retryFailed}))
	}
	return cmd
}

func reconcileOnce(ctx context.Context, env *cliEnv, path string, kube kubeFlags, output string, opts reconcile.Options) int {
	p, code := openPass(env, path, kube)
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
	res, err := r.RunOnce(ctx, time.Now().UTC(), opts)
	if output != "table" {
		_ = writeDocument(env.stdout, output, res)
	} else {
		printPass(env.stdout, res)
	}
	if err != nil {
		for _, e := range res.Errors {
			errorf(env, "%s", e)
		}
		if ctx.Err() != nil {
			errorf(env, "%v", context.Cause(ctx))
		}
		return exitFailed
	}
	return exitOK
}

// kubeFlags are oc's --kubeconfig and -n for the kubernetes build
// backend: they override build.kubernetes (and each consumer's).
type kubeFlags struct {
	kubeconfig, namespace string
}

func (k *kubeFlags) add(fs *pflag.FlagSet) {
	fs.StringVar(&k.kubeconfig, "kubeconfig", "", "the kubeconfig of the kubernetes build backend (overrides build.kubernetes.kubeconfig)")
	fs.StringVarP(&k.namespace, "namespace", "n", "", "the namespace of the kubernetes build backend's Jobs (overrides build.kubernetes.namespace)")
}

// apply puts the flags into the config; a flag with no kubernetes backend
// to apply to is a usage error.
func (k kubeFlags) apply(cfg *config.Config) error {
	if k.kubeconfig == "" && k.namespace == "" {
		return nil
	}
	if k.kubeconfig != "" {
		abs, err := filepath.Abs(k.kubeconfig)
		if err != nil {
			return err
		}
		if _, err := os.Stat(abs); err != nil {
			return fmt.Errorf("--kubeconfig: %w", err)
		}
		k.kubeconfig = abs
	}
	used := false
	set := func(b *config.BuildBackend) {
		if b.Backend != "kubernetes" {
			return
		}
		used = true
		if k.kubeconfig != "" {
			b.Kubernetes.Kubeconfig = k.kubeconfig
		}
		if k.namespace != "" {
			b.Kubernetes.Namespace = k.namespace
		}
	}
	set(&cfg.Build.BuildBackend)
	for i := range cfg.Consumers {
		set(&cfg.Consumers[i].Build)
	}
	if !used {
		return errors.New("--kubeconfig and --namespace are for build.backend kubernetes, which this config does not use")
	}
	return nil
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
func openPass(env *cliEnv, path string, kube kubeFlags) (*pass, int) {
	cfg, ok := loadConfig(env, path)
	if !ok {
		return nil, exitUsage
	}
	if err := kube.apply(cfg); err != nil {
		errorf(env, "%v", err)
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

func newRunCommand(env *cliEnv) *cobra.Command {
	var (
		path string
		kube kubeFlags
	)
	cmd := &cobra.Command{
		Use:   "run [--config config.yaml]",
		Short: "The daemon: a pass at start and on the schedule, with its HTTP endpoints",
		Long: `The daemon: the pass of 'dtkbot reconcile' at start and on the config's schedule, with the coverage
page (/), the JSON API (/api/v1), the update graph clusters read (/api/upgrades_info/v1/graph),
/healthz, /readyz, /metrics, /status and POST /trigger.`,
		Args: noArgs,
	}
	cmd.Flags().StringVar(&path, "config", "config.yaml", "the config file")
	kube.add(cmd.Flags())
	cmd.RunE = func(cmd *cobra.Command, _ []string) error { return exit(runDaemon(cmd.Context(), env, path, kube)) }
	return cmd
}

func runDaemon(ctx context.Context, env *cliEnv, path string, kube kubeFlags) int {
	p, code := openPass(env, path, kube)
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
		SignatureMode: cfg.Verify.Mode, KMMModules: kmmModules(cfg), Services: outsideServices(cfg),
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

func newValidateConfigCommand(env *cliEnv) *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "validate-config [--config config.yaml]",
		Short: "Every problem of the config at once, each with its key and line",
		Args:  noArgs,
	}
	cmd.Flags().StringVar(&path, "config", "config.yaml", "the config file")
	cmd.RunE = func(*cobra.Command, []string) error {
		if _, err := config.Load(path); err != nil {
			for _, line := range strings.Split(err.Error(), "\n") {
				fmt.Fprintln(env.stderr, line)
			}
			return exitCode(exitUsage)
		}
		fmt.Fprintf(env.stdout, "%s: ok\n", path)
		return nil
	}
	return cmd
}

func newStateCommand(env *cliEnv) *cobra.Command {
	cmd := group(&cobra.Command{
		Use:   "state",
		Short: "The state file: export it, check it, recover from a broken one",
	})
	var exportPath, checkPath, recoverPath string
	var force bool
	export := &cobra.Command{
		Use:   "export [--config config.yaml] [-o json|yaml]",
		Short: "The state file as JSON (or YAML)",
		Args:  noArgs,
	}
	export.Flags().StringVar(&exportPath, "config", "config.yaml", "the config file")
	out := addOutputFlag(export.Flags(), "json", "yaml")
	export.RunE = func(*cobra.Command, []string) error {
		if err := out.check(); err != nil {
			return err
		}
		return exit(stateExport(env, exportPath, out.value))
	}
	check := &cobra.Command{
		Use:   "check [--config config.yaml]",
		Short: "Whether this dtkbot can use the state file; exit 1 says why not",
		Args:  noArgs,
	}
	check.Flags().StringVar(&checkPath, "config", "config.yaml", "the config file")
	check.RunE = func(*cobra.Command, []string) error { return exit(stateCheck(env, checkPath)) }
	recover := &cobra.Command{
		Use:   "recover [--config config.yaml] [--force]",
		Short: "Move an unusable state file aside and start empty (the next pass rebuilds it)",
		Args:  noArgs,
	}
	recover.Flags().StringVar(&recoverPath, "config", "config.yaml", "the config file")
	recover.Flags().BoolVar(&force, "force", false, "move the file aside even when it is sound, or of a newer schema")
	recover.RunE = func(*cobra.Command, []string) error { return exit(stateRecover(env, recoverPath, force)) }
	cmd.AddCommand(export, check, recover)
	return cmd
}

func stateExport(env *cliEnv, path, output string) int {
	cfg, ok := loadConfig(env, path)
	if !ok {
		return exitUsage
	}
	store, err := openStateToRead(cfg, path)
	if err != nil {
		errorf(env, "state export: %v", err)
		return exitFailed
	}
	defer store.Close()
	exp, err := store.Export()
	if err != nil {
		errorf(env, "exporting state: %v", err)
		return exitFailed
	}
	_ = writeDocument(env.stdout, output, exp)
	return exitOK
}

// runStateCheck reads the whole state file (state.Check): exit 0 when this
// dtkbot can use it, 1 when it cannot (each problem said).
func stateCheck(env *cliEnv, path string) int {
	cfg, ok := loadConfig(env, path)
	if !ok {
		return exitUsage
	}
	if _, err := os.Stat(cfg.StatePath()); errors.Is(err, os.ErrNotExist) {
		abs, _ := filepath.Abs(cfg.StatePath())
		errorf(env, "state check: %v at %s: run `dtkbot reconcile --config %s` first", errNoState, abs, path)
		return exitFailed
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
		fmt.Fprintf(env.stdout, "`dtkbot state recover --config %s` moves it aside and starts empty; the next pass rebuilds the state from the registry and GitHub.\n", path)
	}
	return exitFailed
}

// runStateRecover moves an unusable state file aside and starts empty
// (state.Recover), loudly: on standard error and in the log.
func stateRecover(env *cliEnv, path string, force bool) int {
	cfg, ok := loadConfig(env, path)
	if !ok {
		return exitUsage
	}
	rec, err := state.Recover(cfg.StatePath(), time.Now(), force)
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
