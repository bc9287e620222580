package guard

import (
	"context"

	"golang.org/x/sync/singleflight"
)

// Flight shares a call among the callers that ask for the same key while
// it runs (golang.org/x/sync/singleflight): z-stream payloads that share a
// DTK image, consumers that share a kernel, wait for one read instead of
// making their own. It keeps nothing once a call has returned. The zero
// Flight is ready to use.
type Flight struct{ g singleflight.Group }

// flightResult is a call's value, and whether the context it ran with had
// ended by the time it returned.
type flightResult struct {
	val        any
	callerLeft bool
}

// Share returns what fn returns for key, calling it only when no call for
// key is under way, else waiting for that one. fn runs with the context of
// the caller that started it. A caller whose context ends stops waiting at
// once (the call goes on for the others); when a call failed because the
// caller that started it left, the others start it again. A panic in fn
// is every waiting caller's *PanicError, never the end of the process.
func Share[T any](ctx context.Context, f *Flight, key string, fn func(ctx context.Context) (T, error)) (T, error) {
	var zero T
	for {
		ch := f.g.DoChan(key, func() (any, error) {
			var val T
			err := Run(func() error {
				var err error
				val, err = fn(ctx)
				return err
			})
			return flightResult{val: val, callerLeft: ctx.Err() != nil}, err
		})
		select {
		case <-ctx.Done():
			return zero, ctx.Err()
		case r := <-ch:
			res := r.Val.(flightResult)
			if r.Err != nil {
				if res.callerLeft && ctx.Err() == nil {
					continue
				}
				return zero, r.Err
			}
			return res.val.(T), nil
		}
	}
}
