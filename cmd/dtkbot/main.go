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

	"github.com/sirupsen/logrus"
)

func main() {
	quietContainersImage()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// quietContainersImage keeps containers/image's own logging (logrus, a
// global) to warnings, as JSON on stderr: its info lines ("reconnecting")
// would otherwise interleave with dtkbot's logs as plain text. dtkbot
// reports the outcome of every call itself.
func quietContainersImage() {
	logrus.SetLevel(logrus.WarnLevel)
	logrus.SetFormatter(&logrus.JSONFormatter{FieldMap: logrus.FieldMap{logrus.FieldKeyMsg: "message"}})
	logrus.SetOutput(os.Stderr)
}
