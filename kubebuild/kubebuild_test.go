package kubebuild

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	batchv1client "k8s.io/client-go/kubernetes/typed/batch/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"

	"github.com/dtkbot/dtkbot/internal/kubenode"
	"github.com/dtkbot/dtkbot/internal/kubetest"
	"github.com/dtkbot/dtkbot/internal/loopback"
	"github.com/dtkbot/dtkbot/internal/payloadtest"
	"github.com/dtkbot/dtkbot/internal/poll"
	"github.com/dtkbot/dtkbot/internal/registrytest"
	"github.com/dtkbot/dtkbot/redact"
	"github.com/dtkbot/dtkbot/registry"
)

func TestMain(m *testing.M) { os.Exit(loopback.Run(kubetest.Main(m))) }

// Secret values the tests plant, to prove they never leak.
const (
	rhsmOrg      = "8675309"
	rhsmKey      = "s3cret-activation-key-XYZ"
	pushPassword = "push-pa55word-QRS"
	pullPassword = "pull-pa55word-TUV"
)

// fixture is a namespace with dtkbot's Secrets, a registry, and a node.
type fixture struct {
	s     *kubetest.Server
	ns    string
	reg   *registrytest.Registry
	host  string
	node  *kubenode.Node
	check *registry.Client
	opts  Options
	batch batchv1client.BatchV1Interface
	core  corev1client.CoreV1Interface
}

func setup(t *testing.T) *fixture {
	t.Helper()
	f := setupWithoutNode(t)
	f.node = startNode(t, f.s, f.ns, payloadtest.New(f.reg, f.host))
	return f
}

// setupWithoutNode is setup with no node: Jobs are made, never run.
func setupWithoutNode(t testing.TB) *fixture {
	t.Helper()
	s := kubetest.Shared(t)
	f := &fixture{s: s, ns: s.Namespace(t), reg: registrytest.New()}
	srv := f.reg.Server()
	t.Cleanup(srv.Close)
	f.host = srv.Host()
	var err error
	if f.batch, err = batchv1client.NewForConfig(s.Admin); err != nil {
		t.Fatal(err)
	}
	if f.core, err = corev1client.NewForConfig(s.Admin); err != nil {
		t.Fatal(err)
	}
	ctx := testContext(t)
	for _, sec := range []*corev1.Secret{
		dockerConfig("dtkbot-build-push", f.host, "pusher", pushPassword),
		dockerConfig("dtkbot-build-pull", "registry.redhat.io", "puller", pullPassword),
		{ObjectMeta: metav1.ObjectMeta{Name: "dtkbot-build-rhsm"}, Data: map[string][]byte{"org": []byte(rhsmOrg + "\n"), "activation-key": []byte(rhsmKey)}},
	} {
		if _, err := f.core.Secrets(f.ns).Create(ctx, sec, metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating secret %s: %v", sec.Name, err)
		}
	}
	no := false
	f.check = registry.New(registry.Options{TLSVerify: &no, RegistriesConf: "/dev/null", Attempts: 1, Timeout: 10 * time.Second})
	f.opts = Options{
		Namespace: f.ns, Image: "quay.io/buildah/stable:v1.41", ServiceAccount: "default",
		PushSecret: "dtkbot-build-push", PullSecret: "dtkbot-build-pull", RHSMSecret: "dtkbot-build-rhsm",
		Containerfile: "testdata/recipe/Containerfile", Context: "testdata/recipe",
		Timeout: 90 * time.Minute, TTLAfterFinished: 48 * time.Hour,
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("2Gi")},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("8Gi")},
		},
	}
	return f
}

func dockerConfig(name, host, user, password string) *corev1.Secret {
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
	data, _ := json.Marshal(map[string]any{"auths": map[string]any{host: map[string]string{"auth": auth}}})
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name}, Type: corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: data}}
}

