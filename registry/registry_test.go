package registry

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.podman.io/image/v5/types"

	"github.com/dtkbot/dtkbot/internal/payloadtest"
	"github.com/dtkbot/dtkbot/internal/poll"
	"github.com/dtkbot/dtkbot/internal/registrytest"
	"github.com/dtkbot/dtkbot/retry"
)

type fixture struct {
	srv   *registrytest.Server
	image payloadtest.Pushed
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	srv := registrytest.New().Server()
	t.Cleanup(srv.Close)
	w := payloadtest.New(srv.Registry, srv.Host())
	img := w.PushImage("acme/image", "v1", payloadtest.Image{Layers: [][]byte{payloadtest.NoiseLayer("a", 4096)}})
	return &fixture{srv: srv, image: img}
}

func testClient(opts Options) *Client {
	f := false
	opts.TLSVerify = &f
	opts.RegistriesConf = "/dev/null"
	if opts.Backoff == 0 {
		opts.Backoff = 10 * time.Millisecond
	}
	return New(opts)
}

func (f *fixture) readLayer(t *testing.T, c *Client) error {
	t.Helper()
	img, err := c.Open(context.Background(), f.image.Pullspec)
	if err != nil {
		return err
	}
	defer img.Close()
	_, err = c.ReadBlobBytes(context.Background(), img, types.BlobInfo{Digest: f.image.Layers[0], Size: -1}, 1<<20)
	return err
}

func isBlob(r *http.Request) bool { return strings.Contains(r.URL.Path, "/blobs/sha256:") }

func TestRetriesServerErrors(t *testing.T) {
	f := newFixture(t)
	var fails atomic.Int32
	f.srv.SetIntercept(func(w http.ResponseWriter, r *http.Request) bool {
		if (isBlob(r) || strings.Contains(r.URL.Path, "/manifests/")) && fails.Add(1) <= 2 {
			http.Error(w, "try later", http.StatusServiceUnavailable)
			return true
		}
		return false
	})
	c := testClient(Options{})
	if err := f.readLayer(t, c); err != nil {
		t.Fatal(err)
	}
	if got := c.Counters().Retries; got != 2 {
		t.Errorf("%d retries, want 2", got)
	}
}

func TestDoesNotRetryNotFound(t *testing.T) {
	f := newFixture(t)
	c := testClient(Options{})
	_, err := c.Open(context.Background(), f.srv.Host()+"/acme/image:nope")
	if err == nil || !strings.Contains(err.Error(), "acme/image:nope") {
		t.Fatalf("error %v", err)
	}
	if c.Counters().Retries != 0 {
		t.Errorf("a 404 was retried")
	}
}

func TestGivesUpAfterAttempts(t *testing.T) {
	f := newFixture(t)
	f.srv.SetIntercept(func(w http.ResponseWriter, r *http.Request) bool {
		if isBlob(r) {
			http.Error(w, "down", http.StatusBadGateway)
			return true
		}
		return false
	})
	c := testClient(Options{Attempts: 3})
	err := f.readLayer(t, c)
	if err == nil || !strings.Contains(err.Error(), "after 3 attempts") {
		t.Fatalf("error %v", err)
	}
}

// countWaits makes c's waits between attempts immediate and returns what
// they would have been.
func countWaits(c *Client) func() []time.Duration {
	var mu sync.Mutex
	var waits []time.Duration
	c.after = func(d time.Duration) <-chan time.Time {
		mu.Lock()
		waits = append(waits, d)
		mu.Unlock()
		ch := make(chan time.Time, 1)
		ch <- time.Time{}
		return ch
	}
	return func() []time.Duration {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(waits)
	}
}

// TestHonoursRetryAfter: a 429's Retry-After is the wait before the next
// attempt instead of the backoff, capped at retry.MaxWait; counted by the
// client's clock, not the test's.
func TestHonoursRetryAfter(t *testing.T) {
	for _, c := range []struct {
		header string
		want   time.Duration
	}{{"1", time.Second}, {"3600", retry.MaxWait}} {
		f := newFixture(t)
		var limited atomic.Bool
		var blobGETs atomic.Int32
		f.srv.SetIntercept(func(w http.ResponseWriter, r *http.Request) bool {
			if isBlob(r) {
				blobGETs.Add(1)
				if !limited.Swap(true) {
					w.Header().Set("Retry-After", c.header)
					http.Error(w, "slow down", http.StatusTooManyRequests)
					return true
				}
			}
			return false
		})
		client := testClient(Options{})
		waits := countWaits(client)
		if err := f.readLayer(t, client); err != nil {
			t.Fatal(err)
		}
		if got := waits(); !slices.Equal(got, []time.Duration{c.want}) || blobGETs.Load() != 2 {
			t.Errorf("Retry-After: %s: waited %v between %d blob GETs, want [%s] between 2", c.header, got, blobGETs.Load(), c.want)
		}
	}
}

