package kubetest_test

import (
	"context"
	"os"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"

	"github.com/dtkbot/dtkbot/internal/kubetest"
	"github.com/dtkbot/dtkbot/internal/loopback"
)

func TestMain(m *testing.M) { os.Exit(loopback.Run(kubetest.Main(m))) }

// TestServerAuthorizesByRBAC: the admin may do anything, a user exactly
// what its Role allows, in its namespace only.
func TestServerAuthorizesByRBAC(t *testing.T) {
	s := kubetest.Shared(t)
	t.Logf("API server started in %s", s.Started.Round(time.Millisecond))
	ns := s.Namespace(t)
	other := s.Namespace(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	admin, err := corev1client.NewForConfig(s.Admin)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "a"}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("admin: %v", err)
	}
	user, err := corev1client.NewForConfig(s.User(t, ns, rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get"}}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := user.ConfigMaps(ns).Get(ctx, "a", metav1.GetOptions{}); err != nil {
		t.Errorf("user get in its namespace: %v", err)
	}
	for what, err := range map[string]error{
		"create in its namespace": func() error {
			_, err := user.ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "b"}}, metav1.CreateOptions{})
			return err
		}(),
		"get in another namespace": func() error { _, err := user.ConfigMaps(other).Get(ctx, "a", metav1.GetOptions{}); return err }(),
		"list secrets":             func() error { _, err := user.Secrets(ns).List(ctx, metav1.ListOptions{}); return err }(),
	} {
		if !apierrors.IsForbidden(err) {
			t.Errorf("user %s: %v, want forbidden", what, err)
		}
	}
}
