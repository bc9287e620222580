package notify

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"text/template"

	"github.com/google/go-github/v88/github"

	"github.com/dtkbot/dtkbot/kmm"
	"github.com/dtkbot/dtkbot/ledger"
)

// KMMOptions put KMM manifests into a kernel's pull request: the
// PreflightValidationOCP of each release shipping it, and the kernel
// mapping of each consumer's promoted image. Paths are templates over the
// kernel (.Kernel, .KernelFull, .Stream, .Arch).
type KMMOptions struct {
	PreflightPath string
	MappingsPath  string
}

// Default KMM paths: one directory per kernel.
const (
	DefaultPreflightPath = "kmm/{{.Stream}}-{{.Arch}}/{{.KernelFull}}/preflightvalidationocp.yaml"
	DefaultMappingsPath  = "kmm/{{.Stream}}-{{.Arch}}/{{.KernelFull}}/kernel-mappings.yaml"
)

// Branch is the deterministic branch of a kernel's pull request: one per
// (stream, arch, kernel), as the aarch64 and x86_64 kernels of a release
// share their version-release.
func Branch(k ledger.Image) string {
	return "dtkbot/kernel-" + k.Kernel + "-" + k.Stream + "-" + k.Arch
}

// entryData is what the entry template sees.
type entryData struct {
	Kernel, KernelFull, RTKernel, RHEL, Stream, Arch, Image, Tag string
	Releases                                                     []string
}

// prFile is a whole file the pull request keeps on its branch.
type prFile struct {
	path, content string
}

// prReady: a pull request only ever names a verified image.
func prReady(k ledger.Image) bool {
	return k.State == ledger.StateVerified || k.State == ledger.StatePromoted
}

func parsePaths(o *KMMOptions) (preflight, mappings *template.Template, err error) {
	if o.PreflightPath == "" {
		o.PreflightPath = DefaultPreflightPath
	}
	if o.MappingsPath == "" {
		o.MappingsPath = DefaultMappingsPath
	}
	if preflight, err = template.New("preflight").Option("missingkey=error").Parse(o.PreflightPath); err != nil {
		return nil, nil, fmt.Errorf("github.pull_request.kmm.preflight_path: %w", err)
	}
	if mappings, err = template.New("mappings").Option("missingkey=error").Parse(o.MappingsPath); err != nil {
		return nil, nil, fmt.Errorf("github.pull_request.kmm.mappings_path: %w", err)
	}
	return preflight, mappings, nil
}

// kmmFiles are the KMM manifests of a kernel, as files for its pull
// request, and their hash (empty when there are none).
func (n *Notifier) kmmFiles(k ledger.Image, builds []ledger.Image) ([]prFile, string, error) {
	if n.preflightPath == nil {
		return nil, "", nil
	}
	withdrawn, err := n.store.Withdrawn()
	if err != nil {
		return nil, "", err
	}
	view := kmm.ForKernel(k, builds, func(r string) bool { return withdrawn[r+"/"+k.Arch] })
	var files []prFile
	for _, f := range []struct {
		path    *template.Template
		content func() ([]byte, error)
	}{{n.preflightPath, view.PreflightsYAML}, {n.mappingsPath, view.MappingsYAML}} {
		content, err := f.content()
		if err != nil {
			return nil, "", err
		}
		if len(content) == 0 {
			continue
		}
		var path bytes.Buffer
		if err := f.path.Execute(&path, entryData{Kernel: k.Kernel, KernelFull: k.KernelFull, Stream: k.Stream, Arch: k.Arch}); err != nil {
			return nil, "", fmt.Errorf("github.pull_request.kmm: %w", err)
		}
		files = append(files, prFile{path: path.String(), content: string(content)})
	}
	if len(files) == 0 {
		return nil, "", nil
	}
	h := sha256.New()
	for _, f := range files {
		fmt.Fprintf(h, "%s\x00%s\x00", f.path, f.content)
	}
	return files, hex.EncodeToString(h.Sum(nil)[:8]), nil
}

