package breaker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Transport is an http.RoundTripper for one outside service: each request
// has its own Timeout (its answer and its body), and goes through the
// service's breaker in the Set its context carries (none: no breaker). A
// request refused by an open breaker fails with an *OpenError without
// being sent.
type Transport struct {
	// Service names the service in reports, logs and metrics
	// ("signature-store", "update-graph", ...).
	Service string
	// Timeout bounds each request, from sending it to the end of its body;
	// 0: no bound of its own.
	Timeout time.Duration
	// Base sends the requests (http.DefaultTransport when nil).
	Base http.RoundTripper
}

// TimeoutError is a request to a service that got no answer in time.
type TimeoutError struct {
	Service string
	After   time.Duration
}

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("%s: no answer within %s", e.Service, e.After)
}

// Timeout marks it a timeout, as net.Error does.
func (e *TimeoutError) Timeout() bool { return true }

// Is makes errors.Is(err, context.DeadlineExceeded) true.
func (e *TimeoutError) Is(target error) bool { return target == context.DeadlineExceeded }

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	parent := req.Context()
	done, err := FromContext(parent).Service(t.Service).Acquire(parent)
	if err != nil {
		if req.Body != nil {
			_ = req.Body.Close() // a RoundTripper closes the body, even on error
		}
		return nil, err
	}
	ctx, cancel := parent, context.CancelFunc(func() {})
	if t.Timeout > 0 {
		ctx, cancel = context.WithTimeoutCause(parent, t.Timeout, &TimeoutError{Service: t.Service, After: t.Timeout})
	}
	base := t.Base
	if base == nil {
		base = http.DefaultTransport
	}
	resp, err := base.RoundTrip(req.WithContext(ctx))
	if err != nil {
		err = explain(parent, ctx, err)
		cancel()
		done(outcome(parent), err)
		return nil, err
	}
	b := &body{ReadCloser: resp.Body, parent: parent, ctx: ctx, cancel: cancel, done: done}
	// A body the caller neither reads to its end nor closes still ends
	// the request when its time is up, so it never holds a slot (after
	// Close, cancel runs this too, and it does nothing).
	context.AfterFunc(ctx, func() { b.finish(outcome(parent), explain(parent, ctx, context.Cause(ctx))) })
	resp.Body = b
	return resp, nil
}

// outcome is a failed request's outcome: abandoned when the caller
// cancelled it, else no answer (a timeout, the caller's own deadline
// included, or a network failure).
func outcome(parent context.Context) Outcome {
	if errors.Is(parent.Err(), context.Canceled) {
		return Abandoned
	}
	return NoAnswer
}

// explain replaces the bare "context deadline exceeded" of the request's
// own timeout with a TimeoutError.
func explain(parent, ctx context.Context, err error) error {
	var te *TimeoutError
	if parent.Err() == nil && errors.As(context.Cause(ctx), &te) {
		return te
	}
	return err
}

// body ends the request when it has been read or closed.
type body struct {
	io.ReadCloser
	parent, ctx context.Context
	cancel      context.CancelFunc
	// done (from Acquire) counts only its first call.
	done func(Outcome, error)
}

func (b *body) finish(o Outcome, err error) { b.done(o, err) }

func (b *body) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	switch {
	case err == io.EOF:
		b.finish(Answered, nil)
	case err != nil:
		err = explain(b.parent, b.ctx, err)
		b.finish(outcome(b.parent), err)
	}
	return n, err
}

func (b *body) Close() error {
	b.finish(Answered, nil)
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}
