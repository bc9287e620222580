// Package kubebuild builds images in a Kubernetes cluster: one batch/v1 Job
// per image kind (the DTK, or a consumer), stream, arch, kernel and attempt,
// running buildah on the recipe from a ConfigMap and pushing to the staging
// reference. It also reads a build's outcome back (running, succeeded,
// failed with a redacted log tail, or gone).
//
// It never decides whether a build is needed, never retries (a Job has
// backoffLimit 0: dtkbot retries with its own backoff, as a new attempt and
// so a new Job), and never takes a Job's word for an image: the image at the
// staging reference is the truth, as for every backend. Secrets reach the
// build only as Secret volumes, never in a container's env or args.
package kubebuild

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	batchv1client "k8s.io/client-go/kubernetes/typed/batch/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/flowcontrol"

	"github.com/dtkbot/dtkbot/builder"
)

// Request is what a build is asked for.
type Request = builder.Request

// Security is how the build pod is allowed to run buildah.
type Security string

const (
	// Rootless runs buildah as an unprivileged user (1000) that makes its
	// own user namespace: it needs privilege escalation (newuidmap and
	// newgidmap are setuid), SETUID and SETGID, and seccomp and AppArmor
	// unconfined (unshare and mount inside that namespace).
	Rootless Security = "rootless"
	// UserNamespace runs the pod in a user namespace of its own
	// (hostUsers: false), still as user 1000 with SETUID and SETGID:
	// root in the pod is no one on the node.
	UserNamespace Security = "user-namespace"
	// Privileged runs the container privileged (as user 1000): what
	// clusters allow when they allow neither of the above.
	Privileged Security = "privileged"
)

// Options configure a Builder.
type Options struct {
	// Namespace the Jobs, ConfigMaps and Secrets are in.
	Namespace string
	// Image is buildah's image (default DefaultImage).
	Image string
	// ServiceAccount runs the build pods ("": the namespace's default);
	// its token is never mounted.
	ServiceAccount string
	// PushSecret, PullSecret are kubernetes.io/dockerconfigjson Secrets
	// (key .dockerconfigjson): the push to the staging reference, and
	// pulls (the base image). RHSMSecret holds keys org and
	// activation-key, for DTK builds. Each is optional.
	PushSecret, PullSecret, RHSMSecret string
	// Containerfile and Context are the recipe on this machine, copied
	// into a ConfigMap.
	Containerfile, Context string
	// BaseImage, ExtraArgs and TLSVerify are as for the podman backend.
	BaseImage string
	ExtraArgs []string
	TLSVerify *bool
	// Resources of the build container.
	Resources corev1.ResourceRequirements
	// Timeout is the Job's activeDeadlineSeconds (build.timeout).
	Timeout time.Duration
	// TTLAfterFinished is how long a finished Job stays (its outcome is
	// read from it); 0 means DefaultTTL.
	TTLAfterFinished time.Duration
	// StorageDriver is buildah's (default vfs).
	StorageDriver string
	// Security is how buildah may run (default Rootless).
	Security Security
	// QPS and Burst bound the requests to the API server (client-go's
	// token bucket; defaults DefaultQPS and DefaultBurst).
	QPS   float32
	Burst int
	Log   zerolog.Logger
}

// Defaults.
const (
	DefaultImage         = "quay.io/buildah/stable:latest"
	DefaultTTL           = 72 * time.Hour
	DefaultStorageDriver = "vfs"
	// DefaultQPS and DefaultBurst are controller-runtime's defaults for a
	// client of the API server (pkg/client/config): client-go's own (5 and
	// 10) made a pass create about one Job a second.
	DefaultQPS   = 20
	DefaultBurst = 30
	// requestTimeout bounds each API call: no API server stalls a pass.
	requestTimeout = 30 * time.Second
)

// Builder creates build Jobs and reads their outcomes.
type Builder struct {
	opts  Options
	batch batchv1client.BatchV1Interface
	core  corev1client.CoreV1Interface

	mu   sync.Mutex
	pass *passState
}

