package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/dtkbot/dtkbot/internal/payloadtest"
)

// TestTheFirstHour runs dtkbot as a new user does, as a process (this test
// binary, main and all: DTKBOT_RUN_MAIN), following the README: --version,
// help, a typo in a command, shell completion, a config with mistakes, files
// that are not there, release arguments as oc takes them, a registry that
// accepts connections and never answers, -o yaml. Each step checks the exit
// code and what the user reads.
func TestTheFirstHour(t *testing.T) {
	dir := t.TempDir()
	dtkbot := func(args ...string) (code int, stdout, stderr string) {
		t.Helper()
		cmd := dtkbotCommand(context.Background(), args...)
		cmd.Dir = dir
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		var exitErr *exec.ExitError
		switch {
		case errors.As(err, &exitErr):
			code = exitErr.ExitCode()
		case err != nil:
			t.Fatalf("dtkbot %v: %v", args, err)
		}
		return code, out.String(), errOut.String()
	}
	type step struct {
		args           []string
		code           int
		stdout, stderr []string // what each must say
	}
	cw := newCLIWorld(t, "")
	good := cw.world.Release(payloadtest.Eras()[4]).TagPullspec // 4.16.15
	badConfig := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(badConfig, []byte("schedul: \"@every 1h\"\nlisten: 18099\ngraph:\n  channels: [stable-4.16]\nregistry:\n  concurrency: three\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	noState := filepath.Join(dir, "fresh", "config.yaml")
	_ = os.MkdirAll(filepath.Dir(noState), 0o700)
	if err := os.WriteFile(noState, []byte("graph:\n  channels: [stable-4.16]\nverify: {mode: off}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	stateAbs := filepath.Join(filepath.Dir(noState), "dtkbot.db")
	silent := newSilentRegistry(t)

	for _, s := range []step{
		{args: []string{"--version"}, stdout: []string{"dtkbot dev\n"}},
		{args: []string{"version"}, stdout: []string{"dtkbot dev\n"}},
		{args: []string{"--help"}, stdout: []string{"Available Commands:", "release-info", "reconcile", "completion", "--version"}},
		{args: []string{}, code: exitUsage, stderr: []string{"Available Commands:"}},
		{args: []string{"reconcil"}, code: exitUsage, stderr: []string{`unknown command "reconcil"`, "Did you mean this?", "reconcile"}},
		{args: []string{"reconcile", "--dryrun"}, code: exitUsage, stderr: []string{"unknown flag: --dryrun", "Run 'dtkbot reconcile --help' for usage."}},
		{args: []string{"state", "exprot"}, code: exitUsage, stderr: []string{`unknown command "exprot"`, "did you mean export?"}},
		{args: []string{"kmod"}, code: exitUsage, stderr: []string{"check"}},
		{args: []string{"release-info", "--help"}, stdout: []string{"-o, --output string", "-a, --authfile string", "--insecure", "--command-timeout"}},
		{args: []string{"demo"}, code: exitUsage, stderr: []string{"make demo"}},
		{args: []string{"completion", "bash"}, stdout: []string{"bash completion V2 for dtkbot"}},
		{args: []string{"completion", "zsh"}, stdout: []string{"#compdef dtkbot"}},
		{args: []string{"completion", "fish"}, stdout: []string{"complete -c dtkbot"}},
		// A config with mistakes: every one at once, by key and line.
		{args: []string{"validate-config", "--config", badConfig}, code: exitUsage, stderr: []string{
			"line 1: schedul: unknown key (did you mean schedule?)", `line 2: listen: "18099" is not host:port`,
			`line 6: registry.concurrency: want a whole number, got "three"`}},
		// Files that are not there.
		{args: []string{"validate-config", "--config", "nonexistent.yaml"}, code: exitUsage, stderr: []string{"reading config", "nonexistent.yaml"}},
		{args: []string{"release-info", "--authfile", "/nonexistent.json", "4.16.15"}, code: exitUsage, stderr: []string{"--authfile: ", "/nonexistent.json"}},
		{args: []string{"release-info", "--registry-config", "/nonexistent.json", "4.16.15"}, code: exitUsage, stderr: []string{"--authfile: ", "/nonexistent.json"}},
		{args: []string{"report", "--config", noState}, code: exitFailed, stderr: []string{"no state yet at " + stateAbs, "run `dtkbot reconcile --config " + noState + "` first"}},
		{args: []string{"state", "check", "--config", noState}, code: exitFailed, stderr: []string{"no state yet at " + stateAbs}},
		// Release arguments as oc reads them; refusals with a hint, never
		// sent to Docker Hub.
		{args: []string{"release-info", "4.16"}, code: exitUsage, stderr: []string{`"4.16": a minor is not a release: try --channel stable-4.16`}},
		{args: []string{"release-info", "ocp-release:4.16.15"}, code: exitUsage, stderr: []string{"names no registry", "docker.io/... for Docker Hub"}},
		{args: []string{"release-info", "4.16.15-aarch64"}, code: exitUsage, stderr: []string{"the tag is for aarch64, and --arch is amd64"}},
		{args: []string{"release-info", "oci:/tmp/x"}, code: exitUsage, stderr: []string{"only registries are read (docker://...), not oci:"}},
		{args: []string{"release-info", "--insecure", "--tls-verify", good}, code: exitUsage, stderr: []string{"say opposite things"}},
		{args: []string{"release-info", "-o", "xml", good}, code: exitUsage, stderr: []string{`-o "xml": want table, json, yaml or name`}},
		// A registry that takes connections and never answers: one
		// timeout, said, and not one per attempt and image.
		{args: []string{"release-info", "--timeout", "1s", "--insecure", "docker://" + silent.host() + "/ocp/release:4.16.15-x86_64", silent.host() + "/ocp/release:4.16.16-x86_64"},
			code: exitFailed, stderr: []string{"registry call timed out after 1s", "2 of 2 releases could not be read"}},
	} {
		code, stdout, stderr := dtkbot(s.args...)
		if code != s.code {
			t.Errorf("dtkbot %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(s.args, " "), code, s.code, stdout, stderr)
		}
		for _, w := range s.stdout {
			if !strings.Contains(stdout, w) {
				t.Errorf("dtkbot %s: standard output lacks %q:\n%s", strings.Join(s.args, " "), w, stdout)
			}
		}
		for _, w := range s.stderr {
			if !strings.Contains(stderr, w) {
				t.Errorf("dtkbot %s: standard error lacks %q:\n%s", strings.Join(s.args, " "), w, stderr)
			}
		}
	}
	// The silent registry was asked once: one connection, not one per
	// attempt (4) and per release (2).
	if n := silent.conns.Load(); n != 1 {
		t.Errorf("the silent registry got %d connections, want 1", n)
	}

	// -o yaml and -o name, against a registry that answers.
	code, stdout, stderr := dtkbot("release-info", "--insecure", "--registries-conf", "/dev/null", "-o", "yaml", good)
	var reports []map[string]any
	if err := yaml.Unmarshal([]byte(stdout), &reports); code != 0 || err != nil || len(reports) != 1 || reports[0]["release"] != "4.16.15" {
		t.Errorf("release-info -o yaml: exit %d, %v\n%s%s", code, err, stdout, stderr)
	}
	code, stdout, _ = dtkbot("release-info", "--insecure", "--registries-conf", "/dev/null", "-o", "name", good)
	if code != 0 || !strings.HasPrefix(stdout, cw.srv.Host()+"/openshift-release-dev/ocp-release@sha256:") {
		t.Errorf("release-info -o name: exit %d: %s", code, stdout)
	}
}

// silentRegistry takes connections and never answers, counting them.
type silentRegistry struct {
	ln    net.Listener
	conns atomic.Int64
}

func newSilentRegistry(t *testing.T) *silentRegistry {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &silentRegistry{ln: ln}
	var mu sync.Mutex
	var held []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.conns.Add(1)
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})
	return s
}

func (s *silentRegistry) host() string { return s.ln.Addr().String() }
