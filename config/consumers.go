package config

import (
	"crypto/x509"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"text/template"
	"time"

	"github.com/distribution/reference"

	"github.com/dtkbot/dtkbot/kmod"
	"github.com/dtkbot/dtkbot/ledger"
	"github.com/dtkbot/dtkbot/plan"
	"github.com/dtkbot/dtkbot/verify"
)

// Consumer is one downstream image built FROM every promoted DTK: a kmod
// image (driver container) that KMM loads.
type Consumer struct {
	// Name identifies the consumer in state, tags' records, issues and
	// the KMM API: lower case letters, digits and dashes.
	Name  string       `yaml:"name"`
	Build BuildBackend `yaml:"build"`
	// Target is where its images go: the kernel tag (default
	// {{.KernelFull}}, what KMM's ${KERNEL_FULL_VERSION} templating
	// expects), optional release and floating tags and mirrors (as target:
	// has for the DTK), and the staging tag its builds push to.
	Target plan.Target    `yaml:"target"`
	Verify ConsumerVerify `yaml:"verify"`
	KMM    ConsumerKMM    `yaml:"kmm"`
	// Variants are the kernel variants its images are built for: default
	// (the kernel of the release), rt (realtime, x86_64) and 64k (64 KB
	// pages, aarch64), each kernel's that its DTK carries. Default
	// [default].
	Variants []string `yaml:"variants"`
}

// KernelVariants are Variants as the ledger spells them ("" the default
// kernel), in the order given.
func (c Consumer) KernelVariants() []string {
	var out []string
	for _, name := range c.Variants {
		if v, err := ledger.ParseVariant(name); err == nil && !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

// ConsumerVariants are the kernel variants each consumer asks for, by name
// (ledger's spelling).
func (c *Config) ConsumerVariants() map[string][]string {
	out := map[string][]string{}
	for _, k := range c.Consumers {
		out[k.Name] = k.KernelVariants()
	}
	return out
}

// ConsumerVerify says what a consumer's image must hold to be promoted.
type ConsumerVerify struct {
	// ModulePath is where at least one .ko must be, a template (default
	// opt/lib/modules/{{.KernelFull}}/, KMM's default prefix).
	ModulePath string `yaml:"module_path"`
	// Label, if set, is an image label that must name the kernel
	// (uname -r); the example recipe sets kernel-version.
	Label string `yaml:"label"`
	// SigningCerts are certificate files (PEM or DER, relative to the
	// config file) its Secure Boot nodes trust: every module must carry a
	// signature that verifies with one of them. Read and checked at load.
	SigningCerts []string `yaml:"signing_certs"`
	// ABI (default true) rejects an image whose promoted DTK lacks the
	// kernel's files (Module.symvers, modules.dep, modules.builtin), which
	// its modules' symbol versions are checked against; false checks what
	// can be checked and says the ABI was not.
	ABI *bool `yaml:"abi"`
	// Certs are SigningCerts, parsed (by Validate).
	Certs []*x509.Certificate `yaml:"-"`
}

// RequireABI is verify.abi with its default.
func (v ConsumerVerify) RequireABI() bool { return v.ABI == nil || *v.ABI }

// ConsumerKMM describes the consumer's KMM Module, for the Module
// manifest dtkbot serves (/api/v1/kmm/modules/{name}).
type ConsumerKMM struct {
	ModuleName string            `yaml:"module_name"` // what modprobe loads
	Namespace  string            `yaml:"namespace"`
	Selector   map[string]string `yaml:"selector"` // default: worker nodes
}

// Consumer defaults, for keys a consumers[] item leaves out.
const (
	DefaultKmodContainerfile = "deploy/examples/kmod/Containerfile"
	DefaultKmodContext       = "deploy/examples/kmod"
	DefaultKmodWorkflow      = "build-kmod.yml"
	DefaultModulePath        = "opt/lib/modules/{{.KernelFull}}/"
)

// consumerDefaults fills what each consumer leaves out (list items get no
// defaults from Default()).
func (c *Config) consumerDefaults() {
	for i := range c.Consumers {
		k := &c.Consumers[i]
		b := &k.Build
		if b.Backend == "" {
			b.Backend = "none"
		}
		if b.Timeout.Duration == 0 {
			b.Timeout = c.Build.Timeout
		}
		if b.MaxAttempts == 0 {
			b.MaxAttempts = c.Build.MaxAttempts
		}
		if b.Backoff.Duration == 0 {
			b.Backoff = Duration{15 * time.Minute}
		}
		if b.Podman.Containerfile == "" {
			b.Podman.Containerfile = DefaultKmodContainerfile
		}
		if b.Podman.Context == "" {
			b.Podman.Context = DefaultKmodContext
		}
		if b.GitHubActions.Workflow == "" {
			b.GitHubActions.Workflow = DefaultKmodWorkflow
		}
		if b.GitHubActions.Ref == "" {
			b.GitHubActions.Ref = "main"
		}
		b.Kubernetes.inherit(c.Build.Kubernetes)
		if k.Target.KernelTag == "" {
			k.Target.KernelTag = "{{.KernelFull}}"
		}
		if k.Target.Staging.Tag == "" {
			k.Target.Staging.Tag = plan.DefaultStagingTag
		}
		if k.Verify.ModulePath == "" {
			k.Verify.ModulePath = DefaultModulePath
		}
		if k.Verify.ABI == nil {
			t := true
			k.Verify.ABI = &t
		}
		if len(k.Variants) == 0 {
			k.Variants = []string{"default"}
		}
	}
}

var (
	consumerName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)
	moduleName   = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	namespace    = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)
)

