package releaseinfo

import (
	"archive/tar"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dtkbot/dtkbot/imageread"
	"github.com/dtkbot/dtkbot/imageread/layer"
	"github.com/dtkbot/dtkbot/internal/payloadtest"
	"github.com/dtkbot/dtkbot/registry"
)

func spec416(tweak func([]payloadtest.TarEntry) []payloadtest.TarEntry) payloadtest.ReleaseSpec {
	return payloadtest.ReleaseSpec{
		Version: "4.16.15",
		Stream:  payloadtest.Stream{Kernel: "5.14.0-427.37.1.el9_4", RTKernel: "5.14.0-427.37.1.el9_4"},
		Tweak:   tweak,
	}
}

// replaceEntry swaps the entry called name for repl (or drops it if repl is nil).
func replaceEntry(name string, repl ...payloadtest.TarEntry) func([]payloadtest.TarEntry) []payloadtest.TarEntry {
	return func(entries []payloadtest.TarEntry) []payloadtest.TarEntry {
		var out []payloadtest.TarEntry
		for _, e := range entries {
			if e.Name == name {
				out = append(out, repl...)
				continue
			}
			out = append(out, e)
		}
		return out
	}
}

func TestInspectRejectsBadPayloads(t *testing.T) {
	refs := "release-manifests/image-references"
	bigRefs := func(entries []payloadtest.TarEntry) []payloadtest.TarEntry {
		for i := range entries {
			if entries[i].Name == refs {
				entries[i].Body = append(entries[i].Body, []byte(strings.Repeat(" ", 9<<20))...)
			}
		}
		return entries
	}
	bomb := func(entries []payloadtest.TarEntry) []payloadtest.TarEntry {
		return append([]payloadtest.TarEntry{entries[0], payloadtest.File("release-manifests/0000_00_bomb.yaml", make([]byte, 8<<20))}, entries[1:]...)
	}
	tests := []struct {
		name   string
		tweak  func([]payloadtest.TarEntry) []payloadtest.TarEntry
		mutate func(tw *testWorld, p *payloadtest.Payload)
		limits func(*imageread.Limits)
		arch   string
		want   []string
		isErr  error
		// content: the payload's content is broken (held for good), as
		// opposed to a read that may succeed later.
		content bool
	}{
		{
			name: "corrupt last layer",
			mutate: func(tw *testWorld, p *payloadtest.Payload) {
				last := p.Image.Layers[len(p.Image.Layers)-1]
				layer := payloadtest.TarGz(payloadtest.File(refs, []byte(`{"kind":"ImageStream","apiVersion":"image.openshift.io/v1","metadata":{"name":"6.6.6"},"spec":{"tags":[]}}`)))
				tw.srv.Registry.PutBlobUnchecked(tw.w.ReleaseRepo, last, layer)
			},
			want:  []string{"reading last layer", "digest mismatch"},
			isErr: registry.ErrDigestMismatch,
		},
		{name: "missing image-references", tweak: replaceEntry(refs), want: []string{"no regular file release-manifests/image-references"}, content: true},
		{name: "invalid JSON", tweak: replaceEntry(refs, payloadtest.File(refs, []byte(`{"kind": "ImageStream", `))), want: []string{"parsing release-manifests/image-references", "unexpected EOF"}, content: true},
		{name: "not an ImageStream", tweak: replaceEntry(refs, payloadtest.File(refs, []byte(`{"kind": "ConfigMap"}`))), want: []string{`kind "ConfigMap"`}, content: true},
		{
			name:    "symlink named like image-references",
			tweak:   replaceEntry(refs, payloadtest.TarEntry{Name: refs, Type: tar.TypeSymlink, Linkname: "../../etc/passwd"}),
			want:    []string{"no regular file release-manifests/image-references"},
			content: true,
		},
		{
			name:    "hard link named like image-references",
			tweak:   replaceEntry(refs, payloadtest.TarEntry{Name: refs, Type: tar.TypeLink, Linkname: "release-manifests/release-metadata"}),
			want:    []string{"no regular file release-manifests/image-references"},
			content: true,
		},
		{
			name:    "dot-dot entry named like image-references",
			tweak:   replaceEntry(refs, payloadtest.File("release-manifests/../release-manifests/image-references", []byte(`{}`))),
			want:    []string{"no regular file release-manifests/image-references"},
			content: true,
		},
		{
			name: "image-references twice",
			tweak: func(entries []payloadtest.TarEntry) []payloadtest.TarEntry {
				return append(entries[:3:3], append([]payloadtest.TarEntry{payloadtest.File("./"+refs, entries[1].Body)}, entries[3:]...)...)
			},
			want:    []string{"appears twice"},
			content: true,
		},
		{
			name:    "a tag twice with different images",
			tweak:   payloadtest.DuplicateTag("driver-toolkit", "quay.io/openshift-release-dev/ocp-v4.0-art-dev@sha256:"+strings.Repeat("0", 64)),
			want:    []string{`tag "driver-toolkit" appears twice with different images`, "ambiguous"},
			content: true,
		},
		{name: "decompression bomb", tweak: bomb, limits: func(l *imageread.Limits) { l.MaxDecompressedBytes = 4 << 20 }, want: []string{"decompression bomb"}, isErr: layer.ErrLimit, content: true},
		{name: "image-references over the size limit", tweak: bigRefs, want: []string{"release-manifests/image-references is", "over the limit"}, isErr: layer.ErrLimit, content: true},
		{name: "last layer over the size limit", limits: func(l *imageread.Limits) { l.MaxReleaseLayerBytes = 1 << 10 }, want: []string{"over the limit of 1024"}, content: true},
		{name: "manifest list without the wanted arch", arch: "s390x", want: []string{"no linux/s390x image"}, content: true},
		{name: "missing release", mutate: func(tw *testWorld, p *payloadtest.Payload) {
			p.Pullspec = tw.srv.Host() + "/openshift-release-dev/ocp-release:4.16.99-x86_64"
		}, want: []string{"4.16.99-x86_64", "manifest unknown"}},
		{
			name: "missing DTK image",
			mutate: func(tw *testWorld, p *payloadtest.Payload) {
				tw.srv.DeleteManifest(tw.w.ComponentRepo, p.DTK["driver-toolkit"].Digest)
			},
			want: []string{"stream rhel-coreos: driver-toolkit", "manifest unknown"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tw := newTestWorld(t)
			spec := spec416(tt.tweak)
			if tt.arch != "" {
				spec.Arches = []string{"amd64", "arm64"}
			}
			p := tw.w.Release(spec)
			if tt.mutate != nil {
				tt.mutate(tw, p)
			}
			lim := imageread.DefaultLimits()
			if tt.limits != nil {
				tt.limits(&lim)
			}
			r, err := tw.inspector(Options{Arch: tt.arch, Limits: lim}).Inspect(context.Background(), p.Pullspec)
			if err == nil {
				t.Fatalf("no error; report %+v", r)
			}
			msg := err.Error()
			for _, w := range append(tt.want, p.Pullspec) {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not say %q", msg, w)
				}
			}
			if tt.isErr != nil && !errors.Is(err, tt.isErr) {
				t.Errorf("error %q is not %v", msg, tt.isErr)
			}
			if registry.IsContent(err) != tt.content {
				t.Errorf("content error: %v, want %v (%q)", registry.IsContent(err), tt.content, msg)
			}
			var pe *PayloadError
			if !errors.As(err, &pe) || (tt.content && pe.Digest != p.Digest.String()) {
				t.Errorf("the error does not name the payload digest %s: %#v", p.Digest, pe)
			}
		})
	}
}

