package breaker

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dtkbot/dtkbot/internal/faulttest"
	"github.com/dtkbot/dtkbot/internal/poll"
	"github.com/dtkbot/dtkbot/ledger"
)

// get sends one GET through tr with ctx and reads the whole body.
func get(ctx context.Context, tr http.RoundTripper, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.ReadAll(resp.Body)
	return err
}

// concurrently runs n GETs at once and returns their errors.
func concurrently(ctx context.Context, n int, tr http.RoundTripper, url string) []error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = get(ctx, tr, url) })
	}
	wg.Wait()
	return errs
}

// TestDeadServiceCostsThresholdAttempts: twenty callers at once of a
// service that accepts connections and never answers make three attempts
// (counted by the service), and the other seventeen are refused without
// being sent.
func TestDeadServiceCostsThresholdAttempts(t *testing.T) {
	bh, err := faulttest.NewBlackhole()
	if err != nil {
		t.Fatal(err)
	}
	defer bh.Close()
	set := NewSet(3)
	ctx := NewContext(context.Background(), set)
	tr := &Transport{Service: "signature-store", Timeout: 100 * time.Millisecond}
	errs := concurrently(ctx, 20, tr, bh.URL()+"/sha256=abc/signature-1")
	var timeouts, refused int
	for _, err := range errs {
		var te *TimeoutError
		switch {
		case errors.As(err, &te):
			timeouts++
		case errors.Is(err, ErrOpen):
			refused++
		default:
			t.Errorf("unexpected error %v", err)
		}
	}
	if timeouts != 3 || refused != 17 {
		t.Errorf("%d timeouts and %d refused, want 3 and 17", timeouts, refused)
	}
	if n := bh.Accepted(); n > 3 {
		t.Errorf("the dead service saw %d connections, want at most 3", n)
	}
	reps := set.Reports()
	if len(reps) != 1 || reps[0] != (ledger.ServiceReport{Service: "signature-store", Requests: 3, Failures: 3, Skipped: 17, Open: true, Reason: reps[0].Reason}) ||
		reps[0].Reason == "" {
		t.Errorf("reports %+v", reps)
	}
	// Once open, the service is not asked again in the pass.
	before := bh.Accepted()
	if err := get(ctx, tr, bh.URL()); !errors.Is(err, ErrOpen) || bh.Accepted() != before {
		t.Errorf("after opening: %v, %d connections", err, bh.Accepted()-before)
	}
	// A new pass, a new set: asked again.
	if err := get(NewContext(context.Background(), NewSet(3)), tr, bh.URL()); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a new pass: %v", err)
	}
}

// TestAnswersAreNeverSkipped: a service that answers, whatever it says,
// is asked every time.
func TestAnswersAreNeverSkipped(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch n.Add(1) % 3 {
		case 0:
			http.NotFound(w, r)
		case 1:
			http.Error(w, "down", http.StatusServiceUnavailable)
		default:
			_, _ = w.Write([]byte("ok"))
		}
	}))
	defer srv.Close()
	set := NewSet(3)
	errs := concurrently(NewContext(context.Background(), set), 40, &Transport{Service: "graph", Timeout: time.Minute}, srv.URL)
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if r := set.Reports(); len(r) != 1 || r[0].Requests != 40 || r[0].Failures != 0 || r[0].Open || n.Load() != 40 {
		t.Errorf("reports %+v, %d requests served", r, n.Load())
	}
}

// scripted answers or fails requests in the order given.
type scripted struct {
	mu    sync.Mutex
	fails []bool
	sent  int
}

func (s *scripted) RoundTrip(r *http.Request) (*http.Response, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fail := s.sent < len(s.fails) && s.fails[s.sent]
	s.sent++
	if fail {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	}
	return &http.Response{StatusCode: http.StatusOK, Body: http.NoBody, Request: r}, nil
}

// TestOnlyConsecutiveFailuresOpen: failures with answers between them
// never open the breaker; three in a row do, one after another too.
func TestOnlyConsecutiveFailuresOpen(t *testing.T) {
	tests := []struct {
		name  string
		fails []bool
		sent  int
		open  bool
	}{
		{name: "answers between failures", fails: []bool{true, true, false, true, true, false, true, true, false}, sent: 9},
		{name: "three in a row", fails: []bool{false, true, true, true, false, false}, sent: 4, open: true},
		{name: "dead from the start", fails: []bool{true, true, true, true}, sent: 3, open: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := &scripted{fails: tt.fails}
			set := NewSet(3)
			ctx := NewContext(context.Background(), set)
			tr := &Transport{Service: "github", Base: base}
			for range tt.fails {
				_ = get(ctx, tr, "http://github.invalid/")
			}
			if base.sent != tt.sent || set.Service("github").Open() != tt.open {
				t.Errorf("sent %d, open %v; want %d, %v", base.sent, set.Service("github").Open(), tt.sent, tt.open)
			}
		})
	}
}

// TestStalledBodyIsNoAnswer: headers and then nothing: the body read
// times out, and that counts as no answer.
func TestStalledBodyIsNoAnswer(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("half"))
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)
	set := NewSet(3)
	ctx := NewContext(context.Background(), set)
	tr := &Transport{Service: "update-graph", Timeout: 100 * time.Millisecond}
	for i := range 5 {
		err := get(ctx, tr, srv.URL)
		var te *TimeoutError
		if i < 3 && !errors.As(err, &te) || i >= 3 && !errors.Is(err, ErrOpen) {
			t.Errorf("request %d: %v", i+1, err)
		}
	}
	if r := set.Service("update-graph").Report(); r.Requests != 3 || r.Skipped != 2 || !r.Open {
		t.Errorf("report %+v", r)
	}
}

// TestCallerGivingUpSaysNothing: a request its caller cancels is no
// failure of the service.
func TestCallerGivingUpSaysNothing(t *testing.T) {
	bh, err := faulttest.NewBlackhole()
	if err != nil {
		t.Fatal(err)
	}
	defer bh.Close()
	set := NewSet(1)
	ctx, cancel := context.WithCancel(NewContext(context.Background(), set))
	errc := make(chan error, 1)
	go func() { errc <- get(ctx, &Transport{Service: "webhook"}, bh.URL()) }()
	poll.Until(t, "the black hole to accept a connection", 0, func() bool { return bh.Accepted() > 0 })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("error %v", err)
	}
	if r := set.Service("webhook").Report(); r.Failures != 0 || r.Open {
		t.Errorf("a cancelled request counted: %+v", r)
	}
}

// TestNoSetNoBreaker: outside a pass, requests still have their timeout
// and nothing is ever skipped.
func TestNoSetNoBreaker(t *testing.T) {
	bh, err := faulttest.NewBlackhole()
	if err != nil {
		t.Fatal(err)
	}
	defer bh.Close()
	tr := &Transport{Service: "github", Timeout: 50 * time.Millisecond}
	for range 4 {
		var te *TimeoutError
		if err := get(context.Background(), tr, bh.URL()); !errors.As(err, &te) {
			t.Fatalf("error %v", err)
		}
	}
	poll.Until(t, "the black hole to accept four connections", 0, func() bool { return bh.Accepted() == 4 }) // accepted a moment after the client connects
}
