// Package kubenode plays the nodes of a cluster with no kubelet and no
// controller manager (internal/kubeapi), through the API only: it watches
// dtkbot's build Jobs, makes each one's pod as the job controller would,
// "builds" (pushes a small DTK-shaped image, as internal/citest does, at
// the Job's dtkbot.io/image reference), and writes the pod's and the Job's
// status as those controllers do (status subresources, the Job's
// conditions in the order batch/v1 validation wants them). Its kubelet
// (kubeapi.Server.Kubelet) serves the pods' logs to the API server.
//
// It is the stand-in of kubebuild's tests and of `dtkbot demo`. It reads
// Jobs by the annotations kubebuild writes (their names are repeated here,
// and a kubebuild test holds them equal: kubebuild's own tests import this
// package, so it cannot import kubebuild).
package kubenode

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/distribution/reference"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	batchv1client "k8s.io/client-go/kubernetes/typed/batch/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"

	"github.com/dtkbot/dtkbot/internal/kubeapi"
	"github.com/dtkbot/dtkbot/internal/payloadtest"
)

// The annotations of a dtkbot build Job the node reads (kubebuild's
// AnnotImage, AnnotKernelFull, AnnotAttempt).
const (
	AnnotImage      = "dtkbot.io/image"
	AnnotKernelFull = "dtkbot.io/kernel-full"
	AnnotAttempt    = "dtkbot.io/attempt"
)

// Options say which Jobs the node runs and what it pushes to.
type Options struct {
	// Namespace and Selector (a label selector) choose the Jobs.
	Namespace, Selector string
	// Name is the Node's name (default node-<namespace>).
	Name string
	// World pushes the built images (to the registry the Jobs name).
	World *payloadtest.World
	// Errorf is told what went wrong while the node runs (a test's
	// t.Errorf); Logf what it retries. Either may be nil.
	Errorf, Logf func(format string, args ...any)
}

// Node is one node stand-in; Stop ends it.
type Node struct {
	opts  Options
	batch batchv1client.BatchV1Interface
	core  corev1client.CoreV1Interface

	// holding is held while a held build starts (see ReleaseBuild).
	holding sync.Mutex
	mu      sync.Mutex
	// fail maps "kernel-full/attempt" to a build that fails.
	fail map[string]failure
	// logs are the pods' logs, by pod name; containers the pods'
	// containers' names.
	logs       map[string]string
	containers map[string]string
	// hold are kernels whose builds do not finish until released; held
	// are those builds, by kernel.
	hold map[string]bool
	held map[string]heldBuild
	// started counts the builds started per Job name.
	started map[string]int

	cancel      context.CancelFunc
	done        chan struct{}
	stopKubelet func()
}

// failure is a failing build: its log, and whether the container leaves
// it as its termination message (a container killed at its deadline does
// not: then only the kubelet has it).
type failure struct {
	log     string
	message bool
}

// Start registers the node and its kubelet and starts watching Jobs; it
// returns once the watch is established (or ctx ends).
func Start(ctx context.Context, s *kubeapi.Server, opts Options) (*Node, error) {
	if opts.Name == "" {
		opts.Name = "node-" + opts.Namespace
	}
	n := &Node{opts: opts, fail: map[string]failure{}, logs: map[string]string{}, containers: map[string]string{},
		hold: map[string]bool{}, held: map[string]heldBuild{}, started: map[string]int{}, done: make(chan struct{})}
	var err error
	if n.batch, err = batchv1client.NewForConfig(s.Admin); err != nil {
		return nil, err
	}
	if n.core, err = corev1client.NewForConfig(s.Admin); err != nil {
		return nil, err
	}
	n.stopKubelet, err = s.Kubelet(ctx, opts.Name, func(namespace, pod, c string) (string, bool) {
		n.mu.Lock()
		defer n.mu.Unlock()
		log, ok := n.logs[pod]
		return log, ok && namespace == n.opts.Namespace && c == n.containers[pod]
	})
	if err != nil {
		return nil, err
	}
	loopCtx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	ready := make(chan struct{})
	go func() {
		defer close(n.done)
		n.loop(loopCtx, ready)
	}()
	select {
	case <-ready:
		return n, nil
	case <-ctx.Done():
		n.Stop()
		return nil, fmt.Errorf("the node stand-in could not start watching Jobs: %w", ctx.Err())
	}
}

// Stop ends the watch and removes the node.
func (n *Node) Stop() {
	n.cancel()
	<-n.done
	n.stopKubelet()
}

// FailBuild makes the build of kernelFull's attempt fail with log (left as
// the termination message too when message is true).
func (n *Node) FailBuild(kernelFull string, attempt int, log string, message bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.fail[fmt.Sprintf("%s/%d", kernelFull, attempt)] = failure{log, message}
}

// Mend undoes FailBuild: kernelFull's attempt builds again (a fixed recipe).
func (n *Node) Mend(kernelFull string, attempt int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.fail, fmt.Sprintf("%s/%d", kernelFull, attempt))
}

// HoldBuild keeps kernelFull's next build running until ReleaseBuild.
func (n *Node) HoldBuild(kernelFull string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.hold[kernelFull] = true
}

