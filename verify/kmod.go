package verify

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"text/template"

	"github.com/dtkbot/dtkbot/guard"
	"github.com/dtkbot/dtkbot/imageread"
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
// the kernel's module path (its layers walked from the top by package
// imageread, whiteouts honoured, digests verified, the limits every
// untrusted read has) is checked by package kmod against the exact kernel,
// whose files (Module.symvers, modules.dep, modules.builtin, vermagic) come
// from the promoted DTK the image was built FROM, read once per DTK and
// kernel and kept in Kernels. Where a label is configured, the image's
// label of that name must name the kernel too.
//
// The pass verifies with VerifyKmod, `dtkbot kmod check` with Check: one
// check, two ways of saying its outcome.
type Kmod struct {
	Registry *registry.Client
	Limits   imageread.Limits
	Read     kmod.ReadOptions
	// Kernels keeps the kernels read from DTK images; nil: read each time.
	Kernels KernelStore

	// reading shares a read of a DTK's kernel files among the checks that
	// need it at once.
	reading guard.Flight
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
	// Kernel, if set, is the kernel's side as the caller has it instead
	// (`dtkbot kmod check --symvers`, or no more than its release): DTK is
	// not read, and what Kernel lacks is not checked.
	Kernel *kmod.Kernel
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

// KmodOutcome is what Check found: the verdict, and what it was made of.
type KmodOutcome struct {
	// Report is kmod's verdict on the image, module by module (what
	// `dtkbot kmod check` prints), accepted or rejected, and why.
	Report *kmod.Report
	// Image is what was read of the image: nil when its layers could not
	// be read (Report says so: that content cannot change).
	Image *kmod.Image
	// NoModules says a rejection is for want of a module for the kernel:
	// none under the module path (Empty), layers that cannot be read, a
	// label naming another kernel. Otherwise the modules would not load.
	NoModules, Empty bool
	// Missing are the required kernel files the DTK lacks.
	Missing []string
}

// Check reads c.Image's modules and checks them against the kernel: the
// outcome when it could decide, accepted or rejected (an image whose
// content cannot be read is rejected: what is behind a digest cannot
// change); an error when it could not tell (the registry unreachable, a
// timeout, a digest mismatch in transit, more modules than Read.MaxModules
// lets it read: a *kmod.TooManyModulesError), try again, or when the DTK's
// kernel files do not parse (wrapping ErrWontLoad).
func (v *Kmod) Check(ctx context.Context, c KmodCheck) (*KmodOutcome, error) {
	k, out := c.Kernel, &KmodOutcome{}
	if k == nil {
		var err error
		if k, out.Missing, err = v.kernel(ctx, c.DTK, c.Arch, c.KernelFull); err != nil {
			return nil, err
		}
	}
	prefix := strings.TrimPrefix(strings.TrimSuffix(c.ModulePath, "/")+"/", "/")
	img, err := v.readImage(ctx, imageread.New(v.Registry, c.Arch, v.Limits), c.Image, prefix)
	if err != nil {
		if !registry.IsContent(err) {
			return nil, err
		}
		out.NoModules = true
		out.Report = &kmod.Report{Image: c.Image, Kernel: k.Release, ModulePath: prefix, ABIChecked: k.Symvers != nil,
			SignaturesChecked: len(c.Certs) > 0, KernelSources: k.Sources, Reason: "its layers cannot be read: " + err.Error()}
		return out, nil
	}
	out.Image = img
	r := kmod.Check(img, k, kmod.CheckOptions{Certs: c.Certs, Load: c.ModuleName, RequireABI: c.Kernel == nil && !c.SkipABI})
	out.Report = r
	switch {
	case c.Label != "" && img.Labels[c.Label] != c.KernelFull:
		r.Accepted, out.NoModules = false, true
		r.Reason = fmt.Sprintf("its label %s is %q, want %s", c.Label, img.Labels[c.Label], c.KernelFull)
	case len(img.Modules) == 0 && len(img.Unreadable) == 0 && !linksModule(img.Links):
		out.NoModules, out.Empty = true, true
	}
	if len(out.Missing) > 0 {
		r.Notes = append([]string{fmt.Sprintf("the driver-toolkit image has no %s (built by a recipe without them?)", strings.Join(out.Missing, ", "))}, r.Notes...)
		if !c.SkipABI && !out.NoModules {
			requireKernelFiles(r, k, c.DTK, out.Missing)
		}
	}
	return out, nil
}

// requireKernelFiles rejects, on a kernel whose files the DTK lacks, what
// could only be checked in part (verify.abi: false accepts it): the
// modules' symbol versions (kmod rejected them already, saying so) or
// their dependencies on the kernel's own modules.
func requireKernelFiles(r *kmod.Report, k *kmod.Kernel, dtk string, missing []string) {
	if !r.Accepted && k.Symvers != nil {
		return // rejected for what could be checked
	}
	why := r.Reason // kmod's: no Module.symvers, so what cannot be checked
	if k.Symvers != nil {
		why = fmt.Sprintf("the modules' dependencies on kernel %s's own modules cannot be checked", k.Release)
	}
	lacking := fmt.Sprintf("the driver-toolkit image %s has no %s: a DTK recipe of your own? dtkbot's copies them", dtk, strings.Join(missing, ", "))
	if dtk == "" {
		lacking = "no DTK image is known, so neither are the kernel's files"
	}
	r.Accepted = false
	r.Reason = fmt.Sprintf("%s (%s; or set verify.abi: false)", why, lacking)
}

// KmodResult is what an accepted image's check found: per module, what
// decides whether it would load on another kernel, and what was checked.
type KmodResult struct {
	Modules []ledger.ModuleRecord
	Checked string
}

// VerifyKmod checks c.Image, as Check does, for the pass. It returns the
// result when the image would be accepted; an error wrapping ErrNoModules
// when it holds no module for the kernel, ErrWontLoad when its modules
// would not load on it (naming the modules and the symbols), both
// ErrRejected; any other error when it, or the DTK, could not be read (try
// again later).
func (v *Kmod) VerifyKmod(ctx context.Context, c KmodCheck) (KmodResult, error) {
	fail := func(err error) (KmodResult, error) { return KmodResult{}, fmt.Errorf("verifying %s: %w", c.Image, err) }
	o, err := v.Check(ctx, c)
	if tooMany := (*kmod.TooManyModulesError)(nil); errors.As(err, &tooMany) {
		// A limit of ours: could not tell, the setting named.
		return fail(fmt.Errorf("%w (the limit is registry.max_modules)", err))
	}
	if err != nil {
		return fail(err)
	}
	r, img := o.Report, o.Image
	switch {
	case o.Empty && len(img.Elsewhere) == 0:
		return fail(fmt.Errorf("%w: no kernel module in its %d layers (want one under /%s)", ErrNoModules, img.Walked, img.ModulePath))
	case o.Empty:
		shown := img.Elsewhere[:min(3, len(img.Elsewhere))]
		return fail(fmt.Errorf("%w: its modules are elsewhere (%s), want them under /%s", ErrNoModules, strings.Join(shown, ", "), img.ModulePath))
	case o.NoModules:
		return fail(fmt.Errorf("%w: %s", ErrNoModules, r.Reason))
	case !r.Accepted:
		return fail(fmt.Errorf("%w: %s", ErrWontLoad, wontLoad(r)))
	}
	res := KmodResult{Checked: checked(r)}
	if len(o.Missing) > 0 {
		res.Checked += fmt.Sprintf("; ABI not checked: the promoted DTK %s has no %s", c.DTK, strings.Join(o.Missing, ", "))
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

// readImage reads every module under modulePath of the kmod image at
// pullspec, through in: every layer from the top, digests verified, a
// module a higher layer deleted or replaced never read (imageread.Walk);
// each module decompressed and parsed as it streams by, within
// v.Read.Budget, so no module's bytes are kept (kmod.Collector). An image
// whose layers cannot be read is an error, registry.IsContent when it is
// the content's fault; an image with more modules than v.Read.MaxModules
// is a *kmod.TooManyModulesError (not content: the limit is ours).
func (v *Kmod) readImage(ctx context.Context, in *imageread.Reader, pullspec, modulePath string) (*kmod.Image, error) {
	modules := kmod.NewCollector(modulePath, v.Read)
	elsewhere := func(name string) bool { _, ok := kmod.IsModuleFile(name); return ok }
	walk, err := in.Walk(ctx, pullspec, modules.ModulePath(), elsewhere, func(f imageread.File, content io.Reader) error {
		err := modules.Add(ctx, f.Name, f.Size, f.Layer, content)
		if tooMany := (*kmod.TooManyModulesError)(nil); errors.As(err, &tooMany) || (err != nil && ctx.Err() != nil) {
			return imageread.Stop(err) // no fault of the image's
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("reading the modules of kmod image %s: %w", pullspec, err)
	}
	img := modules.Image(pullspec)
	img.Digest = walk.Digest.String()
	img.Links, img.Elsewhere, img.Labels = walk.Links, walk.Elsewhere, walk.Labels
	img.Layers, img.Walked = walk.Layers, walk.Walked
	return img, nil
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

// Carried is what the DTK image dtk (by digest) carries of kernel
// kernelFull (its own) and of the other kernels it declares (RT, 64k: the
// variants' uname -r): for each, the required files it lacks. The DTK's
// top layer is read once, and each kernel found kept in Kernels for the
// consumers' checks. Files that do not parse are ErrWontLoad.
func (v *Kmod) Carried(ctx context.Context, dtk, arch, kernelFull string) (ledger.KernelFilesCheck, error) {
	files, err := releaseinfo.New(v.Registry, releaseinfo.Options{Arch: arch, Limits: v.Limits}).ReadDTKFiles(ctx, dtk)
	if err != nil {
		if registry.IsContent(err) {
			return ledger.KernelFilesCheck{}, fmt.Errorf("%w: the kernel's files in the DTK: %v", ErrWontLoad, err)
		}
		return ledger.KernelFilesCheck{}, fmt.Errorf("reading the kernel's files of the DTK: %w", err)
	}
	s, err := v.keep(dtk, files, kernelFull)
	if err != nil {
		return ledger.KernelFilesCheck{}, err
	}
	out := ledger.KernelFilesCheck{Missing: s.Missing}
	variants := files.Variants()
	for _, name := range []string{ledger.VariantRT, ledger.Variant64K} {
		k, ok := variants[name]
		if !ok {
			continue
		}
		s, err := v.keep(dtk, files, k.String())
		switch {
		case errors.Is(err, ErrWontLoad):
			// That variant's files do not parse: its images cannot be
			// checked, the default kernel's still can.
			s.Missing = []string{"readable kernel files (" + err.Error() + ")"}
		case err != nil:
			return ledger.KernelFilesCheck{}, err
		}
		out.Variants = append(out.Variants, ledger.VariantKernel{Variant: name, KernelFull: k.String(), Missing: s.Missing})
	}
	return out, nil
}

// keep makes kernelFull's Kernel of the DTK's files, and keeps it in
// Kernels (a cache: read again next time if it cannot be kept).
func (v *Kmod) keep(dtk string, files releaseinfo.DTKFiles, kernelFull string) (storedKernel, error) {
	s, err := kernelOfFiles(dtk, files, kernelFull)
	if err != nil {
		return s, err
	}
	if _, digest, pinned := strings.Cut(dtk, "@"); pinned && v.Kernels != nil {
		if data, err := s.Encode(); err == nil {
			_ = v.Kernels.PutKernelFiles(digest+"/"+kernelFull, data)
		}
	}
	return s, nil
}

// storedKernel is a kernel as read from a DTK, or as kept in Kernels.
type storedKernel = kmod.StoredKernel

func (v *Kmod) kernel(ctx context.Context, dtk, arch, kernelFull string) (*kmod.Kernel, []string, error) {
	_, digest, pinned := strings.Cut(dtk, "@")
	if dtk == "" {
		return &kmod.Kernel{Release: kernelFull, RT: kmod.IsRTRelease(kernelFull)}, []string{"kernel files (no DTK image is known)"}, nil
	}
	if v.Kernels == nil || !pinned {
		s, err := v.readKernel(ctx, dtk, arch, kernelFull)
		return s.Kernel, s.Missing, err
	}
	// One read per DTK and kernel, even when consumers of one kernel are
	// verified at once; then none, the state keeps it.
	key := digest + "/" + kernelFull
	s, err := guard.Share(ctx, &v.reading, key, func(ctx context.Context) (storedKernel, error) {
		if data, ok, err := v.Kernels.KernelFiles(key); err == nil && ok {
			if s, err := kmod.DecodeStoredKernel(data); err == nil {
				return s, nil
			}
		}
		s, err := v.readKernel(ctx, dtk, arch, kernelFull)
		if err != nil {
			return s, err
		}
		if data, err := s.Encode(); err == nil {
			_ = v.Kernels.PutKernelFiles(key, data) // a cache: read again next time if it cannot be kept
		}
		return s, nil
	})
	return s.Kernel, s.Missing, err
}

// readKernel reads kernelFull's files (etc/driver-toolkit/<kernel>/) from
// the DTK image at pullspec: the Kernel with what is there, and the
// required files that are missing (a DTK built by a recipe without them).
// Files that do not parse are ErrWontLoad: the DTK's content cannot change.
func (v *Kmod) readKernel(ctx context.Context, dtk, arch, kernelFull string) (storedKernel, error) {
	files, err := releaseinfo.New(v.Registry, releaseinfo.Options{Arch: arch, Limits: v.Limits}).ReadDTKFiles(ctx, dtk)
	if err != nil {
		if registry.IsContent(err) {
			return storedKernel{}, fmt.Errorf("%w: the kernel's files in the DTK: %v", ErrWontLoad, err)
		}
		return storedKernel{}, fmt.Errorf("reading the kernel's files of the DTK: %w", err)
	}
	return kernelOfFiles(dtk, files, kernelFull)
}

// kernelOfFiles is kernel kernelFull as the DTK's files have it.
func kernelOfFiles(dtk string, files releaseinfo.DTKFiles, kernelFull string) (storedKernel, error) {
	kf, _ := files.Files(kernelFull)
	k, err := kmod.NewKernel(kf.Kernel, kf.Symvers, kf.ModulesDep, kf.ModulesBuiltin, kf.Vermagic)
	if err != nil {
		return storedKernel{}, fmt.Errorf("%w: the kernel's files in the DTK: driver-toolkit %s: %v", ErrWontLoad, dtk, err)
	}
	if len(k.Sources) > 0 {
		k.Sources = []string{"driver-toolkit " + dtk + ": " + strings.Join(k.Sources, ", ")}
	}
	return storedKernel{Kernel: k, Missing: kf.Missing()}, nil
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
