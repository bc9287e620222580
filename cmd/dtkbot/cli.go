package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"
	"sigs.k8s.io/yaml"
)

// version is stamped at build time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

// Exit codes, the same for every command: `--help` is 0, a command line
// or config that is wrong is 2.
const (
	exitOK     = 0
	exitFailed = 1 // the command ran and something it did failed
	exitUsage  = 2 // the command line or the config is wrong
)

// cliEnv is what commands share: output streams and the logger.
type cliEnv struct {
	stdout, stderr io.Writer
	log            zerolog.Logger
}

// exitCode is how a command's RunE hands its exit code to run: it has
// already said why.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit %d", int(e)) }

// exit turns a command's exit code into RunE's error.
func exit(code int) error {
	if code == exitOK {
		return nil
	}
	return exitCode(code)
}

// usageError is a command line that is wrong: run says so, with where to
// find the usage, and exits 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// run is the whole CLI, for main and for tests: it parses args, runs the
// command, and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	env := &cliEnv{stdout: stdout, stderr: stderr, log: newLogger(stderr, "info", "auto")}
	root := newRootCommand(env)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	var code exitCode
	if errors.As(err, &code) {
		return int(code)
	}
	// Anything else is the command line: a flag, an argument, a command
	// that does not exist.
	if cmd == nil {
		cmd = root
	}
	fmt.Fprintf(stderr, "dtkbot: %s\n", strings.TrimRight(err.Error(), "\n"))
	fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
	return exitUsage
}

// newRootCommand is the command tree.
func newRootCommand(env *cliEnv) *cobra.Command {
	root := &cobra.Command{
		Use:   "dtkbot",
		Short: "dtkbot keeps Driver Toolkit images for the kernels OpenShift ships",
		Long: `dtkbot keeps Driver Toolkit (DTK) images for the kernels OpenShift ships, and the kmod images
teams build FROM them: it discovers releases, reads each payload's kernel once and cheaply, builds a
DTK once per kernel, verifies and promotes it, then each consumer's kmod image, and tells people.

Start with 'dtkbot validate-config --config config.yaml' and 'dtkbot reconcile --dry-run'.
The offline demo is a command of its own: 'make demo'.`,
		Version:       version,
		SilenceErrors: true,
		SilenceUsage:  true,
		// With no command: the help, on standard error, as a usage error.
		RunE: func(cmd *cobra.Command, args []string) error {
			cmd.SetOut(env.stderr)
			_ = cmd.Help()
			return exitCode(exitUsage)
		},
	}
	root.SetVersionTemplate("dtkbot {{.Version}}\n")
	root.SuggestionsMinimumDistance = 2
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.CompletionOptions.HiddenDefaultCmd = false
	root.AddCommand(
		newReconcileCommand(env),
		newRunCommand(env),
		newReleaseInfoCommand(env),
		newKmodCommand(env),
		newReportCommand(env),
		newUpgradeCheckCommand(env),
		newValidateConfigCommand(env),
		newStateCommand(env),
		&cobra.Command{
			Use:   "version",
			Short: "Print the version stamped at build time (as --version does)",
			Args:  noArgs,
			RunE: func(*cobra.Command, []string) error {
				fmt.Fprintln(env.stdout, "dtkbot", version)
				return nil
			},
		},
		&cobra.Command{
			// The demo is a command of its own (cmd/dtkbot-demo), so that
			// the deployed binary carries no test world.
			Use:    "demo",
			Hidden: true,
			RunE: func(*cobra.Command, []string) error {
				return usagef("the demo is a command of its own: run 'make demo' (it builds bin/dtkbot-demo and runs it)")
			},
		},
	)
	return root
}

// group is a command that only holds subcommands (state, kmod): without
// one it prints its help to standard error and is a usage error.
func group(cmd *cobra.Command) *cobra.Command {
	cmd.Args = func(c *cobra.Command, args []string) error {
		if len(args) > 0 {
			msg := fmt.Sprintf("unknown command %q for %q", args[0], c.CommandPath())
			c.SuggestionsMinimumDistance = 2
			if s := c.SuggestionsFor(args[0]); len(s) > 0 {
				msg += ": did you mean " + strings.Join(s, " or ") + "?"
			}
			return usageError{errors.New(msg)}
		}
		return nil
	}
	cmd.RunE = func(c *cobra.Command, _ []string) error {
		c.SetOut(c.ErrOrStderr())
		_ = c.Help()
		return exitCode(exitUsage)
	}
	return cmd
}

// noArgs refuses positional arguments as a usage error.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("%s takes no arguments (got %q)", cmd.CommandPath(), args[0])
	}
	return nil
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

func errorf(env *cliEnv, format string, args ...any) {
	fmt.Fprintf(env.stderr, "dtkbot: "+strings.TrimSuffix(format, "\n")+"\n", args...)
}

// outputFlag is -o/--output, as oc and kubectl spell it, with the formats
// a command writes (the first is the default).
type outputFlag struct {
	value   string
	formats []string
}

func addOutputFlag(fs *pflag.FlagSet, formats ...string) *outputFlag {
	o := &outputFlag{formats: formats}
	fs.StringVarP(&o.value, "output", "o", formats[0], "output format: "+orList(formats))
	return o
}

// check refuses a format the command does not write.
func (o *outputFlag) check() error {
	if !slices.Contains(o.formats, o.value) {
		return usagef("-o %q: want %s", o.value, orList(o.formats))
	}
	return nil
}

func orList(s []string) string {
	if len(s) == 1 {
		return s[0]
	}
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}

// writeDocument writes v as JSON (indented) or YAML (the JSON's field
// names, as kubectl's -o yaml does).
func writeDocument(w io.Writer, format string, v any) error {
	if format == "yaml" {
		out, err := yaml.Marshal(v)
		if err != nil {
			return err
		}
		_, err = w.Write(out)
		return err
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// deadlineFlag is --command-timeout: the bound of a whole command, as
// skopeo's is (each registry call has --timeout besides).
func addDeadlineFlag(fs *pflag.FlagSet, def time.Duration) *time.Duration {
	d := new(time.Duration)
	fs.DurationVar(d, "command-timeout", def, "the most the whole command may take; 0: no bound of its own")
	return d
}

// withDeadline bounds ctx by d (none when 0).
func withDeadline(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeoutCause(ctx, d, fmt.Errorf("the command took longer than --command-timeout %s", d))
}