// TestInspectIdenticalDuplicateEntryIsUsedWithAWarning: a payload listing
// the same entry twice is read as if it listed it once.
func TestInspectIdenticalDuplicateEntryIsUsedWithAWarning(t *testing.T) {
	tw := newTestWorld(t)
	p := tw.w.Release(spec416(payloadtest.DuplicateTag("driver-toolkit", "")))
	r, err := tw.inspector(Options{}).Inspect(context.Background(), p.Pullspec)
	if err != nil {
		t.Fatal(err)
	}
	if s := r.Streams[0]; !s.Consistent || s.Kernel != "5.14.0-427.37.1.el9_4" {
		t.Errorf("stream %+v", s)
	}
	if !strings.Contains(strings.Join(r.Warnings, "\n"), `lists tag "driver-toolkit" twice (the same image): used once`) {
		t.Errorf("warnings %q", r.Warnings)
	}
}

func TestInspectInconsistentPayloadIsReportedNotFailed(t *testing.T) {
	tw := newTestWorld(t)
	spec := spec416(nil)
	spec.Stream.DTKKernel = "5.14.0-427.40.1.el9_4"
	p := tw.w.Release(spec)
	r, err := tw.inspector(Options{}).Inspect(context.Background(), p.Pullspec)
	if err != nil {
		t.Fatal(err)
	}
	s := r.Streams[0]
	// The node kernel is the OS image's; the DTK's is reported beside it.
	if s.Consistent || s.Kernel != "5.14.0-427.37.1.el9_4" || s.KernelSource != SourceOSTreeLabel || s.DTKKernel != "5.14.0-427.40.1.el9_4.x86_64" {
		t.Errorf("stream %+v", s)
	}
	if !strings.Contains(strings.Join(s.Warnings, "\n"), "inconsistent payload: driver-toolkit kernel 5.14.0-427.40.1.el9_4.x86_64 differs from rhel-coreos kernel 5.14.0-427.37.1.el9_4.x86_64") {
		t.Errorf("warnings %q", s.Warnings)
	}
}

