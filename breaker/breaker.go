// Package breaker keeps a pass from waiting, again and again, on an outside
// service that does not answer. A Set holds one Breaker per service (the
// signature store, the update graph, each release-controller, GitHub, a
// build webhook) for one pass: after Threshold consecutive failures to
// answer (a timeout, a refused or cut connection) the service is not asked
// again for the rest of the pass, and the Set reports what was skipped.
// Transport is the http.RoundTripper that gives each request its own
// timeout and consults the Set carried in the request's context, so the
// clients of those services need no new parameters.
//
// Until a service has answered in the pass, and after a failure until it
// answers again, only as many requests wait on it at once as failures are
// still allowed; other callers wait for those outcomes. So N concurrent
// callers of a dead service make Threshold attempts and wait about one
// timeout, and then all of them are refused at once.
//
// A breaker never retries, never sleeps and never judges an answer: a 404 or
// a 503 is an answer (the caller decides what it means); only no answer
// counts against a service. A breaker, once open, stays open for the pass:
// the next pass has a new Set and asks again.
package breaker

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/dtkbot/dtkbot/ledger"
)

// DefaultThreshold is how many consecutive failures open a breaker: one
// failure may be a fluke, three in a row without an answer between are a
// service that is down.
const DefaultThreshold = 3

// ErrOpen is what a request to a service whose breaker is open fails with
// (errors.Is): it was not sent.
var ErrOpen = errors.New("not asked")

// OpenError says which service was not asked, and why.
type OpenError struct {
	Service  string
	Failures int
	// Last is the last failure before the breaker opened.
	Last string
}

func (e *OpenError) Error() string {
	return fmt.Sprintf("%s: %v: skipped for the rest of the pass after %d consecutive failures to answer (the last: %s)",
		e.Service, ErrOpen, e.Failures, e.Last)
}

// Is makes errors.Is(err, ErrOpen) true.
func (e *OpenError) Is(target error) bool { return target == ErrOpen }

// Outcome is how a request ended, for the breaker.
type Outcome int

// Outcomes.
const (
	// Answered: the service answered (whatever the status).
	Answered Outcome = iota
	// NoAnswer: a timeout, or a connection refused, reset or cut.
	NoAnswer
	// Abandoned: the caller gave up (its context was cancelled); says
	// nothing about the service.
	Abandoned
)

// Set is one pass's breakers, by service name. A nil *Set has no breakers:
// every request is let through.
type Set struct {
	threshold int

	mu       sync.Mutex
	services map[string]*Breaker
}

// NewSet returns an empty set whose breakers open after threshold
// consecutive failures (DefaultThreshold when not positive).
func NewSet(threshold int) *Set {
	if threshold <= 0 {
		threshold = DefaultThreshold
	}
	return &Set{threshold: threshold, services: map[string]*Breaker{}}
}

// Service returns the breaker of a service, made on first use.
func (s *Set) Service(name string) *Breaker {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.services[name]
	if !ok {
		b = &Breaker{name: name, threshold: s.threshold, changed: make(chan struct{})}
		s.services[name] = b
	}
	return b
}

// Reports lists every service asked (or skipped) in the pass, by name, as
// the pass's record keeps them.
func (s *Set) Reports() []ledger.ServiceReport {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	bs := make([]*Breaker, 0, len(s.services))
	for _, b := range s.services {
		bs = append(bs, b)
	}
	s.mu.Unlock()
	var out []ledger.ServiceReport
	for _, b := range bs {
		if r := b.Report(); r.Requests+r.Skipped > 0 {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Service < out[j].Service })
	return out
}

// Breaker is one service's breaker for one pass. A nil *Breaker lets every
// request through.
type Breaker struct {
	name      string
	threshold int

	mu sync.Mutex
	// answered: the service answered once in this pass; consecutive are
	// the failures since its last answer; inflight the requests sent and
	// not yet ended.
	answered    bool
	consecutive int
	inflight    int
	open        bool
	last        string
	// changed is closed (and replaced) whenever a request ends, to wake
	// the callers waiting for a slot.
	changed chan struct{}

	requests, failures, skipped int
}

// admits reports whether one more request may be sent now. b.mu is held.
func (b *Breaker) admits() bool {
	if b.answered && b.consecutive == 0 {
		return true
	}
	// Not proven (yet, or again): no more requests in flight than the
	// failures still allowed, so a dead service costs Threshold attempts.
	return b.inflight < b.threshold-b.consecutive
}

// Acquire waits until a request may be sent, and returns the function that
// must be called once with its outcome. It fails with an *OpenError when
// the breaker is open, or with the context's error.
func (b *Breaker) Acquire(ctx context.Context) (done func(Outcome, error), err error) {
	if b == nil {
		return func(Outcome, error) {}, nil
	}
	for {
		b.mu.Lock()
		if b.open {
			b.skipped++
			err := &OpenError{Service: b.name, Failures: b.consecutive, Last: b.last}
			b.mu.Unlock()
			return nil, err
		}
		if b.admits() {
			b.inflight++
			b.requests++
			b.mu.Unlock()
			var once sync.Once
			return func(o Outcome, err error) { once.Do(func() { b.end(o, err) }) }, nil
		}
		wait := b.changed
		b.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (b *Breaker) end(o Outcome, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.inflight--
	switch o {
	case Answered:
		b.answered, b.consecutive = true, 0
	case NoAnswer:
		b.failures++
		b.consecutive++
		if err != nil {
			b.last = err.Error()
		}
		if b.consecutive >= b.threshold {
			b.open = true
		}
	}
	close(b.changed)
	b.changed = make(chan struct{})
}

// Open reports whether the breaker is open: the service is not asked again
// in this pass.
func (b *Breaker) Open() bool {
	if b == nil {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.open
}

// Report is what the service cost so far.
func (b *Breaker) Report() ledger.ServiceReport {
	b.mu.Lock()
	defer b.mu.Unlock()
	r := ledger.ServiceReport{Service: b.name, Requests: b.requests, Failures: b.failures, Skipped: b.skipped, Open: b.open}
	if b.open {
		r.Reason = fmt.Sprintf("%d consecutive failures to answer (the last: %s)", b.consecutive, b.last)
	}
	return r
}

type contextKey struct{}

// NewContext returns ctx carrying s: the breakers requests made with it
// consult.
func NewContext(ctx context.Context, s *Set) context.Context {
	return context.WithValue(ctx, contextKey{}, s)
}

// FromContext returns the set ctx carries, or nil.
func FromContext(ctx context.Context) *Set {
	s, _ := ctx.Value(contextKey{}).(*Set)
	return s
}
