package notify

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/dtkbot/dtkbot/internal/githubtest"
	"github.com/dtkbot/dtkbot/ledger"
	"github.com/dtkbot/dtkbot/state"
)

const token = "ghp_notify_test_token_0123456789"

type world struct {
	t     *testing.T
	gh    *githubtest.Server
	store *state.Store
	path  string
	logs  *bytes.Buffer
}

func newWorld(t *testing.T) *world {
	t.Helper()
	gh := githubtest.New("acme", "driver-ci")
	t.Cleanup(gh.Close)
	gh.AddToken(token, "dtkbot-user")
	gh.SetFile("main", "kernels.yaml", "# kernels the driver CI builds for\n")
	w := &world{t: t, gh: gh, path: filepath.Join(t.TempDir(), "s.db"), logs: &bytes.Buffer{}}
	w.open()
	t.Cleanup(func() { w.store.Close() })
	t.Setenv("GITHUB_TOKEN", token)
	return w
}

func (w *world) open() {
	s, err := state.Open(w.path, time.Second)
	if err != nil {
		w.t.Fatal(err)
	}
	w.store = s
}

func (w *world) restart() { w.store.Close(); w.open() }

func (w *world) notifier(opts Options) *Notifier {
	w.t.Helper()
	gh, err := NewClient(w.gh.URL(), TokenAuth{})
	if err != nil {
		w.t.Fatal(err)
	}
	if opts.Repository == "" {
		opts.Repository = "acme/driver-ci"
	}
	if opts.MutationInterval == 0 {
		opts.MutationInterval = time.Millisecond
	}
	n, err := New(gh, TokenAuth{}, opts, w.store, zerolog.New(w.logs))
	if err != nil {
		w.t.Fatal(err)
	}
	return n
}

func kernel(st string) ledger.Image {
	return ledger.Image{Stream: "rhel-9", Arch: "amd64", Kernel: "5.14.0-427.37.1.el9_4", KernelFull: "5.14.0-427.37.1.el9_4.x86_64",
		RHEL: "9.4", RTKernel: "5.14.0-427.37.1.el9_4", Releases: []string{"4.16.15", "4.16.16"}, State: st,
		Image: "quay.io/acme/dtk:5.14.0-427.37.1.el9_4.x86_64", DTKImage: "quay.io/openshift-release-dev/ocp-v4.0-art-dev@sha256:" + strings.Repeat("d", 64)}
}

func built(st string) ledger.Image {
	k := kernel(st)
	k.ImageDigest = "sha256:" + strings.Repeat("b", 64)
	return k
}

var prOpts = &PullRequestOptions{Path: "kernels.yaml"}

