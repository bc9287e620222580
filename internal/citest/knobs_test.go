package citest

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/dtkbot/dtkbot/builder"
	"github.com/dtkbot/dtkbot/internal/payloadtest"
	"github.com/dtkbot/dtkbot/internal/poll"
	"github.com/dtkbot/dtkbot/internal/registrytest"
)

// TestKnobsChangeWhileServing: what the CI builds may change while it
// serves webhooks (under -race: no data race), and takes effect on the
// next request.
func TestKnobsChangeWhileServing(t *testing.T) {
	reg := registrytest.New()
	srv := reg.Server()
	t.Cleanup(srv.Close)
	ci := &CI{Secret: []byte("s")}
	hook := httptest.NewServer(http.HandlerFunc(ci.Webhook))
	t.Cleanup(hook.Close)
	ci.SetWorld(payloadtest.New(reg, srv.Host()))
	const kernel = "5.14.0-427.37.1.el9_4"
	send := func() {
		body, _ := json.Marshal(builder.Inputs{KernelVersion: kernel, Image: srv.Host() + "/acme/dtk:staging"})
		mac := hmac.New(sha256.New, ci.Secret)
		mac.Write(body)
		req, _ := http.NewRequest(http.MethodPost, hook.URL, bytes.NewReader(body))
		req.Header.Set("X-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}
	ci.Change(func(b *Builds) { b.Never = map[string]bool{kernel: true} })
	stop := poll.Repeat(func() { send() })
	for len(ci.Requests()) < 100 {
		ci.Change(func(b *Builds) { b.Never = map[string]bool{kernel: true}; b.Wrong = map[string]string{} })
		ci.SetWorld(payloadtest.New(reg, srv.Host()))
	}
	stop()
	if tags := reg.Tags("acme/dtk"); len(tags) != 0 {
		t.Fatalf("a build never to finish pushed %v", tags)
	}
	ci.Change(func(b *Builds) { b.Never = nil })
	send()
	if tags := reg.Tags("acme/dtk"); len(tags) != 1 {
		t.Errorf("the build pushed %v", tags)
	}
}
