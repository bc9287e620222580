// Package config loads dtkbot's config.yaml: strict decoding (an unknown key
// is an error with its line), defaults set before decoding, and a Validate
// that reports every problem at once with the line it is on. Secrets are
// never values in this file: only paths to files or names of environment
// variables.
package config

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/distribution/reference"
	"github.com/robfig/cron/v3"
	"go.yaml.in/yaml/v3"

	"github.com/dtkbot/dtkbot/kmod"
	"github.com/dtkbot/dtkbot/plan"
	"github.com/dtkbot/dtkbot/releasesig"
	"github.com/dtkbot/dtkbot/watcher"
)

// Config is the whole of config.yaml.
type Config struct {
	// Schedule is when `dtkbot run` starts a pass: a cron line (UTC) or
	// "@every 30m".
	Schedule string `yaml:"schedule"`
	// State is the state file; relative paths are relative to the config
	// file's folder.
	State string `yaml:"state"`
	// Listen is the daemon's HTTP address (/healthz, /readyz, /metrics, ...).
	Listen string `yaml:"listen"`
	// ListenTLS, when set, makes the daemon serve TLS on Listen: clusters
	// ask their update service over HTTPS.
	ListenTLS *ListenTLS `yaml:"listen_tls"`
	// Upgrades configure the update graph served to clusters.
	Upgrades Upgrades `yaml:"upgrades"`
	Log      Log      `yaml:"log"`
	Graph    Graph    `yaml:"graph"`
	// Releases are payload pullspecs read in addition to the graph's
	// (disconnected mirrors, pre-release payloads).
	Releases []string `yaml:"releases"`
	// ReleaseControllers are read for pre-releases as soon as they are
	// accepted, before any graph channel lists them.
	ReleaseControllers []ReleaseController `yaml:"release_controllers"`
	// Prerelease says what pre-releases (rc, ec, nightlies) do.
	Prerelease Prerelease `yaml:"prerelease"`
	Registry   Registry   `yaml:"registry"`
	Target     Target     `yaml:"target"`
	Build      Build      `yaml:"build"`
	// Consumers are images built FROM every promoted DTK (kmod images).
	Consumers []Consumer `yaml:"consumers"`
	GitHub    GitHub     `yaml:"github"`
	Verify    Verify     `yaml:"verify"`
	// TriggerTokenFile holds the bearer token POST /trigger requires;
	// without it the endpoint is off.
	TriggerTokenFile string `yaml:"trigger_token_file"`

	// path is the file this was loaded from.
	path string
	root *yaml.Node
}

// ListenTLS is the daemon's certificate (with its chain) and key, PEM
// files read again whenever they change.
type ListenTLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Upgrades configure the update graph dtkbot serves to clusters
// (/api/upgrades_info/v1/graph) and /api/v1/upgrades.
type Upgrades struct {
	// PublicURL is where people reach dtkbot (https://dtkbot.example.com):
	// risks link to its coverage page. Empty: the request's scheme and host.
	PublicURL string `yaml:"public_url"`
	// RateLimit is how many requests a second those endpoints take, every
	// client together, and Burst how many at once.
	RateLimit float64 `yaml:"rate_limit"`
	Burst     int     `yaml:"burst"`
}

// Log configures logging.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // json, console, auto (console on a terminal)
}

// Graph is the update service to discover releases from.
type Graph struct {
	URL      string   `yaml:"url"`
	Channels []string `yaml:"channels"`
	Arches   []string `yaml:"arches"`
	Timeout  Duration `yaml:"timeout"`
	MaxBytes int64    `yaml:"max_bytes"`
}

// ReleaseController is one release-controller API (one per arch).
type ReleaseController struct {
	URL     string   `yaml:"url"`
	Arch    string   `yaml:"arch"`
	Streams []string `yaml:"streams"`
	Phases  []string `yaml:"phases"`
}

// Prerelease is the pre-release policy.
type Prerelease struct {
	// Build are the pre-release kinds whose kernels are built (GA releases
	// always are): rc, ec, fc, nightly, ci, other.
	Build []string `yaml:"build"`
	// Tags gives pre-releases their release tags; floating tags only ever
	// follow GA releases.
	Tags bool `yaml:"tags"`
	// OnWithdrawn is what a Rejected or vanished pre-release's tags get:
	// withdraw (removed) or report.
	OnWithdrawn string `yaml:"on_withdrawn"`
}

// Registry configures reads from (and later writes to) registries.
type Registry struct {
	// Authfile is a containers auth.json or pull secret; empty means
	// $REGISTRY_AUTH_FILE, then the containers defaults.
	Authfile       string   `yaml:"authfile"`
	TLSVerify      *bool    `yaml:"tls_verify"`
	RegistriesConf string   `yaml:"registries_conf"`
	Timeout        Duration `yaml:"timeout"`
	Attempts       int      `yaml:"attempts"`
	Concurrency    int      `yaml:"concurrency"`
	// ResolveTTL is how long a pullspec by tag's digest is trusted.
	ResolveTTL Duration `yaml:"resolve_ttl"`
	// MaxModules bounds the module files read from one kmod image: with
	// more, dtkbot cannot tell whether they load (the image is verified
	// again next pass, the limit named).
	MaxModules int `yaml:"max_modules"`
	// ModuleMemory bounds, in bytes, the memory that the modules read by
	// the verifications in flight hold at once (kmod.Budget).
	ModuleMemory int64 `yaml:"module_memory"`
}

