package releaseinfo

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dtkbot/dtkbot/internal/payloadtest"
	"github.com/dtkbot/dtkbot/internal/registrytest"
	"github.com/dtkbot/dtkbot/registry"
)

// testWorld is a registry with payloads and an inspector reading it.
type testWorld struct {
	srv *registrytest.Server
	w   *payloadtest.World
}

func newTestWorld(t testing.TB) *testWorld {
	t.Helper()
	srv := registrytest.New().Server()
	t.Cleanup(srv.Close)
	return &testWorld{srv: srv, w: payloadtest.New(srv.Registry, srv.Host())}
}

func (tw *testWorld) client(opts registry.Options) *registry.Client {
	f := false
	opts.TLSVerify = &f
	opts.RegistriesConf = "/dev/null" // never the machine's registries.conf
	if opts.Backoff == 0 {
		opts.Backoff = 5 * time.Millisecond
	}
	if opts.Timeout == 0 {
		opts.Timeout = 10 * time.Second
	}
	return registry.New(opts)
}

// authFile writes a containers auth.json for the world's registry.
func (tw *testWorld) authFile(t testing.TB, user, pass string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "auth.json")
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
	if err := os.WriteFile(p, []byte(fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, tw.srv.Host(), auth)), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func (tw *testWorld) inspector(opts Options) *Inspector {
	return New(tw.client(registry.Options{}), opts)
}

// eraReleases are payloads of every era of payload layout (payloadtest.Eras).
func eraReleases() []payloadtest.ReleaseSpec { return payloadtest.Eras() }

func TestInspectEveryEra(t *testing.T) {
	tw := newTestWorld(t)
	for _, spec := range eraReleases() {
		p := tw.w.Release(spec)
		for arch, want := range p.Expect {
			t.Run(spec.Version+"/"+arch, func(t *testing.T) {
				before := tw.srv.Stats()
				in := tw.inspector(Options{Arch: arch})
				r, err := in.Inspect(context.Background(), p.Pullspec)
				if err != nil {
					t.Fatal(err)
				}
				if r.Release != spec.Version || r.Digest != p.Digest.String() || r.Arch != arch || r.Pullspec != p.Pullspec {
					t.Errorf("release %q digest %q arch %q pullspec %q", r.Release, r.Digest, r.Arch, r.Pullspec)
				}
				if len(r.Streams) != len(want) {
					t.Fatalf("%d streams, want %d: %+v", len(r.Streams), len(want), r.Streams)
				}
				for i, w := range want {
					s := r.Streams[i]
					got := payloadtest.Expected{
						Stream: s.Stream, OSTag: s.OSTag, DTKTag: s.DTKTag, Kernel: s.Kernel, RTKernel: s.RTKernel,
						KernelFull: s.KernelFull, RHEL: s.RHELVersion, RHCOS: s.RHCOSVersion, Source: s.KernelSource, Consistent: s.Consistent,
					}
					if got != w {
						t.Errorf("stream %d:\n got %+v\nwant %+v\nwarnings %q", i, got, w, s.Warnings)
					}
					if s.Consistent && len(s.Warnings) > 0 {
						t.Errorf("stream %d: consistent with warnings %q", i, s.Warnings)
					}
					if !strings.Contains(s.OSImage, "@sha256:") || (w.DTKTag != "" && !strings.Contains(s.DTKImage, "@sha256:")) {
						t.Errorf("stream %d: images %q %q", i, s.OSImage, s.DTKImage)
					}
				}
				if spec.Version == "4.6.13" && !strings.Contains(strings.Join(r.Streams[0].Warnings, " "), "before 4.8") {
					t.Errorf("unknown kernel without its reason: %q", r.Streams[0].Warnings)
				}
				for _, s := range r.Streams {
					if spec.Version != "4.6.13" && (s.DTKKernel != s.KernelFull || s.DTKKernelSource != SourceDTKReleaseJSON) {
						t.Errorf("stream %s: DTK kernel %q from %q, want %s from the DTK's JSON", s.Stream, s.DTKKernel, s.DTKKernelSource, s.KernelFull)
					}
				}
				// Never a content layer.
				after := tw.srv.Stats()
				for _, d := range p.Heavy {
					if n := after.BlobBytesByDig[d.String()] - before.BlobBytesByDig[d.String()]; n > 0 {
						t.Errorf("downloaded %d bytes of content layer %s", n, d)
					}
				}
			})
		}
	}
}

