package registrytest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

// TestWhatPkgRegistryDoesNotDo: what the middleware adds to pkg/registry,
// each answered as a real registry answers, over plain HTTP.
func TestWhatPkgRegistryDoesNotDo(t *testing.T) {
	reg := New()
	srv := reg.Server()
	t.Cleanup(srv.Close)
	do := func(method, path, contentType string, body []byte, header ...string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.HTTP.URL+path, bytes.NewReader(body))
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	const mt = "application/vnd.oci.image.manifest.v1+json"
	layer := reg.PutBlob("acme/a", []byte("a layer"))
	manifest := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":%q,"layers":[{"digest":%q,"size":7}]}`, mt, layer)

	t.Run("blobs belong to their repository", func(t *testing.T) {
		if resp, _ := do(http.MethodHead, "/v2/acme/a/blobs/"+layer.String(), "", nil); resp.StatusCode != http.StatusOK {
			t.Errorf("in its repository: %d", resp.StatusCode)
		}
		if resp, body := do(http.MethodGet, "/v2/acme/b/blobs/"+layer.String(), "", nil); resp.StatusCode != http.StatusNotFound || !strings.Contains(body, "BLOB_UNKNOWN") {
			t.Errorf("in another repository: %d %s", resp.StatusCode, body)
		}
	})
	t.Run("a chunked upload lands in its repository", func(t *testing.T) {
		data := []byte("pushed in two chunks")
		d := digest.FromBytes(data)
		before := reg.Stats()
		resp, _ := do(http.MethodPost, "/v2/acme/c/blobs/uploads/", "", nil)
		loc := resp.Header.Get("Location")
		resp, _ = do(http.MethodPatch, loc, "application/octet-stream", data[:6], "Content-Range", "0-5")
		loc = resp.Header.Get("Location")
		resp, _ = do(http.MethodPatch, loc, "application/octet-stream", data[6:], "Content-Range", fmt.Sprintf("6-%d", len(data)-1))
		loc = resp.Header.Get("Location")
		if resp, body := do(http.MethodPut, loc+"?digest="+d.String(), "", nil); resp.StatusCode != http.StatusCreated {
			t.Fatalf("finishing the upload: %d %s", resp.StatusCode, body)
		}
		if resp, body := do(http.MethodGet, "/v2/acme/c/blobs/"+d.String(), "", nil); resp.StatusCode != http.StatusOK || body != string(data) {
			t.Errorf("the uploaded blob: %d %q", resp.StatusCode, body)
		}
		if c := reg.Stats().Sub(before); c.BlobUploads != 1 || c.BytesUploaded != int64(len(data)) || c.BlobGETs != 1 || c.BytesServed != int64(len(data)) {
			t.Errorf("counted %+v", c)
		}
	})
	t.Run("a manifest naming a blob its repository lacks is refused", func(t *testing.T) {
		if resp, body := do(http.MethodPut, "/v2/acme/b/manifests/v1", mt, manifest); resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "MANIFEST_BLOB_UNKNOWN") {
			t.Errorf("%d %s", resp.StatusCode, body)
		}
		if resp, body := do(http.MethodPut, "/v2/acme/a/manifests/v1", mt, manifest); resp.StatusCode != http.StatusCreated {
			t.Errorf("where the blob is: %d %s", resp.StatusCode, body)
		}
	})
	t.Run("a manifest pushed by another digest is refused", func(t *testing.T) {
		other := digest.FromString("another manifest")
		if resp, body := do(http.MethodPut, "/v2/acme/a/manifests/"+other.String(), mt, manifest); resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "DIGEST_INVALID") {
			t.Errorf("%d %s", resp.StatusCode, body)
		}
		if _, _, ok := reg.Manifest("acme/a", other.String()); ok {
			t.Error("stored under the digest it does not match")
		}
	})
	t.Run("a manifest is not deleted by digest", func(t *testing.T) {
		reg.PutManifest("acme/a", "v2", mt, manifest)
		resp, _ := do(http.MethodDelete, "/v2/acme/a/manifests/"+digest.FromBytes(manifest).String(), "", nil)
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("%d", resp.StatusCode)
		}
		if _, ok := reg.TagDigest("acme/a", "v2"); !ok {
			t.Error("the tag went")
		}
	})
	t.Run("errors say what the spec says", func(t *testing.T) {
		resp, body := do(http.MethodGet, "/v2/acme/a/manifests/nothing", "", nil)
		if resp.StatusCode != http.StatusNotFound || !strings.Contains(body, `"code":"MANIFEST_UNKNOWN","message":"manifest unknown"`) || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
	})
	t.Run("tags come in pages", func(t *testing.T) {
		for _, tag := range []string{"v3", "v4"} {
			reg.PutManifest("acme/a", tag, mt, manifest)
		}
		var got []string
		for next, pages := "/v2/acme/a/tags/list?n=3", 0; next != ""; pages++ {
			if pages == 3 {
				t.Fatalf("more than 2 pages: %v", got)
			}
			resp, body := do(http.MethodGet, next, "", nil)
			var list struct{ Tags []string }
			if err := json.Unmarshal([]byte(body), &list); err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
			got = append(got, list.Tags...)
			next, _, _ = strings.Cut(strings.TrimPrefix(resp.Header.Get("Link"), "<"), ">")
		}
		if want := []string{"v1", "v2", "v3", "v4"}; !slices.Equal(got, want) {
			t.Errorf("tags %v, want %v", got, want)
		}
		if _, body := do(http.MethodGet, "/v2/acme/a/tags/list?last=v4", "", nil); !strings.Contains(body, `"tags":[]`) {
			t.Errorf("after the last tag: %s", body)
		}
	})
}
