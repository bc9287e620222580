package reconcile

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/dtkbot/dtkbot/breaker"
	"github.com/dtkbot/dtkbot/builder"
	"github.com/dtkbot/dtkbot/internal/faulttest"
	"github.com/dtkbot/dtkbot/internal/payloadtest"
	"github.com/dtkbot/dtkbot/internal/sigtest"
	"github.com/dtkbot/dtkbot/ledger"
	"github.com/dtkbot/dtkbot/plan"
	"github.com/dtkbot/dtkbot/releasesig"
	"github.com/dtkbot/dtkbot/watcher"
)

// signingKey is a key made for the test, and its public key file.
func signingKey(t testing.TB) (*sigtest.Key, string) {
	t.Helper()
	k, err := sigtest.NewKey("dtkbot test release")
	if err != nil {
		t.Fatal(err)
	}
	pub, err := k.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "release-key.asc")
	if err := os.WriteFile(file, pub, 0o600); err != nil {
		t.Fatal(err)
	}
	return k, file
}

// checker is a real signature checker for store (a URL or a directory)
// trusting keyFile, asking a store by URL through the breaker transport
// with timeout.
func checker(t testing.TB, store, keyFile string, timeout time.Duration) *releasesig.Checker {
	t.Helper()
	c, err := releasesig.New(releasesig.Options{Store: store, KeyFiles: []string{keyFile},
		HTTP: &http.Client{Transport: &breaker.Transport{Service: "signature-store", Timeout: timeout}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func service(res *Result, name string) (ledger.ServiceReport, bool) {
	for _, s := range res.Services {
		if s.Service == name {
			return s, true
		}
	}
	return ledger.ServiceReport{}, false
}

// TestDeadSignatureStoreCostsAHandfulOfAttempts: with the default config's
// signature checks (warn mode) and a store that accepts connections and
// never answers, the pass finishes, inspects and builds every payload,
// makes at most three attempts to the store (counted by the store), says
// the signatures were not checked and the store was skipped (in the
// result, its JSON and the pass record), and asks again only after
// verify.recheck.
func TestDeadSignatureStoreCostsAHandfulOfAttempts(t *testing.T) {
	dead, err := faulttest.NewBlackhole()
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	h := newHarness(t)
	const n = 24
	for i := range n {
		h.publish("stable-4.16", fmt.Sprintf("4.16.%d", i), k1)
	}
	_, keyFile := signingKey(t)
	sigs := checker(t, dead.URL(), keyFile, 200*time.Millisecond)
	reconciler := func() *Reconciler {
		r := h.reconciler()
		r.Signatures, r.SignatureMode, r.SignatureRecheck = sigs, releasesig.ModeWarn, 6*time.Hour
		return r
	}
	res, err := reconciler().RunOnce(context.Background(), h.now, Options{})
	if err != nil {
		t.Fatalf("the pass failed: %v", err)
	}
	if res.Inspected != n || count(res, "build") != 1 || count(res, "promote:release") != n {
		t.Fatalf("inspected %d, built %d, tagged %d", res.Inspected, count(res, "build"), count(res, "promote:release"))
	}
	if got := dead.Accepted(); got > breaker.DefaultThreshold {
		t.Errorf("the dead store saw %d connections, want at most %d", got, breaker.DefaultThreshold)
	}
	s := res.Signatures
	if s == nil || len(s.Unchecked) != n || s.Verified != 0 || s.NotAsked != n-breaker.DefaultThreshold {
		t.Fatalf("signatures %+v", s)
	}
	store, ok := service(res, "signature-store")
	if !ok || !store.Open || store.Requests != breaker.DefaultThreshold || store.Skipped != n-breaker.DefaultThreshold || !strings.Contains(store.Reason, "no answer within") {
		t.Errorf("services %+v", res.Services)
	}
	warned := false
	for _, w := range res.Warnings {
		warned = warned || strings.Contains(w, fmt.Sprintf("%d payload signatures could not be checked (the signature store stopped answering: %d not asked)", n, n-3))
	}
	if !warned {
		t.Errorf("warnings %q", res.Warnings)
	}
	raw, _ := json.Marshal(res)
	if !strings.Contains(string(raw), `"services":[{"service":"signature-store"`) || !strings.Contains(string(raw), `"not_asked":21`) {
		t.Errorf("reconcile -o json: %s", raw)
	}
	rec, err := h.store.LastPass()
	if err != nil || rec == nil || len(rec.Services) == 0 || !rec.Services[0].Open {
		t.Errorf("pass record %+v %v", rec, err)
	}
	exp, _ := h.store.Export()
	for _, rel := range exp.Releases {
		if !strings.HasPrefix(rel.Signature, "unchecked: ") || !rel.SignatureCheckedAt.Equal(h.now) {
			t.Errorf("release %s: signature %q checked at %s", rel.Version, rel.Signature, rel.SignatureCheckedAt)
		}
	}

	// Within verify.recheck the store is not asked again.
	before := dead.Accepted()
	res, err = reconciler().RunOnce(context.Background(), h.now.Add(time.Hour), Options{})
	if err != nil || res.Signatures != nil || len(res.Services) != 0 || dead.Accepted() != before {
		t.Errorf("within recheck: %v, signatures %+v, services %+v, %d connections", err, res.Signatures, res.Services, dead.Accepted()-before)
	}
	// After it, it is, at the same cost.
	res, err = reconciler().RunOnce(context.Background(), h.now.Add(7*time.Hour), Options{})
	if err != nil || res.Signatures == nil || res.Signatures.Rechecked != n || dead.Accepted()-before > breaker.DefaultThreshold {
		t.Errorf("after recheck: %v, signatures %+v, %d connections", err, res.Signatures, dead.Accepted()-before)
	}
}

// TestDeadSignatureStoreInStrictMode: every payload is held, the pass says
// once that the store was skipped (not once per release), and the held
// payloads wait for verify.recheck.
func TestDeadSignatureStoreInStrictMode(t *testing.T) {
	dead, err := faulttest.NewBlackhole()
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	h := newHarness(t)
	const n = 12
	for i := range n {
		h.publish("stable-4.16", fmt.Sprintf("4.16.%d", i), k1)
	}
	_, keyFile := signingKey(t)
	sigs := checker(t, dead.URL(), keyFile, 200*time.Millisecond)
	r := h.reconciler()
	r.Signatures, r.SignatureMode, r.SignatureRecheck = sigs, releasesig.ModeStrict, 6*time.Hour
	res, err := r.RunOnce(context.Background(), h.now, Options{})
	if err == nil || res.Held != n || count(res, "build") != 0 || dead.Accepted() > breaker.DefaultThreshold {
		t.Fatalf("%v: held %d, builds %d, %d connections", err, res.Held, count(res, "build"), dead.Accepted())
	}
	notAsked := 0
	for _, e := range res.Errors {
		if strings.Contains(e, "not asked") {
			notAsked++
		}
	}
	if notAsked != 1 || len(res.Errors) != breaker.DefaultThreshold+1 {
		t.Errorf("errors %q", res.Errors)
	}
	exp, _ := h.store.Export()
	for _, hr := range exp.Held {
		if hr.Kind != plan.HeldSignature || !hr.SignatureCheckedAt.Equal(h.now) {
			t.Errorf("held %+v", hr)
		}
	}
	before := dead.Accepted()
	r = h.reconciler()
	r.Signatures, r.SignatureMode, r.SignatureRecheck = sigs, releasesig.ModeStrict, 6*time.Hour
	res, err = r.RunOnce(context.Background(), h.now.Add(time.Hour), Options{})
	if err != nil || res.Held != n || dead.Accepted() != before {
		t.Errorf("within recheck: %v, held %d, %d connections", err, res.Held, dead.Accepted()-before)
	}
}

// TestSignaturesAreRecheckedAfterTheInterval: a signature that did not
// verify is checked again after verify.recheck, not before; one verified
// never is; a held payload is read again then, and recorded once it
// verifies.
func TestSignaturesAreRecheckedAfterTheInterval(t *testing.T) {
	h := newHarness(t)
	good := h.publish("stable-4.16", "4.16.15", k1)
	late := h.publish("stable-4.16", "4.16.17", k2)
	sigs := &fakeSignatures{signed: map[string]bool{good.Digest.String(): true}}
	pass := func(mode string, at time.Duration) *Result {
		r := h.reconciler()
		r.Signatures, r.SignatureMode, r.SignatureRecheck = sigs, mode, 6*time.Hour
		res, err := r.RunOnce(context.Background(), h.now.Add(at), Options{})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	if res := pass(releasesig.ModeStrict, 0); res.Held != 1 || sigs.checks.Load() != 2 {
		t.Fatalf("first pass: held %d, %d checks", res.Held, sigs.checks.Load())
	}
	sigs.signed[late.Digest.String()] = true // published later
	if res := pass(releasesig.ModeStrict, time.Hour); res.Held != 1 || sigs.checks.Load() != 2 {
		t.Fatalf("within recheck: held %d, %d checks", res.Held, sigs.checks.Load())
	}
	res := pass(releasesig.ModeStrict, 6*time.Hour)
	if res.Held != 0 || count(res, "build") != 1 || sigs.checks.Load() != 3 {
		t.Fatalf("after recheck: held %d, builds %d, %d checks", res.Held, count(res, "build"), sigs.checks.Load())
	}
	// Verified releases are never checked again.
	if pass(releasesig.ModeStrict, 100*time.Hour); sigs.checks.Load() != 3 {
		t.Errorf("verified signatures checked again: %d checks", sigs.checks.Load())
	}

	// Warn mode: an unverified recorded release is checked again after
	// the interval, and its record says what it found.
	h2 := newHarness(t)
	p := h2.publish("stable-4.16", "4.16.20", k3)
	sigs2 := &fakeSignatures{signed: map[string]bool{}}
	pass2 := func(at time.Duration) *Result {
		r := h2.reconciler()
		r.Signatures, r.SignatureMode, r.SignatureRecheck = sigs2, releasesig.ModeWarn, 6*time.Hour
		res, err := r.RunOnce(context.Background(), h2.now.Add(at), Options{})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	pass2(0)
	sigs2.signed[p.Digest.String()] = true
	pass2(5 * time.Hour)
	if sigs2.checks.Load() != 1 {
		t.Fatalf("rechecked within the interval: %d checks", sigs2.checks.Load())
	}
	if res := pass2(6 * time.Hour); res.Signatures == nil || res.Signatures.Rechecked != 1 || res.Signatures.Verified != 1 {
		t.Fatalf("recheck: %+v", res.Signatures)
	}
	exp, _ := h2.store.Export()
	if exp.Releases[0].Signature != "verified by test key" || !exp.Releases[0].SignatureCheckedAt.Equal(h2.now.Add(6*time.Hour)) {
		t.Errorf("release %+v", exp.Releases[0])
	}
}

// TestStrictModeWithALocalSignatureStore: strict mode with no internet: the
// signature store is a local directory in each layout a disconnected
// installation has (the official tree, oc-mirror's ConfigMap file, the
// ConfigMaps mounted as a volume); a signed payload is built, an unsigned
// one held.
func TestStrictModeWithALocalSignatureStore(t *testing.T) {
	layouts := map[string]func(dir string, d digest.Digest, sig []byte){
		"official tree": func(dir string, d digest.Digest, sig []byte) {
			p := filepath.Join(dir, "sha256="+d.Encoded())
			_ = os.MkdirAll(p, 0o755)
			_ = os.WriteFile(filepath.Join(p, "signature-1"), sig, 0o644)
		},
		"oc-mirror's ConfigMap": func(dir string, d digest.Digest, sig []byte) {
			p := filepath.Join(dir, "cluster-resources")
			_ = os.MkdirAll(p, 0o755)
			cm := fmt.Sprintf(`{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"mirrored-release-signatures","namespace":"openshift-config-managed","labels":{%q:""}},"binaryData":{"sha256-%s-1":%q}}`,
				releasesig.SignatureLabel, d.Encoded(), base64.StdEncoding.EncodeToString(sig))
			_ = os.WriteFile(filepath.Join(p, "signature-configmap.json"), []byte(cm), 0o644)
		},
		"ConfigMap mounted as a volume": func(dir string, d digest.Digest, sig []byte) {
			ts := filepath.Join(dir, "..2026_11_25_12_00_00.1")
			_ = os.MkdirAll(ts, 0o755)
			name := "sha256-" + d.Encoded() + "-1"
			_ = os.WriteFile(filepath.Join(ts, name), sig, 0o644)
			_ = os.Symlink(filepath.Base(ts), filepath.Join(dir, "..data"))
			_ = os.Symlink(filepath.Join("..data", name), filepath.Join(dir, name))
		},
	}
	for name, lay := range layouts {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t)
			signed := h.publish("stable-4.16", "4.16.15", k1)
			h.publish("stable-4.16", "4.16.17", k2)
			key, keyFile := signingKey(t)
			sig, err := key.Sign(signed.Digest, signed.TagPullspec)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			lay(dir, signed.Digest, sig)
			r := h.reconciler()
			r.Signatures, r.SignatureMode = checker(t, dir, keyFile, time.Second), releasesig.ModeStrict
			res, err := r.RunOnce(context.Background(), h.now, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if count(res, "build") != 1 || res.Held != 1 || res.Signatures.Verified != 1 || len(res.Signatures.Held) != 1 || res.Signatures.Held[0] != "4.16.17" {
				t.Fatalf("builds %d, held %d, signatures %+v", count(res, "build"), res.Held, res.Signatures)
			}
			if len(res.Services) != 0 {
				t.Errorf("a local store asked services: %+v", res.Services)
			}
		})
	}
}

// TestReleaseTagsResolveThroughTheMirror: behind a pull-through cache
// (registries.conf mirrors the release repository), with a primary that
// accepts connections and never answers, the pass pins every release tag
// (the config's and a release-controller's) from the mirror, reads every
// payload there, and never asks the primary.
func TestReleaseTagsResolveThroughTheMirror(t *testing.T) {
	dead, err := faulttest.NewBlackhole()
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	h := newHarness(t)
	h.world = payloadtest.New(h.srv.Registry, dead.Addr()) // pullspecs name the unreachable primary
	h.world.ContentSize = 16 << 10
	h.builder.world = h.world
	conf := filepath.Join(t.TempDir(), "registries.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("[[registry]]\nlocation = %q\n[[registry.mirror]]\nlocation = %q\ninsecure = true\n",
		dead.Addr()+"/openshift-release-dev", h.srv.Host()+"/openshift-release-dev")), 0o600); err != nil {
		t.Fatal(err)
	}
	h.regOpts.RegistriesConf = conf
	// The registry timeout stays the harness's 10 s: it bounds the live
	// mirror's calls too, so a short one would fail them on a slow machine.
	// Were the primary asked, it would cost that wait and fail the count of
	// its connections below, never pass.
	h.channels = nil
	var tags []string
	for i := range 6 {
		p := h.world.Release(payloadtest.ReleaseSpec{Version: fmt.Sprintf("4.16.%d", i), Stream: k1})
		h.releases = append(h.releases, p.TagPullspec)
		tags = append(tags, p.TagPullspec)
	}
	h.rcStreams = []string{"4-dev-preview"}
	for i := range 2 {
		p := h.world.Release(payloadtest.ReleaseSpec{Version: fmt.Sprintf("4.17.0-ec.%d", i), Stream: k2})
		h.rc.Publish("4-dev-preview", p.Version, watcher.PhaseAccepted, p.TagPullspec)
		tags = append(tags, p.TagPullspec)
	}
	h.target.Repository = h.srv.Host() + "/dtkbot/driver-toolkit" // dtkbot's own tags: asked of that registry
	res, err := h.reconciler().RunOnce(context.Background(), h.now, Options{DryRun: true})
	if err != nil {
		t.Fatalf("the pass failed: %v", err)
	}
	if res.Inspected != 8 || dead.Accepted() != 0 {
		t.Fatalf("inspected %d, the primary saw %d connections", res.Inspected, dead.Accepted())
	}
	res, err = h.reconciler().RunOnce(context.Background(), h.now, Options{})
	if err != nil || res.Inspected != 8 || dead.Accepted() != 0 {
		t.Fatalf("%v: inspected %d, the primary saw %d connections", err, res.Inspected, dead.Accepted())
	}
	for _, tag := range tags {
		if pin, ok, _ := h.store.Pin(tag); !ok || pin.Digest == "" {
			t.Errorf("%s not pinned", tag)
		}
	}
}

// TestDeadFeedsCostOneTimeoutEach: an update graph and a release-controller
// that accept connections and never answer: each is asked a handful of
// times however many channels and streams are read, the pass fails softly
// and still reads the config's releases.
func TestDeadFeedsCostOneTimeoutEach(t *testing.T) {
	dead, err := faulttest.NewBlackhole()
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	h := newHarness(t)
	h.channels = []string{"stable-4.12", "stable-4.13", "stable-4.14", "stable-4.15", "stable-4.16", "stable-4.17"}
	h.arches = []string{"amd64", "arm64"}
	p := h.world.Release(payloadtest.ReleaseSpec{Version: "4.16.15", Stream: k1})
	h.releases = []string{p.TagPullspec}
	r := h.reconciler()
	r.Discoverer.Graph = &watcher.GraphClient{URL: dead.URL() + "/graph",
		HTTP: &http.Client{Transport: &breaker.Transport{Service: "update-graph", Timeout: 200 * time.Millisecond}}}
	r.Discoverer.ReleaseControllers = []*watcher.ReleaseController{{URL: dead.URL(), Arch: "amd64", Streams: []string{"4-stable", "4-dev-preview", "4.17.0-0.nightly"},
		HTTP: &http.Client{Transport: &breaker.Transport{Service: "release-controller", Timeout: 200 * time.Millisecond}}}}
	res, err := r.RunOnce(context.Background(), h.now, Options{})
	if err == nil {
		t.Fatal("the pass did not say the feeds failed")
	}
	if res.Inspected != 1 || count(res, "build") != 1 {
		t.Errorf("the config's release: inspected %d, builds %d", res.Inspected, count(res, "build"))
	}
	graph, _ := service(res, "update-graph")
	rc, _ := service(res, "release-controller")
	if !graph.Open || graph.Requests != 3 || graph.Skipped != 9 || !rc.Open || rc.Requests != 3 {
		t.Errorf("services %+v", res.Services)
	}
	if n := dead.Accepted(); n > 6 {
		t.Errorf("the dead feeds saw %d connections, want at most 6", n)
	}
	notAsked := 0
	for _, e := range res.Errors {
		if strings.Contains(e, "not asked") {
			notAsked++
		}
	}
	if notAsked != 1 {
		t.Errorf("%d errors say a feed was not asked, want 1: %q", notAsked, res.Errors)
	}
}

// TestDeadBuildWebhookSpendsNoAttempts: a build service that stopped
// answering costs the builds it was not asked for no attempt.
func TestDeadBuildWebhookSpendsNoAttempts(t *testing.T) {
	dead, err := faulttest.NewBlackhole()
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	h := newHarness(t)
	for i, k := range []payloadtest.Stream{k1, k2, k3} {
		h.publish("stable-4.16", fmt.Sprintf("4.16.%d", 15+i), k)
	}
	extra := []payloadtest.Stream{{Kernel: "5.14.0-427.50.1.el9_4"}, {Kernel: "5.14.0-427.55.1.el9_4"}}
	for i, k := range extra {
		h.publish("stable-4.16", fmt.Sprintf("4.16.%d", 20+i), k)
	}
	r := h.reconciler()
	r.Builder = webhookTo(dead.URL())
	res, _ := r.RunOnce(context.Background(), h.now, Options{})
	wh, _ := service(res, "build-webhook")
	if !wh.Open || wh.Requests != 3 || wh.Skipped != 2 {
		t.Fatalf("services %+v", res.Services)
	}
	attempts := 0
	for _, k := range kernels(t, h.store) {
		attempts += k.Attempts
	}
	if attempts != 3 {
		t.Errorf("%d attempts spent, want 3 (the builds not asked spend none)", attempts)
	}
}

// webhookTo is the webhook build backend for url, one request a build,
// through the breaker.
func webhookTo(url string) *builder.WebhookBuilder {
	return &builder.WebhookBuilder{URL: url, Secret: []byte("s3cret"), Attempts: 1,
		HTTP: &http.Client{Transport: &breaker.Transport{Service: "build-webhook", Timeout: 200 * time.Millisecond}}}
}