// TestStalledBodyTimesOut: the per-call timeout covers reading the body, so
// a registry that stalls mid-blob costs each attempt its timeout: both
// attempts reach the registry, and the client abandons both.
func TestStalledBodyTimesOut(t *testing.T) {
	f := newFixture(t)
	release := make(chan struct{})
	defer close(release)
	var started, abandoned atomic.Int32
	f.srv.SetIntercept(func(w http.ResponseWriter, r *http.Request) bool {
		if isBlob(r) {
			started.Add(1)
			w.Header().Set("Content-Length", "4096")
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write([]byte("partial"))
			w.(http.Flusher).Flush()
			select {
			case <-release:
			case <-r.Context().Done():
				abandoned.Add(1)
			}
			return true
		}
		return false
	})
	c := testClient(Options{Timeout: 200 * time.Millisecond, Attempts: 2})
	countWaits(c)
	done := make(chan error, 1)
	go func() { done <- f.readLayer(t, c) }()
	err := poll.Receive(t, "a stalled body to time out (the body read outside the per-call timeout?)", 0, done)
	if err == nil || !strings.Contains(err.Error(), "after 2 attempts: registry call timed out after 200ms") {
		t.Fatalf("error %v", err)
	}
	poll.Until(t, "the registry to see both reads abandoned", 0, func() bool { return abandoned.Load() == 2 })
	if n := started.Load(); n != 2 {
		t.Errorf("%d blob reads, want one per attempt", n)
	}
}

func TestCorruptBlobIsRejected(t *testing.T) {
	f := newFixture(t)
	f.srv.PutBlobUnchecked("acme/image", f.image.Layers[0], []byte("not the layer"))
	c := testClient(Options{})
	img, err := c.Open(context.Background(), f.image.Pullspec)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	var consumed []byte
	err = c.ReadBlob(context.Background(), img, types.BlobInfo{Digest: f.image.Layers[0], Size: -1}, 1<<20, func(r io.Reader) error {
		consumed, _ = io.ReadAll(r)
		return nil
	})
	if !errors.Is(err, ErrDigestMismatch) || !strings.Contains(err.Error(), f.image.Layers[0].String()) {
		t.Fatalf("error %v (consumer saw %d bytes)", err, len(consumed))
	}
}

func TestManifestDigestIsVerified(t *testing.T) {
	f := newFixture(t)
	// Serve another manifest under the pinned digest.
	other := payloadtest.New(f.srv.Registry, f.srv.Host()).PushImage("acme/image", "v2", payloadtest.Image{Layers: [][]byte{payloadtest.NoiseLayer("b", 10)}})
	f.srv.SetIntercept(func(w http.ResponseWriter, r *http.Request) bool {
		if strings.HasSuffix(r.URL.Path, "/manifests/"+f.image.Digest.String()) {
			body, mt, _ := f.srv.Manifest("acme/image", other.Digest.String())
			w.Header().Set("Content-Type", mt)
			_, _ = w.Write(body)
			return true
		}
		return false
	})
	_, err := testClient(Options{}).Open(context.Background(), f.image.Pullspec)
	if !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("error %v", err)
	}
}

// TestConcurrencyIsBounded: with Concurrency 2, six readers put two reads
// at the registry, held there, and the other four wait for a slot (the
// client's count) while a third never reaches the registry.
func TestConcurrencyIsBounded(t *testing.T) {
	f := newFixture(t)
	release := make(chan struct{})
	var inFlight, peak atomic.Int32
	f.srv.SetIntercept(func(w http.ResponseWriter, r *http.Request) bool {
		if isBlob(r) {
			n := inFlight.Add(1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			select {
			case <-release:
			case <-r.Context().Done():
			}
			inFlight.Add(-1)
		}
		return false
	})
	c := testClient(Options{Concurrency: 2})
	var wg sync.WaitGroup
	for i := 0; i < 6; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f.readLayer(t, c); err != nil {
				t.Error(err)
			}
		}()
	}
	poll.UntilWhy(t, "two reads at the registry, four waiting for a slot", 0, func() (bool, string) {
		in, waiting := inFlight.Load(), c.waiting.Load()
		return in >= 2 && int(in)+int(waiting) == 6, fmt.Sprintf("%d at the registry, %d waiting", in, waiting)
	})
	if p := peak.Load(); p != 2 {
		t.Errorf("%d blob reads at once, limit 2", p)
	}
	close(release)
	wg.Wait()
	if p := peak.Load(); p != 2 {
		t.Errorf("%d blob reads at once, limit 2", p)
	}
}

