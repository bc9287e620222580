package deploy_test

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
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

func checkPod(t *testing.T, objs map[string]object, pod podTemplate, wantProbes, wantToken bool) {
	t.Helper()
	ps := pod.Spec
	if ps.Automount == nil || *ps.Automount != wantToken || ps.SecurityContext.RunAsNonRoot == nil || !*ps.SecurityContext.RunAsNonRoot {
		t.Errorf("pod: service-account token mounted %v (want %v) or root allowed", ps.Automount, wantToken)
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
		if path == "" {
			continue
		}
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
	// No backend of the base speaks to the API server: no Role, no token.
	for k, o := range objs {
		if strings.HasSuffix(o.Kind, "Role") || strings.HasSuffix(o.Kind, "RoleBinding") {
			t.Errorf("%s: the base needs no API access", k)
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
	checkPod(t, objs, d.Spec.Template, true, false)
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
	checkPod(t, objs, pod, false, false)
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
	checkPod(t, objs, d.Spec.Template, true, false)
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

// rbacObject is a rendered Role or RoleBinding.
type rbacObject struct {
	Rules []struct {
		APIGroups     []string `yaml:"apiGroups"`
		Resources     []string `yaml:"resources"`
		ResourceNames []string `yaml:"resourceNames"`
		Verbs         []string `yaml:"verbs"`
	} `yaml:"rules"`
	RoleRef struct {
		Kind, Name string
	} `yaml:"roleRef"`
	Subjects []struct {
		Kind, Name, Namespace string
	} `yaml:"subjects"`
}

func asRBAC(t *testing.T, o object) rbacObject {
	t.Helper()
	y, err := yaml.Marshal(o.raw)
	if err != nil {
		t.Fatal(err)
	}
	var r rbacObject
	if err := yaml.Unmarshal(y, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// checkRBAC: the daemon's ServiceAccount (in its namespace, daemonNS) is
// bound to a Role in the build namespace, buildNS, and nowhere else, that
// allows what the kubernetes backend does (package kubebuild; its tests run
// the same Role against a real API server) and no more: no wildcard,
// nothing cluster-wide, Secrets by name and only read.
func checkRBAC(t *testing.T, objs map[string]object, daemonNS, buildNS string) rbacObject {
	t.Helper()
	for k, o := range objs {
		if strings.HasPrefix(k, "ClusterRole") {
			t.Errorf("%s: dtkbot needs nothing cluster-wide", k)
		}
		if (o.Kind == "Role" || o.Kind == "RoleBinding") && o.Metadata.Namespace != buildNS {
			t.Errorf("%s in namespace %s: dtkbot's ServiceAccount may create Jobs (and so mount Secrets) in the build namespace %s only", k, o.Metadata.Namespace, buildNS)
		}
	}
	roleObj, binding := objs["Role/dtkbot-builds"], asRBAC(t, objs["RoleBinding/dtkbot-builds"])
	role := asRBAC(t, roleObj)
	if binding.RoleRef.Kind != "Role" || binding.RoleRef.Name != "dtkbot-builds" || len(binding.Subjects) != 1 ||
		binding.Subjects[0].Kind != "ServiceAccount" || binding.Subjects[0].Name != "dtkbot" || binding.Subjects[0].Namespace != daemonNS {
		t.Errorf("the role binding does not bind Role dtkbot-builds to ServiceAccount %s/dtkbot: %+v", daemonNS, binding)
	}
	allowed := map[string]bool{}
	for _, r := range role.Rules {
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					if g == "*" || res == "*" || v == "*" {
						t.Errorf("a wildcard in rule %+v", r)
					}
					allowed[g+"/"+res+"/"+v] = true
					if res == "secrets" && (v != "get" || len(r.ResourceNames) == 0) {
						t.Errorf("secrets: %s without resourceNames %v: only get, only by name", v, r.ResourceNames)
					}
				}
			}
		}
	}
	for _, need := range []string{"batch/jobs/create", "batch/jobs/get", "/pods/list", "/pods/get", "/pods/log/get",
		"/configmaps/create", "/configmaps/get", "/configmaps/update", "/secrets/get"} {
		if !allowed[need] {
			t.Errorf("the Role does not allow %s", need)
		}
	}
	if sa := objs["ServiceAccount/dtkbot-build"]; sa.Automount == nil || *sa.Automount || sa.Metadata.Namespace != buildNS {
		t.Errorf("the build pods' service account mounts its token, or is not in %s: %+v", buildNS, sa.Metadata)
	}
	return role
}

func TestKustomizeKubernetesBuildVariant(t *testing.T) {
	objs := render(t, "kubernetes/kubernetes-build")
	d, ok := objs["Deployment/dtkbot"]
	if !ok {
		t.Fatal("no Deployment")
	}
	// The daemon talks to the API server: its token is mounted.
	checkPod(t, objs, d.Spec.Template, true, true)
	if sa := objs["ServiceAccount/dtkbot"]; sa.Automount == nil || !*sa.Automount {
		t.Errorf("the daemon's service account does not mount its token")
	}
	cm, _ := find(objs, "ConfigMap", "dtkbot-config")
	cfg, err := config.Parse([]byte(cm.Data["config.yaml"]))
	if err != nil {
		t.Fatal(err)
	}
	k := cfg.Build.Kubernetes
	if cfg.Build.Backend != "kubernetes" || k.PushSecret == "" || k.RHSMSecret == "" || k.PullSecret == "" {
		t.Fatalf("build %+v", cfg.Build)
	}
	// The builds run in a namespace of their own: a Job's pod may mount any
	// Secret of its namespace, whatever the Role's resourceNames say.
	daemonNS, buildNS := d.Metadata.Namespace, k.Namespace
	if buildNS == "" || buildNS == daemonNS {
		t.Fatalf("build.kubernetes.namespace %q: the builds must not run in the daemon's namespace %s, which holds its other Secrets", buildNS, daemonNS)
	}
	if ns, ok := objs["Namespace/"+buildNS]; !ok || ns.Metadata.Labels["pod-security.kubernetes.io/enforce"] == "" {
		t.Errorf("the build namespace %s is not rendered with its Pod Security level: %+v", buildNS, ns.Metadata)
	}
	role := checkRBAC(t, objs, daemonNS, buildNS)
	// The Secrets the config names are rendered under those very names
	// (no hash suffix) in the build namespace, the Role may read exactly
	// them, and no other Secret is there for a Job's pod to mount.
	names := map[string]bool{}
	for _, r := range role.Rules {
		for _, n := range r.ResourceNames {
			names[n] = true
		}
	}
	for key, name := range map[string]string{"push_secret": k.PushSecret, "pull_secret": k.PullSecret, "rhsm_secret": k.RHSMSecret} {
		if o, ok := objs["Secret/"+name]; !ok || o.Metadata.Namespace != buildNS {
			t.Errorf("build.kubernetes.%s %s is not rendered under that name in %s", key, name, buildNS)
		}
		if !names[name] {
			t.Errorf("the Role may not read %s (build.kubernetes.%s)", name, key)
		}
	}
	for key, o := range objs {
		if o.Kind == "Secret" && o.Metadata.Namespace == buildNS && !names[o.Metadata.Name] {
			t.Errorf("%s is in the build namespace: a build Job's pod could mount it", key)
		}
	}
	if sa := objs["ServiceAccount/"+k.ServiceAccount]; sa.Metadata.Namespace != buildNS {
		t.Errorf("build.kubernetes.service_account %s is not in the build namespace %s", k.ServiceAccount, buildNS)
	}
	for name, typ := range map[string]string{k.PushSecret: "kubernetes.io/dockerconfigjson", k.PullSecret: "kubernetes.io/dockerconfigjson"} {
		if objs["Secret/"+name].Type != typ {
			t.Errorf("secret %s has type %q, want %s", name, objs["Secret/"+name].Type, typ)
		}
	}
	if rhsm := objs["Secret/"+k.RHSMSecret]; rhsm.Data["org"] == "" || rhsm.Data["activation-key"] == "" {
		t.Errorf("the RHSM secret lacks org or activation-key")
	}
	if _, ok := objs["ServiceAccount/"+k.ServiceAccount]; !ok || k.ServiceAccount == "" {
		t.Errorf("build.kubernetes.service_account %q is not rendered", k.ServiceAccount)
	}
	if !strings.HasPrefix(k.Containerfile, "/usr/share/dtkbot/driver-toolkit/") {
		t.Errorf("the recipe %s is not the one dtkbot's image ships (deploy/Containerfile)", k.Containerfile)
	}
	np, _ := yaml.Marshal(objs["NetworkPolicy/dtkbot"].raw)
	if !strings.Contains(string(np), "port: 6443") {
		t.Errorf("the network policy does not let the daemon reach the API server on 6443:\n%s", np)
	}
}

// TestOpenShiftSCCForBuildah: the SCC deploy/ offers for OpenShift lets
// exactly the build pods' ServiceAccount run what kubebuild asks for in
// rootless mode (user 1000, privilege escalation, SETUID and SETGID,
// unconfined seccomp) and nothing privileged.
func TestOpenShiftSCCForBuildah(t *testing.T) {
	data, err := os.ReadFile("kubernetes/openshift/scc-buildah.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var scc struct {
		Kind                     string   `yaml:"kind"`
		AllowPrivilegedContainer bool     `yaml:"allowPrivilegedContainer"`
		AllowPrivilegeEscalation bool     `yaml:"allowPrivilegeEscalation"`
		AllowHostDirVolumePlugin bool     `yaml:"allowHostDirVolumePlugin"`
		AllowHostNetwork         bool     `yaml:"allowHostNetwork"`
		AllowHostPID             bool     `yaml:"allowHostPID"`
		AllowHostIPC             bool     `yaml:"allowHostIPC"`
		AllowedCapabilities      []string `yaml:"allowedCapabilities"`
		RunAsUser                struct {
			Type string `yaml:"type"`
			UID  int    `yaml:"uid"`
		} `yaml:"runAsUser"`
		SeccompProfiles []string `yaml:"seccompProfiles"`
		Volumes         []string `yaml:"volumes"`
		Users           []string `yaml:"users"`
	}
	if err := yaml.Unmarshal(data, &scc); err != nil {
		t.Fatal(err)
	}
	if scc.Kind != "SecurityContextConstraints" || scc.AllowPrivilegedContainer || scc.AllowHostDirVolumePlugin || scc.AllowHostNetwork ||
		scc.AllowHostPID || scc.AllowHostIPC || !scc.AllowPrivilegeEscalation {
		t.Errorf("scc %+v", scc)
	}
	if strings.Join(scc.AllowedCapabilities, ",") != "SETUID,SETGID" || scc.RunAsUser.Type != "MustRunAs" || scc.RunAsUser.UID != 1000 ||
		!slices.Contains(scc.SeccompProfiles, "unconfined") {
		t.Errorf("capabilities %v, runAsUser %+v, seccomp %v", scc.AllowedCapabilities, scc.RunAsUser, scc.SeccompProfiles)
	}
	for _, v := range []string{"configMap", "secret", "emptyDir"} {
		if !slices.Contains(scc.Volumes, v) {
			t.Errorf("volume type %s not allowed: the build pod mounts its recipe, Secrets and workspace", v)
		}
	}
	if len(scc.Users) != 1 || scc.Users[0] != "system:serviceaccount:dtkbot-build:dtkbot-build" {
		t.Errorf("granted to %v, want the build pods' ServiceAccount only", scc.Users)
	}
}
