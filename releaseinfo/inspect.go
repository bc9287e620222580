// Package releaseinfo answers "which kernels does this OpenShift release
// ship?" from a release payload pullspec, with a few small registry reads:
// the release image's manifest and last layer, and for each OS stream the
// manifests, configs and the small top layers of its RHCOS and Driver
// Toolkit images. It re-implements the part of `oc adm release info` that
// dtkbot needs. It reads what a DTK image declares, too: its kernel
// (ReadDTK) and the files of that kernel dtkbot's DTK recipe adds
// (ReadDTKFiles), from the same small top layers.
//
// Images are read through package imageread (digests verified at EOF,
// every read bounded). releaseinfo never downloads an OS content layer or
// a DTK base layer, never trusts a byte before its digest is verified, and
// never takes a label for a kernel without checking its shape.
package releaseinfo

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"

	"github.com/dtkbot/dtkbot/guard"
	"github.com/dtkbot/dtkbot/imageread"
	"github.com/dtkbot/dtkbot/imageread/layer"
	"github.com/dtkbot/dtkbot/registry"
)

// Cache remembers reports by payload digest and arch. Implementations must
// be safe for concurrent use. The state store implements it persistently.
type Cache interface {
	Get(key string) (*Report, bool)
	Put(key string, r *Report)
}

// MemoryCache is a Cache in memory.
type MemoryCache struct{ m sync.Map }

// Get returns a copy of the cached report.
func (c *MemoryCache) Get(key string) (*Report, bool) {
	v, ok := c.m.Load(key)
	if !ok {
		return nil, false
	}
	r := cloneReport(v.(*Report))
	return r, true
}

// Put stores a copy of r.
func (c *MemoryCache) Put(key string, r *Report) { c.m.Store(key, cloneReport(r)) }

func cloneReport(r *Report) *Report {
	b, _ := json.Marshal(r)
	var out Report
	_ = json.Unmarshal(b, &out)
	return &out
}

// CacheKey is the cache key of a payload digest inspected for arch.
func CacheKey(d digest.Digest, arch string) string { return d.String() + "/" + arch }

// Options configure an Inspector.
type Options struct {
	// Arch is the architecture to read, as the update graph names it
	// (amd64, arm64, s390x, ppc64le); it picks the instance of a manifest list.
	Arch string
	// Limits bound every read (imageread.DefaultLimits when zero).
	Limits imageread.Limits
	// Cache, if set, answers repeated inspections of a digest with no request.
	Cache Cache
	// Concurrency bounds the releases InspectAll reads at once. Default 4.
	Concurrency int
}

// Inspector reads release payloads.
type Inspector struct {
	reg  *registry.Client
	img  *imageread.Reader
	opts Options
	// images remembers what each DTK and OS image (pinned by digest) said:
	// z-streams that share an RHCOS build share these images, so a backfill
	// reads each of them once, even when they are inspected at once
	// (reading shares one read of an image under way).
	images  sync.Map
	reading guard.Flight
}

// New returns an Inspector reading through reg.
func New(reg *registry.Client, opts Options) *Inspector {
	if opts.Arch == "" {
		opts.Arch = "amd64"
	}
	if opts.Limits == (imageread.Limits{}) {
		opts.Limits = imageread.DefaultLimits()
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 4
	}
	return &Inspector{reg: reg, img: imageread.New(reg, opts.Arch, opts.Limits), opts: opts}
}

// Result is one release of InspectAll.
type Result struct {
	Pullspec string
	Report   *Report
	Err      error
}

// InspectAll inspects pullspecs concurrently and returns results in order.
// progress, if not nil, is told how many are done after each one.
func (in *Inspector) InspectAll(ctx context.Context, pullspecs []string, progress func(done, total int)) []Result {
	results := make([]Result, len(pullspecs))
	slots := make(chan struct{}, in.opts.Concurrency)
	var wg sync.WaitGroup
	var mu sync.Mutex
	done := 0
	for i, p := range pullspecs {
		guard.Go(&wg, func() {
			if progress != nil {
				defer func() {
					mu.Lock()
					done++
					progress(done, len(pullspecs))
					mu.Unlock()
				}()
			}
			select {
			case slots <- struct{}{}:
				defer func() { <-slots }()
				r, err := in.Inspect(ctx, p)
				results[i] = Result{Pullspec: p, Report: r, Err: err}
			case <-ctx.Done():
				results[i] = Result{Pullspec: p, Err: ctx.Err()}
			}
		}, func(err error) { results[i] = Result{Pullspec: p, Err: &PayloadError{Pullspec: p, Err: err}} })
	}
	wg.Wait()
	return results
}

