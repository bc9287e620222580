// Package loopback keeps a test binary on the loopback interface: a test
// that tries to reach a host on the internet (a registry mirror that failed
// over to quay.io, a default URL left in a config) fails instead of passing
// on a machine that happens to be online.
//
// Every package with tests calls it from its TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(loopback.Run(m)) }
//
// (TestTestMains walks the module and fails for a package that does not).
//
// What it covers:
//   - Every HTTP(S) request through a transport that honours the proxy
//     variables (http.DefaultTransport and its clones, containers/image's
//     registry client, which both use http.ProxyFromEnvironment) to a host
//     that is not loopback: HTTP_PROXY, HTTPS_PROXY (and their lower-case
//     forms) name a local proxy that answers every request and CONNECT with
//     502, and NO_PROXY is unset. ProxyFromEnvironment never proxies
//     localhost or a loopback address, so the tests' own httptest servers,
//     in-process registries and API servers are reached directly.
//   - The same for processes the tests start, which inherit the variables:
//     the test binary re-run as dtkbot, podman (its registry client), etcd
//     and kube-apiserver (their gRPC and HTTP clients).
//   - Host names looked up through net.DefaultResolver in this process (any
//     net.Dialer without a Resolver of its own): the resolver is the pure Go
//     one (PreferGo) and its DNS dial fails, so only names /etc/hosts knows
//     (localhost) resolve; a transport without a proxy fails at the lookup.
//
// Every request the proxy refused is recorded; Run fails the test binary
// when any is left unclaimed at the end (a test that means to send one takes
// them with Refused), so a request that left loopback fails the run even
// when the code under test swallowed the error.
//
// What it does not cover: dials to a literal non-loopback IP address by a
// transport without a proxy; resolvers other than net.DefaultResolver; the
// DNS of processes the tests start (their HTTP still goes to the proxy);
// programs that ignore the proxy variables; raw TCP or UDP.
package loopback

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
)

// Tests is what Run runs: *testing.M, or a wrapper of it whose Run also
// sets up and tears down what the package's tests share.
type Tests interface{ Run() int }

var (
	mu      sync.Mutex
	refused []string
)

// Run points the proxy variables at a refusing proxy and the default
// resolver at a DNS that never answers, runs the tests, and returns their
// exit code, or 1 when a request the proxy refused was not claimed by a
// test (the requests are printed).
func Run(m Tests) int {
	addr, err := listen()
	if err != nil {
		fmt.Fprintf(os.Stderr, "loopback: starting the refusing proxy: %v\n", err)
		return 1
	}
	for _, k := range []string{"HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"} {
		_ = os.Setenv(k, "http://"+addr)
	}
	for _, k := range []string{"NO_PROXY", "no_proxy"} {
		_ = os.Unsetenv(k)
	}
	GuardResolver()
	code := m.Run()
	if left := Refused(); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "loopback: the tests tried to leave loopback (refused): %s\n", strings.Join(left, ", "))
		if code == 0 {
			code = 1
		}
	}
	return code
}

// ErrNoDNS is what a DNS lookup in a guarded test binary fails with.
var ErrNoDNS = errors.New("loopback: tests may not use DNS (only /etc/hosts names such as localhost resolve)")

// GuardResolver makes net.DefaultResolver the pure Go resolver with a DNS
// dial that always fails. Run calls it; a process the tests start as the
// test binary itself (which skips m.Run) may call it too.
func GuardResolver() {
	net.DefaultResolver.PreferGo = true
	net.DefaultResolver.Dial = func(context.Context, string, string) (net.Conn, error) {
		return nil, ErrNoDNS
	}
}

// Refused returns the requests the proxy refused so far, as "METHOD host",
// sorted, and forgets them: a test that sends one on purpose claims it.
func Refused() []string {
	mu.Lock()
	defer mu.Unlock()
	out := refused
	refused = nil
	sort.Strings(out)
	return out
}

func listen() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	srv := &http.Server{Handler: http.HandlerFunc(refuse)}
	go func() { _ = srv.Serve(ln) }()
	return ln.Addr().String(), nil
}

// refuse answers every proxied request with 502 and a reason Go's client
// shows in its error (for CONNECT it shows the status text, so the status
// line carries it).
func refuse(w http.ResponseWriter, r *http.Request) {
	host := r.Host
	if r.URL != nil && r.URL.Host != "" {
		host = r.URL.Host
	}
	mu.Lock()
	refused = append(refused, r.Method+" "+host)
	mu.Unlock()
	// Said at once too, so that in `go test -v` it stands by its test.
	fmt.Fprintf(os.Stderr, "loopback: refused %s %s\n", r.Method, host)
	reason := "loopback guard: tests may not reach " + strings.Map(func(c rune) rune {
		if c < ' ' || c > '~' {
			return '?'
		}
		return c
	}, host)
	if r.Method == http.MethodConnect {
		if hj, ok := w.(http.Hijacker); ok {
			if conn, buf, err := hj.Hijack(); err == nil {
				defer conn.Close()
				_, _ = fmt.Fprintf(buf, "HTTP/1.1 502 %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", reason)
				_ = buf.Flush()
				return
			}
		}
	}
	w.Header().Set("Connection", "close")
	http.Error(w, reason, http.StatusBadGateway)
}
