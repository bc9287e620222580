// Package githubtest is an in-process stand-in for the parts of the GitHub
// REST API dtkbot uses: issues and their comments, refs, contents, pull requests, workflow
// dispatches, the authenticated user, and GitHub App installation tokens.
// It answers like GitHub does where it matters to an idempotent bot (422 for
// an existing ref or pull request, creator and label filters, pagination,
// primary and secondary rate limits), records every request, and lets a
// test act as a person (close an issue) or inject faults.
package githubtest

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Issue is an issue as the fake keeps it.
type Issue struct {
	Number   int
	Title    string
	Body     string
	State    string
	Labels   []string
	User     string
	ClosedBy string
	Comments []Comment
}

// Comment is a comment on an issue.
type Comment struct {
	ID   int
	Body string
	User string
}

// Pull is a pull request.
type Pull struct {
	Number     int
	Title      string
	Head, Base string
	State      string
	Body       string
}

// Request is one request the fake received.
type Request struct {
	Method, Path, Query, Auth string
	At                        time.Time
}

// Server is the fake GitHub.
type Server struct {
	HTTP *httptest.Server

	// Owner and Repo are the one repository it serves, set by New.
	Owner, Repo string

	mu       sync.Mutex
	tokens   map[string]string // token -> login
	issues   []*Issue
	pulls    []*Pull
	refs     map[string]string // "heads/main" -> sha
	files    map[string]string // branch + ":" + path -> content
	requests []Request
	seq      int

	// The knobs a test turns, under mu (through their setters), so that
	// they can change while the fake serves.
	app      App
	tokenTTL time.Duration
	fault    func(w http.ResponseWriter, r *http.Request) bool
}

// App is a GitHub App the fake knows: a JWT signed by Key for ID buys a
// token for InstallationID.
type App struct {
	ID, InstallationID int64
	Key                *rsa.PublicKey
	Slug               string
}

// EnableApp turns on GitHub App auth for app.
func (s *Server) EnableApp(app App) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.app = app
}

// SetTokenTTL sets the life of the installation tokens handed out from now
// on (default an hour).
func (s *Server) SetTokenTTL(ttl time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokenTTL = ttl
}

// SetFault makes f see every request first (nil: none); f returning true
// means it answered the request itself.
func (s *Server) SetFault(f func(w http.ResponseWriter, r *http.Request) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fault = f
}

// New starts a fake with one repository owner/repo on branch main.
func New(owner, repo string) *Server {
	return NewWith(owner, repo, func(h http.Handler) http.Handler { return h })
}

// NewWith starts the fake behind wrap (a fault injector, say).
func NewWith(owner, repo string, wrap func(http.Handler) http.Handler) *Server {
	s := &Server{Owner: owner, Repo: repo, tokens: map[string]string{}, refs: map[string]string{"heads/main": sha("init")},
		files: map[string]string{}, tokenTTL: time.Hour}
	s.HTTP = httptest.NewServer(wrap(s))
	return s
}

// Close stops the server.
func (s *Server) Close() { s.HTTP.Close() }

// URL is the API base URL (with a trailing slash, as go-github wants).
func (s *Server) URL() string { return s.HTTP.URL + "/" }

// AddToken makes token valid for login.
func (s *Server) AddToken(token, login string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens[token] = login
}

// SetFile puts a file on a branch.
func (s *Server) SetFile(branch, path, content string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.files[branch+":"+path] = content
}

// File returns a file of a branch.
func (s *Server) File(branch, path string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.files[branch+":"+path]
	return c, ok
}

// Issues returns copies of the issues.
func (s *Server) Issues() []Issue {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Issue
	for _, i := range s.issues {
		out = append(out, *i)
	}
	return out
}

// Pulls returns copies of the pull requests.
func (s *Server) Pulls() []Pull {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Pull
	for _, p := range s.pulls {
		out = append(out, *p)
	}
	return out
}

// Requests returns what was received.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// Mutations are the requests that changed something.
func (s *Server) Mutations() []Request {
	var out []Request
	for _, r := range s.Requests() {
		if r.Method != http.MethodGet && r.Method != http.MethodHead && !strings.HasPrefix(r.Path, "/app/") {
			out = append(out, r)
		}
	}
	return out
}

