package builder

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/dtkbot/dtkbot/imageread"
	"github.com/dtkbot/dtkbot/internal/need"
	"github.com/dtkbot/dtkbot/internal/poll"
	"github.com/dtkbot/dtkbot/internal/registrytest"
	"github.com/dtkbot/dtkbot/registry"
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
	// A build that outlives its timeout is killed, its children too (they
	// would hold the output pipe and the build's slot): decided by the
	// processes, not the clock. The script and its child would sleep for
	// longer than any test's deadline.
	pids := filepath.Join(t.TempDir(), "pids")
	_ = os.WriteFile(script, []byte("#!/bin/sh\nsleep 100000 &\necho $$ $! > "+pids+".tmp\nmv "+pids+".tmp "+pids+"\nwait\n"), 0o755)
	b.Timeout = 100 * time.Millisecond
	done := make(chan error, 1)
	go func() { done <- b.Build(context.Background(), req) }()
	err := poll.Receive(t, "the build to time out", 0, done)
	if err == nil || !strings.Contains(err.Error(), "timed out after 100ms") {
		t.Errorf("timeout: %v", err)
	}
	raw, rerr := os.ReadFile(pids)
	if rerr != nil {
		t.Fatalf("the fake podman never started: %v", rerr)
	}
	for _, pid := range strings.Fields(string(raw)) {
		poll.Until(t, "process "+pid+" of the timed-out build to be killed", 0, func() bool { return gone(pid) })
	}
}

// gone: the process is no more, or a zombie waiting for its parent.
func gone(pid string) bool {
	stat, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return true
	}
	_, rest, _ := strings.Cut(string(stat), ") ")
	return strings.HasPrefix(rest, "Z") || strings.HasPrefix(rest, "X")
}

// probeSource is a static program for images FROM scratch: with "ok" it
// exits 0 (podman can run a RUN step here); otherwise it reads the build's
// two RHSM secrets and writes their SHA-256 sums to /etc/rhsm-seen: proof
// that they reached the build, without the secrets themselves.
const probeSource = `package main

import (
	"crypto/sha256"
	"fmt"
	"os"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "ok" {
		return
	}
	var seen string
	for _, id := range []string{"rhsm-org", "rhsm-activation-key"} {
		b, err := os.ReadFile("/run/secrets/" + id)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		seen += fmt.Sprintf("%s %x\n", id, sha256.Sum256(b))
	}
	if err := os.WriteFile("/etc/rhsm-seen", []byte(seen), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
`

// podmanHere returns the podman build arguments that run a RUN step on this
// machine, with the static probe program built into dir, or skips: only when
// podman is not installed or cannot run a RUN step at all (the probe says
// why), never with DTKBOT_REQUIRE_TOOLS=1 (CI), where it fails instead (internal/need).
// crun cannot start containers in some sandboxes (cgroups in hybrid mode);
// buildah's chroot isolation needs no runtime, so it is tried second.
func podmanHere(t *testing.T, dir string) []string {
	t.Helper()
	unavailable := func(format string, args ...any) {
		t.Helper()
		need.Missing(t, format, args...)
	}
	if _, err := exec.LookPath("podman"); err != nil {
		unavailable("podman is not installed (Debian's podman; .ci/run installs it): %v", err)
	}
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	src := filepath.Join(t.TempDir(), "probe.go")
	_ = os.WriteFile(src, []byte(probeSource), 0o644)
	build := exec.Command(goBin, "build", "-o", filepath.Join(dir, "probe"), src)
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=", "GOWORK=off")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the probe program: %v\n%s", err, out)
	}
	probeDir := t.TempDir()
	_ = os.Link(filepath.Join(dir, "probe"), filepath.Join(probeDir, "probe"))
	_ = os.WriteFile(filepath.Join(probeDir, "Containerfile"), []byte("FROM scratch\nCOPY probe /probe\nRUN [\"/probe\", \"ok\"]\n"), 0o644)
	var why []string
	for _, extra := range [][]string{nil, {"--isolation=chroot"}} {
		tag := "localhost/dtkbot-podman-probe:" + strconv.Itoa(os.Getpid())
		args := append(append([]string{"build", "--tag", tag}, extra...), probeDir)
		out, err := exec.Command("podman", args...).CombinedOutput()
		_ = exec.Command("podman", "rmi", "-f", tag).Run()
		if err == nil {
			if extra != nil {
				t.Logf("podman runs RUN steps here only with %v (its default runtime: %s)", extra, why[0])
			}
			return extra
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		reason := lines[len(lines)-1]
		for _, l := range lines {
			if strings.Contains(l, "error running container") {
				reason = l // crun's own words, e.g. "cgroups in hybrid mode not supported"
				break
			}
		}
		why = append(why, fmt.Sprintf("podman %s: %v: %s", strings.Join(args, " "), err, reason))
	}
	unavailable("podman cannot run a RUN step here: %s", strings.Join(why, "; "))
	return nil
}

