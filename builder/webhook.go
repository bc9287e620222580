package builder

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/dtkbot/dtkbot/breaker"
	"github.com/dtkbot/dtkbot/redact"
	"github.com/dtkbot/dtkbot/retry"
)

// Inputs are the string inputs every remote build receives: the
// workflow_dispatch inputs of deploy/github/build-dtk.yml and the webhook's
// JSON body. A consumer's build (deploy/examples/kmod/build-kmod.yml) also
// gets the DTK to build FROM, pinned by digest, and the kernel as uname -r.
type Inputs struct {
	KernelVersion     string `json:"kernel_version"`
	RTKernelVersion   string `json:"rt_kernel_version"`
	RHELVersion       string `json:"rhel_version"`
	Image             string `json:"image"`
	Releases          string `json:"releases"`
	DTKImage          string `json:"dtk_image,omitempty"`
	KernelFullVersion string `json:"kernel_full_version,omitempty"`
	// KernelVariant is a consumer build's kernel variant (rt, 64k), sent
	// only for a variant's build (none: the default kernel);
	// KernelVariants a DTK build's other kernels, space-separated ("rt",
	// "64k"), sent only when there are any.
	KernelVariant  string `json:"kernel_variant,omitempty"`
	KernelVariants string `json:"kernel_variants,omitempty"`
}

// Inputs turns a request into its string inputs.
func (r Request) Inputs() Inputs {
	in := Inputs{KernelVersion: r.Kernel, RTKernelVersion: r.RTKernel, RHELVersion: r.RHEL, Image: r.Image, Releases: strings.Join(r.Releases, ","),
		KernelVariants: strings.Join(r.Variants, " ")}
	if r.DTK != "" {
		// The default kernel's builds send no kernel_variant: a workflow
		// written before variants (GitHub refuses a dispatch with an input
		// the workflow does not declare) goes on building them.
		in.DTKImage, in.KernelFullVersion, in.KernelVariant = r.DTK, r.KernelFull, r.Variant
	}
	return in
}

// KernelVariant is a consumer build's KERNEL_VARIANT: default, rt or 64k.
func (r Request) KernelVariant() string {
	if r.Variant == "" {
		return "default"
	}
	return r.Variant
}

// WebhookBuilder asks a CI system for a build with a signed POST: the body is
// the build inputs as JSON, X-Signature-256 is "sha256=" and the hex HMAC-SHA256
// of the body with the shared secret (as GitHub signs its webhooks), and
// X-Dtkbot-Delivery is the same for the same attempt at the same image (its
// staging reference, attempt and round), so the receiver can drop a repeated
// request (the HTTP retries below), and never a later attempt's. It is not
// AsksOnce: a receiver may ignore the header, and a request that reached it
// before dtkbot died would be built twice; such an attempt waits for its
// build until build.timeout. A 2xx means accepted; a 5xx or network error is retried
// with backoff; anything else fails the attempt.
type WebhookBuilder struct {
	URL      string
	Secret   []byte
	HTTP     *http.Client
	Attempts int           // default 4
	Backoff  time.Duration // first wait, doubled; default 2s
}

// Build implements Builder.
func (b *WebhookBuilder) Build(ctx context.Context, req Request) error {
	in := req.Inputs()
	body, err := json.Marshal(struct {
		Inputs
		Stream     string `json:"stream"`
		Arch       string `json:"arch"`
		KernelFull string `json:"kernel_full"`
		Consumer   string `json:"consumer,omitempty"`
	}{in, req.Stream, req.Arch, req.KernelFull, req.Consumer})
	if err != nil {
		return err
	}
	mac := hmac.New(sha256.New, b.Secret)
	mac.Write(body)
	signature := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	delivery := sha256.Sum256([]byte(fmt.Sprintf("%s\x00%d\x00%d", req.Image, req.Attempt, req.Round)))
	// Named by its host alone: a webhook's path (and query) is often its
	// token, and this name reaches the log, the state file and the pass's
	// errors.
	return retryHTTP(ctx, "build webhook "+redact.URL(b.URL), b.Attempts, b.Backoff, func(ctx context.Context) (*http.Response, error) {
		hr, err := http.NewRequestWithContext(ctx, http.MethodPost, b.URL, bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		hr.Header.Set("Content-Type", "application/json")
		hr.Header.Set("X-Signature-256", signature)
		hr.Header.Set("X-Dtkbot-Delivery", hex.EncodeToString(delivery[:16]))
		hr.Header.Set("User-Agent", "dtkbot")
		return client(b.HTTP).Do(hr)
	})
}

func client(c *http.Client) *http.Client {
	if c != nil {
		return c
	}
	return &http.Client{Timeout: time.Minute}
}

// StatusError is an HTTP answer that failed a call.
type StatusError struct {
	What   string
	Status int
	Body   string
	// RetryAfter is what a 429 or a 503 asked to wait before the next
	// attempt (zero: it did not say).
	RetryAfter time.Duration
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%s: HTTP %d: %s", e.What, e.Status, e.Body)
}

// Public is the answer without its body: what failed, and where to look.
func (e *StatusError) Public() string {
	return fmt.Sprintf("%s answered HTTP %d (its reply is in dtkbot's log)", e.What, e.Status)
}

// retryHTTP calls do until a 2xx, retrying 5xx, 429 and network errors
// (package retry), after the Retry-After the service asked for, if any.
func retryHTTP(ctx context.Context, what string, attempts int, backoff time.Duration, do func(context.Context) (*http.Response, error)) error {
	if attempts <= 0 {
		attempts = 4
	}
	if backoff <= 0 {
		backoff = 2 * time.Second
	}
	return retry.Do(ctx, retry.Policy{Attempts: attempts, Backoff: backoff}, retryable, func(ctx context.Context) error {
		resp, err := do(ctx)
		if err != nil {
			// net/http's errors quote the whole URL, path and query (and a
			// token in either) included: what names the endpoint.
			var ue *url.Error
			if errors.As(err, &ue) {
				ue.URL = redact.URL(ue.URL)
			}
			return fmt.Errorf("%s: %w", what, err)
		}
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		if resp.StatusCode >= 200 && resp.StatusCode < 300 {
			return nil
		}
		return &StatusError{What: what, Status: resp.StatusCode, Body: strings.TrimSpace(string(msg)), RetryAfter: retryAfterHeader(resp.Header.Get("Retry-After"))}
	})
}

// retryable classifies a failed request for package retry: an answer is
// tried again when it is a 5xx or a 429 (after its Retry-After), no answer
// always, unless the request was not sent because the service stopped
// answering in this pass (breaker.ErrOpen).
func retryable(err error) (bool, time.Duration) {
	var se *StatusError
	if errors.As(err, &se) {
		return se.Status >= 500 || se.Status == http.StatusTooManyRequests, se.RetryAfter
	}
	return !errors.Is(err, breaker.ErrOpen), 0
}

// retryAfterHeader reads a Retry-After of seconds (RFC 9110, section
// 10.2.3); a date, or anything else, leaves the wait to the backoff.
func retryAfterHeader(v string) time.Duration {
	s, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || s <= 0 {
		return 0
	}
	return time.Duration(s) * time.Second
}