func TestOneIssueAndOnePullRequestPerKernel(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	for _, k := range []ledger.Image{kernel(ledger.StateNew), kernel(ledger.StateBuildRequested), built(ledger.StateVerified), built(ledger.StateVerified)} {
		if err := w.notifier(Options{PullRequest: prOpts}).Notify(ctx, k); err != nil {
			t.Fatal(err)
		}
		w.restart()
	}
	if err := w.store.Update(func(tx *state.Tx) error {
		return tx.PutPromotion(ledger.Promotion{Ref: "quay.io/acme/dtk:4.16.15", Digest: built("").ImageDigest, Release: "4.16.15"})
	}); err != nil {
		t.Fatal(err)
	}
	if err := w.notifier(Options{PullRequest: prOpts}).Notify(ctx, built(ledger.StatePromoted)); err != nil {
		t.Fatal(err)
	}
	issues, pulls := w.gh.Issues(), w.gh.Pulls()
	if len(issues) != 1 || len(pulls) != 1 {
		t.Fatalf("%d issues, %d pull requests", len(issues), len(pulls))
	}
	i := issues[0]
	for _, want := range []string{"5.14.0-427.37.1.el9_4.x86_64", "4.16.15", "4.16.16", "**promoted**", "`quay.io/acme/dtk:4.16.15`",
		"| RT kernel | `5.14.0-427.37.1.el9_4` |", "Payload DTK image", Marker(kernel(""))} {
		if !strings.Contains(i.Body, want) {
			t.Errorf("issue body lacks %q:\n%s", want, i.Body)
		}
	}
	if i.Title != "New kernel 5.14.0-427.37.1.el9_4 (rhel-9, amd64) in OpenShift 4.16.15" || i.Labels[0] != "dtkbot" || i.State != "open" {
		t.Errorf("issue %+v", i)
	}
	file, _ := w.gh.File("dtkbot/kernel-5.14.0-427.37.1.el9_4-rhel-9-amd64", "kernels.yaml")
	if !strings.Contains(file, "# kernels the driver CI builds for\n- kernel: 5.14.0-427.37.1.el9_4.x86_64") ||
		!strings.Contains(file, "image: quay.io/acme/dtk@sha256:bbbb") || strings.Count(file, "- kernel:") != 1 {
		t.Errorf("kernels.yaml on the branch:\n%s", file)
	}
	if pulls[0].Head != "dtkbot/kernel-5.14.0-427.37.1.el9_4-rhel-9-amd64" || pulls[0].Base != "main" {
		t.Errorf("pull %+v", pulls[0])
	}
	// Nothing changed: no write at all.
	before := len(w.gh.Mutations())
	if err := w.notifier(Options{PullRequest: prOpts}).Notify(ctx, built(ledger.StatePromoted)); err != nil {
		t.Fatal(err)
	}
	if n := len(w.gh.Mutations()) - before; n != 0 {
		t.Errorf("%d writes for an unchanged kernel", n)
	}
}

func TestClosesWhenPromotedAndRespectsAPersonsClose(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	n := w.notifier(Options{CloseWhenPromoted: true})
	if err := n.Notify(ctx, built(ledger.StatePromoted)); err != nil {
		t.Fatal(err)
	}
	if err := n.Notify(ctx, built(ledger.StatePromoted)); err != nil {
		t.Fatal(err)
	}
	if is := w.gh.Issues(); len(is) != 1 || is[0].State != "closed" || is[0].ClosedBy != "dtkbot-user" {
		t.Fatalf("issues %+v", is)
	}

	// Another kernel's issue, closed by a person: it stays closed, is not
	// edited, and is not recreated, even after the record is lost.
	other := kernel(ledger.StateNew)
	other.Kernel, other.KernelFull = "5.14.0-427.40.1.el9_4", "5.14.0-427.40.1.el9_4.x86_64"
	if err := n.Notify(ctx, other); err != nil {
		t.Fatal(err)
	}
	number := w.gh.Issues()[1].Number
	w.gh.CloseIssue(number, "alice")
	before := len(w.gh.Mutations())
	other.State = ledger.StateFailed
	for i := 0; i < 2; i++ {
		if err := w.notifier(Options{}).Notify(ctx, other); err != nil {
			t.Fatal(err)
		}
		_ = w.store.PutNotice(ledger.Notice{Key: other.Key()}) // lose the record
	}
	if n := len(w.gh.Mutations()) - before; n != 0 || len(w.gh.Issues()) != 2 || w.gh.Issues()[1].State != "closed" {
		t.Errorf("%d writes after a person closed the issue; issues %+v", n, w.gh.Issues())
	}
}

// flakyStore fails the first PutNotice: a crash between GitHub's create and
// the state write.
type flakyStore struct {
	Store
	fail atomic.Bool
}

func (f *flakyStore) PutNotice(n ledger.Notice) error {
	if f.fail.CompareAndSwap(true, false) {
		return errors.New("killed before the state write")
	}
	return f.Store.PutNotice(n)
}

