package deploy_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/dtkbot/dtkbot/config"
)

// object is a rendered Kubernetes object, with the fields the checks read.
type object struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name      string            `yaml:"name"`
		Namespace string            `yaml:"namespace"`
		Labels    map[string]string `yaml:"labels"`
	} `yaml:"metadata"`
	Data      map[string]string `yaml:"data"`
	Type      string            `yaml:"type"`
	Automount *bool             `yaml:"automountServiceAccountToken"`
	Spec      spec              `yaml:"spec"`
	raw       map[string]any
}

type spec struct {
	Replicas *int `yaml:"replicas"`
	Strategy struct {
		Type string `yaml:"type"`
	} `yaml:"strategy"`
	Selector struct {
		MatchLabels map[string]string `yaml:"matchLabels"`
	} `yaml:"selector"`
	Template    podTemplate `yaml:"template"`
	PodSelector struct {
		MatchLabels map[string]string `yaml:"matchLabels"`
	} `yaml:"podSelector"`
	Ports []struct {
		Name string `yaml:"name"`
	} `yaml:"ports"`
	Endpoints []struct {
		Port, Path string
	} `yaml:"endpoints"`
	// CronJob
	Schedule                string  `yaml:"schedule"`
	TimeZone                string  `yaml:"timeZone"`
	ConcurrencyPolicy       string  `yaml:"concurrencyPolicy"`
	StartingDeadlineSeconds *int    `yaml:"startingDeadlineSeconds"`
	JobTemplate             jobSpec `yaml:"jobTemplate"`
}

type jobSpec struct {
	Spec struct {
		Template podTemplate `yaml:"template"`
	} `yaml:"spec"`
}

type podTemplate struct {
	Metadata struct {
		Labels map[string]string `yaml:"labels"`
	} `yaml:"metadata"`
	Spec struct {
		ServiceAccountName string `yaml:"serviceAccountName"`
		Automount          *bool  `yaml:"automountServiceAccountToken"`
		SecurityContext    struct {
			RunAsNonRoot *bool `yaml:"runAsNonRoot"`
		} `yaml:"securityContext"`
		Containers []struct {
			Name  string   `yaml:"name"`
			Image string   `yaml:"image"`
			Args  []string `yaml:"args"`
			Ports []struct {
				Name          string `yaml:"name"`
				ContainerPort int    `yaml:"containerPort"`
			} `yaml:"ports"`
			LivenessProbe  *probe `yaml:"livenessProbe"`
			ReadinessProbe *probe `yaml:"readinessProbe"`
			Resources      struct {
				Requests map[string]string `yaml:"requests"`
			} `yaml:"resources"`
			SecurityContext struct {
				ReadOnlyRootFilesystem   *bool `yaml:"readOnlyRootFilesystem"`
				AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
				Capabilities             struct {
					Drop []string `yaml:"drop"`
				} `yaml:"capabilities"`
			} `yaml:"securityContext"`
			VolumeMounts []struct {
				Name      string `yaml:"name"`
				MountPath string `yaml:"mountPath"`
			} `yaml:"volumeMounts"`
		} `yaml:"containers"`
		Volumes []struct {
			Name      string `yaml:"name"`
			ConfigMap *struct {
				Name string `yaml:"name"`
			} `yaml:"configMap"`
			Secret *struct {
				SecretName string `yaml:"secretName"`
			} `yaml:"secret"`
			PVC *struct {
				ClaimName string `yaml:"claimName"`
			} `yaml:"persistentVolumeClaim"`
		} `yaml:"volumes"`
	} `yaml:"spec"`
}

type probe struct {
	HTTPGet struct {
		Path string `yaml:"path"`
		Port string `yaml:"port"`
	} `yaml:"httpGet"`
}

