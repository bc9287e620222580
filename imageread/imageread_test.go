package imageread

import (
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dtkbot/dtkbot/internal/payloadtest"
	"github.com/dtkbot/dtkbot/internal/registrytest"
	"github.com/dtkbot/dtkbot/registry"
)

const prefix = "opt/lib/modules/k/"

func newReader(t *testing.T, srv *registrytest.Server, arch string, lim Limits) *Reader {
	t.Helper()
	f := false
	return New(registry.New(registry.Options{TLSVerify: &f, RegistriesConf: "/dev/null", Attempts: 1, Timeout: 10 * time.Second}), arch, lim)
}

// walk walks pullspec under prefix, reading every file visited: seen is
// "layer:name=content" for each.
func walk(t *testing.T, r *Reader, pullspec string, visit func(File) error) (Walk, []string, error) {
	t.Helper()
	var seen []string
	w, err := r.Walk(context.Background(), pullspec, prefix, func(name string) bool { return strings.HasSuffix(name, ".ko") }, func(f File, content io.Reader) error {
		data, err := io.ReadAll(content)
		if err != nil {
			return err
		}
		seen = append(seen, string(rune('0'+f.Layer))+":"+f.Name+"="+string(data))
		if visit != nil {
			return visit(f)
		}
		return nil
	})
	return w, seen, err
}

// TestWalkShowsWhatAContainerSees: the merged filesystem under the prefix,
// layers read from the top with their digests verified; a file a higher
// layer deleted or replaced is never visited, links are named and not
// followed, module files elsewhere are named, and the layers below one
// that hides the prefix are not read.
func TestWalkShowsWhatAContainerSees(t *testing.T) {
	srv := registrytest.New().Server()
	defer srv.Close()
	w := payloadtest.New(srv.Registry, srv.Host())
	img := w.PushImage("acme/kmod", "v1", payloadtest.Image{OCI: true, Labels: map[string]string{"kernel-version": "k"}, Layers: [][]byte{
		payloadtest.TarGz(payloadtest.File("usr/bin/cp", []byte("cp"))),
		payloadtest.TarGz(payloadtest.File(prefix+"a.ko", []byte("old a")), payloadtest.File(prefix+"b.ko", []byte("b")), payloadtest.File(prefix+"c.ko", []byte("c"))),
		payloadtest.TarGz(payloadtest.File(prefix+"a.ko", []byte("new a")), payloadtest.File(prefix+".wh.c.ko", nil),
			payloadtest.TarEntry{Name: prefix + "host", Type: '2', Linkname: "/lib/modules/k"}, payloadtest.File("usr/lib/other/x.ko", []byte("x"))),
	}})
	r := newReader(t, srv, "amd64", DefaultLimits())
	got, seen, err := walk(t, r, img.Pullspec, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"2:" + prefix + "a.ko=new a", "1:" + prefix + "b.ko=b"}; !slices.Equal(seen, want) {
		t.Errorf("visited %q, want %q", seen, want)
	}
	if got.Digest != img.Digest || got.Labels["kernel-version"] != "k" || got.Layers != 3 || got.Walked != 3 ||
		!slices.Equal(got.Links, []string{prefix + "host -> /lib/modules/k"}) || !slices.Equal(got.Elsewhere, []string{"usr/lib/other/x.ko"}) {
		t.Errorf("walk %+v", got)
	}

	opaque := w.PushImage("acme/kmod", "v2", payloadtest.Image{OCI: true, Layers: [][]byte{
		payloadtest.TarGz(payloadtest.File(prefix+"old.ko", []byte("old"))),
		payloadtest.TarGz(payloadtest.File(prefix+".wh..wh..opq", nil), payloadtest.File(prefix+"new.ko", []byte("new"))),
	}})
	before := srv.Stats()
	got, seen, err = walk(t, r, opaque.Pullspec, nil)
	if err != nil || !slices.Equal(seen, []string{"1:" + prefix + "new.ko=new"}) || got.Walked != 1 {
		t.Errorf("an opaque module directory: %q, walked %d, %v", seen, got.Walked, err)
	}
	if n := srv.Stats().Sub(before).BlobGETs; n != 2 {
		t.Errorf("%d blob reads, want the config and the top layer", n)
	}
}

