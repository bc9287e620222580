package registry

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dtkbot/dtkbot/internal/faulttest"
	"github.com/dtkbot/dtkbot/internal/payloadtest"
	"github.com/dtkbot/dtkbot/internal/poll"
	"github.com/dtkbot/dtkbot/internal/registrytest"
)

// TestResolveAsksWhereImagesArePulledFrom: a release tag is resolved
// through registries.conf, mirror first; with a mirror that answers, a
// primary that accepts connections and never answers is never asked. A
// mirror-by-digest-only mirror is not asked for tags, and Digest still
// asks the registry itself.
func TestResolveAsksWhereImagesArePulledFrom(t *testing.T) {
	mirror := registrytest.New().Server()
	defer mirror.Close()
	dead, err := faulttest.NewBlackhole()
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	img := payloadtest.New(mirror.Registry, mirror.Host()).PushImage("openshift-release-dev/ocp-release", "4.16.15-x86_64",
		payloadtest.Image{Layers: [][]byte{payloadtest.NoiseLayer("r", 64)}})
	conf := func(digestOnly bool) string {
		p := filepath.Join(t.TempDir(), "registries.conf")
		body := fmt.Sprintf("[[registry]]\nlocation = %q\ninsecure = true\n[[registry.mirror]]\nlocation = %q\ninsecure = true\n", dead.Addr()+"/openshift-release-dev", mirror.Host()+"/openshift-release-dev")
		if digestOnly {
			body = fmt.Sprintf("[[registry]]\nlocation = %q\ninsecure = true\nmirror-by-digest-only = true\n[[registry.mirror]]\nlocation = %q\ninsecure = true\n", dead.Addr()+"/openshift-release-dev", mirror.Host()+"/openshift-release-dev")
		}
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	f := false
	tag := dead.Addr() + "/openshift-release-dev/ocp-release:4.16.15-x86_64"
	c := New(Options{RegistriesConf: conf(false), TLSVerify: &f, Attempts: 1, Timeout: 200 * time.Millisecond})
	for i := range 3 {
		d, err := c.Resolve(context.Background(), tag)
		if err != nil || d != img.Digest {
			t.Fatalf("resolve %d: %s %v, want %s", i, d, err, img.Digest)
		}
	}
	if n := dead.Accepted(); n != 0 {
		t.Errorf("the primary was asked %d times", n)
	}
	missing := dead.Addr() + "/openshift-release-dev/ocp-release:4.99.0-x86_64"
	if _, err := c.Resolve(context.Background(), missing); err == nil || errors.Is(err, ErrNotFound) {
		t.Errorf("a tag the mirror lacks, the primary dead: %v (the primary's silence is no answer)", err)
	}
	if _, err := c.Digest(context.Background(), tag); err == nil || dead.Accepted() == 0 {
		t.Errorf("Digest asked the mirror: %v", err)
	}
	// By digest only: a tag goes to the registry itself.
	c2 := New(Options{RegistriesConf: conf(true), TLSVerify: &f, Attempts: 1, Timeout: 200 * time.Millisecond})
	before := dead.Accepted()
	if _, err := c2.Resolve(context.Background(), tag); err == nil {
		t.Error("a mirror-by-digest-only mirror answered for a tag")
	}
	poll.Until(t, "the registry itself to be asked for the tag", 0, func() bool { return dead.Accepted() > before })
	// A pullspec by digest needs no question.
	pinned := dead.Addr() + "/openshift-release-dev/ocp-release@" + img.Digest.String()
	if d, err := c2.Resolve(context.Background(), pinned); err != nil || d != img.Digest {
		t.Errorf("by digest: %s %v", d, err)
	}
}

// TestResolveNotFound: no source has the tag.
func TestResolveNotFound(t *testing.T) {
	f := newFixture(t)
	c := testClient(Options{})
	if _, err := c.Resolve(context.Background(), f.srv.Host()+"/acme/image:v2"); !errors.Is(err, ErrNotFound) {
		t.Errorf("error %v", err)
	}
	if d, err := c.Resolve(context.Background(), f.srv.Host()+"/acme/image:v1"); err != nil || d != f.image.Digest {
		t.Errorf("%s %v", d, err)
	}
}
