package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/dtkbot/dtkbot/internal/need"
	"github.com/dtkbot/dtkbot/internal/poll"
	"github.com/dtkbot/dtkbot/ledger"
	"github.com/dtkbot/dtkbot/reconcile"
	"github.com/dtkbot/dtkbot/state"
)

// fakePasser counts passes; a pass blocks while gate is held and panics or
// fails on demand.
type fakePasser struct {
	runs    atomic.Int32
	gate    sync.Mutex
	started chan struct{}
	panic   atomic.Bool
	fail    atomic.Bool
}

func (f *fakePasser) RunOnce(ctx context.Context, _ time.Time, _ reconcile.Options) (*reconcile.Result, error) {
	f.runs.Add(1)
	if f.started != nil {
		f.started <- struct{}{}
	}
	f.gate.Lock()
	f.gate.Unlock()
	if f.panic.Load() {
		panic("boom")
	}
	if f.fail.Load() {
		return &reconcile.Result{}, errors.New("graph unavailable")
	}
	return &reconcile.Result{Releases: 3, Inspected: 1, Rejected: 1}, ctx.Err()
}

type running struct {
	d        *Daemon
	url      string
	cancel   context.CancelFunc
	done     chan error
	returned atomic.Bool // set when Serve has returned
}

func start(t *testing.T, p Passer, token string, configure ...func(*Daemon)) *running {
	t.Helper()
	store, err := state.Open(filepath.Join(t.TempDir(), "s.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	if err := store.Update(func(tx *state.Tx) error {
		if err := tx.PutHeld(ledger.HeldRelease{Version: "4.16.16", Digest: "sha256:" + strings.Repeat("a", 64), Arch: "amd64", Kind: "content",
			Reason: `tag "driver-toolkit" appears twice with different images`}); err != nil {
			return err
		}
		return tx.PutImage(ledger.Image{Stream: "rhel-9", Arch: "amd64", Kernel: "5.14.0-427.37.1.el9_4", State: ledger.StatePromoted,
			Reason: "build webhook https://ci.example.com/hooks/tok-1 answered HTTP 500", Detail: "podman said: secret-output",
			Conflicts: []ledger.Conflict{{Tag: "quay.io/acme/dtk:4.16.15", Digest: "sha256:" + strings.Repeat("c", 64)}}})
	}); err != nil {
		t.Fatal(err)
	}
	d := &Daemon{Passer: p, Store: store, Schedule: "@every 1h", TriggerToken: []byte(token), StaleAfter: time.Hour,
		Grace: 2 * time.Second, Version: "test", Log: zerolog.Nop(), SignatureMode: "warn"}
	for _, c := range configure {
		c(d)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{d: d, url: "http://" + ln.Addr().String(), cancel: cancel, done: make(chan error, 1)}
	go func() {
		err := d.Serve(ctx, ln)
		r.returned.Store(true)
		r.done <- err
	}()
	t.Cleanup(func() {
		cancel()
		<-r.done
	})
	return r
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func post(t *testing.T, url, token string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	poll.Until(t, "the daemon", 0, cond)
}

// fakeClock is the daemon's clock and timers in a test: now moves only when
// the test advances it, and a wait fires when now reaches its time.
type fakeClock struct {
	mu    sync.Mutex
	now   time.Time
	waits []*fakeWait
}

type fakeWait struct {
	at    time.Time
	c     chan time.Time
	fired bool
}

func newFakeClock(now time.Time) *fakeClock { return &fakeClock{now: now} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) after(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	w := &fakeWait{at: c.now.Add(d), c: make(chan time.Time, 1)}
	c.waits = append(c.waits, w)
	return w.c
}

// waiting reports whether a wait until at is pending.
func (c *fakeClock) waiting(at time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, w := range c.waits {
		if !w.fired && w.at.Equal(at) {
			return true
		}
	}
	return false
}

// advance moves now to to and fires the waits due by then.
func (c *fakeClock) advance(to time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = to
	for _, w := range c.waits {
		if !w.fired && !w.at.After(to) {
			w.fired = true
			w.c <- to
		}
	}
}

func (c *fakeClock) use(d *Daemon) { d.Now, d.after = c.Now, c.after }

func TestProbesMetricsAndStatus(t *testing.T) {
	p := &fakePasser{}
	p.gate.Lock()
	// The clock is set before Serve and moved through an atomic: the
	// scheduler reads it from its own goroutine.
	var ahead atomic.Int64
	r := start(t, p, "", func(d *Daemon) {
		d.Now = func() time.Time { return time.Now().Add(time.Duration(ahead.Load())) }
	})
	if code, _ := get(t, r.url+"/healthz"); code != 200 {
		t.Errorf("healthz %d", code)
	}
	if code, body := get(t, r.url+"/readyz"); code != 503 || !strings.Contains(body, "no pass has succeeded") {
		t.Errorf("readyz before a pass: %d %q", code, body)
	}
	p.gate.Unlock()
	waitFor(t, func() bool { return !r.d.m().lastSuccessAt().IsZero() })
	if code, _ := get(t, r.url+"/readyz"); code != 200 {
		t.Errorf("readyz after a pass: %d", code)
	}
	_, metrics := get(t, r.url+"/metrics")
	for _, want := range []string{"dtkbot_passes_total 1", "dtkbot_pass_errors_total 0", `dtkbot_kernels{state="promoted"} 1`,
		"dtkbot_releases_seen 3", "dtkbot_releases_inspected_total 1", "dtkbot_pass_duration_seconds_count 1", `dtkbot_build_info{version="test"} 1`,
		`dtkbot_releases_held{reason="content"} 1`, `dtkbot_releases_held{reason="signature"} 0`, "dtkbot_verification_failures_total 1", `dtkbot_tag_conflicts{kind="dtk"} 1`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q:\n%s", want, metrics)
		}
	}
	_, body := get(t, r.url+"/status")
	var st statusBody
	if err := json.Unmarshal([]byte(body), &st); err != nil || len(st.Kernels) != 1 || st.States["promoted"] != 1 || st.LastPass == nil ||
		len(st.Held) != 1 || st.Held[0].Version != "4.16.16" || !strings.Contains(st.Signatures.Warning, "nothing to verify") ||
		len(st.Conflicts) != 1 || st.Conflicts[0].Tag != "quay.io/acme/dtk:4.16.15" {
		t.Errorf("status %v %s", err, body)
	}
	if strings.Contains(body, "secret-output") || strings.Contains(body, "tok-1") {
		t.Errorf("/status shows build output or a URL's path:\n%s", body)
	}
	// Stale: the last success is older than StaleAfter.
	ahead.Store(int64(2 * time.Hour))
	if code, _ := get(t, r.url+"/readyz"); code != 503 {
		t.Errorf("readyz when stale: %d", code)
	}
}

func TestTriggerIsAuthenticatedAndNeverOverlaps(t *testing.T) {
	p := &fakePasser{started: make(chan struct{}, 10)}
	r := start(t, p, "s3cret", func(d *Daemon) { d.TriggerBurst = 10 })
	<-p.started // the pass at start
	waitFor(t, func() bool { return !r.d.running.Load() })
	if code := post(t, r.url+"/trigger", ""); code != 401 {
		t.Errorf("no token: %d", code)
	}
	if code := post(t, r.url+"/trigger", "wrong"); code != 401 {
		t.Errorf("wrong token: %d", code)
	}
	p.gate.Lock()
	if code := post(t, r.url+"/trigger", "s3cret"); code != 202 {
		t.Errorf("trigger: %d", code)
	}
	<-p.started
	if code := post(t, r.url+"/trigger", "s3cret"); code != 409 {
		t.Errorf("trigger while running: %d", code)
	}
	if r.d.Trigger("schedule") {
		t.Errorf("a scheduled pass started while one was running")
	}
	p.gate.Unlock()
	waitFor(t, func() bool { return !r.d.running.Load() })
	if n := p.runs.Load(); n != 2 {
		t.Errorf("%d passes, want 2", n)
	}
	_, metrics := get(t, r.url+"/metrics")
	if !strings.Contains(metrics, "dtkbot_passes_skipped_total 2") {
		t.Errorf("skipped passes not counted:\n%s", metrics)
	}
}

func TestTriggerOffWithoutToken(t *testing.T) {
	r := start(t, &fakePasser{}, "")
	if code := post(t, r.url+"/trigger", "anything"); code != 404 {
		t.Errorf("trigger without a configured token: %d", code)
	}
}

func TestPanicIsAFailedPass(t *testing.T) {
	p := &fakePasser{}
	p.panic.Store(true)
	r := start(t, p, "")
	waitFor(t, func() bool { return r.d.m().last() != nil })
	if last := r.d.m().last(); !strings.Contains(last.Error, "pass panicked: boom") {
		t.Errorf("last pass %+v", last)
	}
	p.panic.Store(false)
	r.d.Trigger("test")
	waitFor(t, func() bool { return !r.d.m().lastSuccessAt().IsZero() })
	_, metrics := get(t, r.url+"/metrics")
	if !strings.Contains(metrics, "dtkbot_pass_errors_total 1") || !strings.Contains(metrics, "dtkbot_passes_total 2") {
		t.Errorf("metrics:\n%s", metrics)
	}
}

// blockingPasser's passes run until release is closed or their context is
// cancelled, and record how they ended.
type blockingPasser struct {
	release   chan struct{}
	started   chan struct{}
	runs      atomic.Int32
	ended     atomic.Int32
	cancelled atomic.Int32 // passes that ended by their context
	// serve, when set, is the daemon running the passes; a pass that ends
	// after its Serve returned sets endedAfterServe.
	serve           atomic.Pointer[running]
	endedAfterServe atomic.Bool
}

func newBlockingPasser() *blockingPasser {
	return &blockingPasser{release: make(chan struct{}), started: make(chan struct{}, 100)}
}

func (b *blockingPasser) RunOnce(ctx context.Context, _ time.Time, _ reconcile.Options) (*reconcile.Result, error) {
	b.runs.Add(1)
	select {
	case b.started <- struct{}{}:
	default: // nobody is counting on more starts than the buffer holds
	}
	select {
	case <-b.release:
	case <-ctx.Done():
		b.cancelled.Add(1)
	}
	if r := b.serve.Load(); r != nil && r.returned.Load() {
		b.endedAfterServe.Store(true)
	}
	b.ended.Add(1)
	return &reconcile.Result{}, ctx.Err()
}

// postBody is post with the answer's body.
func postBody(t *testing.T, url, token string, body io.Reader) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, body)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// serveReturned waits for Serve's error.
func (r *running) serveReturned(t *testing.T) error {
	t.Helper()
	select {
	case err := <-r.done:
		r.done <- err // for the cleanup
		return err
	case <-time.After(time.Minute): // generous: CI shares two cores
		t.Fatal("Serve did not return")
		return nil
	}
}

