package releaseinfo

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/dtkbot/dtkbot/guard"
	"github.com/dtkbot/dtkbot/imageread"
	"github.com/dtkbot/dtkbot/imageread/layer"
)

// Files read from component images.
const (
	dtkReleasePath = "etc/driver-toolkit-release.json"
	metaJSONPath   = "usr/share/openshift/base/meta.json"
)

// rtNotInstalled is what DTK builds off x86_64 (and late 4.12.z) write for
// RT; k64NotInstalled what dtkbot's recipe writes for a DTK without
// kernel-64k.
const (
	rtNotInstalled  = "package kernel-rt-core is not installed"
	k64NotInstalled = "package kernel-64k-core is not installed"
)

// dtkKernels is what a Driver Toolkit image says.
type dtkKernels struct {
	kernel, rt, k64 Kernel
	rhel            string
	source          string
	warnings        []string
}

// dtkReleaseJSON is etc/driver-toolkit-release.json.
type dtkReleaseJSON struct {
	KernelVersion   string `json:"KERNEL_VERSION"`
	RTKernelVersion string `json:"RT_KERNEL_VERSION"`
	RHELVersion     string `json:"RHEL_VERSION"`
	// Kernel64KVersion is written by dtkbot's recipe (the OpenShift DTK
	// carries kernel-64k on aarch64 since openshift/driver-toolkit#140
	// without saying so): the +64k kernel's uname -r.
	Kernel64KVersion string `json:"KERNEL_64K_VERSION"`
}

// readDTK finds etc/driver-toolkit-release.json by walking the DTK's layers
// from the top, reading only small layers; if it is not there, it falls back
// to the DTK's kernel-version label.
func (in *Inspector) readDTK(ctx context.Context, pullspec string) (dtkKernels, error) {
	return cachedRead(ctx, in, "dtk "+pullspec, func(ctx context.Context) (dtkKernels, error) { return in.readDTKUncached(ctx, pullspec) })
}

// cachedRead answers from the inspector's per-image memory, or reads and
// remembers a success. Concurrent inspections of z-streams that share an
// image wait for one read instead of making their own; one whose context
// ends stops waiting.
func cachedRead[T any](ctx context.Context, in *Inspector, key string, read func(context.Context) (T, error)) (T, error) {
	if v, ok := in.images.Load(key); ok {
		return v.(T), nil
	}
	return guard.Share(ctx, &in.reading, key, func(ctx context.Context) (T, error) {
		if v, ok := in.images.Load(key); ok {
			return v.(T), nil // read by a call that ended as this one began
		}
		val, err := read(ctx)
		if err == nil {
			in.images.Store(key, val) // a failure is forgotten: the next inspection reads again
		}
		return val, err
	})
}

func (in *Inspector) readDTKUncached(ctx context.Context, pullspec string) (dtkKernels, error) {
	d, _, err := in.readDTKLayers(ctx, pullspec, false)
	return d, err
}

