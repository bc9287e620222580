package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/dtkbot/dtkbot/breaker"
	"github.com/dtkbot/dtkbot/builder"
	"github.com/dtkbot/dtkbot/config"
	"github.com/dtkbot/dtkbot/imageread"
	"github.com/dtkbot/dtkbot/kmm"
	"github.com/dtkbot/dtkbot/kmod"
	"github.com/dtkbot/dtkbot/kubebuild"
	"github.com/dtkbot/dtkbot/notify"
	"github.com/dtkbot/dtkbot/plan"
	"github.com/dtkbot/dtkbot/promote"
	"github.com/dtkbot/dtkbot/reconcile"
	"github.com/dtkbot/dtkbot/registry"
	"github.com/dtkbot/dtkbot/releasesig"
	"github.com/dtkbot/dtkbot/state"
	"github.com/dtkbot/dtkbot/upgradegraph"
	"github.com/dtkbot/dtkbot/verify"
	"github.com/dtkbot/dtkbot/watcher"
)

// registryOptions are the registry settings of a config.
func registryOptions(cfg *config.Config) registry.Options {
	return registry.Options{
		AuthFile:       cfg.AuthfilePath(),
		TLSVerify:      cfg.Registry.TLSVerify,
		RegistriesConf: cfg.Registry.RegistriesConf,
		Timeout:        cfg.Registry.Timeout.Duration,
		Attempts:       cfg.Registry.Attempts,
		Concurrency:    cfg.Registry.Concurrency,
		UserAgent:      "dtkbot/" + version,
	}
}

// newBuilder is the build backend b names (key: where it is configured).
func newBuilder(cfg *config.Config, key string, b config.BuildBackend, log zerolog.Logger) (builder.Builder, error) {
	switch b.Backend {
	case "podman", "buildah":
		cmd := b.Podman.Command
		if cmd == "" {
			cmd = b.Backend
		}
		return &builder.CommandBuilder{
			Command: cmd, Containerfile: cfg.Resolve(b.Podman.Containerfile), Context: cfg.Resolve(b.Podman.Context),
			BaseImage: b.Podman.BaseImage, RHSMOrgFile: cfg.Resolve(b.Podman.RHSMOrgFile),
			RHSMActivationKeyFile: cfg.Resolve(b.Podman.RHSMActivationKeyFile),
			AuthFile:              cfg.AuthfilePath(), TLSVerify: cfg.Registry.TLSVerify, ExtraArgs: b.Podman.ExtraArgs,
			Timeout: b.Timeout.Duration, Log: log,
		}, nil
	case "github-actions":
		auth, err := githubAuth(cfg)
		if err != nil {
			return nil, err
		}
		return &builder.ActionsBuilder{
			APIURL: cfg.GitHub.APIURL, Repository: b.GitHubActions.Repository, Workflow: b.GitHubActions.Workflow,
			Ref: b.GitHubActions.Ref, Token: func() (string, error) { return auth.Token(context.Background()) },
			HTTP: serviceClient("github-actions", buildRequestTimeout),
		}, nil
	case "webhook":
		secret, err := readSecret(cfg.Resolve(b.Webhook.SecretFile))
		if err != nil {
			return nil, fmt.Errorf("%s.webhook.secret_file: %w", key, err)
		}
		return &builder.WebhookBuilder{URL: b.Webhook.URL, Secret: secret, HTTP: serviceClient(serviceWithHost("build-webhook", b.Webhook.URL), buildRequestTimeout)}, nil
	case "kubernetes":
		return newKubeBuilder(cfg, key, b, log)
	}
	return builder.Unconfigured{What: "build backend (" + key + ".backend)"}, nil
}

// Timeouts of one request to the outside services with no config key of
// their own: as their clients had them.
const (
	buildRequestTimeout  = time.Minute      // a build backend's request (webhook, workflow_dispatch)
	githubRequestTimeout = 30 * time.Second // a GitHub API request (notify)
)

// serviceClient is the HTTP client of one outside service: each request
// bounded by timeout, and through the service's breaker in the pass it is
// part of (after a few requests in a row without an answer, the rest of the
// pass stops asking it: breaker.Transport).
func serviceClient(service string, timeout time.Duration) *http.Client {
	return &http.Client{Transport: &breaker.Transport{Service: service, Timeout: timeout}}
}