func (f *fixture) builder(t *testing.T, cfg *rest.Config) *Builder {
	t.Helper()
	if cfg == nil {
		cfg = f.s.Admin
	}
	b, err := New(cfg, f.opts)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// jobName is the name of req's Job with the fixture's options.
func (f *fixture) jobName(t *testing.T, req Request) string {
	t.Helper()
	n, err := f.builder(t, nil).JobName(req)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func (f *fixture) request(kernel string, attempt int) Request {
	return Request{
		Kernel: kernel, KernelFull: kernel + ".x86_64", RTKernel: kernel, RHEL: "9.4", Stream: "rhel-9", Arch: "amd64",
		Image: f.host + "/acme/driver-toolkit:staging-" + kernel + ".x86_64", Releases: []string{"4.16.15"}, Attempt: attempt,
	}
}

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// waitOutcome waits until the outcome of req is want.
func waitOutcome(t *testing.T, b *Builder, req Request, want State) Outcome {
	t.Helper()
	var out Outcome
	poll.UntilWhy(t, "job of "+req.KernelFull+" "+string(want), 2*time.Minute, func() (bool, string) {
		var err error
		out, err = b.Outcome(context.Background(), req)
		if err != nil {
			return false, err.Error()
		}
		return out.State == want, out.String()
	})
	return out
}

func (f *fixture) jobs(t *testing.T) []batchv1.Job {
	t.Helper()
	list, err := f.batch.Jobs(f.ns).List(testContext(t), metav1.ListOptions{LabelSelector: Selector})
	if err != nil {
		t.Fatal(err)
	}
	return list.Items
}

// TestOneJobPerBuildAcrossCallsAndRestarts: the same request asked twice,
// then by a new Builder (a restarted daemon), makes one Job, built once;
// its outcome is read back and the image is at the staging reference. A
// consumer's build of the same kernel is a Job of its own.
func TestOneJobPerBuildAcrossCallsAndRestarts(t *testing.T) {
	f := setup(t)
	ctx := testContext(t)
	req := f.request("5.14.0-427.37.1.el9_4", 1)
	for i, b := range []*Builder{f.builder(t, nil), f.builder(t, nil), f.builder(t, nil)} {
		for range 2 {
			if err := b.Build(ctx, req); err != nil {
				t.Fatalf("build %d: %v", i, err)
			}
		}
	}
	out := waitOutcome(t, f.builder(t, nil), req, Succeeded)
	if jobs := f.jobs(t); len(jobs) != 1 || jobs[0].Name != f.jobName(t, req) {
		t.Fatalf("%d jobs, want one named %s", len(jobs), f.jobName(t, req))
	}
	if n := f.node.Builds(f.jobName(t, req)); n != 1 {
		t.Errorf("the node built %d times", n)
	}
	d, err := f.check.Digest(ctx, req.Image)
	if err != nil {
		t.Fatalf("the image is not at %s: %v", req.Image, err)
	}
	if out.Digest != d.String() {
		t.Errorf("the outcome says digest %q, the registry %s", out.Digest, d)
	}
	// Building again after success still makes nothing new.
	if err := f.builder(t, nil).Build(ctx, req); err != nil || len(f.jobs(t)) != 1 {
		t.Errorf("a build asked again after success: %v, %d jobs", err, len(f.jobs(t)))
	}

	kmod := req
	kmod.Consumer, kmod.DTK = "acme-nic", f.host+"/acme/driver-toolkit@"+d.String()
	kmod.Image = f.host + "/acme/acme-nic:staging-" + req.KernelFull
	if err := f.builder(t, nil).Build(ctx, kmod); err != nil {
		t.Fatal(err)
	}
	waitOutcome(t, f.builder(t, nil), kmod, Succeeded)
	job, err := f.batch.Jobs(f.ns).Get(ctx, f.jobName(t, kmod), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{AnnotImage: kmod.Image, AnnotKernelFull: kmod.KernelFull, AnnotArch: "amd64", AnnotKind: "acme-nic",
		AnnotAttempt: "1", AnnotDTKImage: kmod.DTK}
	for k, v := range want {
		if job.Annotations[k] != v {
			t.Errorf("annotation %s = %q, want %q", k, job.Annotations[k], v)
		}
	}
	if len(f.jobs(t)) != 2 {
		t.Errorf("%d jobs after the consumer's build, want 2", len(f.jobs(t)))
	}
	// The RT kernel's image of the same consumer: a Job of its own, which
	// says its variant and builds for the variant's uname -r.
	rt := kmod
	rt.Variant, rt.KernelFull = "rt", kmod.KernelFull+"+rt"
	rt.Image = f.host + "/acme/acme-nic:staging-" + req.KernelFull + "_rt"
	if err := f.builder(t, nil).Build(ctx, rt); err != nil {
		t.Fatal(err)
	}
	rtJob, err := f.batch.Jobs(f.ns).Get(ctx, f.jobName(t, rt), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	args := strings.Join(rtJob.Spec.Template.Spec.Containers[0].Args, " ") + strings.Join(rtJob.Spec.Template.Spec.Containers[0].Command, " ")
	if rtJob.Name == job.Name || rtJob.Annotations[AnnotKernelVariant] != "rt" || job.Annotations[AnnotKernelVariant] != "default" ||
		!strings.Contains(args, "KERNEL_VARIANT=rt") || !strings.Contains(args, "KERNEL_FULL_VERSION="+rt.KernelFull) {
		t.Errorf("the RT image's Job %s: annotations %v, args %s", rtJob.Name, rtJob.Annotations, args)
	}
	for _, v := range job.Spec.Template.Spec.Volumes {
		if v.Secret != nil && v.Secret.SecretName == "dtkbot-build-rhsm" {
			t.Error("a consumer's build mounts the RHSM secret: it is built FROM the DTK and needs no entitlement")
		}
	}
}

// TestFailedJobIsReportedRedactedAndRetriedAsANewJob: a failed build reads
// as failed, with the Job's reason and a log tail that holds no URL path,
// no query and no secret; the next attempt is a new Job, which succeeds.
func TestFailedJobIsReportedRedactedAndRetriedAsANewJob(t *testing.T) {
	f := setup(t)
	ctx := testContext(t)
	req := f.request("5.14.0-503.11.1.el9_5", 1)
	var log strings.Builder
	for i := range 30 {
		log.WriteString("STEP " + string(rune('a'+i%26)) + ": noise line\n")
	}
	log.WriteString("+ subscription-manager register --org=" + rhsmOrg + " --activationkey=" + rhsmKey + "\n")
	log.WriteString("Errors during downloading metadata for repository 'rhel-9-for-x86_64-baseos-rpms':\n")
	log.WriteString("  - Curl error (6): https://cdn.redhat.com/content/dist/rhel9/9.5/x86_64/baseos/os/repodata/repomd.xml?sig=abc123secretsig&exp=1 [Could not resolve host]\n")
	log.WriteString("pushing with " + base64.StdEncoding.EncodeToString([]byte("pusher:"+pushPassword)) + " and Authorization: Bearer eyJhbGciOiJSUzI1NiJ9.payload.sig\n")
	log.WriteString("Error: building at STEP \"RUN dnf -y install kernel-devel-5.14.0-503.11.1.el9_5\": exit status 1\n")
	f.node.FailBuild(req.KernelFull, 1, log.String(), true)

	b := f.builder(t, nil)
	if err := b.Build(ctx, req); err != nil {
		t.Fatal(err)
	}
	out := waitOutcome(t, b, req, Failed)
	t.Logf("failed: %s", out)
	if !strings.Contains(out.Detail, batchv1.JobReasonBackoffLimitExceeded) || !strings.Contains(out.Detail, "exited 1") {
		t.Errorf("detail %q: want the Job's reason and the exit code", out.Detail)
	}
	tail := out.LogTail
	for _, leak := range []string{rhsmOrg, rhsmKey, pushPassword, "/content/dist", "repomd.xml", "abc123secretsig", "eyJhbGciOiJSUzI1NiJ9",
		base64.StdEncoding.EncodeToString([]byte("pusher:" + pushPassword))} {
		if strings.Contains(tail, leak) || strings.Contains(out.String(), leak) {
			t.Errorf("the log tail shows %q:\n%s", leak, tail)
		}
	}
	for _, keep := range []string{"https://cdn.redhat.com", "Curl error (6)", "kernel-devel-5.14.0-503.11.1.el9_5", "exit status 1"} {
		if !strings.Contains(tail, keep) {
			t.Errorf("the log tail lost %q:\n%s", keep, tail)
		}
	}
	if n := strings.Count(tail, "\n") + 1; n > redact.OutputLines || len(tail) > redact.OutputMax+3 {
		t.Errorf("log tail of %d lines, %d bytes", n, len(tail))
	}
	if _, err := f.check.Digest(ctx, req.Image); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("a failed build left an image: %v", err)
	}

	next := req
	next.Attempt = 2
	if f.jobName(t, next) == f.jobName(t, req) {
		t.Fatal("the next attempt has the same Job name")
	}
	if err := b.Build(ctx, next); err != nil {
		t.Fatal(err)
	}
	waitOutcome(t, b, next, Succeeded)
	if got := len(f.jobs(t)); got != 2 {
		t.Errorf("%d jobs, want one per attempt (2)", got)
	}
	// The first attempt still reads as failed: its Job is its own.
	if o, err := b.Outcome(ctx, req); err != nil || o.State != Failed {
		t.Errorf("attempt 1 now reads %v, %v", o, err)
	}
}

// TestDeletedJobIsGoneNotBuilt: a Job deleted while it runs reads as gone,
// never as succeeded; a request never made reads the same.
func TestDeletedJobIsGoneNotBuilt(t *testing.T) {
	f := setup(t)
	ctx := testContext(t)
	req := f.request("5.14.0-570.12.1.el9_6", 1)
	f.node.HoldBuild(req.KernelFull)
	b := f.builder(t, nil)
	if err := b.Build(ctx, req); err != nil {
		t.Fatal(err)
	}
	running := waitOutcome(t, b, req, Running)
	poll.UntilWhy(t, "the pod running", 2*time.Minute, func() (bool, string) {
		o, err := b.Outcome(ctx, req)
		return err == nil && strings.Contains(o.Detail, "running"), o.String()
	})
	t.Logf("while held: %s", running)
	policy := metav1.DeletePropagationBackground
	if err := f.batch.Jobs(f.ns).Delete(ctx, f.jobName(t, req), metav1.DeleteOptions{PropagationPolicy: &policy}); err != nil {
		t.Fatal(err)
	}
	out := waitOutcome(t, b, req, Gone)
	if out.Digest != "" {
		t.Errorf("a gone Job has a digest %q", out.Digest)
	}
	never := f.request("5.14.0-1.el9_6", 1)
	if o, err := b.Outcome(ctx, never); err != nil || o.State != Gone {
		t.Errorf("a Job never made reads %v, %v", o, err)
	}
}

// TestSecretsOnlyAsVolumes: no Secret's content and no path a Secret is
// mounted at appears in any container's command, args or env, in the Job
// or the pod made from it; the Secrets are volumes of the configured names.
func TestSecretsOnlyAsVolumes(t *testing.T) {
	f := setup(t)
	ctx := testContext(t)
	req := f.request("5.14.0-427.40.1.el9_4", 1)
	if err := f.builder(t, nil).Build(ctx, req); err != nil {
		t.Fatal(err)
	}
	job, err := f.batch.Jobs(f.ns).Get(ctx, f.jobName(t, req), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var forbidden []string
	secrets, err := f.core.Secrets(f.ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets.Items {
		for _, v := range s.Data {
			forbidden = append(forbidden, strings.TrimSpace(string(v)))
		}
	}
	forbidden = append(forbidden, rhsmOrg, rhsmKey, pushPassword, pullPassword, secretsDir)
	mounted := map[string]bool{}
	for _, v := range job.Spec.Template.Spec.Volumes {
		if v.Secret != nil {
			mounted[v.Secret.SecretName] = true
		}
	}
	for _, s := range []string{"dtkbot-build-push", "dtkbot-build-pull", "dtkbot-build-rhsm"} {
		if !mounted[s] {
			t.Errorf("secret %s is not a volume of the pod", s)
		}
	}
	poll.UntilWhy(t, "the node's pod", 2*time.Minute, func() (bool, string) {
		pods, err := f.core.Pods(f.ns).List(ctx, metav1.ListOptions{LabelSelector: batchv1.JobNameLabel + "=" + job.Name})
		return err == nil && len(pods.Items) == 1, "no pod"
	})
	pods, _ := f.core.Pods(f.ns).List(ctx, metav1.ListOptions{LabelSelector: batchv1.JobNameLabel + "=" + job.Name})
	for where, spec := range map[string]corev1.PodSpec{"job template": job.Spec.Template.Spec, "pod": pods.Items[0].Spec} {
		for _, c := range append(spec.InitContainers, spec.Containers...) {
			for _, m := range c.VolumeMounts {
				if strings.HasPrefix(m.Name, "secret-") {
					forbidden = append(forbidden, m.MountPath)
				}
			}
			var seen []string
			seen = append(seen, c.Command...)
			seen = append(seen, c.Args...)
			for _, e := range c.Env {
				seen = append(seen, e.Name+"="+e.Value)
				if e.ValueFrom != nil {
					t.Errorf("%s: container %s takes env %s from a reference", where, c.Name, e.Name)
				}
			}
			if len(c.EnvFrom) > 0 {
				t.Errorf("%s: container %s has envFrom", where, c.Name)
			}
			for _, s := range seen {
				for _, bad := range forbidden {
					if bad != "" && strings.Contains(s, bad) {
						t.Errorf("%s: container %s shows %q in %q", where, c.Name, bad, s)
					}
				}
			}
		}
	}
	// Nor in any annotation or label, nor in the recipe's ConfigMap.
	all, _ := json.Marshal(job)
	cms, err := f.core.ConfigMaps(f.ns).List(ctx, metav1.ListOptions{LabelSelector: LabelManagedBy + "=dtkbot"})
	if err != nil || len(cms.Items) != 1 {
		t.Fatalf("recipe config maps: %v, %d", err, len(cms.Items))
	}
	cm, _ := json.Marshal(cms.Items[0])
	for _, bad := range []string{rhsmOrg, rhsmKey, pushPassword, pullPassword} {
		if strings.Contains(string(all), bad) || strings.Contains(string(cm), bad) {
			t.Errorf("%q appears in the Job or the recipe", bad)
		}
	}
	c := job.Spec.Template.Spec.Containers[0]
	if !strings.Contains(strings.Join(c.Args, " "), "--build-arg KERNEL_VERSION="+req.Kernel) || c.Args[0] != "--isolation" || c.Args[1] != "chroot" {
		t.Errorf("args %q", c.Args)
	}
}

// TestJobSpec: what the created Job asks of the cluster.
func TestJobSpec(t *testing.T) {
	f := setup(t)
	ctx := testContext(t)
	req := f.request("5.14.0-427.41.1.el9_4", 3)
	req.Arch = "arm64"
	req.KernelFull = req.Kernel + ".aarch64"
	if err := f.builder(t, nil).Build(ctx, req); err != nil {
		t.Fatal(err)
	}
	job, err := f.batch.Jobs(f.ns).Get(ctx, f.jobName(t, req), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s := job.Spec
	if s.BackoffLimit == nil || *s.BackoffLimit != 0 || s.ActiveDeadlineSeconds == nil || *s.ActiveDeadlineSeconds != 5400 ||
		s.TTLSecondsAfterFinished == nil || *s.TTLSecondsAfterFinished != 48*3600 {
		t.Errorf("backoffLimit %v, activeDeadlineSeconds %v, ttlSecondsAfterFinished %v", s.BackoffLimit, s.ActiveDeadlineSeconds, s.TTLSecondsAfterFinished)
	}
	p := s.Template.Spec
	if p.NodeSelector[corev1.LabelArchStable] != "arm64" || p.RestartPolicy != corev1.RestartPolicyNever ||
		p.AutomountServiceAccountToken == nil || *p.AutomountServiceAccountToken {
		t.Errorf("pod spec: nodeSelector %v, restartPolicy %s, automount %v", p.NodeSelector, p.RestartPolicy, p.AutomountServiceAccountToken)
	}
	c := p.Containers[0]
	if c.Image != f.opts.Image || c.Resources.Requests.Cpu().String() != "1" || c.Resources.Limits.Memory().String() != "8Gi" ||
		c.TerminationMessagePolicy != corev1.TerminationMessageFallbackToLogsOnError {
		t.Errorf("container: image %s, resources %v, termination message %s", c.Image, c.Resources, c.TerminationMessagePolicy)
	}
	if !strings.Contains(strings.Join(c.Args, " "), "--platform linux/arm64") {
		t.Errorf("args %q", c.Args)
	}
	if job.Annotations[AnnotAttempt] != "3" || job.Labels[LabelKind] != "dtk" || job.Labels[LabelManagedBy] != "dtkbot" {
		t.Errorf("annotations %v labels %v", job.Annotations, job.Labels)
	}
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	if env["STORAGE_DRIVER"] != "vfs" || env["DTKBOT_IMAGE"] != req.Image {
		t.Errorf("env %v", env)
	}
	// The recipe volume holds the script, the Containerfile and every
	// context file (a binary one too), at their paths.
	cm, err := f.core.ConfigMaps(f.ns).Get(ctx, p.Volumes[0].ConfigMap.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	paths := map[string]bool{}
	for _, it := range p.Volumes[0].ConfigMap.Items {
		paths[it.Path] = true
		if _, ok := cm.Data[it.Key]; !ok {
			if _, ok := cm.BinaryData[it.Key]; !ok {
				t.Errorf("item %s: no key %s in the ConfigMap", it.Path, it.Key)
			}
		}
	}
	for _, want := range []string{"build.sh", "Containerfile", "context/Containerfile", "context/files/driver-toolkit-release.json", "context/files/blob.bin"} {
		if !paths[want] {
			t.Errorf("the recipe volume lacks %s (has %v)", want, paths)
		}
	}
	// A ConfigMap someone edited is put back.
	cm.Data[keyOf("Containerfile")] = "FROM scratch\n"
	if _, err := f.core.ConfigMaps(f.ns).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	again := req
	again.Attempt = 4
	if err := f.builder(t, nil).Build(ctx, again); err != nil {
		t.Fatal(err)
	}
	cm, _ = f.core.ConfigMaps(f.ns).Get(ctx, cm.Name, metav1.GetOptions{})
	if want, _ := os.ReadFile("testdata/recipe/Containerfile"); cm.Data[keyOf("Containerfile")] != string(want) {
		t.Errorf("the edited recipe was not put back")
	}
}

// deployRules are the rules of the Role deploy/ gives dtkbot.
func deployRules(t *testing.T) []rbacv1.PolicyRule {
	t.Helper()
	fh, err := os.Open("../deploy/kubernetes/kubernetes-build/build-namespace/rbac.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	dec := yaml.NewDecoder(fh)
	for {
		var doc struct {
			Kind  string `yaml:"kind"`
			Rules []struct {
				APIGroups     []string `yaml:"apiGroups"`
				Resources     []string `yaml:"resources"`
				ResourceNames []string `yaml:"resourceNames"`
				Verbs         []string `yaml:"verbs"`
			} `yaml:"rules"`
		}
		if err := dec.Decode(&doc); err != nil {
			if errors.Is(err, io.EOF) {
				t.Fatal("no Role in deploy/kubernetes/kubernetes-build/build-namespace/rbac.yaml")
			}
			t.Fatal(err)
		}
		if doc.Kind != "Role" {
			continue
		}
		var out []rbacv1.PolicyRule
		for _, r := range doc.Rules {
			out = append(out, rbacv1.PolicyRule{APIGroups: r.APIGroups, Resources: r.Resources, ResourceNames: r.ResourceNames, Verbs: r.Verbs})
		}
		return out
	}
}

// TestRBAC: with the Role deploy/ ships, a build and its outcome work;
// without one of its rules, the error names the verb, the resource, the
// namespace and the Role rule that is missing.
func TestRBAC(t *testing.T) {
	f := setup(t)
	ctx := testContext(t)
	rules := deployRules(t)
	t.Run("the deploy Role is enough", func(t *testing.T) {
		b := f.builder(t, f.s.User(t, f.ns, rules...))
		req := f.request("5.14.0-427.42.1.el9_4", 1)
		if err := b.Build(ctx, req); err != nil {
			t.Fatal(err)
		}
		waitOutcome(t, b, req, Succeeded)
		// A build killed without a termination message: its log comes
		// from the kubelet, through pods/log.
		failing := f.request("5.14.0-427.43.1.el9_4", 1)
		f.node.FailBuild(failing.KernelFull, 1, "STEP 3/9: RUN dnf -y install kernel-devel\nsubscription-manager register --activationkey="+rhsmKey+"\nkilled at the deadline\n", false)
		if err := b.Build(ctx, failing); err != nil {
			t.Fatal(err)
		}
		out := waitOutcome(t, b, failing, Failed)
		if !strings.Contains(out.LogTail, "killed at the deadline") || strings.Contains(out.LogTail, rhsmKey) {
			t.Errorf("the log read through pods/log: %q", out.LogTail)
		}
	})
	without := func(resource, verb string) []rbacv1.PolicyRule {
		var out []rbacv1.PolicyRule
		for _, r := range rules {
			r := *r.DeepCopy()
			for i, res := range r.Resources {
				if res == resource {
					var verbs []string
					for _, v := range r.Verbs {
						if v != verb {
							verbs = append(verbs, v)
						}
					}
					if len(r.Resources) == 1 {
						r.Verbs = verbs
					} else {
						r.Resources = append(r.Resources[:i:i], r.Resources[i+1:]...)
						out = append(out, rbacv1.PolicyRule{APIGroups: r.APIGroups, Resources: []string{resource}, ResourceNames: r.ResourceNames, Verbs: verbs})
					}
					break
				}
			}
			if len(r.Verbs) > 0 {
				out = append(out, r)
			}
		}
		return out
	}
	for i, tc := range []struct {
		resource, verb, group string
		// where the denial shows: in Build, in Outcome, or (a log the
		// outcome could not read) in the outcome's log tail
		where string
	}{
		{"jobs", "create", "batch", "build"},
		{"jobs", "get", "batch", "outcome"}, // Build creates directly: AlreadyExists answers "asked before?"
		{"configmaps", "create", `""`, "build"},
		{"secrets", "get", `""`, "build"},
		{"pods", "list", `""`, "outcome"},
		{"pods/log", "get", `""`, "log tail"},
	} {
		t.Run("without "+tc.verb+" "+tc.resource, func(t *testing.T) {
			b := f.builder(t, f.s.User(t, f.ns, without(tc.resource, tc.verb)...))
			req := f.request("5.14.0-427.50."+string(rune('1'+i))+".el9_4", 1)
			f.node.FailBuild(req.KernelFull, 1, "no termination message\n", false)
			err := b.Build(ctx, req)
			if tc.where != "build" {
				if err != nil {
					t.Fatal(err)
				}
				if tc.where == "outcome" {
					_, err = b.Outcome(ctx, req)
				} else if out := waitOutcome(t, b, req, Failed); out.LogTail != "" {
					err = errors.New(out.LogTail)
				}
			}
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			t.Logf("%s", msg)
			for _, want := range []string{gerund(tc.verb) + " " + tc.resource, "in namespace " + f.ns, "forbidden",
				"{apiGroups: [" + tc.group + "], resources: [" + tc.resource + "], verbs: [" + tc.verb + "]}", "Role"} {
				if !strings.Contains(msg, want) {
					t.Errorf("the error lacks %q:\n%s", want, msg)
				}
			}
		})
	}
}
