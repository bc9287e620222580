// Package notify tells people on GitHub about new kernels: one issue per
// kernel (per stream and arch) kept up to date as the kernel is built and
// promoted, and optionally one pull request per kernel that adds it to a file
// a driver CI reads. It is the only package that imports go-github.
//
// It finds its own issues by listing those its account created with its label
// and matching a hidden marker (never the search API, whose index lags);
// edits only when the body changed; never reopens or recreates an issue a
// person closed; adopts an existing branch or pull request instead of making
// a second one. Mutations are serialized and spaced, and a rate limit's end is
// kept in the state store so that a restart does not hammer GitHub.
package notify

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"text/template"
	"time"

	"github.com/google/go-github/v88/github"
	"github.com/rs/zerolog"
	"golang.org/x/time/rate"

	"github.com/dtkbot/dtkbot/ledger"
	"github.com/dtkbot/dtkbot/redact"
)

// ErrRateLimited means GitHub asked us to wait: the notification is left for
// a later pass.
var ErrRateLimited = errors.New("GitHub rate limit: retrying on a later pass")

// Store is what the notifier keeps between passes.
type Store interface {
	Notice(key string) (ledger.Notice, error)
	PutNotice(n ledger.Notice) error
	BlockedUntil(name string) (time.Time, error)
	SetBlockedUntil(name string, t time.Time) error
	PromotionsOf(digest string) ([]ledger.Promotion, error)
	ConsumerImagesOf(kernelKey string) ([]ledger.Image, error)
	Withdrawn() (map[string]bool, error) // version/arch of withdrawn pre-releases
}

// Options say where and how to notify.
type Options struct {
	Repository        string // owner/name receiving the issues
	Label             string // default "dtkbot"
	CloseWhenPromoted bool
	// MutationInterval is the least time between the starts of two writes
	// to GitHub (default 1s).
	MutationInterval time.Duration
	// MaxWait is the longest the notifier sleeps for a rate limit inside a
	// pass; a longer one defers the notification (default 10s).
	MaxWait     time.Duration
	PullRequest *PullRequestOptions
	// IncludeBuildLog shows a failed build's own words (its last lines, a
	// webhook's reply) in the issue; by default the issue says what failed
	// and where to look, and the words stay in dtkbot's log.
	IncludeBuildLog bool
}

// PullRequestOptions configure the per-kernel pull request.
type PullRequestOptions struct {
	Repository string // owner/name; default Options.Repository
	Path       string // the file to update, e.g. kernels.yaml
	Base       string // default: the repository's default branch
	// Template renders the entry appended for a kernel.
	Template string
	// KMM, if set, adds the kernel's KMM manifests to the pull request.
	KMM *KMMOptions
}

// DefaultEntryTemplate is a YAML list item for a kernels file.
const DefaultEntryTemplate = `- kernel: {{.KernelFull}}
  stream: {{.Stream}}
  arch: {{.Arch}}
  image: {{.Image}}
  releases: [{{join .Releases ", "}}]
`

// Notifier publishes kernels on GitHub.
type Notifier struct {
	gh    *github.Client
	auth  Auth
	opts  Options
	store Store
	log   zerolog.Logger
	now   func() time.Time
	entry *template.Template
	// preflightPath and mappingsPath name the KMM files (nil: none).
	preflightPath, mappingsPath *template.Template

	// writes spaces the writes to GitHub: one every MutationInterval.
	writes *rate.Limiter

	mu    sync.Mutex
	login string
}

