package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/rs/zerolog"
	"golang.org/x/term"
)

// version is stamped at build time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

// Exit codes.
const (
	exitOK      = 0
	exitFailed  = 1 // the command ran and something it did failed
	exitUsage   = 2 // the command line or the config is wrong
	usageHeader = `dtkbot keeps Driver Toolkit images for the kernels OpenShift ships.

Usage:
  dtkbot reconcile --config config.yaml [--dry-run] [--channel C] [--release V] [--retry-held]
                   [--retry-failed] [-o table|json]
                                one pass: discover releases, read new payloads, build, verify,
                                promote, audit, notify
  dtkbot run --config config.yaml
                                the daemon: a pass at start and on the schedule, with the coverage
                                page, /api/v1, the update graph (/api/upgrades_info/v1/graph),
                                /healthz, /readyz, /metrics, /status and POST /trigger
  dtkbot release-info PULLSPEC|VERSION... [--channel C] [--arch amd64] [--authfile F] [--tls-verify=false]
                   [--config config.yaml] [-o table|json]
                                the kernels of release payloads (4.16.15 means the official release)
  dtkbot kmod check IMAGE --kernel KERNEL_FULL [--dtk IMAGE | --symvers FILE] [--cert FILE]...
                   [--module-path P] [--tls-verify=false] [--authfile F] [-o table|json]
                                whether every module of a kmod image loads on that kernel (vermagic,
                                CRCs, dependencies, signatures); exit 0 accept, 1 reject, 2 could not tell
  dtkbot report --config config.yaml [-o html|json|table] [--out FILE]
                                the coverage page, the kernel index or a table, from the state file
  dtkbot upgrade-check --channel C --from V [--to V] [--arch amd64] [--config config.yaml | --server URL]
                   [-o table|json]
                                the updates from a version, each with its drivers ready or not and what
                                they wait for (with --to: exit 0 ready, 1 not ready, 2 could not tell)
  dtkbot validate-config --config config.yaml
  dtkbot state export --config config.yaml [-o json]
  dtkbot state check --config config.yaml
                                whether this dtkbot can use the state file; exit 1 says why not
  dtkbot state recover --config config.yaml [--force]
                                move an unusable state file aside and start empty (the next pass
                                rebuilds it from the registry and GitHub)
  dtkbot demo                   offline demo against a local registry and update graph
  dtkbot version

Run "dtkbot COMMAND -h" for a command's flags.
`
)

// command is one verb of the CLI.
type command struct {
	name string
	run  func(ctx context.Context, env *cliEnv, args []string) int
}

// cliEnv is what commands share: output streams and the logger.
type cliEnv struct {
	stdout, stderr io.Writer
	log            zerolog.Logger
}

func commands() []command {
	return []command{
		{"release-info", runReleaseInfo},
		{"reconcile", runReconcile},
		{"run", runDaemon},
		{"validate-config", runValidateConfig},
		{"state", runState},
		{"report", runReport},
		{"upgrade-check", runUpgradeCheck},
		{"kmod", runKmod},
		{"demo", runDemo},
		{"version", func(_ context.Context, env *cliEnv, _ []string) int {
			fmt.Fprintln(env.stdout, "dtkbot", version)
			return exitOK
		}},
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	env := &cliEnv{stdout: stdout, stderr: stderr, log: newLogger(stderr, "info", "auto")}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, usageHeader)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(ctx, env, args[1:])
		}
	}
	fmt.Fprintf(stderr, "dtkbot: unknown command %q\n\n%s", args[0], usageHeader)
	return exitUsage
}

// newLogger builds the process's logger: JSON by default, readable on a
// terminal. Libraries get it passed down; nothing logs globally.
func newLogger(w io.Writer, level, format string) zerolog.Logger {
	lvl, err := zerolog.ParseLevel(level)
	if err != nil {
		lvl = zerolog.InfoLevel
	}
	out := w
	if format == "console" || (format == "auto" && isTerminal(w)) {
		out = zerolog.ConsoleWriter{Out: w, TimeFormat: "15:04:05"}
	}
	return zerolog.New(out).Level(lvl).With().Timestamp().Logger()
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// parseInterleaved parses flags that may stand before, between or after the
// positional arguments ("release-info A B -o json").
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return positional, nil
		}
		if args[0] == "--" {
			return append(positional, args[1:]...), nil
		}
		positional = append(positional, args[0])
		args = args[1:]
	}
}

// newFlagSet returns a flag set that prints its usage to env.stderr.
func newFlagSet(env *cliEnv, name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	fs.Usage = func() {
		fmt.Fprintf(env.stderr, "Usage: dtkbot %s %s\n\nFlags:\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

func usageExit(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	return exitUsage
}

func errorf(env *cliEnv, format string, args ...any) {
	fmt.Fprintf(env.stderr, "dtkbot: "+strings.TrimSuffix(format, "\n")+"\n", args...)
}