// New returns a Builder talking to the API server of cfg.
func New(cfg *rest.Config, opts Options) (*Builder, error) {
	if opts.Namespace == "" {
		return nil, errors.New("kubernetes build backend: no namespace")
	}
	if opts.Image == "" {
		opts.Image = DefaultImage
	}
	if opts.StorageDriver == "" {
		opts.StorageDriver = DefaultStorageDriver
	}
	if opts.Security == "" {
		opts.Security = Rootless
	}
	if opts.TTLAfterFinished <= 0 {
		opts.TTLAfterFinished = DefaultTTL
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 2 * time.Hour
	}
	switch opts.Security {
	case Rootless, UserNamespace, Privileged:
	default:
		return nil, fmt.Errorf("kubernetes build backend: security %q is not one of rootless, user-namespace, privileged", opts.Security)
	}
	if opts.QPS <= 0 {
		opts.QPS = DefaultQPS
	}
	if opts.Burst <= 0 {
		opts.Burst = DefaultBurst
	}
	cfg = rest.CopyConfig(cfg)
	// One bucket for both clients (batch/v1 and core/v1 would each make
	// their own): QPS and Burst bound the backend's requests as a whole.
	cfg.QPS, cfg.Burst = opts.QPS, opts.Burst
	cfg.RateLimiter = flowcontrol.NewTokenBucketRateLimiter(opts.QPS, opts.Burst)
	if cfg.Timeout == 0 {
		cfg.Timeout = requestTimeout
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "dtkbot"
	}
	batch, err := batchv1client.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("making the batch/v1 client: %w", err)
	}
	core, err := corev1client.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("making the core/v1 client: %w", err)
	}
	return &Builder{opts: opts, batch: batch, core: core, pass: newPassState()}, nil
}

// Build implements builder.Builder: it makes sure the Job of req exists,
// creating it directly: a Job already there (asked before, by this process
// or an earlier one) answers AlreadyExists, which is success. What every
// Job of a pass shares is asked once a pass: the Secrets it mounts, the
// recipe's ConfigMap. So a pass's Jobs cost one API request each.
func (b *Builder) Build(ctx context.Context, req Request) error {
	if err := checkRequest(req); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*requestTimeout)
	defer cancel()
	pass := b.current()
	rec, err := pass.recipe(b.opts)
	if err != nil {
		return fmt.Errorf("reading the recipe of %s: %w", req.Image, err)
	}
	if err := b.checkSecrets(ctx, pass, req); err != nil {
		return err
	}
	cm := rec.configMap(b.opts.Namespace, kindOf(req))
	if err := pass.once("configmap "+cm.Name, func() error { return b.ensureConfigMap(ctx, cm) }); err != nil {
		return err
	}
	name := b.jobName(req, rec)
	job, err := b.job(req, name, cm.Name, rec)
	if err != nil {
		return err
	}
	ns := b.opts.Namespace
	switch _, err := b.batch.Jobs(ns).Create(ctx, job, metav1.CreateOptions{}); {
	case err == nil:
		b.opts.Log.Info().Str("job", name).Str("namespace", ns).Str("image", req.Image).Msg("build job created")
		return nil
	case apierrors.IsAlreadyExists(err):
		b.opts.Log.Debug().Str("job", name).Str("image", req.Image).Msg("build job exists: asked before")
		return nil
	default:
		return explain(err, "create", "batch", "jobs", ns, name)
	}
}

// BeginPass implements builder.PassScoped: what a pass learnt of the
// cluster (the Secrets there, the recipe stored) is asked again in the
// next, so a Secret deleted or a recipe edited between passes is seen.
func (b *Builder) BeginPass() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.pass = newPassState()
}

func (b *Builder) current() *passState {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.pass
}

// passState is what a Builder asks of the cluster (and reads of its
// recipe) once a pass, for every Job of the pass.
type passState struct {
	mu sync.Mutex
	// rec is the recipe, read on first use.
	rec    *recipe
	recErr error
	// done are the steps done this pass (a ConfigMap stored), and their
	// outcomes; secrets are the Secrets read, by name.
	done    map[string]error
	secrets map[string]secretSeen
}

// secretSeen is what one read of a Secret found.
type secretSeen struct {
	data map[string][]byte
	err  error
}

func newPassState() *passState {
	return &passState{done: map[string]error{}, secrets: map[string]secretSeen{}}
}

func (p *passState) recipe(opts Options) (*recipe, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.rec == nil && p.recErr == nil {
		p.rec, p.recErr = readRecipe(opts.Containerfile, opts.Context)
	}
	return p.rec, p.recErr
}