// Target is where dtkbot's DTK images and tags go.
type Target struct {
	// Repository receives the DTK images, e.g. quay.io/acme/driver-toolkit.
	Repository string `yaml:"repository"`
	// KernelTag names the image built for one kernel.
	KernelTag string `yaml:"kernel_tag"`
	// ReleaseTags are the tags promoted for each release.
	ReleaseTags []string `yaml:"release_tags"`
	// FloatingTags move forward with the newest release ({{.Minor}}, latest).
	FloatingTags []string `yaml:"floating_tags"`
	// Mirrors receive copies of every promoted tag, kernel tags included.
	Mirrors []string `yaml:"mirrors"`
	// Staging is where builds push; an image is verified there before it
	// is promoted to the kernel tag.
	Staging Staging `yaml:"staging"`
	// Audit checks, every so often, that the promoted tags are where dtkbot
	// put them.
	Audit Audit `yaml:"audit"`
}

// Staging is the reference builds push to.
type Staging struct {
	// Repository defaults to target.repository.
	Repository string `yaml:"repository"`
	Tag        string `yaml:"tag"`
}

// Audit is the drift audit of promoted tags.
type Audit struct {
	// Interval between audits; 0 turns them off.
	Interval Duration `yaml:"interval"`
	// OnDrift is repoint (put the tag back on the verified image) or report.
	OnDrift string `yaml:"on_drift"`
}

// Verify configures release signature checks.
type Verify struct {
	// Mode is off, warn (check and log) or strict (an unverified payload
	// never drives a build or a promotion).
	Mode string `yaml:"mode"`
	// SignatureStore holds <store>/sha256=<hex>/signature-N: an http(s)
	// URL, or a local directory (a path, relative to the config file's
	// folder, or a file:// URL) with that tree or signature ConfigMaps
	// (oc-mirror's files, or ConfigMaps mounted as a volume).
	SignatureStore string `yaml:"signature_store"`
	// Timeout bounds each request to the signature store.
	Timeout Duration `yaml:"timeout"`
	// Recheck is how long a signature that did not verify, or could not be
	// checked, is left before it is checked again (a verified one never
	// is); 0: every pass.
	Recheck Duration `yaml:"recheck"`
	// PublicKeys are OpenPGP public key files (armored or binary). Left
	// out, Red Hat's release key is trusted; an empty list trusts no key.
	PublicKeys []string `yaml:"public_keys"`
	// Policy is a containers policy.json (sigstore signatures).
	Policy string `yaml:"policy"`
}

// Build configures how DTK images are built.
type Build struct {
	BuildBackend `yaml:",inline"`
	// Verify reads every built image's etc/driver-toolkit-release.json
	// before promoting onto it (default true).
	Verify bool `yaml:"verify"`
	// VerifyInterruptions is how many verifications of one image (a DTK or
	// a consumer's) may be cut short by the process dying (out of memory,
	// killed) before the image is rejected as one that kills its verifier
	// (default 2).
	VerifyInterruptions int `yaml:"verify_interruptions"`
}

// BuildBackend is how images are built, for DTKs (build:) and for
// consumers (consumers[].build:).
type BuildBackend struct {
	// Backend is none (plan builds, request nothing), podman, buildah,
	// github-actions, webhook or kubernetes.
	Backend string `yaml:"backend"`
	// Timeout is how long a requested build may take to appear in the
	// target registry before it is retried.
	Timeout     Duration `yaml:"timeout"`
	MaxAttempts int      `yaml:"max_attempts"`
	// Backoff is the wait before a retry, doubled for each further one.
	Backoff       Duration     `yaml:"backoff"`
	Podman        PodmanBuild  `yaml:"podman"`
	GitHubActions ActionsBuild `yaml:"github_actions"`
	Webhook       WebhookBuild `yaml:"webhook"`
	Kubernetes    KubeBuild    `yaml:"kubernetes"`
}

// PodmanBuild configures the podman and buildah backends.
type PodmanBuild struct {
	Command       string `yaml:"command"` // default: the backend's name
	Containerfile string `yaml:"containerfile"`
	Context       string `yaml:"context"`
	// BaseImage is the UBI base; {{.RHEL}} and {{.RHELMajor}} are replaced.
	BaseImage             string   `yaml:"base_image"`
	RHSMOrgFile           string   `yaml:"rhsm_org_file"`
	RHSMActivationKeyFile string   `yaml:"rhsm_activation_key_file"`
	ExtraArgs             []string `yaml:"extra_args"`
}

// ActionsBuild configures the github-actions backend (auth from github:).
type ActionsBuild struct {
	Repository string `yaml:"repository"` // owner/name
	Workflow   string `yaml:"workflow"`   // build-dtk.yml
	Ref        string `yaml:"ref"`        // main
}

