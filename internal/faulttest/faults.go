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
	"time"
)

// Fault is one kind of misbehaviour.
type Fault string

// The faults.
const (
	ServerError Fault = "500"
	Unavailable Fault = "503"
	TooMany     Fault = "429"
	Reset       Fault = "reset"   // the connection is cut halfway through the body
	Stall       Fault = "stall"   // half the body, then nothing until the client gives up
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
	// StallFor bounds a stall, in case the client never gives up.
	StallFor time.Duration
	// Skip exempts requests (for example the /v2/ ping).
	Skip func(*http.Request) bool

	mu    sync.Mutex
	rng   *rand.Rand
	on    bool
	count map[Fault]int
	total int
}

// New returns an injector, on, with a seeded random source.
func New(rate float64, seed uint64, faults ...Fault) *Injector {
	return &Injector{Rate: rate, Faults: faults, StallFor: 5 * time.Second, rng: rand.New(rand.NewPCG(seed, seed^0x5eed)), on: true, count: map[Fault]int{}}
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
				select {
				case <-r.Context().Done():
				case <-time.After(in.StallFor):
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