// once runs step the first time what is asked this pass, and remembers
// its outcome unless the API server gave no answer (a timeout, a
// connection cut): that one is asked again.
func (p *passState) once(what string, step func() error) error {
	p.mu.Lock()
	err, ok := p.done[what]
	p.mu.Unlock()
	if ok {
		return err
	}
	err = step()
	if err == nil || answered(err) {
		p.mu.Lock()
		p.done[what] = err
		p.mu.Unlock()
	}
	return err
}

// answered tells an API server's answer (not found, forbidden, invalid)
// from no answer.
func answered(err error) bool {
	var status apierrors.APIStatus
	return errors.As(err, &status) && !apierrors.IsTimeout(err) && !apierrors.IsServerTimeout(err) &&
		!apierrors.IsTooManyRequests(err) && !apierrors.IsInternalError(err) && !apierrors.IsServiceUnavailable(err)
}

// checkRequest refuses what would make a Job that cannot build.
func checkRequest(req Request) error {
	switch {
	case req.Image == "":
		return fmt.Errorf("build request for kernel %s names no image", req.Kernel)
	case req.KernelFull == "" || req.Kernel == "":
		return fmt.Errorf("build request for %s names no kernel", req.Image)
	case !validArch(req.Arch):
		return fmt.Errorf("build request for %s: arch %q is not a node arch (amd64, arm64, s390x, ppc64le)", req.Image, req.Arch)
	case req.Attempt < 0:
		return fmt.Errorf("build request for %s: attempt %d", req.Image, req.Attempt)
	}
	return nil
}

func validArch(a string) bool {
	switch a {
	case "amd64", "arm64", "s390x", "ppc64le":
		return true
	}
	return false
}

// kindOf is what a request builds: "dtk", or the consumer's name.
func kindOf(req Request) string {
	if req.Consumer != "" {
		return req.Consumer
	}
	return "dtk"
}

// secretRef is one configured Secret and the keys the build reads from it.
type secretRef struct {
	what, name string
	keys       []string
}

// secretsFor are the Secrets a request's build mounts: a consumer's build
// is FROM the DTK and needs no RHSM entitlement.
func (b *Builder) secretsFor(req Request) []secretRef {
	var out []secretRef
	if b.opts.PushSecret != "" {
		out = append(out, secretRef{"push", b.opts.PushSecret, []string{corev1.DockerConfigJsonKey}})
	}
	if b.opts.PullSecret != "" {
		out = append(out, secretRef{"pull", b.opts.PullSecret, []string{corev1.DockerConfigJsonKey}})
	}
	if b.opts.RHSMSecret != "" && req.Consumer == "" {
		out = append(out, secretRef{"rhsm", b.opts.RHSMSecret, []string{"org", "activation-key"}})
	}
	return out
}

// checkSecrets makes sure each Secret the build mounts is there with its
// keys: a missing one would leave the pod in ContainerCreating, saying so
// only in an event. Each Secret is read once a pass.
func (b *Builder) checkSecrets(ctx context.Context, pass *passState, req Request) error {
	for _, s := range b.secretsFor(req) {
		seen := b.readSecret(ctx, pass, s.name)
		if seen.err != nil {
			if apierrors.IsNotFound(seen.err) {
				return fmt.Errorf("checking the %s secret: Secret %s is not in namespace %s (kubernetes.%s_secret)", s.what, s.name, b.opts.Namespace, s.what)
			}
			return explain(seen.err, "get", "", "secrets", b.opts.Namespace, s.name)
		}
		for _, k := range s.keys {
			if _, ok := seen.data[k]; !ok {
				return fmt.Errorf("checking the %s secret: Secret %s in namespace %s has no key %q", s.what, s.name, b.opts.Namespace, k)
			}
		}
	}
	return nil
}

// readSecret reads a Secret once a pass (again after no answer).
func (b *Builder) readSecret(ctx context.Context, pass *passState, name string) secretSeen {
	pass.mu.Lock()
	seen, ok := pass.secrets[name]
	pass.mu.Unlock()
	if ok {
		return seen
	}
	sec, err := b.core.Secrets(b.opts.Namespace).Get(ctx, name, metav1.GetOptions{})
	if err == nil {
		seen.data = sec.Data
	}
	seen.err = err
	if err == nil || answered(err) {
		pass.mu.Lock()
		pass.secrets[name] = seen
		pass.mu.Unlock()
	}
	return seen
}