// WebhookBuild configures the webhook backend.
type WebhookBuild struct {
	URL        string `yaml:"url"`
	SecretFile string `yaml:"secret_file"`
}

// KubeBuild configures the kubernetes backend: one batch/v1 Job per build,
// running buildah in the cluster (package kubebuild).
type KubeBuild struct {
	// Namespace of the Jobs, the recipe ConfigMaps and the Secrets;
	// default: the daemon's own (in a pod), else the kubeconfig context's.
	Namespace string `yaml:"namespace"`
	// Kubeconfig reaches the API server from outside the cluster; empty:
	// the pod's ServiceAccount, else $KUBECONFIG or ~/.kube/config.
	Kubeconfig string `yaml:"kubeconfig"`
	// Image is buildah's image (default quay.io/buildah/stable:latest;
	// pin it by digest).
	Image string `yaml:"image"`
	// ServiceAccount runs the build pods (no token is mounted); on
	// OpenShift it is the one granted the SCC buildah needs.
	ServiceAccount string `yaml:"service_account"`
	// PushSecret and PullSecret are kubernetes.io/dockerconfigjson Secrets
	// for the push to staging and for pulls; RHSMSecret holds org and
	// activation-key (DTK builds). Names of Secrets in Namespace, never
	// their values.
	PushSecret string `yaml:"push_secret"`
	PullSecret string `yaml:"pull_secret"`
	RHSMSecret string `yaml:"rhsm_secret"`
	// Containerfile, Context, BaseImage and ExtraArgs are the recipe;
	// each left out is podman's (build.podman / consumers[].build.podman).
	Containerfile string   `yaml:"containerfile"`
	Context       string   `yaml:"context"`
	BaseImage     string   `yaml:"base_image"`
	ExtraArgs     []string `yaml:"extra_args"`
	// Resources of the build container: requests and limits by resource
	// name (cpu, memory, ephemeral-storage), as Kubernetes quantities.
	Resources KubeResources `yaml:"resources"`
	// TTLSecondsAfterFinished keeps a finished Job (and its outcome) this
	// long (default 259200, three days).
	TTLSecondsAfterFinished int `yaml:"ttl_seconds_after_finished"`
	// StorageDriver is buildah's: vfs (default: works anywhere, copies
	// every layer) or overlay (faster; needs rootless overlay support in
	// the node's kernel, or fuse-overlayfs and /dev/fuse in the pod).
	StorageDriver string `yaml:"storage_driver"`
	// Security is how buildah may run: rootless (default), user-namespace
	// or privileged (README.md, "Building in the cluster").
	Security string `yaml:"security"`
	// QPS and Burst bound dtkbot's requests to the API server (client-go's
	// token bucket); default 20 and 30, controller-runtime's.
	QPS   float64 `yaml:"qps"`
	Burst int     `yaml:"burst"`
}

// KubeResources are a container's resource requests and limits.
type KubeResources struct {
	Requests map[string]string `yaml:"requests"`
	Limits   map[string]string `yaml:"limits"`
}

// GitHub is how dtkbot reaches GitHub (the github-actions backend and
// notifications).
type GitHub struct {
	APIURL string `yaml:"api_url"`
	// TokenFile holds a token; empty means $GITHUB_TOKEN. A GitHub App
	// (app_id, installation_id, private_key_file) is used instead when set.
	TokenFile      string `yaml:"token_file"`
	AppID          int64  `yaml:"app_id"`
	InstallationID int64  `yaml:"installation_id"`
	PrivateKeyFile string `yaml:"private_key_file"`
	// Repository receives one issue per new kernel. Notifications are on
	// when it or pull_request.repository is set.
	Repository        string   `yaml:"repository"`
	Label             string   `yaml:"label"`
	CloseWhenPromoted bool     `yaml:"close_when_promoted"`
	MutationInterval  Duration `yaml:"mutation_interval"`
	PullRequest       GitHubPR `yaml:"pull_request"`
	// IncludeBuildLog puts a failed build's last lines (and a webhook's
	// reply) into the kernel's issue; by default issues, /status and the
	// page say what failed and where to look, and the lines stay in the log.
	IncludeBuildLog bool `yaml:"include_build_log"`
}

// GitHubPR configures the optional pull request per kernel.
type GitHubPR struct {
	Repository string `yaml:"repository"` // default github.repository
	Path       string `yaml:"path"`       // the file to update; pull requests are off when empty
	Base       string `yaml:"base"`       // default: the repository's default branch
	Template   string `yaml:"template"`   // the entry appended for a kernel
	// KMM, when present (kmm: {} takes the default paths), adds the
	// kernel's KMM manifests to its pull request.
	KMM *GitHubKMM `yaml:"kmm"`
}

// GitHubKMM names the KMM files of a kernel's pull request, templates over
// the kernel (.Kernel, .KernelFull, .Stream, .Arch); empty: the defaults.
type GitHubKMM struct {
	PreflightPath string `yaml:"preflight_path"`
	MappingsPath  string `yaml:"mappings_path"`
}

