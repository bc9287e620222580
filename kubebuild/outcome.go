package kubebuild

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dtkbot/dtkbot/builder"
	"github.com/dtkbot/dtkbot/redact"
)

// State is where a build Job is.
type State string

const (
	// Running: the Job exists and has not finished (its pod may still be
	// pending: Detail says).
	Running State = "running"
	// Succeeded: the Job completed; the image at the staging reference
	// remains the truth, and the pass must still find it there.
	Succeeded State = "succeeded"
	// Failed: the Job failed (its condition's reason, the pod's exit and
	// log tail in Detail and LogTail).
	Failed State = "failed"
	// Gone: there is no such Job (deleted, expired by its TTL, or never
	// made): nothing is building, and nothing says anything was built.
	Gone State = "gone"
)

// Outcome is what a build Job says of itself.
type Outcome struct {
	State State
	// Job is the Job's name, in Namespace.
	Job, Namespace string
	// Detail explains the state: the Job's failure reason and message,
	// the container's exit, or why a pod is not running yet.
	Detail string
	// LogTail is the end of a failed build's log, redacted: no URL's
	// path or query, no secret, at most redact.OutputMax bytes.
	LogTail string
	// Digest is what the push reported, if the Job succeeded.
	Digest string
}

func (o Outcome) String() string {
	s := fmt.Sprintf("job %s/%s %s", o.Namespace, o.Job, o.State)
	if o.Detail != "" {
		s += ": " + o.Detail
	}
	if o.LogTail != "" {
		s += " (log: " + strings.ReplaceAll(o.LogTail, "\n", " | ") + ")"
	}
	return s
}

// Outcome reads the state of req's Job (the same attempt's). The pass asks
// it about a requested build whose image has not appeared yet.
func (b *Builder) Outcome(ctx context.Context, req Request) (Outcome, error) {
	ns := b.opts.Namespace
	name, err := b.JobName(req)
	if err != nil {
		return Outcome{Namespace: ns}, err
	}
	out := Outcome{Job: name, Namespace: ns}
	ctx, cancel := context.WithTimeout(ctx, 3*requestTimeout)
	defer cancel()
	job, err := b.batch.Jobs(ns).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		out.State, out.Detail = Gone, "the Job is not there (deleted, expired after ttlSecondsAfterFinished, or never created)"
		return out, nil
	case err != nil:
		return out, explain(err, "get", "batch", "jobs", ns, name)
	}
	if img := job.Annotations[AnnotImage]; img != req.Image {
		// The name's hash covers the image: only a Job someone made by
		// hand under that name gets here, and it will never push what is
		// awaited.
		out.State, out.Detail = Failed, fmt.Sprintf("the Job builds %s, not %s", img, req.Image)
		return out, nil
	}
	pod, err := b.lastPod(ctx, name)
	if err != nil {
		return out, err
	}
	if c, ok := condition(job, batchv1.JobComplete, batchv1.JobSuccessCriteriaMet); ok {
		out.State, out.Detail = Succeeded, c.Message
		if t := terminated(pod); t != nil && strings.HasPrefix(strings.TrimSpace(t.Message), "sha256:") {
			out.Digest = strings.TrimSpace(t.Message)
		}
		return out, nil
	}
	if c, ok := condition(job, batchv1.JobFailed, batchv1.JobFailureTarget); ok {
		out.State = Failed
		out.Detail = strings.TrimSpace(c.Reason + ": " + c.Message)
		t := terminated(pod)
		if t != nil {
			out.Detail += fmt.Sprintf(" (container %s exited %d", container, t.ExitCode)
			if t.Reason != "" {
				out.Detail += ", " + t.Reason
			}
			out.Detail += ")"
		}
		log := ""
		switch {
		case t != nil && t.Message != "":
			log = t.Message
		case pod != nil:
			// No termination message (a pod killed by its deadline):
			// ask the kubelet, through the API server, for the end.
			log = b.podLog(ctx, pod.Name)
		}
		if log != "" {
			out.LogTail = redact.Output(log, b.secretValues(ctx, req))
		}
		return out, nil
	}
	out.State = Running
	out.Detail = waiting(pod)
	return out, nil
}

