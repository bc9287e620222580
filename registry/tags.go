package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/distribution/reference"
)

// ErrNoTagList is returned by Tags when the registry does not list a
// repository's tags (404 on /tags/list for a repository it has, 405, 501).
var ErrNoTagList = errors.New("the registry does not list tags")

// Tag listing bounds: a page of the distribution spec's /tags/list, and
// how many pages are followed (a repository of dtkbot's has a tag per
// kernel and per release: thousands, not millions).
const (
	tagsPerPage  = 1000
	maxTagPages  = 100
	maxPageBytes = 4 << 20
)

// Tags lists the tags of repository (registry/namespace/name) on the
// registry itself, never a mirror, with the OCI distribution spec's GET
// /v2/<name>/tags/list, following its Link: <…>; rel="next" pages. A
// registry that does not list tags answers ErrNoTagList.
func (c *Client) Tags(ctx context.Context, repository string) ([]string, error) {
	named, err := reference.ParseNormalizedNamed(repository)
	if err != nil || !reference.IsNameOnly(named) {
		return nil, fmt.Errorf("listing the tags of %q: not a repository", repository)
	}
	src, err := c.primary(named)
	if err != nil {
		return nil, err
	}
	var tags []string
	next := fmt.Sprintf("/v2/%s/tags/list?n=%d", src.repo, tagsPerPage)
	for page := 0; next != ""; page++ {
		if page == maxTagPages {
			return nil, fmt.Errorf("listing the tags of %s: more than %d pages of %d", repository, maxTagPages, tagsPerPage)
		}
		var list struct {
			Tags []string `json:"tags"`
		}
		var link string
		err := c.do(ctx, src.host, func(ctx context.Context) error {
			resp, err := c.session.sendFor(ctx, src.endpoint, http.MethodGet, next, src.repo, "pull", http.Header{"Accept": {"application/json"}})
			if err != nil {
				var se *StatusError
				if errors.As(err, &se) && (se.Status == http.StatusNotFound || se.Status == http.StatusMethodNotAllowed || se.Status == http.StatusNotImplemented) {
					return permanent(fmt.Errorf("%w (%v)", ErrNoTagList, se))
				}
				return err
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(io.LimitReader(resp.Body, maxPageBytes+1))
			if err != nil {
				return err
			}
			if len(body) > maxPageBytes {
				return permanent(fmt.Errorf("a page of tags is over %d bytes", maxPageBytes))
			}
			list.Tags = nil
			if err := json.Unmarshal(body, &list); err != nil {
				return permanent(fmt.Errorf("parsing the tag list: %w", err))
			}
			link = resp.Header.Get("Link")
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("listing the tags of %s: %w", repository, err)
		}
		tags = append(tags, list.Tags...)
		if next, err = nextPage(link, src.repo); err != nil {
			return nil, fmt.Errorf("listing the tags of %s: %w", repository, err)
		}
	}
	return tags, nil
}

// nextPage is the path and query of a Link header's rel="next" target
// (RFC 8288), which must stay on the repository's tag list: a registry
// names it relative to itself.
func nextPage(link, repo string) (string, error) {
	if link == "" {
		return "", nil
	}
	for _, part := range strings.Split(link, ",") {
		target, params, ok := strings.Cut(strings.TrimSpace(part), ";")
		if !ok || !strings.Contains(strings.ReplaceAll(params, " ", ""), `rel="next"`) {
			continue
		}
		u, err := url.Parse(strings.Trim(strings.TrimSpace(target), "<>"))
		if err != nil || u.Path != "/v2/"+repo+"/tags/list" {
			return "", fmt.Errorf("a next page elsewhere than the tag list: %q", target)
		}
		return u.RequestURI(), nil
	}
	return "", nil
}