// TestShutdownStartsNothingAndWaitsForThePass: once the shutdown began,
// POST /trigger answers 503 and Trigger starts nothing; Serve waits for the
// running pass (up to Grace, on the daemon's clock, which the test never
// moves) and returns once it has ended; nothing starts after that.
func TestShutdownStartsNothingAndWaitsForThePass(t *testing.T) {
	clock := newFakeClock(time.Date(2024, 9, 1, 12, 0, 0, 0, time.UTC))
	p := newBlockingPasser()
	r := start(t, p, "s3cret", func(d *Daemon) { d.Grace = 7 * time.Minute; clock.use(d) })
	p.serve.Store(r)
	<-p.started // the pass at start
	r.cancel()
	waitFor(t, r.d.shuttingDown)
	if code, body := postBody(t, r.url+"/trigger", "s3cret", nil); code != http.StatusServiceUnavailable || !strings.Contains(body, "shutting down") {
		t.Errorf("POST /trigger during the shutdown: %d %q, want 503", code, body)
	}
	if r.d.Trigger("schedule") {
		t.Error("Trigger started a pass during the shutdown")
	}
	// Serve waits on the pass and its grace: neither can end (the pass
	// waits for release, the grace for the clock), so Serve has not
	// returned, whatever the machine's speed.
	poll.Until(t, "Serve to wait for the pass, up to its grace", 0, func() bool { return clock.waiting(clock.Now().Add(7 * time.Minute)) })
	if r.returned.Load() {
		t.Fatal("Serve returned while its pass was running")
	}
	close(p.release)
	if err := r.serveReturned(t); err != nil {
		t.Errorf("shutdown: %v", err)
	}
	if p.endedAfterServe.Load() {
		t.Error("Serve returned before its pass ended")
	}
	if runs, ended := p.runs.Load(), p.ended.Load(); runs != 1 || ended != 1 || p.cancelled.Load() != 0 {
		t.Errorf("when Serve returned: %d passes started, %d ended, %d cancelled; want 1, 1, 0", runs, ended, p.cancelled.Load())
	}
	if last := r.d.m().last(); last == nil || last.Error != "" {
		t.Errorf("the pass should have finished cleanly: %+v", last)
	}
	if r.d.Trigger("late") || p.runs.Load() != 1 {
		t.Errorf("a pass started after Serve returned (%d passes)", p.runs.Load())
	}
}