// Inspect reads the release payload at pullspec. A pullspec by digest that
// was inspected before is answered from the cache without any request.
func (in *Inspector) Inspect(ctx context.Context, pullspec string) (*Report, error) {
	named, err := reference.ParseNormalizedNamed(pullspec)
	if err != nil {
		return nil, fmt.Errorf("parsing release pullspec %q: %w", pullspec, err)
	}
	if c, ok := named.(reference.Canonical); ok {
		if r, ok := in.cached(c.Digest(), pullspec); ok {
			return r, nil
		}
	}
	img, err := in.reg.Open(ctx, pullspec)
	if err != nil {
		return nil, &PayloadError{Pullspec: pullspec, Err: err}
	}
	defer img.Close()
	if r, ok := in.cached(img.Digest, pullspec); ok {
		return r, nil
	}
	r, err := in.inspectRelease(ctx, img)
	if err != nil {
		return nil, &PayloadError{Pullspec: pullspec, Digest: img.Digest.String(), Err: err}
	}
	if in.opts.Cache != nil {
		in.opts.Cache.Put(CacheKey(img.Digest, in.opts.Arch), r)
	}
	return r, nil
}

func (in *Inspector) cached(d digest.Digest, pullspec string) (*Report, bool) {
	if in.opts.Cache == nil {
		return nil, false
	}
	r, ok := in.opts.Cache.Get(CacheKey(d, in.opts.Arch))
	if ok {
		r.Pullspec = pullspec
	}
	return r, ok
}

// PayloadError is a failed inspection of one payload. Digest is set once
// the payload's manifest was read; registry.IsContent tells a payload whose
// content is broken (held for good) from one that could not be read now.
type PayloadError struct {
	Pullspec string
	Digest   string
	Err      error
}

func (e *PayloadError) Error() string { return fmt.Sprintf("release %s: %v", e.Pullspec, e.Err) }
func (e *PayloadError) Unwrap() error { return e.Err }

// Instance is the image pullspec (by digest) is for the inspector's arch,
// as imageread.Reader.Instance says.
func (in *Inspector) Instance(ctx context.Context, pullspec string) (d digest.Digest, list bool, err error) {
	return in.img.Instance(ctx, pullspec)
}

func (in *Inspector) inspectRelease(ctx context.Context, img *registry.Image) (*Report, error) {
	rel, err := in.img.Resolve(ctx, img)
	if err != nil {
		return nil, err
	}
	layers := rel.Layers()
	last := layers[len(layers)-1]
	lim := in.opts.Limits
	files, err := in.img.Files(ctx, rel, last, lim.MaxReleaseLayerBytes, layer.Named(map[string]int64{
		imageReferencesPath: lim.MaxImageReferencesBytes,
		releaseMetadataPath: lim.MaxReleaseMetadataBytes,
	}))
	if err != nil {
		return nil, fmt.Errorf("reading last layer: %w", err)
	}
	refs, ok := files[imageReferencesPath]
	if !ok {
		return nil, registry.Content(fmt.Errorf("reading last layer %s: no regular file %s (is this a release image?)", last.Digest, imageReferencesPath))
	}
	comps, err := parseImageReferences(refs)
	if err != nil {
		return nil, registry.Content(err)
	}
	report := &Report{
		Release:        comps.version,
		Pullspec:       img.Ref,
		Digest:         img.Digest.String(),
		InstanceDigest: rel.Instance.String(),
		Arch:           rel.Arch,
		RHCOSVersions:  []string{},
		Streams:        []Stream{},
		Warnings:       comps.warnings,
	}
	if meta, ok := files[releaseMetadataPath]; !ok {
		report.Warnings = append(report.Warnings, "no "+releaseMetadataPath+" in the last layer")
	} else if md, err := parseReleaseMetadata(meta); err != nil {
		report.Warnings = append(report.Warnings, err.Error())
	} else if md.Version != comps.version {
		report.Warnings = append(report.Warnings, fmt.Sprintf("release-metadata says version %s, image-references %s", md.Version, comps.version))
	}

	specs := streamSpecs(comps)
	if len(specs) == 0 {
		return nil, registry.Content(fmt.Errorf("image-references names no OS image (rhel-coreos, rhel-coreos-8, machine-os-content)"))
	}
	// Streams are read at the same time, as their images are independent.
	type streamResult struct {
		s      Stream
		osArch string
		err    error
	}
	results := make([]streamResult, len(specs))
	var wg sync.WaitGroup
	for i, spec := range specs {
		guard.Go(&wg, func() {
			s, osArch, err := in.inspectStream(ctx, comps, spec)
			results[i] = streamResult{s, osArch, err}
		}, func(err error) { results[i].err = err })
	}
	wg.Wait()
	for i, spec := range specs {
		s, osArch, err := results[i].s, results[i].osArch, results[i].err
		if err != nil {
			return nil, fmt.Errorf("stream %s: %w", spec.osTag, err)
		}
		if report.Arch == "" {
			report.Arch = osArch
		}
		if s.RHCOSVersion != "" && !slices.Contains(report.RHCOSVersions, s.RHCOSVersion) {
			report.RHCOSVersions = append(report.RHCOSVersions, s.RHCOSVersion)
		}
		report.Streams = append(report.Streams, s)
	}
	if report.Arch == "" {
		report.Arch = in.opts.Arch
	}
	for i := range report.Streams {
		s := &report.Streams[i]
		if want := KernelArch(report.Arch); s.KernelFull != "" && !strings.Contains(s.KernelFull, "."+want) {
			s.Warnings = append(s.Warnings, fmt.Sprintf("kernel %s is not built for %s", s.KernelFull, report.Arch))
			s.Consistent = false
		}
	}
	return report, nil
}

