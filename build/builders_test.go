package build

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/dtkbot/dtkbot/internal/registrytest"
	"github.com/dtkbot/dtkbot/registry"
	"github.com/dtkbot/dtkbot/releaseinfo"
	"github.com/dtkbot/dtkbot/verify"
)

var req = Request{
	Kernel: "5.14.0-427.37.1.el9_4", KernelFull: "5.14.0-427.37.1.el9_4.x86_64", RTKernel: "5.14.0-427.37.1.el9_4",
	RHEL: "9.4", Stream: "rhel-9", Arch: "amd64", Image: "quay.io/acme/dtk:5.14.0-427.37.1.el9_4.x86_64",
	Releases: []string{"4.16.15", "4.16.16"},
}

func TestWebhookSignsAndRetries(t *testing.T) {
	secret := []byte("webhook-s3cret")
	var calls atomic.Int32
	var body []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mac := hmac.New(sha256.New, secret)
		mac.Write(b)
		if r.Header.Get("X-Signature-256") != "sha256="+hex.EncodeToString(mac.Sum(nil)) {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		if calls.Add(1) == 1 {
			http.Error(w, "busy", http.StatusBadGateway)
			return
		}
		body = b
		w.WriteHeader(http.StatusAccepted)
	}))
	defer srv.Close()
	b := &WebhookBuilder{URL: srv.URL + "/build?token=abc", Secret: secret, Backoff: time.Millisecond}
	if err := b.Build(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	var got map[string]string
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"kernel_version": req.Kernel, "rt_kernel_version": req.RTKernel, "rhel_version": "9.4", "image": req.Image,
		"releases": "4.16.15,4.16.16", "stream": "rhel-9", "arch": "amd64", "kernel_full": req.KernelFull}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if calls.Load() != 2 {
		t.Errorf("%d calls: a 502 should be retried once", calls.Load())
	}

	refused := &WebhookBuilder{URL: "http://127.0.0.1:1/build?token=abc", Secret: secret, Attempts: 2, Backoff: time.Millisecond}
	if err := refused.Build(context.Background(), req); err == nil || strings.Contains(err.Error(), "token=abc") || !strings.Contains(err.Error(), "refused") {
		t.Errorf("an unreachable webhook: %v (the URL's query must not show)", err)
	}
	wrong := &WebhookBuilder{URL: srv.URL + "/build?token=abc", Secret: []byte("nope"), Backoff: time.Millisecond}
	err := wrong.Build(context.Background(), req)
	if err == nil || !strings.Contains(err.Error(), "401") || strings.Contains(err.Error(), "token=abc") {
		t.Errorf("a rejected signature: %v (the URL's query must not show)", err)
	}
}

