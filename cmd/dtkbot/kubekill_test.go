package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	batchv1client "k8s.io/client-go/kubernetes/typed/batch/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"

	"github.com/dtkbot/dtkbot/internal/kubetest"
	"github.com/dtkbot/dtkbot/internal/poll"
	"github.com/dtkbot/dtkbot/kubebuild"
)

// jobKiller stands between dtkbot and the API server and SIGKILLs dtkbot
// when its first Job creation arrives, before passing it on: the pass has
// recorded the attempt (intent first) and dies before its Job exists.
type jobKiller struct {
	mu     sync.Mutex
	cmd    *exec.Cmd
	ready  chan struct{}
	killed bool
	proxy  *httputil.ReverseProxy
}

func (k *jobKiller) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/jobs") {
		<-k.ready
		k.mu.Lock()
		if k.cmd != nil && !k.killed {
			_ = k.cmd.Process.Kill()
			k.killed = true
		}
		k.mu.Unlock()
		http.Error(w, "killed", http.StatusServiceUnavailable) // nobody is listening any more
		return
	}
	k.proxy.ServeHTTP(w, r)
}

// TestKilledBetweenIntentAndJobLosesNoAttempt: `dtkbot reconcile` with
// build.backend kubernetes (max_attempts 1), SIGKILLed when its first Job
// creation reaches the API server: after the attempt was recorded, before
// the Job exists. The next `dtkbot reconcile` creates that attempt's Job
// (and the other kernel's) and spends no attempt: no kernel is failed.
func TestKilledBetweenIntentAndJobLosesNoAttempt(t *testing.T) {
	s := kubetest.Start(t)
	ns := s.Namespace(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	core, err := corev1client.NewForConfig(s.Admin)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := core.Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "push"}, Type: corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":{}}`)}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// The killing proxy, in TLS of its own, in front of the API server.
	apiURL, _ := url.Parse(s.Host)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(s.CA)
	killer := &jobKiller{ready: make(chan struct{})}
	killer.proxy = &httputil.ReverseProxy{
		Rewrite:   func(r *httputil.ProxyRequest) { r.SetURL(apiURL) },
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}},
	}
	front := httptest.NewTLSServer(killer)
	defer front.Close()
	frontCA := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: front.Certificate().Raw})

	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	writeKubeconfig := func(server string, ca []byte) {
		t.Helper()
		cfg := fmt.Sprintf("apiVersion: v1\nkind: Config\nclusters:\n  - name: c\n    cluster: {server: %s, certificate-authority-data: %s}\n"+
			"users:\n  - name: u\n    user: {token: %s}\ncontexts:\n  - name: c\n    context: {cluster: c, user: u, namespace: %s}\ncurrent-context: c\n",
			server, base64.StdEncoding.EncodeToString(ca), s.Admin.BearerToken, ns)
		if err := os.WriteFile(kubeconfig, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeKubeconfig(front.URL, frontCA)
	if err := os.MkdirAll(filepath.Join(dir, "recipe"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "recipe", "Containerfile"), []byte("FROM scratch\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cw := newCLIWorld(t, fmt.Sprintf(`build:
  backend: kubernetes
  max_attempts: 1
  kubernetes:
    kubeconfig: %s
    push_secret: push
    containerfile: %s
    context: %s
`, kubeconfig, filepath.Join(dir, "recipe", "Containerfile"), filepath.Join(dir, "recipe")))

	cmd := startDtkbot(t, "reconcile", "--config", cw.config)
	killer.mu.Lock()
	killer.cmd = cmd
	killer.mu.Unlock()
	close(killer.ready)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	err = poll.Receive(t, "the killed dtkbot to exit", 2*time.Minute, done)
	killer.mu.Lock()
	wasKilled := killer.killed
	killer.mu.Unlock()
	if !wasKilled {
		t.Fatalf("dtkbot exited (%v) before it asked for a Job", err)
	}
	batch, err := batchv1client.NewForConfig(s.Admin)
	if err != nil {
		t.Fatal(err)
	}
	if jobs, err := batch.Jobs(ns).List(ctx, metav1.ListOptions{LabelSelector: kubebuild.Selector}); err != nil || len(jobs.Items) != 0 {
		t.Fatalf("after the kill: %v Jobs, %v: want none", len(jobs.Items), err)
	}
	kernels := func() map[string]map[string]any {
		t.Helper()
		code, stdout, stderr := runCLI(t, "state", "export", "--config", cw.config)
		var exp struct {
			Kernels []map[string]any `json:"kernels"`
		}
		if code != exitOK || json.Unmarshal([]byte(stdout), &exp) != nil {
			t.Fatalf("state export: %d %s", code, stderr)
		}
		out := map[string]map[string]any{}
		for _, k := range exp.Kernels {
			out[fmt.Sprint(k["kernel"])] = k
		}
		return out
	}
	recorded := 0
	for kernel, k := range kernels() {
		if k["state"] == "build_requested" {
			recorded++
			t.Logf("killed with %s's attempt %v recorded, never asked for", kernel, k["attempts"])
		}
	}
	if recorded != 1 {
		t.Fatalf("after the kill %d attempts are recorded, want the one being asked for: %v", recorded, kernels())
	}

	// A new process, straight to the API server.
	writeKubeconfig(s.Host, s.CA)
	if code, _, stderr := runCLI(t, "reconcile", "--config", cw.config); code != exitOK {
		t.Fatalf("the pass after the kill: exit %d: %s", code, stderr)
	}
	jobs, err := batch.Jobs(ns).List(ctx, metav1.ListOptions{LabelSelector: kubebuild.Selector})
	if err != nil {
		t.Fatal(err)
	}
	for kernel, k := range kernels() {
		if k["state"] != "build_requested" || fmt.Sprint(k["attempts"]) != "1" || k["reason"] != nil {
			t.Errorf("%s after the pass that followed the kill: %v, %v attempts, reason %v: want its one attempt asked for, not spent", kernel, k["state"], k["attempts"], k["reason"])
		}
	}
	if len(jobs.Items) != 2 {
		t.Errorf("%d Jobs, want one per kernel (2)", len(jobs.Items))
	}
	for _, j := range jobs.Items {
		if j.Annotations[kubebuild.AnnotAttempt] != "1" {
			t.Errorf("Job %s is of attempt %s", j.Name, j.Annotations[kubebuild.AnnotAttempt])
		}
	}
}
