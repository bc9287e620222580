package kubebuild

import (
	"context"
	"testing"
	"time"

	"github.com/dtkbot/dtkbot/internal/kubenode"
	"github.com/dtkbot/dtkbot/internal/kubetest"
	"github.com/dtkbot/dtkbot/internal/payloadtest"
)

// startNode starts the node stand-in (internal/kubenode) on ns's Jobs for
// the test, reporting what goes wrong as test errors.
func startNode(t *testing.T, s *kubetest.Server, ns string, world *payloadtest.World) *kubenode.Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n, err := kubenode.Start(ctx, s.Server, kubenode.Options{Namespace: ns, Selector: Selector, World: world, Errorf: t.Errorf, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Stop)
	return n
}

// TestNodeReadsOurAnnotations: the stand-in reads Jobs by the annotations
// this package writes.
func TestNodeReadsOurAnnotations(t *testing.T) {
	for ours, its := range map[string]string{AnnotImage: kubenode.AnnotImage, AnnotKernelFull: kubenode.AnnotKernelFull, AnnotAttempt: kubenode.AnnotAttempt} {
		if ours != its {
			t.Errorf("kubebuild writes %s, the node stand-in reads %s", ours, its)
		}
	}
}