func TestActionsDispatch(t *testing.T) {
	var got struct {
		Ref    string            `json:"ref"`
		Inputs map[string]string `json:"inputs"`
	}
	var path, auth string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path, auth = r.URL.Path, r.Header.Get("Authorization")
		_ = json.NewDecoder(r.Body).Decode(&got)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	b := &ActionsBuilder{APIURL: srv.URL + "/api/v3", Repository: "acme/dtk-builds", Workflow: "build-dtk.yml", Ref: "main",
		Token: func() (string, error) { return "ghs_token", nil }}
	if err := b.Build(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if path != "/api/v3/repos/acme/dtk-builds/actions/workflows/build-dtk.yml/dispatches" || auth != "Bearer ghs_token" || got.Ref != "main" {
		t.Errorf("path %q auth %q ref %q", path, auth, got.Ref)
	}
	if got.Inputs["kernel_version"] != req.Kernel || got.Inputs["image"] != req.Image || got.Inputs["releases"] != "4.16.15,4.16.16" || len(got.Inputs) != 5 {
		t.Errorf("inputs %v", got.Inputs)
	}
	unprocessable := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"message":"Unexpected inputs provided: [\"x\"]"}`, http.StatusUnprocessableEntity)
	}))
	defer unprocessable.Close()
	b.APIURL = unprocessable.URL
	if err := b.Build(context.Background(), req); err == nil || !strings.Contains(err.Error(), "422") || strings.Contains(err.Error(), "ghs_token") {
		t.Errorf("422: %v", err)
	}
}

func TestCommandBuilderCommandLines(t *testing.T) {
	var mu sync.Mutex
	var lines [][]string
	f := false
	b := &CommandBuilder{Command: "podman", Containerfile: "deploy/driver-toolkit/Containerfile", Context: "deploy/driver-toolkit",
		RHSMOrgFile: "/secrets/org", RHSMActivationKeyFile: "/secrets/key", AuthFile: "/secrets/auth.json", TLSVerify: &f,
		BaseImage: "registry.access.redhat.com/ubi{{.RHELMajor}}/ubi:{{.RHEL}}", Log: zerolog.Nop(),
		run: func(_ context.Context, name string, args []string, out io.Writer) error {
			mu.Lock()
			defer mu.Unlock()
			lines = append(lines, append([]string{name}, args...))
			_, _ = out.Write([]byte("STEP 1/4\n"))
			return nil
		}}
	if err := b.Build(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	build, push := strings.Join(lines[0], " "), strings.Join(lines[1], " ")
	for _, want := range []string{"podman build --file deploy/driver-toolkit/Containerfile --platform linux/amd64",
		"--build-arg KERNEL_VERSION=5.14.0-427.37.1.el9_4", "--build-arg RHEL_VERSION=9.4",
		"--build-arg BASE_IMAGE=registry.access.redhat.com/ubi9/ubi:9.4",
		"--secret id=rhsm-org,src=/secrets/org", "--secret id=rhsm-activation-key,src=/secrets/key",
		"--tag " + req.Image, "--tls-verify=false", "deploy/driver-toolkit"} {
		if !strings.Contains(build, want) {
			t.Errorf("build command lacks %q:\n%s", want, build)
		}
	}
	if push != "podman push --authfile /secrets/auth.json --tls-verify=false "+req.Image {
		t.Errorf("push: %s", push)
	}
	b.Command = "/usr/bin/buildah"
	bl, _, _ := b.Args(req)
	if bl[0] != "bud" {
		t.Errorf("buildah verb %q", bl[0])
	}
}

func TestCommandBuilderErrors(t *testing.T) {
	b := &CommandBuilder{Command: "/nonexistent/podman", Containerfile: "x", Context: ".", Log: zerolog.Nop()}
	if err := b.Build(context.Background(), req); err == nil || !strings.Contains(err.Error(), "not installed") {
		t.Errorf("missing podman: %v", err)
	}
	script := filepath.Join(t.TempDir(), "fake-podman")
	_ = os.WriteFile(script, []byte("#!/bin/sh\necho 'Error: unknown flag' >&2\nexit 125\n"), 0o755)
	b.Command = script
	if err := b.Build(context.Background(), req); err == nil || !strings.Contains(err.Error(), "exit 125") || !strings.Contains(err.Error(), "unknown flag") {
		t.Errorf("exit 125: %v", err)
	}
	_ = os.WriteFile(script, []byte("#!/bin/sh\nsleep 10\n"), 0o755)
	b.Timeout = 100 * time.Millisecond
	start := time.Now()
	if err := b.Build(context.Background(), req); err == nil || !strings.Contains(err.Error(), "timed out") || time.Since(start) > 5*time.Second {
		t.Errorf("timeout: %v after %s", err, time.Since(start))
	}
}

// TestPodmanBuildsAndPushesATinyRecipe runs a real podman build of a recipe
// shaped like the DTK's (build args, a secret, the release JSON, labels) from
// scratch (no RUN: this sandbox cannot start containers), pushes it to the
// in-process registry, and reads the JSON back as verification does.
func TestPodmanBuildsAndPushesATinyRecipe(t *testing.T) {
	if _, err := exec.LookPath("podman"); err != nil {
		t.Skip("podman is not installed: " + err.Error())
	}
	srv := registrytest.New().Server()
	defer srv.Close()
	dir := t.TempDir()
	release := `{ "KERNEL_VERSION": "5.14.0-427.37.1.el9_4.x86_64", "RT_KERNEL_VERSION": "package kernel-rt-core is not installed", "RHEL_VERSION": "9.4" }`
	_ = os.WriteFile(filepath.Join(dir, "driver-toolkit-release.json"), []byte(release), 0o644)
	_ = os.WriteFile(filepath.Join(dir, "Containerfile"), []byte(`ARG BASE_IMAGE=scratch
FROM ${BASE_IMAGE}
ARG KERNEL_VERSION
ARG RT_KERNEL_VERSION
ARG RHEL_VERSION
ARG STREAM
COPY driver-toolkit-release.json /etc/driver-toolkit-release.json
LABEL kernel-version="${KERNEL_VERSION}" kernel-rt-version="${RT_KERNEL_VERSION}" io.openshift.os.streamclass="${STREAM}"
`), 0o644)
	secret := filepath.Join(dir, "org")
	_ = os.WriteFile(secret, []byte("1234567"), 0o600)
	f := false
	r := req
	r.Image = srv.Host() + "/acme/dtk:5.14.0-427.37.1.el9_4.x86_64"
	b := &CommandBuilder{Command: "podman", Containerfile: filepath.Join(dir, "Containerfile"), Context: dir, TLSVerify: &f,
		RHSMOrgFile: secret, RHSMActivationKeyFile: secret, BaseImage: "scratch", Timeout: 2 * time.Minute, Log: zerolog.Nop()}
	if err := b.Build(context.Background(), r); err != nil {
		t.Skipf("podman cannot build here: %v", err)
	}
	if _, ok := srv.TagDigest("acme/dtk", "5.14.0-427.37.1.el9_4.x86_64"); !ok {
		t.Fatal("podman reported success but nothing was pushed")
	}
	v := newVerifierForTest(t, srv.Host())
	if err := v.Verify(context.Background(), r.Image, "5.14.0-427.37.1.el9_4", "amd64"); err != nil {
		t.Errorf("verifying the podman-built image: %v", err)
	}
	out, _ := exec.Command("podman", "image", "inspect", "--format", "{{json .Config.Labels}} {{json .History}}", r.Image).CombinedOutput()
	if strings.Contains(string(out), "1234567") {
		t.Errorf("the secret reached the image: %s", out)
	}
	if !strings.Contains(string(out), `"kernel-version":"5.14.0-427.37.1.el9_4"`) {
		t.Errorf("labels: %s", out)
	}
	_ = exec.Command("podman", "rmi", "-f", r.Image).Run()
}

func newVerifierForTest(t *testing.T, host string) *verify.DTK {
	t.Helper()
	f := false
	return &verify.DTK{Registry: registry.New(registry.Options{TLSVerify: &f, RegistriesConf: "/dev/null", Attempts: 1, Timeout: 10 * time.Second}),
		Limits: releaseinfo.DefaultLimits()}
}
