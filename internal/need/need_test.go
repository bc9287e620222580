package need

import (
	"os"
	"testing"

	"github.com/dtkbot/dtkbot/internal/loopback"
)

func TestMain(m *testing.M) { os.Exit(loopback.Run(m)) }

// TestMissingFailsWhereRequired: with DTKBOT_REQUIRE_TOOLS=1 a missing tool
// fails the test; without, it skips it.
func TestMissingFailsWhereRequired(t *testing.T) {
	for _, required := range []string{"1", ""} {
		t.Setenv(Env, required)
		var r recorder
		func() {
			defer func() { _ = recover() }() // FailNow and SkipNow end the call
			Command(&r, "dtkbot-no-such-command", "it does not exist")
		}()
		if required == "1" && (!r.failed || r.skipped) || required == "" && (r.failed || !r.skipped) {
			t.Errorf("%s=%q: failed %v, skipped %v", Env, required, r.failed, r.skipped)
		}
	}
	if p := Command(t, "sh", "a POSIX shell"); p == "" {
		t.Error("sh found at an empty path")
	}
}

// recorder is a testing.TB that records a failure or a skip.
type recorder struct {
	testing.TB
	failed, skipped bool
}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(string, ...any) {
	r.failed = true
	panic("FailNow")
}
func (r *recorder) Skipf(string, ...any) {
	r.skipped = true
	panic("SkipNow")
}