// render runs kustomize (the library kubectl uses) on a directory.
func render(t *testing.T, dir string) map[string]object {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	out := map[string]object{}
	for _, r := range m.Resources() {
		y, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		var o object
		if err := yaml.Unmarshal(y, &o); err != nil {
			t.Fatalf("%s: %v", y, err)
		}
		if err := yaml.Unmarshal(y, &o.raw); err != nil {
			t.Fatal(err)
		}
		out[o.Kind+"/"+o.Metadata.Name] = o
	}
	return out
}

func find(objs map[string]object, kind, prefix string) (object, bool) {
	for k, o := range objs {
		if strings.HasPrefix(k, kind+"/"+prefix) {
			return o, true
		}
	}
	return object{}, false
}

func checkPod(t *testing.T, objs map[string]object, pod podTemplate, wantProbes bool) {
	t.Helper()
	ps := pod.Spec
	if ps.Automount == nil || *ps.Automount || ps.SecurityContext.RunAsNonRoot == nil || !*ps.SecurityContext.RunAsNonRoot {
		t.Errorf("pod: service-account token mounted or root allowed")
	}
	if _, ok := objs["ServiceAccount/"+ps.ServiceAccountName]; !ok {
		t.Errorf("service account %q not rendered", ps.ServiceAccountName)
	}
	if len(ps.Containers) != 1 {
		t.Fatalf("%d containers", len(ps.Containers))
	}
	c := ps.Containers[0]
	if c.Image != "quay.io/example/dtkbot:latest" {
		t.Errorf("image %q: the images: transformer did not apply", c.Image)
	}
	sc := c.SecurityContext
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || len(sc.Capabilities.Drop) == 0 {
		t.Errorf("container security context %+v", sc)
	}
	if c.Resources.Requests["cpu"] == "" || c.Resources.Requests["memory"] == "" {
		t.Errorf("no resource requests")
	}
	if wantProbes {
		if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" || c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
			t.Errorf("probes %+v %+v", c.LivenessProbe, c.ReadinessProbe)
		}
		if len(c.Ports) != 1 || c.Ports[0].Name != c.LivenessProbe.HTTPGet.Port || c.Ports[0].ContainerPort != 8080 {
			t.Errorf("ports %+v", c.Ports)
		}
	}
	// Every volume resolves to a rendered object, and every mount to a volume.
	volumes := map[string]bool{}
	for _, v := range ps.Volumes {
		volumes[v.Name] = true
		switch {
		case v.ConfigMap != nil:
			if _, ok := objs["ConfigMap/"+v.ConfigMap.Name]; !ok {
				t.Errorf("volume %s: ConfigMap %s not rendered", v.Name, v.ConfigMap.Name)
			}
		case v.Secret != nil:
			if _, ok := objs["Secret/"+v.Secret.SecretName]; !ok {
				t.Errorf("volume %s: Secret %s not rendered", v.Name, v.Secret.SecretName)
			}
		case v.PVC != nil:
			if _, ok := objs["PersistentVolumeClaim/"+v.PVC.ClaimName]; !ok {
				t.Errorf("volume %s: claim %s not rendered", v.Name, v.PVC.ClaimName)
			}
		}
	}
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		if !volumes[m.Name] {
			t.Errorf("mount of unknown volume %s", m.Name)
		}
		mounts[m.MountPath] = m.Name
	}
	// The config the pod reads is a valid dtkbot config whose files live
	// on the mounted volumes.
	cm, ok := find(objs, "ConfigMap", "dtkbot-config")
	if !ok {
		t.Fatal("no config map")
	}
	cfg, err := config.Parse([]byte(cm.Data["config.yaml"]))
	if err != nil {
		t.Fatalf("the config map's config.yaml: %v", err)
	}
	if i := indexOf(c.Args, "--config"); i < 0 || !strings.HasPrefix(c.Args[i+1], "/etc/dtkbot/") || mounts["/etc/dtkbot"] != "config" {
		t.Errorf("args %q, mounts %v", c.Args, mounts)
	}
	if mounts["/var/lib/dtkbot"] != "state" || !strings.HasPrefix(cfg.State, "/var/lib/dtkbot/") {
		t.Errorf("state %q is not on the state volume", cfg.State)
	}
	for key, path := range map[string]string{"registry.authfile": cfg.Registry.Authfile, "github.token_file": cfg.GitHub.TokenFile, "build.webhook.secret_file": cfg.Build.Webhook.SecretFile} {
		dir := filepath.Dir(path)
		if _, ok := mounts[dir]; !ok {
			t.Errorf("%s %s is on no mounted volume", key, path)
		}
	}
}

