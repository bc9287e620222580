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
	d      *Daemon
	url    string
	cancel context.CancelFunc
	done   chan error
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
		return tx.PutImage(ledger.Image{Stream: "rhel-9", Arch: "amd64", Kernel: "5.14.0-427.37.1.el9_4", State: ledger.StatePromoted})
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
	go func() { r.done <- d.Serve(ctx, ln) }()
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
	deadline := time.Now().Add(30 * time.Second) // generous: CI shares two cores
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestProbesMetricsAndStatus(t *testing.T) {
	p := &fakePasser{}
	p.gate.Lock()
	r := start(t, p, "")
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
		`dtkbot_releases_held{reason="content"} 1`, `dtkbot_releases_held{reason="signature"} 0`, "dtkbot_verification_failures_total 1"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q:\n%s", want, metrics)
		}
	}
	_, body := get(t, r.url+"/status")
	var st statusBody
	if err := json.Unmarshal([]byte(body), &st); err != nil || len(st.Kernels) != 1 || st.States["promoted"] != 1 || st.LastPass == nil ||
		len(st.Held) != 1 || st.Held[0].Version != "4.16.16" || !strings.Contains(st.Signatures.Warning, "nothing to verify") {
		t.Errorf("status %v %s", err, body)
	}
	// Stale: the last success is older than StaleAfter.
	r.d.Now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	if code, _ := get(t, r.url+"/readyz"); code != 503 {
		t.Errorf("readyz when stale: %d", code)
	}
}

func TestTriggerIsAuthenticatedAndNeverOverlaps(t *testing.T) {
	p := &fakePasser{started: make(chan struct{}, 10)}
	r := start(t, p, "s3cret")
	r.d.TriggerBurst = 10
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

func TestShutdownLetsTheRunningPassFinish(t *testing.T) {
	p := &fakePasser{started: make(chan struct{}, 1)}
	p.gate.Lock()
	r := start(t, p, "")
	<-p.started
	r.cancel()
	time.Sleep(50 * time.Millisecond)
	select {
	case <-r.done:
		t.Fatal("returned while the pass was running")
	default:
	}
	p.gate.Unlock()
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("shutdown: %v", err)
		}
		r.done <- nil // for the cleanup
	case <-time.After(30 * time.Second):
		t.Fatal("shutdown did not finish")
	}
	if last := r.d.m().last(); last == nil || last.Error != "" {
		t.Errorf("the pass should have finished cleanly: %+v", last)
	}
}

func TestScheduleRuns(t *testing.T) {
	if _, err := ParseSchedule("*/5 * * * *"); err != nil {
		t.Error(err)
	}
	if _, err := ParseSchedule("every now and then"); err == nil {
		t.Error("a bad schedule parsed")
	}
}

func TestTriggerIsRateLimitedAndBodiesBounded(t *testing.T) {
	p := &fakePasser{started: make(chan struct{}, 100)}
	r := start(t, p, "s3cret")
	r.d.TriggerBurst, r.d.TriggerEvery = 2, time.Hour
	<-p.started
	codes := []int{}
	for i := 0; i < 4; i++ {
		waitFor(t, func() bool { return !r.d.running.Load() })
		codes = append(codes, post(t, r.url+"/trigger", "wrong"))
	}
	if fmt.Sprint(codes) != "[401 401 429 429]" {
		t.Errorf("codes %v: the bucket should refuse after 2", codes)
	}
	req, _ := http.NewRequest(http.MethodPost, r.url+"/trigger", strings.NewReader(strings.Repeat("x", 1<<20)))
	req.Header.Set("Authorization", "Bearer s3cret")
	resp, err := http.DefaultClient.Do(req)
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != 429 && resp.StatusCode != 413 && resp.StatusCode != 202 {
			t.Errorf("a 1 MiB body: %d", resp.StatusCode)
		}
	}
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
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool is not installed (Debian's prometheus package has it): the exposition was not linted")
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(metrics)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}
