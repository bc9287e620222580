package verify

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/dtkbot/dtkbot/imageread"
	"github.com/dtkbot/dtkbot/internal/payloadtest"
	"github.com/dtkbot/dtkbot/internal/registrytest"
	"github.com/dtkbot/dtkbot/registry"
)

func TestVerify(t *testing.T) {
	srv := registrytest.New().Server()
	defer srv.Close()
	w := payloadtest.New(srv.Registry, srv.Host())
	push := func(tag, kernelFull string) string {
		layers := [][]byte{payloadtest.NoiseLayer("base", 1<<20)}
		if kernelFull != "" {
			layers = append(layers, payloadtest.TarGz(payloadtest.File("etc/driver-toolkit-release.json",
				[]byte(`{"KERNEL_VERSION":"`+kernelFull+`","RT_KERNEL_VERSION":"","RHEL_VERSION":"9.4"}`))))
		}
		w.PushImage("acme/dtk", tag, payloadtest.Image{Layers: layers})
		return srv.Host() + "/acme/dtk:" + tag
	}
	v := &DTK{Registry: testClient(), Limits: imageread.DefaultLimits()}
	good := push("good", "5.14.0-427.37.1.el9_4.x86_64")
	if err := v.Verify(context.Background(), good, Want{Kernel: "5.14.0-427.37.1.el9_4", Arch: "amd64"}); err != nil {
		t.Errorf("good image: %v", err)
	}
	for name, tc := range map[string]struct{ image, arch string }{
		"another kernel":  {push("wrong", "5.14.0-427.40.1.el9_4.x86_64"), "amd64"},
		"another arch":    {push("arm", "5.14.0-427.37.1.el9_4.aarch64"), "amd64"},
		"no release file": {push("empty", ""), "amd64"},
	} {
		if err := v.Verify(context.Background(), tc.image, Want{Kernel: "5.14.0-427.37.1.el9_4", Arch: tc.arch}); !errors.Is(err, ErrWrongKernel) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if err := v.Verify(context.Background(), srv.Host()+"/acme/dtk:missing", Want{Kernel: "5.14.0-427.37.1.el9_4", Arch: "amd64"}); err == nil || errors.Is(err, ErrWrongKernel) || Rejects(err) {
		t.Errorf("a missing image is not a wrong kernel, nor any verdict (it may appear): %v", err)
	}
	// A top layer that is not a tar: its content cannot change, a verdict.
	w.PushImage("acme/dtk", "not-a-tar", payloadtest.Image{Layers: [][]byte{payloadtest.NoiseLayer("base", 4096), []byte("a build log, not a layer")}})
	if err := v.Verify(context.Background(), srv.Host()+"/acme/dtk:not-a-tar", Want{Kernel: "5.14.0-427.37.1.el9_4", Arch: "amd64"}); !errors.Is(err, ErrUnreadable) || !Rejects(err) {
		t.Errorf("a top layer that is not a tar: %v, want ErrUnreadable", err)
	}
	// The base layer is never read: verification costs the manifest and the small top layer.
	before := srv.Stats()
	_ = v.Verify(context.Background(), good, Want{Kernel: "5.14.0-427.37.1.el9_4", Arch: "amd64"})
	if c := srv.Stats().Sub(before); c.BytesServed > 64<<10 {
		t.Errorf("verification read %d bytes", c.BytesServed)
	}
}

// testClient reads the in-process registry: plain HTTP, no mirrors, one
// attempt.
func testClient() *registry.Client {
	f := false
	return registry.New(registry.Options{TLSVerify: &f, RegistriesConf: "/dev/null", Attempts: 1, Timeout: 10 * time.Second})
}