func TestCrashBetweenCreateAndRecordAdopts(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	n := w.notifier(Options{})
	fs := &flakyStore{Store: w.store}
	fs.fail.Store(true)
	n.store = fs
	if err := n.Notify(ctx, kernel(ledger.StateNew)); err == nil {
		t.Fatal("the simulated crash did not happen")
	}
	w.restart()
	if err := w.notifier(Options{}).Notify(ctx, kernel(ledger.StateBuildRequested)); err != nil {
		t.Fatal(err)
	}
	if is := w.gh.Issues(); len(is) != 1 || !strings.Contains(is[0].Body, "**build_requested**") {
		t.Errorf("issues %+v", is)
	}
	if !strings.Contains(w.logs.String(), "adopted an existing issue") {
		t.Errorf("logs: %s", w.logs)
	}
}

func TestRacingPassesOpenOneIssue(t *testing.T) {
	w := newWorld(t)
	n := w.notifier(Options{})
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := n.Notify(context.Background(), kernel(ledger.StateNew)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if len(w.gh.Issues()) != 1 {
		t.Errorf("%d issues", len(w.gh.Issues()))
	}
}

func TestAdoptsAnExistingBranchAndPullRequest(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	n := w.notifier(Options{PullRequest: prOpts})
	// A previous run left the branch and the PR, but no record.
	if err := n.Notify(ctx, built(ledger.StateVerified)); err != nil {
		t.Fatal(err)
	}
	_ = w.store.PutNotice(ledger.Notice{Key: kernel("").Key()})
	if err := w.notifier(Options{PullRequest: prOpts}).Notify(ctx, built(ledger.StatePromoted)); err != nil {
		t.Fatal(err)
	}
	if len(w.gh.Pulls()) != 1 || len(w.gh.Issues()) != 1 {
		t.Errorf("%d pulls, %d issues", len(w.gh.Pulls()), len(w.gh.Issues()))
	}
}

func TestSecondaryRateLimitDelaysTheNextMutation(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	var limited atomic.Bool
	w.gh.SetFault(func(rw http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/issues") && !limited.Swap(true) {
			githubtest.SecondaryRateLimit(rw, time.Second)
			return true
		}
		return false
	})
	n := w.notifier(Options{})
	err := n.Notify(ctx, kernel(ledger.StateNew))
	if !errors.Is(err, ErrRateLimited) {
		t.Fatalf("error %v", err)
	}
	until, _ := w.store.BlockedUntil("github")
	if time.Until(until) < 500*time.Millisecond {
		t.Errorf("blocked until %s", until)
	}
	// A new process honours it too; the next mutation waits.
	w.restart()
	if err := w.notifier(Options{}).Notify(ctx, kernel(ledger.StateNew)); err != nil {
		t.Fatal(err)
	}
	var posts []time.Time
	for _, m := range w.gh.Mutations() {
		posts = append(posts, m.At)
	}
	if len(posts) != 2 || posts[1].Sub(posts[0]) < time.Second {
		t.Errorf("mutations at %v: the second must come at least 1s after the limit", posts)
	}

	// A long limit (the primary one, until its reset) defers without any request.
	w.gh.SetFault(func(rw http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodPatch {
			githubtest.PrimaryRateLimit(rw, time.Now().Add(time.Hour))
			return true
		}
		return false
	})
	if err := w.notifier(Options{}).Notify(ctx, kernel(ledger.StateBuildRequested)); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("primary limit: %v", err)
	}
	w.restart()
	before := len(w.gh.Requests())
	if err := w.notifier(Options{}).Notify(ctx, kernel(ledger.StateBuilt)); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("while blocked: %v", err)
	}
	if n := len(w.gh.Requests()) - before; n != 0 {
		t.Errorf("%d requests while rate limited", n)
	}
}