// pullRequest makes sure the kernel's branch, file changes and pull
// request exist, adopting whatever a previous (interrupted) attempt left.
// Once the pull request exists, only its KMM files and its body (the ABI
// verdicts) are kept up to date, and only while it is open: a merged or
// closed one is a person's.
func (n *Notifier) pullRequest(ctx context.Context, k ledger.Image, files []prFile, filesHash string, rec *ledger.Notice) error {
	pr := n.opts.PullRequest
	owner, repo := split(pr.Repository)
	branch := Branch(k)
	if rec.PRBranch != "" {
		branch = rec.PRBranch // the one it was opened from (an older dtkbot named them otherwise)
	}
	if rec.PRNumber != 0 {
		p, _, err := n.gh.PullRequests.Get(ctx, owner, repo, rec.PRNumber)
		if err != nil {
			return fmt.Errorf("reading pull request #%d of %s: %w", rec.PRNumber, pr.Repository, err)
		}
		if p.GetState() == "open" {
			if err := n.writeFiles(ctx, owner, repo, branch, files, k); err != nil {
				return err
			}
			if body := prBody(k, pr.Path, files); p.GetBody() != body {
				err := n.mutate(ctx, func() error {
					_, _, err := n.gh.PullRequests.Edit(ctx, owner, repo, rec.PRNumber, &github.PullRequest{Body: github.String(body)})
					return err
				})
				if err != nil {
					return fmt.Errorf("updating pull request #%d of %s: %w", rec.PRNumber, pr.Repository, err)
				}
			}
		} else {
			n.log.Info().Int("pull_request", rec.PRNumber).Str("kernel", k.Kernel).Msg("pull request no longer open: its files are left alone")
		}
		rec.PRFiles = filesHash
		return n.store.PutNotice(*rec)
	}
	base := pr.Base
	if base == "" {
		r, _, err := n.gh.Repositories.Get(ctx, owner, repo)
		if err != nil {
			return fmt.Errorf("reading %s: %w", pr.Repository, err)
		}
		base = r.GetDefaultBranch()
	}
	// The branch.
	if _, resp, err := n.gh.Git.GetRef(ctx, owner, repo, "heads/"+branch); err != nil {
		if resp == nil || resp.StatusCode != http.StatusNotFound {
			return fmt.Errorf("reading branch %s of %s: %w", branch, pr.Repository, err)
		}
		baseRef, _, err := n.gh.Git.GetRef(ctx, owner, repo, "heads/"+base)
		if err != nil {
			return fmt.Errorf("reading branch %s of %s: %w", base, pr.Repository, err)
		}
		err = n.mutate(ctx, func() error {
			_, _, err := n.gh.Git.CreateRef(ctx, owner, repo, github.CreateRef{Ref: "refs/heads/" + branch, SHA: baseRef.GetObject().GetSHA()})
			return err
		})
		if err != nil && !alreadyExists(err) {
			return fmt.Errorf("creating branch %s in %s: %w", branch, pr.Repository, err)
		}
	}
	// The entry, appended to the kernels file once.
	var entry bytes.Buffer
	if err := n.entry.Execute(&entry, entryData{Kernel: k.Kernel, KernelFull: k.KernelFull, RTKernel: k.RTKernel, RHEL: k.RHEL,
		Stream: k.Stream, Arch: k.Arch, Image: k.PinnedImage(), Tag: k.Image, Releases: k.Releases}); err != nil {
		return fmt.Errorf("github.pull_request.template: %w", err)
	}
	old, sha, err := n.readFile(ctx, owner, repo, branch, pr.Path)
	if err != nil {
		return err
	}
	if !strings.Contains(old, k.KernelFull) {
		content := old
		if content != "" && !strings.HasSuffix(content, "\n") {
			content += "\n"
		}
		if err := n.writeFile(ctx, owner, repo, branch, pr.Path, content+entry.String(), sha,
			fmt.Sprintf("Add kernel %s (%s, %s)", k.KernelFull, k.Stream, k.Arch)); err != nil {
			return err
		}
	}
	if err := n.writeFiles(ctx, owner, repo, branch, files, k); err != nil {
		return err
	}
	// The pull request: adopt any that exists for the branch, open or not.
	number, err := n.findPull(ctx, owner, repo, branch)
	if err != nil {
		return err
	}
	if number == 0 {
		var created *github.PullRequest
		err := n.mutate(ctx, func() error {
			var err error
			created, _, err = n.gh.PullRequests.Create(ctx, owner, repo, &github.NewPullRequest{
				Title: github.String(fmt.Sprintf("Add kernel %s (%s, %s)", k.Kernel, k.Stream, k.Arch)),
				Head:  github.String(branch), Base: github.String(base),
				Body: github.String(prBody(k, pr.Path, files))})
			return err
		})
		switch {
		case err == nil:
			number, rec.PRURL = created.GetNumber(), created.GetHTMLURL()
		case alreadyExists(err):
			if number, err = n.findPull(ctx, owner, repo, branch); err != nil {
				return err
			}
		default:
			return fmt.Errorf("opening a pull request in %s: %w", pr.Repository, err)
		}
		n.log.Info().Int("pull_request", number).Str("kernel", k.Kernel).Msg("pull request open")
	}
	rec.PRNumber, rec.PRBranch, rec.PRFiles = number, branch, filesHash
	if rec.PRURL == "" {
		rec.PRURL = strings.TrimSuffix(n.htmlBase(), "/") + fmt.Sprintf("/%s/%s/pull/%d", owner, repo, number)
	}
	return n.store.PutNotice(*rec)
}

