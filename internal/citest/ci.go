// Package citest is a CI system stand-in for tests and the demo: it takes
// dtkbot's signed build webhooks and GitHub workflow_dispatch calls and
// "builds" by pushing a small DTK-shaped image (a base layer and
// /etc/driver-toolkit-release.json naming the kernel) under the requested
// reference. It counts requests per image, can drop repeated deliveries as
// the X-Dtkbot-Delivery header invites, and can build the wrong kernel on
// purpose.
//
// Its images are real where dtkbot reads them: a DTK carries the kernel's
// files (Module.symvers, modules.dep, modules.builtin, vermagic) of a real
// kernel, a consumer's kmod image real modules built by kbuild (package
// internal/kmodtest says how a Debian kernel's files and modules stand in
// for the world's RHCOS-like kernels).
package citest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/distribution/reference"

	"github.com/dtkbot/dtkbot/builder"
	"github.com/dtkbot/dtkbot/internal/kmodtest"
	"github.com/dtkbot/dtkbot/internal/payloadtest"
)

// CI builds into a payloadtest world. Secret, Token and Dedupe are set
// before it serves; what it builds (the world, the Builds knobs) may change
// while it serves, through SetWorld and Change, under its lock.
type CI struct {
	// Secret signs webhooks (X-Signature-256); Token authorizes dispatches.
	Secret []byte
	Token  string
	// Dedupe drops a delivery seen before.
	Dedupe bool

	mu         sync.Mutex
	world      *payloadtest.World
	knobs      Builds
	builds     map[string]int
	deliveries map[string]bool
	requests   []builder.Inputs
}

// Builds are the knobs of what the CI builds, by kernel (VERSION-RELEASE).
type Builds struct {
	// Wrong maps a kernel to the kernel its build carries instead.
	Wrong map[string]string
	// Never are kernels whose builds are accepted and never pushed (a CI
	// run still going).
	Never map[string]bool
	// For consumer builds (those that name a DTK image): NoModules are
	// kernels whose image holds no .ko, ModulesFor maps a kernel to the
	// kernel whose module directory its image fills instead.
	NoModules  map[string]bool
	ModulesFor map[string]string
	// KernelABI maps a kernel to the Debian kernel (kmodtest.Cloud, RT,
	// Older) whose files its DTK builds carry; default kmodtest.Cloud.
	// NoKernelFiles are kernels whose DTK builds carry none (a recipe of
	// the user's own); WholeSymvers keeps Module.symvers whole.
	// NoVariantFiles are kernels whose DTK builds declare the variants'
	// kernels asked for (KERNEL_VARIANTS) without carrying their files.
	KernelABI      map[string]string
	NoKernelFiles  map[string]bool
	NoVariantFiles map[string]bool
	WholeSymvers   bool
	// For consumer builds: Flavour maps a kernel, or a kernel's variant
	// (kernel+"+rt"), to the headers its modules are built against (by
	// default kmodtest.FlavourRT for the RT variant, FlavourCloud for the
	// others: FlavourRT is a module for kernel-rt); Vermagic to the release their vermagic names
	// instead of the kernel's; Signed to the key that signs them ("trusted"
	// or "other": modules built for kmodtest.SignedRelease only); Only to
	// the modules the image holds (default both, dtkbot_user needing
	// dtkbot_hello).
	Flavour  map[string]string
	Vermagic map[string]string
	Signed   map[string]string
	Only     map[string][]string
}

// SetWorld says where builds push (and where the world is, for a CI
// started before it).
func (c *CI) SetWorld(w *payloadtest.World) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.world = w
}

// Change changes what the CI builds from the next request on.
func (c *CI) Change(f func(*Builds)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f(&c.knobs)
}

// Requests returns the inputs of every build request received.
func (c *CI) Requests() []builder.Inputs {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]builder.Inputs(nil), c.requests...)
}

// Builds returns how many times each image was requested.
func (c *CI) Builds() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int{}
	for k, v := range c.builds {
		out[k] = v
	}
	return out
}