// New returns a notifier.
func New(gh *github.Client, auth Auth, opts Options, store Store, log zerolog.Logger) (*Notifier, error) {
	if opts.Label == "" {
		opts.Label = "dtkbot"
	}
	if opts.MutationInterval == 0 {
		opts.MutationInterval = time.Second
	}
	if opts.MaxWait == 0 {
		opts.MaxWait = 10 * time.Second
	}
	if _, _, ok := strings.Cut(opts.Repository, "/"); !ok {
		return nil, fmt.Errorf("github.repository %q is not owner/name", opts.Repository)
	}
	n := &Notifier{gh: gh, auth: auth, opts: opts, store: store, log: log, now: time.Now,
		writes: rate.NewLimiter(rate.Every(opts.MutationInterval), 1)}
	if pr := opts.PullRequest; pr != nil {
		if pr.Repository == "" {
			pr.Repository = opts.Repository
		}
		if pr.Template == "" {
			pr.Template = DefaultEntryTemplate
		}
		t, err := template.New("entry").Option("missingkey=error").Funcs(template.FuncMap{"join": strings.Join}).Parse(pr.Template)
		if err != nil {
			return nil, fmt.Errorf("github.pull_request.template: %w", err)
		}
		n.entry = t
		if pr.KMM != nil {
			if n.preflightPath, n.mappingsPath, err = parsePaths(pr.KMM); err != nil {
				return nil, err
			}
		}
	}
	return n, nil
}

func split(repo string) (string, string) {
	o, r, _ := strings.Cut(repo, "/")
	return o, r
}

// Marker is the hidden line that identifies a kernel's issue.
func Marker(k ledger.Image) string { return "<!-- dtkbot:kernel " + k.Key() + " -->" }

// Title is the issue title of a kernel.
func Title(k ledger.Image) string {
	first := ""
	if len(k.Releases) > 0 {
		first = " in OpenShift " + k.Releases[0]
	}
	return fmt.Sprintf("New kernel %s (%s, %s)%s", k.Kernel, k.Stream, k.Arch, first)
}