// TestShutdownCancelsThePassAfterGrace: a pass that does not finish within
// Grace (the daemon's clock moved past it) is cancelled, and Serve returns
// once it has ended.
func TestShutdownCancelsThePassAfterGrace(t *testing.T) {
	t0 := time.Date(2024, 9, 1, 12, 0, 0, 0, time.UTC)
	clock := newFakeClock(t0)
	p := newBlockingPasser() // never released: only its context ends it
	r := start(t, p, "", func(d *Daemon) { d.Grace = 7 * time.Minute; clock.use(d) })
	<-p.started
	r.cancel()
	poll.Until(t, "Serve to wait for the pass, up to its grace", 0, func() bool { return clock.waiting(t0.Add(7 * time.Minute)) })
	if p.cancelled.Load() != 0 || r.returned.Load() {
		t.Fatal("the pass was cancelled before its grace ran out")
	}
	clock.advance(t0.Add(7 * time.Minute))
	if err := r.serveReturned(t); err != nil {
		t.Errorf("shutdown: %v", err)
	}
	if p.ended.Load() != 1 || p.cancelled.Load() != 1 {
		t.Errorf("when Serve returned: %d passes ended, %d by cancellation; want 1 and 1", p.ended.Load(), p.cancelled.Load())
	}
}

// TestTriggersRacingTheShutdown: triggers from many goroutines while the
// shutdown begins (run with -race: a WaitGroup Add racing its Wait is
// reported); every pass started has ended when Serve returns, and no
// trigger after that starts one.
func TestTriggersRacingTheShutdown(t *testing.T) {
	p := newBlockingPasser()
	close(p.release) // passes end at once
	r := start(t, p, "")
	<-p.started
	stop := make(chan struct{})
	var triggers sync.WaitGroup
	for range 8 {
		triggers.Add(1)
		go func() {
			defer triggers.Done()
			for {
				select {
				case <-stop:
					return
				default:
					r.d.Trigger("race")
				}
			}
		}()
	}
	waitFor(t, func() bool { return p.runs.Load() >= 20 })
	r.cancel()
	if err := r.serveReturned(t); err != nil {
		t.Errorf("shutdown: %v", err)
	}
	runs, ended := p.runs.Load(), p.ended.Load()
	if runs != ended {
		t.Errorf("when Serve returned: %d passes started, %d ended", runs, ended)
	}
	close(stop)
	triggers.Wait()
	if n := p.runs.Load(); n != runs {
		t.Errorf("%d passes started after Serve returned", n-runs)
	}
}

