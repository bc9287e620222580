package githubtest

import (
	"net/http"
	"testing"
	"time"

	"github.com/dtkbot/dtkbot/internal/poll"
)

// TestKnobsChangeWhileServing: a test may turn every knob while requests
// are being served (under -race: no data race, as there was when they were
// fields a test assigned), and each takes effect on the next request.
func TestKnobsChangeWhileServing(t *testing.T) {
	s := New("acme", "driver-ci")
	t.Cleanup(s.Close)
	get := func(path string) int {
		resp, err := http.Get(s.URL() + path)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	stop := poll.Repeat(func() { get("user") })
	for len(s.Requests()) < 200 {
		s.SetFault(func(http.ResponseWriter, *http.Request) bool { return false })
		s.SetTokenTTL(time.Minute)
		s.EnableApp(App{ID: 1, InstallationID: 2, Slug: "app"})
	}
	stop()
	s.SetFault(func(w http.ResponseWriter, _ *http.Request) bool { w.WriteHeader(http.StatusTeapot); return true })
	if code := get("user"); code != http.StatusTeapot {
		t.Errorf("with a fault: %d", code)
	}
	s.SetFault(nil)
	if code := get("user"); code != http.StatusUnauthorized {
		t.Errorf("without: %d", code)
	}
}
