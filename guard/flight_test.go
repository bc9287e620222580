package guard

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/dtkbot/dtkbot/internal/poll"
)

// waiting is a context that says when a caller of Share has joined a call:
// Share asks for Done only once it has.
type waiting struct {
	context.Context
	once   sync.Once
	joined chan struct{}
}

func newWaiting(ctx context.Context) *waiting {
	return &waiting{Context: ctx, joined: make(chan struct{})}
}

func (w *waiting) Done() <-chan struct{} {
	w.once.Do(func() { close(w.joined) })
	return w.Context.Done()
}

type answer struct {
	val string
	err error
}

// TestShareRunsOneCallPerKey: callers that ask for a key while its call
// runs share it; a caller that asks after it returned runs it again
// (nothing is kept).
func TestShareRunsOneCallPerKey(t *testing.T) {
	var f Flight
	var calls atomic.Int32
	started, release := make(chan struct{}), make(chan struct{})
	read := func(context.Context) (string, error) {
		if calls.Add(1) == 1 {
			close(started)
		}
		<-release
		return "kernel files", nil
	}
	answers := make(chan answer, 5)
	go func() {
		v, err := Share(context.Background(), &f, "dtk@sha256:1/k", read)
		answers <- answer{v, err}
	}()
	poll.Receive(t, "the first call to start", 0, started)
	for range 4 {
		w := newWaiting(context.Background())
		go func() {
			v, err := Share(w, &f, "dtk@sha256:1/k", read)
			answers <- answer{v, err}
		}()
		poll.Receive(t, "a caller to join the call", 0, w.joined)
	}
	close(release)
	for range 5 {
		if a := poll.Receive(t, "the callers' answers", 0, answers); a.val != "kernel files" || a.err != nil {
			t.Errorf("answer %+v", a)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("%d calls for five callers at once, want 1", n)
	}
	if v, err := Share(context.Background(), &f, "dtk@sha256:1/k", read); v != "kernel files" || err != nil || calls.Load() != 2 {
		t.Errorf("a caller after the call: %q %v, %d calls", v, err, calls.Load())
	}
}

// TestShareWaitersLeaveWithTheirContext: a caller whose context ends stops
// waiting at once, while the call goes on for the one that started it; and
// when the caller that started a call leaves and the call fails for it,
// the callers still waiting start it again.
func TestShareWaitersLeaveWithTheirContext(t *testing.T) {
	var f Flight
	var calls atomic.Int32
	started, release := make(chan struct{}, 2), make(chan struct{})
	read := func(ctx context.Context) (string, error) {
		calls.Add(1)
		started <- struct{}{}
		select {
		case <-release:
			return "read", nil
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	first := make(chan answer, 1)
	firstCtx, leave := context.WithCancel(context.Background())
	go func() {
		v, err := Share(firstCtx, &f, "k", read)
		first <- answer{v, err}
	}()
	poll.Receive(t, "the first call to start", 0, started)

	// A waiter whose context ends: back at once, the call still under way.
	impatient, cancel := context.WithCancel(context.Background())
	w := newWaiting(impatient)
	gone := make(chan answer, 1)
	go func() {
		v, err := Share(w, &f, "k", read)
		gone <- answer{v, err}
	}()
	poll.Receive(t, "a waiter to join", 0, w.joined)
	cancel()
	if a := poll.Receive(t, "the waiter whose context ended to stop waiting", 0, gone); !errors.Is(a.err, context.Canceled) {
		t.Errorf("the waiter that left: %+v", a)
	}

	// A patient waiter, then the caller that started the call leaves.
	patient := newWaiting(context.Background())
	stays := make(chan answer, 1)
	go func() {
		v, err := Share(patient, &f, "k", read)
		stays <- answer{v, err}
	}()
	poll.Receive(t, "a patient waiter to join", 0, patient.joined)
	leave()
	if a := poll.Receive(t, "the first caller to leave", 0, first); !errors.Is(a.err, context.Canceled) {
		t.Errorf("the caller that left: %+v", a)
	}
	poll.Receive(t, "the patient waiter to start the call again", 0, started)
	close(release)
	if a := poll.Receive(t, "the patient waiter's answer", 0, stays); a.val != "read" || a.err != nil {
		t.Errorf("the patient waiter: %+v", a)
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("%d calls, want 2 (the first, abandoned; the patient waiter's)", n)
	}
}

// TestShareTurnsAPanicIntoEveryWaitersError: a panic in the shared call is
// an error for each caller, and the process goes on.
func TestShareTurnsAPanicIntoEveryWaitersError(t *testing.T) {
	var f Flight
	started, release := make(chan struct{}), make(chan struct{})
	read := func(context.Context) (int, error) {
		close(started)
		<-release
		var m map[string]int
		m["x"] = 1
		return 0, nil
	}
	answers := make(chan error, 2)
	go func() { _, err := Share(context.Background(), &f, "k", read); answers <- err }()
	poll.Receive(t, "the call to start", 0, started)
	w := newWaiting(context.Background())
	go func() { _, err := Share(w, &f, "k", read); answers <- err }()
	poll.Receive(t, "a waiter to join", 0, w.joined)
	close(release)
	for range 2 {
		err := poll.Receive(t, "the callers' errors", 0, answers)
		var p *PanicError
		if !errors.As(err, &p) || !strings.Contains(err.Error(), "assignment to entry in nil map") {
			t.Errorf("error %v", err)
		}
	}
}