// TestScheduleRuns: the schedule starts a pass at each of its times, in
// UTC, on the daemon's clock: none before, one at each.
func TestScheduleRuns(t *testing.T) {
	if _, err := ParseSchedule("every now and then"); err == nil {
		t.Error("a bad schedule parsed")
	}
	// 14:01:30 at UTC+2 is 12:01:30 UTC: "30 12 * * *" is due at 12:30 UTC
	// (in the daemon's zone it would be 10:30 UTC the next day).
	t0 := time.Date(2024, 9, 1, 14, 1, 30, 0, time.FixedZone("UTC+2", 2*3600))
	clock := newFakeClock(t0)
	p := &fakePasser{}
	r := start(t, p, "", func(d *Daemon) { d.Schedule = "30 12 * * *"; clock.use(d) })
	day1 := time.Date(2024, 9, 1, 12, 30, 0, 0, time.UTC)
	poll.Until(t, "the pass at start, and the schedule to wait for 12:30 UTC", 0, func() bool {
		return p.runs.Load() == 1 && !r.d.running.Load() && clock.waiting(day1)
	})
	for i, at := range []time.Time{day1, day1.Add(24 * time.Hour), day1.Add(48 * time.Hour)} {
		clock.advance(at)
		// The next wait is set once this time's pass was started.
		poll.Until(t, fmt.Sprintf("the pass at %s, and the wait for the next", at), 0, func() bool {
			return clock.waiting(at.Add(24*time.Hour)) && !r.d.running.Load()
		})
		if n := p.runs.Load(); n != int32(i+2) {
			t.Fatalf("at %s: %d passes, want %d (one at start, one a scheduled time)", at, n, i+2)
		}
	}
}