func prBody(k ledger.Image, path string, files []prFile) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Adds the DTK image of kernel `%s` to `%s`, shipped by OpenShift %s.\n", k.KernelFull, path, strings.Join(k.Releases, ", "))
	if len(files) > 0 {
		b.WriteString("\nKMM manifests, kept up to date while this is open:\n\n")
		for _, f := range files {
			fmt.Fprintf(&b, "- `%s`\n", f.path)
		}
	}
	b.WriteString(ABISection(k))
	b.WriteString("\n" + Marker(k))
	return b.String()
}

// readFile is a file's content and blob SHA on a branch; nil SHA if absent.
func (n *Notifier) readFile(ctx context.Context, owner, repo, branch, path string) (string, *string, error) {
	file, _, resp, err := n.gh.Repositories.GetContents(ctx, owner, repo, path, &github.RepositoryContentGetOptions{Ref: branch})
	if err != nil && (resp == nil || resp.StatusCode != http.StatusNotFound) {
		return "", nil, fmt.Errorf("reading %s on %s of %s/%s: %w", path, branch, owner, repo, err)
	}
	if file == nil {
		return "", nil, nil
	}
	content, err := file.GetContent()
	if err != nil {
		return "", nil, fmt.Errorf("decoding %s on %s of %s/%s: %w", path, branch, owner, repo, err)
	}
	return content, file.SHA, nil
}

func (n *Notifier) writeFile(ctx context.Context, owner, repo, branch, path, content string, sha *string, message string) error {
	err := n.mutate(ctx, func() error {
		_, _, err := n.gh.Repositories.UpdateFile(ctx, owner, repo, path, &github.RepositoryContentFileOptions{
			Message: github.String(message), Content: []byte(content), SHA: sha, Branch: github.String(branch)})
		return err
	})
	if err != nil {
		return fmt.Errorf("updating %s on %s of %s/%s: %w", path, branch, owner, repo, err)
	}
	return nil
}

// writeFiles puts whole files on the branch, each only if it differs.
func (n *Notifier) writeFiles(ctx context.Context, owner, repo, branch string, files []prFile, k ledger.Image) error {
	for _, f := range files {
		old, sha, err := n.readFile(ctx, owner, repo, branch, f.path)
		if err != nil {
			return err
		}
		if old == f.content {
			continue
		}
		if err := n.writeFile(ctx, owner, repo, branch, f.path, f.content, sha, fmt.Sprintf("KMM manifests of kernel %s (%s, %s)", k.KernelFull, k.Stream, k.Arch)); err != nil {
			return err
		}
	}
	return nil
}

func (n *Notifier) findPull(ctx context.Context, owner, repo, branch string) (int, error) {
	pulls, _, err := n.gh.PullRequests.List(ctx, owner, repo, &github.PullRequestListOptions{Head: owner + ":" + branch, State: "all"})
	if err != nil {
		return 0, fmt.Errorf("listing pull requests of %s: %w", branch, err)
	}
	if len(pulls) > 0 {
		return pulls[0].GetNumber(), nil
	}
	return 0, nil
}

// alreadyExists recognizes GitHub's 422 for an existing ref or pull request:
// for an idempotent bot, that means success.
func alreadyExists(err error) bool {
	var er *github.ErrorResponse
	if !errors.As(err, &er) || er.Response == nil || er.Response.StatusCode != http.StatusUnprocessableEntity {
		return false
	}
	if strings.Contains(er.Message, "already exists") {
		return true
	}
	for _, e := range er.Errors {
		if strings.Contains(e.Message, "already exists") {
			return true
		}
	}
	return false
}
