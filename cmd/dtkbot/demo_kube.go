package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	batchv1client "k8s.io/client-go/kubernetes/typed/batch/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"

	"github.com/dtkbot/dtkbot/internal/kubeapi"
	"github.com/dtkbot/dtkbot/internal/kubenode"
	"github.com/dtkbot/dtkbot/internal/payloadtest"
	"github.com/dtkbot/dtkbot/internal/registrytest"
	"github.com/dtkbot/dtkbot/kubebuild"
)

// demoKube is what the demo's build.backend kubernetes part needs of the
// rest of the demo.
type demoKube struct {
	dir      string // the demo's temporary directory
	reg      *registrytest.Registry
	regHost  string
	world    *payloadtest.World
	graphURL string
	authFile string
}

// demoKubernetes builds the DTKs of one channel with build.backend
// kubernetes: one Job per kernel in a real kube-apiserver (and etcd), the
// binaries `make kube-assets` provides, with internal/kubenode playing the
// node (no kubelet runs: it "builds" by pushing to the Job's staging
// reference). Without the binaries it says how to get them and returns
// exitOK, unless DTKBOT_REQUIRE_TOOLS=1 (CI) asks for them.
func demoKubernetes(ctx context.Context, env *cliEnv, d demoKube) int {
	assets, err := kubeapi.Assets()
	if err != nil {
		fmt.Fprintf(env.stdout, "\nDEMO: build.backend kubernetes is not shown: %v\n", err)
		if os.Getenv("DTKBOT_REQUIRE_TOOLS") == "1" {
			errorf(env, "demo: DTKBOT_REQUIRE_TOOLS=1: %v", err)
			return exitFailed
		}
		return exitOK
	}
	fmt.Fprintln(env.stdout, "\nDEMO +1: build.backend kubernetes: a real kube-apiserver and etcd on loopback (from "+assets+"),")
	fmt.Fprintln(env.stdout, "DEMO: a stand-in node that runs dtkbot's Jobs (no kubelet: it pushes what buildah would), channel stable-4.16 again")
	srv, err := kubeapi.Start(assets)
	if err != nil {
		errorf(env, "demo: starting the API server: %v", err)
		return exitFailed
	}
	defer func() { _ = srv.Stop() }()
	fmt.Fprintf(env.stdout, "DEMO: the API server at %s was ready in %.1fs\n", srv.Host, srv.Started.Seconds())

	const ns = "dtkbot-demo"
	setup, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := kubeSetup(setup, srv, ns); err != nil {
		errorf(env, "demo: %v", err)
		return exitFailed
	}
	node, err := kubenode.Start(setup, srv, kubenode.Options{Namespace: ns, Selector: kubebuild.Selector, World: d.world,
		Errorf: func(format string, args ...any) { errorf(env, "demo: "+format, args...) }})
	if err != nil {
		errorf(env, "demo: %v", err)
		return exitFailed
	}
	defer node.Stop()

	// The admin's token in a kubeconfig file: credentials come from files.
	kubeconfig := filepath.Join(d.dir, "kubeconfig")
	recipe := filepath.Join(d.dir, "recipe")
	cfg := filepath.Join(d.dir, "kube-config.yaml")
	files := map[string]string{
		kubeconfig:                             string(srv.Kubeconfig(ns)),
		filepath.Join(recipe, "Containerfile"): "# DEMO recipe: the node stand-in never runs it\nFROM registry.access.redhat.com/ubi9/ubi\n",
		cfg: fmt.Sprintf(`# DEMO config: build.backend kubernetes
state: kube-dtkbot.db
log: {level: error, format: json}
graph:
  url: %s
  channels: [stable-4.16]
registry:
  authfile: %s
  tls_verify: false
  registries_conf: /dev/null
target:
  repository: %s/demo/driver-toolkit-kube
build:
  backend: kubernetes
  kubernetes:
    kubeconfig: %s
    push_secret: push
    rhsm_secret: rhsm
    containerfile: %s
    context: %s
verify:
  mode: off
`, d.graphURL, d.authFile, d.regHost, kubeconfig, filepath.Join(recipe, "Containerfile"), recipe),
	}
	for p, body := range files {
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			errorf(env, "demo: %v", err)
			return exitFailed
		}
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			errorf(env, "demo: %v", err)
			return exitFailed
		}
	}

	// A Job's outcome is seen by the pass after the one that asked for it,
	// as a real cluster's would be: pass 1 creates the Jobs, pass 2 (once
	// they have finished) finds the images at their staging tags, verifies
	// and promotes them.
	for i := 1; i <= 2; i++ {
		fmt.Fprintf(env.stdout, "DEMO: dtkbot reconcile --config <kubernetes config>   (pass %d)\n", i)
		if code := runReconcile(ctx, env, []string{"--config", cfg}); code != exitOK && code != exitFailed {
			return code
		}
		if i == 1 {
			if err := waitJobsFinished(ctx, srv, ns); err != nil {
				errorf(env, "demo: %v", err)
				return exitFailed
			}
		}
	}
	if err := printJobs(ctx, env, srv, ns, node); err != nil {
		errorf(env, "demo: %v", err)
		return exitFailed
	}
	fmt.Fprintf(env.stdout, "DEMO: tags now in %s/demo/driver-toolkit-kube: %v\n", d.regHost, d.reg.Tags("demo/driver-toolkit-kube"))
	return exitOK
}

