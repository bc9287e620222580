package config

import (
	"os"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
)

// kubeSecurity are the kubernetes.security values.
var kubeSecurity = []string{"rootless", "user-namespace", "privileged"}

// kubeDefaults gives build.kubernetes its default resources when it names
// none (set after decoding: given resources replace the default whole,
// rather than merge into it).
func (c *Config) kubeDefaults() {
	if r := &c.Build.Kubernetes.Resources; r.Requests == nil && r.Limits == nil {
		// A DTK build installs the kernel's packages into vfs storage.
		r.Requests = map[string]string{"cpu": "1", "memory": "2Gi"}
		r.Limits = map[string]string{"memory": "8Gi"}
	}
}

// inherit takes, for each cluster setting k leaves out, build.kubernetes's:
// a consumer builds in the same namespace with the same Secrets unless it
// says otherwise. The recipe and the RHSM secret are not inherited (a
// consumer has its own recipe and needs no entitlement).
func (k *KubeBuild) inherit(from KubeBuild) {
	for _, f := range []struct {
		to   *string
		from string
	}{
		{&k.Namespace, from.Namespace}, {&k.Kubeconfig, from.Kubeconfig}, {&k.Image, from.Image},
		{&k.ServiceAccount, from.ServiceAccount}, {&k.PushSecret, from.PushSecret}, {&k.PullSecret, from.PullSecret},
		{&k.StorageDriver, from.StorageDriver}, {&k.Security, from.Security},
	} {
		if *f.to == "" {
			*f.to = f.from
		}
	}
	if k.TTLSecondsAfterFinished == 0 {
		k.TTLSecondsAfterFinished = from.TTLSecondsAfterFinished
	}
	if k.QPS == 0 {
		k.QPS = from.QPS
	}
	if k.Burst == 0 {
		k.Burst = from.Burst
	}
	if k.Resources.Requests == nil && k.Resources.Limits == nil {
		k.Resources = from.Resources
	}
}

// KubeRecipe is the recipe of a kubernetes backend: its own keys, else
// podman's.
func (b BuildBackend) KubeRecipe() (containerfile, context, baseImage string, extraArgs []string) {
	k, p := b.Kubernetes, b.Podman
	containerfile, context, baseImage, extraArgs = k.Containerfile, k.Context, k.BaseImage, k.ExtraArgs
	if containerfile == "" {
		containerfile = p.Containerfile
	}
	if context == "" {
		context = p.Context
	}
	if baseImage == "" {
		baseImage = p.BaseImage
	}
	if extraArgs == nil {
		extraArgs = p.ExtraArgs
	}
	return containerfile, context, baseImage, extraArgs
}

// validateKube checks a kubernetes backend (key: "build.kubernetes").
func (c *Config) validateKube(key string, b BuildBackend, bad func(key, format string, args ...any)) {
	k := b.Kubernetes
	if k.Namespace != "" && len(validation.IsDNS1123Label(k.Namespace)) > 0 {
		bad(key+".namespace", "%q is not a namespace name", k.Namespace)
	}
	if k.Kubeconfig != "" {
		if _, err := os.Stat(c.resolve(k.Kubeconfig)); err != nil {
			bad(key+".kubeconfig", "%v", err)
		}
	}
	for _, s := range []struct{ key, name string }{
		{".service_account", k.ServiceAccount}, {".push_secret", k.PushSecret}, {".pull_secret", k.PullSecret}, {".rhsm_secret", k.RHSMSecret},
	} {
		if s.name != "" && len(validation.IsDNS1123Subdomain(s.name)) > 0 {
			bad(key+s.key, "%q is not the name of a Kubernetes object", s.name)
		}
	}
	if k.PushSecret == "" {
		bad(key+".push_secret", "name the Secret (a docker config) the build pushes to the staging repository with")
	}
	if strings.HasPrefix(key, "consumers[") && k.RHSMSecret != "" {
		bad(key+".rhsm_secret", "not used: a consumer is built FROM the DTK, which carries the kernel's packages")
	}
	if k.Image != "" && strings.ContainsAny(k.Image, " \t\n") {
		bad(key+".image", "%q is not an image reference", k.Image)
	}
	for what, list := range map[string]map[string]string{"requests": k.Resources.Requests, "limits": k.Resources.Limits} {
		for name, q := range list {
			if _, err := resource.ParseQuantity(q); err != nil {
				bad(key+".resources."+what+"."+name, "%q is not a quantity (500m, 2Gi): %v", q, err)
			}
		}
	}
	if k.TTLSecondsAfterFinished < 0 {
		bad(key+".ttl_seconds_after_finished", "must not be negative")
	} else if k.TTLSecondsAfterFinished > 0 && k.TTLSecondsAfterFinished < 3600 {
		bad(key+".ttl_seconds_after_finished", "%d: at least 3600, so a finished Job's outcome is still there for the next pass", k.TTLSecondsAfterFinished)
	}
	if k.StorageDriver != "" && !slices.Contains([]string{"vfs", "overlay"}, k.StorageDriver) {
		bad(key+".storage_driver", "%q is not one of vfs, overlay", k.StorageDriver)
	}
	if k.QPS < 0 {
		bad(key+".qps", "%v: requests a second must not be negative (0: the default, 20)", k.QPS)
	}
	if k.Burst < 0 {
		bad(key+".burst", "%d: must not be negative (0: the default, 30)", k.Burst)
	}
	if k.Security != "" && !slices.Contains(kubeSecurity, k.Security) {
		bad(key+".security", "%q is not one of %s", k.Security, strings.Join(kubeSecurity, ", "))
	}
	cf, _, _, _ := b.KubeRecipe()
	if _, err := os.Stat(c.resolve(cf)); err != nil {
		bad(key+".containerfile", "%v", err)
	}
}
