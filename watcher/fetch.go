package watcher

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// jsonGet is a conditional GET of a JSON document, as both feeds (the
// update graph and release-controller streams) are read: If-None-Match
// with the last ETag, the body bounded, and its hash compared with the
// last one, since not every server gives ETags.
type jsonGet struct {
	HTTP      *http.Client // nil: http.DefaultClient
	UserAgent string
	MaxBytes  int64 // 0: 16 MiB
	// Where names the document in errors ("update graph … (channel …)").
	Where string
	// Describe, if set, turns an error body into a message ("" to show the
	// body itself).
	Describe func(body []byte) string
}

// fetched is a document's answer: its body unless Unchanged (a 304, or
// the same bytes as before), and what to send or compare next time.
type fetched struct {
	Body      []byte
	ETag      string
	Hash      string
	Unchanged bool
}

func (g jsonGet) get(ctx context.Context, u, prevETag, prevHash string) (fetched, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fetched{}, fmt.Errorf("%s: %w", g.Where, err)
	}
	req.Header.Set("Accept", "application/json")
	if g.UserAgent != "" {
		req.Header.Set("User-Agent", g.UserAgent)
	}
	if prevETag != "" {
		req.Header.Set("If-None-Match", prevETag)
	}
	hc := g.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fetched{}, fmt.Errorf("%s: %w", g.Where, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotModified && prevETag != "" {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
		return fetched{ETag: prevETag, Hash: prevHash, Unchanged: true}, nil
	}
	max := g.MaxBytes
	if max <= 0 {
		max = 16 << 20
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return fetched{}, fmt.Errorf("%s: reading body: %w", g.Where, err)
	}
	if int64(len(body)) > max {
		return fetched{}, fmt.Errorf("%s: body over the %d-byte limit", g.Where, max)
	}
	if resp.StatusCode != http.StatusOK {
		detail := ""
		if g.Describe != nil {
			detail = g.Describe(body)
		}
		if detail == "" {
			detail = fmt.Sprintf("%.200s", strings.TrimSpace(string(body)))
		}
		return fetched{}, &HTTPError{Status: resp.StatusCode, Msg: fmt.Sprintf("%s: %s: %s", g.Where, resp.Status, detail)}
	}
	sum := sha256.Sum256(body)
	out := fetched{Body: body, ETag: resp.Header.Get("ETag"), Hash: hex.EncodeToString(sum[:])}
	out.Unchanged = out.Hash == prevHash
	return out, nil
}
