package main

import (
	"context"
	"fmt"
	"net"
	"net/http"

	"github.com/dtkbot/dtkbot/internal/payloadtest"
	"github.com/dtkbot/dtkbot/internal/registrytest"
)

// runDemo is the offline demo: it starts an in-process registry on loopback,
// fills it with sample payloads of every era (the test world), and runs
// release-info against them, so a newcomer without a pull secret or network
// sees what dtkbot reads and what it costs.
func runDemo(ctx context.Context, env *cliEnv, args []string) int {
	fs := newFlagSet(env, "demo", "[-o table|json]")
	output := fs.String("o", "table", "output format: table or json")
	if _, err := parseInterleaved(fs, args); err != nil {
		return usageExit(err)
	}
	reg := registrytest.New()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		errorf(env, "demo: starting the local registry: %v", err)
		return exitFailed
	}
	srv := &http.Server{Handler: reg}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	host := ln.Addr().String()

	world := payloadtest.New(reg, host)
	world.ContentSize = 2 << 20
	var pullspecs []string
	var manual int64
	for _, spec := range payloadtest.Eras() {
		p := world.Release(spec)
		pullspecs = append(pullspecs, p.TagPullspec)
		manual += p.ManualBytes["amd64"]
	}
	fmt.Fprintf(env.stdout, "DEMO: a local registry at %s holds %d sample payloads, one per era (4.6 to 4.22, one multi-arch);\n"+
		"DEMO: nothing leaves this machine. Running: dtkbot release-info --tls-verify=false <payloads>\n\n", host, len(pullspecs))

	before := reg.Stats()
	code := runReleaseInfo(ctx, env, append([]string{"--tls-verify=false", "--registries-conf=/dev/null", "-o", *output}, pullspecs...))
	cost := reg.Stats().Sub(before)
	fmt.Fprintf(env.stdout, "\nDEMO: %d releases read with %d registry requests (+%d pings) and %d bytes; pulling the release and DTK images whole would move %d bytes.\n",
		len(pullspecs), cost.Requests, cost.Auth, cost.BytesServed, manual)
	return code
}
