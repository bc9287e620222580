package builder

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// ActionsBuilder starts a GitHub Actions workflow_dispatch of a workflow that
// accepts the Inputs (deploy/github/build-dtk.yml is one). It speaks
// the REST API with net/http: go-github stays in package notify.
type ActionsBuilder struct {
	APIURL     string // https://api.github.com, or GitHub Enterprise's /api/v3
	Repository string // owner/name
	Workflow   string // file name (build-dtk.yml) or id
	Ref        string // branch or tag the workflow runs on
	Token      func() (string, error)
	HTTP       *http.Client
	Attempts   int
	Backoff    time.Duration
}

// Build implements Builder.
func (b *ActionsBuilder) Build(ctx context.Context, req Request) error {
	body, err := json.Marshal(map[string]any{"ref": b.Ref, "inputs": req.Inputs()})
	if err != nil {
		return err
	}
	api := strings.TrimSuffix(b.APIURL, "/")
	if api == "" {
		api = "https://api.github.com"
	}
	endpoint := fmt.Sprintf("%s/repos/%s/actions/workflows/%s/dispatches", api, b.Repository, url.PathEscape(b.Workflow))
	what := fmt.Sprintf("workflow_dispatch of %s in %s", b.Workflow, b.Repository)
	return retryHTTP(ctx, what, b.Attempts, b.Backoff, func(ctx context.Context) (*http.Response, error) {
		token, err := b.Token()
		if err != nil {
			return nil, err
		}
		hr, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		hr.Header.Set("Accept", "application/vnd.github+json")
		hr.Header.Set("Authorization", "Bearer "+token)
		hr.Header.Set("X-GitHub-Api-Version", "2022-11-28")
		hr.Header.Set("Content-Type", "application/json")
		hr.Header.Set("User-Agent", "dtkbot")
		return client(b.HTTP).Do(hr)
	})
}