// streamSpec names the OS and DTK components of one stream.
type streamSpec struct {
	osTag, dtkTag string
	stream        string // when the tag name alone says it
}

// streamSpecs lists a payload's OS streams. rhel-coreos-10 (4.21+) is its own
// stream; otherwise the newest OS tag wins: rhel-coreos (4.13+), then
// rhel-coreos-8 (4.12), then machine-os-content (up to 4.14, alone up to 4.11).
func streamSpecs(c *components) []streamSpec {
	var out []streamSpec
	for _, os := range []string{"rhel-coreos", "rhel-coreos-8", "machine-os-content"} {
		if _, ok := c.tags[os]; ok {
			spec := streamSpec{osTag: os}
			if os != "rhel-coreos" {
				spec.stream = "rhel-8"
			}
			if _, ok := c.tags["driver-toolkit"]; ok {
				spec.dtkTag = "driver-toolkit"
			}
			out = append(out, spec)
			break
		}
	}
	if _, ok := c.tags["rhel-coreos-10"]; ok {
		spec := streamSpec{osTag: "rhel-coreos-10", stream: "rhel-10"}
		if _, ok := c.tags["driver-toolkit-10"]; ok {
			spec.dtkTag = "driver-toolkit-10"
		}
		out = append(out, spec)
	}
	return out
}

var (
	rhelVersionPattern = regexp.MustCompile(`^[0-9]{1,2}(?:\.[0-9]{1,2})?$`)
	streamClassPattern = regexp.MustCompile(`^rhel-[0-9]{1,2}$`)
)

// inspectStream reads the kernel of one stream from its DTK and OS images.
func (in *Inspector) inspectStream(ctx context.Context, comps *components, spec streamSpec) (Stream, string, error) {
	s, err := streamImages(comps, spec)
	if err != nil {
		return s, "", err
	}
	dtk, osk, err := in.readStreamImages(ctx, s)
	if err != nil {
		return s, "", err
	}
	s.Warnings = append(s.Warnings, dtk.warnings...)
	s.Warnings = append(s.Warnings, osk.warnings...)
	kernel := s.setKernels(spec, dtk, osk)
	s.setStream(spec, comps, dtk, kernel)
	return s, osk.arch, nil
}

// streamImages is a stream as its payload names it: its OS and DTK
// images, and the RHCOS build of its OS image.
func streamImages(comps *components, spec streamSpec) (Stream, error) {
	s := Stream{OSTag: spec.osTag, DTKTag: spec.dtkTag, KernelSource: SourceUnknown}
	var err error
	if s.OSImage, err = comps.image(spec.osTag); err != nil {
		return s, err
	}
	if id := comps.buildVersions(spec.osTag)["machine-os"]; id != "" {
		if _, ok := rhelOfRHCOS(id); ok {
			s.RHCOSVersion = id
		} else {
			s.Warnings = append(s.Warnings, fmt.Sprintf("machine-os annotation %q is not an RHCOS build id", id))
		}
	}
	if spec.dtkTag != "" {
		if s.DTKImage, err = comps.image(spec.dtkTag); err != nil {
			return s, err
		}
	}
	return s, nil
}

