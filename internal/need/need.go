// Package need is how a test says it cannot run on this machine: a tool it
// needs (podman, chromium, promtool, the kernel's build tools, an API
// server's binaries, a shell) is missing. On a user's machine the test
// skips, saying what is missing and how to get it; where
// DTKBOT_REQUIRE_TOOLS=1 (CI, whose .ci/run installs every tool) it fails
// instead, so CI never skips a test.
package need

import (
	"os"
	"os/exec"
	"testing"
)

// Env is the variable that turns a missing tool into a failure.
const Env = "DTKBOT_REQUIRE_TOOLS"

// Required says whether missing tools fail tests (Env=1).
func Required() bool { return os.Getenv(Env) == "1" }

// Missing skips t, or fails it when tools are required, with the reason.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if Required() {
		t.Fatalf(Env+"=1, and this test cannot run: "+format, args...)
	}
	t.Skipf(format, args...)
}

// Command returns the path of the command name, or skips (fails, when
// tools are required) t saying how to get it.
func Command(t testing.TB, name, how string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Missing(t, "%s is not installed (%s): %v", name, how, err)
	}
	return p
}

// Long skips t under -short (it is slow: why says how), or fails it when
// tests are required to run whole (Env=1): a CI run with -short would
// otherwise pass without the tests that need its tools.
func Long(t testing.TB, why string) {
	t.Helper()
	if testing.Short() {
		Missing(t, "-short, and this test %s", why)
	}
}