// Body is the issue body of a kernel, with its consumers' images: public
// text (no build output unless buildLog, no URL paths).
func Body(k ledger.Image, tags []ledger.Promotion, builds []ledger.Image, buildLog bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "OpenShift ships a new RHCOS kernel: `%s`.\n\n", k.KernelFull)
	fmt.Fprintf(&b, "| | |\n|---|---|\n| Kernel | `%s` |\n| Stream | %s |\n| Arch | %s |\n", k.Kernel, k.Stream, k.Arch)
	rt := "none"
	if k.RTKernel != "" {
		rt = "`" + k.RTKernel + "`"
	}
	fmt.Fprintf(&b, "| RT kernel | %s |\n| RHEL | %s |\n", rt, dash(k.RHEL))
	if kernels := variantKernels(k); kernels != "" {
		fmt.Fprintf(&b, "| Kernel variants the DTK carries | %s |\n", kernels)
	}
	if k.DTKImage != "" {
		fmt.Fprintf(&b, "| Payload DTK image | `%s` |\n", k.DTKImage)
	}
	fmt.Fprintf(&b, "| DTK build | **%s** |\n", k.State)
	if k.Image != "" {
		img := "`" + k.Image + "`"
		if k.ImageDigest != "" {
			img += " (`" + k.ImageDigest + "`)"
		}
		fmt.Fprintf(&b, "| DTK image | %s |\n", img)
	}
	if k.Reason != "" {
		fmt.Fprintf(&b, "| Note | %s |\n", cell(k.Reason))
	}
	if n := len(k.Rejections); n > 0 {
		fmt.Fprintf(&b, "| Rejected builds | %d (never promoted; see the comments) |\n", n)
	}
	b.WriteString("\n### Releases shipping it\n\n")
	for _, r := range k.Releases {
		fmt.Fprintf(&b, "- %s\n", r)
	}
	b.WriteString("\n### Promoted tags\n\n")
	if len(tags) == 0 {
		b.WriteString("None yet.\n")
	}
	for _, t := range tags {
		fmt.Fprintf(&b, "- `%s`\n", t.Ref)
	}
	if len(builds) > 0 {
		b.WriteString("\n### Consumers\n\nBuilt FROM the promoted DTK image, verified to load on this kernel (vermagic, symbol versions, dependencies, signatures if asked), then promoted.\n\n")
		b.WriteString("One image per consumer and kernel variant it is built for (a node boots one `uname -r`: default, rt or 64k).\n\n")
		b.WriteString("| Consumer | Variant | State | Image | Note |\n|---|---|---|---|---|\n")
		for _, c := range builds {
			img := "-"
			if c.Image != "" {
				img = "`" + c.Image + "`"
				if c.ImageDigest != "" && c.State == ledger.StatePromoted {
					img += " (`" + c.ImageDigest + "`)"
				}
			}
			note := c.Reason
			if _, unchecked, ok := strings.Cut(c.Checked, "; ABI not checked: "); ok && c.State == ledger.StatePromoted {
				note = "ABI not checked: " + unchecked
			}
			if n := len(c.Rejections); n > 0 {
				note = strings.TrimPrefix(fmt.Sprintf("%s; %d rejected", note, n), "; ")
			}
			variant := ledger.VariantName(c.Variant)
			if c.KernelFull != "" {
				variant += " (`" + c.KernelFull + "`)"
			}
			fmt.Fprintf(&b, "| %s | %s | **%s** | %s | %s |\n", c.Consumer, variant, c.State, img, dash(cell(note)))
		}
	}
	b.WriteString(ABISection(k))
	var conflicts []ledger.Conflict
	for _, m := range append([]ledger.Image{k}, builds...) {
		conflicts = append(conflicts, m.Conflicts...)
	}
	if len(conflicts) > 0 {
		b.WriteString("\n### Tags left alone\n\nThese tags hold images dtkbot did not put there; dtkbot never overwrites them. Remove them, or change the target's tags.\n\n")
		for _, c := range conflicts {
			fmt.Fprintf(&b, "- `%s` holds `%s` (since %s)\n", c.Tag, c.Digest, c.Since.UTC().Format(time.RFC3339))
		}
	}
	if buildLog {
		for _, m := range append([]ledger.Image{k}, builds...) {
			if m.Detail != "" {
				fmt.Fprintf(&b, "\n<details><summary>Build output (%s)</summary>\n\n~~~\n%s\n~~~\n</details>\n", m.Kind(), strings.ReplaceAll(redact.Output(m.Detail, nil), "~~~", "~ ~ ~"))
			}
		}
	}
	b.WriteString("\n<sub>Kept up to date by dtkbot; edits to this text are overwritten.</sub>\n")
	b.WriteString(Marker(k) + "\n")
	return b.String()
}

// variantKernels lists the variants' kernels the DTK carries, as its
// files' check read them ("" when none is known).
func variantKernels(k ledger.Image) string {
	var out []string
	for _, v := range []string{ledger.VariantRT, ledger.Variant64K} {
		if vk, ok := k.Carries(v); ok {
			out = append(out, fmt.Sprintf("%s `%s`", v, vk.KernelFull))
		}
	}
	return strings.Join(out, ", ")
}

// ABISection is the kernel's ABI verdicts, for an issue or pull request
// body: would each consumer's modules of an earlier kernel load on this
// one? Empty without verdicts.
func ABISection(k ledger.Image) string {
	if len(k.ABI) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("\n### ABI\n\nWould each consumer's newest modules, built for another kernel, load on this one (their symbol versions against its `Module.symvers`)?\n\n")
	for _, v := range k.ABI {
		fmt.Fprintf(&b, "- %s\n", redact.Text(v.String()))
	}
	return b.String()
}

// cell is public text fit for a table cell.
func cell(s string) string { return strings.ReplaceAll(redact.Text(s), "|", "\\|") }

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func hash(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:8])
}