// Files lists the paths of the files on a branch, sorted.
func (s *Server) Files(branch string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for k := range s.files {
		if b, p, _ := strings.Cut(k, ":"); b == branch {
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out
}

// SetPullState closes (or merges: "closed") or reopens a pull request, as a person would.
func (s *Server) SetPullState(number int, st string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.pulls {
		if p.Number == number {
			p.State = st
		}
	}
}

// CloseIssue closes an issue as a person would.
func (s *Server) CloseIssue(number int, by string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, i := range s.issues {
		if i.Number == number {
			i.State, i.ClosedBy = "closed", by
		}
	}
}

func sha(s string) string {
	h := sha256.Sum256([]byte(s))
	return fmt.Sprintf("%x", h[:20])
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func apiError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]any{"message": msg, "documentation_url": "https://docs.github.com/rest"})
}

var (
	repoPath     = regexp.MustCompile(`^/repos/([^/]+)/([^/]+)(/.*)?$`)
	installToken = regexp.MustCompile(`^/app/installations/([0-9]+)/access_tokens$`)
)

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests = append(s.requests, Request{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Auth: r.Header.Get("Authorization"), At: time.Now()})
	fault := s.fault
	s.mu.Unlock()
	if fault != nil && fault(w, r) {
		return
	}
	w.Header().Set("X-RateLimit-Limit", "5000")
	w.Header().Set("X-RateLimit-Remaining", "4999")
	w.Header().Set("X-RateLimit-Reset", strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10))

	if r.URL.Path == "/app" || installToken.MatchString(r.URL.Path) {
		s.serveApp(w, r)
		return
	}
	login, ok := s.login(r)
	if !ok {
		apiError(w, http.StatusUnauthorized, "Bad credentials")
		return
	}
	if r.URL.Path == "/user" && r.Method == http.MethodGet {
		writeJSON(w, 200, map[string]any{"login": login, "id": 1, "type": "User"})
		return
	}
	m := repoPath.FindStringSubmatch(r.URL.Path)
	if m == nil || m[1] != s.Owner || m[2] != s.Repo {
		apiError(w, http.StatusNotFound, "Not Found")
		return
	}
	s.serveRepo(w, r, login, m[3])
}

func (s *Server) login(r *http.Request) (string, bool) {
	auth := r.Header.Get("Authorization")
	token := strings.TrimPrefix(strings.TrimPrefix(auth, "Bearer "), "token ")
	s.mu.Lock()
	defer s.mu.Unlock()
	login, ok := s.tokens[token]
	return login, ok
}

// serveApp checks the app's JWT and hands out installation tokens.
func (s *Server) serveApp(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	app := s.app
	s.mu.Unlock()
	if app.Key == nil || !validJWT(app, strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")) {
		apiError(w, http.StatusUnauthorized, "A JSON web token could not be decoded")
		return
	}
	if r.URL.Path == "/app" {
		writeJSON(w, 200, map[string]any{"id": app.ID, "slug": app.Slug})
		return
	}
	id, _ := strconv.ParseInt(installToken.FindStringSubmatch(r.URL.Path)[1], 10, 64)
	if r.Method != http.MethodPost || id != app.InstallationID {
		apiError(w, http.StatusNotFound, "Not Found")
		return
	}
	s.mu.Lock()
	s.seq++
	token := fmt.Sprintf("ghs_installation_%d", s.seq)
	s.tokens[token] = app.Slug + "[bot]"
	ttl := s.tokenTTL
	s.mu.Unlock()
	writeJSON(w, http.StatusCreated, map[string]any{"token": token, "expires_at": time.Now().Add(ttl).UTC().Format(time.RFC3339)})
}

func validJWT(app App, jwt string) bool {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return false
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return false
	}
	h := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if rsa.VerifyPKCS1v15(app.Key, crypto.SHA256, h[:], sig) != nil {
		return false
	}
	raw, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var claims struct {
		Iss string `json:"iss"`
		Exp int64  `json:"exp"`
	}
	if json.Unmarshal(raw, &claims) != nil || claims.Iss != strconv.FormatInt(app.ID, 10) || claims.Exp < time.Now().Unix() {
		return false
	}
	return true
}