// TestTriggerIsRateLimitedAndBodiesBounded: the bucket refuses after its
// burst, failed authentications included, and says when to come back (the
// clock is the daemon's); a body over the bound is refused with 413 and
// starts nothing, one at the bound is read.
func TestTriggerIsRateLimitedAndBodiesBounded(t *testing.T) {
	now := time.Date(2024, 9, 1, 12, 0, 0, 0, time.UTC)
	p := newBlockingPasser()
	close(p.release)
	r := start(t, p, "s3cret", func(d *Daemon) {
		d.TriggerBurst, d.TriggerEvery = 2, time.Hour
		d.Now = func() time.Time { return now }
	})
	<-p.started
	var codes []int
	var retryAfter string
	for range 4 {
		req, _ := http.NewRequest(http.MethodPost, r.url+"/trigger", nil)
		req.Header.Set("Authorization", "Bearer wrong")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		codes = append(codes, resp.StatusCode)
		retryAfter = resp.Header.Get("Retry-After")
	}
	if fmt.Sprint(codes) != "[401 401 429 429]" || retryAfter != "3601" {
		t.Errorf("codes %v, Retry-After %q: the bucket should refuse after 2 and ask for an hour", codes, retryAfter)
	}

	// A fresh bucket for the bodies.
	b := start(t, p, "s3cret", func(d *Daemon) { d.TriggerBurst = 10 })
	<-p.started
	waitFor(t, func() bool { return !b.d.running.Load() })
	before := p.runs.Load()
	// Just over the bound: small enough that the client has sent it all
	// when the answer comes, so the answer is read, never a reset.
	if code, body := postBody(t, b.url+"/trigger", "s3cret", strings.NewReader(strings.Repeat("x", maxBodyBytes+1))); code != http.StatusRequestEntityTooLarge ||
		!strings.Contains(body, "over 4096 bytes") {
		t.Errorf("a body over the bound: %d %q, want 413", code, body)
	}
	if n := p.runs.Load() - before; n != 0 {
		t.Errorf("a refused trigger started %d passes", n)
	}
	if code, _ := postBody(t, b.url+"/trigger", "s3cret", strings.NewReader(strings.Repeat("x", maxBodyBytes))); code != http.StatusAccepted {
		t.Errorf("a body at the bound: %d, want 202", code)
	}
	waitFor(t, func() bool { return p.runs.Load()-before == 1 })
}