func indexOf(list []string, v string) int {
	for i, s := range list {
		if s == v {
			return i
		}
	}
	return -1
}

func TestKustomizeBaseRendersADeployment(t *testing.T) {
	objs := render(t, "kubernetes/base")
	for _, kind := range []string{"Namespace/dtkbot", "ServiceAccount/dtkbot", "PersistentVolumeClaim/dtkbot-state", "Deployment/dtkbot",
		"Service/dtkbot", "ServiceMonitor/dtkbot", "NetworkPolicy/dtkbot"} {
		if _, ok := objs[kind]; !ok {
			t.Errorf("%s not rendered", kind)
		}
	}
	for _, s := range []string{"dtkbot-pull-secret", "dtkbot-github", "dtkbot-trigger", "dtkbot-webhook"} {
		if _, ok := find(objs, "Secret", s); !ok {
			t.Errorf("secret %s not rendered", s)
		}
	}
	if ps, _ := find(objs, "Secret", "dtkbot-pull-secret"); ps.Type != "kubernetes.io/dockerconfigjson" {
		t.Errorf("pull secret type %q", ps.Type)
	}
	for k, o := range objs {
		if o.Kind != "Namespace" && o.Metadata.Namespace != "dtkbot" {
			t.Errorf("%s in namespace %q", k, o.Metadata.Namespace)
		}
	}
	d := objs["Deployment/dtkbot"]
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 1 || d.Spec.Strategy.Type != "Recreate" {
		t.Errorf("deployment: replicas %v strategy %q", d.Spec.Replicas, d.Spec.Strategy.Type)
	}
	if !subset(d.Spec.Selector.MatchLabels, d.Spec.Template.Metadata.Labels) || len(d.Spec.Selector.MatchLabels) == 0 {
		t.Errorf("selector %v does not select the pod labels %v", d.Spec.Selector.MatchLabels, d.Spec.Template.Metadata.Labels)
	}
	checkPod(t, objs, d.Spec.Template, true)
	if sa := objs["ServiceAccount/dtkbot"]; sa.Automount == nil || *sa.Automount {
		t.Errorf("the service account mounts its token")
	}
	svc, sm, np := objs["Service/dtkbot"], objs["ServiceMonitor/dtkbot"], objs["NetworkPolicy/dtkbot"]
	if !selects(svc, d.Spec.Template.Metadata.Labels) {
		t.Errorf("the service selects no dtkbot pod")
	}
	if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != svc.Spec.Ports[0].Name || sm.Spec.Endpoints[0].Path != "/metrics" ||
		!subset(sm.Spec.Selector.MatchLabels, svc.Metadata.Labels) {
		t.Errorf("the service monitor does not scrape the service's /metrics: %+v", sm.Spec)
	}
	if !subset(np.Spec.PodSelector.MatchLabels, d.Spec.Template.Metadata.Labels) {
		t.Errorf("the network policy does not select the pod")
	}
}

