package verify

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/dtkbot/dtkbot/imageread"
	"github.com/dtkbot/dtkbot/internal/payloadtest"
	"github.com/dtkbot/dtkbot/internal/registrytest"
	"github.com/dtkbot/dtkbot/kmod"
	"github.com/dtkbot/dtkbot/registry"
)

// TestReadImageLayersAndWhiteouts: kmod images as podman and buildah push
// them, read through the registry protocol: every layer compression, and
// whiteouts honoured from the top down, so that what a container would see
// is what is checked, and nothing else.
func TestReadImageLayersAndWhiteouts(t *testing.T) {
	srv := registrytest.New().Server()
	defer srv.Close()
	w := payloadtest.New(srv.Registry, srv.Host())
	c := newTestChecker(t, imageread.DefaultLimits())
	k := testKernel(t, cloud)
	dir := kmod.DefaultModulePath(cloud)
	good := map[string][]byte{"dtkbot_hello.ko": committedModule(t, cloud, "", "dtkbot_hello.ko"), "dtkbot_user.ko": committedModule(t, cloud, "", "dtkbot_user.ko")}
	rtHello := committedModule(t, rt, "", "dtkbot_hello.ko")
	modulesDep := payloadtest.File(dir+"modules.dep", []byte("dtkbot_user.ko: dtkbot_hello.ko\ndtkbot_hello.ko:\n"))

	for _, tc := range []struct {
		name   string
		image  kmodImage
		accept bool
		// paths are the modules the report must name (and no others);
		// want a substring of the reason.
		paths []string
		want  string
		check func(t *testing.T, img *kmod.Image)
	}{
		{name: "gzip layer", image: kmodImage{layers: [][]payloadtest.TarEntry{append(modulesAt(dir, good), modulesDep)}},
			accept: true, paths: []string{dir + "dtkbot_hello.ko", dir + "dtkbot_user.ko"}},
		{name: "zstd layer", image: kmodImage{layers: [][]payloadtest.TarEntry{modulesAt(dir, good)}, how: []string{layerZstd}},
			accept: true, paths: []string{dir + "dtkbot_hello.ko", dir + "dtkbot_user.ko"}},
		{name: "zstd:chunked layer", image: kmodImage{layers: [][]payloadtest.TarEntry{modulesAt(dir, good)}, how: []string{layerChunked}},
			accept: true, paths: []string{dir + "dtkbot_hello.ko", dir + "dtkbot_user.ko"}},
		{name: "uncompressed layer", image: kmodImage{layers: [][]payloadtest.TarEntry{modulesAt(dir, good)}, how: []string{layerPlain}},
			accept: true, paths: []string{dir + "dtkbot_hello.ko", dir + "dtkbot_user.ko"}},
		{name: "modules in two layers of different compressions", image: kmodImage{layers: [][]payloadtest.TarEntry{
			modulesAt(dir, map[string][]byte{"dtkbot_user.ko": good["dtkbot_user.ko"]}),
			modulesAt(dir+"extra/", map[string][]byte{"dtkbot_hello.ko.xz": committedModule(t, cloud, "signed", "dtkbot_hello.ko.xz")}),
		}, how: []string{layerZstd, layerPlain}},
			accept: true, paths: []string{dir + "dtkbot_user.ko", dir + "extra/dtkbot_hello.ko.xz"}},
		{name: "the RT build below, whited out by a higher layer: it does not count",
			image: kmodImage{layers: [][]payloadtest.TarEntry{
				modulesAt(dir, map[string][]byte{"dtkbot_hello.ko": rtHello, "dtkbot_user.ko": good["dtkbot_user.ko"]}),
				append(modulesAt(dir, map[string][]byte{"dtkbot_hello.ko.zst": committedModule(t, cloud, "signed", "dtkbot_hello.ko.zst")}),
					payloadtest.File(dir+".wh.dtkbot_hello.ko", nil)),
			}},
			accept: true, paths: []string{dir + "dtkbot_hello.ko.zst", dir + "dtkbot_user.ko"}},
		{name: "the RT build below, not whited out: rejected",
			image: kmodImage{layers: [][]payloadtest.TarEntry{
				modulesAt(dir, map[string][]byte{"dtkbot_hello.ko": rtHello, "dtkbot_user.ko": good["dtkbot_user.ko"]}),
				modulesAt(dir, map[string][]byte{"dtkbot_hello.ko.zst": committedModule(t, cloud, "signed", "dtkbot_hello.ko.zst")}),
			}},
			accept: false, paths: []string{dir + "dtkbot_hello.ko", dir + "dtkbot_hello.ko.zst", dir + "dtkbot_user.ko"}, want: "built for kernel 6.1.0-57-rt-amd64"},
		{name: "the RT build replaced in place by a higher layer",
			image: kmodImage{layers: [][]payloadtest.TarEntry{
				modulesAt(dir, map[string][]byte{"dtkbot_hello.ko": rtHello, "dtkbot_user.ko": good["dtkbot_user.ko"]}),
				modulesAt(dir, map[string][]byte{"dtkbot_hello.ko": good["dtkbot_hello.ko"]}),
			}},
			accept: true, paths: []string{dir + "dtkbot_hello.ko", dir + "dtkbot_user.ko"}},
		{name: "an opaque module directory hides the layers below (which are then not read)",
			image: kmodImage{layers: [][]payloadtest.TarEntry{
				modulesAt(dir, map[string][]byte{"dtkbot_hello.ko": rtHello, "dtkbot_user.ko": committedModule(t, rt, "", "dtkbot_user.ko")}),
				append(modulesAt(dir, good), payloadtest.File(dir+".wh..wh..opq", nil)),
			}},
			accept: true, paths: []string{dir + "dtkbot_hello.ko", dir + "dtkbot_user.ko"},
			check: func(t *testing.T, img *kmod.Image) {
				if img.Walked != 1 || img.Layers != 3 {
					t.Errorf("walked %d of %d layers, want only the top one", img.Walked, img.Layers)
				}
			}},
		{name: "the module directory's parent whited out: no module left",
			image: kmodImage{layers: [][]payloadtest.TarEntry{
				modulesAt(dir, good),
				{payloadtest.File("opt/lib/modules/.wh."+cloud, nil)},
			}},
			accept: false, paths: nil, want: "no kernel module under /" + dir},
		{name: "the dependency whited out: missing",
			image: kmodImage{layers: [][]payloadtest.TarEntry{
				modulesAt(dir, good),
				{payloadtest.File(dir+".wh.dtkbot_hello.ko", nil)},
			}},
			accept: false, paths: []string{dir + "dtkbot_user.ko"}, want: "dtkbot_hello"},
		{name: "a module that is a link: never followed, rejected",
			image: kmodImage{layers: [][]payloadtest.TarEntry{
				append(modulesAt(dir, map[string][]byte{"dtkbot_user.ko": good["dtkbot_user.ko"]}),
					payloadtest.TarEntry{Name: dir + "dtkbot_hello.ko", Type: '2', Linkname: "/usr/lib/elsewhere/dtkbot_hello.ko"}),
			}},
			accept: false, paths: []string{dir + "dtkbot_hello.ko", dir + "dtkbot_user.ko"}, want: "is a link"},
		{name: "KMM's link to the host's modules (a directory): a note, not a module",
			image: kmodImage{layers: [][]payloadtest.TarEntry{
				append(modulesAt(dir, good), payloadtest.TarEntry{Name: dir + "host", Type: '2', Linkname: "/lib/modules/" + cloud}),
			}},
			accept: true, paths: []string{dir + "dtkbot_hello.ko", dir + "dtkbot_user.ko"},
			check: func(t *testing.T, img *kmod.Image) {
				if !slices.Equal(img.Links, []string{dir + "host -> /lib/modules/" + cloud}) {
					t.Errorf("links %v", img.Links)
				}
			}},
		{name: "modules for another kernel only", image: kmodImage{layers: [][]payloadtest.TarEntry{modulesAt(kmod.DefaultModulePath(older), good)}},
			accept: false, want: "its modules are elsewhere: opt/lib/modules/6.1.0-56-cloud-amd64/dtkbot_hello.ko"},
		{name: "not a module: garbage named .ko.xz", image: kmodImage{layers: [][]payloadtest.TarEntry{
			append(modulesAt(dir, good), payloadtest.File(dir+"broken.ko.xz", []byte("this is not xz")))}},
			accept: false, paths: []string{dir + "broken.ko.xz", dir + "dtkbot_hello.ko", dir + "dtkbot_user.ko"}, want: "not a module the kernel can read"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.image.push(t, w, "acme/kmod", "")
			img, err := c.readImage(context.Background(), p.Pullspec, dir, kmod.ReadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if img.Digest != p.Digest.String() {
				t.Errorf("digest %s, pushed %s", img.Digest, p.Digest)
			}
			r := kmod.Check(img, k, kmod.CheckOptions{})
			var paths []string
			for _, mr := range r.Modules {
				paths = append(paths, mr.Path)
			}
			if !slices.Equal(paths, tc.paths) {
				t.Errorf("modules %v, want %v", paths, tc.paths)
			}
			if r.Accepted != tc.accept || !strings.Contains(r.Reason, tc.want) {
				t.Errorf("accepted %v (%s), want %v saying %q", r.Accepted, r.Reason, tc.accept, tc.want)
			}
			if tc.check != nil {
				tc.check(t, img)
			}
		})
	}
}

