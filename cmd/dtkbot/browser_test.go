package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/dtkbot/dtkbot/internal/citest"
	"github.com/dtkbot/dtkbot/internal/demo"
	"github.com/dtkbot/dtkbot/internal/githubtest"
	"github.com/dtkbot/dtkbot/internal/need"
	"github.com/dtkbot/dtkbot/internal/payloadtest"
	"github.com/dtkbot/dtkbot/internal/poll"
)

// chromium starts Debian's Chromium headless, as this machine allows it:
// no sandbox (root), no network beyond the page, a profile of its own. Its
// background services (component updates, sign-in) ask Google even with
// --disable-background-networking: no proxy (the loopback guard's would
// record them as the tests' own requests) and no name but loopback's.
func chromium(t *testing.T, args ...string) []byte {
	t.Helper()
	bin := need.Command(t, "chromium", "Debian's chromium package; .ci/run installs it")
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
		"--no-proxy-server", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1", "--user-data-dir=" + t.TempDir()}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, stderr.String())
	}
	return out
}

// TestCoveragePageInABrowser runs a reconcile over a world with a kernel
// in each state (promoted, failed, held, building) and a consumer (with an
// ABI verdict on a second kernel), serves the coverage
// page from `dtkbot run`, renders it in headless Chromium, and checks what
// the DOM the browser built shows for each, and the picture of the update
// graph (each release's readiness, the risks on updates, the updates from
// one release); then lays it out at 1366 px: it fits (checkLayout).
func TestCoveragePageInABrowser(t *testing.T) {
	need.Long(t, "starts a browser")
	const (
		promoted = "5.14.0-427.37.1.el9_4"
		failed   = "5.14.0-427.40.1.el9_4"
		building = "5.14.0-427.44.1.el9_4"
		second   = "5.14.0-427.50.1.el9_4"
	)
	ci := &citest.CI{Secret: []byte("hook")}
	ci.Change(func(b *citest.Builds) {
		b.Wrong, b.Never = map[string]string{failed: "5.14.0-427.99.1.el9_4"}, map[string]bool{building: true}
	})
	ciServer := httptest.NewServer(http.HandlerFunc(ci.Webhook))
	defer ciServer.Close()
	gh := githubtest.New("acme", "driver-ci")
	defer gh.Close()
	gh.AddToken("ghp_browser", "dtkbot-user")
	gh.SetFile("main", "kernels.yaml", "")
	dir := t.TempDir()
	secret, token := filepath.Join(dir, "hook"), filepath.Join(dir, "token")
	_ = os.WriteFile(secret, []byte("hook"), 0o600)
	_ = os.WriteFile(token, []byte("ghp_browser"), 0o600)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := ln.Addr().String()
	ln.Close()
	cw := newCLIWorld(t, fmt.Sprintf(`build:
  backend: webhook
  max_attempts: 1
  webhook:
    url: %s
    secret_file: %s
github:
  api_url: %s
  token_file: %s
  repository: acme/driver-ci
  mutation_interval: 1ms
  pull_request:
    path: kernels.yaml
consumers:
  - name: simple-kmod
    build:
      backend: webhook
      webhook:
        url: %s
        secret_file: %s
    target:
      repository: REGISTRY/dtkbot/simple-kmod
listen: %q
`, ciServer.URL, secret, gh.URL(), token, ciServer.URL, secret, listen))
	// The consumer's repository is in the registry, whose address is known now.
	if err := os.WriteFile(cw.config, []byte(strings.Replace(mustRead(t, cw.config), "REGISTRY/", cw.srv.Host()+"/", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	ci.SetWorld(cw.world)
	// The world of newCLIWorld ships promoted (4.16.15, 4.16.16) and failed
	// (4.16.17); add a build still going and a payload held for good.
	cw.graph.Publish("stable-4.16", "amd64", "4.16.18", cw.world.Release(payloadtest.ReleaseSpec{Version: "4.16.18", Stream: payloadtest.Stream{Kernel: building}}).Pullspec)
	cw.graph.Publish("stable-4.16", "amd64", "4.16.19", cw.world.Release(payloadtest.ReleaseSpec{Version: "4.16.19", Stream: payloadtest.Stream{Kernel: promoted},
		Tweak: payloadtest.DuplicateTag("driver-toolkit", cw.srv.Host()+"/"+cw.world.ComponentRepo+"@sha256:"+strings.Repeat("0", 64))}).Pullspec)
	// A second kernel promoted: its ABI verdict for the consumer (whose
	// modules for the first kernel would load on it).
	cw.graph.Publish("stable-4.16", "amd64", "4.16.20", cw.world.Release(payloadtest.ReleaseSpec{Version: "4.16.20", Stream: payloadtest.Stream{Kernel: second}}).Pullspec)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int)
	var logs syncBuffer
	go func() { done <- run(ctx, []string{"run", "--config", cw.config}, &logs, &logs) }()
	defer func() { cancel(); <-done }()
	poll.Until(t, "the first pass", 0, func() bool { return strings.Contains(logs.String(), "pass finished") })

	dom := chromium(t, "--dump-dom", "http://"+listen+"/")
	doc, err := html.Parse(bytes.NewReader(dom))
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]*html.Node{} // release -> its row
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode && n.Data == "tr" && attr(n, "data-release") != "" {
			rows[attr(n, "data-release")] = n
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	for release, want := range map[string][]string{
		"4.16.15": {"promoted", promoted + ".x86_64", "/dtkbot/driver-toolkit@sha256:", ":4.16.15", "issue", "pull request", "simple-kmod promoted"},
		"4.16.17": {"failed", "verification failed", "carries 5.14.0-427.99.1.el9_4"},
		"4.16.18": {"building", "attempt 1"},
		"4.16.19": {"held", "appears twice with different images"},
		"4.16.20": {"promoted", "simple-kmod promoted", "ABI: simple-kmod: the modules for " + promoted + ".x86_64 would load (every symbol version matches)"},
	} {
		row, ok := rows[release]
		if !ok {
			t.Errorf("the page shows no row for %s", release)
			continue
		}
		text := strings.Join(strings.Fields(textOf(row)), " ")
		for _, w := range want {
			if !strings.Contains(text, w) {
				t.Errorf("%s's row shows %q, not %q", release, text, w)
			}
		}
		if st := attr(row, "data-state"); st != want[0] {
			t.Errorf("%s's row is %q, want %q", release, st, want[0])
		}
	}
	if text := textOf(doc); !strings.Contains(text, "Last pass") || !strings.Contains(text, "Next pass") || !strings.Contains(text, "off") {
		t.Errorf("the header lacks the passes or the signature mode:\n%s", strings.Join(strings.Fields(text), " "))
	}

	// The update graph's picture: each release coloured by its drivers'
	// readiness, a risk on each update to a release whose drivers are
	// not ready; from one release, its updates.
	dom = chromium(t, "--dump-dom", "http://"+listen+"/?channel=stable-4.16")
	if doc, err = html.Parse(bytes.NewReader(dom)); err != nil {
		t.Fatal(err)
	}
	drawn, updates := map[string]string{}, map[string]string{}
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode && n.Data == "g" && attr(n, "data-version") != "" {
			drawn[attr(n, "data-version")] = attr(n, "data-state")
		}
		if n.Type == html.ElementNode && n.Data == "path" && attr(n, "data-from") != "" {
			updates[attr(n, "data-from")+" -> "+attr(n, "data-to")] = attr(n, "data-risk")
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	for release, want := range map[string]string{"4.16.15": "ready", "4.16.16": "ready", "4.16.17": "blocked", "4.16.18": "waiting", "4.16.19": "blocked", "4.16.20": "ready"} {
		if drawn[release] != want {
			t.Errorf("the update graph draws %s %q, want %q (%v)", release, drawn[release], want, drawn)
		}
	}
	for update, want := range map[string]string{"4.16.15 -> 4.16.16": "", "4.16.16 -> 4.16.17": "dtkbot", "4.16.17 -> 4.16.18": "dtkbot",
		"4.16.18 -> 4.16.19": "dtkbot", "4.16.19 -> 4.16.20": ""} {
		if got, ok := updates[update]; !ok || got != want {
			t.Errorf("the update %s is drawn with risk %q (%v), want %q", update, got, ok, want)
		}
	}
	dom = chromium(t, "--dump-dom", "http://"+listen+"/?channel=stable-4.16&from=4.16.16")
	if !bytes.Contains(dom, []byte(`data-version="4.16.16" data-state="ready" data-from="true"`)) || !bytes.Contains(dom, []byte(`data-from="4.16.16" data-to="4.16.17" data-risk="dtkbot"`)) ||
		bytes.Contains(dom, []byte(`data-from="4.16.15" data-to`)) {
		t.Errorf("the updates from 4.16.16 are not drawn as such")
	}

	// The page as served (its Content-Security-Policy allows no script;
	// DevTools measures it all the same) fits a laptop's screen, and
	// shows both pictures.
	l := checkLayout(t, "http://"+listen+"/", 1366)[1366]
	if l.UpdateGraphs == 0 || l.Timelines != 1 || l.Marks == 0 {
		t.Errorf("pictures: %d update graphs, %d timelines with %d marks", l.UpdateGraphs, l.Timelines, l.Marks)
	}
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

func textOf(n *html.Node) string {
	var b strings.Builder
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.TextNode {
			b.WriteString(n.Data + " ")
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return b.String()
}

// TestDemoCoveragePageInABrowser lays out the coverage page the demo
// writes (a world of every era, consumers, a rejection, held payloads) in
// headless Chromium at the widths of laptop screens, 1366 and 1440 px: it
// fits them (no sideways scrolling, nothing reaching out of its cell), and
// shows the update graph and the lead-time timeline, image references
// short with the full one in their title. It writes the screenshot at
// 1366 px to $DTKBOT_SCREENSHOT when set (`make screenshot`:
// docs/coverage.png).
func TestDemoCoveragePageInABrowser(t *testing.T) {
	need.Long(t, "starts a browser")
	need.Command(t, "chromium", "Debian's chromium package; .ci/run installs it")
	dir := t.TempDir()
	var story bytes.Buffer
	if code := demo.Run(context.Background(), demo.Options{Stdout: &story, Dir: dir, Dtkbot: dtkbotCommand}); code != 0 {
		t.Fatalf("demo exit %d:\n%s", code, story.String())
	}
	page := "file://" + filepath.Join(dir, "coverage.html")
	layouts := checkLayout(t, page, 1366, 1440)
	l := layouts[1366]
	if l.UpdateGraphs == 0 || l.Timelines != 1 || l.Marks < 10 {
		t.Errorf("pictures: %d update graphs, %d timelines with %d marks", l.UpdateGraphs, l.Timelines, l.Marks)
	}
	if l.Refs < 5 || l.RefsFull != l.Refs {
		t.Errorf("%d short references, %d with the full one in their title", l.Refs, l.RefsFull)
	}
	t.Logf("at 1366 px: %d px wide, %d px tall", l.ScrollWidth, l.PageHeight)
	if shot := os.Getenv("DTKBOT_SCREENSHOT"); shot != "" {
		abs, err := filepath.Abs(shot)
		if err != nil {
			t.Fatal(err)
		}
		b := startBrowser(t, 1366, 1000)
		b.open(t, page)
		b.screenshot(t, abs, 1366, 1000)
		t.Logf("screenshot: %s", abs)
	}
}
