package daemon

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/dtkbot/dtkbot/redact"
	"github.com/dtkbot/dtkbot/upgradegraph"
	"github.com/dtkbot/dtkbot/watcher"
)

// UpgradeOptions configure the update graph the daemon serves to clusters
// (/api/upgrades_info/v1/graph) and the readiness of updates
// (/api/v1/upgrades).
type UpgradeOptions struct {
	upgradegraph.Options
	// PublicURL is where people reach the daemon (https://dtkbot.example.com):
	// risks link to its coverage page. Empty: the request's scheme and host.
	PublicURL string
	// Rate and Burst bound the requests to those endpoints, every client
	// together: Rate a second, Burst at once.
	Rate  float64
	Burst int
}

// Media types of the update graph: the Cincinnati protocol's, and plain
// JSON, which the CVO asks for (pkg/cincinnati: GraphMediaType).
const (
	cincinnatiV1 = "application/vnd.redhat.cincinnati.v1+json"
	mediaJSON    = "application/json"
)

// maxGraphQuery bounds a graph request's query: arch, channel, id and
// version fit in a few hundred bytes.
const maxGraphQuery = 1024

// graphResult is the served graph of one channel and arch at one
// generation of the state: computed once, then shared by every request.
type graphResult struct {
	gen    uint64
	served *upgradegraph.Served
	err    error
	// body is the document, gz its gzip encoding, etag their tag.
	body, gz []byte
	etag     string
	// What the last read of the upstream graph left.
	readAt, failedAt time.Time
	failure          string
}

// upstreamDoc is an upstream graph as decoded, by its body's hash: decoded
// once, not at each change of the state.
type upstreamDoc struct {
	hash  string
	graph *watcher.Graph
}

// graphEntry holds the result of one channel, arch and link base: one
// computation at a time, the requests meanwhile wait for it.
type graphEntry struct {
	mu  sync.Mutex
	cur *graphResult
}

// maxGraphEntries bounds the results kept (channels watched x arches x
// link bases): a safety net, the three being bounded.
const maxGraphEntries = 256

// maxLinkBases bounds the link bases taken from requests (upgrades.public_url
// unset): a request naming yet another host gets the first one's links,
// rather than a computation of its own.
const maxLinkBases = 8

// servedGraph is the graph of channel and arch as the state is now, its
// risks linking to the page r reached (pageBase); one not watched is an
// error, with no computation.
func (d *Daemon) servedGraph(channel, arch string, r *http.Request) (*graphResult, error) {
	if !d.Upgrades.Watched(channel, arch) {
		_, err := upgradegraph.Compute(upgradegraph.Input{Options: d.Upgrades.Options, Channel: channel, Arch: arch})
		return &graphResult{err: err}, nil
	}
	base := d.pageBase(r)
	gen, err := d.Store.Generation()
	if err != nil {
		return nil, fmt.Errorf("reading state: %w", err)
	}
	key := channel + "/" + arch + " " + base
	d.graphMu.Lock()
	if d.graphs == nil || (len(d.graphs) >= maxGraphEntries && d.graphs[key] == nil) {
		d.graphs = map[string]*graphEntry{}
	}
	e := d.graphs[key]
	if e == nil {
		e = &graphEntry{}
		d.graphs[key] = e
	}
	d.graphMu.Unlock()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cur != nil && e.cur.gen == gen {
		return e.cur, nil
	}
	res, err := d.computeGraph(channel, arch, base, e.cur)
	if err != nil {
		return nil, err
	}
	e.cur = res
	return res, nil
}