// ensureConfigMap creates the recipe's ConfigMap, or puts its content back
// if someone changed it (its name is its content's hash).
func (b *Builder) ensureConfigMap(ctx context.Context, cm *corev1.ConfigMap) error {
	cms := b.core.ConfigMaps(cm.Namespace)
	_, err := cms.Create(ctx, cm, metav1.CreateOptions{})
	if err == nil || !apierrors.IsAlreadyExists(err) {
		return explain(err, "create", "", "configmaps", cm.Namespace, cm.Name)
	}
	have, err := cms.Get(ctx, cm.Name, metav1.GetOptions{})
	if err != nil {
		return explain(err, "get", "", "configmaps", cm.Namespace, cm.Name)
	}
	if sameData(have, cm) {
		return nil
	}
	have.Data, have.BinaryData = cm.Data, cm.BinaryData
	_, err = cms.Update(ctx, have, metav1.UpdateOptions{})
	return explain(err, "update", "", "configmaps", cm.Namespace, cm.Name)
}

func sameData(a, b *corev1.ConfigMap) bool {
	if len(a.Data) != len(b.Data) || len(a.BinaryData) != len(b.BinaryData) {
		return false
	}
	for k, v := range b.Data {
		if a.Data[k] != v {
			return false
		}
	}
	for k, v := range b.BinaryData {
		if string(a.BinaryData[k]) != string(v) {
			return false
		}
	}
	return true
}

// explain wraps an API error with the step and, for a denial, the Role
// rule that is missing. nil stays nil.
func explain(err error, verb, group, resource, ns, name string) error {
	if err == nil {
		return nil
	}
	step := gerund(verb) + " " + resource + " " + name + " in namespace " + ns
	if apierrors.IsForbidden(err) {
		g := group
		if g == "" {
			g = `""`
		}
		names := ""
		if resource == "secrets" {
			names = " (resourceNames may limit it to " + name + ")"
		}
		return fmt.Errorf("%s: forbidden: the Role bound to dtkbot's ServiceAccount needs the rule "+
			"{apiGroups: [%s], resources: [%s], verbs: [%s]}%s in namespace %s (deploy/kubernetes/kubernetes-build/build-namespace/rbac.yaml): %w",
			step, g, resource, verb, names, ns, err)
	}
	if apierrors.IsUnauthorized(err) {
		return fmt.Errorf("%s: the API server does not accept dtkbot's credentials (its ServiceAccount token or kubeconfig): %w", step, err)
	}
	return fmt.Errorf("%s: %w", step, err)
}

func gerund(verb string) string {
	switch verb {
	case "get":
		return "getting"
	case "list":
		return "listing"
	case "create":
		return "creating"
	case "update":
		return "updating"
	case "delete":
		return "deleting"
	}
	return verb + "ing"
}

// Labels every build Job and its pods carry: `kubectl get jobs -l
// app.kubernetes.io/managed-by=dtkbot` lists dtkbot's builds.
const (
	LabelManagedBy  = "app.kubernetes.io/managed-by"
	LabelComponent  = "app.kubernetes.io/component"
	LabelKind       = "dtkbot.io/kind"
	LabelArch       = "dtkbot.io/arch"
	AnnotImage      = "dtkbot.io/image"
	AnnotKernelFull = "dtkbot.io/kernel-full"
	AnnotArch       = "dtkbot.io/arch"
	AnnotKind       = "dtkbot.io/kind"
	AnnotAttempt    = "dtkbot.io/attempt"
	AnnotStream     = "dtkbot.io/stream"
	AnnotDTKImage   = "dtkbot.io/dtk-image"
	// AnnotKernelVariant is a consumer build's kernel variant (default,
	// rt, 64k), AnnotKernelVariants a DTK build's other kernels.
	AnnotKernelVariant  = "dtkbot.io/kernel-variant"
	AnnotKernelVariants = "dtkbot.io/kernel-variants"
)

// Selector selects dtkbot's build Jobs (and their pods).
const Selector = LabelManagedBy + "=dtkbot," + LabelComponent + "=build"

