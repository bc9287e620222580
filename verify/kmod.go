package verify

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"path"
	"strings"
	"sync"
	"text/template"

	"github.com/dtkbot/dtkbot/kmod"
	"github.com/dtkbot/dtkbot/ledger"
	"github.com/dtkbot/dtkbot/registry"
	"github.com/dtkbot/dtkbot/releaseinfo"
)

// ErrNoModules means a kmod image holds no kernel module for the wanted
// kernel: a failed build, never to be promoted.
var ErrNoModules = fmt.Errorf("%w: the image holds no kernel module for the wanted kernel", ErrRejected)

// ErrWontLoad means a kmod image's modules would not load on the kernel
// they were built for (vermagic, symbol versions, dependencies, signature),
// or could not be checked against it.
var ErrWontLoad = fmt.Errorf("%w: its modules would not load on the kernel", ErrRejected)

// KernelStore keeps, by key, what was read of a kernel's files in a DTK
// image (package state's Store), so each is read once.
type KernelStore interface {
	KernelFiles(key string) ([]byte, bool, error)
	PutKernelFiles(key string, data []byte) error
}

// Kmod checks a consumer's image (a kmod image, a driver container) before
// it is promoted, as the kernel's module loader would: every module under
// the kernel's module path (its layers walked from the top, whiteouts
// honoured, digests verified, the limits every untrusted read has) is
// checked by package kmod against the exact kernel, whose files
// (Module.symvers, modules.dep, modules.builtin, vermagic) come from the
// promoted DTK the image was built FROM, read once per DTK and kernel and
// kept in Kernels. Where a label is configured, the image's label of that
// name must name the kernel too.
type Kmod struct {
	Registry *registry.Client
	Limits   releaseinfo.Limits
	Read     kmod.ReadOptions
	// Kernels keeps the kernels read from DTK images; nil: read each time.
	Kernels KernelStore

	mu    sync.Mutex
	locks map[string]*sync.Mutex
}

// KmodCheck is what one consumer image is checked against.
type KmodCheck struct {
	// Image is the kmod image by digest; Arch the instance to read.
	Image, Arch string
	// KernelFull is the kernel's uname -r; ModulePath where the image must
	// hold its modules (opt/lib/modules/<kernel_full>/); Label, if set, an
	// image label that must name the kernel.
	KernelFull, ModulePath, Label string
	// DTK is the promoted DTK the image was built FROM, by digest: its
	// etc/driver-toolkit/<kernel_full>/ files are the kernel's side.
	DTK string
	// Certs, if any, are the keys a Secure Boot node trusts: every module
	// must be signed by one.
	Certs []*x509.Certificate
	// SkipABI accepts a DTK without the kernel's files (verify.abi: false):
	// what can be checked is, and the verdict says the ABI was not.
	SkipABI bool
	// ModuleName, if set, is the module a node loads from the image (KMM's
	// modprobe.moduleName, the consumer's kmm.module_name): it must be in
	// the image under ModulePath.
	ModuleName string
}

// KmodResult is what an accepted image's check found: per module, what
// decides whether it would load on another kernel, and what was checked.
type KmodResult struct {
	Modules []ledger.ModuleRecord
	Checked string
}