// Duration is a time.Duration written as "30s", "2m".
type Duration struct{ time.Duration }

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		// A TypeError: the decoder goes on to the other keys.
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %q is not a duration (30s, 2m, 1h)", n.Line, s)}}
	}
	d.Duration = v
	return nil
}

// MarshalYAML writes the duration back as a string.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// Default returns the configuration used for keys the file leaves out.
func Default() Config {
	return Config{
		Schedule: "@every 30m",
		State:    "dtkbot.db",
		Listen:   ":8080",
		Upgrades: Upgrades{RateLimit: 200, Burst: 400},
		Log:      Log{Level: "info", Format: "auto"},
		Graph: Graph{
			URL:      "https://api.openshift.com/api/upgrades_info/v1/graph",
			Arches:   []string{"amd64"},
			Timeout:  Duration{30 * time.Second},
			MaxBytes: 16 << 20,
		},
		// 16 calls in flight: a cold backfill scales nearly linearly to it
		// (BenchmarkColdBackfill: x7.4 at 8, x13.2 at 16 with 20 ms a
		// request), and it is a modest load for a registry.
		// The module limits are package kmod's (docs/performance.md has the
		// peak memory of a verification at concurrency 16 under them).
		Registry: Registry{Timeout: Duration{2 * time.Minute}, Attempts: 4, Concurrency: 16, ResolveTTL: Duration{24 * time.Hour},
			MaxModules: kmod.DefaultMaxModules, ModuleMemory: kmod.DefaultMemoryBudget},
		Prerelease: Prerelease{Build: []string{"rc", "ec"}, Tags: true, OnWithdrawn: "withdraw"},
		Target: Target{
			KernelTag:   "{{.KernelFull}}",
			ReleaseTags: []string{DefaultReleaseTag},
			Staging:     Staging{Tag: plan.DefaultStagingTag},
			Audit:       Audit{Interval: Duration{24 * time.Hour}, OnDrift: "repoint"},
		},
		Build: Build{Verify: true, VerifyInterruptions: 2, BuildBackend: BuildBackend{Backend: "none", Timeout: Duration{2 * time.Hour}, MaxAttempts: 3, Backoff: Duration{15 * time.Minute},
			Podman: PodmanBuild{
				Containerfile: "deploy/driver-toolkit/Containerfile",
				Context:       "deploy/driver-toolkit",
				BaseImage:     "registry.access.redhat.com/ubi{{.RHELMajor}}/ubi:latest",
			},
			GitHubActions: ActionsBuild{Workflow: "build-dtk.yml", Ref: "main"},
		}},
		Verify: Verify{Mode: "warn", SignatureStore: releasesig.DefaultStore, Timeout: Duration{10 * time.Second}, Recheck: Duration{6 * time.Hour}},
		GitHub: GitHub{APIURL: "https://api.github.com", Label: "dtkbot", CloseWhenPromoted: true, MutationInterval: Duration{time.Second}},
	}
}

// Load reads, decodes and validates path. Every problem is reported, each
// with its key and line, sorted by line: unknown keys and values of the
// wrong type among the others.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	cfg, problems, err := parse(data)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	cfg.path = path
	if err := cfg.Validate(); err != nil {
		problems = append(problems, unjoin(err)...)
	}
	if len(problems) > 0 {
		sort.SliceStable(problems, func(i, j int) bool { return lineOfProblem(problems[i]) < lineOfProblem(problems[j]) })
		return nil, fmt.Errorf("config %s: %w", path, errors.Join(problems...))
	}
	return cfg, nil
}

// unjoin lists the errors errors.Join joined.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// lineOfProblem is the line a problem ("line 7: ...") names; those with
// none (defaults) come last.
func lineOfProblem(err error) int {
	var n int
	if _, e := fmt.Sscanf(err.Error(), "line %d:", &n); e != nil {
		return 1 << 30
	}
	return n
}

// Parse decodes data over the defaults without validating it. A key it
// does not know, or a value of the wrong type, is an error naming every
// one of them.
func Parse(data []byte) (*Config, error) {
	cfg, problems, err := parse(data)
	if err != nil {
		return nil, err
	}
	if len(problems) > 0 {
		return nil, errors.Join(problems...)
	}
	return cfg, nil
}

// parse decodes data over the defaults, strictly, and returns what it
// could decode with the problems of the document's shape (unknown keys,
// values of the wrong type). err is a document that is not YAML at all.
func parse(data []byte) (*Config, []error, error) {
	cfg := Default()
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, nil, err
	}
	problems := shapeProblems(&root)
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) { // an empty file means the defaults
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return nil, nil, err
		}
		// The decoder went on past each of these; shapeProblems said
		// them with their keys. One it did not foresee is said as is.
		if len(problems) == 0 {
			for _, e := range te.Errors {
				problems = append(problems, errors.New(e))
			}
		}
	}
	cfg.root = &root
	cfg.kubeDefaults()
	cfg.consumerDefaults()
	cfg.archDefaults()
	return &cfg, problems, nil
}