// Where the pod finds things; build.sh knows the same paths.
const (
	recipeDir  = "/var/run/dtkbot/recipe"
	secretsDir = "/var/run/dtkbot/secrets"
	workDir    = "/workspace"
	container  = "buildah"
	buildUser  = 1000 // the buildah image's "build" user
)

// job is the Job for req.
func (b *Builder) job(req Request, name, configMap string, rec *recipe) (*batchv1.Job, error) {
	kind := kindOf(req)
	// buildah bud's arguments as the podman backend passes them, with the
	// recipe where build.sh copies it and no secret: build.sh adds those.
	cmd := &builder.CommandBuilder{Command: "buildah", Containerfile: workDir + "/Containerfile", Context: workDir + "/context",
		BaseImage: b.opts.BaseImage, ExtraArgs: b.opts.ExtraArgs, TLSVerify: b.opts.TLSVerify}
	bud, _, err := cmd.Args(req)
	if err != nil {
		return nil, fmt.Errorf("building the arguments of %s: %w", req.Image, err)
	}
	args := append([]string{"--isolation", "chroot"}, bud[1:]...) // bud[0] is "bud": build.sh says it
	labels := map[string]string{LabelManagedBy: "dtkbot", LabelComponent: "build", LabelKind: kind, LabelArch: req.Arch}
	annotations := map[string]string{
		AnnotImage: req.Image, AnnotKernelFull: req.KernelFull, AnnotArch: req.Arch, AnnotKind: kind,
		AnnotAttempt: strconv.Itoa(req.Attempt), AnnotStream: req.Stream,
	}
	if req.Consumer != "" {
		annotations[AnnotDTKImage] = req.DTK
		annotations[AnnotKernelVariant] = req.KernelVariant()
	}
	if len(req.Variants) > 0 {
		annotations[AnnotKernelVariants] = strings.Join(req.Variants, " ")
	}
	tlsVerify := ""
	if b.opts.TLSVerify != nil {
		tlsVerify = strconv.FormatBool(*b.opts.TLSVerify)
	}
	env := []corev1.EnvVar{
		{Name: "DTKBOT_IMAGE", Value: req.Image},
		{Name: "DTKBOT_TLS_VERIFY", Value: tlsVerify},
		{Name: "STORAGE_DRIVER", Value: b.opts.StorageDriver},
		{Name: "BUILDAH_ISOLATION", Value: "chroot"},
		{Name: "HOME", Value: workDir + "/home"},
	}
	mounts := []corev1.VolumeMount{
		{Name: "recipe", MountPath: recipeDir, ReadOnly: true},
		{Name: "workspace", MountPath: workDir},
	}
	volumes := []corev1.Volume{
		{Name: "recipe", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: configMap}, Items: rec.items(), DefaultMode: ptr[int32](0o444)}}},
		{Name: "workspace", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
	}
	for _, s := range b.secretsFor(req) {
		items := []corev1.KeyToPath{}
		for _, k := range s.keys {
			path := k
			if k == corev1.DockerConfigJsonKey {
				path = "auth.json"
			}
			items = append(items, corev1.KeyToPath{Key: k, Path: path})
		}
		volumes = append(volumes, corev1.Volume{Name: "secret-" + s.what, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName: s.name, Items: items, DefaultMode: ptr[int32](0o444), Optional: ptr(false)}}})
		mounts = append(mounts, corev1.VolumeMount{Name: "secret-" + s.what, MountPath: secretsDir + "/" + s.what, ReadOnly: true})
	}
	sc := &corev1.SecurityContext{
		RunAsUser: ptr[int64](buildUser), RunAsNonRoot: ptr(true),
		// newuidmap and newgidmap (setuid, or file capabilities) map the
		// user namespace buildah makes for --isolation chroot.
		AllowPrivilegeEscalation: ptr(true),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}, Add: []corev1.Capability{"SETUID", "SETGID"}},
	}
	pod := corev1.PodSpec{
		RestartPolicy:                corev1.RestartPolicyNever,
		NodeSelector:                 map[string]string{corev1.LabelArchStable: req.Arch, corev1.LabelOSStable: "linux"},
		ServiceAccountName:           b.opts.ServiceAccount,
		AutomountServiceAccountToken: ptr(false),
		EnableServiceLinks:           ptr(false),
		Containers: []corev1.Container{{
			Name: container, Image: b.opts.Image,
			Command: []string{"/bin/sh", recipeDir + "/" + scriptKey},
			Args:    args, Env: env, VolumeMounts: mounts, Resources: b.opts.Resources,
			// The last lines of a failed build's log become the
			// termination message, read without a kubelet round trip;
			// a successful push writes its digest there instead.
			TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
			SecurityContext:          sc,
		}},
		Volumes: volumes,
	}
	switch b.opts.Security {
	case Rootless:
		// unshare(CLONE_NEWUSER) and mount(2) in buildah's namespace:
		// the runtimes' default seccomp and AppArmor profiles refuse both.
		sc.SeccompProfile = &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeUnconfined}
		sc.AppArmorProfile = &corev1.AppArmorProfile{Type: corev1.AppArmorProfileTypeUnconfined}
	case UserNamespace:
		pod.HostUsers = ptr(false)
	case Privileged:
		sc.Privileged = ptr(true)
		sc.Capabilities = nil
	}
	deadline := int64(b.opts.Timeout / time.Second)
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: b.opts.Namespace, Labels: labels, Annotations: annotations},
		Spec: batchv1.JobSpec{
			// dtkbot retries with its own backoff, as a new attempt.
			BackoffLimit:            ptr[int32](0),
			ActiveDeadlineSeconds:   &deadline,
			TTLSecondsAfterFinished: ptr(int32(b.opts.TTLAfterFinished / time.Second)),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: annotations},
				Spec:       pod,
			},
		},
	}, nil
}

