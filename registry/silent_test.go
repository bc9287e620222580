package registry

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dtkbot/dtkbot/internal/poll"
)

// silentListener accepts connections and never answers: a registry that
// hangs. It counts the connections made to it.
type silentListener struct {
	ln    net.Listener
	conns atomic.Int64
	mu    sync.Mutex
	held  []net.Conn
}

func newSilentListener(t *testing.T) *silentListener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &silentListener{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.conns.Add(1)
			s.mu.Lock()
			s.held = append(s.held, c) // read nothing, answer nothing
			s.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, c := range s.held {
			c.Close()
		}
	})
	return s
}

func (s *silentListener) host() string { return s.ln.Addr().String() }

// TestOneShotClientAsksASilentRegistryOnce: a registry that accepts
// connections and never answers costs a one-shot client one call's
// timeout: the call is not tried again, and the other images' calls to it
// (at once, and later) are not sent. The daemon's client tries each call
// Attempts times, as before. Decided by the connections made, not the
// clock.
func TestOneShotClientAsksASilentRegistryOnce(t *testing.T) {
	for _, tc := range []struct {
		oneShot bool
		conns   int64
	}{{oneShot: true, conns: 1}, {oneShot: false, conns: 4}} {
		silent := newSilentListener(t)
		tv := true
		var slow []Slow
		var mu sync.Mutex
		c := New(Options{TLSVerify: &tv, RegistriesConf: "/dev/null", Timeout: 300 * time.Millisecond, Attempts: 4, Backoff: time.Millisecond,
			OneShot: tc.oneShot, SlowAfter: time.Millisecond, Slow: func(s Slow) { mu.Lock(); slow = append(slow, s); mu.Unlock() }})
		var wg sync.WaitGroup
		errs := make([]error, 3)
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = c.Open(context.Background(), silent.host()+"/acme/image:"+string(rune('a'+i)))
			}()
		}
		wg.Wait()
		_, later := c.Open(context.Background(), silent.host()+"/acme/other:v1")
		errs = append(errs, later)
		for i, err := range errs {
			if err == nil || !(errors.Is(err, errCallTimeout) || errors.Is(err, ErrSilent)) {
				t.Errorf("one-shot %v: call %d: %v, want a timeout or not asked", tc.oneShot, i, err)
			}
		}
		if tc.oneShot {
			if !errors.Is(later, ErrSilent) || !strings.Contains(later.Error(), silent.host()+" did not answer an earlier call in time") {
				t.Errorf("the later call: %v", later)
			}
		}
		// One-shot: exactly one; the daemon's: at least one per attempt.
		if n := silent.conns.Load(); (tc.oneShot && n != tc.conns) || n < tc.conns {
			t.Errorf("one-shot %v: %d connections to the silent registry, want %d", tc.oneShot, n, tc.conns)
		}
		// Each attempt said what it waits for.
		mu.Lock()
		if len(slow) == 0 || slow[0].Host != silent.host() || slow[0].Attempts != 4 || slow[0].Attempt < 1 {
			t.Errorf("one-shot %v: slow calls reported: %+v", tc.oneShot, slow)
		}
		mu.Unlock()
	}
}

// TestUnreachableIsNotRetried: a name that does not resolve and a TLS
// failure are not worth asking again: one attempt each.
func TestUnreachableIsNotRetried(t *testing.T) {
	dns := &url.Error{Op: "Get", URL: "https://registry.example/v2/", Err: &net.OpError{Op: "dial", Err: &net.DNSError{Err: "no such host", Name: "registry.example", IsNotFound: true}}}
	if Transient(dns) || !Unreachable(dns) {
		t.Errorf("no such host: transient %v", Transient(dns))
	}
	if temp := (&net.DNSError{Err: "server misbehaving", IsTemporary: true}); !Transient(temp) {
		t.Errorf("a DNS server that fails for a while is worth asking again")
	}
	// A registry whose certificate this client does not trust.
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	var conns atomic.Int64
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	defer srv.Close()
	tv := true
	c := New(Options{TLSVerify: &tv, RegistriesConf: "/dev/null", Attempts: 4, Backoff: time.Millisecond})
	_, err := c.Open(context.Background(), strings.TrimPrefix(srv.URL, "https://")+"/acme/image:v1")
	if err == nil || !Unreachable(err) || strings.Contains(err.Error(), "attempts") {
		t.Errorf("an untrusted certificate: %v", err)
	}
	poll.Until(t, "the TLS connection to be counted", 0, func() bool { return conns.Load() > 0 })
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections for a certificate not trusted, want 1", n)
	}
	var tlsErr *tls.CertificateVerificationError
	if !errors.As(err, &tlsErr) {
		t.Logf("(the error: %T %v)", err, err)
	}
}