// archDefaults makes the default release tags name the arch when more
// than one arch is read (two arches' images of one release would want the
// same tag): a default is never invalid.
func (c *Config) archDefaults() {
	if len(c.arches()) > 1 && !c.written("target", "release_tags") && slices.Equal(c.Target.ReleaseTags, Default().Target.ReleaseTags) {
		c.Target.ReleaseTags = []string{DefaultReleaseTag + "-{{.Arch}}"}
	}
}

// written reports whether the file sets the key at path (mappings only).
func (c *Config) written(path ...string) bool {
	if c.root == nil || len(c.root.Content) == 0 {
		return false
	}
	n := c.root.Content[0]
	for _, key := range path {
		if n.Kind != yaml.MappingNode {
			return false
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == key {
				next = n.Content[i+1]
			}
		}
		if next == nil {
			return false
		}
		n = next
	}
	return true
}

// DefaultReleaseTag is target.release_tags' default with one arch read.
const DefaultReleaseTag = "{{.Release}}{{.StreamSuffix}}"

// Path is the file the config was loaded from ("" if parsed from bytes).
func (c *Config) Path() string { return c.path }

// StatePath resolves State relative to the config file's folder.
func (c *Config) StatePath() string {
	if filepath.IsAbs(c.State) || c.path == "" {
		return c.State
	}
	return filepath.Join(filepath.Dir(c.path), c.State)
}

// Arches the graph is read for, in graph terms.
var knownArches = []string{"amd64", "arm64", "s390x", "ppc64le", "multi"}

// prereleaseKinds are the kinds prerelease.build may name (version.Kind).
var prereleaseKinds = []string{"rc", "ec", "fc", "nightly", "ci", "other"}

// backends are the build.backend values.
var backends = []string{"none", "podman", "buildah", "github-actions", "webhook", "kubernetes"}

var (
	channelPattern = regexp.MustCompile(`^(stable|fast|candidate|eus)-4\.[0-9]+$`)
	levels         = []string{"trace", "debug", "info", "warn", "error"}
	formats        = []string{"auto", "json", "console"}
)