// VerifyKmod checks c.Image. It returns the result when the image would
// be accepted; an error wrapping ErrNoModules when it holds no module for
// the kernel, ErrWontLoad when its modules would not load on it (naming the
// modules and the symbols), both ErrRejected; any other error when it, or
// the DTK, could not be read (try again later).
func (v *Kmod) VerifyKmod(ctx context.Context, c KmodCheck) (KmodResult, error) {
	fail := func(err error) (KmodResult, error) { return KmodResult{}, fmt.Errorf("verifying %s: %w", c.Image, err) }
	k, missing, err := v.kernel(ctx, c.DTK, c.Arch, c.KernelFull)
	if err != nil {
		return fail(err)
	}
	var notChecked string
	if len(missing) > 0 {
		notChecked = fmt.Sprintf("the promoted DTK %s has no %s", c.DTK, strings.Join(missing, ", "))
		if !c.SkipABI {
			return fail(fmt.Errorf("%w: %s, so its modules' symbol versions and dependencies cannot be checked (a DTK recipe of your own? dtkbot's copies them; or set verify.abi: false)", ErrWontLoad, notChecked))
		}
	}
	in := releaseinfo.New(v.Registry, releaseinfo.Options{Arch: c.Arch, Limits: v.Limits})
	prefix := strings.TrimPrefix(strings.TrimSuffix(c.ModulePath, "/")+"/", "/")
	img, err := kmod.ReadImage(ctx, in, c.Image, prefix, v.Read)
	if err != nil {
		if registry.IsContent(err) {
			return fail(fmt.Errorf("%w: %v", ErrNoModules, err))
		}
		if tooMany := (*kmod.TooManyModulesError)(nil); errors.As(err, &tooMany) {
			// A limit of ours: could not tell, the setting named.
			return fail(fmt.Errorf("%w (the limit is registry.max_modules)", err))
		}
		return fail(err)
	}
	if c.Label != "" {
		if got := img.Labels[c.Label]; got != c.KernelFull {
			return fail(fmt.Errorf("%w: its label %s is %q, want %s", ErrNoModules, c.Label, got, c.KernelFull))
		}
	}
	if len(img.Modules) == 0 && len(img.Unreadable) == 0 && !linksModule(img.Links) {
		if len(img.Elsewhere) == 0 {
			return fail(fmt.Errorf("%w: no kernel module in its %d layers (want one under /%s)", ErrNoModules, img.Walked, prefix))
		}
		shown := img.Elsewhere[:min(3, len(img.Elsewhere))]
		return fail(fmt.Errorf("%w: its modules are elsewhere (%s), want them under /%s", ErrNoModules, strings.Join(shown, ", "), prefix))
	}
	r := kmod.Check(img, k, kmod.CheckOptions{Certs: c.Certs, Load: c.ModuleName})
	if !r.Accepted {
		return fail(fmt.Errorf("%w: %s", ErrWontLoad, wontLoad(r)))
	}
	res := KmodResult{Checked: checked(r)}
	if notChecked != "" {
		res.Checked += "; ABI not checked: " + notChecked
	}
	imports := kmod.KernelImports(img)
	signers := map[string]string{}
	for _, mr := range r.Modules {
		if s := mr.Signature; s != nil && s.Signed {
			signers[mr.Name] = s.Signer
		}
	}
	for _, m := range img.Modules {
		res.Modules = append(res.Modules, ledger.ModuleRecord{Name: m.Name(), Imports: imports[m.Name()], Depends: m.Info.Depends, Signer: signers[m.Name()]})
	}
	return res, nil
}

func linksModule(links []string) bool {
	for _, l := range links {
		name, _, _ := strings.Cut(l, " -> ")
		if _, ok := kmod.IsModuleFile(name); ok {
			return true
		}
	}
	return false
}

// wontLoad says which modules would not load, and why, in a line:
// "dtkbot_hello.ko: 6 symbol versions differ from kernel K's (... printk,
// kmalloc, ...); dtkbot_user.ko: ...".
func wontLoad(r *kmod.Report) string {
	var bad []string
	for _, m := range r.Modules {
		if len(m.Problems) > 0 {
			bad = append(bad, path.Base(m.Path)+": "+strings.Join(m.Problems, "; "))
		}
	}
	if len(bad) == 0 {
		return r.Reason
	}
	more := ""
	if len(bad) > 3 {
		more = fmt.Sprintf("; and %d more modules", len(bad)-3)
	}
	return strings.Join(bad[:min(3, len(bad))], "; ") + more
}

