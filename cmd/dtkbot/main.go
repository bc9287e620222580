// Command dtkbot watches OpenShift releases for new RHCOS kernels and keeps
// Driver Toolkit images built, verified, tagged and announced for them.
//
// main only turns signals into a context and the result into an exit code;
// everything else runs in run, so tests can drive the whole command.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
