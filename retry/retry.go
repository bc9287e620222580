// Package retry calls an outside service again after a failure that may
// pass (a 5xx, a 429, a refused or cut connection, a timeout): a bounded
// number of attempts, waits that grow exponentially with jitter
// (apimachinery's wait.Backoff computes them), a service's own Retry-After
// in place of the backoff, and a wait cut short when the context ends.
// The registry client and the remote build backends retry through it.
//
// It never decides which failures may pass (the caller's Classify does),
// never retries without a bound, and never waits on a clock the caller
// cannot replace (Policy.After).
package retry

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// MaxWait caps every wait between two attempts: the backoff's, and the one
// a service asks for with Retry-After.
const MaxWait = time.Minute

// Policy says how often a call is tried and how long to wait in between.
type Policy struct {
	// Attempts bounds the calls, the first included (at least one).
	Attempts int
	// Backoff is the first wait's step: the n-th wait is between half and
	// all of Backoff·2ⁿ⁻¹ (chosen at random, so that callers that failed
	// together do not come back together), at most MaxWait.
	Backoff time.Duration
	// After waits; nil is time.After. Tests replace it to count the waits
	// and skip them.
	After func(time.Duration) <-chan time.Time
}

// Classify says what a failed attempt means: whether trying again may
// succeed, and how long the service asked to be left alone before that (a
// Retry-After; zero leaves the wait to the backoff).
type Classify func(err error) (again bool, after time.Duration)

// Do calls call until it succeeds, fails in a way classify says will not
// pass, the context ends, or p.Attempts calls have failed. The error is
// the last call's, said to come "after N attempts" when there was more
// than one; a context that ended while waiting is that context's cause,
// with the last call's error.
func Do(ctx context.Context, p Policy, classify Classify, call func(context.Context) error) error {
	attempts := max(p.Attempts, 1)
	after := p.After
	if after == nil {
		after = time.After
	}
	// Half the step, plus up to as much again at random: between half and
	// all of it, as the doc says.
	backoff := wait.Backoff{Duration: p.Backoff / 2, Factor: 2, Jitter: 1, Steps: attempts, Cap: MaxWait / 2}
	for attempt := 1; ; attempt++ {
		err := call(ctx)
		if err == nil {
			return nil
		}
		again, asked := classify(err)
		if !again || attempt >= attempts || ctx.Err() != nil {
			if attempt > 1 {
				return fmt.Errorf("after %d attempts: %w", attempt, err)
			}
			return err
		}
		pause := backoff.Step()
		if asked > 0 {
			pause = asked
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (waiting to retry after: %v)", context.Cause(ctx), err)
		case <-after(min(pause, MaxWait)):
		}
	}
}