// TestWalkErrors: what is the image's fault is a content error (a layer
// over the limit, never downloaded; a visit's error), what is the
// caller's (Stop) is returned as it is, and a registry that fails is
// neither.
func TestWalkErrors(t *testing.T) {
	srv := registrytest.New().Server()
	defer srv.Close()
	w := payloadtest.New(srv.Registry, srv.Host())
	img := w.PushImage("acme/kmod", "v1", payloadtest.Image{OCI: true, Layers: [][]byte{
		payloadtest.TarGz(payloadtest.File(prefix+"a.ko", []byte("a"))), payloadtest.NoiseLayer("big", 2<<20)}})
	lim := DefaultLimits()
	lim.MaxWalkLayerBytes = 1 << 20
	before := srv.Stats()
	if _, _, err := walk(t, newReader(t, srv, "amd64", lim), img.Pullspec, nil); !registry.IsContent(err) || !strings.Contains(err.Error(), "over the") {
		t.Errorf("a layer over the limit: %v", err)
	}
	if n := srv.Stats().Sub(before).BytesServed; n > 64<<10 {
		t.Errorf("a layer over the limit was downloaded: %d bytes", n)
	}
	lim.MaxWalkLayers = 1
	if _, _, err := walk(t, newReader(t, srv, "amd64", lim), img.Pullspec, nil); !registry.IsContent(err) || !strings.Contains(err.Error(), "2 layers, over the limit of 1") {
		t.Errorf("too many layers: %v", err)
	}

	small := w.PushImage("acme/kmod", "v2", payloadtest.Image{OCI: true, Layers: [][]byte{payloadtest.TarGz(payloadtest.File(prefix+"a.ko", []byte("a")))}})
	r := newReader(t, srv, "amd64", DefaultLimits())
	bad := errors.New("not a module")
	if _, _, err := walk(t, r, small.Pullspec, func(File) error { return bad }); !registry.IsContent(err) || !errors.Is(err, bad) {
		t.Errorf("a visit's error: %v", err)
	}
	mine := errors.New("over my own limit")
	if _, _, err := walk(t, r, small.Pullspec, func(File) error { return Stop(mine) }); err != mine {
		t.Errorf("a visit's Stop: %v", err)
	}
	srv.SetIntercept(func(rw http.ResponseWriter, req *http.Request) bool {
		if strings.Contains(req.URL.Path, "/blobs/") {
			rw.WriteHeader(http.StatusServiceUnavailable)
			return true
		}
		return false
	})
	defer srv.SetIntercept(nil)
	if _, _, err := walk(t, r, small.Pullspec, nil); err == nil || registry.IsContent(err) {
		t.Errorf("the registry failing: %v", err)
	}
}

// TestOpenNarrowsAListToTheArch: a manifest list is read as its instance
// for the reader's arch; a list without one is a content error.
func TestOpenNarrowsAListToTheArch(t *testing.T) {
	srv := registrytest.New().Server()
	defer srv.Close()
	w := payloadtest.New(srv.Registry, srv.Host())
	layer0 := payloadtest.TarGz(payloadtest.File("etc/x", []byte("x")))
	amd := w.PushImage("acme/dtk", "", payloadtest.Image{OCI: true, Arch: "amd64", Layers: [][]byte{layer0}})
	arm := w.PushImage("acme/dtk", "", payloadtest.Image{OCI: true, Arch: "arm64", Layers: [][]byte{layer0}})
	list := w.PushList("acme/dtk", "multi", true, amd, arm)
	for arch, want := range map[string]string{"amd64": amd.Digest.String(), "arm64": arm.Digest.String()} {
		r := newReader(t, srv, arch, Limits{})
		d, isList, err := r.Instance(context.Background(), list.Pullspec)
		if err != nil || !isList || d.String() != want {
			t.Errorf("%s: %s (list %v), %v; want %s", arch, d, isList, err, want)
		}
		files, err := func() (map[string][]byte, error) {
			img, err := r.Open(context.Background(), list.Pullspec)
			if err != nil {
				return nil, err
			}
			defer img.Close()
			return r.Files(context.Background(), img, img.Layers()[0], 1<<20, func(name string) (int64, bool) { return 16, name == "etc/x" })
		}()
		if err != nil || string(files["etc/x"]) != "x" {
			t.Errorf("%s: files %q, %v", arch, files, err)
		}
	}
	if d, isList, err := newReader(t, srv, "amd64", Limits{}).Instance(context.Background(), amd.Pullspec); err != nil || isList || d != amd.Digest {
		t.Errorf("one image: %s (list %v), %v", d, isList, err)
	}
	if _, _, err := newReader(t, srv, "s390x", Limits{}).Instance(context.Background(), list.Pullspec); !registry.IsContent(err) || !strings.Contains(err.Error(), "no linux/s390x image") {
		t.Errorf("no instance for the arch: %v", err)
	}
}
