package reconcile

import (
	"context"
	"testing"
	"time"

	"github.com/dtkbot/dtkbot/builder"
	"github.com/dtkbot/dtkbot/ledger"
)

// asksOnce is a backend whose builds die with the process that asked for
// them (as podman's and buildah's do: builder.AsksOnce), killed on demand
// when asked for a build.
type asksOnce struct {
	*fakeBuilder
	kill bool
}

type killedAsking struct{}

func (b *asksOnce) Build(ctx context.Context, req builder.Request) error {
	if b.kill {
		panic(killedAsking{}) // after the attempt was recorded, before the build ran
	}
	return b.fakeBuilder.Build(ctx, req)
}

func (b *asksOnce) AsksOnce() bool { return true }

// TestAnAttemptKilledBeforeItsBuildIsAskedAgain: a pass killed between
// recording an attempt and its podman build leaves the attempt recorded
// and never acknowledged; the next pass asks for it again at once, as the
// same attempt (no attempt spent, no wait for build.timeout), and the image
// is promoted. A backend whose build may outlive the asking (a webhook's
// CI) is not asked again: that attempt waits for its build.
func TestAnAttemptKilledBeforeItsBuildIsAskedAgain(t *testing.T) {
	for _, tc := range []struct {
		name     string
		asksOnce bool
		state    string
		builds   int
	}{
		{"podman: asked again", true, ledger.StatePromoted, 1},
		{"a webhook: waited for", false, ledger.StateBuildRequested, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.publish("stable-4.16", "4.16.15", k1)
			b := &asksOnce{fakeBuilder: h.builder, kill: true}
			var backend builder.Builder = b
			if !tc.asksOnce {
				backend = struct{ builder.Builder }{b} // hides AsksOnce
			}
			r := realEffects(h, backend)
			func() {
				defer func() {
					if p := recover(); p != nil {
						if _, ok := p.(killedAsking); !ok {
							panic(p)
						}
					}
				}()
				_, _ = r().RunOnce(context.Background(), h.now, Options{})
				t.Fatal("the pass was not killed")
			}()
			h.restart()
			if m := kernels(t, h.store)[k1.Kernel]; m.State != ledger.StateBuildRequested || m.Attempts != 1 || m.Asked != 0 {
				t.Fatalf("after the kill: %s, %d attempts, asked %d", m.State, m.Attempts, m.Asked)
			}
			b.kill = false
			h.now = h.now.Add(time.Minute) // well within build.timeout
			if _, err := r().RunOnce(context.Background(), h.now, Options{}); err != nil {
				t.Fatal(err)
			}
			m := kernels(t, h.store)[k1.Kernel]
			if m.State != tc.state || m.Attempts != 1 || h.builder.total() != tc.builds {
				t.Errorf("the pass after the kill: %s, %d attempts, %d builds; want %s, 1 attempt, %d builds (%s)",
					m.State, m.Attempts, h.builder.total(), tc.state, tc.builds, m.Reason)
			}
		})
	}
}
