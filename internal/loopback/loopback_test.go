package loopback

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/types"
)

func TestMain(m *testing.M) { os.Exit(Run(m)) }

// generous bounds a request that the guard must refuse at once; it is no
// timing check (the refusal is decided by the error), only a cap on how
// long a broken guard can hang the test.
const generous = 2 * time.Minute

// TestInternetRefused: a request to a registry on the internet fails with
// the guard's reason (never a DNS or connect error, which a machine without
// network would give too) and is recorded.
func TestInternetRefused(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), generous)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://quay.io/v2/", nil)
	resp, err := http.DefaultClient.Do(req)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("https://quay.io/v2/ answered %s through the guard", resp.Status)
	}
	if !strings.Contains(err.Error(), "loopback guard: tests may not reach quay.io:443") {
		t.Fatalf("https://quay.io/v2/ failed, but not by the guard: %v", err)
	}
	// Plain HTTP is proxied as a GET, answered 502.
	req, _ = http.NewRequestWithContext(ctx, http.MethodGet, "http://example.com/", nil)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("http://example.com/: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(body), "loopback guard") {
		t.Fatalf("http://example.com/: %s %q", resp.Status, body)
	}
	if got := Refused(); !slices.Equal(got, []string{"CONNECT quay.io:443", "GET example.com"}) {
		t.Fatalf("refused: %q", got)
	}
}

// TestImageLibraryRefused: containers/image, the registry client of
// registry/ and promote/, goes through the guard too.
func TestImageLibraryRefused(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), generous)
	defer cancel()
	conf := filepath.Join(t.TempDir(), "registries.conf")
	if err := os.WriteFile(conf, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	ref, err := docker.ParseReference("//quay.io/openshift-release-dev/ocp-release:4.16.15-x86_64")
	if err != nil {
		t.Fatal(err)
	}
	src, err := ref.NewImageSource(ctx, &types.SystemContext{SystemRegistriesConfPath: conf, SystemRegistriesConfDirPath: t.TempDir()})
	if err == nil {
		_, _, err = src.GetManifest(ctx, nil)
		src.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "loopback guard") {
		t.Fatalf("quay.io through containers/image: %v", err)
	}
	if got := Refused(); len(got) == 0 || !slices.Contains(got, "CONNECT quay.io:443") {
		t.Fatalf("refused: %q", got)
	}
}

// TestLoopbackServed: the tests' own servers are reached directly.
func TestLoopbackServed(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "here") }))
	defer srv.Close()
	tls := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "here") }))
	defer tls.Close()
	local := strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)
	for _, c := range []struct {
		client *http.Client
		url    string
	}{{http.DefaultClient, srv.URL}, {http.DefaultClient, local}, {tls.Client(), tls.URL}} {
		resp, err := c.client.Get(c.url)
		if err != nil {
			t.Fatalf("%s: %v", c.url, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "here" {
			t.Fatalf("%s: %s %q", c.url, resp.Status, body)
		}
	}
	if got := Refused(); len(got) != 0 {
		t.Fatalf("refused a loopback request: %q", got)
	}
}

// TestNoDNS: names go no further than /etc/hosts (net.DNSError keeps only
// the text of the dial's error).
func TestNoDNS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), generous)
	defer cancel()
	if addrs, err := net.DefaultResolver.LookupHost(ctx, "quay.io"); err == nil || !strings.Contains(err.Error(), ErrNoDNS.Error()) {
		t.Fatalf("quay.io resolved to %v, %v", addrs, err)
	}
	if addrs, err := net.DefaultResolver.LookupHost(ctx, "localhost"); err != nil || len(addrs) == 0 {
		t.Fatalf("localhost: %v %v", addrs, err)
	}
	if v, ok := os.LookupEnv("NO_PROXY"); ok {
		t.Fatalf("NO_PROXY=%q is still set", v)
	}
}
