// Package daemon runs dtkbot as a service: the reconcile pass at start and
// on a cron schedule (UTC), never two at once, panics turned into failed
// passes, and an HTTP (or TLS) listener for the coverage page (/), the
// kernel index (/api/v1/releases, /api/v1/kernels), the update graph
// clusters read (/api/upgrades_info/v1/graph) and the readiness of updates
// (/api/v1/upgrades), probes (/healthz, /readyz), Prometheus (/metrics), a
// status document (/status) and an authenticated POST /trigger. Once
// shutdown begins no pass starts (POST /trigger answers 503), and Serve
// returns only after every pass it started has ended.
//
// It owns no business logic: a pass is reconcile.Reconciler.RunOnce, the
// same one `dtkbot reconcile` runs.
package daemon

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/robfig/cron/v3"
	"github.com/rs/zerolog"
	"golang.org/x/time/rate"

	"github.com/dtkbot/dtkbot/coverage"
	"github.com/dtkbot/dtkbot/guard"
	"github.com/dtkbot/dtkbot/kmm"
	"github.com/dtkbot/dtkbot/ledger"
	"github.com/dtkbot/dtkbot/reconcile"
	"github.com/dtkbot/dtkbot/redact"
	"github.com/dtkbot/dtkbot/registry"
	"github.com/dtkbot/dtkbot/state"
)

// Passer runs one pass.
type Passer interface {
	RunOnce(ctx context.Context, now time.Time, opts reconcile.Options) (*reconcile.Result, error)
}

// Daemon is the service. Set the fields, then call Run.
type Daemon struct {
	Passer   Passer
	Store    *state.Store
	Registry *registry.Client // for request counters; may be nil
	Schedule string
	Listen   string
	// TriggerToken is the bearer token POST /trigger requires; empty turns
	// the endpoint off.
	TriggerToken []byte
	// StaleAfter: /readyz fails when the last successful pass is older.
	StaleAfter time.Duration
	// SignatureMode and SignatureTrust say how payload signatures are
	// checked, for /status ("" trust: nothing to verify with).
	SignatureMode, SignatureTrust string
	// Grace is how long a running pass may finish after shutdown starts.
	Grace   time.Duration
	Version string
	Log     zerolog.Logger
	Now     func() time.Time
	// TriggerBurst and TriggerEvery rate-limit POST /trigger: at most
	// TriggerBurst passes started at once, one more per TriggerEvery
	// (defaults 3 and 10s). Only a request with the token is charged to
	// it; failed authentications have a bucket of the same size of their
	// own, so a client without the token cannot lock triggers out.
	TriggerBurst int
	TriggerEvery time.Duration
	// Services are the outside services the config has dtkbot ask (the
	// breaker's names: update-graph, signature-store, "release-controller
	// HOST", github, github-actions, "build-webhook HOST"): their metrics
	// have a series, at 0, from the start.
	Services []string
	// KMMModules are the consumers, by name, and the Module each loads
	// (for /api/v1/kmm/modules/{consumer}).
	KMMModules map[string]kmm.ModuleOptions
	// Upgrades configure the update graph served to clusters.
	Upgrades UpgradeOptions
	// TLS, when set, makes the listener serve TLS with these files.
	TLS *TLSFiles

	limitersOnce sync.Once
	triggers     *rate.Limiter // POST /trigger with the token
	failedAuths  *rate.Limiter // POST /trigger without it
	// timeouts are the HTTP server's (zero: the defaults); tests
	// shorten them.
	timeouts httpTimeouts

	// passMu orders starting a pass against shutting down: a pass is
	// added to passes only under passMu while stopping is false, so no
	// Add can race the shutdown's Wait (sync.WaitGroup forbids it).
	passMu   sync.Mutex
	stopping bool
	passCtx  context.Context
	running  atomic.Bool
	passes   sync.WaitGroup
	sched    cron.Schedule
	// after is time.After for the schedule and the grace; tests drive
	// both with it.
	after func(time.Duration) <-chan time.Time

	metricsOnce sync.Once
	metricsSet  *metrics

	ixMu    sync.Mutex
	ix      *coverage.Index
	ixGen   uint64
	pagesOf *coverage.Index   // the index pages holds renderings of
	pages   map[string][]byte // by filter and next pass

	// graphs are the update graphs served, by channel, arch and link
	// base; upstreams the upstream graphs decoded, by channel and arch;
	// linkBases the link bases taken from requests; graphLimit bounds the
	// requests for them.
	graphMu    sync.Mutex
	graphs     map[string]*graphEntry
	upstreams  map[string]upstreamDoc
	linkBases  []string
	graphLimit *rate.Limiter
}