func TestSecretsStayOutOfErrorsLogsAndURLs(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	n := w.notifier(Options{PullRequest: prOpts})
	if err := n.Notify(ctx, built(ledger.StateVerified)); err != nil {
		t.Fatal(err)
	}
	for _, r := range w.gh.Requests() {
		if strings.Contains(r.Query, token) || strings.Contains(r.Path, token) {
			t.Errorf("the token in a URL: %s?%s", r.Path, r.Query)
		}
		if r.Auth != "Bearer "+token {
			t.Errorf("request %s %s sent Authorization %q", r.Method, r.Path, r.Auth)
		}
	}
	// An expired token: the error says so, without the token.
	t.Setenv("GITHUB_TOKEN", "ghp_expired_secret_value")
	err := w.notifier(Options{}).Notify(ctx, built(ledger.StatePromoted))
	if err == nil || !strings.Contains(err.Error(), "rejected the credentials") || strings.Contains(err.Error(), "ghp_expired_secret_value") {
		t.Errorf("expired token: %v", err)
	}
	if strings.Contains(w.logs.String(), token) || strings.Contains(w.logs.String(), "ghp_expired") {
		t.Errorf("a token in the logs:\n%s", w.logs)
	}
}

func TestGitHubAppAuth(t *testing.T) {
	w := newWorld(t)
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "app.pem")
	_ = os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600)
	w.gh.EnableApp(githubtest.App{ID: 4242, InstallationID: 77, Key: &key.PublicKey, Slug: "dtkbot-app"})
	w.gh.SetTokenTTL(30 * time.Second) // shorter than ghinstallation's refresh margin (1 min): every request needs a new token
	loaded, err := LoadAppKey(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	auth := &AppAuth{APIURL: w.gh.HTTP.URL, AppID: 4242, InstallationID: 77, Key: loaded}
	gh, _ := NewClient(w.gh.URL(), auth)
	n, err := New(gh, auth, Options{Repository: "acme/driver-ci", MutationInterval: time.Millisecond}, w.store, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := n.Notify(ctx, kernel(ledger.StateNew)); err != nil {
		t.Fatal(err)
	}
	_ = w.store.PutNotice(ledger.Notice{Key: kernel("").Key()}) // force a lookup by listing, as the app's bot
	if err := n.Notify(ctx, kernel(ledger.StateBuildRequested)); err != nil {
		t.Fatal(err)
	}
	is := w.gh.Issues()
	if len(is) != 1 || is[0].User != "dtkbot-app[bot]" {
		t.Errorf("issues %+v", is)
	}
	tokens := map[string]bool{}
	for _, r := range w.gh.Requests() {
		if strings.HasPrefix(r.Auth, "Bearer ghs_installation_") {
			tokens[r.Auth] = true
		}
	}
	if len(tokens) < 2 {
		t.Errorf("installation tokens were not refreshed: %d seen", len(tokens))
	}
}

func TestEnterpriseURL(t *testing.T) {
	gh, err := NewClient("https://ghe.example.com/api/v3", TokenAuth{})
	if err != nil || gh.BaseURL() != "https://ghe.example.com/api/v3/" {
		t.Errorf("%v %v", gh.BaseURL(), err)
	}
}

func TestPreview(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	n := w.notifier(Options{PullRequest: prOpts})
	got, err := n.Preview(ctx, built(ledger.StateVerified))
	if err != nil || !strings.Contains(got, `would open issue "New kernel 5.14.0-427.37.1.el9_4`) || !strings.Contains(got, "would open a pull request from dtkbot/kernel-5.14.0-427.37.1.el9_4-rhel-9-amd64") {
		t.Errorf("%q %v", got, err)
	}
	if len(w.gh.Mutations()) != 0 {
		t.Errorf("preview wrote")
	}
	_ = n.Notify(ctx, built(ledger.StateVerified))
	if got, _ := n.Preview(ctx, built(ledger.StatePromoted)); got != "would update issue #1" {
		t.Errorf("%q", got)
	}
}

func TestAlreadyExistsIsSuccess(t *testing.T) {
	w := newWorld(t)
	var once atomic.Bool
	ctx := context.Background()
	n := w.notifier(Options{PullRequest: prOpts})
	if err := n.Notify(ctx, built(ledger.StateVerified)); err != nil {
		t.Fatal(err)
	}
	_ = w.store.PutNotice(ledger.Notice{Key: kernel("").Key()})
	once.Store(false)
	w.gh.SetFault(func(rw http.ResponseWriter, r *http.Request) bool {
		// The branch "does not exist" when read, the pull request list is empty:
		// both writes then meet GitHub's 422 and adopt.
		if r.Method == http.MethodGet && (strings.Contains(r.URL.Path, "/git/ref/heads/dtkbot/") || strings.HasSuffix(r.URL.Path, "/pulls")) && !strings.Contains(r.URL.RawQuery, "page=") {
			if strings.HasSuffix(r.URL.Path, "/pulls") && once.Swap(true) {
				return false // the second listing, after the 422, sees it
			}
			rw.Header().Set("Content-Type", "application/json")
			if strings.HasSuffix(r.URL.Path, "/pulls") {
				_, _ = rw.Write([]byte(`[]`))
				return true
			}
			rw.WriteHeader(http.StatusNotFound)
			_, _ = rw.Write([]byte(`{"message":"Not Found"}`))
			return true
		}
		return false
	})
	if err := w.notifier(Options{PullRequest: prOpts}).Notify(ctx, built(ledger.StatePromoted)); err != nil {
		t.Fatal(err)
	}
	if len(w.gh.Pulls()) != 1 {
		t.Errorf("%d pull requests", len(w.gh.Pulls()))
	}
	rec, _ := w.store.Notice(kernel("").Key())
	if rec.PRNumber != w.gh.Pulls()[0].Number {
		t.Errorf("record %+v", rec)
	}
}

// TestRejectedBuildsAreCommentedOnce: each image that failed verification
// gets one comment on the kernel's issue, however often the kernel is
// notified and even when the record of the comment is lost.
func TestRejectedBuildsAreCommentedOnce(t *testing.T) {
	w := newWorld(t)
	n := w.notifier(Options{})
	k := kernel(ledger.StateNew)
	k.Attempts = 1
	k.Rejections = []ledger.Rejection{{Digest: "sha256:" + strings.Repeat("e", 64), Image: "quay.io/acme/dtk@sha256:" + strings.Repeat("e", 64),
		Reason: "it carries 5.14.0-427.99.1.el9_4.x86_64, want 5.14.0-427.37.1.el9_4", At: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)}}
	for i := 0; i < 2; i++ {
		if err := n.Notify(context.Background(), k); err != nil {
			t.Fatal(err)
		}
	}
	// The record of the comment is lost: the comment is found, not repeated.
	rec, _ := w.store.Notice(k.Key())
	rec.Commented = nil
	_ = w.store.PutNotice(rec)
	if err := n.Notify(context.Background(), k); err != nil {
		t.Fatal(err)
	}
	// A second rejection gets its own comment.
	k.Attempts, k.State, k.Reason = 2, ledger.StateFailed, "verification failed (2 attempts)"
	k.Rejections = append(k.Rejections, ledger.Rejection{Digest: "sha256:" + strings.Repeat("f", 64), Image: "quay.io/acme/dtk@sha256:" + strings.Repeat("f", 64), Reason: "wrong again"})
	if err := n.Notify(context.Background(), k); err != nil {
		t.Fatal(err)
	}
	issues := w.gh.Issues()
	if len(issues) != 1 || len(issues[0].Comments) != 2 {
		t.Fatalf("%d issues, comments %+v", len(issues), issues)
	}
	first, second := issues[0].Comments[0].Body, issues[0].Comments[1].Body
	if !strings.Contains(first, "**not promoted**") || !strings.Contains(first, "carries 5.14.0-427.99.1.el9_4.x86_64") ||
		!strings.Contains(first, "retried (attempt 2)") || !strings.Contains(first, RejectionMarker("sha256:"+strings.Repeat("e", 64))) {
		t.Errorf("first comment:\n%s", first)
	}
	if !strings.Contains(second, "no more attempts") {
		t.Errorf("second comment:\n%s", second)
	}
}

