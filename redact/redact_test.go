package redact

import (
	"strings"
	"testing"
)

func TestText(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"build webhook https://hooks.example.com/build/s3cr3t-token?sig=abc: HTTP 500: {\"error\":\"boom\"}",
			"build webhook https://hooks.example.com: HTTP 500: {\"error\":\"boom\"}"},
		{"POST https://user:pass@ci.example.com:8443/api/v1/x#frag failed.", "POST https://ci.example.com:8443 failed."},
		{"see (https://github.com/acme/ci/actions/runs/42)", "see (https://github.com)"},
		{"two\nlines\tand  spaces", "two lines and spaces"},
		{"quay.io/acme/dtk:5.14.0 is a reference, not a URL", "quay.io/acme/dtk:5.14.0 is a reference, not a URL"},
	} {
		if got := Text(tc.in); got != tc.want {
			t.Errorf("Text(%q)\n got %q\nwant %q", tc.in, got, tc.want)
		}
	}
	long := strings.Repeat("é", MaxText)
	if got := Text(long); len(got) > MaxText+len("…") || !strings.HasSuffix(got, "…") || !strings.HasPrefix(got, "é") {
		t.Errorf("a long text: %d bytes, %q...", len(got), got[:10])
	}
	if got := Text("https://%zz"); got != "<url>" {
		t.Errorf("a broken URL: %q", got)
	}
}

func TestQueryKeepsThePath(t *testing.T) {
	if got := Query("https://bot:tok@hooks.example.com/build/dtk?sig=abc#x"); got != "https://hooks.example.com/build/dtk" {
		t.Errorf("Query: %q", got)
	}
}

func TestOutput(t *testing.T) {
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
			got := Output(tc.in, secrets)
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("Output(%q) = %q, want %q in it", tc.in, got, w)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(got, w) {
					t.Errorf("Output(%q) = %q shows %q", tc.in, got, w)
				}
			}
		})
	}
	t.Run("bounded", func(t *testing.T) {
		long := strings.Repeat("line of output that goes on and on and on and on and on and on and on and on and on and on and on and on\n", 100) + "the last line é"
		got := Output(long, nil)
		if n := strings.Count(got, "\n") + 1; n > OutputLines || len(got) > OutputMax+3 || !strings.HasSuffix(got, "the last line é") {
			t.Errorf("%d lines, %d bytes, ends %q", n, len(got), got[len(got)-20:])
		}
		wide := strings.Repeat("é", 3000)
		if got := Output(wide, nil); len(got) > OutputMax+3 || !strings.HasPrefix(got, "...é") {
			t.Errorf("a long line is cut to %d bytes, starting %q", len(got), got[:8])
		}
	})
}