func (s *Server) serveRepo(w http.ResponseWriter, r *http.Request, login, rest string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := r.URL.Query()
	switch {
	case rest == "" && r.Method == http.MethodGet:
		writeJSON(w, 200, map[string]any{"name": s.Repo, "full_name": s.Owner + "/" + s.Repo, "default_branch": "main"})
	case rest == "/issues" && r.Method == http.MethodGet:
		var list []*Issue
		for _, i := range s.issues {
			if c := q.Get("creator"); c != "" && i.User != c {
				continue
			}
			if st := q.Get("state"); st != "all" && i.State != orDefault(st, "open") {
				continue
			}
			if l := q.Get("labels"); l != "" && !contains(i.Labels, l) {
				continue
			}
			list = append(list, i)
		}
		sort.Slice(list, func(a, b int) bool { return list[a].Number > list[b].Number })
		page, per := atoi(q.Get("page"), 1), atoi(q.Get("per_page"), 30)
		start, end := min((page-1)*per, len(list)), min(page*per, len(list))
		if end < len(list) {
			w.Header().Set("Link", fmt.Sprintf(`<%s%s?%s>; rel="next"`, s.HTTP.URL, r.URL.Path, withPage(q, page+1)))
		}
		out := []map[string]any{}
		for _, i := range list[start:end] {
			out = append(out, s.issueJSON(i))
		}
		writeJSON(w, 200, out)
	case rest == "/issues" && r.Method == http.MethodPost:
		var req struct {
			Title, Body string
			Labels      []string
		}
		_ = json.NewDecoder(r.Body).Decode(&req)
		i := &Issue{Number: s.next(), Title: req.Title, Body: req.Body, State: "open", Labels: req.Labels, User: login}
		s.issues = append(s.issues, i)
		writeJSON(w, http.StatusCreated, s.issueJSON(i))
	case strings.HasPrefix(rest, "/issues/") && strings.HasSuffix(rest, "/comments"):
		n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(rest, "/issues/"), "/comments"))
		var issue *Issue
		for _, i := range s.issues {
			if i.Number == n {
				issue = i
			}
		}
		switch {
		case issue == nil:
			apiError(w, http.StatusNotFound, "Not Found")
		case r.Method == http.MethodPost:
			var req struct{ Body string }
			_ = json.NewDecoder(r.Body).Decode(&req)
			c := Comment{ID: s.next(), Body: req.Body, User: login}
			issue.Comments = append(issue.Comments, c)
			writeJSON(w, http.StatusCreated, map[string]any{"id": c.ID, "body": c.Body, "user": map[string]any{"login": c.User}})
		default:
			page, per := atoi(q.Get("page"), 1), atoi(q.Get("per_page"), 30)
			start, end := min((page-1)*per, len(issue.Comments)), min(page*per, len(issue.Comments))
			if end < len(issue.Comments) {
				w.Header().Set("Link", fmt.Sprintf(`<%s%s?%s>; rel="next"`, s.HTTP.URL, r.URL.Path, withPage(q, page+1)))
			}
			out := []map[string]any{}
			for _, c := range issue.Comments[start:end] {
				out = append(out, map[string]any{"id": c.ID, "body": c.Body, "user": map[string]any{"login": c.User}})
			}
			writeJSON(w, 200, out)
		}
	case strings.HasPrefix(rest, "/issues/"):
		n, _ := strconv.Atoi(strings.TrimPrefix(rest, "/issues/"))
		var issue *Issue
		for _, i := range s.issues {
			if i.Number == n {
				issue = i
			}
		}
		if issue == nil {
			apiError(w, http.StatusNotFound, "Not Found")
			return
		}
		if r.Method == http.MethodPatch {
			var req map[string]any
			_ = json.NewDecoder(r.Body).Decode(&req)
			if v, ok := req["body"].(string); ok {
				issue.Body = v
			}
			if v, ok := req["title"].(string); ok {
				issue.Title = v
			}
			if v, ok := req["state"].(string); ok {
				if v == "closed" && issue.State != "closed" {
					issue.ClosedBy = login
				}
				issue.State = v
			}
		}
		writeJSON(w, 200, s.issueJSON(issue))
	case strings.HasPrefix(rest, "/git/ref/") && r.Method == http.MethodGet:
		ref := strings.TrimPrefix(rest, "/git/ref/")
		if sum, ok := s.refs[ref]; ok {
			writeJSON(w, 200, map[string]any{"ref": "refs/" + ref, "object": map[string]any{"sha": sum, "type": "commit"}})
			return
		}
		apiError(w, http.StatusNotFound, "Not Found")
	case rest == "/git/refs" && r.Method == http.MethodPost:
		var req struct{ Ref, Sha string }
		_ = json.NewDecoder(r.Body).Decode(&req)
		ref := strings.TrimPrefix(req.Ref, "refs/")
		if _, ok := s.refs[ref]; ok {
			apiError(w, http.StatusUnprocessableEntity, "Reference already exists")
			return
		}
		s.refs[ref] = req.Sha
		base := ""
		for b, sum := range s.refs {
			if sum == req.Sha && b != ref {
				base = strings.TrimPrefix(b, "heads/")
			}
		}
		for k, v := range s.files {
			if b, p, _ := strings.Cut(k, ":"); b == base {
				s.files[strings.TrimPrefix(ref, "heads/")+":"+p] = v
			}
		}
		writeJSON(w, http.StatusCreated, map[string]any{"ref": req.Ref, "object": map[string]any{"sha": req.Sha}})
	case strings.HasPrefix(rest, "/contents/"):
		path := strings.TrimPrefix(rest, "/contents/")
		if r.Method == http.MethodGet {
			branch := orDefault(q.Get("ref"), "main")
			c, ok := s.files[branch+":"+path]
			if !ok {
				apiError(w, http.StatusNotFound, "Not Found")
				return
			}
			writeJSON(w, 200, map[string]any{"type": "file", "encoding": "base64", "path": path, "sha": sha(c),
				"content": base64.StdEncoding.EncodeToString([]byte(c))})
			return
		}
		var req struct {
			Message, Content, Sha, Branch string
		}
		_ = json.NewDecoder(r.Body).Decode(&req)
		key := orDefault(req.Branch, "main") + ":" + path
		if old, ok := s.files[key]; ok && req.Sha != sha(old) {
			apiError(w, http.StatusConflict, fmt.Sprintf("%s does not match %s", path, req.Sha))
			return
		}
		content, _ := base64.StdEncoding.DecodeString(req.Content)
		s.files[key] = string(content)
		s.refs["heads/"+orDefault(req.Branch, "main")] = sha(key + string(content))
		writeJSON(w, 200, map[string]any{"content": map[string]any{"path": path, "sha": sha(string(content))}})
	case rest == "/pulls" && r.Method == http.MethodGet:
		out := []map[string]any{}
		for _, p := range s.pulls {
			head := q.Get("head")
			if head != "" && head != s.Owner+":"+p.Head {
				continue
			}
			if st := q.Get("state"); st != "all" && p.State != orDefault(st, "open") {
				continue
			}
			out = append(out, s.pullJSON(p))
		}
		writeJSON(w, 200, out)
	case strings.HasPrefix(rest, "/pulls/") && r.Method == http.MethodGet:
		n := atoi(strings.TrimPrefix(rest, "/pulls/"), 0)
		for _, p := range s.pulls {
			if p.Number == n {
				writeJSON(w, 200, s.pullJSON(p))
				return
			}
		}
		apiError(w, http.StatusNotFound, "Not Found")
	case strings.HasPrefix(rest, "/pulls/") && r.Method == http.MethodPatch:
		n := atoi(strings.TrimPrefix(rest, "/pulls/"), 0)
		var req struct{ Title, Body, State *string }
		_ = json.NewDecoder(r.Body).Decode(&req)
		for _, p := range s.pulls {
			if p.Number == n {
				if req.Title != nil {
					p.Title = *req.Title
				}
				if req.Body != nil {
					p.Body = *req.Body
				}
				if req.State != nil {
					p.State = *req.State
				}
				writeJSON(w, 200, s.pullJSON(p))
				return
			}
		}
		apiError(w, http.StatusNotFound, "Not Found")
	case rest == "/pulls" && r.Method == http.MethodPost:
		var req struct{ Title, Head, Base, Body string }
		_ = json.NewDecoder(r.Body).Decode(&req)
		for _, p := range s.pulls {
			if p.Head == req.Head && p.State == "open" {
				writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"message": "Validation Failed",
					"errors": []map[string]string{{"resource": "PullRequest", "code": "custom", "message": "A pull request already exists for " + s.Owner + ":" + req.Head + "."}}})
				return
			}
		}
		if _, ok := s.refs["heads/"+req.Head]; !ok {
			apiError(w, http.StatusUnprocessableEntity, "Validation Failed: head does not exist")
			return
		}
		p := &Pull{Number: s.next(), Title: req.Title, Head: req.Head, Base: req.Base, State: "open", Body: req.Body}
		s.pulls = append(s.pulls, p)
		writeJSON(w, http.StatusCreated, s.pullJSON(p))
	case strings.HasPrefix(rest, "/actions/workflows/") && strings.HasSuffix(rest, "/dispatches") && r.Method == http.MethodPost:
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	default:
		apiError(w, http.StatusNotFound, "Not Found")
	}
}

