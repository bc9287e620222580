package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dtkbot/dtkbot/internal/githubtest"
	"github.com/dtkbot/dtkbot/internal/poll"
	"github.com/dtkbot/dtkbot/state"
)

// syncBuffer is a buffer safe to write from the daemon's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestNoSecretInAnyLogLine runs a full reconcile and the daemon, at debug
// level, with every kind of secret configured (a pull secret for a registry
// that requires it, a GitHub token, a webhook secret, a trigger token), and
// greps everything dtkbot printed, and the state file, for each of them.
// The webhook's URL carries a token in its path and its query, as CI
// webhooks do.
func TestNoSecretInAnyLogLine(t *testing.T) {
	secrets := map[string]string{
		"pull password": "pull-s3cret-password-8f3a",
		"github token":  "ghp_s3cretgithubtoken0123456789abcdef",
		"webhook":       "whsec-s3cret-webhook-4b1d",
		"trigger":       "trigger-s3cret-token-77aa",
		"webhook path":  "hookpath-s3cret-91c2",
	}
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	gh := githubtest.New("acme", "driver-ci")
	defer gh.Close()
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no builds today", http.StatusBadRequest)
	}))
	defer hook.Close()
	gh.AddToken(secrets["github token"], "dtkbot-user")
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	listen := ln.Addr().String()
	ln.Close()
	cw := newCLIWorld(t, fmt.Sprintf(`  mirrors: []
build:
  backend: webhook
  max_attempts: 1
  webhook:
    url: %s/hooks/%s?token=%s
    secret_file: %s
github:
  api_url: %s
  token_file: %s
  repository: acme/driver-ci
trigger_token_file: %s
listen: %q
`, hook.URL, secrets["webhook path"], secrets["webhook"], write("webhook", secrets["webhook"]), gh.URL(), write("gh", secrets["github token"]+"\n"),
		write("trigger", secrets["trigger"]), listen))
	auth := base64.StdEncoding.EncodeToString([]byte("pull-bot:" + secrets["pull password"]))
	secrets["pull auth"] = auth
	authfile := write("auth.json", fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, cw.srv.Host(), auth))
	cw.srv.RequireBasicAuth("pull-bot", secrets["pull password"])
	cfg, _ := os.ReadFile(cw.config)
	cfg = bytes.Replace(cfg, []byte("log: {level: warn, format: json}"), []byte("log: {level: debug, format: json}"), 1)
	cfg = bytes.Replace(cfg, []byte("registry:\n"), []byte(fmt.Sprintf("registry:\n  authfile: %s\n", authfile)), 1)
	_ = os.WriteFile(cw.config, cfg, 0o600)

	var out syncBuffer
	run(context.Background(), []string{"reconcile", "--config", cw.config, "-o", "json"}, &out, &out)
	if !strings.Contains(out.String(), `"releases": 3`) {
		t.Fatalf("the reconcile did not run:\n%s", out.String())
	}
	// The daemon, with a trigger refused and one accepted.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int)
	go func() { done <- run(ctx, []string{"run", "--config", cw.config}, &out, &out) }()
	poll.Until(t, "the daemon serves", 0, func() bool {
		resp, err := http.Get("http://" + listen + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})
	// The pass at start has finished before the triggers, so the accepted
	// one starts a second pass.
	poll.Until(t, "the first pass", 0, func() bool { return strings.Count(out.String(), "pass finished") >= 1 })
	for _, tok := range []string{"wrong", secrets["trigger"]} {
		req, _ := http.NewRequest(http.MethodPost, "http://"+listen+"/trigger", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}
	poll.Until(t, "the triggered pass", 0, func() bool { return strings.Count(out.String(), "pass finished") >= 2 })
	cancel()
	<-done
	// What the state file keeps (reasons, build details, the journal).
	run(context.Background(), []string{"state", "export", "--config", cw.config}, &out, &out)

	logs := out.String()
	if !strings.Contains(logs, `"level":"debug"`) && !strings.Contains(logs, `"level":"info"`) {
		t.Fatalf("no log line was captured:\n%s", logs)
	}
	for name, secret := range secrets {
		if strings.Contains(logs, secret) {
			i := strings.Index(logs, secret)
			t.Errorf("the %s appears in dtkbot's output: ...%s...", name, logs[max(0, i-120):min(len(logs), i+40)])
		}
	}
}

// TestSecondDtkbotOnTheSameStateIsRefused: while another dtkbot holds the
// state file, `dtkbot reconcile` refuses, says so with the wait it gave
// the lock (a bound of a few seconds, from its own words, not a clock),
// and asks nothing of the graph or the registry first. That it returns at
// all while the lock is still held is the condition that it gives up: one
// that waited for the lock would never return (the test binary's timeout
// would end it).
func TestSecondDtkbotOnTheSameStateIsRefused(t *testing.T) {
	cw := newCLIWorld(t, "")
	s, err := state.Open(filepath.Join(filepath.Dir(cw.config), "dtkbot.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	graphBefore, regBefore := cw.graph.Requests.Load(), cw.srv.Registry.Stats()
	code, _, stderr := runCLI(t, "reconcile", "--config", cw.config)
	if code != exitFailed || !strings.Contains(stderr, "state file is in use by another dtkbot process") {
		t.Errorf("exit %d: %s", code, stderr)
	}
	m := regexp.MustCompile(`\(waited ([0-9a-zµ.]+);`).FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("the refusal does not say how long it waited: %s", stderr)
	}
	if waited, err := time.ParseDuration(m[1]); err != nil || waited <= 0 || waited > 5*time.Second {
		t.Errorf("waited %s (%v) for the lock, want a few seconds at most", m[1], err)
	}
	reg := cw.srv.Registry.Stats().Sub(regBefore)
	if n := cw.graph.Requests.Load() - graphBefore; n != 0 || reg.Requests != 0 || reg.Pings != 0 {
		t.Errorf("before refusing, it asked the graph %d times and the registry %d times", n, reg.Requests+reg.Pings)
	}
}