// ReleaseBuild lets a held build finish (succeed, or fail as FailBuild
// said), as its container would when it ends; false when none is held.
func (n *Node) ReleaseBuild(ctx context.Context, kernelFull string) bool {
	n.holding.Lock()
	defer n.holding.Unlock()
	n.mu.Lock()
	h, ok := n.held[kernelFull]
	delete(n.hold, kernelFull)
	delete(n.held, kernelFull)
	n.mu.Unlock()
	if !ok {
		return false
	}
	n.finish(ctx, h.job, h.pod)
	return true
}

// Builds is how many builds Job job started.
func (n *Node) Builds(job string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.started[job]
}

// heldBuild is a running build, its Job and pod.
type heldBuild struct {
	job *batchv1.Job
	pod *corev1.Pod
}

// loop lists, then watches from the list's version, again after any
// interruption, until ctx ends.
func (n *Node) loop(ctx context.Context, ready chan struct{}) {
	first := true
	for ctx.Err() == nil {
		list, err := n.batch.Jobs(n.opts.Namespace).List(ctx, metav1.ListOptions{LabelSelector: n.opts.Selector})
		if err != nil {
			if ctx.Err() == nil {
				n.logf("node: listing jobs: %v", err)
				time.Sleep(100 * time.Millisecond) // retry interval
			}
			continue
		}
		for i := range list.Items {
			n.handle(ctx, &list.Items[i])
		}
		w, err := n.batch.Jobs(n.opts.Namespace).Watch(ctx, metav1.ListOptions{LabelSelector: n.opts.Selector, ResourceVersion: list.ResourceVersion})
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
func (n *Node) handle(ctx context.Context, job *batchv1.Job) {
	if job.Status.StartTime != nil {
		return
	}
	kernelFull := job.Annotations[AnnotKernelFull]
	n.mu.Lock()
	n.started[job.Name]++
	hold := n.hold[kernelFull]
	n.mu.Unlock()
	if hold {
		// ReleaseBuild waits until the build is held: a test that saw the
		// Job start or its pod run finds its build there to release.
		n.holding.Lock()
		defer n.holding.Unlock()
	}

	now := metav1.Now()
	name := job.Name
	job.Status.StartTime, job.Status.Active = &now, 1
	job, err := n.batch.Jobs(n.opts.Namespace).UpdateStatus(ctx, job, metav1.UpdateOptions{})
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
		pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: pod.Spec.Containers[0].Name, Image: pod.Spec.Containers[0].Image, Ready: true,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}}}
		if pod, err = n.core.Pods(n.opts.Namespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
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
func (n *Node) finish(ctx context.Context, job *batchv1.Job, pod *corev1.Pod) {
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
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: pod.Spec.Containers[0].Name, Image: pod.Spec.Containers[0].Image,
		State: corev1.ContainerState{Terminated: term}}}
	if _, err := n.core.Pods(n.opts.Namespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
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
	if _, err := n.batch.Jobs(n.opts.Namespace).UpdateStatus(ctx, job, metav1.UpdateOptions{}); err != nil {
		n.errorf(ctx, "node: finishing job %s: %v", job.Name, err)
	}
}

// makePod creates the Job's pod as the job controller does (its template,
// the job-name and controller-uid labels, an owner reference), bound to
// the node.
func (n *Node) makePod(ctx context.Context, job *batchv1.Job) (*corev1.Pod, error) {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	labels := map[string]string{}
	for k, v := range job.Spec.Template.Labels {
		labels[k] = v
	}
	yes := true
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: job.Name + "-" + hex.EncodeToString(b)[:5], Namespace: n.opts.Namespace, Labels: labels, Annotations: job.Spec.Template.Annotations,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "Job", Name: job.Name, UID: job.UID, Controller: &yes, BlockOwnerDeletion: &yes}},
		},
		Spec: *job.Spec.Template.Spec.DeepCopy(),
	}
	pod.Spec.NodeName = n.opts.Name
	if len(pod.Spec.Containers) == 0 {
		return nil, fmt.Errorf("job %s has no container", job.Name)
	}
	created, err := n.core.Pods(n.opts.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return nil, err
	}
	n.mu.Lock()
	n.containers[created.Name] = created.Spec.Containers[0].Name
	n.mu.Unlock()
	return created, nil
}

// push "builds": a base layer and etc/driver-toolkit-release.json naming
// the kernel, at the Job's staging reference. It returns the digest, as
// build.sh leaves it in the termination message.
func (n *Node) push(job *batchv1.Job) (string, error) {
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
	p := n.opts.World.PushImage(reference.Path(named), tagged.Tag(), payloadtest.Image{
		OCI:    true,
		Layers: [][]byte{payloadtest.NoiseLayer("ubi", 16<<10), payloadtest.TarGz(payloadtest.File("etc/driver-toolkit-release.json", rel))},
	})
	return p.Digest.String(), nil
}

// errorf says what went wrong, unless the node is stopping.
func (n *Node) errorf(ctx context.Context, format string, args ...any) {
	if ctx.Err() == nil {
		if n.opts.Errorf != nil {
			n.opts.Errorf(format, args...)
		}
	}
}

func (n *Node) logf(format string, args ...any) {
	if n.opts.Logf != nil {
		n.opts.Logf(format, args...)
	}
}