func ptr[T any](v T) *T { return &v }

// jobNameMax is a Job name's limit: the job-name label its pods carry is
// at most 63 characters.
const jobNameMax = 63

// JobName is the name of req's Job (see jobName), with the recipe as this
// pass reads it.
func (b *Builder) JobName(req Request) (string, error) {
	rec, err := b.current().recipe(b.opts)
	if err != nil {
		return "", fmt.Errorf("reading the recipe of %s: %w", req.Image, err)
	}
	return b.jobName(req, rec), nil
}

// jobName is the deterministic name of req's Job: a readable prefix (kind,
// kernel, attempt) and a hash of everything that tells Jobs apart: what
// is built (kind, stream, arch, the kernel and its RT kernel and RHEL, the
// DTK a consumer is built FROM), where it is pushed (the staging
// reference), the attempt and its round (--retry-failed), and how (the
// recipe's content, the base image, buildah's image and extra arguments).
// So two dtkbot instances in one namespace, or a changed target or recipe,
// never take each other's Jobs for their own; it is a DNS-1123 label of at
// most 63 characters. The releases a kernel ships in are left out: they
// grow while a build runs.
func (b *Builder) jobName(req Request, rec *recipe) string {
	kind := kindOf(req)
	tls := ""
	if b.opts.TLSVerify != nil {
		tls = strconv.FormatBool(*b.opts.TLSVerify)
	}
	sum := hashOf("job", kindKey(req), req.Stream, req.Arch, req.Kernel, req.KernelFull, req.RTKernel, req.RHEL, req.DTK,
		req.Image, strconv.Itoa(req.Attempt), strconv.Itoa(req.Round),
		rec.hash(), b.opts.BaseImage, b.opts.Image, strings.Join(b.opts.ExtraArgs, "\x00"), tls)[:10]
	tail := fmt.Sprintf("-a%d-%s", req.Attempt, sum)
	k := dnsLabel(kind)
	if len(k) > 20 { // room for the kernel, the most telling part
		k = strings.TrimRight(k[:20], "-")
	}
	head := k + "-" + dnsLabel(req.KernelFull)
	if room := jobNameMax - len(tail); len(head) > room {
		head = strings.TrimRight(head[:room], "-")
	}
	return head + tail
}

// kindKey tells the DTK from a consumer that happens to be named "dtk".
func kindKey(req Request) string {
	if req.Consumer != "" {
		return "consumer:" + req.Consumer
	}
	return "dtk"
}

// dnsLabel lowers s and turns every run of other characters than [a-z0-9]
// into one dash, trimmed at both ends.
func dnsLabel(s string) string {
	var out strings.Builder
	dash := false
	for _, r := range strings.ToLower(s) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			out.WriteRune(r)
			dash = false
		} else if !dash && out.Len() > 0 {
			out.WriteByte('-')
			dash = true
		}
	}
	return strings.TrimRight(out.String(), "-")
}
