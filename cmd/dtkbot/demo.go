package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"

	"github.com/dtkbot/dtkbot/internal/citest"
	"github.com/dtkbot/dtkbot/internal/githubtest"
	"github.com/dtkbot/dtkbot/internal/graphtest"
	"github.com/dtkbot/dtkbot/internal/payloadtest"
	"github.com/dtkbot/dtkbot/internal/registrytest"
)

// runDemo is the offline demo, clearly labelled as such. It starts, on
// loopback, a registry filled with sample payloads of every era (the test
// world), an update graph publishing them, and a CI stand-in that "builds" a
// DTK image when dtkbot's signed webhook asks, and a GitHub stand-in for the
// issues and pull requests; then it runs the real
// commands against them: release-info, a reconcile, and a second reconcile
// that finds nothing to do. A newcomer sees the whole flow with no pull
// secret and no network.
func runDemo(ctx context.Context, env *cliEnv, args []string) int {
	fs := newFlagSet(env, "demo", "")
	if _, err := parseInterleaved(fs, args); err != nil {
		return usageExit(err)
	}
	dir, err := os.MkdirTemp("", "dtkbot-demo-")
	if err != nil {
		errorf(env, "demo: %v", err)
		return exitFailed
	}
	defer os.RemoveAll(dir)

	reg := registrytest.New()
	regHost, stopReg, err := serve(reg)
	if err != nil {
		errorf(env, "demo: starting the local registry: %v", err)
		return exitFailed
	}
	defer stopReg()
	graph := graphtest.New()
	defer graph.Close()
	world := payloadtest.New(reg, regHost)
	world.ContentSize = 1 << 20

	gh := githubtest.New("acme", "driver-ci")
	defer gh.Close()
	gh.AddToken("demo-github-token", "dtkbot-demo")
	gh.SetFile("main", "kernels.yaml", "# kernels our driver CI builds for (DEMO)\n")
	tokenFile := filepath.Join(dir, "github-token")
	if err := os.WriteFile(tokenFile, []byte("demo-github-token"), 0o600); err != nil {
		errorf(env, "demo: %v", err)
		return exitFailed
	}

	secret := "demo-webhook-secret"
	ci, stopCI, err := serve(http.HandlerFunc((&citest.CI{World: world, Secret: []byte(secret), Dedupe: true}).Webhook))
	if err != nil {
		errorf(env, "demo: starting the CI stand-in: %v", err)
		return exitFailed
	}
	defer stopCI()

	var pullspecs []string
	for _, spec := range payloadtest.Eras() {
		p := world.Release(spec)
		pullspecs = append(pullspecs, p.TagPullspec)
		if p.Minor >= 16 && len(spec.Arches) == 0 {
			graph.Publish(fmt.Sprintf("stable-4.%d", p.Minor), "amd64", spec.Version, p.Pullspec)
		}
	}
	// z-streams sharing a kernel, a new kernel, and a broken payload.
	for i, s := range []payloadtest.Stream{
		{Kernel: "5.14.0-427.37.1.el9_4", RTKernel: "5.14.0-427.37.1.el9_4"},
		{Kernel: "5.14.0-427.40.1.el9_4", RTKernel: "5.14.0-427.40.1.el9_4"},
		{Kernel: "5.14.0-427.42.1.el9_4", DTKKernel: "5.14.0-427.44.1.el9_4"},
	} {
		v := fmt.Sprintf("4.16.%d", 16+i)
		graph.Publish("stable-4.16", "amd64", v, world.Release(payloadtest.ReleaseSpec{Version: v, Stream: s}).Pullspec)
	}
	secretFile := filepath.Join(dir, "webhook-secret")
	if err := os.WriteFile(secretFile, []byte(secret), 0o600); err != nil {
		errorf(env, "demo: %v", err)
		return exitFailed
	}
	cfg := filepath.Join(dir, "config.yaml")
	err = os.WriteFile(cfg, []byte(fmt.Sprintf(`# DEMO config: everything on loopback.
schedule: "@every 30m"
state: dtkbot.db
log: {level: error, format: json}
graph:
  url: %s
  channels: [stable-4.16, stable-4.19, stable-4.22]
registry:
  tls_verify: false
  registries_conf: /dev/null
target:
  repository: %s/demo/driver-toolkit
  release_tags: ["{{.Release}}{{.StreamSuffix}}"]
  floating_tags: ["{{.Minor}}{{.StreamSuffix}}"]
build:
  backend: webhook
  webhook:
    url: http://%s/build
    secret_file: %s
github:
  api_url: %s
  token_file: %s
  repository: acme/driver-ci
  mutation_interval: 1ms
  pull_request:
    path: kernels.yaml
`, graph.URL(), regHost, ci, secretFile, gh.URL(), tokenFile)), 0o600)
	if err != nil {
		errorf(env, "demo: %v", err)
		return exitFailed
	}

	fmt.Fprintf(env.stdout, "DEMO: everything below runs on this machine: a registry at %s with sample payloads of every era,\n"+
		"DEMO: an update graph at %s, a CI stand-in that builds DTK images on dtkbot's signed webhook,\n"+
		"DEMO: and a GitHub stand-in at %s with the repository acme/driver-ci.\n\n", regHost, graph.HTTP.URL, gh.HTTP.URL)

	fmt.Fprintln(env.stdout, "DEMO 1/3: dtkbot release-info --tls-verify=false <one payload per era>")
	before := reg.Stats()
	code := runReleaseInfo(ctx, env, append([]string{"--tls-verify=false", "--registries-conf=/dev/null"}, pullspecs...))
	cost := reg.Stats().Sub(before)
	fmt.Fprintf(env.stdout, "\nDEMO: %d payloads read with %d registry requests (+%d pings) and %d bytes, never a content layer.\n\n",
		len(pullspecs), cost.Requests, cost.Auth, cost.BytesServed)
	if code != exitOK {
		return code
	}

	fmt.Fprintln(env.stdout, "DEMO 2/3: dtkbot reconcile --config <demo config>   (discover, inspect, build once per kernel, verify, promote)")
	if code := runReconcile(ctx, env, []string{"--config", cfg}); code != exitOK && code != exitFailed {
		return code
	}
	fmt.Fprintf(env.stdout, "\nDEMO: tags now in %s/demo/driver-toolkit: %v\n", regHost, reg.Tags("demo/driver-toolkit"))
	fmt.Fprintln(env.stdout, "DEMO: issues and pull requests in acme/driver-ci:")
	for _, i := range gh.Issues() {
		fmt.Fprintf(env.stdout, "DEMO:   issue #%d [%s] %s\n", i.Number, i.State, i.Title)
	}
	for _, p := range gh.Pulls() {
		fmt.Fprintf(env.stdout, "DEMO:   pull request #%d [%s] %s (%s -> %s)\n", p.Number, p.State, p.Title, p.Head, p.Base)
	}
	fmt.Fprintln(env.stdout)

	fmt.Fprintln(env.stdout, "DEMO 3/3: dtkbot reconcile again   (nothing new: one conditional graph request per channel, no payload read)")
	before = reg.Stats()
	code = runReconcile(ctx, env, []string{"--config", cfg})
	cost = reg.Stats().Sub(before)
	fmt.Fprintf(env.stdout, "DEMO: that pass made %d registry requests.\n", cost.Requests)
	if code != exitOK {
		return code
	}
	return exitOK
}

// serve starts h on a loopback port.
func serve(h http.Handler) (host string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h}
	go func() { _ = srv.Serve(ln) }()
	return ln.Addr().String(), func() { _ = srv.Close() }, nil
}