// Webhook is the build webhook endpoint.
func (c *CI) Webhook(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	mac := hmac.New(sha256.New, c.Secret)
	mac.Write(body)
	if !hmac.Equal([]byte(r.Header.Get("X-Signature-256")), []byte("sha256="+hex.EncodeToString(mac.Sum(nil)))) {
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var in struct {
		builder.Inputs
		KernelFull string `json:"kernel_full"`
	}
	if err := json.Unmarshal(body, &in); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if c.build(w, in.Inputs, in.KernelFull, r.Header.Get("X-Dtkbot-Delivery")) {
		w.WriteHeader(http.StatusAccepted)
	}
}

// Dispatch is GitHub's workflow_dispatch endpoint.
func (c *CI) Dispatch(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+c.Token {
		http.Error(w, `{"message":"Bad credentials"}`, http.StatusUnauthorized)
		return
	}
	var body struct {
		Ref    string         `json:"ref"`
		Inputs builder.Inputs `json:"inputs"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&body); err != nil {
		http.Error(w, err.Error(), http.StatusUnprocessableEntity)
		return
	}
	if c.build(w, body.Inputs, "", "") {
		w.WriteHeader(http.StatusNoContent)
	}
}

// build pushes the image; it answers the request itself only on error.
func (c *CI) build(w http.ResponseWriter, in builder.Inputs, kernelFull, delivery string) bool {
	named, err := reference.ParseNormalizedNamed(in.Image)
	tagged, ok := named.(reference.NamedTagged)
	if err != nil || !ok {
		http.Error(w, "bad image", http.StatusBadRequest)
		return false
	}
	c.mu.Lock()
	if c.builds == nil {
		c.builds, c.deliveries = map[string]int{}, map[string]bool{}
	}
	c.builds[in.Image]++
	c.requests = append(c.requests, in)
	dup := delivery != "" && c.deliveries[delivery]
	c.deliveries[delivery] = true
	world, b := c.world, c.knobs
	c.mu.Unlock()
	if (dup && c.Dedupe) || b.Never[in.KernelVersion] {
		return true
	}
	if in.DTKImage != "" {
		b.pushKmod(world, reference.Path(named), tagged.Tag(), in)
		return true
	}
	kernel := in.KernelVersion
	if k, ok := b.Wrong[kernel]; ok {
		kernel = k
	}
	if kernelFull == "" || kernel != in.KernelVersion {
		kernelFull = kernel + ".x86_64"
	}
	top := DTKTopLayer(DTKBuild{KernelFull: kernelFull, RTKernel: in.RTKernelVersion, RHEL: in.RHELVersion, Variants: strings.Fields(in.KernelVariants),
		ABI: b.KernelABI[in.KernelVersion], WholeSymvers: b.WholeSymvers, NoKernelFiles: b.NoKernelFiles[in.KernelVersion],
		NoVariantFiles: b.NoVariantFiles[in.KernelVersion]})
	world.PushImage(reference.Path(named), tagged.Tag(), payloadtest.Image{
		OCI:    true,
		Labels: map[string]string{"kernel-version": in.KernelVersion},
		Layers: [][]byte{payloadtest.NoiseLayer("ubi", 16<<10), payloadtest.TarGz(top...)},
	})
	return true
}

// DTKKernelFiles are the entries of a DTK's last layer under
// etc/driver-toolkit/<kernelFull>/, as dtkbot's recipe copies them: the
// files of Debian kernel abi (default kmodtest.Cloud) for kernelFull; for
// an aarch64 kernel, Cloud's are the arm64 kernel's of its page size.
func DTKKernelFiles(kernelFull, abi string, whole bool) []payloadtest.TarEntry {
	if abi == "" {
		abi = kmodtest.Cloud
	}
	files := kmodtest.KernelFiles
	if pages, ok := kmodtest.ArmPages(kernelFull); ok && abi == kmodtest.Cloud {
		// an aarch64 kernel: the arm64 kernel of its page size
		files = func(kernelFull, _ string, _ bool) []kmodtest.File {
			return kmodtest.KernelFilesArm64(kernelFull, pages)
		}
	}
	var out []payloadtest.TarEntry
	for _, f := range files(kernelFull, abi, whole) {
		out = append(out, payloadtest.File(f.Name, f.Data))
	}
	return out
}

// DTKBuild is what a DTK build is asked for, as the test world builds it.
type DTKBuild struct {
	// KernelFull is the default kernel's uname -r; RTKernel the payload's
	// RT kernel (VERSION-RELEASE), RHEL its RHEL version.
	KernelFull, RTKernel, RHEL string
	// Variants are the variants' kernels asked for (KERNEL_VARIANTS): "64k"
	// (on aarch64). The RT kernel is carried whenever RTKernel is given
	// (on x86_64), as the recipe installs it.
	Variants []string
	// ABI is the Debian kernel whose files stand in for the default
	// kernel's (default kmodtest.Cloud; the RT kernel's are kmodtest.RT's,
	// the 64k kernel's kmodtest.Cloud's); WholeSymvers keeps its
	// Module.symvers whole. NoKernelFiles: no kernel's files at all (a
	// recipe of the user's own); NoVariantFiles: the variants' kernels are
	// declared and their files missing.
	ABI                                         string
	WholeSymvers, NoKernelFiles, NoVariantFiles bool
}

// DTKTopLayer is the last layer of a DTK build, as dtkbot's recipe
// (deploy/driver-toolkit/Containerfile) writes it: the release JSON naming
// each kernel it carries (RT_KERNEL_VERSION, KERNEL_64K_VERSION), and each
// one's files under etc/driver-toolkit/<uname -r>/.
func DTKTopLayer(b DTKBuild) []payloadtest.TarEntry {
	rel := map[string]string{"KERNEL_VERSION": b.KernelFull, "RT_KERNEL_VERSION": "package kernel-rt-core is not installed",
		"KERNEL_64K_VERSION": "package kernel-64k-core is not installed", "RHEL_VERSION": b.RHEL}
	type carried struct{ full, abi string }
	kernels := []carried{{b.KernelFull, b.ABI}}
	if b.RTKernel != "" && strings.HasSuffix(b.KernelFull, ".x86_64") { // installed whenever the payload ships one
		full := b.RTKernel + ".x86_64"
		if !strings.Contains(b.RTKernel, ".rt") {
			full += "+rt" // RHEL 9.4 and later; earlier RT releases say "rt" in theirs
		}
		rel["RT_KERNEL_VERSION"] = full
		kernels = append(kernels, carried{full, kmodtest.RT})
	}
	if slices.Contains(b.Variants, "64k") && strings.HasSuffix(b.KernelFull, ".aarch64") {
		rel["KERNEL_64K_VERSION"] = b.KernelFull + "+64k"
		kernels = append(kernels, carried{b.KernelFull + "+64k", kmodtest.Cloud})
	}
	data, _ := json.Marshal(rel)
	out := []payloadtest.TarEntry{payloadtest.File("etc/driver-toolkit-release.json", data)}
	for i, k := range kernels {
		if b.NoKernelFiles || (i > 0 && b.NoVariantFiles) {
			continue
		}
		out = append(out, DTKKernelFiles(k.full, k.abi, b.WholeSymvers && i == 0)...)
	}
	return out
}

// kmodModules are the module files of a kmod image for kernel (VERSION-
// RELEASE), kernelFull's: real modules (see Flavour, Vermagic, Signed,
// Only), under dir.
func (c Builds) kmodModules(dir, kernel, variant, kernelFull string) []payloadtest.TarEntry {
	var mods map[string][]byte
	if key, ok := c.Signed[kernel]; ok {
		mods = kmodtest.Signed(key)
	} else {
		flavour, release := c.Flavour[kernel+"+"+variant], kernelFull
		if flavour == "" {
			flavour = c.Flavour[kernel]
		}
		switch {
		case flavour != "":
		case variant == "rt":
			flavour = kmodtest.FlavourRT
		default:
			flavour = kmodtest.FlavourCloud
		}
		if v, ok := c.Vermagic[kernel]; ok {
			release = v
		}
		mods = kmodtest.Modules(flavour, release)
	}
	names := kmodtest.ModuleNames
	if only, ok := c.Only[kernel]; ok {
		names = only
	}
	var out []payloadtest.TarEntry
	for _, n := range names {
		out = append(out, payloadtest.File(dir+"extra/"+n+".ko", mods[n+".ko"]))
	}
	return out
}

// pushKmod "builds" a consumer's kmod image: a base layer, then the layer
// of the last COPY with the module under /opt/lib/modules/<kernel>/, as
// deploy/examples/kmod/Containerfile lays it out.
func (c Builds) pushKmod(world *payloadtest.World, repo, tag string, in builder.Inputs) {
	kernelFull := in.KernelFullVersion
	if k, ok := c.ModulesFor[in.KernelVersion]; ok {
		kernelFull = k + ".x86_64"
	}
	dir := "opt/lib/modules/" + kernelFull + "/"
	entries := []payloadtest.TarEntry{payloadtest.File(dir+"modules.dep", []byte("extra/dtkbot_hello.ko:\nextra/dtkbot_user.ko: extra/dtkbot_hello.ko kernel/lib/crc-itu-t.ko\n"))}
	top := payloadtest.TarGz(append(entries, c.kmodModules(dir, in.KernelVersion, in.KernelVariant, kernelFull)...)...)
	if c.NoModules[in.KernelVersion] {
		top = payloadtest.TarGz(payloadtest.File("usr/share/doc/acme-nic/README", []byte("no module here")))
	}
	world.PushImage(repo, tag, payloadtest.Image{
		OCI:    true,
		Labels: map[string]string{"kernel-version": in.KernelFullVersion, "io.acme.built-from": in.DTKImage},
		Layers: [][]byte{payloadtest.NoiseLayer("ubi-minimal", 8<<10), payloadtest.TarGz(payloadtest.File("usr/bin/cp", []byte("cp"))), top},
	})
}