// m is the daemon's metrics, made on first use.
func (d *Daemon) m() *metrics {
	d.metricsOnce.Do(func() {
		d.metricsSet = newMetrics(d.Version, d.Store, d.Registry, d.coverageIndex, d.Services, consumerVariants(d.Upgrades.Options))
	})
	return d.metricsSet
}

// ParseSchedule checks a schedule: a standard cron line or a descriptor
// such as "@every 30m" or "@hourly".
func ParseSchedule(spec string) (cron.Schedule, error) {
	return cron.ParseStandard(spec)
}

func (d *Daemon) now() time.Time {
	if d.Now != nil {
		return d.Now()
	}
	return time.Now()
}

// Run serves until ctx is cancelled, then shuts down gracefully: no new
// pass starts (POST /trigger answers 503, the schedule and Trigger start
// nothing), the running one gets Grace to finish and is cancelled after
// that, and Run returns once it has ended; the listener closes last, so
// /status and the probes answer meanwhile.
func (d *Daemon) Run(ctx context.Context) error {
	if d.Grace <= 0 {
		d.Grace = 30 * time.Second
	}
	ln, err := net.Listen("tcp", d.Listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", d.Listen, err)
	}
	return d.Serve(ctx, ln)
}

// Serve is Run on a listener the caller opened (tests use port 0).
func (d *Daemon) Serve(ctx context.Context, ln net.Listener) error {
	if d.Grace <= 0 {
		d.Grace = 30 * time.Second
	}
	sched, err := ParseSchedule(d.Schedule)
	if err != nil {
		return fmt.Errorf("schedule %q: %w", d.Schedule, err)
	}
	d.sched = sched
	if d.TLS != nil {
		cfg, err := d.tlsConfig()
		if err != nil {
			return err
		}
		ln = tls.NewListener(ln, cfg)
	}
	// Passes get their own context: a shutdown lets the running one finish
	// within Grace before cancelling it.
	passCtx, cancelPasses := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelPasses()
	d.passMu.Lock()
	d.passCtx = passCtx
	d.passMu.Unlock()

	srv := d.server(d.Handler())
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	d.Log.Info().Str("listen", ln.Addr().String()).Str("schedule", d.Schedule).Msg("dtkbot daemon started")

	schedCtx, stopSchedule := context.WithCancel(ctx)
	defer stopSchedule()
	scheduleDone := make(chan struct{})
	go func() {
		defer close(scheduleDone)
		d.runSchedule(schedCtx, sched)
	}()
	d.Trigger("start")

	select {
	case <-ctx.Done():
	case err := <-serveErr:
		d.stopPasses()
		stopSchedule()
		<-scheduleDone
		cancelPasses()
		d.passes.Wait()
		return fmt.Errorf("serving HTTP: %w", err)
	}
	d.Log.Info().Msg("shutting down")
	d.stopPasses()
	stopSchedule()
	<-scheduleDone
	done := make(chan struct{})
	go func() { d.passes.Wait(); close(done) }()
	select {
	case <-done:
	case <-d.wait(d.Grace):
		d.Log.Warn().Float64("grace_seconds", d.Grace.Seconds()).Msg("the running pass did not finish in time: cancelling it")
		cancelPasses()
		<-done
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(shutdownCtx)
}

// runSchedule triggers a pass at each time of the schedule (in UTC) until
// ctx ends; a pass still running then is skipped, as Trigger does.
func (d *Daemon) runSchedule(ctx context.Context, sched cron.Schedule) {
	for {
		now := d.now()
		next := sched.Next(now.In(time.UTC))
		if next.IsZero() {
			return // no time of the schedule in the next five years
		}
		select {
		case <-ctx.Done():
			return
		case <-d.wait(next.Sub(now)):
			d.Trigger("schedule")
		}
	}
}

// wait is time.After, or the tests' clock.
func (d *Daemon) wait(dur time.Duration) <-chan time.Time {
	if d.after != nil {
		return d.after(dur)
	}
	return time.After(dur)
}

// stopPasses begins the shutdown: from its return on, no pass starts, so
// waiting for passes waits for every pass there will ever be.
func (d *Daemon) stopPasses() {
	d.passMu.Lock()
	defer d.passMu.Unlock()
	d.stopping = true
}

// shuttingDown reports whether the shutdown has begun.
func (d *Daemon) shuttingDown() bool {
	d.passMu.Lock()
	defer d.passMu.Unlock()
	return d.stopping
}

// Reasons Trigger starts no pass.
var (
	errPassRunning = errors.New("a pass is already running")
	errStopping    = errors.New("dtkbot is shutting down: no new pass starts")
)

// Trigger starts a pass unless one is running or the shutdown has begun;
// it reports whether it did.
func (d *Daemon) Trigger(reason string) bool { return d.startPass(reason) == nil }

func (d *Daemon) startPass(reason string) error {
	d.passMu.Lock()
	defer d.passMu.Unlock()
	if d.stopping {
		d.Log.Info().Str("reason", reason).Msg("shutting down: no pass started")
		return errStopping
	}
	if !d.running.CompareAndSwap(false, true) {
		d.m().skipped.Inc()
		d.Log.Info().Str("reason", reason).Msg("a pass is already running: skipped")
		return errPassRunning
	}
	ctx := d.passCtx
	if ctx == nil {
		ctx = context.Background()
	}
	d.passes.Add(1)
	go func() {
		defer d.passes.Done()
		defer d.running.Store(false)
		d.runPass(ctx, reason)
	}()
	return nil
}

// runPass runs one pass, turning a panic into a failed pass.
func (d *Daemon) runPass(ctx context.Context, reason string) {
	start := d.now()
	var res *reconcile.Result
	err := guard.Run(func() (err error) {
		res, err = d.Passer.RunOnce(ctx, start, reconcile.Options{})
		return err
	})
	if p := (*guard.PanicError)(nil); errors.As(err, &p) {
		err = fmt.Errorf("pass panicked: %v (in %s)", p.Value, p.At)
		d.Log.Error().Str("stack", string(p.Stack)).Msg("pass panicked")
	}
	d.m().record(start, d.now(), res, err)
	ev := d.Log.Info()
	if err != nil {
		ev = d.Log.Error().Err(err)
	}
	if res != nil {
		ev = ev.Int("releases", res.Releases).Int("inspected", res.Inspected).Int("actions", len(res.Actions))
	}
	ev.Str("reason", reason).Float64("took_seconds", d.now().Sub(start).Seconds()).Msg("pass finished")
}

// Handler serves the HTTP endpoints.
func (d *Daemon) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", d.readyz)
	mux.Handle("GET /metrics", d.m().handler())
	mux.HandleFunc("GET /status", d.status)
	mux.HandleFunc("GET /{$}", d.page)
	mux.HandleFunc("GET /api/v1/releases", d.apiReleases)
	mux.HandleFunc("GET /api/v1/kernels", d.apiKernels)
	mux.HandleFunc("GET /api/v1/kmm/preflights", d.kmmPreflights)
	mux.HandleFunc("GET /api/v1/kmm/kernel-mappings/{consumer}", d.kmmKernelMappings)
	mux.HandleFunc("GET /api/v1/kmm/modules/{consumer}", d.kmmModule)
	mux.HandleFunc("GET /api/upgrades_info/v1/graph", d.upgradesGraph)
	mux.HandleFunc("GET /api/upgrades_info/graph", d.upgradesGraph)
	mux.HandleFunc("GET /api/v1/upgrades", d.apiUpgrades)
	mux.HandleFunc("POST /trigger", d.trigger)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// No endpoint takes a body worth more than this.
		r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
		mux.ServeHTTP(w, r)
	})
}