// newKubeBuilder is the kubernetes backend: the in-cluster ServiceAccount,
// or a kubeconfig.
func newKubeBuilder(cfg *config.Config, key string, b config.BuildBackend, log zerolog.Logger) (builder.Builder, error) {
	k := b.Kubernetes
	rc, ns, err := kubebuild.RESTConfig(cfg.Resolve(k.Kubeconfig))
	if err != nil {
		return nil, fmt.Errorf("%s.kubernetes: %w", key, err)
	}
	rc.UserAgent = "dtkbot/" + version
	if k.Namespace != "" {
		ns = k.Namespace
	}
	if ns == "" {
		return nil, fmt.Errorf("%s.kubernetes.namespace: not set, and neither the pod nor the kubeconfig context names one", key)
	}
	res := corev1.ResourceRequirements{}
	for _, r := range []struct {
		from map[string]string
		to   *corev1.ResourceList
	}{{k.Resources.Requests, &res.Requests}, {k.Resources.Limits, &res.Limits}} {
		for name, q := range r.from {
			v, err := resource.ParseQuantity(q)
			if err != nil {
				return nil, fmt.Errorf("%s.kubernetes.resources: %s %q: %w", key, name, q, err)
			}
			if *r.to == nil {
				*r.to = corev1.ResourceList{}
			}
			(*r.to)[corev1.ResourceName(name)] = v
		}
	}
	containerfile, context, base, extra := b.KubeRecipe()
	kb, err := kubebuild.New(rc, kubebuild.Options{
		Namespace: ns, Image: k.Image, ServiceAccount: k.ServiceAccount,
		PushSecret: k.PushSecret, PullSecret: k.PullSecret, RHSMSecret: k.RHSMSecret,
		Containerfile: cfg.Resolve(containerfile), Context: cfg.Resolve(context), BaseImage: base, ExtraArgs: extra,
		TLSVerify: cfg.Registry.TLSVerify, Resources: res, Timeout: b.Timeout.Duration,
		TTLAfterFinished: time.Duration(k.TTLSecondsAfterFinished) * time.Second,
		StorageDriver:    k.StorageDriver, Security: kubebuild.Security(k.Security), QPS: float32(k.QPS), Burst: k.Burst, Log: log,
	})
	if err != nil {
		return nil, fmt.Errorf("%s.kubernetes: %w", key, err)
	}
	return kb, nil
}

// githubAuth is a GitHub App when one is configured, else a token.
func githubAuth(cfg *config.Config) (notify.Auth, error) {
	g := cfg.GitHub
	if g.AppID != 0 {
		key, err := notify.LoadAppKey(cfg.Resolve(g.PrivateKeyFile))
		if err != nil {
			return nil, err
		}
		return &notify.AppAuth{APIURL: g.APIURL, AppID: g.AppID, InstallationID: g.InstallationID, Key: key,
			Base: &breaker.Transport{Service: "github", Timeout: githubRequestTimeout}}, nil
	}
	return notify.TokenAuth{File: cfg.Resolve(g.TokenFile)}, nil
}

// newNotifier is the GitHub notifier the config describes.
func newNotifier(cfg *config.Config, store *state.Store, log zerolog.Logger) (*notify.Notifier, error) {
	auth, err := githubAuth(cfg)
	if err != nil {
		return nil, err
	}
	gh, err := notify.NewClientWith(cfg.GitHub.APIURL, auth, &breaker.Transport{Service: "github", Timeout: githubRequestTimeout})
	if err != nil {
		return nil, err
	}
	opts := notify.Options{
		Repository: cfg.GitHub.Repository, Label: cfg.GitHub.Label, CloseWhenPromoted: cfg.GitHub.CloseWhenPromoted,
		MutationInterval: cfg.GitHub.MutationInterval.Duration, IncludeBuildLog: cfg.GitHub.IncludeBuildLog,
	}
	if opts.Repository == "" {
		opts.Repository = cfg.GitHub.PullRequest.Repository
	}
	if pr := cfg.GitHub.PullRequest; pr.Path != "" {
		opts.PullRequest = &notify.PullRequestOptions{Repository: pr.Repository, Path: pr.Path, Base: pr.Base, Template: pr.Template}
		if k := pr.KMM; k != nil {
			opts.PullRequest.KMM = &notify.KMMOptions{PreflightPath: k.PreflightPath, MappingsPath: k.MappingsPath}
		}
	}
	return notify.New(gh, auth, opts, store, log)
}