func (s *Server) next() int { s.seq++; return s.seq }

func (s *Server) issueJSON(i *Issue) map[string]any {
	labels := []map[string]any{}
	for _, l := range i.Labels {
		labels = append(labels, map[string]any{"name": l})
	}
	out := map[string]any{"number": i.Number, "title": i.Title, "body": i.Body, "state": i.State, "labels": labels,
		"user": map[string]any{"login": i.User}, "html_url": fmt.Sprintf("%s/%s/%s/issues/%d", s.HTTP.URL, s.Owner, s.Repo, i.Number)}
	if i.ClosedBy != "" {
		out["closed_by"] = map[string]any{"login": i.ClosedBy}
	}
	return out
}

func (s *Server) pullJSON(p *Pull) map[string]any {
	return map[string]any{"number": p.Number, "title": p.Title, "state": p.State, "body": p.Body,
		"html_url": fmt.Sprintf("%s/%s/%s/pull/%d", s.HTTP.URL, s.Owner, s.Repo, p.Number),
		"head":     map[string]any{"ref": p.Head}, "base": map[string]any{"ref": p.Base}}
}

func orDefault(v, d string) string {
	if v == "" {
		return d
	}
	return v
}

func contains(list []string, v string) bool {
	for _, l := range list {
		if l == v {
			return true
		}
	}
	return false
}

