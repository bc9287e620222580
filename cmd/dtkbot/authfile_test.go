package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBrokenPullSecretFailsThePassNamingIt: a pull secret whose "auth"
// field is not base64 fails the pass with the file named and what is wrong
// with it, before any credential is asked for: not as anonymous 401s, and
// never with the secret in the output.
func TestBrokenPullSecretFailsThePassNamingIt(t *testing.T) {
	cw := newCLIWorld(t, "")
	cw.srv.RequireBearerAuth("pull-bot", "s3cret")
	authfile := filepath.Join(t.TempDir(), "pull-secret.json")
	if err := os.WriteFile(authfile, []byte(fmt.Sprintf(`{"auths":{%q:{"auth":"pull-bot:s3cret"}}}`, cw.srv.Host())), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile(cw.config)
	if err != nil {
		t.Fatal(err)
	}
	cfg = bytes.Replace(cfg, []byte("registry:\n"), []byte(fmt.Sprintf("registry:\n  authfile: %s\n", authfile)), 1)
	if err := os.WriteFile(cw.config, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	before := cw.srv.Stats()
	code, stdout, stderr := runCLI(t, "reconcile", "--config", cw.config, "--dry-run")
	if code != exitFailed {
		t.Fatalf("exit %d, want %d\n%s%s", code, exitFailed, stdout, stderr)
	}
	for _, want := range []string{authfile, `the "auth" field of its entry is not base64`, "reading the registry credentials for " + cw.srv.Host()} {
		if !strings.Contains(stderr, want) {
			t.Errorf("the output does not say %q:\n%s", want, stderr)
		}
	}
	// Said once in the pass, not once per release that needed it.
	if n := strings.Count(stderr, "reading the registry credentials for"); n != 1 {
		t.Errorf("the broken pull secret is said %d times, want once:\n%s", n, stderr)
	}
	for _, never := range []string{"s3cret", "HTTP 401", "unauthorized"} {
		if strings.Contains(stdout+stderr, never) {
			t.Errorf("the output says %q:\n%s%s", never, stdout, stderr)
		}
	}
	if d := cw.srv.Stats().Sub(before); d.Tokens != 0 || d.Refused != 0 {
		t.Errorf("%d token requests, %d refused requests with a broken pull secret; want none", d.Tokens, d.Refused)
	}
}