// kubeSetup makes the namespace and the Secrets a deployment would have
// (deploy/kubernetes-build): the push secret and the RHSM entitlement,
// which reach the build pods only as mounted Secrets.
func kubeSetup(ctx context.Context, srv *kubeapi.Server, ns string) error {
	if err := srv.Namespace(ctx, ns); err != nil {
		return err
	}
	core, err := corev1client.NewForConfig(srv.Admin)
	if err != nil {
		return err
	}
	for _, s := range []*corev1.Secret{
		{ObjectMeta: metav1.ObjectMeta{Name: "push"}, Type: corev1.SecretTypeDockerConfigJson,
			Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":{}}`)}},
		{ObjectMeta: metav1.ObjectMeta{Name: "rhsm"}, StringData: map[string]string{"org": "demo-org", "activation-key": "demo-activation-key"}},
	} {
		if _, err := core.Secrets(ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("creating secret %s: %w", s.Name, err)
		}
	}
	return nil
}

// waitJobsFinished waits, by asking the API server, until every Job of
// dtkbot's in ns has finished (the node stand-in runs them on its own
// time), for at most two minutes.
func waitJobsFinished(ctx context.Context, srv *kubeapi.Server, ns string) error {
	batch, err := batchv1client.NewForConfig(srv.Admin)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		jobs, err := batch.Jobs(ns).List(ctx, metav1.ListOptions{LabelSelector: kubebuild.Selector})
		running := 0
		if err == nil {
			for _, j := range jobs.Items {
				if !slices.ContainsFunc(j.Status.Conditions, func(c batchv1.JobCondition) bool {
					return c.Status == corev1.ConditionTrue && (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed)
				}) {
					running++
				}
			}
			if running == 0 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d build Jobs still running after 2 minutes (%v)", running, err)
		case <-tick.C:
		}
	}
}

// printJobs lists dtkbot's Jobs as `kubectl get jobs -l <selector>` would,
// with the annotations that say what each builds.
func printJobs(ctx context.Context, env *cliEnv, srv *kubeapi.Server, ns string, node *kubenode.Node) error {
	batch, err := batchv1client.NewForConfig(srv.Admin)
	if err != nil {
		return err
	}
	jobs, err := batch.Jobs(ns).List(ctx, metav1.ListOptions{LabelSelector: kubebuild.Selector})
	if err != nil {
		return fmt.Errorf("listing the Jobs: %w", err)
	}
	if len(jobs.Items) == 0 {
		return errors.New("the passes created no Job")
	}
	sort.Slice(jobs.Items, func(i, j int) bool { return jobs.Items[i].Name < jobs.Items[j].Name })
	fmt.Fprintf(env.stdout, "DEMO: kubectl get jobs -n %s -l %s   (one Job per kind, stream, arch, kernel and attempt)\n", ns, kubebuild.Selector)
	for _, j := range jobs.Items {
		status := "running"
		for _, c := range j.Status.Conditions {
			if c.Status == corev1.ConditionTrue && (c.Type == "Complete" || c.Type == "Failed") {
				status = string(c.Type)
			}
		}
		a := j.Annotations
		fmt.Fprintf(env.stdout, "DEMO:   %s  %s  kind=%s kernel=%s arch=%s builds=%d\n", j.Name, status,
			a[kubebuild.AnnotKind], a[kubebuild.AnnotKernelFull], a[kubebuild.AnnotArch], node.Builds(j.Name))
	}
	return nil
}
