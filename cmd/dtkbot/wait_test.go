package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dtkbot/dtkbot/registry"
)

// TestSlowCallsAreSaidOnceEach: the progress line says what a command
// waits for, once per registry and attempt however many calls wait on it;
// and not at all when standard error is no terminal.
func TestSlowCallsAreSaidOnceEach(t *testing.T) {
	var out bytes.Buffer
	say := newSlowPrinter(&out)
	for range 3 {
		say(registry.Slow{Host: "quay.io", Attempt: 1, Attempts: 4, Timeout: 2 * time.Minute})
	}
	say(registry.Slow{Host: "quay.io", Attempt: 2, Attempts: 4, Timeout: 2 * time.Minute})
	want := "waiting for quay.io (attempt 1 of 4, each up to 2m0s) …\nwaiting for quay.io (attempt 2 of 4, each up to 2m0s) …\n"
	if out.String() != want {
		t.Errorf("progress lines:\n%q\nwant\n%q", out.String(), want)
	}
	if slowReporter(&cliEnv{stderr: &out}) != nil {
		t.Error("a progress line on something that is not a terminal")
	}
}

func TestExplainDeadline(t *testing.T) {
	ctx, cancel := withDeadline(context.Background(), time.Nanosecond)
	defer cancel()
	<-ctx.Done()
	err := explainDeadline(ctx, errors.New("reading manifest of x: context deadline exceeded"))
	if !strings.Contains(err.Error(), "the command took longer than --command-timeout 1ns") {
		t.Errorf("%v", err)
	}
	if explainDeadline(context.Background(), nil) != nil {
		t.Error("an error from nothing")
	}
}
