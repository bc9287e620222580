package rebuild

import (
	"context"
	"testing"
	"time"

	"github.com/dtkbot/dtkbot/internal/payloadtest"
	"github.com/dtkbot/dtkbot/internal/registrytest"
	"github.com/dtkbot/dtkbot/registry"
)

func promoterWorld(t *testing.T) (*registrytest.Server, *payloadtest.World, *RegistryPromoter) {
	t.Helper()
	srv := registrytest.New().Server()
	t.Cleanup(srv.Close)
	f := false
	reg := registry.New(registry.Options{TLSVerify: &f, RegistriesConf: "/dev/null", Attempts: 1, Timeout: 10 * time.Second})
	return srv, payloadtest.New(srv.Registry, srv.Host()), NewRegistryPromoter(reg)
}

func TestPromoteWithinARepositoryMovesNoLayer(t *testing.T) {
	srv, w, p := promoterWorld(t)
	img := w.PushImage("acme/dtk", "5.14.0-427.37.1.el9_4.x86_64", payloadtest.Image{Layers: [][]byte{payloadtest.NoiseLayer("base", 1<<20), payloadtest.NoiseLayer("kernel", 1<<20)}})
	before := srv.Stats()
	d, err := p.Promote(context.Background(), img.Pullspec, srv.Host()+"/acme/dtk:4.16.15")
	if err != nil || d != img.Digest.String() {
		t.Fatalf("promote: %s %v", d, err)
	}
	after := srv.Stats()
	cost := after.Sub(before)
	t.Logf("same-repository promotion: %d requests (+%d pings), %d blob GETs (the config), %d bytes served, %d bytes uploaded", cost.Requests, cost.Pings, cost.BlobGETs, cost.BytesServed, cost.BytesUploaded)
	for _, l := range img.Layers {
		if n := after.BlobBytesByDig[l.String()] - before.BlobBytesByDig[l.String()]; n != 0 {
			t.Errorf("layer %s: %d bytes moved", l, n)
		}
	}
	if cost.BytesUploaded != 0 || cost.BlobUploads != 0 {
		t.Errorf("uploaded: %+v", cost)
	}
	if got, _ := srv.TagDigest("acme/dtk", "4.16.15"); got != img.Digest {
		t.Errorf("tag at %s", got)
	}
	// Again: one HEAD, no upload.
	before = srv.Stats()
	if _, err := p.Promote(context.Background(), img.Pullspec, srv.Host()+"/acme/dtk:4.16.15"); err != nil {
		t.Fatal(err)
	}
	if cost := srv.Stats().Sub(before); cost.Requests != 1 || cost.ManifestHEADs != 1 {
		t.Errorf("an up-to-date tag cost %+v", cost)
	}
}

func TestPromoteToAMirrorMovesAKernelsLayersOnce(t *testing.T) {
	srv, w, p := promoterWorld(t)
	img := w.PushImage("acme/dtk", "k", payloadtest.Image{Layers: [][]byte{payloadtest.NoiseLayer("base", 1<<20), payloadtest.NoiseLayer("kernel", 1<<20)}})
	var uploaded []int64
	for _, tag := range []string{"4.16.15", "4.16.16", "4.16"} {
		before := srv.Stats()
		if _, err := p.Promote(context.Background(), img.Pullspec, srv.Host()+"/mirror/dtk:"+tag); err != nil {
			t.Fatal(err)
		}
		cost := srv.Stats().Sub(before)
		uploaded = append(uploaded, cost.BytesUploaded)
		t.Logf("mirror promotion %s: %d requests, %d bytes uploaded", tag, cost.Requests, cost.BytesUploaded)
		if got, _ := srv.TagDigest("mirror/dtk", tag); got != img.Digest {
			t.Errorf("mirror tag %s at %s", tag, got)
		}
	}
	if uploaded[0] < 2<<20 || uploaded[1] != 0 || uploaded[2] != 0 {
		t.Errorf("bytes uploaded per promotion %v: the layers should move once", uploaded)
	}
}

func TestPromoteManifestListKeepsEveryPlatformAndTheDigest(t *testing.T) {
	srv, w, p := promoterWorld(t)
	amd := w.PushImage("acme/dtk", "", payloadtest.Image{Arch: "amd64", Layers: [][]byte{payloadtest.NoiseLayer("amd", 4096)}})
	arm := w.PushImage("acme/dtk", "", payloadtest.Image{Arch: "arm64", Layers: [][]byte{payloadtest.NoiseLayer("arm", 4096)}})
	list := w.PushList("acme/dtk", "k", true, amd, arm)
	for _, dst := range []string{srv.Host() + "/acme/dtk:4.18.14", srv.Host() + "/mirror/dtk:4.18.14"} {
		d, err := p.Promote(context.Background(), list.Pullspec, dst)
		if err != nil || d != list.Digest.String() {
			t.Fatalf("%s: %s %v", dst, d, err)
		}
	}
	for _, inst := range []string{amd.Digest.String(), arm.Digest.String()} {
		if _, _, ok := srv.Manifest("mirror/dtk", inst); !ok {
			t.Errorf("platform %s missing in the mirror", inst)
		}
	}
}

func TestPromoteRefusesAnUnpinnedSource(t *testing.T) {
	srv, _, p := promoterWorld(t)
	if _, err := p.Promote(context.Background(), srv.Host()+"/acme/dtk:latest", srv.Host()+"/acme/dtk:x"); err == nil {
		t.Error("a source by tag was promoted")
	}
}