// TestOnlyOurOwnCommentsCount: anyone who can comment on dtkbot's issue
// can post a rejection's marker; dtkbot still comments, as only the
// comments of its own account (the token's user, or the App's bot) say
// what it has said.
func TestOnlyOurOwnCommentsCount(t *testing.T) {
	w := newWorld(t)
	n := w.notifier(Options{})
	k := kernel(ledger.StateNew)
	if err := n.Notify(context.Background(), k); err != nil { // the issue
		t.Fatal(err)
	}
	issues := w.gh.Issues()
	if len(issues) != 1 {
		t.Fatalf("%d issues", len(issues))
	}
	rejected := "sha256:" + strings.Repeat("e", 64)
	const mallory = "ghp_mallory_0123456789"
	w.gh.AddToken(mallory, "mallory")
	body := fmt.Sprintf(`{"body": "nothing to see here %s"}`, RejectionMarker(rejected))
	req, err := http.NewRequest(http.MethodPost, fmt.Sprintf("%srepos/acme/driver-ci/issues/%d/comments", w.gh.URL(), issues[0].Number), strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+mallory)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("mallory's comment: %s", resp.Status)
	}

	k.Attempts = 1
	k.Rejections = []ledger.Rejection{{Digest: rejected, Image: "quay.io/acme/dtk@" + rejected, Reason: "it carries another kernel"}}
	if err := n.Notify(context.Background(), k); err != nil {
		t.Fatal(err)
	}
	var ours int
	for _, c := range w.gh.Issues()[0].Comments {
		if c.User == "dtkbot-user" && strings.Contains(c.Body, RejectionMarker(rejected)) && strings.Contains(c.Body, "**not promoted**") {
			ours++
		}
	}
	if ours != 1 {
		t.Errorf("dtkbot's own comments on the rejection: %d, want 1 (someone else's marker must not silence it): %+v", ours, w.gh.Issues()[0].Comments)
	}
}