// Notify implements Notifier.
func (n *Notifier) Notify(ctx context.Context, k ledger.Image) error {
	n.mu.Lock() // one notification at a time: racing passes cannot both create
	defer n.mu.Unlock()
	if err := n.checkBlocked(); err != nil {
		return err
	}
	rec, err := n.store.Notice(k.Key())
	if err != nil {
		return err
	}
	var tags []ledger.Promotion
	if k.ImageDigest != "" {
		if tags, err = n.store.PromotionsOf(k.ImageDigest); err != nil {
			return err
		}
	}
	builds, err := n.store.ConsumerImagesOf(k.Key())
	if err != nil {
		return err
	}
	leftAlone, err := n.issue(ctx, k, tags, builds, &rec)
	if err != nil {
		return n.classify(err)
	}
	if !leftAlone {
		if err := n.commentRejections(ctx, k, &rec); err != nil {
			return n.classify(err)
		}
	}
	if n.entry != nil && prReady(k) {
		files, filesHash, err := n.kmmFiles(k, builds)
		if err != nil {
			return err
		}
		if v := ABISection(k); v != "" {
			// The verdict is in the pull request's body: a new one updates it.
			sum := sha256.Sum256([]byte(filesHash + "\x00" + v))
			filesHash = hex.EncodeToString(sum[:8])
		}
		if rec.PRNumber == 0 || filesHash != rec.PRFiles {
			if err := n.pullRequest(ctx, k, files, filesHash, &rec); err != nil {
				return n.classify(err)
			}
		}
	}
	return nil
}

// issue creates, adopts, updates or closes the kernel's issue. It reports
// whether the issue is a person's to keep (closed by one): left alone.
func (n *Notifier) issue(ctx context.Context, k ledger.Image, tags []ledger.Promotion, builds []ledger.Image, rec *ledger.Notice) (bool, error) {
	err := n.issueOnce(ctx, k, tags, builds, rec)
	return errors.Is(err, errLeftAlone), ignore(err, errLeftAlone)
}

// errLeftAlone ends issueOnce when a person closed the issue.
var errLeftAlone = errors.New("closed by a person")

func ignore(err, what error) error {
	if errors.Is(err, what) {
		return nil
	}
	return err
}