// Validate returns every problem of the configuration, joined, each naming
// its key and line.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		line := ""
		if n := c.lineOf(key); n > 0 {
			line = fmt.Sprintf("line %d: ", n)
		}
		errs = append(errs, fmt.Errorf("%s%s: %s", line, key, fmt.Sprintf(format, args...)))
	}
	if _, err := cron.ParseStandard(c.Schedule); err != nil {
		bad("schedule", "%q: %v (a cron line such as \"0 * * * *\", or @every 30m)", c.Schedule, err)
	}
	if c.State == "" {
		bad("state", "must not be empty")
	}
	if err := checkListen(c.Listen); err != nil {
		bad("listen", "%v", err)
	}
	if u, err := url.Parse(c.GitHub.APIURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		bad("github.api_url", "%q is not an http(s) URL", c.GitHub.APIURL)
	}
	if !slices.Contains(levels, c.Log.Level) {
		bad("log.level", "%q is not one of %s", c.Log.Level, strings.Join(levels, ", "))
	}
	if !slices.Contains(formats, c.Log.Format) {
		bad("log.format", "%q is not one of %s", c.Log.Format, strings.Join(formats, ", "))
	}
	if u, err := url.Parse(c.Graph.URL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		bad("graph.url", "%q is not an http(s) URL", c.Graph.URL)
	}
	for i, ch := range c.Graph.Channels {
		if !channelPattern.MatchString(ch) {
			bad(fmt.Sprintf("graph.channels[%d]", i), "%q is not a channel like stable-4.16", ch)
		}
	}
	if len(c.Graph.Arches) == 0 && len(c.Graph.Channels) > 0 {
		bad("graph.arches", "must name at least one of %s", strings.Join(knownArches, ", "))
	}
	for i, a := range c.Graph.Arches {
		if !slices.Contains(knownArches, a) {
			bad(fmt.Sprintf("graph.arches[%d]", i), "%q is not one of %s", a, strings.Join(knownArches, ", "))
		}
	}
	if c.Graph.Timeout.Duration <= 0 {
		bad("graph.timeout", "must be positive")
	}
	if c.Graph.MaxBytes <= 0 {
		bad("graph.max_bytes", "must be positive")
	}
	for i, r := range c.Releases {
		if _, err := reference.ParseNormalizedNamed(r); err != nil {
			bad(fmt.Sprintf("releases[%d]", i), "%q: %v", r, err)
		}
	}
	if c.Registry.Timeout.Duration <= 0 {
		bad("registry.timeout", "must be positive")
	}
	if c.Registry.Attempts < 1 || c.Registry.Attempts > 20 {
		bad("registry.attempts", "%d is not between 1 and 20", c.Registry.Attempts)
	}
	if c.Registry.Concurrency < 1 || c.Registry.Concurrency > 64 {
		bad("registry.concurrency", "%d is not between 1 and 64", c.Registry.Concurrency)
	}
	if c.Build.VerifyInterruptions < 1 {
		bad("build.verify_interruptions", "%d: must be at least 1", c.Build.VerifyInterruptions)
	}
	if c.Registry.MaxModules < 1 || c.Registry.MaxModules > 1<<20 {
		bad("registry.max_modules", "%d is not between 1 and 1048576", c.Registry.MaxModules)
	}
	if c.Registry.ModuleMemory < 16<<20 {
		bad("registry.module_memory", "%d bytes: at least 16777216 (16 MiB)", c.Registry.ModuleMemory)
	}
	if c.Registry.Authfile != "" {
		if _, err := os.Stat(c.resolve(c.Registry.Authfile)); err != nil {
			bad("registry.authfile", "%v", err)
		}
	}
	if c.Target.Repository != "" {
		if n, err := reference.ParseNormalizedNamed(c.Target.Repository); err != nil || !reference.IsNameOnly(n) {
			bad("target.repository", "%q is not a repository (registry/namespace/name, no tag)", c.Target.Repository)
		}
	}
	for _, t := range []struct {
		key, tmpl string
	}{{"target.kernel_tag", c.Target.KernelTag}, {"target.staging.tag", c.Target.Staging.Tag}} {
		if err := checkTemplate(t.tmpl); err != nil {
			bad(t.key, "%v", err)
		}
	}
	if r := c.Target.Staging.Repository; r != "" {
		if n, err := reference.ParseNormalizedNamed(r); err != nil || !reference.IsNameOnly(n) {
			bad("target.staging.repository", "%q is not a repository (registry/namespace/name, no tag)", r)
		}
	}
	c.validateTags("target", c.PlanTarget(), bad)
	if c.Target.Audit.Interval.Duration < 0 {
		bad("target.audit.interval", "must not be negative (0 turns the audit off)")
	}
	if o := c.Target.Audit.OnDrift; o != "repoint" && o != "report" {
		bad("target.audit.on_drift", "%q is not one of repoint, report", o)
	}
	if c.Build.Backend != "none" && c.Target.Repository == "" {
		bad("target.repository", "must be set to build (build.backend is %s)", c.Build.Backend)
	}
	c.validateBackend("build", c.Build.BuildBackend, bad)
	c.validateConsumers(bad)
	c.validateKMMPaths(bad)
	if c.GitHub.TokenFile != "" {
		if _, err := os.Stat(c.resolve(c.GitHub.TokenFile)); err != nil {
			bad("github.token_file", "%v", err)
		}
	}
	if g := c.GitHub; g.AppID != 0 || g.InstallationID != 0 || g.PrivateKeyFile != "" {
		if g.AppID <= 0 || g.InstallationID <= 0 || g.PrivateKeyFile == "" {
			bad("github.app_id", "a GitHub App needs app_id, installation_id and private_key_file")
		} else if _, err := os.Stat(c.resolve(g.PrivateKeyFile)); err != nil {
			bad("github.private_key_file", "%v", err)
		}
	}
	repoPattern := regexp.MustCompile(`^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$`)
	if r := c.GitHub.Repository; r != "" {
		if !repoPattern.MatchString(r) {
			bad("github.repository", "%q is not owner/name", r)
		}
		if c.GitHub.TokenFile == "" && c.GitHub.AppID == 0 && os.Getenv("GITHUB_TOKEN") == "" {
			bad("github.token_file", "notifications need a token (github.token_file, $GITHUB_TOKEN) or a GitHub App")
		}
	}
	if r := c.GitHub.PullRequest.Repository; r != "" && !repoPattern.MatchString(r) {
		bad("github.pull_request.repository", "%q is not owner/name", r)
	}
	if c.GitHub.PullRequest.Path != "" && c.GitHub.Repository == "" && c.GitHub.PullRequest.Repository == "" {
		bad("github.pull_request.path", "pull requests need github.repository or github.pull_request.repository")
	}
	if c.GitHub.MutationInterval.Duration < 0 {
		bad("github.mutation_interval", "must not be negative")
	}
	switch c.Verify.Mode {
	case "off", "warn", "strict":
	default:
		bad("verify.mode", "%q is not one of off, warn, strict", c.Verify.Mode)
	}
	if c.Verify.Mode == "strict" && c.Verify.PublicKeys != nil && len(c.Verify.PublicKeys) == 0 && c.Verify.Policy == "" {
		bad("verify.public_keys", "verify.mode strict with no key and no policy would hold every payload: leave public_keys out to trust Red Hat's release key, or name keys or a policy")
	}
	if c.Verify.Mode != "off" && (c.Verify.PublicKeys == nil || len(c.Verify.PublicKeys) > 0) {
		if dir, local := releasesig.LocalPath(c.Verify.SignatureStore); !local {
			if u, err := url.Parse(c.Verify.SignatureStore); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
				bad("verify.signature_store", "%q is not an http(s) URL, a file:// URL or a directory", c.Verify.SignatureStore)
			}
		} else if dir == "" {
			bad("verify.signature_store", "must not be empty (an http(s) URL, a file:// URL or a directory)")
		} else if fi, err := os.Stat(c.resolve(dir)); err != nil {
			bad("verify.signature_store", "%v", err)
		} else if !fi.IsDir() {
			bad("verify.signature_store", "%s is not a directory", c.resolve(dir))
		}
	}
	if c.Verify.Timeout.Duration <= 0 {
		bad("verify.timeout", "must be positive")
	}
	if c.Verify.Recheck.Duration < 0 {
		bad("verify.recheck", "must not be negative (0 checks again every pass)")
	}
	for i, k := range c.Verify.PublicKeys {
		if _, err := os.Stat(c.resolve(k)); err != nil {
			bad(fmt.Sprintf("verify.public_keys[%d]", i), "%v", err)
		}
	}
	if c.Verify.Policy != "" {
		if _, err := os.Stat(c.resolve(c.Verify.Policy)); err != nil {
			bad("verify.policy", "%v", err)
		}
	}
	if c.TriggerTokenFile != "" {
		if _, err := os.Stat(c.resolve(c.TriggerTokenFile)); err != nil {
			bad("trigger_token_file", "%v", err)
		}
	}
	c.validateUpgrades(bad)
	streamPattern := regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	for i, rc := range c.ReleaseControllers {
		key := fmt.Sprintf("release_controllers[%d]", i)
		if u, err := url.Parse(rc.URL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			bad(key+".url", "%q is not an http(s) URL", rc.URL)
		}
		if !slices.Contains(knownArches, rc.Arch) {
			bad(key+".arch", "%q is not one of %s", rc.Arch, strings.Join(knownArches, ", "))
		}
		if len(rc.Streams) == 0 {
			bad(key+".streams", "name at least one release stream (4-stable, 4-dev-preview)")
		}
		for j, st := range rc.Streams {
			if !streamPattern.MatchString(st) {
				bad(fmt.Sprintf("%s.streams[%d]", key, j), "%q is not a release stream name", st)
			}
		}
		for j, ph := range rc.Phases {
			if !slices.Contains([]string{"Pending", "Ready", "Accepted"}, ph) {
				bad(fmt.Sprintf("%s.phases[%d]", key, j), "%q is not a phase a release is taken in (Accepted, Ready, Pending)", ph)
			}
		}
	}
	for i, k := range c.Prerelease.Build {
		if !slices.Contains(prereleaseKinds, k) {
			bad(fmt.Sprintf("prerelease.build[%d]", i), "%q is not one of %s", k, strings.Join(prereleaseKinds, ", "))
		}
	}
	if o := c.Prerelease.OnWithdrawn; o != "withdraw" && o != "report" {
		bad("prerelease.on_withdrawn", "%q is not one of withdraw, report", o)
	}
	if c.Registry.ResolveTTL.Duration < 0 {
		bad("registry.resolve_ttl", "must not be negative")
	}
	if len(c.Graph.Channels) == 0 && len(c.Releases) == 0 && len(c.ReleaseControllers) == 0 {
		bad("graph.channels", "no channel, no release-controller and no releases: nothing to watch")
	}
	return errors.Join(errs...)
}

