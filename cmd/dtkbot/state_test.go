package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCorruptStateIsRecoveredAndRebuilt: a corrupt state file stops
// `dtkbot reconcile` with the way out; `dtkbot state check` says what is
// wrong (exit 1); `dtkbot state recover` moves it aside, loudly, and starts
// empty; the next pass rebuilds the state from the world.
func TestCorruptStateIsRecoveredAndRebuilt(t *testing.T) {
	cw := newCLIWorld(t, "")
	if code, _, stderr := runCLI(t, "reconcile", "--config", cw.config); code != exitOK {
		t.Fatalf("the first pass: exit %d: %s", code, stderr)
	}
	statePath := filepath.Join(filepath.Dir(cw.config), "dtkbot.db")
	if code, stdout, _ := runCLI(t, "state", "check", "--config", cw.config); code != exitOK || !strings.Contains(stdout, "ok (schema 2)") {
		t.Errorf("state check of a sound file: exit %d: %s", code, stdout)
	}
	if code, stdout, _ := runCLI(t, "state", "recover", "--config", cw.config); code != exitOK || !strings.Contains(stdout, "nothing to recover") {
		t.Errorf("state recover of a sound file: exit %d: %s", code, stdout)
	}

	// Something overwrote the file.
	if err := os.WriteFile(statePath, []byte(strings.Repeat("\x00garbage", 1000)), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runCLI(t, "reconcile", "--config", cw.config)
	if code != exitFailed || !strings.Contains(stderr, "corrupt") || !strings.Contains(stderr, "dtkbot state recover") {
		t.Errorf("a pass on a corrupt state: exit %d: %s", code, stderr)
	}
	code, stdout, _ := runCLI(t, "state", "check", "--config", cw.config)
	if code != exitFailed || !strings.Contains(stdout, "state file is corrupt (file size too small") || !strings.Contains(stdout, "dtkbot state recover --config") {
		t.Errorf("state check of a corrupt file: exit %d: %s", code, stdout)
	}
	code, _, stderr = runCLI(t, "state", "recover", "--config", cw.config)
	if code != exitOK || !strings.Contains(stderr, "MOVED the state file "+statePath+" ASIDE to "+statePath+".corrupt-") {
		t.Fatalf("state recover: exit %d: %s", code, stderr)
	}
	aside, _ := filepath.Glob(statePath + ".corrupt-*")
	if len(aside) != 1 {
		t.Fatalf("moved aside: %v", aside)
	}
	if kept, _ := os.ReadFile(aside[0]); !strings.HasPrefix(string(kept), "\x00garbage") {
		t.Error("the file moved aside is not the corrupt one")
	}

	// The next pass rebuilds what the first recorded.
	if code, _, stderr := runCLI(t, "reconcile", "--config", cw.config); code != exitOK {
		t.Fatalf("the pass after recovering: exit %d: %s", code, stderr)
	}
	code, stdout, _ = runCLI(t, "state", "export", "--config", cw.config)
	var exp struct {
		Releases []json.RawMessage `json:"releases"`
		Kernels  []json.RawMessage `json:"kernels"`
	}
	if code != exitOK || json.Unmarshal([]byte(stdout), &exp) != nil || len(exp.Releases) != 3 || len(exp.Kernels) != 2 {
		t.Errorf("the state after one pass: exit %d, %d releases, %d kernels, want 3 and 2", code, len(exp.Releases), len(exp.Kernels))
	}
}