func (n *Notifier) issueOnce(ctx context.Context, k ledger.Image, tags []ledger.Promotion, builds []ledger.Image, rec *ledger.Notice) error {
	owner, repo := split(n.opts.Repository)
	body := Body(k, tags, builds, n.opts.IncludeBuildLog)
	var issue *github.Issue
	if rec.IssueNumber != 0 {
		var err error
		if issue, _, err = n.gh.Issues.Get(ctx, owner, repo, rec.IssueNumber); err != nil {
			return fmt.Errorf("reading issue #%d of %s: %w", rec.IssueNumber, n.opts.Repository, err)
		}
	} else {
		found, err := n.findIssue(ctx, k)
		if err != nil {
			return err
		}
		if found != nil {
			// Created before, but the record was lost (a crash between the
			// create call and the state write): adopt it, then look at it whole.
			if issue, _, err = n.gh.Issues.Get(ctx, owner, repo, found.GetNumber()); err != nil {
				return fmt.Errorf("reading issue #%d of %s: %w", found.GetNumber(), n.opts.Repository, err)
			}
			n.log.Info().Int("issue", issue.GetNumber()).Str("kernel", k.Kernel).Msg("adopted an existing issue")
		}
	}
	if issue == nil {
		err := n.mutate(ctx, func() error {
			var err error
			issue, _, err = n.gh.Issues.Create(ctx, owner, repo, &github.IssueRequest{
				Title: github.String(Title(k)), Body: github.String(body), Labels: &[]string{n.opts.Label}})
			return err
		})
		if err != nil {
			return fmt.Errorf("opening an issue in %s: %w", n.opts.Repository, err)
		}
		rec.IssueNumber, rec.IssueURL, rec.BodyHash = issue.GetNumber(), issue.GetHTMLURL(), hash(body)
		n.log.Info().Int("issue", issue.GetNumber()).Str("kernel", k.Kernel).Msg("opened an issue")
		if err := n.store.PutNotice(*rec); err != nil {
			return err
		}
		if !(n.opts.CloseWhenPromoted && k.State == ledger.StatePromoted) {
			return nil
		}
		// Found and promoted in one pass: the issue says so, and is done.
	}
	rec.IssueNumber, rec.IssueURL = issue.GetNumber(), issue.GetHTMLURL()
	closed := issue.GetState() == "closed"
	if closed {
		// Closed by us (when the kernel was promoted): kept up to date, never
		// reopened. Closed by a person: that decision stands, the issue is
		// neither edited, reopened nor recreated.
		if !rec.ClosedByUs {
			login, err := n.whoami(ctx)
			if err != nil {
				return err
			}
			rec.ClosedByUs = issue.GetClosedBy().GetLogin() == login
		}
		if !rec.ClosedByUs {
			n.log.Info().Int("issue", issue.GetNumber()).Str("kernel", k.Kernel).Msg("issue closed by a person: left alone")
			if err := n.store.PutNotice(*rec); err != nil {
				return err
			}
			return errLeftAlone
		}
	}
	req := &github.IssueRequest{}
	changed := false
	if issue.GetBody() != body {
		req.Body, changed = github.String(body), true
	}
	if title := Title(k); issue.GetTitle() != title {
		// The first release shipping the kernel may be found after the issue.
		req.Title, changed = github.String(title), true
	}
	if n.opts.CloseWhenPromoted && k.State == ledger.StatePromoted && !closed {
		req.State, changed = github.String("closed"), true
	}
	if changed {
		err := n.mutate(ctx, func() error {
			_, _, err := n.gh.Issues.Edit(ctx, owner, repo, issue.GetNumber(), req)
			return err
		})
		if err != nil {
			return fmt.Errorf("updating issue #%d of %s: %w", issue.GetNumber(), n.opts.Repository, err)
		}
		if req.State != nil {
			rec.ClosedByUs = true
		}
		n.log.Info().Int("issue", issue.GetNumber()).Str("kernel", k.Kernel).Bool("closed", req.State != nil).Msg("updated the issue")
	}
	rec.BodyHash = hash(body)
	return n.store.PutNotice(*rec)
}

// RejectionMarker is the hidden line of the comment about a rejected image.
func RejectionMarker(digest string) string { return "<!-- dtkbot:rejected " + digest + " -->" }

// commentRejections comments once on the kernel's issue about each built
// image that failed verification. The comments are looked for (by marker)
// before one is written, so a lost record never makes a second.
func (n *Notifier) commentRejections(ctx context.Context, k ledger.Image, rec *ledger.Notice) error {
	var due []ledger.Rejection
	for _, r := range k.Rejections {
		if !slices.Contains(rec.Commented, r.Digest) && !slices.ContainsFunc(due, func(d ledger.Rejection) bool { return d.Digest == r.Digest }) {
			due = append(due, r)
		}
	}
	if len(due) == 0 || rec.IssueNumber == 0 {
		return nil
	}
	owner, repo := split(n.opts.Repository)
	existing, err := n.commentBodies(ctx, owner, repo, rec.IssueNumber)
	if err != nil {
		return err
	}
	for _, r := range due {
		marker := RejectionMarker(r.Digest)
		if !strings.Contains(existing, marker) {
			body := fmt.Sprintf("The DTK image built for `%s` failed verification and was **not promoted**: it stays out of every tag consumers read.\n\n"+
				"| | |\n|---|---|\n| Image | `%s` |\n| Why | %s |\n| When | %s |\n| Next | %s |\n\n%s\n",
				k.KernelFull, r.Image, cell(r.Reason), r.At.UTC().Format(time.RFC3339), next(k), marker)
			err := n.mutate(ctx, func() error {
				_, _, err := n.gh.Issues.CreateComment(ctx, owner, repo, rec.IssueNumber, &github.IssueComment{Body: github.String(body)})
				return err
			})
			if err != nil {
				return fmt.Errorf("commenting on issue #%d of %s: %w", rec.IssueNumber, n.opts.Repository, err)
			}
			n.log.Info().Int("issue", rec.IssueNumber).Str("kernel", k.Kernel).Str("digest", r.Digest).Msg("commented on a rejected build")
		}
		rec.Commented = append(rec.Commented, r.Digest)
		if err := n.store.PutNotice(*rec); err != nil {
			return err
		}
	}
	return nil
}

