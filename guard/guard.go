// Package guard runs a pass's work so that a panic in one item becomes
// that item's error instead of the end of the process: Go ends the whole
// program on a panic in any goroutine that does not recover it, and a
// daemon that reads untrusted payloads, layers and modules must not die of
// one, nor lose the rest of its pass. Work that several items need at once
// (one image's read) is shared among them (Flight), and each can stop
// waiting for it when its context ends. It never hides a panic: the error
// says where it happened, and carries the stack.
package guard

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
)

// PanicError is a recovered panic.
type PanicError struct {
	// Value is what was passed to panic; At the function and line that
	// panicked; Stack the goroutine's stack when it did.
	Value any
	At    string
	Stack []byte
}

func (e *PanicError) Error() string {
	return fmt.Sprintf("panic: %v (in %s)", e.Value, e.At)
}

// Unwrap is the panic's value when it is an error (a runtime.Error, ...).
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

// Run calls f and returns its error, or a *PanicError when f panicked.
func Run(f func() error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &PanicError{Value: v, At: panicked(), Stack: debug.Stack()}
		}
	}()
	return f()
}

// Go runs f in a new goroutine of wg (as wg.Go does), and hands a panic in
// it, as a *PanicError, to onPanic (which runs in that goroutine, before
// wg counts it done) instead of ending the program.
func Go(wg *sync.WaitGroup, f func(), onPanic func(error)) {
	wg.Go(func() {
		if err := Run(func() error { f(); return nil }); err != nil {
			onPanic(err)
		}
	})
}

// Each calls do(0) … do(n-1), at most limit at a time (at least one), each
// in a goroutine of its own, and returns when all have returned. A panic in
// do(i) is handed, as a *PanicError, to failed(i, err) instead of ending
// the program: the other calls go on.
func Each(limit, n int, do func(i int), failed func(i int, err error)) {
	slots := make(chan struct{}, max(limit, 1))
	var wg sync.WaitGroup
	for i := range n {
		slots <- struct{}{}
		Go(&wg, func() {
			defer func() { <-slots }()
			do(i)
		}, func(err error) { failed(i, err) })
	}
	wg.Wait()
}

// panicked is the function and line that panicked, as seen from a
// deferred call during the panic: the first frame below runtime.gopanic
// that is not the runtime's.
func panicked() string {
	pcs := make([]uintptr, 64)
	frames := runtime.CallersFrames(pcs[:runtime.Callers(3, pcs)])
	inPanic := false
	for {
		f, more := frames.Next()
		switch {
		case f.Function == "runtime.gopanic":
			inPanic = true
		case inPanic && !strings.HasPrefix(f.Function, "runtime."):
			return fmt.Sprintf("%s, %s:%d", f.Function, f.File, f.Line)
		}
		if !more {
			return "unknown"
		}
	}
}
