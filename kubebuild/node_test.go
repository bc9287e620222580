package kubebuild

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/distribution/reference"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	batchv1client "k8s.io/client-go/kubernetes/typed/batch/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"

	"github.com/dtkbot/dtkbot/internal/kubetest"
	"github.com/dtkbot/dtkbot/internal/payloadtest"
)

// node plays the job controller and a kubelet for the tests, through the
// API only: it watches dtkbot's Jobs, makes each one's pod, "builds" (pushes
// a small DTK-shaped image, as internal/citest does, at the Job's
// dtkbot.io/image reference), and writes the pod's and the Job's status as
// those controllers do (status subresources, the Job's conditions in the
// order batch/v1 validation wants them). Its kubelet (kubetest.Kubelet)
// serves the pods' logs to the API server.
type node struct {
	t     *testing.T
	ns    string
	batch batchv1client.BatchV1Interface
	core  corev1client.CoreV1Interface
	world *payloadtest.World

	name string

	mu sync.Mutex
	// fail maps "kernel-full/attempt" to a build that fails.
	fail map[string]failure
	// logs are the pods' logs, by pod name.
	logs map[string]string
	// hold are kernels whose builds do not finish until released; held
	// are those builds, by kernel.
	hold map[string]bool
	held map[string]heldBuild
	// started counts the builds started per Job name.
	started map[string]int
}

// heldBuild is a running build, its Job and pod.
type heldBuild struct {
	job *batchv1.Job
	pod *corev1.Pod
}

// failure is a failing build: its log, and whether the container leaves
// it as its termination message (a container killed at its deadline does
// not: then only the kubelet has it).
type failure struct {
	log     string
	message bool
}

func startNode(t *testing.T, s *kubetest.Server, ns string, world *payloadtest.World) *node {
	n := &node{t: t, ns: ns, world: world, name: "node-" + ns,
		fail: map[string]failure{}, logs: map[string]string{}, hold: map[string]bool{}, held: map[string]heldBuild{}, started: map[string]int{}}
	var err error
	if n.batch, err = batchv1client.NewForConfig(s.Admin); err != nil {
		t.Fatal(err)
	}
	if n.core, err = corev1client.NewForConfig(s.Admin); err != nil {
		t.Fatal(err)
	}
	s.Kubelet(t, n.name, func(namespace, pod, c string) (string, bool) {
		n.mu.Lock()
		defer n.mu.Unlock()
		log, ok := n.logs[pod]
		return log, ok && namespace == n.ns && c == container
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	ready := make(chan struct{})
	go func() {
		defer close(done)
		n.loop(ctx, ready)
	}()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-ready:
	case <-time.After(time.Minute):
		t.Fatal("the node stand-in could not start watching Jobs within a minute")
	}
	return n
}

func (n *node) failBuild(kernelFull string, attempt int, log string, message bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.fail[fmt.Sprintf("%s/%d", kernelFull, attempt)] = failure{log, message}
}

func (n *node) holdBuild(kernelFull string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.hold[kernelFull] = true
}

// releaseBuild lets a held build finish (succeed, or fail as failBuild
// said), as its container would when it ends.
func (n *node) releaseBuild(ctx context.Context, kernelFull string) {
	n.mu.Lock()
	h, ok := n.held[kernelFull]
	delete(n.hold, kernelFull)
	delete(n.held, kernelFull)
	n.mu.Unlock()
	if !ok {
		n.t.Fatalf("node: no held build of %s", kernelFull)
	}
	n.finish(ctx, h.job, h.pod)
}

func (n *node) builds(job string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.started[job]
}

// loop lists, then watches from the list's version, again after any
// interruption, until ctx ends.
func (n *node) loop(ctx context.Context, ready chan struct{}) {
	first := true
	for ctx.Err() == nil {
		list, err := n.batch.Jobs(n.ns).List(ctx, metav1.ListOptions{LabelSelector: Selector})
		if err != nil {
			if ctx.Err() == nil {
				n.t.Logf("node: listing jobs: %v", err)
				time.Sleep(100 * time.Millisecond) // retry interval
			}
			continue
		}
		for i := range list.Items {
			n.handle(ctx, &list.Items[i])
		}
		w, err := n.batch.Jobs(n.ns).Watch(ctx, metav1.ListOptions{LabelSelector: Selector, ResourceVersion: list.ResourceVersion})
		if err != nil {
			continue
		}
		if first {
			close(ready)
			first = false
		}
		for ev := range w.ResultChan() {
			if job, ok := ev.Object.(*batchv1.Job); ok && ev.Type == watch.Added {
				n.handle(ctx, job)
			}
		}
		w.Stop()
	}
}

// handle runs a Job that has not started.
func (n *node) handle(ctx context.Context, job *batchv1.Job) {
	if job.Status.StartTime != nil {
		return
	}
	kernelFull := job.Annotations[AnnotKernelFull]
	n.mu.Lock()
	n.started[job.Name]++
	hold := n.hold[kernelFull]
	n.mu.Unlock()

	now := metav1.Now()
	name := job.Name
	job.Status.StartTime, job.Status.Active = &now, 1
	job, err := n.batch.Jobs(n.ns).UpdateStatus(ctx, job, metav1.UpdateOptions{})
	if err != nil {
		n.errorf(ctx, "node: starting job %s: %v", name, err)
		return
	}
	pod, err := n.makePod(ctx, job)
	if err != nil {
		n.errorf(ctx, "node: making the pod of %s: %v", job.Name, err)
		return
	}
	if hold {
		pod.Status.Phase = corev1.PodRunning
		pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: container, Image: pod.Spec.Containers[0].Image, Ready: true,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}}}
		if pod, err = n.core.Pods(n.ns).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
			n.errorf(ctx, "node: pod %s running: %v", pod.Name, err)
			return
		}
		n.mu.Lock()
		n.held[kernelFull] = heldBuild{job, pod}
		n.mu.Unlock()
		return
	}
	n.finish(ctx, job, pod)
}

