package kubebuild

import (
	"fmt"
	"os"
	"strings"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// inClusterNamespace is where a pod finds its own namespace (mounted with
// its ServiceAccount token).
const inClusterNamespace = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// RESTConfig is how to reach the API server, and the namespace to use when
// the config names none: the kubeconfig file at path if given; else, in a
// pod, its ServiceAccount; else $KUBECONFIG or ~/.kube/config.
func RESTConfig(path string) (*rest.Config, string, error) {
	if path == "" && os.Getenv("KUBERNETES_SERVICE_HOST") != "" {
		cfg, err := rest.InClusterConfig()
		if err != nil {
			return nil, "", fmt.Errorf("reading the in-cluster config (the pod's ServiceAccount token; is automountServiceAccountToken on?): %w", err)
		}
		ns, _ := os.ReadFile(inClusterNamespace)
		return cfg, strings.TrimSpace(string(ns)), nil
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = path
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{})
	cfg, err := cc.ClientConfig()
	if err != nil {
		where := path
		if where == "" {
			where = "$KUBECONFIG or ~/.kube/config"
		}
		return nil, "", fmt.Errorf("reading the kubeconfig (%s): %w", where, err)
	}
	ns, _, err := cc.Namespace()
	if err != nil {
		ns = ""
	}
	return cfg, ns, nil
}
