package kubebuild

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"k8s.io/client-go/rest"
)

var dnsLabelPattern = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// unitBuilder is a Builder that talks to no API server: for names.
func unitBuilder(t *testing.T, change func(*Options)) *Builder {
	t.Helper()
	opts := Options{Namespace: "ns", Containerfile: "testdata/recipe/Containerfile", Context: "testdata/recipe",
		BaseImage: "registry.access.redhat.com/ubi{{.RHELMajor}}/ubi:latest"}
	if change != nil {
		change(&opts)
	}
	b, err := New(&rest.Config{Host: "https://127.0.0.1:1"}, opts)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestJobName(t *testing.T) {
	b := unitBuilder(t, nil)
	name := func(b *Builder, req Request) string {
		t.Helper()
		n, err := b.JobName(req)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	base := Request{Kernel: "5.14.0-427.37.1.el9_4", KernelFull: "5.14.0-427.37.1.el9_4.x86_64", RTKernel: "5.14.0-427.37.1.el9_4",
		RHEL: "9.4", Stream: "rhel-9", Arch: "amd64", Image: "quay.io/acme/dtk:staging", Releases: []string{"4.16.15"}, Attempt: 1}
	long := base
	long.Consumer = strings.Repeat("a-very-long-consumer-name", 2)
	long.KernelFull = "5.14.0-427.37.1.el9_4+rt.with.a.very.long.local.version.suffix.x86_64"
	named := base
	named.Consumer = "dtk" // a consumer named like the DTK kind
	for _, tc := range []struct {
		name   string
		req    Request
		prefix string
	}{
		{"dtk", base, "dtk-5-14-0-427-37-1-el9-4-x86-64-a1-"},
		{"long consumer and kernel", long, "a-very-long-consumer-5-14-0-427-37-1-el9-4-rt-wit-a1-"},
		{"consumer named dtk", named, "dtk-5-14-0-427-37-1-el9-4-x86-64-a1-"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := name(b, tc.req)
			if len(n) > 63 || !dnsLabelPattern.MatchString(n) || !strings.HasPrefix(n, tc.prefix) {
				t.Errorf("%q (%d chars): want a DNS-1123 label of at most 63 starting %q", n, len(n), tc.prefix)
			}
			if name(unitBuilder(t, nil), tc.req) != n {
				t.Error("not deterministic")
			}
		})
	}
	// Every input that tells builds apart changes the name: what is built,
	// where it is pushed (two dtkbot instances, a changed target), the
	// attempt, and how (recipe, base image, buildah's image and arguments).
	seen := map[string]string{name(b, base): "base"}
	for what, change := range map[string]func(*Request){
		"attempt":        func(r *Request) { r.Attempt = 2 },
		"round":          func(r *Request) { r.Round = 1 }, // --retry-failed: attempt 1 again
		"stream":         func(r *Request) { r.Stream = "rhel-9-rt" },
		"arch":           func(r *Request) { r.Arch = "arm64" },
		"kernel":         func(r *Request) { r.KernelFull = "5.14.0-427.38.1.el9_4.x86_64" },
		"kernel version": func(r *Request) { r.Kernel = "5.14.0-427.38.1.el9_4" },
		"rt kernel":      func(r *Request) { r.RTKernel = "" },
		"rhel":           func(r *Request) { r.RHEL = "9.5" },
		"consumer":       func(r *Request) { r.Consumer = "acme-nic" },
		"dtk kind":       func(r *Request) { r.Consumer = "dtk" },
		"its dtk":        func(r *Request) { r.Consumer, r.DTK = "acme-nic", "quay.io/acme/dtk@sha256:"+strings.Repeat("1", 64) },
		"staging image":  func(r *Request) { r.Image = "quay.io/other/dtk:staging" },
	} {
		r := base
		change(&r)
		n := name(b, r)
		if other, ok := seen[n]; ok {
			t.Errorf("changing the %s gives the name of %s: %s", what, other, n)
		}
		seen[n] = what
	}
	for what, change := range map[string]func(*Options){
		"base image":    func(o *Options) { o.BaseImage = "quay.io/acme/ubi:9" },
		"buildah image": func(o *Options) { o.Image = "quay.io/buildah/stable:v1.41" },
		"extra args":    func(o *Options) { o.ExtraArgs = []string{"--layers"} },
		"recipe":        func(o *Options) { o.Context = "testdata/recipe/files" },
	} {
		n := name(unitBuilder(t, change), base)
		if other, ok := seen[n]; ok {
			t.Errorf("changing the %s gives the name of %s: %s", what, other, n)
		}
		seen[n] = what
	}
	// The releases grow while a build runs: they are not what is built.
	r := base
	r.Releases = append(r.Releases, "4.16.16")
	if name(b, r) != name(b, base) {
		t.Error("a new release of the kernel changed the name")
	}
}

func TestRecipe(t *testing.T) {
	t.Run("keys", func(t *testing.T) {
		keyPattern := regexp.MustCompile(`^[-._a-zA-Z0-9]+$`)
		seen := map[string]string{}
		for _, p := range []string{"context/a/b", "context/a_b", "context/a__b", "context/a b", "context/ü.txt", "Containerfile"} {
			k := keyOf(p)
			if !keyPattern.MatchString(k) {
				t.Errorf("%s: key %q is not a ConfigMap key", p, k)
			}
			if other, ok := seen[k]; ok {
				t.Errorf("%s and %s share the key %q", p, other, k)
			}
			seen[k] = p
		}
	})
	t.Run("too large", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "Containerfile"), []byte("FROM x\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "big"), make([]byte, 1100<<10), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := readRecipe(filepath.Join(dir, "Containerfile"), dir)
		if err == nil || !strings.Contains(err.Error(), "ConfigMap holds at most 1 MiB") || !strings.Contains(err.Error(), dir) {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("content names the ConfigMap", func(t *testing.T) {
		r, err := readRecipe("testdata/recipe/Containerfile", "testdata/recipe")
		if err != nil {
			t.Fatal(err)
		}
		a := r.configMap("ns", "dtk")
		r.files["context/files/driver-toolkit-release.json"] = []byte("{}")
		b := r.configMap("ns", "dtk")
		if a.Name == b.Name || len(a.Name) > 253 || a.BinaryData[keyOf("context/files/blob.bin")] == nil {
			t.Errorf("names %s %s, binary data %v", a.Name, b.Name, a.BinaryData)
		}
	})
	t.Run("missing", func(t *testing.T) {
		if _, err := readRecipe("testdata/nope/Containerfile", "testdata/recipe"); err == nil || !strings.Contains(err.Error(), "testdata/nope/Containerfile") {
			t.Errorf("err = %v", err)
		}
	})
}
