package retry

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// waits makes p's waits immediate and records what they would have been.
func waits(p *Policy) *[]time.Duration {
	var got []time.Duration
	p.After = func(d time.Duration) <-chan time.Time {
		got = append(got, d)
		ch := make(chan time.Time, 1)
		ch <- time.Time{}
		return ch
	}
	return &got
}

var (
	errPasses = errors.New("503: try later")
	errStays  = errors.New("404: not there")
	errSlow   = errors.New("429: slow down")
)

func classify(err error) (bool, time.Duration) {
	switch {
	case errors.Is(err, errSlow):
		return true, 90 * time.Second
	case errors.Is(err, errPasses):
		return true, 0
	}
	return false, 0
}

// TestDo: attempts are bounded, each wait lies between half and all of its
// doubling step (and under MaxWait), a Retry-After replaces the backoff
// (capped), a failure that will not pass ends the calls, and the error
// says how many attempts it took.
func TestDo(t *testing.T) {
	for _, tc := range []struct {
		name     string
		attempts int
		answers  []error // the calls' answers, in order; the last repeats
		calls    int
		err      string // "" for success
		check    func(t *testing.T, w []time.Duration)
	}{
		{name: "success at once", attempts: 4, answers: []error{nil}, calls: 1},
		{name: "success on the third", attempts: 4, answers: []error{errPasses, errPasses, nil}, calls: 3,
			check: func(t *testing.T, w []time.Duration) {
				if len(w) != 2 || w[0] < time.Second/2 || w[0] > time.Second || w[1] < time.Second || w[1] > 2*time.Second {
					t.Errorf("waits %v: want one in [0.5s, 1s], then one in [1s, 2s]", w)
				}
			}},
		{name: "every attempt fails", attempts: 3, answers: []error{errPasses}, calls: 3, err: "after 3 attempts: 503: try later"},
		{name: "one attempt only", attempts: 1, answers: []error{errPasses}, calls: 1, err: "503: try later"},
		{name: "zero attempts is one", attempts: 0, answers: []error{errPasses}, calls: 1, err: "503: try later"},
		{name: "a failure that stays", attempts: 4, answers: []error{errStays}, calls: 1, err: "404: not there"},
		{name: "a failure that stays, after one that passed", attempts: 4, answers: []error{errPasses, errStays}, calls: 2, err: "after 2 attempts: 404: not there"},
		{name: "Retry-After instead of the backoff, capped", attempts: 2, answers: []error{errSlow, nil}, calls: 2,
			check: func(t *testing.T, w []time.Duration) {
				if len(w) != 1 || w[0] != MaxWait {
					t.Errorf("waits %v, want [%s]", w, MaxWait)
				}
			}},
		{name: "the backoff is capped", attempts: 12, answers: []error{errPasses}, calls: 12, err: "after 12 attempts",
			check: func(t *testing.T, w []time.Duration) {
				for _, d := range w {
					if d > MaxWait {
						t.Errorf("waits %v: one over %s", w, MaxWait)
					}
				}
				if last := w[len(w)-1]; last < MaxWait/2 {
					t.Errorf("waits %v: the backoff stopped growing before the cap", w)
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := Policy{Attempts: tc.attempts, Backoff: time.Second}
			w := waits(&p)
			calls := 0
			err := Do(context.Background(), p, classify, func(context.Context) error {
				calls++
				return tc.answers[min(calls, len(tc.answers))-1]
			})
			if calls != tc.calls {
				t.Errorf("%d calls, want %d", calls, tc.calls)
			}
			if (tc.err == "") != (err == nil) || (err != nil && !strings.HasPrefix(err.Error(), tc.err)) {
				t.Errorf("error %v, want %q", err, tc.err)
			}
			if len(*w) != max(calls-1, 0) {
				t.Errorf("%d waits for %d calls", len(*w), calls)
			}
			if tc.check != nil {
				tc.check(t, *w)
			}
		})
	}
}

// TestDoStopsWhenTheContextEnds: a context that ends during a wait ends
// the calls at once, saying what the last call answered; one that ended
// during a call is not retried.
func TestDoStopsWhenTheContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	p := Policy{Attempts: 4, Backoff: time.Hour, After: func(time.Duration) <-chan time.Time { cancel(); return nil }}
	calls := 0
	err := Do(ctx, p, classify, func(context.Context) error { calls++; return errPasses })
	if calls != 1 || !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "waiting to retry after: 503: try later") {
		t.Errorf("%d calls, %v", calls, err)
	}
	ctx, cancel = context.WithCancel(context.Background())
	calls = 0
	err = Do(ctx, Policy{Attempts: 4}, classify, func(context.Context) error { calls++; cancel(); return errPasses })
	if calls != 1 || !errors.Is(err, errPasses) {
		t.Errorf("cancelled during the call: %d calls, %v", calls, err)
	}
}
