package kubebuild

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var dnsLabelPattern = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

func TestJobName(t *testing.T) {
	base := Request{Kernel: "5.14.0-427.37.1.el9_4", KernelFull: "5.14.0-427.37.1.el9_4.x86_64", Stream: "rhel-9", Arch: "amd64",
		Image: "quay.io/acme/dtk:staging", Attempt: 1}
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
			n := JobName(tc.req)
			if len(n) > 63 || !dnsLabelPattern.MatchString(n) || !strings.HasPrefix(n, tc.prefix) {
				t.Errorf("%q (%d chars): want a DNS-1123 label of at most 63 starting %q", n, len(n), tc.prefix)
			}
			if JobName(tc.req) != n {
				t.Error("not deterministic")
			}
		})
	}
	// Every input that tells builds apart changes the name; the image
	// (where the build pushes) does not.
	seen := map[string]string{JobName(base): "base"}
	for what, change := range map[string]func(*Request){
		"attempt":  func(r *Request) { r.Attempt = 2 },
		"stream":   func(r *Request) { r.Stream = "rhel-9-rt" },
		"arch":     func(r *Request) { r.Arch = "arm64" },
		"kernel":   func(r *Request) { r.KernelFull = "5.14.0-427.38.1.el9_4.x86_64" },
		"consumer": func(r *Request) { r.Consumer = "acme-nic" },
		"dtk kind": func(r *Request) { r.Consumer = "dtk" },
	} {
		r := base
		change(&r)
		n := JobName(r)
		if other, ok := seen[n]; ok {
			t.Errorf("changing the %s gives the name of %s: %s", what, other, n)
		}
		seen[n] = what
	}
	r := base
	r.Image = "quay.io/other/dtk:staging"
	if JobName(r) != JobName(base) {
		t.Error("the image changed the name")
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