// next says what happens after a rejection.
func next(k ledger.Image) string {
	if k.State == ledger.StateFailed {
		return "no more attempts: the kernel is failed (" + cell(k.Reason) + ")"
	}
	return fmt.Sprintf("the build is retried (attempt %d)", k.Attempts+1)
}

// commentBodies reads the comments our own account made on an issue,
// joined: anyone who can comment may post a marker, and only ours say
// what dtkbot has said.
func (n *Notifier) commentBodies(ctx context.Context, owner, repo string, number int) (string, error) {
	login, err := n.whoami(ctx)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	opt := &github.IssueListCommentsOptions{ListOptions: github.ListOptions{PerPage: 100}}
	for {
		comments, resp, err := n.gh.Issues.ListComments(ctx, owner, repo, number, opt)
		if err != nil {
			return "", fmt.Errorf("listing the comments of issue #%d of %s: %w", number, n.opts.Repository, err)
		}
		for _, c := range comments {
			if strings.EqualFold(c.GetUser().GetLogin(), login) {
				b.WriteString(c.GetBody())
			}
		}
		if resp.NextPage == 0 {
			return b.String(), nil
		}
		opt.Page = resp.NextPage
	}
}

// findIssue lists the issues our account created with our label, in every
// state, and returns the one carrying the kernel's marker.
func (n *Notifier) findIssue(ctx context.Context, k ledger.Image) (*github.Issue, error) {
	login, err := n.whoami(ctx)
	if err != nil {
		return nil, err
	}
	owner, repo := split(n.opts.Repository)
	marker := Marker(k)
	opt := &github.IssueListByRepoOptions{Creator: login, Labels: []string{n.opts.Label}, State: "all", ListOptions: github.ListOptions{PerPage: 100}}
	for {
		issues, resp, err := n.gh.Issues.ListByRepo(ctx, owner, repo, opt)
		if err != nil {
			return nil, fmt.Errorf("listing dtkbot's issues in %s: %w", n.opts.Repository, err)
		}
		for _, i := range issues {
			if strings.Contains(i.GetBody(), marker) {
				return i, nil
			}
		}
		if resp.NextPage == 0 {
			return nil, nil
		}
		opt.ListOptions.Page = resp.NextPage
	}
}

func (n *Notifier) whoami(ctx context.Context) (string, error) {
	if n.login != "" {
		return n.login, nil
	}
	login, err := n.auth.Login(ctx, n.gh)
	if err != nil {
		return "", err
	}
	n.login = login
	return login, nil
}

// htmlBase is the web root of the GitHub the API belongs to
// (https://github.com for api.github.com, https://HOST for GHE's /api/v3).
func (n *Notifier) htmlBase() string {
	base := n.gh.BaseURL()
	switch {
	case strings.Contains(base, "://api.github.com"):
		return "https://github.com"
	case strings.HasSuffix(strings.TrimSuffix(base, "/"), "/api/v3"):
		return strings.TrimSuffix(strings.TrimSuffix(base, "/"), "/api/v3")
	}
	return strings.TrimSuffix(base, "/")
}

