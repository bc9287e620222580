package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/dtkbot/dtkbot/registry"
)

// slowReporter says on a terminal what a command waits for when a registry
// call is slow: "waiting for quay.io (attempt 2 of 4) ...". Nothing when
// standard error is not a terminal (a pipe, a log file, CI).
func slowReporter(env *cliEnv) func(registry.Slow) {
	if !isTerminal(env.stderr) {
		return nil
	}
	return newSlowPrinter(env.stderr)
}

// newSlowPrinter writes one line per registry and attempt, however many
// calls wait on it at once.
func newSlowPrinter(w io.Writer) func(registry.Slow) {
	var mu sync.Mutex
	said := map[registry.Slow]bool{}
	return func(s registry.Slow) {
		mu.Lock()
		defer mu.Unlock()
		if said[s] {
			return
		}
		said[s] = true
		fmt.Fprintf(w, "waiting for %s (attempt %d of %d, each up to %s) …\n", s.Host, s.Attempt, s.Attempts, s.Timeout)
	}
}

// explainDeadline adds why ctx ended (--command-timeout) to an error it
// caused, if the error does not say so already.
func explainDeadline(ctx context.Context, err error) error {
	if err == nil || ctx.Err() == nil {
		return err
	}
	cause := context.Cause(ctx)
	if cause == nil || errors.Is(err, cause) {
		return err
	}
	return fmt.Errorf("%w (%v)", err, cause)
}
