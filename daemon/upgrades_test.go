package daemon

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/dtkbot/dtkbot/internal/cvotest"
	"github.com/dtkbot/dtkbot/internal/graphtest"
	"github.com/dtkbot/dtkbot/ledger"
	"github.com/dtkbot/dtkbot/state"
	"github.com/dtkbot/dtkbot/upgradegraph"
	"github.com/dtkbot/dtkbot/watcher"
)

// The kernels of the upgrade world: 4.16.10 ships kFrom (its DTK is the one
// start records, promoted), 4.16.20 kReady, 4.16.21 kWaiting.
const (
	kFrom    = "5.14.0-427.37.1.el9_4"
	kReady   = "5.14.0-427.40.1.el9_4"
	kWaiting = "5.14.0-427.50.1.el9_4"
	consumer = "simple-kmod"
)

func payload(v string) string {
	sum := sha256.Sum256([]byte(v))
	return "quay.io/openshift-release-dev/ocp-release@sha256:" + hex.EncodeToString(sum[:])
}

func digest(v string) string { return payload(v)[strings.Index(payload(v), "@")+1:] }

// upgradeWorld is an update service with stable-4.16 (4.16.10 -> 4.16.20,
// 4.16.21; the upstream's own PromQL risk on 4.16.10 -> 4.16.21) and a
// state in which 4.16.10 and 4.16.20 are ready and 4.16.21's consumer
// image is being built; the graph is read once, at read.
type upgradeWorld struct {
	graph *graphtest.Server
	disc  *watcher.Discoverer
	read  time.Time
}

