package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/dtkbot/dtkbot/imageread"
	"github.com/dtkbot/dtkbot/kmod"
	"github.com/dtkbot/dtkbot/registry"
	"github.com/dtkbot/dtkbot/verify"
)

// Exit codes of `dtkbot kmod check`: whether dtkbot would accept the image.
const (
	exitAccepted     = 0
	exitRejected     = 1
	exitCouldNotTell = 2 // the registry could not be read (or the command line is wrong)
)

// maxSymversBytes bounds a --symvers file (RHEL 9's is under 2 MB).
const maxSymversBytes = 64 << 20

var kernelArg = regexp.MustCompile(`^[0-9][0-9A-Za-z._+~-]{0,127}$`)

func newKmodCommand(env *cliEnv) *cobra.Command {
	cmd := group(&cobra.Command{
		Use:   "kmod",
		Short: "Kernel module images: whether their modules load on a kernel",
	})
	cmd.AddCommand(newKmodCheckCommand(env))
	return cmd
}

func newKmodCheckCommand(env *cliEnv) *cobra.Command {
	var (
		kernel, dtk, symversPath, modulePath, load, arch string
		certs                                            []string
		maxModules                                       int
	)
	cmd := &cobra.Command{
		Use:   "check IMAGE --kernel KERNEL_FULL [--dtk IMAGE | --symvers FILE] [--cert FILE]...",
		Short: "Whether every module of a kmod image loads on a kernel",
		Long: `Checks every kernel module of a kmod image against one kernel, as the kernel's module loader would:
vermagic, symbol versions (CRCs) against the kernel's Module.symvers, dependencies, and, given
certificates, signatures.

Exit 0: dtkbot would accept the image; 1: it would reject it; 2: it could not tell (the registry
could not be read, the image holds more modules than --max-modules, or the command line is wrong).`,
		Example: `  dtkbot kmod check quay.io/acme/simple-kmod:5.14.0-427.37.1.el9_4.x86_64 \
    --kernel 5.14.0-427.37.1.el9_4.x86_64 --dtk quay.io/acme/driver-toolkit:5.14.0-427.37.1.el9_4.x86_64`,
	}
	fs := cmd.Flags()
	fs.StringVar(&kernel, "kernel", "", "the kernel to check against, as uname -r prints it (required)")
	fs.StringVar(&dtk, "dtk", "", "a Driver Toolkit image carrying the kernel's files in /etc/driver-toolkit/<kernel>/ (dtkbot's recipe writes them)")
	fs.StringVar(&symversPath, "symvers", "", "the kernel's Module.symvers (kernel-devel's /usr/src/kernels/<kernel>/Module.symvers), instead of --dtk")
	fs.StringArrayVar(&certs, "cert", nil, "a certificate (PEM or DER) a Secure Boot node trusts; every module must be signed by one (repeatable)")
	fs.StringVar(&modulePath, "module-path", "", "where the image holds the kernel's modules (default opt/lib/modules/<kernel>/, KMM's)")
	fs.StringVar(&load, "module", "", "the module a node loads (KMM's modprobe.moduleName): it must be in the image")
	fs.IntVar(&maxModules, "max-modules", kmod.DefaultMaxModules, "the most module files read from the image; with more, the check cannot tell (exit 2)")
	fs.StringVar(&arch, "arch", "amd64", "the instance of a multi-arch image to read")
	out := addOutputFlag(fs, "table", "json", "yaml")
	rf := addRegistryFlags(fs)
	deadline := addDeadlineFlag(fs, 10*time.Minute)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		switch {
		case len(args) != 1:
			return usagef("give one kmod image")
		case !kernelArg.MatchString(kernel):
			return usagef("--kernel %q: give the kernel as uname -r prints it (5.14.0-427.37.1.el9_4.x86_64)", kernel)
		case dtk != "" && symversPath != "":
			return usagef("give --dtk or --symvers, not both")
		case maxModules < 1:
			return usagef("--max-modules %d: want at least 1", maxModules)
		}
		if err := out.check(); err != nil {
			return err
		}
		image, err := imagePullspec(args[0])
		if err != nil {
			return usageError{err}
		}
		if dtk != "" {
			if dtk, err = imagePullspec(dtk); err != nil {
				return usagef("--dtk: %v", err)
			}
		}
		regOpts, err := rf.options()
		if err != nil {
			return err
		}
		regOpts.Slow = slowReporter(env)
		ctx, cancel := withDeadline(cmd.Context(), *deadline)
		defer cancel()
		read := kmod.ReadOptions{MaxModules: maxModules, Budget: kmod.NewBudget(0)}
		return exit(kmodCheck(ctx, env, regOpts, image, kernel, dtk, symversPath, certs, modulePath, load, arch, out.value, read))
	}
	return cmd
}