// TestCoveragePageAndKernelIndex: GET / renders the state, filters and
// refuses what is not a filter; the API answers JSON with an ETag, and 304
// to a client that has it.
func TestCoveragePageAndKernelIndex(t *testing.T) {
	r := start(t, &fakePasser{}, "")
	code, body := get(t, r.url+"/")
	if code != 200 || !strings.Contains(body, "Driver Toolkit coverage") || !strings.Contains(body, "4.16.16") {
		t.Fatalf("page %d:\n%s", code, body)
	}
	resp, _ := http.Get(r.url + "/")
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("CSP %q", csp)
	}
	resp.Body.Close()
	if code, _ := get(t, r.url+"/?state=sunny"); code != http.StatusBadRequest {
		t.Errorf("a bad filter: %d", code)
	}
	if code, body := get(t, r.url+"/?state=held&minor=4.16"); code != 200 || !strings.Contains(body, "1 of 1 releases shown") {
		t.Errorf("a filtered page %d:\n%s", code, body)
	}
	for _, path := range []string{"/api/v1/releases", "/api/v1/kernels"} {
		resp, err := http.Get(r.url + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		etag := resp.Header.Get("ETag")
		var doc map[string]any
		if resp.StatusCode != 200 || json.Unmarshal(b, &doc) != nil || etag == "" || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("%s: %d %q %s", path, resp.StatusCode, etag, b)
		}
		req, _ := http.NewRequest(http.MethodGet, r.url+path, nil)
		req.Header.Set("If-None-Match", etag)
		resp, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotModified {
			t.Errorf("%s with its ETag: %d", path, resp.StatusCode)
		}
	}
	// A change to the state changes the documents, and their ETags.
	_, before := get(t, r.url+"/api/v1/kernels")
	if err := r.d.Store.Update(func(tx *state.Tx) error {
		return tx.PutImage(ledger.Image{Stream: "rhel-9", Arch: "amd64", Kernel: "5.14.0-427.40.1.el9_4", State: ledger.StateNew})
	}); err != nil {
		t.Fatal(err)
	}
	if _, after := get(t, r.url+"/api/v1/kernels"); after == before || !strings.Contains(after, "5.14.0-427.40.1.el9_4") {
		t.Errorf("the index did not follow the state")
	}
}

// TestMetricsAreStandard: the runtime's and the process's series beside
// dtkbot's, and a histogram of pass durations; promtool accepts it all
// when it is installed (.ci/run installs it).
func TestMetricsAreStandard(t *testing.T) {
	p := &fakePasser{}
	r := start(t, p, "")
	waitFor(t, func() bool { return !r.d.m().lastSuccessAt().IsZero() })
	_, metrics := get(t, r.url+"/metrics")
	for _, want := range []string{"go_goroutines ", "go_memstats_alloc_bytes ", "process_resident_memory_bytes ", "process_open_fds ",
		`dtkbot_pass_duration_seconds_bucket{le="0.1"}`, "# TYPE dtkbot_pass_duration_seconds histogram", "dtkbot_passes_total 1",
		"dtkbot_kernel_ready_before_ga_seconds_count", "dtkbot_kernel_promotion_lead_seconds_count", "dtkbot_release_tag_lead_seconds_count"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	promtool := need.Command(t, "promtool", "Debian's prometheus package has it; .ci/run installs it")
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(metrics)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}
