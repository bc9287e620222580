package demo

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
	reg      *registrytest.Registry
	regHost  string
	world    *payloadtest.World
	graphURL string
}

// kubernetes builds the DTKs of one channel with build.backend
// kubernetes: one Job per kernel in a real kube-apiserver (and etcd), the
// binaries `make kube-assets` provides, with internal/kubenode playing the
// node (no kubelet runs: it "builds" by pushing to the Job's staging
// reference). Without the binaries it says how to get them and carries on,
// unless DTKBOT_REQUIRE_TOOLS=1 (CI) asks for them.
func (d *demo) kubernetes(ctx context.Context, k demoKube) error {
	assets, err := kubeapi.Assets()
	if err != nil {
		d.say("")
		d.say("+1   build.backend kubernetes is not shown: %v", err)
		if os.Getenv("DTKBOT_REQUIRE_TOOLS") == "1" {
			return fmt.Errorf("DTKBOT_REQUIRE_TOOLS=1: %w", err)
		}
		return nil
	}
	d.say("")
	d.say("+1   build.backend kubernetes, channel stable-4.16: a real kube-apiserver and etcd on loopback")
	d.say("     (%s), and a stand-in node that runs dtkbot's Jobs (no kubelet: it", assets)
	d.say("     pushes what buildah would)")
	srv, err := kubeapi.Start(assets)
	if err != nil {
		return fmt.Errorf("starting the API server: %w", err)
	}
	defer func() { _ = srv.Stop() }()
	d.say("     The API server at %s was ready in %.1f s.", srv.Host, srv.Started.Seconds())

	const ns = "dtkbot-demo"
	setup, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := kubeSetup(setup, srv, ns); err != nil {
		return err
	}
	var nodeErr error
	node, err := kubenode.Start(setup, srv, kubenode.Options{Namespace: ns, Selector: kubebuild.Selector, World: k.world,
		Errorf: func(format string, args ...any) {
			nodeErr = fmt.Errorf(format, args...)
			fmt.Fprintf(d.log, "node: "+format+"\n", args...)
		}})
	if err != nil {
		return err
	}
	defer node.Stop()

	// The admin's token in a kubeconfig file: credentials come from files.
	recipe := filepath.Join(d.Dir, "recipe")
	files := map[string]string{
		filepath.Join(d.Dir, "kubeconfig"):     string(srv.Kubeconfig(ns)),
		filepath.Join(recipe, "Containerfile"): "# DEMO recipe: the node stand-in never runs it\nFROM registry.access.redhat.com/ubi9/ubi\n",
		filepath.Join(d.Dir, "kube-config.yaml"): fmt.Sprintf(`# DEMO config: build.backend kubernetes
state: kube-dtkbot.db
log: {level: info, format: json}
graph:
  url: %s
  channels: [stable-4.16]
registry:
  authfile: pull-secret.json
  tls_verify: false
  registries_conf: /dev/null
target:
  repository: %s/demo/driver-toolkit-kube
build:
  backend: kubernetes
  kubernetes:
    push_secret: push
    rhsm_secret: rhsm
    containerfile: recipe/Containerfile
    context: recipe
verify:
  mode: off
`, k.graphURL, k.regHost),
	}
	for p, body := range files {
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			return err
		}
	}

	// A Job's outcome is seen by the pass after the one that asked for it,
	// as a real cluster's would be: pass 1 creates the Jobs, pass 2 (once
	// they have finished) finds the images at their staging tags, verifies
	// and promotes them. The kubeconfig and namespace are given as oc
	// takes them.
	for i := 1; i <= 2; i++ {
		file := fmt.Sprintf("kube-pass-%d.txt", i)
		d.say("     $ dtkbot reconcile --config kube-config.yaml --kubeconfig kubeconfig -n %s   (pass %d)", ns, i)
		table, code, err := d.dtkbot(ctx, file, "reconcile", "--config", "kube-config.yaml", "--kubeconfig", "kubeconfig", "-n", ns)
		if err != nil {
			return err
		}
		if code != 0 && code != 1 {
			d.say("     dtkbot reconcile exited %d: see %s", code, d.log.Name())
			return errStep
		}
		d.summarisePass(table, file)
		if i == 1 {
			if err := waitJobsFinished(ctx, srv, ns); err != nil {
				return err
			}
		}
	}
	if nodeErr != nil {
		return fmt.Errorf("the node stand-in: %w", nodeErr)
	}
	if err := d.printJobs(ctx, srv, ns, node); err != nil {
		return err
	}
	d.say("     Tags now in %s/demo/driver-toolkit-kube:", k.regHost)
	d.say("       %v", k.reg.Tags("demo/driver-toolkit-kube"))
	return nil
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
func (d *demo) printJobs(ctx context.Context, srv *kubeapi.Server, ns string, node *kubenode.Node) error {
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
	d.say("     Its Jobs, a Job per kind of image, stream, arch, kernel and attempt:")
	d.say("     $ kubectl get jobs -n %s -l %s", ns, kubebuild.Selector)
	for _, j := range jobs.Items {
		status := "running"
		for _, c := range j.Status.Conditions {
			if c.Status == corev1.ConditionTrue && (c.Type == "Complete" || c.Type == "Failed") {
				status = string(c.Type)
			}
		}
		a := j.Annotations
		d.say("       %s  %s  builds=%d  (%s)", j.Name, status, node.Builds(j.Name), a[kubebuild.AnnotKind])
	}
	return nil
}