func (c *Config) validateConsumers(bad func(key, format string, args ...any)) {
	seen := map[string]bool{}
	repos := map[string]string{}
	if c.Target.Repository != "" {
		repos[c.Target.Repository] = "target.repository"
	}
	for i, k := range c.Consumers {
		key := fmt.Sprintf("consumers[%d]", i)
		switch {
		case !consumerName.MatchString(k.Name):
			bad(key+".name", "%q is not a name (lower case letters, digits and dashes, at most 63)", k.Name)
		case seen[k.Name]:
			bad(key+".name", "%q names two consumers", k.Name)
		}
		seen[k.Name] = true
		if c.Target.Repository == "" {
			bad(key, "consumers are built FROM promoted DTK images: set target.repository")
		}
		if n, err := reference.ParseNormalizedNamed(k.Target.Repository); err != nil || !reference.IsNameOnly(n) {
			bad(key+".target.repository", "%q is not a repository (registry/namespace/name, no tag)", k.Target.Repository)
		} else if other, ok := repos[k.Target.Repository]; ok {
			bad(key+".target.repository", "%q is also %s: their kernel tags would collide", k.Target.Repository, other)
		} else {
			repos[k.Target.Repository] = key + ".target.repository"
		}
		if r := k.Target.Staging.Repository; r != "" {
			if n, err := reference.ParseNormalizedNamed(r); err != nil || !reference.IsNameOnly(n) {
				bad(key+".target.staging.repository", "%q is not a repository (registry/namespace/name, no tag)", r)
			}
		}
		for _, t := range []struct{ key, tmpl string }{{".target.kernel_tag", k.Target.KernelTag}, {".target.staging.tag", k.Target.Staging.Tag}} {
			if err := checkTemplate(t.tmpl); err != nil {
				bad(key+t.key, "%v", err)
			}
		}
		c.validateTags(key+".target", k.Target, bad)
		if _, err := verify.ModulePath(k.Verify.ModulePath, "5.14.0-427.37.1.el9_4", "5.14.0-427.37.1.el9_4.x86_64"); err != nil {
			bad(key+".verify.module_path", "%v", err)
		}
		c.Consumers[i].Verify.Certs = nil
		for j, f := range k.Verify.SigningCerts {
			certs, err := kmod.LoadCertificates(c.Resolve(f))
			if err != nil {
				bad(fmt.Sprintf("%s.verify.signing_certs[%d]", key, j), "%v", err)
				continue
			}
			c.Consumers[i].Verify.Certs = append(c.Consumers[i].Verify.Certs, certs...)
		}
		if m := k.KMM.ModuleName; m != "" && !moduleName.MatchString(m) {
			bad(key+".kmm.module_name", "%q is not a kernel module name", m)
		}
		if ns := k.KMM.Namespace; ns != "" && !namespace.MatchString(ns) {
			bad(key+".kmm.namespace", "%q is not a namespace name", ns)
		}
		p := k.Build.Podman
		if p.BaseImage != "" || p.RHSMOrgFile != "" || p.RHSMActivationKeyFile != "" {
			bad(key+".build.podman", "base_image and the RHSM files are not used: a consumer is built FROM the DTK, which carries the kernel's packages")
		}
		c.validateBackend(key+".build", k.Build, bad)
		c.validateVariants(key+".variants", k, bad)
	}
}

// validateVariants checks a consumer's kernel variants: known names, each
// once, each for an arch dtkbot reads (RT kernels are x86_64's, 64k ones
// aarch64's), and tags that tell the variants' images apart.
func (c *Config) validateVariants(key string, k Consumer, bad func(key, format string, args ...any)) {
	arches := c.arches()
	seen := map[string]bool{}
	for i, name := range k.Variants {
		v, err := ledger.ParseVariant(name)
		switch {
		case err != nil || name == "":
			bad(fmt.Sprintf("%s[%d]", key, i), "%q is not a kernel variant: one of %s", name, strings.Join(ledger.VariantNames, ", "))
			continue
		case seen[v]:
			bad(fmt.Sprintf("%s[%d]", key, i), "%q is named twice", name)
		}
		seen[v] = true
		if a := ledger.VariantArch(v); a != "" && len(arches) > 0 && !slices.Contains(arches, a) {
			bad(fmt.Sprintf("%s[%d]", key, i), "%s kernels exist for %s only, and dtkbot reads no %s payload (graph.arches, release_controllers[].arch: %s)",
				name, a, a, strings.Join(arches, ", "))
		}
	}
	if len(seen) < 2 {
		return
	}
	for _, t := range append([]struct{ key, tmpl string }{{".target.kernel_tag", k.Target.KernelTag}, {".target.staging.tag", k.Target.Staging.Tag}},
		tagKeys(k.Target)...) {
		if err := plan.NamesVariant(t.tmpl); err != nil {
			bad(strings.TrimSuffix(key, ".variants")+t.key, "%v: the images of the consumer's variants would share a tag", err)
		}
	}
}