// TestCheckImageCouldNotTell: an image whose content cannot be read is
// rejected (that content is what it is); a registry that does not answer
// is not a verdict.
func TestCheckImageCouldNotTell(t *testing.T) {
	srv := registrytest.New().Server()
	defer srv.Close()
	w := payloadtest.New(srv.Registry, srv.Host())
	c := newTestChecker(t, imageread.DefaultLimits())
	k := testKernel(t, cloud)
	dir := kmod.DefaultModulePath(cloud)
	corrupt := w.PushImage("acme/kmod", "", payloadtest.Image{OCI: true, Layers: [][]byte{[]byte("neither gzip, zstd nor a tar: just bytes, quite a few of them, to be sure")}})
	r, err := c.checkImage(context.Background(), corrupt.Pullspec, dir, k, kmod.CheckOptions{}, kmod.ReadOptions{})
	if err != nil || r.Accepted || !strings.Contains(r.Reason, "its layers cannot be read") {
		t.Errorf("a corrupt layer: %+v, %v", r, err)
	}
	good := kmodImage{layers: [][]payloadtest.TarEntry{modulesAt(dir, map[string][]byte{"dtkbot_hello.ko": committedModule(t, cloud, "", "dtkbot_hello.ko")})}}.push(t, w, "acme/kmod", "good")
	srv.SetIntercept(func(rw http.ResponseWriter, req *http.Request) bool {
		if strings.Contains(req.URL.Path, "/blobs/") {
			rw.WriteHeader(http.StatusServiceUnavailable)
			return true
		}
		return false
	})
	if r, err := c.checkImage(context.Background(), good.Pullspec, dir, k, kmod.CheckOptions{}, kmod.ReadOptions{}); err == nil || registry.IsContent(err) {
		t.Errorf("the registry failing: %+v, %v; want an error that is not about the content", r, err)
	}
	srv.SetIntercept(nil)
	if r, err := c.checkImage(context.Background(), good.Pullspec, dir, k, kmod.CheckOptions{}, kmod.ReadOptions{}); err != nil || !r.Accepted {
		t.Errorf("the registry back: %+v, %v", r, err)
	}
	if _, err := c.checkImage(context.Background(), srv.Host()+"/acme/kmod:missing", dir, k, kmod.CheckOptions{}, kmod.ReadOptions{}); err == nil {
		t.Error("a missing image: no error")
	}
}