// checked says what an accepted check compared.
func checked(r *kmod.Report) string {
	what := []string{"vermagic"}
	if r.ABIChecked {
		what = append(what, "symbol versions")
	}
	what = append(what, "dependencies")
	if r.SignaturesChecked {
		what = append(what, "signatures")
	}
	return strings.Join(what, ", ")
}

// KernelOf is the kernel kernelFull as the DTK image dtk (by digest)
// carries its files: read from the DTK's top layer once, kept in Kernels.
// Missing names the required files the DTK lacks.
func (v *Kmod) KernelOf(ctx context.Context, dtk, arch, kernelFull string) (*kmod.Kernel, []string, error) {
	return v.kernel(ctx, dtk, arch, kernelFull)
}

func (v *Kmod) kernel(ctx context.Context, dtk, arch, kernelFull string) (*kmod.Kernel, []string, error) {
	_, digest, pinned := strings.Cut(dtk, "@")
	if dtk == "" {
		return &kmod.Kernel{Release: kernelFull, RT: kmod.IsRTRelease(kernelFull)}, []string{"kernel files (no DTK image is known)"}, nil
	}
	key := digest + "/" + kernelFull
	if v.Kernels != nil && pinned {
		// One read per DTK and kernel, even when consumers of one kernel are
		// verified at once.
		l := v.lock(key)
		l.Lock()
		defer l.Unlock()
		if data, ok, err := v.Kernels.KernelFiles(key); err == nil && ok {
			if s, err := kmod.DecodeStoredKernel(data); err == nil {
				return s.Kernel, s.Missing, nil
			}
		}
	}
	c := &kmod.Checker{Inspector: releaseinfo.New(v.Registry, releaseinfo.Options{Arch: arch, Limits: v.Limits})}
	k, missing, err := c.KernelFromDTK(ctx, dtk, kernelFull)
	if err != nil {
		if registry.IsContent(err) {
			return nil, nil, fmt.Errorf("%w: the kernel's files in the promoted DTK: %v", ErrWontLoad, err)
		}
		return nil, nil, fmt.Errorf("reading the kernel's files of the promoted DTK: %w", err)
	}
	if v.Kernels != nil && pinned {
		if data, err := (kmod.StoredKernel{Kernel: k, Missing: missing}).Encode(); err == nil {
			_ = v.Kernels.PutKernelFiles(key, data) // a cache: read again next time if it cannot be kept
		}
	}
	return k, missing, nil
}

func (v *Kmod) lock(key string) *sync.Mutex {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.locks == nil {
		v.locks = map[string]*sync.Mutex{}
	}
	l, ok := v.locks[key]
	if !ok {
		l = &sync.Mutex{}
		v.locks[key] = l
	}
	return l
}

// ModulePath renders a module path template (fields Kernel, KernelFull):
// where a kmod image must hold the kernel's modules, relative to the root
// of its layers, ending in "/".
func ModulePath(tmpl, kernel, kernelFull string) (string, error) {
	t, err := template.New("module_path").Option("missingkey=error").Parse(tmpl)
	if err != nil {
		return "", fmt.Errorf("module path %q: %w", tmpl, err)
	}
	var b strings.Builder
	if err := t.Execute(&b, struct{ Kernel, KernelFull string }{kernel, kernelFull}); err != nil {
		return "", fmt.Errorf("module path %q: %w", tmpl, err)
	}
	p := strings.TrimPrefix(b.String(), "./")
	switch {
	case strings.HasPrefix(p, "/"):
		return "", fmt.Errorf("module path %q: a path inside the image's layers, without the leading /", tmpl)
	case !strings.Contains(p, kernelFull) && !strings.Contains(p, kernel):
		return "", fmt.Errorf("module path %q does not name the kernel ({{.KernelFull}}): a module for another kernel would pass", tmpl)
	case strings.Contains("/"+p+"/", "/../"):
		return "", fmt.Errorf("module path %q leaves the image's root", tmpl)
	}
	if !strings.HasSuffix(p, "/") {
		p += "/"
	}
	return p, nil
}