// TestPodmanBuildsAndPushesATinyRecipe runs a real podman build of a recipe
// shaped like the DTK's (build args, the RHSM secrets mounted into a RUN
// step, the release JSON, labels) from scratch, pushes it to the in-process
// registry, and reads the JSON back as verification does; the secrets
// reached the RUN step (its proof is in the image) and nothing of them is in
// the pushed layers, the image config or the history.
func TestPodmanBuildsAndPushesATinyRecipe(t *testing.T) {
	dir := t.TempDir()
	extra := podmanHere(t, dir)
	srv := registrytest.New().Server()
	defer srv.Close()
	release := `{ "KERNEL_VERSION": "5.14.0-427.37.1.el9_4.x86_64", "RT_KERNEL_VERSION": "package kernel-rt-core is not installed", "RHEL_VERSION": "9.4" }`
	_ = os.WriteFile(filepath.Join(dir, "driver-toolkit-release.json"), []byte(release), 0o644)
	_ = os.WriteFile(filepath.Join(dir, "Containerfile"), []byte(`ARG BASE_IMAGE=scratch
FROM ${BASE_IMAGE}
ARG KERNEL_VERSION
ARG RT_KERNEL_VERSION
ARG RHEL_VERSION
ARG STREAM
COPY probe /probe
RUN --mount=type=secret,id=rhsm-org,required=true --mount=type=secret,id=rhsm-activation-key,required=true ["/probe"]
COPY driver-toolkit-release.json /etc/driver-toolkit-release.json
LABEL kernel-version="${KERNEL_VERSION}" kernel-rt-version="${RT_KERNEL_VERSION}" io.openshift.os.streamclass="${STREAM}"
`), 0o644)
	const org, key = "org-1234567", "key-7654321"
	orgFile, keyFile := filepath.Join(t.TempDir(), "org"), filepath.Join(t.TempDir(), "key")
	_ = os.WriteFile(orgFile, []byte(org), 0o600)
	_ = os.WriteFile(keyFile, []byte(key), 0o600)
	f := false
	r := req
	r.Image = srv.Host() + "/acme/dtk:5.14.0-427.37.1.el9_4.x86_64"
	b := &CommandBuilder{Command: "podman", Containerfile: filepath.Join(dir, "Containerfile"), Context: dir, TLSVerify: &f,
		RHSMOrgFile: orgFile, RHSMActivationKeyFile: keyFile, BaseImage: "scratch", Timeout: 5 * time.Minute,
		ExtraArgs: extra, Log: zerolog.Nop()}
	defer func() { _ = exec.Command("podman", "rmi", "-f", r.Image).Run() }()
	// podman runs here (podmanHere's probe): any failure now is dtkbot's.
	if err := b.Build(context.Background(), r); err != nil {
		t.Fatalf("podman build and push: %v", err)
	}
	if _, ok := srv.TagDigest("acme/dtk", "5.14.0-427.37.1.el9_4.x86_64"); !ok {
		t.Fatal("podman reported success but nothing was pushed")
	}
	v := newVerifierForTest(t, srv.Host())
	if err := v.Verify(context.Background(), r.Image, verify.Want{Kernel: "5.14.0-427.37.1.el9_4", Arch: "amd64"}); err != nil {
		t.Errorf("verifying the podman-built image: %v", err)
	}
	files, blobs := pushedImage(t, srv, "acme/dtk", "5.14.0-427.37.1.el9_4.x86_64")
	want := fmt.Sprintf("rhsm-org %x\nrhsm-activation-key %x\n", sha256.Sum256([]byte(org)), sha256.Sum256([]byte(key)))
	if got := files["etc/rhsm-seen"]; got != want {
		t.Errorf("the RUN step saw the secrets as %q, want %q", got, want)
	}
	for name, data := range blobs {
		for _, secret := range []string{org, key} {
			if strings.Contains(data, secret) {
				t.Errorf("the secret %q is in the pushed %s", secret, name)
			}
		}
	}
	out, _ := exec.Command("podman", "image", "inspect", "--format", "{{json .Config.Labels}} {{json .History}}", r.Image).CombinedOutput()
	if strings.Contains(string(out), org) || strings.Contains(string(out), key) {
		t.Errorf("the secret reached the image: %s", out)
	}
	if !strings.Contains(string(out), `"kernel-version":"5.14.0-427.37.1.el9_4"`) {
		t.Errorf("labels: %s", out)
	}
}

// pushedImage reads an image back from the registry over its API: the
// files of its layers (name to content) and every blob, decompressed
// (manifest, config with the history, layers) by name.
func pushedImage(t *testing.T, srv *registrytest.Server, repo, tag string) (map[string]string, map[string]string) {
	t.Helper()
	get := func(path string) []byte {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, "http://"+srv.Host()+"/v2/"+repo+path, nil)
		req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %s", path, resp.Status)
		}
		return body
	}
	var m struct {
		Config struct{ Digest string }   `json:"config"`
		Layers []struct{ Digest string } `json:"layers"`
	}
	raw := get("/manifests/" + tag)
	if err := json.Unmarshal(raw, &m); err != nil || len(m.Layers) == 0 {
		t.Fatalf("manifest %s: %v", raw, err)
	}
	blobs := map[string]string{"manifest": string(raw), "config " + m.Config.Digest: string(get("/blobs/" + m.Config.Digest))}
	files := map[string]string{}
	for _, l := range m.Layers {
		data := get("/blobs/" + l.Digest)
		if zr, err := gzip.NewReader(bytes.NewReader(data)); err == nil {
			if plain, err := io.ReadAll(zr); err == nil {
				data = plain
			}
		}
		blobs["layer "+l.Digest] = string(data)
		tr := tar.NewReader(bytes.NewReader(data))
		for {
			h, err := tr.Next()
			if err != nil {
				break
			}
			content, _ := io.ReadAll(tr)
			files[strings.TrimPrefix(h.Name, "./")] = string(content)
		}
	}
	return files, blobs
}

func newVerifierForTest(t *testing.T, host string) *verify.DTK {
	t.Helper()
	f := false
	return &verify.DTK{Registry: registry.New(registry.Options{TLSVerify: &f, RegistriesConf: "/dev/null", Attempts: 1, Timeout: 10 * time.Second}),
		Limits: imageread.DefaultLimits()}
}