func newUpgradeWorld(t *testing.T, store *state.Store) *upgradeWorld {
	t.Helper()
	g := graphtest.New()
	t.Cleanup(g.Close)
	for _, v := range []string{"4.16.10", "4.16.20", "4.16.21"} {
		g.Publish("stable-4.16", "amd64", v, payload(v))
	}
	g.SetEdges("stable-4.16", "amd64", [][2]string{{"4.16.10", "4.16.20"}, {"4.16.10", "4.16.21"}, {"4.16.20", "4.16.21"}})
	g.AddConditionalEdges("stable-4.16", "amd64", [][2]string{{"4.16.10", "4.16.21"}}, graphtest.Risk{URL: "https://issues.redhat.com/browse/OCPBUGS-1",
		Name: "ProxyBreaks", Message: "On clusters with a proxy, everything breaks.",
		MatchingRules: []graphtest.MatchingRule{{Type: "PromQL", PromQL: &graphtest.PromQLMatcher{PromQL: `max(cluster_proxy_enabled{type=~"https?"})`}}}})
	w := &upgradeWorld{graph: g, read: time.Date(2026, 8, 1, 10, 0, 0, 0, time.UTC)}
	w.disc = &watcher.Discoverer{Graph: &watcher.GraphClient{URL: g.URL()}, Channels: []string{"stable-4.16"}, Arches: []string{"amd64"}, Store: store}
	if d := w.disc.Discover(context.Background(), w.read, nil, false); d.Err() != nil {
		t.Fatal(d.Err())
	}
	err := store.Update(func(tx *state.Tx) error {
		for v, k := range map[string]string{"4.16.10": kFrom, "4.16.20": kReady, "4.16.21": kWaiting} {
			if err := tx.PutRelease(ledger.Release{Version: v, Digest: digest(v), Arch: "amd64", Pullspec: payload(v),
				Streams: []ledger.ReleaseShips{{Stream: "rhel-9", Kernel: k, KernelFull: k + ".x86_64"}}}); err != nil {
				return err
			}
		}
		for _, m := range []ledger.Image{
			{Consumer: consumer, Kernel: kFrom, State: ledger.StatePromoted},
			{Kernel: kReady, State: ledger.StatePromoted},
			{Consumer: consumer, Kernel: kReady, State: ledger.StatePromoted},
			{Kernel: kWaiting, State: ledger.StatePromoted},
			{Consumer: consumer, Kernel: kWaiting, State: ledger.StateBuildRequested, BuildRequestedAt: w.read},
		} {
			m.Stream, m.Arch, m.KernelFull = "rhel-9", "amd64", m.Kernel+".x86_64"
			if err := tx.PutImage(m); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// upgradesOn configures a daemon to serve stable-4.16 for amd64 with the
// consumer, its clock at now.
func upgradesOn(now func() time.Time) func(*Daemon) {
	return func(d *Daemon) {
		d.Upgrades = UpgradeOptions{Options: upgradegraph.Options{Channels: []string{"stable-4.16", "stable-4.17"}, Arches: []string{"amd64"},
			Consumers: []string{consumer}}, PublicURL: "https://dtkbot.example.com"}
		d.Now = now
	}
}

// request sends a GET with headers and returns the status, headers and body.
func request(t *testing.T, url string, headers ...string) (int, http.Header, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := (&http.Transport{DisableCompression: true}).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

const stable = "/api/upgrades_info/v1/graph?channel=stable-4.16&arch=amd64"

// TestUpdateGraphAsTheCVOReadsIt: a cluster at 4.16.10 whose upstream is
// dtkbot is offered 4.16.20 as recommended and 4.16.21 as conditional,
// with the upstream's PromQL risk and dtkbot's; at either path, as the CVO
// asks (its Accept header, the query it adds) and as the Cincinnati
// protocol negotiates; then the update service's errors.
func TestUpdateGraphAsTheCVOReadsIt(t *testing.T) {
	var w *upgradeWorld
	r := start(t, &fakePasser{}, "", func(d *Daemon) { w = newUpgradeWorld(t, d.Store) }, upgradesOn(time.Now))
	for _, path := range []string{"/api/upgrades_info/v1/graph", "/api/upgrades_info/graph"} {
		_, updates, conditional, err := cvotest.Fetch(context.Background(), http.DefaultClient, r.url+path, "amd64", "stable-4.16",
			"01234567-0123-0123-0123-0123456789ab", "4.16.10")
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if len(updates) != 1 || updates[0].Version != "4.16.20" || updates[0].Image != payload("4.16.20") {
			t.Errorf("%s: recommended %+v", path, updates)
		}
		if len(conditional) != 1 || conditional[0].Release.Version != "4.16.21" || len(conditional[0].Risks) != 2 ||
			conditional[0].Risks[0].Name != "ProxyBreaks" || conditional[0].Risks[1].Name != "KernelModuleNotReady_simple_kmod_5_14_0_427_50_1_el9_4_x86_64" {
			t.Fatalf("%s: conditional %+v", path, conditional)
		}
		risk := conditional[0].Risks[1]
		if !strings.Contains(risk.Message, "building since 2026-08-01 10:00 UTC") || risk.URL != "https://dtkbot.example.com/?kernel="+kWaiting {
			t.Errorf("%s: risk %+v", path, risk)
		}
		if p := cvotest.Problems(conditional[0]); len(p) > 0 {
			t.Errorf("%s: %v", path, p)
		}
	}
	for _, tc := range []struct {
		path, accept string
		code         int
		kind, ctype  string
	}{
		{stable, "application/vnd.redhat.cincinnati.v1+json", 200, "", "application/vnd.redhat.cincinnati.v1+json"},
		{stable, "application/json", 200, "", "application/json"},
		{stable, "", 200, "", "application/vnd.redhat.cincinnati.v1+json"},
		{stable, "text/html, */*;q=0.8", 200, "", "application/json"},
		{stable, "image/png", 406, "invalid_content_type", ""},
		{"/api/upgrades_info/v1/graph?arch=amd64", "application/json", 400, "missing_params", ""},
		{"/api/upgrades_info/v1/graph?channel=stable-4.16&arch=amd64&version=" + strings.Repeat("9", 70), "application/json", 400, "invalid_params", ""},
		{"/api/upgrades_info/v1/graph?channel=stable-4.16&id=" + strings.Repeat("x", 2000), "application/json", 414, "invalid_params", ""},
		{"/api/upgrades_info/v1/graph?channel=fast-4.16&arch=amd64", "application/json", 404, "does_not_exist", ""},
		{"/api/upgrades_info/v1/graph?channel=stable-4.16&arch=s390x", "application/json", 404, "does_not_exist", ""},
		{"/api/upgrades_info/v1/graph?channel=stable-4.17&arch=amd64", "application/json", 503, "failed_upstream_fetch", ""},
	} {
		code, h, body := request(t, r.url+tc.path, "Accept", tc.accept)
		if code != tc.code {
			t.Errorf("%s (Accept %q): %d, want %d: %s", tc.path, tc.accept, code, tc.code, body)
			continue
		}
		if tc.kind != "" {
			var e struct{ Kind, Value string }
			if err := json.Unmarshal(body, &e); err != nil || e.Kind != tc.kind || e.Value == "" {
				t.Errorf("%s: %s, want kind %s", tc.path, body, tc.kind)
			}
			continue
		}
		if h.Get("Content-Type") != tc.ctype {
			t.Errorf("%s (Accept %q): Content-Type %s", tc.path, tc.accept, h.Get("Content-Type"))
		}
	}
	_ = w
}

// TestUpdateGraphIsComputedOncePerChangeWithETags: requests with no change
// of the state share one computation; If-None-Match gets a 304; gzip is
// served to a client that takes it (the CVO's Go client does) and is the
// same document.
func TestUpdateGraphIsComputedOncePerChangeWithETags(t *testing.T) {
	r := start(t, &fakePasser{}, "", func(d *Daemon) { newUpgradeWorld(t, d.Store) }, upgradesOn(time.Now))
	waitFor(t, func() bool { return r.d.m().lastSuccessAt().After(time.Time{}) })
	computed := func() float64 {
		var m dto.Metric
		if err := r.d.m().upgradeComputes.Write(&m); err != nil {
			t.Fatal(err)
		}
		return m.GetCounter().GetValue()
	}
	code, h, plain := request(t, r.url+stable, "Accept", "application/json")
	etag := h.Get("ETag")
	if code != 200 || etag == "" || h.Get("Cache-Control") != "no-cache" {
		t.Fatalf("%d, ETag %q, %v", code, etag, h)
	}
	before := computed()
	for i := 0; i < 5; i++ {
		if code, _, _ := request(t, r.url+stable, "Accept", "application/json"); code != 200 {
			t.Fatalf("%d", code)
		}
	}
	if n := computed() - before; n != 0 {
		t.Errorf("%v computations for requests with no change", n)
	}
	if code, h, body := request(t, r.url+stable, "Accept", "application/json", "If-None-Match", etag); code != 304 || len(body) != 0 || h.Get("ETag") != etag {
		t.Errorf("If-None-Match: %d %q", code, body)
	}
	code, h, zipped := request(t, r.url+stable, "Accept", "application/json", "Accept-Encoding", "gzip")
	if code != 200 || h.Get("Content-Encoding") != "gzip" || len(zipped) >= len(plain) || h.Get("ETag") == etag || h.Get("Vary") != "Accept, Accept-Encoding" {
		t.Fatalf("gzip: %d %v, %d bytes (plain %d)", code, h, len(zipped), len(plain))
	}
	if code, _, _ := request(t, r.url+stable, "Accept-Encoding", "gzip", "If-None-Match", h.Get("ETag")); code != 304 {
		t.Errorf("If-None-Match with the gzip tag: %d", code)
	}
	zr, err := gzip.NewReader(bytes.NewReader(zipped))
	if err != nil {
		t.Fatal(err)
	}
	if unzipped, _ := io.ReadAll(zr); !bytes.Equal(unzipped, plain) {
		t.Errorf("the gzip body is another document")
	}
	req, _ := http.NewRequest(http.MethodHead, r.url+stable, nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 || resp.Header.Get("ETag") != etag {
		t.Errorf("HEAD: %v %v", resp, err)
	}
}

// TestAPromotionClearsTheRiskWithNoPass: the graph reflects the state at
// request time: the consumer's image promoted (a write of the state, as a
// pass makes it halfway), the next request offers 4.16.21 as recommended,
// with no pass in between.
func TestAPromotionClearsTheRiskWithNoPass(t *testing.T) {
	p := &fakePasser{}
	r := start(t, p, "", func(d *Daemon) { newUpgradeWorld(t, d.Store) }, upgradesOn(time.Now))
	waitFor(t, func() bool { return !r.d.running.Load() && p.runs.Load() == 1 })
	fetch := func() ([]cvotest.Release, []cvotest.ConditionalUpdate) {
		_, updates, conditional, err := cvotest.Fetch(context.Background(), http.DefaultClient, r.url+"/api/upgrades_info/v1/graph", "amd64", "stable-4.16", "id", "4.16.10")
		if err != nil {
			t.Fatal(err)
		}
		return updates, conditional
	}
	if _, conditional := fetch(); len(conditional) != 1 {
		t.Fatalf("before: %+v", conditional)
	}
	_, h, _ := request(t, r.url+stable)
	if err := r.d.Store.Update(func(tx *state.Tx) error {
		return tx.PutImage(ledger.Image{Consumer: consumer, Stream: "rhel-9", Arch: "amd64", Kernel: kWaiting, KernelFull: kWaiting + ".x86_64", State: ledger.StatePromoted})
	}); err != nil {
		t.Fatal(err)
	}
	updates, conditional := fetch()
	if len(updates) != 1 || updates[0].Version != "4.16.20" || len(conditional) != 1 || len(conditional[0].Risks) != 1 || conditional[0].Risks[0].Name != "ProxyBreaks" {
		t.Errorf("after the promotion: recommended %+v, conditional %+v", updates, conditional)
	}
	if code, _, _ := request(t, r.url+stable, "If-None-Match", h.Get("ETag")); code != 200 {
		t.Errorf("the old ETag still matches: %d", code)
	}
	if n := p.runs.Load(); n != 1 {
		t.Errorf("%d passes", n)
	}
}

// TestUpstreamDownServesTheLastGoodGraph: the update service fails; the
// last good graph is served, with its age and the failure in headers and
// on /status.
func TestUpstreamDownServesTheLastGoodGraph(t *testing.T) {
	var w *upgradeWorld
	var now atomic.Int64
	r := start(t, &fakePasser{}, "", func(d *Daemon) { w = newUpgradeWorld(t, d.Store) }, upgradesOn(func() time.Time { return time.Unix(0, now.Load()) }))
	w.graph.Fail.Store(503)
	if d := w.disc.Discover(context.Background(), w.read.Add(time.Hour), nil, false); d.Err() == nil {
		t.Fatal("the update service answered")
	}
	now.Store(w.read.Add(2 * time.Hour).UnixNano())
	_, updates, conditional, err := cvotest.Fetch(context.Background(), http.DefaultClient, r.url+"/api/upgrades_info/v1/graph", "amd64", "stable-4.16", "id", "4.16.10")
	if err != nil || len(updates) != 1 || len(conditional) != 1 {
		t.Fatalf("with the upstream down: %v, %+v, %+v", err, updates, conditional)
	}
	_, h, _ := request(t, r.url+stable)
	if h.Get("Dtkbot-Upstream-Age") != "7200" || h.Get("Dtkbot-Upstream-Read-At") != "2026-08-01T10:00:00Z" || !strings.Contains(h.Get("Dtkbot-Upstream-Failure"), "503") {
		t.Errorf("headers: %v", h)
	}
	_, body := get(t, r.url+"/status")
	var st statusBody
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprintf("%+v", st.UpstreamGraphs)
	if len(st.UpstreamGraphs) != 2 || st.UpstreamGraphs[0].AgeSeconds == nil || *st.UpstreamGraphs[0].AgeSeconds != 7200 ||
		!strings.Contains(st.UpstreamGraphs[0].Failure, "503") || !st.UpstreamGraphs[0].Cached || st.UpstreamGraphs[1].Cached {
		t.Errorf("/status upstream_graphs: %s", got)
	}
	// The service answers again: the age is the new read's, the failure gone.
	w.graph.Fail.Store(0)
	if d := w.disc.Discover(context.Background(), w.read.Add(2*time.Hour), nil, false); d.Err() != nil {
		t.Fatal(d.Err())
	}
	if _, h, _ := request(t, r.url+stable); h.Get("Dtkbot-Upstream-Age") != "0" || h.Get("Dtkbot-Upstream-Failure") != "" {
		t.Errorf("after recovery: %v", h)
	}
}

// TestUpgradesAPI: /api/v1/upgrades lists the updates from a version, each
// ready or not and what it waits for; --to narrows it to one.
func TestUpgradesAPI(t *testing.T) {
	r := start(t, &fakePasser{}, "", func(d *Daemon) { newUpgradeWorld(t, d.Store) }, upgradesOn(time.Now))
	code, _, body := request(t, r.url+"/api/v1/upgrades?channel=stable-4.16&from=4.16.10")
	var doc upgradegraph.Check
	if err := json.Unmarshal(body, &doc); code != 200 || err != nil {
		t.Fatalf("%d %v %s", code, err, body)
	}
	if len(doc.Targets) != 2 || doc.Targets[0].Version != "4.16.21" || doc.Targets[0].Drivers != upgradegraph.Waiting ||
		len(doc.Targets[0].WaitsFor) != 1 || !strings.Contains(doc.Targets[0].WaitsFor[0], "No verified simple-kmod image") ||
		doc.Targets[1].Version != "4.16.20" || doc.Targets[1].Drivers != upgradegraph.Ready || !doc.Targets[1].Recommended || doc.Upstream.AgeSeconds == nil {
		t.Errorf("%s", body)
	}
	code, _, body = request(t, r.url+"/api/v1/upgrades?channel=stable-4.16&from=4.16.10&to=4.16.20")
	if err := json.Unmarshal(body, &doc); code != 200 || err != nil || len(doc.Targets) != 1 || doc.Targets[0].Version != "4.16.20" {
		t.Errorf("--to: %d %s", code, body)
	}
	for path, want := range map[string]int{
		"/api/v1/upgrades?channel=stable-4.16&from=4.16.99":              404,
		"/api/v1/upgrades?channel=stable-4.16&from=4.16.10&to=4.16.99":   404,
		"/api/v1/upgrades?channel=stable-4.16":                           400,
		"/api/v1/upgrades?channel=candidate-4.16&from=4.16.10":           404,
		"/api/v1/upgrades?channel=stable-4.16&from=%3Cscript%3E&to=4.16": 400,
	} {
		if code, _, body := request(t, r.url+path); code != want {
			t.Errorf("%s: %d, want %d: %s", path, code, want, body)
		}
	}
}

// TestUpdateGraphRequestsAreRateLimited: past the burst, 429 with a
// Retry-After, until the clock has refilled the bucket.
func TestUpdateGraphRequestsAreRateLimited(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Date(2026, 8, 1, 10, 0, 0, 0, time.UTC).UnixNano())
	r := start(t, &fakePasser{}, "", func(d *Daemon) { newUpgradeWorld(t, d.Store) }, upgradesOn(func() time.Time { return time.Unix(0, now.Load()) }),
		func(d *Daemon) { d.Upgrades.Rate, d.Upgrades.Burst = 1, 2 })
	for i := 0; i < 2; i++ {
		if code, _, _ := request(t, r.url+stable); code != 200 {
			t.Fatalf("request %d: %d", i, code)
		}
	}
	code, h, body := request(t, r.url+"/api/v1/upgrades?channel=stable-4.16&from=4.16.10")
	if code != 429 || h.Get("Retry-After") != "2" || !strings.Contains(string(body), "too_many_requests") {
		t.Errorf("past the burst: %d %v %s", code, h, body)
	}
	now.Add(int64(time.Second))
	if code, _, _ := request(t, r.url+stable); code != 200 {
		t.Errorf("a second later: %d", code)
	}
	if code, _, _ := request(t, r.url+"/healthz"); code != 200 {
		t.Errorf("/healthz is limited too: %d", code)
	}
}

// TestCoveragePageDrawsTheUpdateGraph: the page has the picture of each
// watched channel's graph (or says why not), the updates of one release
// on ?from=, and the releases of a kernel on ?kernel=, where risks link.
func TestCoveragePageDrawsTheUpdateGraph(t *testing.T) {
	r := start(t, &fakePasser{}, "", func(d *Daemon) { newUpgradeWorld(t, d.Store) }, upgradesOn(time.Now))
	code, page := get(t, r.url+"/")
	if code != 200 || !strings.Contains(page, `<svg xmlns="http://www.w3.org/2000/svg" class="update-graph"`) ||
		!strings.Contains(page, `data-version="4.16.21" data-state="waiting"`) || !strings.Contains(page, `data-version="4.16.20" data-state="ready"`) ||
		!strings.Contains(page, "no upstream graph read yet") {
		t.Fatalf("%d\n%s", code, page)
	}
	_, page = get(t, r.url+"/?channel=stable-4.16&from=4.16.10")
	if !strings.Contains(page, `data-version="4.16.10" data-state="ready" data-from="true"`) || !strings.Contains(page, `data-from="4.16.10" data-to="4.16.21" data-risk="dtkbot"`) ||
		!strings.Contains(page, "the updates from 4.16.10") || strings.Contains(page, "stable-4.17") {
		t.Errorf("?from=4.16.10:\n%s", page)
	}
	_, page = get(t, r.url+"/?kernel="+kWaiting)
	if !strings.Contains(page, "The releases shipping kernel <code>"+kWaiting+"</code>") || !strings.Contains(page, `data-release="4.16.21"`) ||
		strings.Contains(page, `data-release="4.16.20"`) {
		t.Errorf("?kernel=:\n%s", page)
	}
	if code, _ := get(t, r.url+"/?from=%3Cb%3E"); code != 400 {
		t.Errorf("?from=<b>: %d", code)
	}
}

// TestRequestsCannotMultiplyComputations: a channel not watched is answered
// with no computation, and requests naming ever new hosts (the links'
// base, with upgrades.public_url unset) share a bounded number of them.
func TestRequestsCannotMultiplyComputations(t *testing.T) {
	r := start(t, &fakePasser{}, "", func(d *Daemon) { newUpgradeWorld(t, d.Store) }, upgradesOn(time.Now), func(d *Daemon) { d.Upgrades.PublicURL = "" })
	computed := func() float64 {
		var m dto.Metric
		_ = r.d.m().upgradeComputes.Write(&m)
		return m.GetCounter().GetValue()
	}
	before := computed()
	for i := 0; i < 20; i++ {
		if code, _, _ := request(t, r.url+fmt.Sprintf("/api/upgrades_info/v1/graph?channel=fast-4.%d", i)); code != 404 {
			t.Fatalf("an unwatched channel: %d", code)
		}
	}
	if n := computed() - before; n != 0 {
		t.Errorf("%v computations for channels not watched", n)
	}
	var links []string
	for i := 0; i < 3*maxLinkBases; i++ {
		req, _ := http.NewRequest(http.MethodGet, r.url+"/api/v1/upgrades?channel=stable-4.16&from=4.16.10", nil)
		req.Host = fmt.Sprintf("dtkbot-%d.example.com", i)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var check upgradegraph.Check
		_ = json.NewDecoder(resp.Body).Decode(&check)
		resp.Body.Close()
		links = append(links, check.Targets[0].Risks[1].URL)
	}
	if n := computed() - before; n != maxLinkBases {
		t.Errorf("%v computations for %d hosts, want %d", n, 3*maxLinkBases, maxLinkBases)
	}
	if links[0] != "http://dtkbot-0.example.com/?kernel="+kWaiting || links[maxLinkBases-1] != fmt.Sprintf("http://dtkbot-%d.example.com/?kernel=%s", maxLinkBases-1, kWaiting) ||
		links[maxLinkBases] != links[0] {
		t.Errorf("links %v", links)
	}
}