// checkListen checks the daemon's address as net.Listen would take it:
// host:port, the host possibly empty (every address), the port a number
// or a service name.
func checkListen(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		if _, perr := strconv.Atoi(addr); perr == nil {
			return fmt.Errorf("%q is not host:port (\":%s\" listens on every address)", addr, addr)
		}
		return fmt.Errorf("%q is not host:port (\":8080\" listens on every address)", addr)
	}
	if n, err := strconv.Atoi(port); err == nil {
		if n < 0 || n > 65535 {
			return fmt.Errorf("%q: port %d is not between 0 and 65535", addr, n)
		}
		return nil
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		return fmt.Errorf("%q: port %q is neither a number nor a known service", addr, port)
	}
	return nil
}

// validateUpgrades checks listen_tls and upgrades:.
func (c *Config) validateUpgrades(bad func(key, format string, args ...any)) {
	if t := c.ListenTLS; t != nil {
		switch {
		case t.CertFile == "" || t.KeyFile == "":
			bad("listen_tls", "needs cert_file and key_file (PEM files)")
		default:
			// The pair must load now: a daemon that cannot serve TLS
			// should not start. The error names the files, never the key.
			if _, err := tls.LoadX509KeyPair(c.resolve(t.CertFile), c.resolve(t.KeyFile)); err != nil {
				bad("listen_tls.cert_file", "%s and %s do not load as a certificate and its key: %v", c.resolve(t.CertFile), c.resolve(t.KeyFile), err)
			}
		}
	}
	if p := c.Upgrades.PublicURL; p != "" {
		if u, err := url.Parse(p); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			bad("upgrades.public_url", "%q is not an http(s) URL with no query (https://dtkbot.example.com)", p)
		}
	}
	if c.Upgrades.RateLimit <= 0 {
		bad("upgrades.rate_limit", "must be positive")
	}
	if c.Upgrades.Burst < 1 {
		bad("upgrades.burst", "must be at least 1")
	}
}

// ListenTLSFiles is listen_tls with its paths resolved (nil when off).
func (c *Config) ListenTLSFiles() (certFile, keyFile string, ok bool) {
	if c.ListenTLS == nil {
		return "", "", false
	}
	return c.resolve(c.ListenTLS.CertFile), c.resolve(c.ListenTLS.KeyFile), true
}

