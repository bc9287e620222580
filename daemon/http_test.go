package daemon

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/dtkbot/dtkbot/internal/poll"
)

// TestUnauthenticatedClientsCannotSpendTheTriggerBudget: however many
// requests without the token arrive (each refused, then throttled on a
// bucket of their own), a request with the token still starts a pass; the
// token's own bucket is what limits it.
func TestUnauthenticatedClientsCannotSpendTheTriggerBudget(t *testing.T) {
	now := time.Date(2024, 9, 1, 12, 0, 0, 0, time.UTC)
	p := newBlockingPasser()
	close(p.release)
	r := start(t, p, "s3cret", func(d *Daemon) {
		d.TriggerBurst, d.TriggerEvery = 2, time.Hour
		d.Now = func() time.Time { return now }
	})
	<-p.started
	waitFor(t, func() bool { return !r.d.running.Load() })
	var refused []int
	for _, token := range []string{"", "wrong", "wrong", "wrong", "", "guess"} {
		refused = append(refused, post(t, r.url+"/trigger", token))
	}
	if fmt.Sprint(refused) != "[401 401 429 429 429 429]" {
		t.Errorf("requests without the token: %v, want two refused and then throttled", refused)
	}
	before := p.runs.Load()
	if code := post(t, r.url+"/trigger", "s3cret"); code != http.StatusAccepted {
		t.Fatalf("a trigger with the token after %d without: %d, want 202", len(refused), code)
	}
	waitFor(t, func() bool { return p.runs.Load() == before+1 && !r.d.running.Load() })
	if code := post(t, r.url+"/trigger", "s3cret"); code != http.StatusAccepted {
		t.Fatalf("the second trigger with the token: %d, want 202", code)
	}
	waitFor(t, func() bool { return p.runs.Load() == before+2 && !r.d.running.Load() })
	if code := post(t, r.url+"/trigger", "s3cret"); code != http.StatusTooManyRequests {
		t.Errorf("the third trigger within the hour: %d, want 429 (the token's bucket holds 2)", code)
	}
}

// TestSlowAndIdleConnectionsAreClosed: a client that sends a body too
// slowly, and a kept-alive connection left idle, are closed by the
// server's timeouts (set short here; the defaults are in docs/api.md).
func TestSlowAndIdleConnectionsAreClosed(t *testing.T) {
	r := start(t, &fakePasser{}, "s3cret", func(d *Daemon) {
		d.timeouts = httpTimeouts{ReadHeader: 200 * time.Millisecond, Read: 200 * time.Millisecond, Write: 5 * time.Second, Idle: 200 * time.Millisecond}
	})
	addr := strings.TrimPrefix(r.url, "http://")
	closed := func(t *testing.T, conn net.Conn, what string) {
		t.Helper()
		done := make(chan error, 1)
		go func() {
			_, err := io.Copy(io.Discard, conn) // returns once the server closes
			done <- err
		}()
		if err := poll.Receive(t, "the server to close "+what, 0, done); err != nil && !errors.Is(err, net.ErrClosed) {
			t.Logf("%s: %v", what, err)
		}
	}

	slow, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	// The head and one byte of a ten-byte body, then nothing.
	fmt.Fprintf(slow, "POST /trigger HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\nContent-Length: 10\r\n\r\nx")
	closed(t, slow, "a connection whose body never ends")

	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	fmt.Fprintf(idle, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(idle), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil || resp.StatusCode != 200 || resp.Close {
		t.Fatalf("GET /healthz: %d, close %v, %v", resp.StatusCode, resp.Close, err)
	}
	closed(t, idle, "an idle kept-alive connection")
}

// TestServerTimeoutsDefaults: the server bounds reading a request, writing
// an answer and keeping an idle connection (docs/api.md).
func TestServerTimeoutsDefaults(t *testing.T) {
	srv := (&Daemon{}).server(http.NotFoundHandler())
	if srv.ReadHeaderTimeout != 10*time.Second || srv.ReadTimeout != 30*time.Second || srv.WriteTimeout != time.Minute || srv.IdleTimeout != 2*time.Minute {
		t.Errorf("timeouts: read header %s, read %s, write %s, idle %s", srv.ReadHeaderTimeout, srv.ReadTimeout, srv.WriteTimeout, srv.IdleTimeout)
	}
}