// readDTKLayers walks the DTK's small top layers for its release JSON and,
// with kernelFiles, for the files under etc/driver-toolkit/ as well (the
// recipe writes them in the same last layer: no more bytes are read).
func (in *Inspector) readDTKLayers(ctx context.Context, pullspec string, kernelFiles bool) (dtkKernels, map[string][]byte, error) {
	var out dtkKernels
	img, err := in.img.Open(ctx, pullspec)
	if err != nil {
		return out, nil, err
	}
	defer img.Close()
	lim := in.opts.Limits
	want := func(name string) (int64, bool) {
		if name == dtkReleasePath {
			return lim.MaxDTKJSONBytes, true
		}
		if kernelFiles {
			if _, _, ok := splitKernelFile(name); ok {
				return lim.MaxKernelFileBytes, true
			}
		}
		return 0, false
	}
	collected := map[string][]byte{}
	layers := img.Layers()
	for i, walked := len(layers)-1, 0; i >= 0 && walked < lim.MaxDTKLayers; i, walked = i-1, walked+1 {
		l := layers[i]
		if l.Size < 0 || l.Size > lim.MaxDTKLayerBytes {
			out.warnings = append(out.warnings, fmt.Sprintf("driver-toolkit layer %d (%s, %d bytes) is over the %d-byte limit for a metadata layer: not read", i, l.Digest, l.Size, lim.MaxDTKLayerBytes))
			break
		}
		files, err := in.img.Files(ctx, img, l, lim.MaxDTKLayerBytes, want)
		if err != nil {
			return out, nil, fmt.Errorf("reading layer %d: %w", i, err)
		}
		for name, data := range files {
			if _, higher := collected[name]; !higher && name != dtkReleasePath {
				collected[name] = data // a higher layer's copy wins, as in the container
			}
		}
		if data, ok := files[dtkReleasePath]; ok {
			out.source = SourceDTKReleaseJSON
			parseDTKRelease(data, &out)
			return out, collected, nil
		}
	}
	// Not in the small top layers (a squashed image?): the labels are all
	// that is cheap. They come from build args that are often empty.
	cfg, err := in.img.Config(ctx, img)
	if err != nil {
		return out, nil, err
	}
	if v := cfg.Labels()["kernel-version"]; v != "" {
		if k, err := kernelFromLabel(v, cfg.Architecture); err == nil {
			out.kernel, out.source = k, SourceDTKLabel
		} else {
			out.warnings = append(out.warnings, fmt.Sprintf("driver-toolkit label kernel-version: %v", err))
		}
	}
	if out.kernel.IsZero() {
		out.warnings = append(out.warnings, fmt.Sprintf("driver-toolkit: no %s in its top %d layers and no kernel-version label", dtkReleasePath, lim.MaxDTKLayers))
	}
	return out, collected, nil
}

// kernelFromLabel accepts a `uname -r` value or VERSION-RELEASE, the latter
// completed with the image's architecture.
func kernelFromLabel(v, goarch string) (Kernel, error) {
	if k, err := ParseKernel(v); err == nil {
		return k, nil
	}
	k, err := ParseKernelVR(v)
	if err != nil {
		return Kernel{}, err
	}
	k.Arch = KernelArch(goarch)
	if _, err := ParseKernel(k.String()); err != nil {
		return Kernel{}, err
	}
	return k, nil
}

func parseDTKRelease(data []byte, out *dtkKernels) {
	warn := func(format string, args ...any) { out.warnings = append(out.warnings, fmt.Sprintf(format, args...)) }
	var j dtkReleaseJSON
	if err := json.Unmarshal(data, &j); err != nil {
		warn("driver-toolkit %s: %v", dtkReleasePath, err)
		out.source = ""
		return
	}
	k, err := ParseKernel(strings.TrimSpace(j.KernelVersion))
	if err != nil {
		warn("driver-toolkit %s KERNEL_VERSION: %v", dtkReleasePath, err)
		out.source = ""
	} else {
		out.kernel = k
	}
	switch rt := strings.TrimSpace(j.RTKernelVersion); rt {
	case "", rtNotInstalled:
	default:
		if k, err := ParseKernel(rt); err != nil {
			warn("driver-toolkit %s RT_KERNEL_VERSION: %v", dtkReleasePath, err)
		} else {
			out.rt = k
		}
	}
	switch k64 := strings.TrimSpace(j.Kernel64KVersion); k64 {
	case "", k64NotInstalled:
	default:
		if k, err := ParseKernel(k64); err != nil || !k.Pages64K {
			warn("driver-toolkit %s KERNEL_64K_VERSION %q is not a +64k kernel", dtkReleasePath, k64)
		} else {
			out.k64 = k
		}
	}
	if v := strings.TrimSpace(j.RHELVersion); v != "" {
		if rhelVersionPattern.MatchString(v) {
			out.rhel = v
		} else {
			warn("driver-toolkit %s RHEL_VERSION %q is not a RHEL version", dtkReleasePath, v)
		}
	}
}