func TestInspectByTagAndRHCOSVersions(t *testing.T) {
	tw := newTestWorld(t)
	p := tw.w.Release(eraReleases()[6]) // 4.22 dual stream
	r, err := tw.inspector(Options{}).Inspect(context.Background(), p.TagPullspec)
	if err != nil {
		t.Fatal(err)
	}
	if r.Digest != p.Digest.String() || r.Pullspec != p.TagPullspec {
		t.Errorf("digest %s pullspec %s", r.Digest, r.Pullspec)
	}
	if strings.Join(r.RHCOSVersions, ",") != "9.6.20251201-1,10.1.20251202-0" {
		t.Errorf("rhcos versions %q", r.RHCOSVersions)
	}
	if r.Streams[1].RTKernelFull != "6.12.0-55.9.1.el10_1.x86_64+rt" {
		t.Errorf("rt kernel %q", r.Streams[1].RTKernelFull)
	}
}

func TestInspectCacheMakesNoRequest(t *testing.T) {
	tw := newTestWorld(t)
	p := tw.w.Release(eraReleases()[4])
	in := tw.inspector(Options{Cache: &MemoryCache{}})
	first, err := in.Inspect(context.Background(), p.Pullspec)
	if err != nil {
		t.Fatal(err)
	}
	before := tw.srv.Stats()
	again, err := in.Inspect(context.Background(), p.Pullspec)
	if err != nil {
		t.Fatal(err)
	}
	if d := tw.srv.Stats().Sub(before); d.Requests+d.Pings != 0 {
		t.Errorf("warm inspection made %d requests and %d pings", d.Requests, d.Pings)
	}
	if again.Streams[0].Kernel != first.Streams[0].Kernel {
		t.Errorf("cached report differs")
	}
	// The same payload by tag costs one manifest read and nothing else.
	before = tw.srv.Stats()
	if _, err := in.Inspect(context.Background(), p.TagPullspec); err != nil {
		t.Fatal(err)
	}
	if d := tw.srv.Stats().Sub(before); d.Requests != 1 || d.ManifestGETs != 1 {
		t.Errorf("warm inspection by tag: %+v", d)
	}
}

func TestInspectAllKeepsOrderAndErrors(t *testing.T) {
	tw := newTestWorld(t)
	var pullspecs []string
	for _, spec := range eraReleases()[:5] {
		pullspecs = append(pullspecs, tw.w.Release(spec).Pullspec)
	}
	pullspecs = append(pullspecs, tw.srv.Host()+"/openshift-release-dev/ocp-release:4.99.0-x86_64")
	var calls []int
	progress := func(done, total int) {
		if total != len(pullspecs) {
			t.Errorf("progress total %d", total)
		}
		calls = append(calls, done)
	}
	res := tw.inspector(Options{Concurrency: 3}).InspectAll(context.Background(), pullspecs, progress)
	for i, r := range res[:5] {
		if r.Err != nil || r.Report.Pullspec != pullspecs[i] {
			t.Errorf("%d: %v", i, r.Err)
		}
	}
	if res[5].Err == nil || !strings.Contains(res[5].Err.Error(), "4.99.0-x86_64") {
		t.Errorf("missing release: %v", res[5].Err)
	}
	if len(calls) != len(pullspecs) || calls[len(calls)-1] != len(pullspecs) {
		t.Errorf("progress calls %v", calls)
	}
}
