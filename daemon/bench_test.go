package daemon

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/dtkbot/dtkbot/ledger"
	"github.com/dtkbot/dtkbot/state"
	"github.com/dtkbot/dtkbot/upgradegraph"
	"github.com/dtkbot/dtkbot/watcher"
)

// bigGraph writes into store a channel of 500 releases as Red Hat's graphs
// are shaped: two minors of 250 z-streams, each leading to every later one
// of its minor, the last 50 of the older minor to every one of the newer
// (75,000 edges, a 1.1 MB document), every fifth release a new kernel;
// every kernel's DTK promoted, the consumer's image of every tenth kernel
// still building (a risk on 50 targets).
func bigGraph(tb testing.TB, store *state.Store) {
	tb.Helper()
	type node struct {
		Version  string            `json:"version"`
		Payload  string            `json:"payload"`
		Metadata map[string]string `json:"metadata"`
	}
	var nodes []node
	var edges [][2]int
	for m, minor := range []string{"4.15", "4.16"} {
		for z := 0; z < 250; z++ {
			v := fmt.Sprintf("%s.%d", minor, z)
			nodes = append(nodes, node{Version: v, Payload: payload(v), Metadata: map[string]string{
				"io.openshift.upgrades.graph.release.channels": "candidate-4.16,fast-4.16,stable-4.16",
				"url": "https://access.redhat.com/errata/RHBA-2026:" + fmt.Sprint(10000+m*250+z)}})
		}
	}
	for m := 0; m < 2; m++ {
		for i := 0; i < 250; i++ {
			for j := i + 1; j < 250; j++ {
				edges = append(edges, [2]int{m*250 + i, m*250 + j})
			}
		}
	}
	for i := 200; i < 250; i++ {
		for j := 250; j < 500; j++ {
			edges = append(edges, [2]int{i, j})
		}
	}
	body, err := json.Marshal(map[string]any{"version": 1, "nodes": nodes, "edges": edges, "conditionalEdges": []any{}})
	if err != nil {
		tb.Fatal(err)
	}
	g, err := watcher.ReadGraph(body)
	if err != nil {
		tb.Fatal(err)
	}
	if err := store.SaveGraphState("stable-4.16", "amd64", watcher.GraphState{Upstream: g, BodyHash: "body-1", ReadAt: time.Now()}); err != nil {
		tb.Fatal(err)
	}
	err = store.Update(func(tx *state.Tx) error {
		for i, n := range nodes {
			k := fmt.Sprintf("5.14.0-%d.1.el9_4", 400+i/5)
			if err := tx.PutRelease(ledger.Release{Version: n.Version, Digest: digest(n.Version), Arch: "amd64", Pullspec: n.Payload,
				Streams: []ledger.ReleaseShips{{Stream: "rhel-9", Kernel: k, KernelFull: k + ".x86_64"}}}); err != nil {
				return err
			}
			if i%5 != 0 {
				continue
			}
			kmod := ledger.StatePromoted
			if i%50 == 0 {
				kmod = ledger.StateBuildRequested
			}
			for _, m := range []ledger.Image{{Kernel: k, State: ledger.StatePromoted}, {Consumer: consumer, Kernel: k, State: kmod}} {
				m.Stream, m.Arch, m.KernelFull = "rhel-9", "amd64", k+".x86_64"
				if err := tx.PutImage(m); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
}

// BenchmarkUpdateGraph500 serves the update graph of a 500-release channel
// over loopback HTTP, each request as the CVO sends it (its Accept header,
// the query it adds, gzip taken as Go's client takes it), and reports
// requests a second and latency percentiles:
//
//   - saturated: 32 clients asking back to back, the most one replica
//     serves (with gzip, without, and 304s to If-None-Match);
//   - paced: 100 requests a second, about twice 10,000 clusters asking
//     every three minutes, each timed from when it was due (a slow
//     answer delays none of the next); with the state changing every
//     second too, in a way no graph shows (a journal entry: the readiness
//     is read again) or that changes a release's readiness (the graph is
//     made and encoded again); the requests meanwhile wait for it;
//   - compute: one computation of the graph.
//
// Run: go test -run '^$' -bench UpdateGraph500 -benchtime 2000x ./daemon/
func BenchmarkUpdateGraph500(b *testing.B) {
	store, err := state.Open(filepath.Join(b.TempDir(), "s.db"), time.Second)
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	bigGraph(b, store)
	d := &Daemon{Store: store, Log: zerolog.Nop(), Upgrades: UpgradeOptions{Options: upgradegraph.Options{Channels: []string{"stable-4.16"},
		Arches: []string{"amd64"}, Consumers: []string{consumer}}, PublicURL: "https://dtkbot.example.com", Rate: 1e6, Burst: 1e6}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: d.Handler()}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	base := "http://" + ln.Addr().String() + "/api/upgrades_info/v1/graph?arch=amd64&channel=stable-4.16&id=01234567-0123-0123-0123-0123456789ab&version="
	cvo := map[string]string{"Accept": "application/json", "Accept-Encoding": "gzip"}

	// get sends one request, returning how long it took and its bytes.
	tr := &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 256}
	defer tr.CloseIdleConnections()
	get := func(b *testing.B, i int, headers map[string]string, want int) (time.Duration, int64) {
		req, _ := http.NewRequest(http.MethodGet, base+fmt.Sprintf("4.%d.%d", 15+i%2, i%250), nil)
		for k, v := range headers {
			req.Header.Set(k, v)
		}
		start := time.Now()
		resp, err := tr.RoundTrip(req)
		if err != nil {
			b.Error(err)
			return 0, 0
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			b.Errorf("status %d, want %d", resp.StatusCode, want)
		}
		return time.Since(start), n
	}
	report := func(b *testing.B, lat []time.Duration, bytes int64, elapsed time.Duration) {
		slices.Sort(lat)
		pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
		b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "req/s")
		b.ReportMetric(pct(0.50), "p50-ms")
		b.ReportMetric(pct(0.99), "p99-ms")
		b.ReportMetric(float64(bytes)/float64(len(lat)), "bytes/req")
		b.ReportMetric(0, "ns/op")
	}
	_, _ = get(b, 0, cvo, 200) // computed once before any clock starts
	resp, err := tr.RoundTrip(mustRequest(base + "4.16.1"))
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	etag := map[string]string{"Accept": "application/json", "Accept-Encoding": "gzip", "If-None-Match": resp.Header.Get("ETag")}

	for _, tc := range []struct {
		name    string
		headers map[string]string
		status  int
	}{
		{"saturated/cvo-gzip", cvo, 200},
		{"saturated/identity", map[string]string{"Accept": "application/json"}, 200},
		{"saturated/etag-304", etag, 304},
	} {
		b.Run(tc.name, func(b *testing.B) {
			const clients = 32
			lat := make([][]time.Duration, clients)
			var bytes [clients]int64
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for c := range clients {
				wg.Go(func() {
					for i := c; i < b.N; i += clients {
						took, n := get(b, i, tc.headers, tc.status)
						lat[c] = append(lat[c], took)
						bytes[c] += n
					}
				})
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			report(b, slices.Concat(lat...), sumOf(bytes[:]), elapsed)
		})
	}
	for _, tc := range []struct {
		name        string
		changeEvery time.Duration
		matters     bool
	}{
		{"paced-100rps/cvo-gzip", 0, false},
		{"paced-100rps/cvo-gzip/state-changing-every-1s", time.Second, false},
		{"paced-100rps/cvo-gzip/readiness-changing-every-1s", time.Second, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			stop := make(chan struct{})
			var changes sync.WaitGroup
			if tc.changeEvery > 0 {
				changes.Go(func() {
					t := time.NewTicker(tc.changeEvery)
					defer t.Stop()
					for i := 0; ; i++ {
						select {
						case <-stop:
							return
						case <-t.C:
							if !tc.matters {
								// What a pass writes that no graph shows.
								_ = store.SetStamp("bench", time.Unix(int64(i), 0))
								continue
							}
							// An image of a release in the graph built,
							// then promoted: a risk comes and goes.
							st := []string{ledger.StatePromoted, ledger.StateBuilt}[i%2]
							_ = store.Update(func(tx *state.Tx) error {
								return tx.PutImage(ledger.Image{Consumer: consumer, Stream: "rhel-9", Arch: "amd64", Kernel: "5.14.0-401.1.el9_4",
									KernelFull: "5.14.0-401.1.el9_4.x86_64", State: st})
							})
						}
					}
				})
			}
			lat := make([]time.Duration, b.N)
			bytes := make([]int64, b.N)
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for i := range b.N {
				// An open-loop load of 100 requests a second: the schedule
				// is the benchmark's model (a latency is measured from its
				// due time, so a slow server cannot slow the load down);
				// it only reports figures, and no verdict depends on it.
				due := start.Add(time.Duration(i) * 10 * time.Millisecond)
				time.Sleep(time.Until(due))
				wg.Go(func() {
					_, n := get(b, i, cvo, 200)
					lat[i], bytes[i] = time.Since(due), n
				})
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			close(stop)
			changes.Wait()
			report(b, lat, sumOf(bytes), elapsed)
		})
	}
	b.Run("compute", func(b *testing.B) {
		const n = 50 // whatever -benchtime says: each takes tens of milliseconds
		start := time.Now()
		for range n {
			if _, err := d.computeGraph("stable-4.16", "amd64", "https://dtkbot.example.com/", nil); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(time.Since(start).Microseconds())/1000/n, "ms/computation")
		b.ReportMetric(0, "ns/op")
	})
}

func mustRequest(u string) *http.Request {
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		panic(err)
	}
	return req
}

func sumOf(xs []int64) int64 {
	var n int64
	for _, x := range xs {
		n += x
	}
	return n
}