// computeGraph reads the state and the upstream graph in one view and
// computes the graph served; the encoding of prev (the result of the
// generation before) serves again when the graph is the same.
func (d *Daemon) computeGraph(channel, arch, base string, prev *graphResult) (*graphResult, error) {
	snap, st, err := d.Store.GraphView(channel, arch, func(hash string) *watcher.Graph {
		d.graphMu.Lock()
		defer d.graphMu.Unlock()
		if u, ok := d.upstreams[channel+"/"+arch]; ok && u.hash == hash {
			return u.graph
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading state: %w", err)
	}
	if st.Upstream != nil && st.BodyHash != "" {
		d.graphMu.Lock()
		if d.upstreams == nil {
			d.upstreams = map[string]upstreamDoc{}
		}
		d.upstreams[channel+"/"+arch] = upstreamDoc{hash: st.BodyHash, graph: st.Upstream}
		d.graphMu.Unlock()
	}
	d.m().upgradeComputes.Inc()
	res := &graphResult{gen: snap.Generation, readAt: st.ReadAt, failedAt: st.FailedAt, failure: st.Failure}
	var before *upgradegraph.Served
	if prev != nil {
		before = prev.served
	}
	res.served, res.err = upgradegraph.ComputeAfter(upgradegraph.Input{Options: d.Upgrades.Options, Channel: channel, Arch: arch,
		Upstream: st.Upstream, Snapshot: snap, PageURL: base}, before)
	if res.err != nil {
		return res, nil
	}
	if before != nil && res.served == before {
		res.body, res.gz, res.etag = prev.body, prev.gz, prev.etag
		return res, nil
	}
	if res.body, err = res.served.Graph.AppendJSON(nil); err != nil {
		return nil, fmt.Errorf("writing the graph of %s/%s: %w", channel, arch, err)
	}
	var gz bytes.Buffer
	// The fastest level: a 1 MB graph in 4 ms to 199 KB, where the best
	// takes 35 ms to 194 KB (BenchmarkUpdateGraph500).
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestSpeed)
	_, _ = zw.Write(res.body)
	_ = zw.Close()
	res.gz = gz.Bytes()
	sum := sha256.Sum256(res.body)
	res.etag = `"` + hex.EncodeToString(sum[:16]) + `"`
	return res, nil
}

// pageBase is the coverage page's URL risks link to.
func (d *Daemon) pageBase(r *http.Request) string {
	if d.Upgrades.PublicURL != "" {
		return strings.TrimSuffix(d.Upgrades.PublicURL, "/") + "/"
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	} else if p := r.Header.Get("X-Forwarded-Proto"); p == "https" {
		scheme = p // behind a Route with edge termination
	}
	host := r.Host
	if !hostPattern.MatchString(host) {
		host = "localhost"
	}
	base := scheme + "://" + host + "/"
	d.graphMu.Lock()
	defer d.graphMu.Unlock()
	switch {
	case slices.Contains(d.linkBases, base):
	case len(d.linkBases) < maxLinkBases:
		d.linkBases = append(d.linkBases, base)
	default:
		base = d.linkBases[0]
	}
	return base
}

var (
	hostPattern    = regexp.MustCompile(`^[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]{2,45}\](:[0-9]{1,5})?$`)
	archPattern    = regexp.MustCompile(`^[a-z0-9_]{1,16}$`)
	versionPattern = regexp.MustCompile(`^[0-9A-Za-z.+-]{1,64}$`)
)

// graphError answers as the update service does: {"kind": ..., "value": ...}
// with the status (the CVO reports any status but 200 as
// RetrievedUpdates=False, ResponseFailed).
func graphError(w http.ResponseWriter, status int, kind, value string) {
	h := w.Header()
	h.Set("Content-Type", mediaJSON)
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"kind": kind, "value": value})
}

// allowUpgrades is the rate limit of the update graph endpoints.
func (d *Daemon) allowUpgrades(w http.ResponseWriter) bool {
	d.graphMu.Lock()
	if d.graphLimit == nil {
		r, b := d.Upgrades.Rate, d.Upgrades.Burst
		if r <= 0 {
			r = 200
		}
		if b <= 0 {
			b = 2 * int(r)
		}
		d.graphLimit = rate.NewLimiter(rate.Limit(r), b)
	}
	lim := d.graphLimit
	d.graphMu.Unlock()
	now := d.now()
	res := lim.ReserveN(now, 1)
	delay := res.DelayFrom(now)
	if res.OK() && delay == 0 {
		return true
	}
	res.CancelAt(now)
	d.m().upgradeRequests.WithLabelValues("429").Inc()
	w.Header().Set("Retry-After", strconv.Itoa(int(delay.Seconds())+1))
	graphError(w, http.StatusTooManyRequests, "too_many_requests", "too many requests: try again later")
	return false
}

