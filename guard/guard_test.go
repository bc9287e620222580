package guard

import (
	"errors"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/dtkbot/dtkbot/internal/loopback"
)

// TestMain keeps the tests on loopback (internal/loopback).
func TestMain(m *testing.M) { os.Exit(loopback.Run(m)) }

func indexOutOfRange(s []int, i int) int { return s[i] }

func TestRunTurnsAPanicIntoAnError(t *testing.T) {
	if err := Run(func() error { return nil }); err != nil {
		t.Errorf("no panic: %v", err)
	}
	plain := errors.New("plain")
	if err := Run(func() error { return plain }); err != plain {
		t.Errorf("an error: %v", err)
	}
	err := Run(func() error { indexOutOfRange([]int{1}, 3); return nil })
	var p *PanicError
	var re runtime.Error
	if !errors.As(err, &p) || !errors.As(err, &re) || !strings.Contains(err.Error(), "index out of range [3] with length 1") ||
		!strings.Contains(p.At, "guard.indexOutOfRange") || !strings.Contains(p.At, "guard_test.go:") || !strings.Contains(string(p.Stack), "indexOutOfRange") {
		t.Errorf("a runtime panic: %v (at %q)", err, p.At)
	}
	if err := Run(func() error { panic("by hand") }); !strings.HasPrefix(err.Error(), "panic: by hand (in github.com/dtkbot/dtkbot/guard.") {
		t.Errorf("panic(string): %v", err)
	}
}

// TestGoReportsEachPanic: panics in some of many goroutines end none of
// them early and each reaches its own onPanic; the defers of the one that
// panicked run (a slot given back).
func TestGoReportsEachPanic(t *testing.T) {
	var wg sync.WaitGroup
	errs := make([]error, 10)
	slots := make(chan struct{}, 2)
	for i := range errs {
		Go(&wg, func() {
			slots <- struct{}{}
			defer func() { <-slots }()
			if i%3 == 0 {
				panic(i)
			}
		}, func(err error) { errs[i] = err })
	}
	wg.Wait()
	for i, err := range errs {
		if (i%3 == 0) != (err != nil) {
			t.Errorf("item %d: %v", i, err)
		}
	}
	if len(slots) != 0 {
		t.Errorf("%d slots still taken", len(slots))
	}
}

// TestEachRunsEveryCallWithinItsLimit: Each calls do for every index, never
// more than limit at once, and hands a panic to failed with its index while
// the other calls go on.
func TestEachRunsEveryCallWithinItsLimit(t *testing.T) {
	var mu sync.Mutex
	running, most := 0, 0
	done := make([]bool, 20)
	var failedAt []int
	Each(3, len(done), func(i int) {
		mu.Lock()
		running++
		most = max(most, running)
		mu.Unlock()
		defer func() { mu.Lock(); running--; mu.Unlock() }()
		if i == 7 {
			panic("seven")
		}
		mu.Lock()
		done[i] = true
		mu.Unlock()
	}, func(i int, err error) {
		var p *PanicError
		if !errors.As(err, &p) {
			t.Errorf("%d: %v is no *PanicError", i, err)
		}
		mu.Lock()
		failedAt = append(failedAt, i)
		mu.Unlock()
	})
	for i, d := range done {
		if d != (i != 7) {
			t.Errorf("call %d done: %v", i, d)
		}
	}
	if most > 3 || len(failedAt) != 1 || failedAt[0] != 7 {
		t.Errorf("at most %d at once (limit 3); failed %v", most, failedAt)
	}
}
