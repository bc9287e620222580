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

func TestLogKeepsTheEndAndItsLines(t *testing.T) {
	log := strings.Repeat("step\n", 100) + "error: pulling https://registry.example.com/v2/acme/x/manifests/y?token=t: 401\n"
	got := Log(log, 120)
	if !strings.HasSuffix(got, "error: pulling https://registry.example.com: 401\n") || strings.Contains(got, "token") || len(got) > 124 {
		t.Errorf("Log: %q", got)
	}
	if !strings.Contains(got, "step\n") {
		t.Errorf("the lines went: %q", got)
	}
}

func TestQueryKeepsThePath(t *testing.T) {
	if got := Query("https://bot:tok@hooks.example.com/build/dtk?sig=abc#x"); got != "https://hooks.example.com/build/dtk" {
		t.Errorf("Query: %q", got)
	}
}