// finish ends a started build: the push (or the failure failBuild set),
// the pod's status, then the Job's, as the job controller writes them.
func (n *node) finish(ctx context.Context, job *batchv1.Job, pod *corev1.Pod) {
	kernelFull, attempt := job.Annotations[AnnotKernelFull], job.Annotations[AnnotAttempt]
	n.mu.Lock()
	failed, fails := n.fail[kernelFull+"/"+attempt]
	n.mu.Unlock()
	now := *job.Status.StartTime
	term := &corev1.ContainerStateTerminated{StartedAt: now, FinishedAt: metav1.Now()}
	if fails {
		pod.Status.Phase, term.ExitCode, term.Reason = corev1.PodFailed, 1, "Error"
		if failed.message {
			// FallbackToLogsOnError: the kubelet keeps the log's end.
			term.Message = failed.log
		}
		n.mu.Lock()
		n.logs[pod.Name] = failed.log
		n.mu.Unlock()
	} else {
		d, err := n.push(job)
		if err != nil {
			n.errorf(ctx, "node: pushing for %s: %v", job.Name, err)
			return
		}
		pod.Status.Phase, term.Reason, term.Message = corev1.PodSucceeded, "Completed", d
	}
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: container, Image: pod.Spec.Containers[0].Image,
		State: corev1.ContainerState{Terminated: term}}}
	if _, err := n.core.Pods(n.ns).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		n.errorf(ctx, "node: pod %s status: %v", pod.Name, err)
		return
	}
	// The job controller: the interim condition, then the final one.
	end := metav1.Now()
	job.Status.Active = 0
	if fails {
		job.Status.Failed = 1
		job.Status.Conditions = append(job.Status.Conditions,
			batchv1.JobCondition{Type: batchv1.JobFailureTarget, Status: corev1.ConditionTrue, Reason: batchv1.JobReasonBackoffLimitExceeded,
				Message: "Job has reached the specified backoff limit", LastTransitionTime: end, LastProbeTime: end},
			batchv1.JobCondition{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, Reason: batchv1.JobReasonBackoffLimitExceeded,
				Message: "Job has reached the specified backoff limit", LastTransitionTime: end, LastProbeTime: end})
	} else {
		job.Status.Succeeded, job.Status.CompletionTime = 1, &end
		job.Status.Conditions = append(job.Status.Conditions,
			batchv1.JobCondition{Type: batchv1.JobSuccessCriteriaMet, Status: corev1.ConditionTrue, Reason: batchv1.JobReasonCompletionsReached,
				Message: "Reached expected number of succeeded pods", LastTransitionTime: end, LastProbeTime: end},
			batchv1.JobCondition{Type: batchv1.JobComplete, Status: corev1.ConditionTrue, Reason: batchv1.JobReasonCompletionsReached,
				Message: "Reached expected number of succeeded pods", LastTransitionTime: end, LastProbeTime: end})
	}
	if _, err := n.batch.Jobs(n.ns).UpdateStatus(ctx, job, metav1.UpdateOptions{}); err != nil {
		n.errorf(ctx, "node: finishing job %s: %v", job.Name, err)
	}
}

// makePod creates the Job's pod as the job controller does (its template,
// the job-name and controller-uid labels, an owner reference), bound to
// the node.
func (n *node) makePod(ctx context.Context, job *batchv1.Job) (*corev1.Pod, error) {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	labels := map[string]string{}
	for k, v := range job.Spec.Template.Labels {
		labels[k] = v
	}
	yes := true
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: job.Name + "-" + hex.EncodeToString(b)[:5], Namespace: n.ns, Labels: labels, Annotations: job.Spec.Template.Annotations,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "Job", Name: job.Name, UID: job.UID, Controller: &yes, BlockOwnerDeletion: &yes}},
		},
		Spec: *job.Spec.Template.Spec.DeepCopy(),
	}
	pod.Spec.NodeName = n.name
	return n.core.Pods(n.ns).Create(ctx, pod, metav1.CreateOptions{})
}

// push "builds": a base layer and etc/driver-toolkit-release.json naming
// the kernel, at the Job's staging reference. It returns the digest, as
// build.sh leaves it in the termination message.
func (n *node) push(job *batchv1.Job) (string, error) {
	ref := job.Annotations[AnnotImage]
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return "", err
	}
	tagged, ok := named.(reference.NamedTagged)
	if !ok {
		return "", fmt.Errorf("%s has no tag", ref)
	}
	rel, _ := json.Marshal(map[string]string{"KERNEL_VERSION": job.Annotations[AnnotKernelFull]})
	p := n.world.PushImage(reference.Path(named), tagged.Tag(), payloadtest.Image{
		OCI:    true,
		Layers: [][]byte{payloadtest.NoiseLayer("ubi", 16<<10), payloadtest.TarGz(payloadtest.File("etc/driver-toolkit-release.json", rel))},
	})
	return p.Digest.String(), nil
}

// errorf fails the test, unless the node is stopping (the test is over).
func (n *node) errorf(ctx context.Context, format string, args ...any) {
	if ctx.Err() == nil {
		n.t.Errorf(format, args...)
	}
}