const maxBodyBytes = 4 << 10

// httpTimeouts bound what one client can hold of the server.
type httpTimeouts struct {
	// ReadHeader and Read bound reading a request's head and all of it
	// (no body is worth more than 4 KiB); Write, from the end of the
	// head to the end of the answer (the largest is the coverage page);
	// Idle, a kept-alive connection between requests (Prometheus
	// scrapes every 15 to 60 s).
	ReadHeader, Read, Write, Idle time.Duration
}

var defaultTimeouts = httpTimeouts{ReadHeader: 10 * time.Second, Read: 30 * time.Second, Write: time.Minute, Idle: 2 * time.Minute}

// server is the HTTP server of h, with its timeouts.
func (d *Daemon) server(h http.Handler) *http.Server {
	t := d.timeouts
	if t == (httpTimeouts{}) {
		t = defaultTimeouts
	}
	return &http.Server{Handler: h, ReadHeaderTimeout: t.ReadHeader, ReadTimeout: t.Read, WriteTimeout: t.Write, IdleTimeout: t.Idle}
}

// limiters makes the two token buckets of POST /trigger on first use.
func (d *Daemon) limiters() (triggers, failedAuths *rate.Limiter) {
	d.limitersOnce.Do(func() {
		burst, every := d.TriggerBurst, d.TriggerEvery
		if burst <= 0 {
			burst = 3
		}
		if every <= 0 {
			every = 10 * time.Second
		}
		d.triggers = rate.NewLimiter(rate.Every(every), burst)
		d.failedAuths = rate.NewLimiter(rate.Every(every), burst)
	})
	return d.triggers, d.failedAuths
}