// readStreamImages reads what the stream's DTK (if any) and OS images say
// of their kernels, both at the same time: each call still takes its slot
// under the registry client's one bound.
func (in *Inspector) readStreamImages(ctx context.Context, s Stream) (dtkKernels, osKernels, error) {
	var dtk dtkKernels
	var osk osKernels
	var dtkErr, osErr error
	var wg sync.WaitGroup
	if s.DTKImage != "" {
		guard.Go(&wg, func() { dtk, dtkErr = in.readDTK(ctx, s.DTKImage) }, func(err error) { dtkErr = err })
	}
	guard.Go(&wg, func() { osk, osErr = in.readOS(ctx, s.OSImage, rhcosNewID.MatchString(s.RHCOSVersion)) }, func(err error) { osErr = err })
	wg.Wait()
	if dtkErr != nil {
		return dtk, osk, fmt.Errorf("driver-toolkit %s: %w", s.DTKImage, dtkErr)
	}
	if osErr != nil {
		return dtk, osk, fmt.Errorf("OS image %s: %w", s.OSImage, osErr)
	}
	return dtk, osk, nil
}

// setKernels decides the stream's kernel and RT kernel from what its DTK
// and OS images say, cross-checking them, and returns the kernel. The
// nodes run the OS image's kernel: it is the kernel of the stream, the
// DTK's only where the OS image does not say.
func (s *Stream) setKernels(spec streamSpec, dtk dtkKernels, osk osKernels) Kernel {
	warn := func(format string, args ...any) { s.Warnings = append(s.Warnings, fmt.Sprintf(format, args...)) }
	if !dtk.kernel.IsZero() {
		s.DTKKernel, s.DTKKernelSource = dtk.kernel.String(), dtk.source
	}
	kernel, rt := osk.kernel, dtk.rt
	switch {
	case !osk.kernel.IsZero():
		s.KernelSource = osk.source
	case !dtk.kernel.IsZero():
		kernel, s.KernelSource = dtk.kernel, dtk.source
	}
	if rt.IsZero() {
		rt = osk.rt
	}
	switch {
	case !dtk.kernel.IsZero() && !osk.kernel.IsZero():
		s.Consistent = dtk.kernel.VR() == osk.kernel.VR() && dtk.kernel.Arch == osk.kernel.Arch
		if !s.Consistent {
			warn("inconsistent payload: driver-toolkit kernel %s differs from %s kernel %s", dtk.kernel, spec.osTag, osk.kernel)
		}
	case spec.dtkTag == "" && kernel.IsZero():
		warn("kernel unknown: this payload has no driver-toolkit image and its %s image carries no kernel label (payloads before 4.8); only pulling the OS image would tell", spec.osTag)
	case dtk.kernel.IsZero() && osk.kernel.IsZero():
		warn("kernel unknown: neither the driver-toolkit nor the OS image declares one cheaply")
	case spec.dtkTag == "":
		warn("no driver-toolkit image in this payload: kernel taken from the OS image, not cross-checked")
	case dtk.kernel.IsZero():
		warn("driver-toolkit kernel unknown: cannot cross-check the OS kernel %s", osk.kernel)
	default:
		warn("OS kernel unknown: cannot cross-check the driver-toolkit kernel %s", dtk.kernel)
	}
	if !kernel.IsZero() {
		s.Kernel, s.KernelFull = kernel.VR(), kernel.String()
	}
	if !rt.IsZero() {
		s.RTKernel, s.RTKernelFull = rt.VR(), rt.String()
	}
	return kernel
}

// setStream names the stream's RHEL version and stream (rhel-9, ...):
// the DTK's RHEL version, else its RHCOS build's, else its kernel's; the
// stream from the OS tag, its stream class, the RHEL version or the
// kernel, checked against the kernel's.
func (s *Stream) setStream(spec streamSpec, comps *components, dtk dtkKernels, kernel Kernel) {
	rhelFromID, _ := rhelOfRHCOS(s.RHCOSVersion)
	switch {
	case dtk.rhel != "":
		s.RHELVersion = dtk.rhel
	case rhelFromID != "":
		s.RHELVersion = rhelFromID
	default:
		s.RHELVersion = kernel.RHEL()
	}
	s.Stream = spec.stream
	if sc := comps.tags[spec.osTag].Annotations["io.openshift.os.streamclass"]; s.Stream == "" && streamClassPattern.MatchString(sc) {
		s.Stream = sc
	}
	if s.Stream == "" && s.RHELVersion != "" {
		major, _, _ := strings.Cut(s.RHELVersion, ".")
		s.Stream = "rhel-" + major
	}
	if s.Stream == "" {
		s.Stream = kernel.Stream()
	}
	if ks := kernel.Stream(); ks != "" && s.Stream != "" && ks != s.Stream {
		s.Warnings = append(s.Warnings, fmt.Sprintf("kernel %s belongs to %s, not to stream %s", kernel, ks, s.Stream))
		s.Consistent = false
	}
}
