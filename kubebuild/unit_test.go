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

func TestRedact(t *testing.T) {
	secrets := []string{"8675309", "s3cret-key", "pw"}
	for _, tc := range []struct {
		name, in      string
		want, notWant []string
	}{
		{"url path and query", "GET https://cdn.redhat.com/content/dist/x.rpm?sig=abc&e=1 failed",
			[]string{"GET https://cdn.redhat.com/<redacted> failed"}, []string{"content", "sig=abc"}},
		{"url userinfo", "pulling https://user:hunter22@registry.example.com/v2/",
			[]string{"https://registry.example.com/<redacted>"}, []string{"hunter22", "user:"}},
		{"bare host kept", "dial tcp https://quay.io: timeout", []string{"https://quay.io: timeout"}, nil},
		{"known secrets and base64", "org 8675309 key s3cret-key b64 czNjcmV0LWtleQ==",
			[]string{"org <redacted> key <redacted> b64 <redacted>"}, []string{"8675309", "s3cret"}},
		{"short secrets are not replaced everywhere", "pw stays in 'pwd'", []string{"pwd"}, nil},
		{"credential pairs", `password=p1 token: t2 "auth":"YWJj" --org 77 Authorization: Bearer xyz.abc`,
			[]string{"password=<redacted>", "token: <redacted>", `"auth":"<redacted>"`, "--org <redacted>", "Bearer <redacted>"}, []string{"p1", "t2", "YWJj", "77", "xyz"}},
		{"control characters", "\x1b[31merror\x1b[0m\x07 here", []string{"error here"}, []string{"\x1b", "\x07"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := redact(tc.in, secrets)
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("redact(%q) = %q, want %q in it", tc.in, got, w)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(got, w) {
					t.Errorf("redact(%q) = %q shows %q", tc.in, got, w)
				}
			}
		})
	}
	t.Run("bounded", func(t *testing.T) {
		long := strings.Repeat("line of output that goes on and on and on and on and on and on and on and on and on and on and on and on\n", 100) + "the last line é"
		got := redact(long, nil)
		if n := strings.Count(got, "\n") + 1; n > logTailLines || len(got) > logTailMax+3 || !strings.HasSuffix(got, "the last line é") {
			t.Errorf("%d lines, %d bytes, ends %q", n, len(got), got[len(got)-20:])
		}
		wide := strings.Repeat("é", 3000)
		if got := redact(wide, nil); len(got) > logTailMax+3 || !strings.HasPrefix(got, "...é") {
			t.Errorf("a long line is cut to %d bytes, starting %q", len(got), got[:8])
		}
	})
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
