package reconcile

import (
	"errors"
	"strings"
	"sync"

	"github.com/rs/zerolog"

	"github.com/dtkbot/dtkbot/breaker"
	"github.com/dtkbot/dtkbot/plan"
	"github.com/dtkbot/dtkbot/registry"
)

// report is what a pass tells: its Result as it fills, and the errors that
// fail it. It is safe for concurrent use.
type report struct {
	mu   sync.Mutex
	res  *Result
	errs []error
	log  zerolog.Logger
	// said are the errors of a kind said already in the pass (saidBefore).
	said map[string]bool
}

// fail records an error that fails the pass (after everything else is done).
func (r *report) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.saidBefore(err) {
		return
	}
	r.errs = append(r.errs, err)
	r.res.Errors = append(r.res.Errors, err.Error())
}

// deferred records an error that does not fail the pass: a notification, or
// a staging tag's removal, left for the next one.
func (r *report) deferred(err error, msg string) {
	r.mu.Lock()
	said := r.saidBefore(err)
	if !said {
		r.res.Errors = append(r.res.Errors, err.Error())
	}
	r.mu.Unlock()
	if !said {
		r.log.Warn().Err(err).Msg(msg)
	}
}

// saidBefore reports whether err was said already in this pass, in its
// kind: a request not sent to a service that stopped answering (the count
// is in Result.Services), or a broken auth file (each file once, whatever
// the repositories or releases that needed it): each is said once, never
// once per release. r.mu is held.
func (r *report) saidBefore(err error) bool {
	var key string
	var open *breaker.OpenError
	var auth *registry.AuthFileError
	switch {
	case errors.As(err, &open):
		key = "service " + open.Service
	case errors.As(err, &auth):
		key = "auth file " + strings.Join(auth.Files, ",")
	default:
		return false
	}
	if r.said == nil {
		r.said = map[string]bool{}
	}
	if r.said[key] {
		return true
	}
	r.said[key] = true
	return false
}

// warn records something people should know that is no failure.
func (r *report) warn(msg string) {
	r.mu.Lock()
	r.res.Warnings = append(r.res.Warnings, msg)
	r.mu.Unlock()
	r.log.Warn().Msg(msg)
}

// took adds an action the pass took, and what came of it, to the result.
func (r *report) took(a plan.Action, o outcome) {
	if !a.Reported() {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.res.Actions = append(r.res.Actions, Applied{Action: a, Result: o.text})
}

// planned adds the actions of a dry run's plan to the result.
func (r *report) planned(actions []plan.Action) {
	for _, a := range actions {
		r.took(a, outcome{})
	}
}

// count adds to one of the result's counts.
func (r *report) count(f func(res *Result)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(r.res)
}

// outcome is what came of an action: whether it happened (and changed
// the state), and what its result says.
type outcome struct {
	status status
	text   string
}

// status is what kind of outcome an action had.
type status int

const (
	// unknown: not carried out (a dry run).
	unknown status = iota
	// done: it happened: a build asked, an image verified, a tag written
	// or removed, a drifted tag re-pointed.
	done
	// rejected: a verification's verdict against the image.
	rejected
	// skipped: not done, and nothing wrong: not configured, not now.
	skipped
	// reported: by policy, said and not done.
	reported
	// conflict: a tag someone else holds, left alone.
	conflict
	// failed: an error, said in the pass's errors.
	failed
	// held: what must not be built or tagged.
	held
)

func did(text string) outcome        { return outcome{done, text} }
func skip(text string) outcome       { return outcome{skipped, "skipped: " + text} }
func reportedAs(text string) outcome { return outcome{reported, text} }
func failure(text string) outcome    { return outcome{failed, "error: " + text} }
func rejection(text string) outcome  { return outcome{rejected, "rejected: " + text} }

// moved reports whether the action changed the state: the next round may
// have more to do.
func (o outcome) moved() bool { return o.status == done || o.status == rejected }