// kmodCheck checks image as a pass's verification does (verify.Kmod.Check:
// the same reads, limits and verdict), against the kernel's files of dtk,
// a Module.symvers file, or no more than the kernel's release.
func kmodCheck(ctx context.Context, env *cliEnv, regOpts registry.Options, image, kernel, dtk, symversPath string, certPaths []string, modulePath, load, arch, output string, read kmod.ReadOptions) int {
	c := verify.KmodCheck{Image: image, Arch: arch, KernelFull: kernel, ModulePath: modulePath, DTK: dtk, ModuleName: load}
	var err error
	if len(certPaths) > 0 {
		if c.Certs, err = kmod.LoadCertificates(certPaths...); err != nil {
			errorf(env, "kmod check: %v", err)
			return exitCouldNotTell
		}
	}
	if c.ModulePath == "" {
		c.ModulePath = kmod.DefaultModulePath(kernel)
	}
	var notes []string
	switch {
	case symversPath != "":
		data, err := readLimited(symversPath, maxSymversBytes)
		if err != nil {
			errorf(env, "kmod check: reading --symvers: %v", err)
			return exitCouldNotTell
		}
		if c.Kernel, err = kmod.NewKernel(kernel, data, nil, nil, nil); err != nil {
			errorf(env, "kmod check: %s: %v", symversPath, err)
			return exitCouldNotTell
		}
		c.Kernel.Sources = []string{symversPath + ": " + strings.Join(c.Kernel.Sources, ", ")}
	case dtk == "":
		c.Kernel = &kmod.Kernel{Release: kernel, RT: kmod.IsRTRelease(kernel)}
		notes = append(notes, "no --dtk or --symvers: symbol versions (CRCs) are not checked")
	}

	v := &verify.Kmod{Registry: registry.New(regOpts), Limits: imageread.DefaultLimits(), Read: read}
	o, err := v.Check(ctx, c)
	switch tooMany := (*kmod.TooManyModulesError)(nil); {
	case errors.Is(err, verify.ErrRejected):
		errorf(env, "kmod check: %v", err) // the DTK's kernel files do not parse
		return exitRejected
	case errors.As(err, &tooMany):
		errorf(env, "kmod check: could not tell: %v (raise --max-modules)", explainDeadline(ctx, err))
		return exitCouldNotTell
	case err != nil:
		errorf(env, "kmod check: could not tell: %v", explainDeadline(ctx, err))
		return exitCouldNotTell
	}
	r := o.Report
	r.Notes = append(notes, r.Notes...)
	if output != "table" {
		_ = writeDocument(env.stdout, output, r)
	} else {
		printKmodReport(env.stdout, r)
	}
	if r.Accepted {
		return exitAccepted
	}
	return exitRejected
}

func readLimited(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%s is over %d bytes", path, max)
	}
	return data, nil
}

// printKmodReport writes the verdict, a row per module, then each module's
// problems under the table.
func printKmodReport(w io.Writer, r *kmod.Report) {
	verdict := "ACCEPTED"
	if !r.Accepted {
		verdict = "REJECTED"
	}
	fmt.Fprintf(w, "image:   %s\n", r.Image)
	if r.Digest != "" {
		fmt.Fprintf(w, "digest:  %s\n", r.Digest)
	}
	fmt.Fprintf(w, "kernel:  %s\n", r.Kernel)
	for _, s := range r.KernelSources {
		fmt.Fprintf(w, "         %s\n", s)
	}
	fmt.Fprintf(w, "verdict: %s: %s\n", verdict, r.Reason)
	if len(r.Modules) > 0 {
		fmt.Fprintln(w)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "MODULE\tLOADS\tVERMAGIC\tCRCS\tDEPENDS\tSIGNATURE")
		for _, m := range r.Modules {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", strings.TrimPrefix(m.Path, r.ModulePath), yesNo(m.Loads), vermagicCell(m), crcCell(m, r.ABIChecked), dependsCell(m), signatureCell(m.Signature, r.SignaturesChecked))
		}
		_ = tw.Flush()
	}
	var problems []string
	for _, m := range r.Modules {
		for _, p := range m.Problems {
			problems = append(problems, fmt.Sprintf("%s: %s", strings.TrimPrefix(m.Path, r.ModulePath), p))
		}
		for _, c := range m.CRCMismatches {
			problems = append(problems, fmt.Sprintf("%s: %s is %s in the module, %s in %s", strings.TrimPrefix(m.Path, r.ModulePath), c.Symbol, c.Module, c.Kernel, c.From))
		}
	}
	if len(problems) > 0 || len(r.Notes) > 0 {
		fmt.Fprintln(w)
	}
	for _, p := range problems {
		fmt.Fprintln(w, "  ! "+p)
	}
	for _, n := range r.Notes {
		fmt.Fprintln(w, "  - "+n)
	}
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "NO"
}

func vermagicCell(m kmod.ModuleReport) string {
	if m.Vermagic.OK {
		return "ok"
	}
	if m.Vermagic.Module == "" && m.Layer < 0 {
		return "-"
	}
	return "WRONG"
}

func crcCell(m kmod.ModuleReport, checked bool) string {
	switch {
	case !checked:
		return "not checked"
	case len(m.CRCMismatches) > 0:
		var syms []string
		for _, c := range m.CRCMismatches {
			syms = append(syms, c.Symbol)
		}
		return fmt.Sprintf("%d differ: %s", len(syms), shorten(strings.Join(syms, ", "), 60))
	case len(m.UnresolvedSymbols) > 0:
		return "unresolved: " + shorten(strings.Join(m.UnresolvedSymbols, ", "), 60)
	}
	return "ok"
}

func dependsCell(m kmod.ModuleReport) string {
	switch {
	case len(m.UnresolvedDepends) > 0:
		return "missing: " + strings.Join(m.UnresolvedDepends, ", ")
	case len(m.UncheckedDepends) > 0:
		return "not checked: " + strings.Join(m.UncheckedDepends, ", ")
	}
	return "ok"
}

func signatureCell(s *kmod.SignatureReport, checked bool) string {
	switch {
	case s == nil:
		return "-"
	case !s.Signed:
		return "unsigned"
	case s.Verified:
		return fmt.Sprintf("%s (%s), verified", s.Signer, s.Hash)
	case s.Problem != "" && checked:
		return fmt.Sprintf("%s (%s), NOT verified", s.Signer, s.Hash)
	}
	return fmt.Sprintf("%s (%s), not checked", s.Signer, s.Hash)
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}