// graphQuery reads and checks a request's channel and arch.
func graphQuery(w http.ResponseWriter, r *http.Request) (channel, arch string, ok bool) {
	if len(r.URL.RawQuery) > maxGraphQuery {
		graphError(w, http.StatusRequestURITooLong, "invalid_params", fmt.Sprintf("invalid client parameters: the query is over %d bytes", maxGraphQuery))
		return "", "", false
	}
	q := r.URL.Query()
	channel, arch = q.Get("channel"), q.Get("arch")
	if arch == "" {
		arch = "amd64" // as the update service
	}
	switch {
	case channel == "":
		graphError(w, http.StatusBadRequest, "missing_params", "mandatory client parameters missing: channel")
	case !channelParam.MatchString(channel):
		graphError(w, http.StatusBadRequest, "invalid_params", fmt.Sprintf("invalid client parameters: channel %.64q is not a channel such as stable-4.16", channel))
	case !archPattern.MatchString(arch):
		graphError(w, http.StatusBadRequest, "invalid_params", fmt.Sprintf("invalid client parameters: arch %.32q", arch))
	case q.Get("version") != "" && !versionPattern.MatchString(q.Get("version")):
		graphError(w, http.StatusBadRequest, "invalid_params", fmt.Sprintf("invalid client parameters: version %.64q", q.Get("version")))
	default:
		return channel, arch, true
	}
	return "", "", false
}

// acceptedMedia is the media type to answer with, as the update service
// negotiates it: none asked is the Cincinnati v1 type; JSON, the v1 type
// or a wildcard are answered; anything else is refused.
func acceptedMedia(accept string) (string, bool) {
	if strings.TrimSpace(accept) == "" {
		return cincinnatiV1, true
	}
	best := ""
	for _, part := range strings.Split(accept, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil || params["q"] == "0" || params["q"] == "0.0" || params["q"] == "0.00" || params["q"] == "0.000" {
			continue
		}
		switch mt {
		case cincinnatiV1:
			return cincinnatiV1, true
		case mediaJSON, "application/*", "*/*":
			best = mediaJSON
		}
	}
	return best, best != ""
}

// upgradesGraph is GET /api/upgrades_info/v1/graph (and
// /api/upgrades_info/graph): the update graph a cluster's
// ClusterVersion spec.upstream points at.
func (d *Daemon) upgradesGraph(w http.ResponseWriter, r *http.Request) {
	if !d.allowUpgrades(w) {
		return
	}
	status := http.StatusOK
	defer func() { d.m().upgradeRequests.WithLabelValues(strconv.Itoa(status)).Inc() }()
	media, ok := acceptedMedia(r.Header.Get("Accept"))
	if !ok {
		status = http.StatusNotAcceptable
		graphError(w, status, "invalid_content_type", "invalid Content-Type requested: "+mediaJSON+" or "+cincinnatiV1)
		return
	}
	channel, arch, ok := graphQuery(w, r)
	if !ok {
		status = http.StatusBadRequest
		return
	}
	res, err := d.servedGraph(channel, arch, r)
	if err != nil {
		status = http.StatusInternalServerError
		graphError(w, status, "failed_plugin_execution", err.Error())
		return
	}
	d.upstreamHeaders(w, res)
	switch {
	case errors.Is(res.err, upgradegraph.ErrNotWatched):
		status = http.StatusNotFound
		graphError(w, status, "does_not_exist", "does not exist: "+res.err.Error()+": dtkbot can say nothing of its drivers")
		return
	case errors.Is(res.err, upgradegraph.ErrNoUpstream):
		status = http.StatusServiceUnavailable
		w.Header().Set("Retry-After", "60")
		value := "failed to fetch upstream graph: " + res.err.Error()
		if res.failure != "" {
			value += ": " + redact.Text(res.failure)
		}
		graphError(w, status, "failed_upstream_fetch", value)
		return
	case res.err != nil:
		status = http.StatusInternalServerError
		graphError(w, status, "failed_plugin_execution", res.err.Error())
		return
	}
	// Each encoding its own tag (a cache keeps both); either one matches
	// If-None-Match, the document being the same.
	h := w.Header()
	body, etag := res.body, res.etag
	gzipped := acceptsGzip(r.Header.Get("Accept-Encoding"))
	if gzipped {
		body, etag = res.gz, strings.TrimSuffix(res.etag, `"`)+`-gzip"`
	}
	h.Set("ETag", etag)
	h.Set("Cache-Control", "no-cache")
	h.Add("Vary", "Accept, Accept-Encoding")
	if match := r.Header.Get("If-None-Match"); match != "" && (etagMatches(match, res.etag) || etagMatches(match, etag)) {
		status = http.StatusNotModified
		w.WriteHeader(status)
		return
	}
	h.Set("Content-Type", media)
	if gzipped {
		h.Set("Content-Encoding", "gzip")
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(body)
}

// upstreamHeaders say how old the upstream graph served is, and why it
// was not read since when its last read failed.
func (d *Daemon) upstreamHeaders(w http.ResponseWriter, res *graphResult) {
	h := w.Header()
	if !res.readAt.IsZero() {
		h.Set("Dtkbot-Upstream-Read-At", res.readAt.UTC().Format(time.RFC3339))
		h.Set("Dtkbot-Upstream-Age", strconv.Itoa(int(max(d.now().Sub(res.readAt), 0).Seconds())))
	}
	if res.failure != "" && !res.failedAt.Before(res.readAt) {
		h.Set("Dtkbot-Upstream-Failure", headerText(redact.Text(res.failure)))
	}
}

// headerText is text fit for a header value: printable ASCII.
func headerText(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return ' '
		}
		return r
	}, s)
}

