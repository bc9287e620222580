package builder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/dtkbot/dtkbot/redact"
)

// CommandBuilder builds with podman or buildah on this machine, then pushes:
// the build arguments carry the kernel (never a secret), the RHSM
// organisation and activation key go in as build secrets (files mounted only
// into RUN steps, never in the image or its history), the log is streamed to
// the logger line by line, and the whole build and push share a timeout.
type CommandBuilder struct {
	// Command is "podman" or "buildah" (or a path to one).
	Command       string
	Containerfile string
	Context       string
	// BaseImage is a template of the UBI base per RHEL version; fields
	// RHEL ("9.4") and RHELMajor ("9").
	BaseImage string
	// RHSMOrgFile and RHSMActivationKeyFile hold the secrets; empty means
	// the build does not register (a base with its own repositories).
	RHSMOrgFile, RHSMActivationKeyFile string
	// AuthFile, TLSVerify apply to the push (and to pulling the base).
	AuthFile  string
	TLSVerify *bool
	ExtraArgs []string
	Timeout   time.Duration
	Log       zerolog.Logger
	// run executes a command; tests replace it to see the command lines.
	run func(ctx context.Context, name string, args []string, out io.Writer) error
}

// Args returns the build and push command lines for req (without secrets'
// contents: only their file paths appear).
func (b *CommandBuilder) Args(req Request) (build, push []string, err error) {
	verb := "build"
	if b.tool() == "buildah" {
		verb = "bud"
	}
	if req.DTK != "" {
		// A consumer's image is built FROM the DTK: it needs no RHSM
		// entitlement, the DTK carries the kernel's packages.
		build = []string{verb, "--file", b.Containerfile, "--platform", "linux/" + req.Arch,
			"--build-arg", "DTK_IMAGE=" + req.DTK,
			"--build-arg", "KERNEL_VERSION=" + req.Kernel,
			"--build-arg", "KERNEL_FULL_VERSION=" + req.KernelFull,
			"--build-arg", "KERNEL_VARIANT=" + req.KernelVariant(),
			"--build-arg", "RT_KERNEL_VERSION=" + req.RTKernel,
			"--build-arg", "RHEL_VERSION=" + req.RHEL,
			"--label", "kernel-version=" + req.KernelFull,
			"--tag", req.Image,
		}
		build = append(build, b.registryArgs()...)
		build = append(build, b.ExtraArgs...)
		build = append(build, b.Context)
		push = append([]string{"push"}, b.registryArgs()...)
		return build, append(push, req.Image), nil
	}
	base, err := b.baseImage(req.RHEL)
	if err != nil {
		return nil, nil, err
	}
	build = []string{verb, "--file", b.Containerfile, "--platform", "linux/" + req.Arch,
		"--build-arg", "KERNEL_VERSION=" + req.Kernel,
		"--build-arg", "RT_KERNEL_VERSION=" + req.RTKernel,
		"--build-arg", "KERNEL_VARIANTS=" + strings.Join(req.Variants, " "),
		"--build-arg", "RHEL_VERSION=" + req.RHEL,
		"--build-arg", "STREAM=" + req.Stream,
		"--build-arg", "BASE_IMAGE=" + base,
		"--label", "io.openshift.os.streamclass=" + req.Stream,
		"--tag", req.Image,
	}
	if b.RHSMOrgFile != "" {
		build = append(build, "--secret", "id=rhsm-org,src="+b.RHSMOrgFile, "--secret", "id=rhsm-activation-key,src="+b.RHSMActivationKeyFile)
	}
	build = append(build, b.registryArgs()...)
	build = append(build, b.ExtraArgs...)
	build = append(build, b.Context)
	push = append([]string{"push"}, b.registryArgs()...)
	push = append(push, req.Image)
	return build, push, nil
}

func (b *CommandBuilder) tool() string {
	c := b.Command
	if i := strings.LastIndex(c, "/"); i >= 0 {
		c = c[i+1:]
	}
	return c
}

func (b *CommandBuilder) registryArgs() []string {
	var out []string
	if b.AuthFile != "" {
		out = append(out, "--authfile", b.AuthFile)
	}
	if b.TLSVerify != nil {
		out = append(out, fmt.Sprintf("--tls-verify=%t", *b.TLSVerify))
	}
	return out
}

