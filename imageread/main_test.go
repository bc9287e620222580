package imageread

import (
	"os"
	"testing"

	"github.com/dtkbot/dtkbot/internal/loopback"
)

// TestMain keeps the tests on loopback (internal/loopback).
func TestMain(m *testing.M) { os.Exit(loopback.Run(m)) }