// TestReadImageLimits: the limits of an untrusted read hold for modules
// too: too many layers or modules, a module over the size limit (a
// decompression bomb among them), a layer over the limit never downloaded.
func TestReadImageLimits(t *testing.T) {
	srv := registrytest.New().Server()
	defer srv.Close()
	w := payloadtest.New(srv.Registry, srv.Host())
	dir := kmod.DefaultModulePath(cloud)
	hello := committedModule(t, cloud, "", "dtkbot_hello.ko")
	lim := imageread.DefaultLimits()
	lim.MaxWalkLayers = 3
	c := newTestChecker(t, lim)

	many := kmodImage{layers: [][]payloadtest.TarEntry{modulesAt(dir, map[string][]byte{"a.ko": hello}), {payloadtest.File("x", nil)}, {payloadtest.File("y", nil)}}}.push(t, w, "acme/kmod", "")
	if _, err := c.readImage(context.Background(), many.Pullspec, dir, kmod.ReadOptions{}); !registry.IsContent(err) || !strings.Contains(err.Error(), "4 layers, over the limit of 3") {
		t.Errorf("too many layers: %v", err)
	}
	three := kmodImage{layers: [][]payloadtest.TarEntry{modulesAt(dir, map[string][]byte{"a.ko": hello, "b.ko": hello, "c.ko": hello})}}.push(t, w, "acme/kmod", "")
	// Over the limit of modules: could not tell (the limit is ours), never
	// a verdict on the content.
	var tooMany *kmod.TooManyModulesError
	if _, err := c.readImage(context.Background(), three.Pullspec, dir, kmod.ReadOptions{MaxModules: 2}); registry.IsContent(err) || !errors.As(err, &tooMany) ||
		tooMany.Limit != 2 || !strings.Contains(err.Error(), "more than 2 modules under /"+dir) {
		t.Errorf("too many modules: %v", err)
	}
	if r, err := c.checkImage(context.Background(), three.Pullspec, dir, testKernel(t, cloud), kmod.CheckOptions{}, kmod.ReadOptions{MaxModules: 2}); err == nil {
		t.Errorf("too many modules: a verdict, %+v", r)
	}
	// 64 MiB of zeros, a few KB compressed.
	bomb, _ := compressLayer(t, make([]byte, 64<<20), layerZstd)
	big := kmodImage{layers: [][]payloadtest.TarEntry{modulesAt(dir, map[string][]byte{"bomb.ko.zst": bomb, "dtkbot_hello.ko": hello})}}.push(t, w, "acme/kmod", "")
	img, err := c.readImage(context.Background(), big.Pullspec, dir, kmod.ReadOptions{MaxModuleBytes: 1 << 20})
	if err != nil || len(img.Unreadable) != 1 || !strings.Contains(img.Unreadable[0].Problem, "decompression bomb") || len(img.Modules) != 1 {
		t.Errorf("a decompression bomb: %+v, %v", img, err)
	}
	lim.MaxWalkLayerBytes = 1 << 20
	small := newTestChecker(t, lim)
	huge := w.PushImage("acme/kmod", "", payloadtest.Image{OCI: true, Layers: [][]byte{payloadtest.NoiseLayer("huge", 2<<20)}})
	before := srv.Stats()
	if _, err := small.readImage(context.Background(), huge.Pullspec, dir, kmod.ReadOptions{}); !registry.IsContent(err) || !strings.Contains(err.Error(), "over the") {
		t.Errorf("a layer over the limit: %v", err)
	}
	if got := srv.Stats().Sub(before).BytesServed; got > 64<<10 {
		t.Errorf("a layer over the limit was downloaded: %d bytes", got)
	}
}