// mutate runs one write: never while a rate limit holds, and never sooner
// than the interval after the previous write began (a token bucket of one
// token: n.writes), all on the notifier's clock. A wait longer than
// MaxWait is ErrRateLimited, and takes no turn.
func (n *Notifier) mutate(ctx context.Context, call func() error) error {
	now := n.now()
	at := now // when the limit GitHub set lifts; then the write takes its turn
	if until, err := n.store.BlockedUntil("github"); err == nil && until.After(now) {
		at = until
	}
	turn := n.writes.ReserveN(at, 1)
	wait := at.Sub(now) + turn.DelayFrom(at)
	if wait > n.opts.MaxWait {
		turn.CancelAt(at)
		return fmt.Errorf("%w (for %s)", ErrRateLimited, wait.Round(time.Second))
	}
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return call()
}

// checkBlocked refuses to start while a long rate limit holds.
func (n *Notifier) checkBlocked() error {
	until, err := n.store.BlockedUntil("github")
	if err != nil {
		return err
	}
	if wait := until.Sub(n.now()); wait > n.opts.MaxWait {
		return fmt.Errorf("%w (until %s)", ErrRateLimited, until.UTC().Format(time.RFC3339))
	}
	return nil
}

// classify records a rate limit's end and turns it into ErrRateLimited.
func (n *Notifier) classify(err error) error {
	var abuse *github.AbuseRateLimitError
	var primary *github.RateLimitError
	var until time.Time
	switch {
	case errors.As(err, &abuse):
		wait := time.Minute
		if abuse.RetryAfter != nil {
			wait = *abuse.RetryAfter
		}
		until = n.now().Add(wait)
	case errors.As(err, &primary):
		until = primary.Rate.Reset.Time
	default:
		var er *github.ErrorResponse
		if errors.As(err, &er) && er.Response != nil && er.Response.StatusCode == http.StatusUnauthorized {
			return fmt.Errorf("GitHub rejected the credentials (an expired or revoked token?): %w", err)
		}
		return err
	}
	if serr := n.store.SetBlockedUntil("github", until); serr != nil {
		n.log.Error().Err(serr).Msg("recording the GitHub rate limit")
	}
	n.log.Warn().Time("until", until).Msg("GitHub rate limit: notifications wait")
	return fmt.Errorf("%w: %v", ErrRateLimited, err)
}

// Preview says what Notify would do, reading GitHub but writing nothing.
func (n *Notifier) Preview(ctx context.Context, k ledger.Image) (string, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	rec, err := n.store.Notice(k.Key())
	if err != nil {
		return "", err
	}
	owner, repo := split(n.opts.Repository)
	number := rec.IssueNumber
	if number == 0 {
		found, err := n.findIssue(ctx, k)
		if err != nil {
			return "", err
		}
		number = found.GetNumber()
	}
	var out string
	switch {
	case number == 0:
		out = fmt.Sprintf("would open issue %q in %s", Title(k), n.opts.Repository)
	default:
		issue, _, err := n.gh.Issues.Get(ctx, owner, repo, number)
		if err != nil {
			return "", err
		}
		var tags []ledger.Promotion
		if k.ImageDigest != "" {
			tags, _ = n.store.PromotionsOf(k.ImageDigest)
		}
		builds, _ := n.store.ConsumerImagesOf(k.Key())
		switch {
		case issue.GetState() == "closed" && !rec.ClosedByUs:
			out = fmt.Sprintf("issue #%d was closed by a person: left alone", number)
		case issue.GetBody() != Body(k, tags, builds, n.opts.IncludeBuildLog) || issue.GetTitle() != Title(k):
			out = fmt.Sprintf("would update issue #%d", number)
		default:
			out = fmt.Sprintf("issue #%d is up to date", number)
		}
	}
	if n.entry != nil && rec.PRNumber == 0 && prReady(k) {
		out += fmt.Sprintf("; would open a pull request from %s updating %s in %s", Branch(k), n.opts.PullRequest.Path, n.opts.PullRequest.Repository)
	}
	return out, nil
}
