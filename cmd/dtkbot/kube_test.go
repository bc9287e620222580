package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	batchv1client "k8s.io/client-go/kubernetes/typed/batch/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"

	"github.com/dtkbot/dtkbot/builder"
	"github.com/dtkbot/dtkbot/config"
	"github.com/dtkbot/dtkbot/internal/kubetest"
	"github.com/dtkbot/dtkbot/kubebuild"
)

// TestKubernetesBackendFromConfig: build.backend kubernetes, as config.yaml
// and a kubeconfig describe it, creates its Job in the kubeconfig context's
// namespace with the configured settings.
func TestKubernetesBackendFromConfig(t *testing.T) {
	s := kubetest.Start(t)
	ns := s.Namespace(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	core, err := corev1client.NewForConfig(s.Admin)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := core.Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "push"}, Type: corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":{}}`)}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	kubeconfig := string(s.Kubeconfig(ns))
	files := map[string]string{
		"kubeconfig":           kubeconfig,
		"recipe/Containerfile": "FROM scratch\n",
		"config.yaml": `graph:
  channels: [stable-4.18]
target:
  repository: registry.example.com/acme/driver-toolkit
build:
  backend: kubernetes
  timeout: 45m
  kubernetes:
    kubeconfig: kubeconfig
    push_secret: push
    containerfile: recipe/Containerfile
    context: recipe
    resources:
      requests: {cpu: 250m}
`,
	}
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := config.Load(filepath.Join(dir, "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := newBuilder(cfg, "build", cfg.Build.BuildBackend, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	req := builder.Request{Kernel: "5.14.0-427.37.1.el9_4", KernelFull: "5.14.0-427.37.1.el9_4.x86_64", RHEL: "9.4", Stream: "rhel-9",
		Arch: "amd64", Image: "registry.example.com/acme/driver-toolkit:staging", Attempt: 1}
	if err := b.Build(ctx, req); err != nil {
		t.Fatal(err)
	}
	batch, err := batchv1client.NewForConfig(s.Admin)
	if err != nil {
		t.Fatal(err)
	}
	name, err := b.(*kubebuild.Builder).JobName(req)
	if err != nil {
		t.Fatal(err)
	}
	job, err := batch.Jobs(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the Job is not in the kubeconfig context's namespace %s: %v", ns, err)
	}
	c := job.Spec.Template.Spec.Containers[0]
	if *job.Spec.ActiveDeadlineSeconds != 45*60 || c.Resources.Requests.Cpu().String() != "250m" || c.Image != kubebuild.DefaultImage ||
		job.Annotations[kubebuild.AnnotImage] != req.Image {
		t.Errorf("job: deadline %d, requests %v, image %s, annotations %v", *job.Spec.ActiveDeadlineSeconds, c.Resources.Requests, c.Image, job.Annotations)
	}
}