func (b *CommandBuilder) baseImage(rhel string) (string, error) {
	major, _, _ := strings.Cut(rhel, ".")
	if major == "" {
		return "", fmt.Errorf("no RHEL version: cannot choose a UBI base")
	}
	t := b.BaseImage
	if t == "" {
		t = "registry.access.redhat.com/ubi{{.RHELMajor}}/ubi:latest"
	}
	r := strings.NewReplacer("{{.RHEL}}", rhel, "{{.RHELMajor}}", major)
	return r.Replace(t), nil
}

// AsksOnce implements AsksOnce: the build runs as dtkbot's child and dies
// with it, and the push is a step of its own after it.
func (b *CommandBuilder) AsksOnce() bool { return true }

// Build implements Builder: build, then push.
func (b *CommandBuilder) Build(ctx context.Context, req Request) error {
	build, push, err := b.Args(req)
	if err != nil {
		return err
	}
	timeout := b.Timeout
	if timeout <= 0 {
		timeout = 2 * time.Hour
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	run := b.run
	if run == nil {
		run = runCommand
	}
	// What the build prints is scrubbed line by line, before the log and
	// the error's tail see it: a RUN step with `set -x`, or a tool's debug
	// line, may print the secrets it was given.
	log := &lineLogger{log: b.Log.With().Str("kernel", req.Kernel).Str("image", req.Image).Logger(), secrets: b.SecretValues(ctx)}
	defer log.flush()
	for _, step := range []struct {
		what string
		args []string
	}{{"building", build}, {"pushing", push}} {
		if err := run(ctx, b.Command, step.args, log); err != nil {
			if ctx.Err() == context.DeadlineExceeded {
				return &Failure{Summary: fmt.Sprintf("%s %s: timed out after %s (see dtkbot's log)", step.what, req.Image, timeout), Output: log.tail(), Err: ctx.Err()}
			}
			why := explainExit(b.tool(), err)
			return &Failure{Summary: fmt.Sprintf("%s %s with %s: %v (see dtkbot's log)", step.what, req.Image, b.tool(), why), Output: log.tail(), Err: why}
		}
	}
	return nil
}

func runCommand(ctx context.Context, name string, args []string, out io.Writer) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = out, out
	// Its own process group, killed whole on timeout: podman's children
	// (conmon, the build's RUN) must not outlive it holding our pipes.
	// Killed with dtkbot too (Pdeathsig): a build of a dtkbot that died
	// never pushes, so its attempt can be asked again (AsksOnce).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	return cmd.Run()
}

// explainExit names what podman's and buildah's exit codes mean.
func explainExit(tool string, err error) error {
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		switch exit.ExitCode() {
		case 125:
			return fmt.Errorf("%s itself failed (exit 125: its configuration, storage or arguments)", tool)
		case 126:
			return fmt.Errorf("the command could not be invoked (exit 126)")
		case 127:
			return fmt.Errorf("the command was not found (exit 127)")
		case -1:
			return fmt.Errorf("killed: %w", err)
		default:
			return fmt.Errorf("a build step failed (exit %d)", exit.ExitCode())
		}
	}
	var notFound *exec.Error
	if errors.As(err, &notFound) || errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s is not installed or not on PATH: %w", tool, err)
	}
	return err
}

// lineLogger streams a command's output to the logger, a line at a time,
// scrubbed (redact.Log: the secret values, URL paths and queries,
// credentials), and keeps the last lines for the error message.
type lineLogger struct {
	log     zerolog.Logger
	secrets []string
	mu      sync.Mutex
	buf     []byte
	last    []string
}

func (l *lineLogger) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	for {
		i := strings.IndexByte(string(l.buf), '\n')
		if i < 0 {
			break
		}
		l.line(string(l.buf[:i]))
		l.buf = l.buf[i+1:]
	}
	return len(p), nil
}

func (l *lineLogger) line(s string) {
	s = redact.Log(strings.TrimRight(s, "\r"), l.secrets)
	l.log.Info().Str("build_log", s).Send()
	l.last = append(l.last, s)
	if len(l.last) > 5 {
		l.last = l.last[1:]
	}
}

func (l *lineLogger) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buf) > 0 {
		l.line(string(l.buf))
		l.buf = nil
	}
}

func (l *lineLogger) tail() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.last, " | ")
}