// allow takes a token from l at the daemon's now, or says how long until
// one is there (taking none).
func (d *Daemon) allow(l *rate.Limiter) (bool, time.Duration) {
	now := d.now()
	r := l.ReserveN(now, 1)
	if wait := r.DelayFrom(now); wait > 0 {
		r.CancelAt(now)
		return false, wait
	}
	return true, 0
}

// tooMany answers 429 with when to come back.
func tooMany(w http.ResponseWriter, wait time.Duration) {
	w.Header().Set("Retry-After", fmt.Sprint(int(wait.Seconds())+1))
	http.Error(w, "too many triggers", http.StatusTooManyRequests)
}

func (d *Daemon) readyz(w http.ResponseWriter, _ *http.Request) {
	last := d.m().lastSuccessAt()
	stale := d.StaleAfter
	if stale <= 0 {
		stale = time.Hour
	}
	w.Header().Set("Content-Type", "text/plain")
	switch {
	case last.IsZero():
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "no pass has succeeded yet")
	case d.now().Sub(last) > stale:
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "the last successful pass was at %s, more than %s ago\n", last.UTC().Format(time.RFC3339), stale)
	default:
		fmt.Fprintf(w, "ok: last successful pass at %s\n", last.UTC().Format(time.RFC3339))
	}
}

