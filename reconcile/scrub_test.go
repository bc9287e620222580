package reconcile

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/dtkbot/dtkbot/builder"
)

// secretiveBuilder is a backend that hands its builds a secret and says it
// back: in the error of a failed request, then in the report of a build
// that ended without pushing.
type secretiveBuilder struct {
	secret string
	fail   bool
}

func (b *secretiveBuilder) Build(context.Context, builder.Request) error {
	if b.fail {
		return &builder.Failure{Summary: "the CI refused token " + b.secret,
			Output: "curl -H 'X-Token: " + b.secret + "' https://ci.example.com/hooks/" + b.secret + "\nrefused", Err: errors.New("refused")}
	}
	return nil
}

func (b *secretiveBuilder) Report(context.Context, builder.Request) (builder.Report, error) {
	return builder.Report{Over: true, Summary: "the build with key " + b.secret + " failed",
		Output: "+ register --activationkey " + b.secret + "\nError: exit status 1"}, nil
}

func (b *secretiveBuilder) SecretValues(context.Context) []string { return []string{b.secret} }

// TestEveryBackendsWordsAreScrubbed: whatever a backend says of a build (a
// failed request's error, a report of a build that ended), the secret
// values it knows appear nowhere the pass keeps or shows them: the image's
// reason and detail, the pass's errors, the journal.
func TestEveryBackendsWordsAreScrubbed(t *testing.T) {
	const secret = "bk-s3cret-7f1e"
	for _, fail := range []bool{true, false} {
		h := newHarness(t)
		h.publish("stable-4.16", "4.16.15", k1)
		r := h.reconciler()
		r.Builder = &secretiveBuilder{secret: secret, fail: fail}
		res, _ := r.RunOnce(context.Background(), h.now, Options{})
		if !fail {
			// The build was asked; the next pass asks how it went.
			res, _ = r.RunOnce(context.Background(), h.now, Options{})
		}
		k := kernels(t, h.store)[k1.Kernel]
		if k.Attempts != 1 || k.Detail == "" || !strings.Contains(k.Detail, "<redacted>") {
			t.Fatalf("fail=%v: %d attempts, detail %q: want the attempt spent, its words kept, scrubbed", fail, k.Attempts, k.Detail)
		}
		exp, err := h.store.Export()
		if err != nil {
			t.Fatal(err)
		}
		kept, _ := json.Marshal(exp)
		said, _ := json.Marshal(res)
		for what, text := range map[string]string{"the reason": k.Reason, "the detail": k.Detail, "the state file": string(kept), "the pass's result": string(said)} {
			if strings.Contains(text, secret) {
				t.Errorf("fail=%v: %s shows the backend's secret: %s", fail, what, text)
			}
		}
	}
}
