package builder

import (
	"context"
	"os"
	"testing"

	"github.com/rs/zerolog"

	"github.com/dtkbot/dtkbot/internal/loopback"
)

// TestMain keeps the tests on loopback (internal/loopback). With
// DTKBOT_TEST_BUILD set, the test binary is instead a process that runs a
// CommandBuilder build with that command, for the tests that kill it.
func TestMain(m *testing.M) {
	if command := os.Getenv("DTKBOT_TEST_BUILD"); command != "" {
		b := &CommandBuilder{Command: command, Containerfile: "Containerfile", Context: ".", Log: zerolog.Nop()}
		_ = b.Build(context.Background(), req)
		os.Exit(0)
	}
	os.Exit(loopback.Run(m))
}