// osKernels is what an RHCOS (or machine-os-content) image says.
type osKernels struct {
	kernel, rt Kernel
	source     string
	arch       string
	warnings   []string
}

// readOS reads the OS image's config labels, and its metadata layer only
// when the labels do not name a kernel (4.22 sets ostree.linux to "true").
// metaEra says the payload names an RHCOS build of the 4.19+ form, whose
// images carry the kernel in a small last layer: that layer is then read
// first, and the config only if the layer does not say.
func (in *Inspector) readOS(ctx context.Context, pullspec string, metaEra bool) (osKernels, error) {
	return cachedRead(ctx, in, "os "+pullspec, func(ctx context.Context) (osKernels, error) { return in.readOSUncached(ctx, pullspec, metaEra) })
}

func (in *Inspector) readOSUncached(ctx context.Context, pullspec string, metaEra bool) (osKernels, error) {
	var out osKernels
	img, err := in.img.Open(ctx, pullspec)
	if err != nil {
		return out, err
	}
	defer img.Close()
	if metaEra {
		var meta osKernels
		found, err := in.readMetaLayer(ctx, img, &meta, false)
		if err != nil {
			return out, err
		}
		if found {
			// The packages' arch is the image's.
			meta.arch = goArch(meta.kernel.Arch)
			return meta, nil
		}
	}
	cfg, err := in.img.Config(ctx, img)
	if err != nil {
		return out, err
	}
	out.arch = cfg.Architecture
	labels := cfg.Labels()
	for _, l := range []struct{ label, source string }{
		{"ostree.linux", SourceOSTreeLabel},
		{"com.coreos.rpm.kernel", SourceRPMLabel},
	} {
		v, ok := labels[l.label]
		if !ok || !out.kernel.IsZero() {
			continue
		}
		k, err := ParseKernel(v)
		switch {
		case err == nil:
			out.kernel, out.source = k, l.source
		case v == "true" && labels["io.openshift.metalayer"] == "true":
			// 4.22+: the label only says the kernel is in the metadata layer.
		default:
			out.warnings = append(out.warnings, fmt.Sprintf("OS label %s: %v", l.label, err))
		}
	}
	if v, ok := labels["com.coreos.rpm.kernel-rt-core"]; ok {
		if k, err := ParseKernel(v); err == nil {
			out.rt = asRT(k)
		} else if v != "" {
			out.warnings = append(out.warnings, fmt.Sprintf("OS label com.coreos.rpm.kernel-rt-core: %v", err))
		}
	}
	if out.kernel.IsZero() && labels["io.openshift.metalayer"] == "true" && !metaEra {
		if _, err := in.readMetaLayer(ctx, img, &out, true); err != nil {
			return out, err
		}
	}
	if out.kernel.IsZero() && metaEra && labels["io.openshift.metalayer"] == "true" {
		out.warnings = append(out.warnings, fmt.Sprintf("OS metadata layer of %s names no kernel", pullspec))
	}
	return out, nil
}

// readMetaLayer reads usr/share/openshift/base/meta.json from the OS image's
// last layer, which 4.19+ RHCOS images keep small for exactly this. It
// reports whether it found a kernel there; warn says whether to explain why
// not (a guess of the era need not).
func (in *Inspector) readMetaLayer(ctx context.Context, img *imageread.Image, out *osKernels, warn bool) (bool, error) {
	lim := in.opts.Limits
	layers := img.Layers()
	last := layers[len(layers)-1]
	note := func(format string, args ...any) {
		if warn {
			out.warnings = append(out.warnings, fmt.Sprintf(format, args...))
		}
	}
	if last.Size < 0 || last.Size > lim.MaxMetaLayerBytes {
		note("OS metadata layer %s is %d bytes, over the %d-byte limit: not read", last.Digest, last.Size, lim.MaxMetaLayerBytes)
		return false, nil
	}
	files, err := in.img.Files(ctx, img, last, lim.MaxMetaLayerBytes, layer.Named(map[string]int64{metaJSONPath: lim.MaxMetaJSONBytes}))
	if err != nil {
		return false, fmt.Errorf("reading metadata layer: %w", err)
	}
	data, ok := files[metaJSONPath]
	if !ok {
		note("OS metadata layer %s has no %s", last.Digest, metaJSONPath)
		return false, nil
	}
	kernel, rt, err := parseMetaJSON(data)
	if err != nil {
		note("OS %s: %v", metaJSONPath, err)
		return false, nil
	}
	out.kernel, out.source = kernel, SourceMetaLayer
	if out.rt.IsZero() {
		out.rt = rt
	}
	return true, nil
}

