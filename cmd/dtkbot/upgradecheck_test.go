package main

import (
	"encoding/json"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/dtkbot/dtkbot/config"
	"github.com/dtkbot/dtkbot/daemon"
	"github.com/dtkbot/dtkbot/ledger"
	"github.com/dtkbot/dtkbot/state"
	"github.com/dtkbot/dtkbot/upgradegraph"
)

// TestUpgradeCheck: after a reconcile that builds nothing (4.16.15 and
// 4.16.16 ship one kernel, 4.16.17 another), the first kernel's DTK is
// promoted by hand; upgrade-check then says 4.16.16 is ready and 4.16.17
// waits for its DTK, from the state file and from a running daemon alike,
// as a table and as JSON, with --to's exit codes.
func TestUpgradeCheck(t *testing.T) {
	cw := newCLIWorld(t, "")
	if code, _, stderr := runCLI(t, "reconcile", "--config", cw.config); code != exitOK {
		t.Fatalf("reconcile: %d %s", code, stderr)
	}
	cfg, err := config.Load(cw.config)
	if err != nil {
		t.Fatal(err)
	}
	store, err := state.Open(cfg.StatePath(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	err = store.Update(func(tx *state.Tx) error {
		m, ok, err := tx.Image(ledger.ImageID{Stream: "rhel-9", Arch: "amd64", Kernel: "5.14.0-427.37.1.el9_4"}.Key())
		if err != nil || !ok {
			t.Fatalf("no DTK of 5.14.0-427.37.1.el9_4: %v", err)
		}
		m.State = ledger.StatePromoted
		return tx.PutImage(m)
	})
	store.Close()
	if err != nil {
		t.Fatal(err)
	}

	code, out, stderr := runCLI(t, "upgrade-check", "--config", cw.config, "--channel", "stable-4.16", "--from", "4.16.15")
	if code != exitOK || !strings.Contains(out, "Updates from 4.16.15 in stable-4.16 (amd64), upstream graph read ") ||
		!regexpMatch(`4\.16\.16\s+ready\s+recommended`, out) {
		t.Errorf("from 4.16.15: %d\n%s%s", code, out, stderr)
	}
	code, out, _ = runCLI(t, "upgrade-check", "--config", cw.config, "--channel", "stable-4.16", "--from", "4.16.16", "--to", "4.16.17")
	if code != exitFailed || !regexpMatch(`4\.16\.17\s+waiting\s+not recommended`, out) ||
		!strings.Contains(out, "waits: No verified Driver Toolkit image for kernel 5.14.0-427.40.1.el9_4.x86_64 (rhel-9) yet: not built yet. http://localhost:8080/?kernel=5.14.0-427.40.1.el9_4") {
		t.Errorf("--to 4.16.17: %d\n%s", code, out)
	}
	if code, _, _ := runCLI(t, "upgrade-check", "--config", cw.config, "--channel", "stable-4.16", "--from", "4.16.15", "--to", "4.16.16"); code != exitOK {
		t.Errorf("--to a ready update: exit %d", code)
	}
	code, out, _ = runCLI(t, "upgrade-check", "--config", cw.config, "--channel", "stable-4.16", "--from", "4.16.16", "-o", "json")
	var check upgradegraph.Check
	if err := json.Unmarshal([]byte(out), &check); code != exitOK || err != nil || len(check.Targets) != 1 || check.Targets[0].Drivers != upgradegraph.Waiting {
		t.Errorf("-o json: %d %v\n%s", code, err, out)
	}
	for _, args := range [][]string{
		{"--channel", "stable-4.16", "--from", "4.16.99"},
		{"--channel", "fast-4.16", "--from", "4.16.15"},
		{"--channel", "stable-4.16", "--from", "4.16.15", "--to", "4.16.17"},
	} {
		if code, _, stderr := runCLI(t, append([]string{"upgrade-check", "--config", cw.config}, args...)...); code != exitCannotTell || !strings.Contains(stderr, "upgrade-check: ") {
			t.Errorf("%v: exit %d, %s", args, code, stderr)
		}
	}
	if code, _, _ := runCLI(t, "upgrade-check", "--config", cw.config, "--from", "4.16.15"); code != exitUsage {
		t.Errorf("no --channel: exit %d", code)
	}

	// The same from a running daemon, over its state.
	store, err = state.OpenReadOnly(cfg.StatePath(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	d := &daemon.Daemon{Store: store, Log: zerolog.Nop(), Upgrades: daemon.UpgradeOptions{Options: upgradeOptions(cfg), PublicURL: "https://dtkbot.example.com"}}
	srv := httptest.NewServer(d.Handler())
	defer srv.Close()
	code, out, stderr = runCLI(t, "upgrade-check", "--server", srv.URL, "--channel", "stable-4.16", "--from", "4.16.16", "--to", "4.16.17")
	if code != exitFailed || !strings.Contains(out, "not built yet. https://dtkbot.example.com/?kernel=5.14.0-427.40.1.el9_4") {
		t.Errorf("--server: %d\n%s%s", code, out, stderr)
	}
	if code, _, stderr := runCLI(t, "upgrade-check", "--server", srv.URL, "--channel", "stable-4.16", "--from", "4.16.99"); code != exitCannotTell ||
		!strings.Contains(stderr, "404 Not Found: 4.16.99 is not in the update graph") {
		t.Errorf("--server, an unknown version: %d %s", code, stderr)
	}
}

func regexpMatch(pattern, s string) bool { return regexp.MustCompile(pattern).MatchString(s) }