// selects reports whether a Service's selector (a plain map) picks pods
// with these labels.
func selects(svc object, labels map[string]string) bool {
	spec, _ := svc.raw["spec"].(map[string]any)
	sel, _ := spec["selector"].(map[string]any)
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func subset(sub, super map[string]string) bool {
	for k, v := range sub {
		if super[k] != v {
			return false
		}
	}
	return true
}

func TestKustomizeCronJobVariant(t *testing.T) {
	objs := render(t, "kubernetes/cronjob")
	if _, ok := objs["Deployment/dtkbot"]; ok {
		t.Error("the CronJob variant still has the Deployment")
	}
	cj, ok := objs["CronJob/dtkbot"]
	if !ok {
		t.Fatal("no CronJob")
	}
	s := cj.Spec
	if s.ConcurrencyPolicy != "Forbid" || s.TimeZone != "Etc/UTC" || s.StartingDeadlineSeconds == nil || *s.StartingDeadlineSeconds <= 0 {
		t.Errorf("cronjob spec %+v", s)
	}
	if !regexp.MustCompile(`^(\S+ ){4}\S+$`).MatchString(s.Schedule) {
		t.Errorf("schedule %q", s.Schedule)
	}
	pod := s.JobTemplate.Spec.Template
	checkPod(t, objs, pod, false)
	if pod.Spec.Containers[0].Args[0] != "reconcile" {
		t.Errorf("the job runs %q", pod.Spec.Containers[0].Args)
	}
}

func TestContainerfileForDtkbot(t *testing.T) {
	ins := parseContainerfile(t, "Containerfile")
	var froms, users []string
	build := ""
	for _, in := range ins {
		switch in.op {
		case "FROM":
			froms = append(froms, in.args)
		case "USER":
			users = append(users, in.args)
		case "RUN":
			if strings.Contains(in.args, "go build") {
				build = in.args
			}
		}
	}
	if len(froms) != 2 || !strings.Contains(froms[0], "AS build") {
		t.Errorf("not multi-stage: %q", froms)
	}
	for _, want := range []string{"CGO_ENABLED=0", "-tags containers_image_openpgp", "-X main.version=${VERSION}", "./cmd/dtkbot"} {
		if !strings.Contains(build, want) {
			t.Errorf("the build step lacks %q: %s", want, build)
		}
	}
	if len(users) != 1 || strings.HasPrefix(users[0], "0") || strings.HasPrefix(users[0], "root") {
		t.Errorf("runtime user %q", users)
	}
	if _, err := os.Stat("../go.sum"); err != nil {
		t.Errorf("the Containerfile copies go.sum: %v", err)
	}
}

// TestKustomizeDisconnectedVariant: the signature ConfigMap is rendered in
// dtkbot's namespace with the label the cluster reads signatures by, and
// mounted where the config's verify.signature_store points, in strict mode.
func TestKustomizeDisconnectedVariant(t *testing.T) {
	objs := render(t, "kubernetes/disconnected")
	sigs, ok := objs["ConfigMap/mirrored-release-signatures"]
	if !ok || sigs.Metadata.Namespace != "dtkbot" {
		t.Fatalf("signature ConfigMap %+v (rendered: %v)", sigs.Metadata, ok)
	}
	if _, ok := sigs.Metadata.Labels["release.openshift.io/verification-signatures"]; !ok {
		t.Errorf("labels %v", sigs.Metadata.Labels)
	}
	d := objs["Deployment/dtkbot"]
	checkPod(t, objs, d.Spec.Template, true)
	cm, _ := find(objs, "ConfigMap", "dtkbot-config")
	cfg, err := config.Parse([]byte(cm.Data["config.yaml"]))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Verify.Mode != "strict" {
		t.Errorf("verify.mode %q", cfg.Verify.Mode)
	}
	ps := d.Spec.Template.Spec
	volume := ""
	for _, v := range ps.Volumes {
		if v.ConfigMap != nil && v.ConfigMap.Name == "mirrored-release-signatures" {
			volume = v.Name
		}
	}
	mounted := false
	for _, m := range ps.Containers[0].VolumeMounts {
		mounted = mounted || (m.Name == volume && m.MountPath == cfg.Verify.SignatureStore)
	}
	if volume == "" || !mounted {
		t.Errorf("verify.signature_store %s is not the signature ConfigMap's mount (volume %q)", cfg.Verify.SignatureStore, volume)
	}
}