// etagMatches is If-None-Match's weak comparison with one of the tags.
func etagMatches(header, etag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == "*" || t == etag {
			return true
		}
	}
	return false
}

// acceptsGzip reports whether Accept-Encoding takes gzip (Go's HTTP
// client, the CVO's among them, asks for it unless told not to).
func acceptsGzip(header string) bool {
	for _, part := range strings.Split(header, ",") {
		coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(coding), "gzip") && !strings.Contains(strings.ReplaceAll(params, " ", ""), "q=0") {
			return true
		}
	}
	return false
}

// upstreamGraph is what /status says of an upstream graph dtkbot reads:
// whether a good one is kept, when it was last read, and why not since.
type upstreamGraph struct {
	Channel string `json:"channel"`
	Arch    string `json:"arch"`
	Cached  bool   `json:"cached"`
	upgradegraph.Upstream
}

// apiUpgrades is GET /api/v1/upgrades?channel=…&from=…[&to=…][&arch=…]: the
// updates from a version, each ready or not and what it waits for.
func (d *Daemon) apiUpgrades(w http.ResponseWriter, r *http.Request) {
	if !d.allowUpgrades(w) {
		return
	}
	channel, arch, ok := graphQuery(w, r)
	if !ok {
		return
	}
	from, to := r.URL.Query().Get("from"), r.URL.Query().Get("to")
	for _, v := range []string{from, to} {
		if v != "" && !versionPattern.MatchString(v) {
			graphError(w, http.StatusBadRequest, "invalid_params", fmt.Sprintf("invalid client parameters: version %.64q", v))
			return
		}
	}
	if from == "" {
		graphError(w, http.StatusBadRequest, "missing_params", "mandatory client parameters missing: from")
		return
	}
	res, err := d.servedGraph(channel, arch, r)
	if err != nil {
		graphError(w, http.StatusInternalServerError, "failed_plugin_execution", err.Error())
		return
	}
	d.upstreamHeaders(w, res)
	switch {
	case errors.Is(res.err, upgradegraph.ErrNotWatched):
		graphError(w, http.StatusNotFound, "does_not_exist", res.err.Error())
		return
	case errors.Is(res.err, upgradegraph.ErrNoUpstream):
		graphError(w, http.StatusServiceUnavailable, "failed_upstream_fetch", res.err.Error())
		return
	case res.err != nil:
		graphError(w, http.StatusInternalServerError, "failed_plugin_execution", res.err.Error())
		return
	}
	check, err := res.served.Check(from, to, upgradegraph.UpstreamAt(res.readAt, res.failure, res.failedAt, d.now()))
	if err != nil {
		graphError(w, http.StatusNotFound, "does_not_exist", err.Error())
		return
	}
	serveJSON(w, r, check)
}

// upstreamGraphs are the upstream graphs dtkbot watches, for /status.
func (d *Daemon) upstreamGraphs() []upstreamGraph {
	out := []upstreamGraph{}
	all, err := d.Store.GraphStatuses()
	if err != nil {
		return out
	}
	for _, ch := range d.Upgrades.Channels {
		for _, arch := range d.Upgrades.Arches {
			st := all[ch+"/"+arch]
			out = append(out, upstreamGraph{Channel: ch, Arch: arch, Cached: st.Cached, Upstream: upgradegraph.UpstreamAt(st.ReadAt, st.Failure, st.FailedAt, d.now())})
		}
	}
	return out
}