// parseMetaJSON finds the kernel packages in an RHCOS meta.json, whose
// "rpmdb.pkglist" is a list of [name, epoch, version, release, arch].
func parseMetaJSON(data []byte) (kernel, rt Kernel, err error) {
	var meta struct {
		Pkglist [][]json.RawMessage `json:"rpmdb.pkglist"`
	}
	if err := json.Unmarshal(data, &meta); err != nil {
		return kernel, rt, err
	}
	for _, p := range meta.Pkglist {
		if len(p) != 5 {
			continue
		}
		f := make([]string, 5)
		for i, raw := range p {
			if json.Unmarshal(raw, &f[i]) != nil {
				f[i] = string(raw) // an epoch may be a number
			}
		}
		name, version, release, arch := f[0], f[2], f[3], f[4]
		full := version + "-" + release + "." + arch
		switch name {
		case "kernel", "kernel-core":
			if k, err := ParseKernel(full); err == nil && kernel.IsZero() {
				kernel = k
			}
		case "kernel-rt-core":
			if k, err := ParseKernel(full); err == nil && rt.IsZero() {
				rt = asRT(k)
			}
		}
	}
	if kernel.IsZero() {
		return kernel, rt, fmt.Errorf("rpmdb.pkglist names no kernel package")
	}
	return kernel, rt, nil
}

// asRT turns the kernel-rt package's version into the RT kernel's `uname -r`:
// RHEL 8 and early RHEL 9 carry "rt" inside the release
// (4.18.0-305.19.1.rt7.91.el8_4), later ones add "+rt" after the arch.
func asRT(k Kernel) Kernel {
	if !strings.Contains(k.Release, ".rt") {
		k.RT = true
	}
	return k
}

// DTK is what a Driver Toolkit image declares about its kernel.
type DTK struct {
	Kernel, RTKernel Kernel
	// Kernel64K is the +64k kernel a DTK dtkbot's recipe built declares.
	Kernel64K Kernel
	RHEL      string
	Source    string // SourceDTKReleaseJSON, SourceDTKLabel or ""
	Warnings  []string
}

// declared is what the DTK declares, for callers.
func (d dtkKernels) declared() DTK {
	return DTK{Kernel: d.kernel, RTKernel: d.rt, Kernel64K: d.k64, RHEL: d.rhel, Source: d.source, Warnings: d.warnings}
}

// Variants are the kernels the DTK declares besides its own, by variant
// name ("rt", "64k"; the ledger's names).
func (d DTK) Variants() map[string]Kernel {
	out := map[string]Kernel{}
	if !d.RTKernel.IsZero() {
		out["rt"] = d.RTKernel
	}
	if !d.Kernel64K.IsZero() {
		out["64k"] = d.Kernel64K
	}
	return out
}

// ReadDTK reads the kernel a DTK image (ours or a payload's) declares, as an
// inspection does: etc/driver-toolkit-release.json from its small top
// layers, else its kernel-version label. The image is resolved for the
// inspector's arch when it is a manifest list.
func (in *Inspector) ReadDTK(ctx context.Context, pullspec string) (DTK, error) {
	d, err := in.readDTKUncached(ctx, pullspec)
	if err != nil {
		return DTK{}, fmt.Errorf("driver-toolkit %s: %w", pullspec, err)
	}
	return d.declared(), nil
}