// TestWritesAreSpacedOnTheNotifiersClock: writes to GitHub are spaced by
// github.mutation_interval as the notifier's clock tells time: a write due
// sooner than MaxWait from now waits, a later one is deferred (no request),
// and once the clock has moved on by the interval the next write goes out.
func TestWritesAreSpacedOnTheNotifiersClock(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	n := w.notifier(Options{MutationInterval: time.Hour})
	clock := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	n.now = func() time.Time { return clock }
	if err := n.Notify(ctx, kernel(ledger.StateNew)); err != nil {
		t.Fatal(err)
	}
	writes := len(w.gh.Mutations())
	if writes != 1 {
		t.Fatalf("%d writes for a new kernel's issue, want 1", writes)
	}
	// The next write is due in an hour: deferred, nothing sent.
	if err := n.Notify(ctx, kernel(ledger.StateBuildRequested)); !errors.Is(err, ErrRateLimited) || len(w.gh.Mutations()) != writes {
		t.Fatalf("a write an hour early: %v, %d writes", err, len(w.gh.Mutations())-writes)
	}
	clock = clock.Add(59 * time.Minute)
	if err := n.Notify(ctx, kernel(ledger.StateBuildRequested)); !errors.Is(err, ErrRateLimited) || len(w.gh.Mutations()) != writes {
		t.Fatalf("a write a minute early: %v, %d writes", err, len(w.gh.Mutations())-writes)
	}
	clock = clock.Add(time.Minute)
	if err := n.Notify(ctx, kernel(ledger.StateBuildRequested)); err != nil || len(w.gh.Mutations()) != writes+1 {
		t.Fatalf("the write an hour later: %v, %d writes", err, len(w.gh.Mutations())-writes)
	}
}