// readSecret reads a secret file, without its trailing newline. The error
// names the file, never the content.
func readSecret(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading secret: %w", err)
	}
	b = []byte(strings.TrimSpace(string(b)))
	if len(b) == 0 {
		return nil, fmt.Errorf("secret file %s is empty", path)
	}
	return b, nil
}

// newReconciler wires a pass from the config: the one place that knows
// which implementation stands behind each interface.
func newReconciler(cfg *config.Config, store *state.Store, log zerolog.Logger) (*reconcile.Reconciler, *registry.Client, error) {
	reg := registry.New(registryOptions(cfg))
	dtkBuilder, err := newBuilder(cfg, "build", cfg.Build.BuildBackend, log)
	if err != nil {
		return nil, nil, err
	}
	consumers, err := newConsumers(cfg, log)
	if err != nil {
		return nil, nil, err
	}
	var arches []string
	arches = append(arches, cfg.Graph.Arches...)
	r := &reconcile.Reconciler{
		Discoverer: &watcher.Discoverer{
			Graph: &watcher.GraphClient{
				URL:       cfg.Graph.URL,
				HTTP:      serviceClient("update-graph", cfg.Graph.Timeout.Duration),
				MaxBytes:  cfg.Graph.MaxBytes,
				UserAgent: "dtkbot/" + version,
			},
			Channels:           cfg.Graph.Channels,
			Arches:             arches,
			Releases:           cfg.Releases,
			ReleaseControllers: releaseControllers(cfg),
			Store:              store,
			Streams:            store,
		},
		Registry:   reg,
		Limits:     imageread.DefaultLimits(),
		Store:      store,
		Checker:    reg,
		Builder:    dtkBuilder,
		Target:     cfg.Target.Target,
		Audit:      reconcile.AuditPolicy{Interval: cfg.Target.Audit.Interval.Duration, Repair: cfg.Target.Audit.OnDrift == "repoint"},
		Policy:     plan.Policy{BuildKinds: cfg.Prerelease.Build, PrereleaseTags: cfg.Prerelease.Tags},
		Prerelease: reconcile.PrereleasePolicy{OnWithdrawn: cfg.Prerelease.OnWithdrawn},
		ResolveTTL: cfg.Registry.ResolveTTL.Duration,
		Build: reconcile.BuildPolicy{
			Timeout:     cfg.Build.Timeout.Duration,
			MaxAttempts: cfg.Build.MaxAttempts,
			Backoff:     cfg.Build.Backoff.Duration,
		},
		Consumers: consumers,
		KmodVerifier: &verify.Kmod{Registry: reg, Limits: imageread.DefaultLimits(), Kernels: store,
			Read: kmod.ReadOptions{MaxModules: cfg.Registry.MaxModules, Budget: kmod.NewBudget(cfg.Registry.ModuleMemory)}},
		Concurrency:         cfg.Registry.Concurrency,
		VerifyInterruptions: cfg.Build.VerifyInterruptions,
		SignatureMode:       cfg.Verify.Mode,
		Log:                 log,
	}
	if cfg.Target.Repository != "" {
		r.Promoter = promote.NewRemote(reg)
	}
	if cfg.GitHub.Repository != "" || cfg.GitHub.PullRequest.Repository != "" {
		n, err := newNotifier(cfg, store, log)
		if err != nil {
			return nil, nil, err
		}
		r.Notifier = n
	}
	if v := cfg.Verify; v.Mode != "off" {
		var keys []string // nil: Red Hat's release key
		if v.PublicKeys != nil {
			keys = []string{}
		}
		for _, k := range v.PublicKeys {
			keys = append(keys, cfg.Resolve(k))
		}
		checker, err := releasesig.New(releasesig.Options{Store: cfg.SignatureStore(), KeyFiles: keys, Policy: cfg.Resolve(v.Policy), Sys: reg.SystemContext(),
			HTTP: serviceClient("signature-store", v.Timeout.Duration)})
		if err != nil {
			return nil, nil, err
		}
		r.Signatures, r.SignatureMode, r.SignatureRecheck = checker, v.Mode, v.Recheck.Duration
	}
	if cfg.Build.Verify {
		r.Verifier = &verify.DTK{Registry: reg, Limits: imageread.DefaultLimits()}
	}
	return r, reg, nil
}