func atoi(s string, d int) int {
	if n, err := strconv.Atoi(s); err == nil && n > 0 {
		return n
	}
	return d
}

func withPage(q map[string][]string, page int) string {
	parts := []string{}
	for k, vs := range q {
		if k == "page" {
			continue
		}
		for _, v := range vs {
			parts = append(parts, k+"="+v)
		}
	}
	sort.Strings(parts)
	return strings.Join(append(parts, fmt.Sprintf("page=%d", page)), "&")
}

// SecondaryRateLimit answers like GitHub's secondary limit.
func SecondaryRateLimit(w http.ResponseWriter, retryAfter time.Duration) {
	w.Header().Set("Retry-After", strconv.Itoa(int(retryAfter.Seconds())))
	writeJSON(w, http.StatusForbidden, map[string]any{"message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
		"documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits"})
}

// PrimaryRateLimit answers like GitHub's exhausted primary limit.
func PrimaryRateLimit(w http.ResponseWriter, reset time.Time) {
	w.Header().Set("X-RateLimit-Limit", "5000")
	w.Header().Set("X-RateLimit-Remaining", "0")
	w.Header().Set("X-RateLimit-Reset", strconv.FormatInt(reset.Unix(), 10))
	writeJSON(w, http.StatusForbidden, map[string]any{"message": "API rate limit exceeded for user ID 1.",
		"documentation_url": "https://docs.github.com/rest/overview/resources-in-the-rest-api#rate-limiting"})
}
