// Command dtkbot-demo is dtkbot's offline demo (`make demo`): it starts a
// registry of sample payloads, an update graph, a release-controller, a
// signature store, a CI and a GitHub on loopback, runs the dtkbot binary
// against them as a user would, and tells the story in 100 columns (package
// internal/demo). It is a command of its own so that bin/dtkbot carries no
// test world.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/dtkbot/dtkbot/internal/demo"
)

func main() {
	dtkbot := flag.String("dtkbot", "", "the dtkbot binary to run (default: dtkbot beside this command)")
	dir := flag.String("dir", filepath.Join(os.TempDir(), "dtkbot-demo"), "where the demo writes its files (emptied first)")
	flag.Parse()
	bin, err := dtkbotBinary(*dtkbot)
	if err != nil {
		fmt.Fprintf(os.Stderr, "dtkbot-demo: %v\n", err)
		os.Exit(2)
	}
	if err := emptyDir(*dir); err != nil {
		fmt.Fprintf(os.Stderr, "dtkbot-demo: %v\n", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := demo.Run(ctx, demo.Options{Stdout: os.Stdout, Dir: *dir, Dtkbot: func(ctx context.Context, args ...string) *exec.Cmd {
		return exec.CommandContext(ctx, bin, args...)
	}})
	stop()
	os.Exit(code)
}

// dtkbotBinary is the dtkbot binary the demo runs: the one named, else the
// one beside this command (make demo builds both into bin/).
func dtkbotBinary(named string) (string, error) {
	if named != "" {
		return filepath.Abs(named)
	}
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	p := filepath.Join(filepath.Dir(self), "dtkbot")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("no dtkbot binary beside %s (make demo builds both; or --dtkbot PATH): %w", self, err)
	}
	return p, nil
}

// emptyDir makes dir anew, removing only what an earlier demo left there
// (marked by its .dtkbot-demo file): never a folder someone else made.
func emptyDir(dir string) error {
	marker := filepath.Join(dir, ".dtkbot-demo")
	if _, err := os.Stat(dir); err == nil {
		if _, err := os.Stat(marker); err != nil {
			if entries, _ := os.ReadDir(dir); len(entries) > 0 {
				return fmt.Errorf("%s is not empty and not an earlier demo's: give --dir", dir)
			}
		} else if err := os.RemoveAll(dir); err != nil {
			return err
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return os.WriteFile(marker, []byte("made by dtkbot-demo: removed at its next run\n"), 0o600)
}
