// Package poll waits, in tests, on a condition rather than a clock: the
// deadline only bounds how long a broken test hangs, so it is generous
// (a shared two-core CI runner with busy neighbours must never reach it),
// and the tick is short, so a passing test waits no longer than it must.
package poll

import (
	"sync"
	"testing"
	"time"
)

// Deadline is how long Until waits when given no deadline of its own.
const Deadline = time.Minute

// tick is how often Until looks at the condition.
const tick = 2 * time.Millisecond

// Until calls cond every tick until it returns true, and fails t with what
// (what was awaited, e.g. "the pass to finish") if it has not by deadline
// (Deadline when deadline is 0). Until returns as soon as cond holds.
func Until(t testing.TB, what string, deadline time.Duration, cond func() bool) {
	t.Helper()
	UntilWhy(t, what, deadline, func() (bool, string) { return cond(), "" })
}

// UntilWhy is Until for a condition that also says why it does not hold
// yet; the last reason is in the failure.
func UntilWhy(t testing.TB, what string, deadline time.Duration, cond func() (bool, string)) {
	t.Helper()
	if deadline <= 0 {
		deadline = Deadline
	}
	end := time.Now().Add(deadline)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(end) {
			if why != "" {
				t.Fatalf("waited %s for %s: %s", deadline, what, why)
			} else {
				t.Fatalf("waited %s for %s", deadline, what)
			}
			return
		}
		time.Sleep(tick) // waiting on the condition, not deciding anything
	}
}

// Receive waits for a value from c (say, what a call run apart returned)
// and fails t with what if none came by deadline (Deadline when 0).
func Receive[T any](t testing.TB, what string, deadline time.Duration, c <-chan T) T {
	t.Helper()
	if deadline <= 0 {
		deadline = Deadline
	}
	timer := time.NewTimer(deadline)
	defer timer.Stop()
	select {
	case v := <-c:
		return v
	case <-timer.C:
		t.Fatalf("waited %s for %s", deadline, what)
		var zero T
		return zero
	}
}

// Repeat calls f again and again in a goroutine of its own (a load the
// test runs against while it changes something) until the returned stop
// is called; stop returns once f has returned for the last time.
func Repeat(f func()) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
				f()
			}
		}
	})
	return func() { close(done); wg.Wait() }
}