// TestReadImagesWithinATinyBudget: images read at once through a budget
// far smaller than one module still read every module (each waits for
// its share), compressed or not.
func TestReadImagesWithinATinyBudget(t *testing.T) {
	srv := registrytest.New().Server()
	defer srv.Close()
	w := payloadtest.New(srv.Registry, srv.Host())
	dir := kmod.DefaultModulePath(cloud)
	files := map[string][]byte{}
	for _, f := range []string{"dtkbot_hello.ko", "dtkbot_hello.ko.xz", "dtkbot_hello.ko.zst", "dtkbot_hello.ko.gz", "dtkbot_user.ko.xz"} {
		files[f] = committedModule(t, cloud, "signed", f)
	}
	var images []string
	for i := range 8 {
		images = append(images, kmodImage{layers: [][]payloadtest.TarEntry{modulesAt(dir, files)}}.push(t, w, "acme/kmod", fmt.Sprint(i)).Pullspec)
	}
	c := newTestChecker(t, imageread.DefaultLimits())
	budget := kmod.NewBudget(4 << 10)
	var wg sync.WaitGroup
	for _, img := range images {
		wg.Go(func() {
			got, err := c.readImage(context.Background(), img, dir, kmod.ReadOptions{Budget: budget})
			if err != nil || len(got.Modules) != len(files) || len(got.Unreadable) != 0 {
				t.Errorf("%s: %+v, %v", img, got, err)
			}
		})
	}
	wg.Wait()
}
