// Package kubetest gives tests a real Kubernetes API server
// (internal/kubeapi: etcd and kube-apiserver on loopback, RBAC on, no
// controller manager, no kubelet): the admin's *rest.Config, fresh
// namespaces, and users that hold only the RBAC rules a test gives them.
//
// Without the binaries (KUBEBUILDER_ASSETS, or the cache `make kube-assets`
// fills) a test skips, saying so, unless DTKBOT_REQUIRE_TOOLS=1 (CI) makes
// it fail. It never downloads anything.
package kubetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	authorizationv1client "k8s.io/client-go/kubernetes/typed/authorization/v1"
	rbacv1client "k8s.io/client-go/kubernetes/typed/rbac/v1"
	"k8s.io/client-go/rest"

	"github.com/dtkbot/dtkbot/internal/kubeapi"
	"github.com/dtkbot/dtkbot/internal/need"
)

// Version is the Kubernetes version `make kube-assets` provides.
const Version = kubeapi.Version

// Server is one running API server, shared by tests: each takes its own
// namespace and users.
type Server struct {
	*kubeapi.Server
	nextUser atomic.Int64
	nextNS   atomic.Int64
}

// Logs answers a kubelet's containerLogs request (see kubeapi.Logs).
type Logs = kubeapi.Logs

// skipOrFail skips a test without the binaries, or fails it when CI asks
// for them (DTKBOT_REQUIRE_TOOLS=1, internal/need).
func skipOrFail(t testing.TB, err error) {
	t.Helper()
	need.Missing(t, "needs a real API server: %v", err)
}

// Start runs a server of the test's own, stopped when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	dir, err := kubeapi.Assets()
	if err != nil {
		skipOrFail(t, err)
	}
	s, err := kubeapi.Start(dir)
	if err != nil {
		t.Fatalf("starting the API server: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("stopping the API server: %v", err)
		}
	})
	return &Server{Server: s}
}

var shared struct {
	once    sync.Once
	main    atomic.Bool
	server  *Server
	err     error
	missing error
}

// Shared returns the test binary's one server, started on first use (so
// tests that need none pay nothing) and stopped by Main after every test.
func Shared(t testing.TB) *Server {
	t.Helper()
	if !shared.main.Load() {
		t.Fatal("kubetest.Shared needs `func TestMain(m *testing.M) { os.Exit(loopback.Run(kubetest.Main(m))) }`, which stops the server after the tests")
	}
	shared.once.Do(func() {
		dir, err := kubeapi.Assets()
		if err != nil {
			shared.missing = err
			return
		}
		s, err := kubeapi.Start(dir)
		if err == nil {
			shared.server = &Server{Server: s}
		}
		shared.err = err
	})
	switch {
	case shared.missing != nil:
		skipOrFail(t, shared.missing)
	case shared.err != nil:
		t.Fatalf("starting the API server: %v", shared.err)
	}
	return shared.server
}

// Main wraps m: running it runs the tests, then stops the shared server if
// one was started. A package that uses Shared runs its tests with
// `func TestMain(m *testing.M) { os.Exit(loopback.Run(kubetest.Main(m))) }`.
func Main(m *testing.M) interface{ Run() int } { return mainRunner{m} }

type mainRunner struct{ m *testing.M }

func (r mainRunner) Run() int {
	shared.main.Store(true)
	code := r.m.Run()
	if shared.server != nil {
		if err := shared.server.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "kubetest: stopping the API server: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
	}
	return code
}

// Namespace creates a namespace of the test's own (with its default
// ServiceAccount).
func (s *Server) Namespace(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("test-%d-%s", s.nextNS.Add(1), randomSuffix())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.Server.Namespace(ctx, name); err != nil {
		t.Fatal(err)
	}
	return name
}

// Kubelet registers a Node named name whose kubelet serves pods' logs
// from logs (see kubeapi.Server.Kubelet), gone when the test ends.
func (s *Server) Kubelet(t testing.TB, name string, logs Logs) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stop, err := s.Server.Kubelet(ctx, name, logs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
}

// User returns a config for a user that may do only what rules allow in
// namespace (a Role and a RoleBinding made for it), once the API server
// authorizes it so.
func (s *Server) User(t testing.TB, namespace string, rules ...rbacv1.PolicyRule) *rest.Config {
	t.Helper()
	i := int(s.nextUser.Add(1))
	if i > kubeapi.Users {
		t.Fatalf("kubetest: all %d test users are taken", kubeapi.Users)
	}
	name := kubeapi.UserName(i)
	rbac, err := rbacv1client.NewForConfig(s.Admin)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := rbac.Roles(namespace).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: rules}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating role %s: %v", name, err)
	}
	if _, err := rbac.RoleBindings(namespace).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: name}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating role binding %s: %v", name, err)
	}
	cfg := rest.CopyConfig(s.Admin)
	cfg.BearerToken = s.UserToken(i)
	waitAllowed(t, cfg, namespace, rules)
	return cfg
}

// waitAllowed waits until the API server's RBAC authorizer, which reads
// Roles and RoleBindings through its own watch, allows the user every
// verb of rules (asked as that user, with SelfSubjectAccessReviews).
func waitAllowed(t testing.TB, cfg *rest.Config, namespace string, rules []rbacv1.PolicyRule) {
	t.Helper()
	authz, err := authorizationv1client.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), kubeapi.ReadyDeadline)
	defer cancel()
	for _, r := range rules {
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					resource, sub, _ := strings.Cut(res, "/")
					attrs := &authorizationv1.ResourceAttributes{Namespace: namespace, Group: g, Resource: resource, Subresource: sub, Verb: v}
					if len(r.ResourceNames) > 0 {
						attrs.Name = r.ResourceNames[0]
					}
					for {
						review, err := authz.SelfSubjectAccessReviews().Create(ctx,
							&authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: attrs}}, metav1.CreateOptions{})
						if err == nil && review.Status.Allowed {
							break
						}
						if ctx.Err() != nil {
							t.Fatalf("kubetest: the user is still not allowed %+v after %s: %v", *attrs, kubeapi.ReadyDeadline, err)
						}
						time.Sleep(20 * time.Millisecond) // polling interval
					}
				}
			}
		}
	}
}

func randomSuffix() string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