// KernelFilesDir is where the DTK recipe (deploy/driver-toolkit/Containerfile)
// copies, per kernel, what checking a module against that kernel needs:
// etc/driver-toolkit/<uname -r>/ holds Module.symvers (from kernel-devel),
// modules.dep and modules.builtin (from kernel-core's /lib/modules/<uname -r>/)
// and vermagic (the kernel's own, as modinfo reads it from one of its
// modules).
const KernelFilesDir = "etc/driver-toolkit/"

// The files of a kernel under KernelFilesDir.
const (
	SymversFile        = "Module.symvers"
	ModulesDepFile     = "modules.dep"
	ModulesBuiltinFile = "modules.builtin"
	VermagicFile       = "vermagic"
)

// KernelFileNames are the files of a kernel under KernelFilesDir, the
// first three required.
var KernelFileNames = []string{SymversFile, ModulesDepFile, ModulesBuiltinFile, VermagicFile}

// splitKernelFile says whether name is etc/driver-toolkit/<kernel>/<file>
// for one of KernelFileNames and a kernel directory of a sane shape.
func splitKernelFile(name string) (kernel, file string, ok bool) {
	rest, ok := strings.CutPrefix(name, KernelFilesDir)
	if !ok {
		return "", "", false
	}
	kernel, file, ok = strings.Cut(rest, "/")
	if !ok || !kernelDirPattern.MatchString(kernel) || !slices.Contains(KernelFileNames, file) {
		return "", "", false
	}
	return kernel, file, true
}

var kernelDirPattern = regexp.MustCompile(`^[0-9][0-9A-Za-z._+~-]{0,127}$`)

// KernelFiles are a DTK's files of one kernel (nil when absent).
type KernelFiles struct {
	Kernel                              string // uname -r, the directory's name
	Symvers, ModulesDep, ModulesBuiltin []byte
	Vermagic                            []byte
}

// Missing names the required files that are absent.
func (k KernelFiles) Missing() []string {
	var out []string
	for _, f := range []struct {
		name string
		data []byte
	}{{SymversFile, k.Symvers}, {ModulesDepFile, k.ModulesDep}, {ModulesBuiltinFile, k.ModulesBuiltin}} {
		if f.data == nil {
			out = append(out, KernelFilesDir+k.Kernel+"/"+f.name)
		}
	}
	return out
}

// DTKFiles is what ReadDTKFiles found.
type DTKFiles struct {
	DTK
	// Kernels are the kernel directories found under KernelFilesDir, by
	// uname -r.
	Kernels map[string]KernelFiles
}

// Files returns the files of kernel (uname -r) and whether all the required
// ones are there.
func (d DTKFiles) Files(kernel string) (KernelFiles, bool) {
	k, ok := d.Kernels[kernel]
	if !ok {
		k = KernelFiles{Kernel: kernel}
	}
	return k, len(k.Missing()) == 0
}

// ReadDTKFiles reads, as ReadDTK does and in the same layer reads, the
// kernel a DTK image declares and the files of its kernels under
// KernelFilesDir (each at most Limits.MaxKernelFileBytes): a few hundred KB
// of one small top layer, digests verified. A DTK built by a recipe without
// them has no Kernels; that is not an error.
func (in *Inspector) ReadDTKFiles(ctx context.Context, pullspec string) (DTKFiles, error) {
	d, files, err := in.readDTKLayers(ctx, pullspec, true)
	if err != nil {
		return DTKFiles{}, fmt.Errorf("driver-toolkit %s: %w", pullspec, err)
	}
	out := DTKFiles{
		DTK:     d.declared(),
		Kernels: map[string]KernelFiles{},
	}
	for name, data := range files {
		kernel, file, ok := splitKernelFile(name)
		if !ok {
			continue
		}
		k := out.Kernels[kernel]
		k.Kernel = kernel
		switch file {
		case SymversFile:
			k.Symvers = data
		case ModulesDepFile:
			k.ModulesDep = data
		case ModulesBuiltinFile:
			k.ModulesBuiltin = data
		case VermagicFile:
			k.Vermagic = data
		}
		out.Kernels[kernel] = k
	}
	return out, nil
}