// newConsumers are the configured consumers, each with its builder.
func newConsumers(cfg *config.Config, log zerolog.Logger) ([]reconcile.Consumer, error) {
	var out []reconcile.Consumer
	for i, c := range cfg.Consumers {
		key := fmt.Sprintf("consumers[%d].build", i)
		b, err := newBuilder(cfg, key, c.Build, log.With().Str("consumer", c.Name).Logger())
		if err != nil {
			return nil, err
		}
		out = append(out, reconcile.Consumer{Name: c.Name, Builder: b, Target: c.Target,
			Build:      reconcile.BuildPolicy{Timeout: c.Build.Timeout.Duration, MaxAttempts: c.Build.MaxAttempts, Backoff: c.Build.Backoff.Duration},
			ModulePath: c.Verify.ModulePath, Label: c.Verify.Label, Certs: c.Verify.Certs, SkipABI: !c.Verify.RequireABI(), ModuleName: c.KMM.ModuleName,
			Variants: c.KernelVariants()})
	}
	return out, nil
}

// kmmModules are the consumers' KMM Modules, by consumer name.
func kmmModules(cfg *config.Config) map[string]kmm.ModuleOptions {
	out := map[string]kmm.ModuleOptions{}
	for _, c := range cfg.Consumers {
		out[c.Name] = kmm.ModuleOptions{Namespace: c.KMM.Namespace, ModuleName: c.KMM.ModuleName, Selector: c.KMM.Selector}
	}
	return out
}

// upgradeOptions are what the served update graph needs of the config:
// the graphs watched, the consumers, the pre-releases built.
func upgradeOptions(cfg *config.Config) upgradegraph.Options {
	o := upgradegraph.Options{Channels: cfg.Graph.Channels, Arches: cfg.Graph.Arches, BuildKinds: cfg.Prerelease.Build,
		Variants: cfg.ConsumerVariants()}
	for _, c := range cfg.Consumers {
		o.Consumers = append(o.Consumers, c.Name)
	}
	return o
}

// releaseControllers are the configured release-controller clients.
func releaseControllers(cfg *config.Config) []*watcher.ReleaseController {
	var out []*watcher.ReleaseController
	for _, rc := range cfg.ReleaseControllers {
		out = append(out, &watcher.ReleaseController{URL: rc.URL, Arch: rc.Arch, Streams: rc.Streams, Phases: rc.Phases,
			HTTP: serviceClient(serviceWithHost("release-controller", rc.URL), cfg.Graph.Timeout.Duration), MaxBytes: cfg.Graph.MaxBytes, UserAgent: "dtkbot/" + version})
	}
	return out
}

// serviceWithHost names a service by its host: never its path or query,
// where tokens hide.
func serviceWithHost(service, rawURL string) string {
	if u, err := url.Parse(rawURL); err == nil && u.Host != "" {
		return service + " " + u.Host
	}
	return service
}

// outsideServices are the services a pass of cfg may ask, by the names
// their breakers and metrics have (serviceClient's), so that their metrics
// exist from the start.
func outsideServices(cfg *config.Config) []string {
	var out []string
	add := func(s string) {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	if len(cfg.Graph.Channels) > 0 {
		add("update-graph")
	}
	for _, rc := range cfg.ReleaseControllers {
		add(serviceWithHost("release-controller", rc.URL))
	}
	if cfg.Verify.Mode != "off" {
		if _, local := releasesig.LocalPath(cfg.Verify.SignatureStore); !local {
			add("signature-store")
		}
	}
	if cfg.GitHub.Repository != "" || cfg.GitHub.PullRequest.Repository != "" {
		add("github")
	}
	backends := []config.BuildBackend{cfg.Build.BuildBackend}
	for _, c := range cfg.Consumers {
		backends = append(backends, c.Build)
	}
	for _, b := range backends {
		switch b.Backend {
		case "github-actions":
			add("github-actions")
		case "webhook":
			add(serviceWithHost("build-webhook", b.Webhook.URL))
		}
	}
	return out
}

// staleAfter is how old the last successful pass may be before /readyz
// fails: three scheduled intervals, at least ten minutes.
func staleAfter(schedule string, now time.Time) time.Duration {
	s, err := cronParse(schedule)
	if err != nil {
		return time.Hour
	}
	next := s.Next(now)
	d := 3 * s.Next(next).Sub(next)
	return max(d, 10*time.Minute)
}