// condition finds the first of types that is True.
func condition(job *batchv1.Job, types ...batchv1.JobConditionType) (batchv1.JobCondition, bool) {
	for _, t := range types {
		for _, c := range job.Status.Conditions {
			if c.Type == t && c.Status == corev1.ConditionTrue {
				return c, true
			}
		}
	}
	return batchv1.JobCondition{}, false
}

// lastPod is the newest pod of the Job (nil if none).
func (b *Builder) lastPod(ctx context.Context, job string) (*corev1.Pod, error) {
	ns := b.opts.Namespace
	pods, err := b.core.Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: batchv1.JobNameLabel + "=" + job})
	if err != nil {
		return nil, explain(err, "list", "", "pods", ns, "of job "+job)
	}
	if len(pods.Items) == 0 {
		return nil, nil
	}
	sort.Slice(pods.Items, func(i, j int) bool {
		return pods.Items[j].CreationTimestamp.Before(&pods.Items[i].CreationTimestamp)
	})
	return &pods.Items[0], nil
}

func terminated(pod *corev1.Pod) *corev1.ContainerStateTerminated {
	if pod == nil {
		return nil
	}
	for _, s := range pod.Status.ContainerStatuses {
		if s.Name == container && s.State.Terminated != nil {
			return s.State.Terminated
		}
	}
	return nil
}

// waiting says why a running Job's build is not under way yet, if it is not.
func waiting(pod *corev1.Pod) string {
	if pod == nil {
		return "no pod yet"
	}
	for _, s := range pod.Status.ContainerStatuses {
		if s.Name == container && s.State.Waiting != nil {
			return "pod " + pod.Name + " waiting: " + strings.TrimSpace(s.State.Waiting.Reason+" "+redact.Output(s.State.Waiting.Message, nil))
		}
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse {
			return "pod " + pod.Name + " not scheduled: " + c.Reason + " " + c.Message
		}
	}
	return "pod " + pod.Name + " " + strings.ToLower(string(pod.Status.Phase))
}

// podLog reads the end of the build container's log; an error is said in
// the result, never fatal (the kubelet may be gone with its node).
func (b *Builder) podLog(ctx context.Context, pod string) string {
	tail, limit := int64(redact.OutputLines), int64(4*redact.OutputMax)
	rc, err := b.core.Pods(b.opts.Namespace).GetLogs(pod, &corev1.PodLogOptions{Container: container, TailLines: &tail, LimitBytes: &limit}).Stream(ctx)
	if err != nil {
		return "(no log: " + explain(err, "get", "", "pods/log", b.opts.Namespace, pod).Error() + ")"
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, limit))
	if err != nil && len(data) == 0 {
		return "(no log: reading it: " + err.Error() + ")"
	}
	return string(data)
}

// SecretValues implements builder.SecretHolder: the values of every Secret
// the builds mount.
func (b *Builder) SecretValues(ctx context.Context) []string {
	return b.secretValues(ctx, Request{})
}

// secretValues are the values in the build's Secrets that must never be
// shown: RHSM's organisation and key, and every credential of the docker
// configs (with their base64 forms), each Secret read once a pass. A
// Secret that cannot be read gives none: the generic patterns still apply.
func (b *Builder) secretValues(ctx context.Context, req Request) []string {
	var out []string
	pass := b.current()
	for _, s := range b.secretsFor(req) {
		seen := b.readSecret(ctx, pass, s.name)
		if seen.err != nil {
			continue
		}
		for k, v := range seen.data {
			if k == corev1.DockerConfigJsonKey {
				out = append(out, builder.DockerCredentials(v)...)
				continue
			}
			out = append(out, strings.TrimSpace(string(v)))
		}
	}
	return out
}

// Report implements builder.Reporter: a failed Job, or one that is gone,
// ends the attempt; a running or succeeded one does not (the image at the
// staging reference decides).
func (b *Builder) Report(ctx context.Context, req Request) (builder.Report, error) {
	o, err := b.Outcome(ctx, req)
	if err != nil {
		return builder.Report{}, err
	}
	switch o.State {
	case Failed:
		return builder.Report{Over: true, Summary: fmt.Sprintf("the build Job %s/%s failed: %s", o.Namespace, o.Job, o.Detail), Output: o.LogTail}, nil
	case Gone:
		return builder.Report{Over: true, Gone: true,
			Summary: fmt.Sprintf("the build Job %s/%s is gone and no image appeared at %s", o.Namespace, o.Job, req.Image)}, nil
	}
	return builder.Report{}, nil
}