// tagKeys are a target's release and floating tag templates, with their keys.
func tagKeys(t plan.Target) []struct{ key, tmpl string } {
	var out []struct{ key, tmpl string }
	for i, tmpl := range t.ReleaseTags {
		out = append(out, struct{ key, tmpl string }{fmt.Sprintf(".target.release_tags[%d]", i), tmpl})
	}
	for i, tmpl := range t.FloatingTags {
		out = append(out, struct{ key, tmpl string }{fmt.Sprintf(".target.floating_tags[%d]", i), tmpl})
	}
	return out
}

// validateKMMPaths checks the path templates of github.pull_request.kmm.
func (c *Config) validateKMMPaths(bad func(key, format string, args ...any)) {
	k := c.GitHub.PullRequest.KMM
	if k == nil {
		return
	}
	if c.GitHub.PullRequest.Path == "" {
		bad("github.pull_request.kmm", "KMM manifests go into the kernel's pull request: set github.pull_request.path too")
	}
	sample := struct{ Kernel, KernelFull, Stream, Arch string }{"5.14.0-427.37.1.el9_4", "5.14.0-427.37.1.el9_4.x86_64", "rhel-9", "amd64"}
	for key, p := range map[string]string{"github.pull_request.kmm.preflight_path": k.PreflightPath, "github.pull_request.kmm.mappings_path": k.MappingsPath} {
		if p == "" {
			continue
		}
		t, err := template.New(key).Option("missingkey=error").Parse(p)
		var out strings.Builder
		if err == nil {
			err = t.Execute(&out, sample)
		}
		switch {
		case err != nil:
			bad(key, "%v", err)
		case strings.HasPrefix(out.String(), "/") || strings.Contains("/"+out.String()+"/", "/../"):
			bad(key, "%q is not a path inside the repository", p)
		case !strings.Contains(out.String(), sample.KernelFull) && !strings.Contains(out.String(), sample.Kernel):
			bad(key, "%q does not name the kernel: every kernel's pull request would write the same file", p)
		}
	}
	if k.PreflightPath != "" && k.PreflightPath == k.MappingsPath {
		bad("github.pull_request.kmm.mappings_path", "the same file as preflight_path")
	}
}

// validateBackend checks a build backend's settings, under key ("build",
// "consumers[0].build").
func (c *Config) validateBackend(key string, b BuildBackend, bad func(key, format string, args ...any)) {
	if !slices.Contains(backends, b.Backend) {
		bad(key+".backend", "%q is not one of %s", b.Backend, strings.Join(backends, ", "))
	}
	if b.Timeout.Duration <= 0 {
		bad(key+".timeout", "must be positive")
	}
	if b.MaxAttempts < 1 {
		bad(key+".max_attempts", "must be at least 1")
	}
	if b.Backoff.Duration < 0 {
		bad(key+".backoff", "must not be negative")
	}
	switch b.Backend {
	case "podman", "buildah":
		p := b.Podman
		if p.RHSMOrgFile != "" || p.RHSMActivationKeyFile != "" {
			for k, f := range map[string]string{key + ".podman.rhsm_org_file": p.RHSMOrgFile, key + ".podman.rhsm_activation_key_file": p.RHSMActivationKeyFile} {
				if f == "" {
					bad(k, "set both RHSM files, or neither")
				} else if _, err := os.Stat(c.resolve(f)); err != nil {
					bad(k, "%v", err)
				}
			}
		}
		if _, err := os.Stat(c.resolve(p.Containerfile)); err != nil {
			bad(key+".podman.containerfile", "%v", err)
		}
	case "github-actions":
		if !regexp.MustCompile(`^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$`).MatchString(b.GitHubActions.Repository) {
			bad(key+".github_actions.repository", "%q is not owner/name", b.GitHubActions.Repository)
		}
		if b.GitHubActions.Workflow == "" || b.GitHubActions.Ref == "" {
			bad(key+".github_actions", "workflow and ref must be set")
		}
		if c.GitHub.TokenFile == "" && c.GitHub.AppID == 0 && os.Getenv("GITHUB_TOKEN") == "" {
			bad("github.token_file", "the github-actions backend (%s) needs a token: github.token_file, $GITHUB_TOKEN or a GitHub App", key)
		}
	case "kubernetes":
		c.validateKube(key+".kubernetes", b, bad)
	case "webhook":
		if u, err := url.Parse(b.Webhook.URL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			bad(key+".webhook.url", "not an http(s) URL")
		}
		if b.Webhook.SecretFile == "" {
			bad(key+".webhook.secret_file", "a webhook is signed: give the file of its shared secret")
		} else if _, err := os.Stat(c.resolve(b.Webhook.SecretFile)); err != nil {
			bad(key+".webhook.secret_file", "%v", err)
		}
	}
}