func TestInspectDTKFileBeyondTheWalkFallsBackToOSKernel(t *testing.T) {
	tw := newTestWorld(t)
	p := tw.w.Release(spec416(nil)) // 4.16 DTKs have a small layer after the JSON
	lim := imageread.DefaultLimits()
	lim.MaxDTKLayers = 1
	r, err := tw.inspector(Options{Limits: lim}).Inspect(context.Background(), p.Pullspec)
	if err != nil {
		t.Fatal(err)
	}
	s := r.Streams[0]
	if s.Kernel != "5.14.0-427.37.1.el9_4" || s.KernelSource != SourceOSTreeLabel || s.Consistent {
		t.Errorf("stream %+v", s)
	}
	if !strings.Contains(strings.Join(s.Warnings, "\n"), "no etc/driver-toolkit-release.json in its top 1 layers") {
		t.Errorf("warnings %q", s.Warnings)
	}
}

func TestInspectUnreachableRegistry(t *testing.T) {
	tw := newTestWorld(t)
	client := tw.client(registry.Options{Attempts: 2, Timeout: 2 * time.Second})
	in := New(client, Options{})
	pullspec := "127.0.0.1:1/openshift-release-dev/ocp-release@sha256:" + strings.Repeat("ab", 32)
	_, err := in.Inspect(context.Background(), pullspec)
	if err == nil || !strings.Contains(err.Error(), pullspec) || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("error %v", err)
	}
	if !strings.Contains(err.Error(), "after 2 attempts") {
		t.Errorf("connection refused should be retried a bounded number of times: %v", err)
	}
	// Bounded by a count, not the clock: the two attempts are one retry,
	// and nothing above the client tries the manifest again.
	if n := client.Counters().Retries; n != 1 {
		t.Errorf("%d retries of an unreachable registry, want 1 (Attempts: 2, once)", n)
	}
}

func TestInspectNeedsCredentials(t *testing.T) {
	tw := newTestWorld(t)
	p := tw.w.Release(spec416(nil))
	tw.srv.RequireBasicAuth("pull-bot", "s3cret-pull-token")

	_, err := tw.inspector(Options{}).Inspect(context.Background(), p.Pullspec)
	if err == nil || !strings.Contains(err.Error(), p.Pullspec) || !strings.Contains(err.Error(), "unauthorized") {
		t.Fatalf("error without credentials: %v", err)
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("error leaks the secret: %v", err)
	}

	authfile := filepath.Join(t.TempDir(), "auth.json")
	auth := base64.StdEncoding.EncodeToString([]byte("pull-bot:s3cret-pull-token"))
	if err := os.WriteFile(authfile, []byte(fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, tw.srv.Host(), auth)), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := New(tw.client(registry.Options{AuthFile: authfile}), Options{}).Inspect(context.Background(), p.Pullspec)
	if err != nil {
		t.Fatalf("with an authfile: %v", err)
	}
	if r.Streams[0].Kernel != "5.14.0-427.37.1.el9_4" {
		t.Errorf("kernel %q", r.Streams[0].Kernel)
	}

	// REGISTRY_AUTH_FILE is honoured like podman does.
	t.Setenv("REGISTRY_AUTH_FILE", authfile)
	if _, err := tw.inspector(Options{}).Inspect(context.Background(), p.Pullspec); err != nil {
		t.Fatalf("with REGISTRY_AUTH_FILE: %v", err)
	}
}

// TestInspectThroughMirror reads a payload whose pullspecs name a registry
// that does not resolve, through a registries.conf mirror: a disconnected
// cluster's setup.
func TestInspectThroughMirror(t *testing.T) {
	tw := newTestWorld(t)
	upstream := "quay.example.invalid"
	w := payloadtest.New(tw.srv.Registry, upstream)
	p := w.Release(spec416(nil))
	conf := filepath.Join(t.TempDir(), "registries.conf")
	err := os.WriteFile(conf, []byte(fmt.Sprintf(`
[[registry]]
location = "%s/openshift-release-dev"
[[registry.mirror]]
location = "%s/openshift-release-dev"
insecure = true
`, upstream, tw.srv.Host())), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	f := false
	c := registry.New(registry.Options{RegistriesConf: conf, TLSVerify: &f, Attempts: 1, Timeout: 5 * time.Second})
	r, err := New(c, Options{}).Inspect(context.Background(), p.Pullspec)
	if err != nil {
		t.Fatal(err)
	}
	if r.Streams[0].Kernel != "5.14.0-427.37.1.el9_4" || !strings.HasPrefix(r.Streams[0].DTKImage, upstream+"/") {
		t.Errorf("stream %+v", r.Streams[0])
	}
}
