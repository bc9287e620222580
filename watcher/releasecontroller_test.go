package watcher

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestStreamTagsAreValidated(t *testing.T) {
	body := `{"name":"4-stable","tags":[
		{"name":"4.17.0-rc.1","phase":"Accepted","pullSpec":"quay.io/openshift-release-dev/ocp-release:4.17.0-rc.1-x86_64"},
		{"name":"latest","phase":"Accepted","pullSpec":"quay.io/x:y"},
		{"name":"4.17.0-rc.0","phase":"Exploded","pullSpec":"quay.io/x:y"},
		{"name":"4.17.0-rc.3","phase":"Accepted","pullSpec":"::not a ref"}]}`
	tags, skipped, err := ParseStreamTags([]byte(body), "4-stable")
	if err != nil || len(tags) != 1 || tags[0].Version != "4.17.0-rc.1" || len(skipped) != 3 {
		t.Fatalf("tags %+v, skipped %q, %v", tags, skipped, err)
	}
	for body, want := range map[string]string{
		`{"name":"4-dev-preview","tags":[]}`: "not \"4-stable\"",
		`{"tags":[]}`:                        "is this a release-controller",
		`{"name":"4-stable","tags":[]} {}`:   "trailing data",
		`<html>`:                             "parsing release stream tags",
	} {
		if _, _, err := ParseStreamTags([]byte(body), "4-stable"); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", body, err, want)
		}
	}
}

func TestReleaseControllerFetchIsConditionalAndBounded(t *testing.T) {
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		if r.URL.Path != "/api/v1/releasestream/4-stable/tags" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("ETag", `"v1"`)
		if r.Header.Get("If-None-Match") == `"v1"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		_, _ = w.Write([]byte(`{"name":"4-stable","tags":[{"name":"4.17.0-rc.1","phase":"Accepted","pullSpec":"quay.io/a/b:4.17.0-rc.1-x86_64"}]}`))
	}))
	defer srv.Close()
	rc := &ReleaseController{URL: srv.URL, Arch: "amd64"}
	st, _, err := rc.Fetch(context.Background(), "4-stable", StreamState{})
	if err != nil || len(st.Tags) != 1 || st.ETag != `"v1"` {
		t.Fatalf("%+v %v", st, err)
	}
	again, _, err := rc.Fetch(context.Background(), "4-stable", st)
	if err != nil || len(again.Tags) != 1 || calls != 2 {
		t.Errorf("conditional: %+v %v", again, err)
	}
	rc.MaxBytes = 10
	if _, _, err := rc.Fetch(context.Background(), "4-stable", StreamState{}); err == nil || !strings.Contains(err.Error(), "over the 10-byte limit") {
		t.Errorf("a body over the limit: %v", err)
	}
	rc.MaxBytes = 0
	if _, _, err := rc.Fetch(context.Background(), "4-nope", StreamState{}); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("an unknown stream: %v", err)
	}
}