// PlanTarget is target: as the planner takes it.
func (c *Config) PlanTarget() plan.Target {
	return plan.Target{
		Repository:        c.Target.Repository,
		KernelTag:         c.Target.KernelTag,
		ReleaseTags:       c.Target.ReleaseTags,
		FloatingTags:      c.Target.FloatingTags,
		Mirrors:           c.Target.Mirrors,
		StagingRepository: c.Target.Staging.Repository,
		StagingTag:        c.Target.Staging.Tag,
	}
}

// validateTags checks the tag templates of a target (key: "target", or
// "consumers[0].target"): each renders, the staging tag keeps builds apart
// from every tag consumers read (plan.CheckStaging), and where more than
// one arch is read, every release and floating tag names the arch (two
// arches' images of one release would want one tag, and be held).
func (c *Config) validateTags(key string, t plan.Target, bad func(key, format string, args ...any)) {
	for i, tmpl := range t.ReleaseTags {
		if err := checkTemplate(tmpl); err != nil {
			bad(fmt.Sprintf("%s.release_tags[%d]", key, i), "%v", err)
		}
	}
	for i, tmpl := range t.FloatingTags {
		if err := checkTemplate(tmpl); err != nil {
			bad(fmt.Sprintf("%s.floating_tags[%d]", key, i), "%v", err)
		}
	}
	for i, m := range t.Mirrors {
		if n, err := reference.ParseNormalizedNamed(m); err != nil || !reference.IsNameOnly(n) {
			bad(fmt.Sprintf("%s.mirrors[%d]", key, i), "%q is not a repository", m)
		}
	}
	if err := plan.CheckStaging(t, key+"."); err != nil {
		bad(key+".staging.tag", "%v", err)
	}
	if arches := c.arches(); len(arches) > 1 {
		for _, tt := range []struct {
			name  string
			tmpls []string
		}{{"release_tags", t.ReleaseTags}, {"floating_tags", t.FloatingTags}} {
			for i, tmpl := range tt.tmpls {
				if !strings.Contains(tmpl, ".Arch") {
					bad(fmt.Sprintf("%s.%s[%d]", key, tt.name, i), "%q does not name the arch, and %s are read: the images of each arch would want the same tag (add {{.Arch}})",
						tmpl, strings.Join(arches, " and "))
				}
			}
		}
	}
}

// arches are the arches whose payloads are read: the graph's (multi is
// read as amd64 and arm64) and the release-controllers'.
func (c *Config) arches() []string {
	var out []string
	add := func(a string) {
		for _, x := range watcher.PayloadArches(a) { // as the pass reads a payload
			if !slices.Contains(out, x) {
				out = append(out, x)
			}
		}
	}
	if len(c.Graph.Channels) > 0 || len(c.Releases) > 0 {
		for _, a := range c.Graph.Arches {
			add(a)
		}
	}
	for _, rc := range c.ReleaseControllers {
		add(rc.Arch)
	}
	return out
}

// resolve makes a path relative to the config file's folder.
func (c *Config) resolve(p string) string {
	if filepath.IsAbs(p) || c.path == "" {
		return p
	}
	return filepath.Join(filepath.Dir(c.path), p)
}

// TriggerTokenPath is trigger_token_file resolved against the config's folder.
func (c *Config) TriggerTokenPath() string {
	if c.TriggerTokenFile == "" {
		return ""
	}
	return c.resolve(c.TriggerTokenFile)
}

// Resolve makes a path from the config relative to the config's folder.
func (c *Config) Resolve(p string) string {
	if p == "" {
		return ""
	}
	return c.resolve(p)
}

// SignatureStore is verify.signature_store, a local directory resolved
// against the config's folder.
func (c *Config) SignatureStore() string {
	if dir, local := releasesig.LocalPath(c.Verify.SignatureStore); local && dir != "" {
		return c.resolve(dir)
	}
	return c.Verify.SignatureStore
}

// AuthfilePath is registry.authfile resolved against the config's folder.
func (c *Config) AuthfilePath() string {
	if c.Registry.Authfile == "" {
		return ""
	}
	return c.resolve(c.Registry.Authfile)
}

// lineOf finds the line of a dotted key ("graph.channels[1]") in the file,
// or 0 when the key is not written there (a default).
func (c *Config) lineOf(key string) int {
	if c.root == nil || len(c.root.Content) == 0 {
		return 0
	}
	n := c.root.Content[0]
	line := 0
	for _, part := range strings.Split(key, ".") {
		name, idx := part, -1
		if i := strings.IndexByte(part, '['); i >= 0 {
			name = part[:i]
			fmt.Sscanf(part[i:], "[%d]", &idx)
		}
		if n.Kind != yaml.MappingNode {
			return line
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == name {
				line, next = n.Content[i].Line, n.Content[i+1]
			}
		}
		if next == nil {
			return line
		}
		n = next
		if idx >= 0 && n.Kind == yaml.SequenceNode && idx < len(n.Content) {
			n = n.Content[idx]
			line = n.Line
		}
	}
	return line
}

// checkTemplate renders a tag template with sample values, so a typo in a
// field name is a config error, not a failed promotion at 3 a.m.
func checkTemplate(tmpl string) error { return plan.ValidateTemplate(tmpl) }
