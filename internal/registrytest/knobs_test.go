package registrytest

import (
	"net/http"
	"testing"
	"time"

	"github.com/dtkbot/dtkbot/internal/poll"
)

// TestKnobsChangeWhileServing: a test may turn every knob while requests
// are being served (under -race: no data race, as there was when they were
// fields a test assigned), and each takes effect on the next request.
func TestKnobsChangeWhileServing(t *testing.T) {
	reg := New()
	srv := reg.Server()
	t.Cleanup(srv.Close)
	const mt = "application/vnd.oci.image.manifest.v1+json"
	reg.PutManifest("acme/x", "v1", mt, []byte(`{}`))
	del := func(tag string) int {
		req, _ := http.NewRequest(http.MethodDelete, srv.HTTP.URL+"/v2/acme/x/manifests/"+tag, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	stop := poll.Repeat(func() { del("v1") })
	for i := 0; reg.Stats().Requests < 200; i++ {
		srv.SetIntercept(func(http.ResponseWriter, *http.Request) bool { return false })
		srv.SetTagDelete(TagDelete(i % 3))
		srv.SetClock(time.Now)
		srv.SetTokenTTL(time.Minute)
	}
	stop()

	srv.SetIntercept(nil)
	reg.PutManifest("acme/x", "v1", mt, []byte(`{}`))
	reg.PutManifest("acme/x", "v2", mt, []byte(`{}`))
	srv.SetTagDelete(TagDeleteRefused)
	if code := del("v1"); code != http.StatusMethodNotAllowed {
		t.Errorf("refused: %d", code)
	}
	srv.SetTagDelete(TagDeleteRemovesTag)
	if code := del("v1"); code != http.StatusAccepted || len(reg.Tags("acme/x")) != 1 {
		t.Errorf("removes the tag: %d, tags %v", code, reg.Tags("acme/x"))
	}
	reg.PutManifest("acme/x", "v1", mt, []byte(`{}`))
	srv.SetTagDelete(TagDeleteTakesManifest)
	if code := del("v1"); code != http.StatusAccepted || len(reg.Tags("acme/x")) != 0 {
		t.Errorf("takes the manifest: %d, tags %v", code, reg.Tags("acme/x"))
	}
	srv.SetIntercept(func(w http.ResponseWriter, _ *http.Request) bool { w.WriteHeader(http.StatusTeapot); return true })
	if code := del("v2"); code != http.StatusTeapot {
		t.Errorf("intercepted: %d", code)
	}
}
