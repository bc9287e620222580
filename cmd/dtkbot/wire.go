package main

import (
	"net/http"
	"time"

	"github.com/rs/zerolog"

	"github.com/dtkbot/dtkbot/config"
	"github.com/dtkbot/dtkbot/rebuild"
	"github.com/dtkbot/dtkbot/reconcile"
	"github.com/dtkbot/dtkbot/registry"
	"github.com/dtkbot/dtkbot/releaseinfo"
	"github.com/dtkbot/dtkbot/state"
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

// newReconciler wires a pass from the config: the one place that knows
// which implementation stands behind each interface.
func newReconciler(cfg *config.Config, store *state.Store, log zerolog.Logger) (*reconcile.Reconciler, *registry.Client) {
	reg := registry.New(registryOptions(cfg))
	var arches []string
	arches = append(arches, cfg.Graph.Arches...)
	r := &reconcile.Reconciler{
		Discoverer: &watcher.Discoverer{
			Graph: &watcher.GraphClient{
				URL:       cfg.Graph.URL,
				HTTP:      &http.Client{Timeout: cfg.Graph.Timeout.Duration},
				MaxBytes:  cfg.Graph.MaxBytes,
				UserAgent: "dtkbot/" + version,
			},
			Channels: cfg.Graph.Channels,
			Arches:   arches,
			Releases: cfg.Releases,
			Store:    store,
		},
		Registry: reg,
		Limits:   releaseinfo.DefaultLimits(),
		Store:    store,
		Checker:  reg,
		Builder:  rebuild.Unconfigured{What: "build backend (build.backend)"},
		Promoter: rebuild.Unconfigured{What: "promotion"},
		Target: rebuild.Target{
			Repository:   cfg.Target.Repository,
			KernelTag:    cfg.Target.KernelTag,
			ReleaseTags:  cfg.Target.ReleaseTags,
			FloatingTags: cfg.Target.FloatingTags,
			Mirrors:      cfg.Target.Mirrors,
		},
		Build: reconcile.BuildPolicy{
			Timeout:     cfg.Build.Timeout.Duration,
			MaxAttempts: cfg.Build.MaxAttempts,
			Backoff:     cfg.Build.Backoff.Duration,
		},
		Concurrency: cfg.Registry.Concurrency,
		Log:         log,
	}
	return r, reg
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