func TestDigestIsOneHEAD(t *testing.T) {
	f := newFixture(t)
	c := testClient(Options{})
	before := f.srv.Stats()
	d, err := c.Digest(context.Background(), f.srv.Host()+"/acme/image:v1")
	if err != nil || d != f.image.Digest {
		t.Fatalf("digest %s, %v", d, err)
	}
	if s := f.srv.Stats().Sub(before); s.Requests != 1 || s.ManifestHEADs != 1 {
		t.Errorf("stats %+v", s)
	}
	for _, missing := range []string{"/acme/image:v9", "/acme/nothing:v1"} {
		_, err = c.Digest(context.Background(), f.srv.Host()+missing)
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: %v", missing, err)
		}
	}
	if c.Counters().Retries != 0 {
		t.Errorf("a missing tag was retried")
	}
}

// TestUntagRemovesTheTagNotTheManifest: the tag goes, the manifest (and
// any other tag naming it) stays; a registry that does not delete tags says
// so; a tag already gone is success.
func TestUntagRemovesTheTagNotTheManifest(t *testing.T) {
	f := newFixture(t)
	body, mt, _ := f.srv.Manifest("acme/image", "v1")
	f.srv.PutManifest("acme/image", "staging-v1", mt, body)
	c := testClient(Options{})
	ctx := context.Background()
	if err := c.Untag(ctx, f.srv.Host()+"/acme/image:staging-v1"); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.srv.TagDigest("acme/image", "staging-v1"); ok {
		t.Error("the tag is still there")
	}
	if d, ok := f.srv.TagDigest("acme/image", "v1"); !ok || d != f.image.Digest {
		t.Error("the other tag of the manifest went too")
	}
	if err := c.Untag(ctx, f.srv.Host()+"/acme/image:staging-v1"); err != nil {
		t.Errorf("a tag already gone: %v", err)
	}
	f.srv.PutManifest("acme/image", "staging-v1", mt, body)
	f.srv.SetTagDelete(registrytest.TagDeleteRefused)
	if err := c.Untag(ctx, f.srv.Host()+"/acme/image:staging-v1"); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "405 (method not allowed) UNSUPPORTED") {
		t.Errorf("a registry that does not delete tags: %v", err)
	}
	if err := c.Untag(ctx, f.srv.Host()+"/acme/image@"+f.image.Digest.String()); err == nil {
		t.Error("untagging a digest reference")
	}
}

// TestUntagWithBasicAuth sends the pull secret's credentials, pinging once.
func TestUntagWithBasicAuth(t *testing.T) {
	f := newFixture(t)
	f.srv.RequireBasicAuth("robot", "s3cret")
	auth := writeAuthFile(t, f.srv.Host(), "robot", "s3cret")
	c := testClient(Options{AuthFile: auth})
	before := f.srv.Stats()
	for _, tag := range []string{"a", "b"} {
		body, mt, _ := f.srv.Manifest("acme/image", "v1")
		f.srv.PutManifest("acme/image", tag, mt, body)
		if err := c.Untag(context.Background(), f.srv.Host()+"/acme/image:"+tag); err != nil {
			t.Fatal(err)
		}
	}
	if c := f.srv.Stats().Sub(before); c.TagDeletes != 2 {
		t.Errorf("%d tags deleted", c.TagDeletes)
	}
}

// writeAuthFile writes a containers auth.json with one registry's credentials.
func writeAuthFile(t *testing.T, host, user, pass string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "auth.json")
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
	if err := os.WriteFile(p, []byte(fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, host, auth)), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestTagsFollowsPages: a repository's tags are listed across the
// distribution spec's pages (Link rel="next"), from the registry itself.
func TestTagsFollowsPages(t *testing.T) {
	f := newFixture(t)
	body, mt, _ := f.srv.Manifest("acme/image", "v1")
	want := []string{"v1"}
	for i := 0; i < 2500; i++ {
		tag := fmt.Sprintf("t%04d", i)
		f.srv.PutManifest("acme/image", tag, mt, body)
		want = append(want, tag)
	}
	slices.Sort(want)
	c := testClient(Options{})
	before := f.srv.Stats()
	got, err := c.Tags(context.Background(), f.srv.Host()+"/acme/image")
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("%d tags (%v), want %d", len(got), err, len(want))
	}
	if n := f.srv.Stats().Sub(before).Requests; n != 3 {
		t.Errorf("%d requests for 2501 tags, want 3 pages", n)
	}
	if _, err := c.Tags(context.Background(), f.srv.Host()+"/acme/nothing"); !errors.Is(err, ErrNoTagList) {
		t.Errorf("an unknown repository: %v", err)
	}
	if _, err := c.Tags(context.Background(), f.srv.Host()+"/acme/image:v1"); err == nil {
		t.Error("a tag reference listed")
	}
}