func (d *Daemon) trigger(w http.ResponseWriter, r *http.Request) {
	if len(d.TriggerToken) == 0 {
		http.Error(w, "trigger is off: set trigger_token_file", http.StatusNotFound)
		return
	}
	if _, err := io.Copy(io.Discard, r.Body); err != nil { // bounded by MaxBytesReader
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			http.Error(w, fmt.Sprintf("the body is over %d bytes (none is needed)", maxBodyBytes), http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "reading the body: "+err.Error(), http.StatusBadRequest)
		return
	}
	triggers, failedAuths := d.limiters()
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || subtle.ConstantTimeCompare([]byte(got), d.TriggerToken) != 1 {
		// Charged to its own bucket: whoever lacks the token spends
		// nothing of the triggers'.
		if ok, wait := d.allow(failedAuths); !ok {
			tooMany(w, wait)
			return
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="dtkbot"`)
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	if ok, wait := d.allow(triggers); !ok {
		tooMany(w, wait)
		return
	}
	switch err := d.startPass("http"); {
	case errors.Is(err, errStopping):
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	case err != nil:
		http.Error(w, err.Error(), http.StatusConflict)
		return
	}
	w.WriteHeader(http.StatusAccepted)
	fmt.Fprintln(w, "pass started")
}

// statusBody is GET /status.
type statusBody struct {
	Running    bool            `json:"running"`
	LastPass   *passSummary    `json:"last_pass,omitempty"`
	Signatures signatureStatus `json:"signatures"`
	Releases   int             `json:"releases"`
	States     map[string]int  `json:"states"`
	Kernels    []ledger.Image  `json:"kernels"`
	// Consumers are the consumer images, one per consumer and kernel.
	Consumers []ledger.Image       `json:"consumer_builds"`
	Held      []ledger.HeldRelease `json:"held"`
	// Conflicts are the tags dtkbot would write that hold images it did
	// not put there: never overwritten, and said here.
	Conflicts []ledger.Conflict `json:"conflicts"`
	// LeadTimes say how early DTK images are ready (see the README).
	LeadTimes *coverage.LeadTimes `json:"lead_times,omitempty"`

	// RecordedPass is the last pass as the state file keeps it (by this
	// daemon or a CronJob's `dtkbot reconcile`), with the outside
	// services it asked and those it stopped asking.
	RecordedPass *ledger.PassRecord `json:"recorded_pass,omitempty"`

	// UpstreamGraphs are the update graphs dtkbot reads: when each was
	// last read (the age of the graph served again), and why not since.
	UpstreamGraphs []upstreamGraph `json:"upstream_graphs"`
}

// signatureStatus says how payload signatures are checked.
type signatureStatus struct {
	Mode  string `json:"mode"`
	Trust string `json:"trust"`
	// Warning is set when nothing can verify a signature.
	Warning string `json:"warning,omitempty"`
}

// public is images as /status shows them: reasons redacted, no build
// output (it stays in the log and the state file).
// publicPass is a pass record fit for /status: its errors and the
// reasons its services were skipped redacted.
func publicPass(rec *ledger.PassRecord) *ledger.PassRecord {
	if rec == nil {
		return nil
	}
	out := *rec
	out.Errors = make([]string, len(rec.Errors))
	for i, e := range rec.Errors {
		out.Errors[i] = redact.Text(e)
	}
	out.Services = slices.Clone(rec.Services)
	for i := range out.Services {
		out.Services[i].Reason = redact.Text(out.Services[i].Reason)
	}
	return &out
}

func public(images []ledger.Image) []ledger.Image {
	out := make([]ledger.Image, len(images))
	for i, m := range images {
		m.Reason, m.Detail = redact.Text(m.Reason), ""
		m.Rejections = slices.Clone(m.Rejections)
		for j := range m.Rejections {
			m.Rejections[j].Reason = redact.Text(m.Rejections[j].Reason)
		}
		out[i] = m
	}
	return out
}

func (d *Daemon) status(w http.ResponseWriter, _ *http.Request) {
	body := statusBody{Running: d.running.Load(), LastPass: d.m().last(), States: map[string]int{},
		Signatures: signatureStatus{Mode: d.SignatureMode, Trust: d.SignatureTrust}}
	if body.Signatures.Mode != "" && body.Signatures.Mode != "off" && body.Signatures.Trust == "" {
		body.Signatures.Warning = "nothing to verify signatures with: every payload is recorded unverified"
	}
	snap, err := d.Store.Snapshot()
	if err != nil {
		http.Error(w, "reading state: "+err.Error(), http.StatusInternalServerError)
		return
	}
	body.Kernels, body.Consumers, body.Held, body.Releases = public(snap.Kernels), public(snap.Consumers), snap.Held, len(snap.Releases)
	body.Conflicts = []ledger.Conflict{}
	for _, k := range append(slices.Clone(body.Kernels), body.Consumers...) {
		body.Conflicts = append(body.Conflicts, k.Conflicts...)
	}
	body.RecordedPass = publicPass(snap.LastPass)
	body.UpstreamGraphs = d.upstreamGraphs()
	for _, k := range body.Kernels {
		body.States[k.State]++
	}
	if ix, err := d.coverageIndex(); err == nil {
		lead, _ := ix.Leads()
		body.LeadTimes = &lead
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(body)
}
