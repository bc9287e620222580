// Package faulttest injects faults into HTTP servers for tests: server
// errors, 429 with Retry-After, a connection cut mid-body, a stalled body,
// corrupt bytes, and garbage bodies, on a chosen share of requests, from a
// seeded random source so that a failing run can be replayed.
package faulttest

import (
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
)

// Fault is one kind of misbehaviour.
type Fault string

// The faults.
const (
	ServerError Fault = "500"
	Unavailable Fault = "503"
	TooMany     Fault = "429"
	Reset       Fault = "reset"   // the connection is cut halfway through the body
	Stall       Fault = "stall"   // half the body, then nothing until the client gives up (or Release)
	Corrupt     Fault = "corrupt" // one byte of the body flipped
	Garbage     Fault = "garbage" // 200 with a body that is not what was asked for
)

// Injector decides, per request, whether and how to misbehave.
type Injector struct {
	// Rate is the share of requests that get a fault (0.3 = 30%).
	Rate   float64
	Faults []Fault
	// RetryAfter is sent with 429s (seconds).
	RetryAfter int
	// Skip exempts requests (for example the /v2/ ping).
	Skip func(*http.Request) bool

	mu      sync.Mutex
	rng     *rand.Rand
	on      bool
	count   map[Fault]int
	total   int
	stalled int // stalls begun (a Stall picked for a HEAD or an error answer is none)
	givenUp int // stalls the client hung up on

	release     chan struct{}
	releaseOnce sync.Once
}

// New returns an injector, on, with a seeded random source.
func New(rate float64, seed uint64, faults ...Fault) *Injector {
	return &Injector{Rate: rate, Faults: faults, rng: rand.New(rand.NewPCG(seed, seed^0x5eed)), on: true, count: map[Fault]int{}, release: make(chan struct{})}
}

// Release ends every stall, now and later, without an answer: for the end of
// a test, so that servers can close whatever their clients did.
func (in *Injector) Release() { in.releaseOnce.Do(func() { close(in.release) }) }

// Stalls returns how many stalls began (a Stall picked for a HEAD, an
// empty body or an answer other than 200 sends that answer whole) and how
// many of them ended because the client hung up (a timeout, a cancelled
// request), not by Release. A stall never ends by itself, so a client gave
// up on each one exactly when the two are equal.
func (in *Injector) Stalls() (begun, givenUp int) {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.stalled, in.givenUp
}

// SetOn turns injection on or off.
func (in *Injector) SetOn(on bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.on = on
}

// Counts returns how many of each fault were injected, and the requests seen.
func (in *Injector) Counts() (map[Fault]int, int) {
	in.mu.Lock()
	defer in.mu.Unlock()
	out := map[Fault]int{}
	for k, v := range in.count {
		out[k] = v
	}
	return out, in.total
}

func (in *Injector) pick(r *http.Request) (Fault, bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.total++
	if !in.on || len(in.Faults) == 0 || (in.Skip != nil && in.Skip(r)) || in.rng.Float64() >= in.Rate {
		return "", false
	}
	f := in.Faults[in.rng.IntN(len(in.Faults))]
	in.count[f]++
	return f, true
}

// Wrap returns h with faults injected.
func (in *Injector) Wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, ok := in.pick(r)
		if !ok {
			h.ServeHTTP(w, r)
			return
		}
		switch f {
		case ServerError:
			http.Error(w, "injected fault", http.StatusInternalServerError)
			return
		case Unavailable:
			http.Error(w, "injected fault", http.StatusServiceUnavailable)
			return
		case TooMany:
			w.Header().Set("Retry-After", strconv.Itoa(in.RetryAfter))
			http.Error(w, "injected: slow down", http.StatusTooManyRequests)
			return
		case Garbage:
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte("<html><body>502 Bad Gateway (injected)</body></html>"))
			return
		}
		// The others damage a real answer: let the handler write it first.
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		body := rec.Body.Bytes()
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		if r.Method == http.MethodHead || len(body) < 2 || rec.Code != http.StatusOK {
			w.WriteHeader(rec.Code)
			_, _ = w.Write(body)
			return
		}
		switch f {
		case Corrupt:
			damaged := append([]byte(nil), body...)
			damaged[len(damaged)/2] ^= 0xff
			w.WriteHeader(rec.Code)
			_, _ = w.Write(damaged)
		case Reset, Stall:
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			w.WriteHeader(rec.Code)
			_, _ = w.Write(body[:len(body)/2])
			if fl, ok := w.(http.Flusher); ok {
				fl.Flush()
			}
			if f == Stall {
				// No timer: the stall lasts until the client gives up.
				in.mu.Lock()
				in.stalled++
				in.mu.Unlock()
				select {
				case <-r.Context().Done():
					in.mu.Lock()
					in.givenUp++
					in.mu.Unlock()
				case <-in.release:
				}
			}
			if hj, ok := w.(http.Hijacker); ok {
				if conn, _, err := hj.Hijack(); err == nil {
					_ = conn.Close()
				}
			}
		}
	})
}
