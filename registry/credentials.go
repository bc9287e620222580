package registry

import (
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/distribution/reference"
	"go.podman.io/image/v5/pkg/docker/config"
	"go.podman.io/image/v5/types"
)

// AuthFileError is an auth file that cannot be read: missing (when named
// explicitly), unreadable, not JSON, or an "auth" field that is not base64.
// Retrying cannot fix it; fixing the file does, and the client notices the
// change without a restart. It never holds the credentials themselves.
type AuthFileError struct {
	// Files are the auth files looked at: the one the client was given
	// (Options.AuthFile, $REGISTRY_AUTH_FILE), or containers/image's defaults
	// that exist.
	Files []string
	// For is the repository whose credentials were looked up.
	For string
	Err error
}

func (e *AuthFileError) Error() string {
	return fmt.Sprintf("reading the registry credentials for %s from %s: %v", e.For, strings.Join(e.Files, ", "), e.Err)
}

func (e *AuthFileError) Unwrap() error { return e.Err }

// credentialStore holds the credentials read from the auth files, by
// repository, until the files change or a registry refuses them. A change
// is noticed with a stat of each file (inode, size, modification time)
// before cached credentials are used: an OpenShift pull secret mounted from
// a Secret is replaced in place (the kubelet swaps a symlink), and a
// long-running client must follow without a restart. The files themselves
// are read only when they changed, or after a 401.
type credentialStore struct {
	sys *types.SystemContext

	mu      sync.Mutex
	seen    []fileStamp // what the files looked like when byRepo was filled
	byRepo  map[string]credentialEntry
	serial  uint64 // numbers every read, so a refresh knows if another came first
	reads   int64  // times credentials were read from the files
	changes int64  // times the files were seen to change
}

// credentialEntry is what one read of the files gave for one repository.
type credentialEntry struct {
	auth   types.DockerAuthConfig
	err    error
	serial uint64
}

// fileStamp is one auth file as stat saw it; a missing file is a stamp too.
type fileStamp struct {
	path string
	info os.FileInfo // nil when missing
}

func newCredentialStore(sys *types.SystemContext) *credentialStore {
	return &credentialStore{sys: sys, byRepo: map[string]credentialEntry{}}
}

// get returns the credentials for repo at host, with the serial of the read
// they come from (for refresh).
func (c *credentialStore) get(host, repo string) (grant, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.noticeChanges()
	key := credentialHost(host) + "/" + repo
	e, ok := c.byRepo[key]
	if !ok {
		e = c.read(key)
	}
	return grant{auth: e.auth, serial: e.serial}, e.err
}

// refresh reads repo's credentials again after a registry refused used
// (read by get or an earlier refresh). Concurrent refusals of one read
// cause one read of the files: later callers get what the first one read.
func (c *credentialStore) refresh(host, repo string, used grant) (grant, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.noticeChanges()
	key := credentialHost(host) + "/" + repo
	e, ok := c.byRepo[key]
	if !ok || e.serial == used.serial {
		e = c.read(key)
	}
	return grant{auth: e.auth, serial: e.serial}, e.err
}

// files names the auth files for messages.
func (c *credentialStore) files() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.described()
}

// counts are the reads of the files and the changes seen, for Counters.
func (c *credentialStore) counts() (reads, changes int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reads, c.changes
}

// noticeChanges forgets every cached credential when an auth file changed
// since they were read. c.mu is held.
func (c *credentialStore) noticeChanges() {
	now := stampFiles(authFiles(c.sys))
	if sameStamps(c.seen, now) {
		return
	}
	if c.seen != nil {
		c.changes++
	}
	c.seen = now
	clear(c.byRepo)
}

// read looks key (host/repository) up in the auth files, as containers/image
// does (repository, namespaces, then host; credential helpers of
// registries.conf), and caches the answer, an error included: a broken file
// is read again only once it changed. c.mu is held.
func (c *credentialStore) read(key string) credentialEntry {
	c.reads++
	c.serial++
	e := credentialEntry{serial: c.serial}
	fail := func(err error) credentialEntry {
		e.err = &AuthFileError{Files: c.described(), For: key, Err: err}
		c.byRepo[key] = e
		return e
	}
	named, err := reference.ParseNormalizedNamed(key)
	if err != nil {
		return fail(err)
	}
	if explicit := explicitAuthFile(c.sys); explicit != "" {
		// containers/image reads a missing file as "no credentials", which
		// then surfaces as anonymous 401s; podman refuses a missing
		// --authfile the same way (containers/common pkg/auth CheckAuthFile).
		if _, err := os.Stat(explicit); err != nil {
			return fail(err)
		}
	}
	if e.auth, err = config.GetCredentialsForRef(c.sys, named); err != nil {
		if _, ok := errors.AsType[base64.CorruptInputError](err); ok {
			// containers/image says neither which file nor which field.
			err = fmt.Errorf("the \"auth\" field of its entry is not base64: %w", err)
		}
		return fail(err)
	}
	c.byRepo[key] = e
	return e
}

// described names the files for an error: the explicit one, or the
// defaults that exist.
func (c *credentialStore) described() []string {
	if explicit := explicitAuthFile(c.sys); explicit != "" {
		return []string{explicit}
	}
	var out []string
	for _, s := range c.seen {
		if s.info != nil {
			out = append(out, s.path)
		}
	}
	if len(out) == 0 {
		return []string{"the containers auth files (none exists)"}
	}
	return out
}

func explicitAuthFile(sys *types.SystemContext) string {
	if sys.AuthFilePath != "" {
		return sys.AuthFilePath
	}
	return sys.DockerCompatAuthFilePath
}

// authFiles are the files containers/image reads credentials from, in its
// order (go.podman.io/image/v5/pkg/docker/config, getAuthFilePaths): the
// explicit file alone, else $XDG_RUNTIME_DIR/containers/auth.json (or
// /run/containers/UID/auth.json), $XDG_CONFIG_HOME/containers/auth.json,
// $DOCKER_CONFIG/config.json or ~/.docker/config.json, and ~/.dockercfg.
func authFiles(sys *types.SystemContext) []string {
	if explicit := explicitAuthFile(sys); explicit != "" {
		return []string{explicit}
	}
	var out []string
	if dir := os.Getenv("XDG_RUNTIME_DIR"); dir != "" {
		out = append(out, filepath.Join(dir, "containers/auth.json"))
	} else {
		out = append(out, filepath.Join("/run/containers", strconv.Itoa(os.Getuid()), "auth.json"))
	}
	home, _ := os.UserHomeDir()
	cfgHome := os.Getenv("XDG_CONFIG_HOME")
	if cfgHome == "" {
		cfgHome = filepath.Join(home, ".config")
	}
	out = append(out, filepath.Join(cfgHome, "containers/auth.json"))
	if dir := os.Getenv("DOCKER_CONFIG"); dir != "" {
		out = append(out, filepath.Join(dir, "config.json"))
	} else {
		out = append(out, filepath.Join(home, ".docker/config.json"))
	}
	return append(out, filepath.Join(home, ".dockercfg"))
}

// stampFiles stats each path (following symlinks, as a mounted Secret's
// file is one).
func stampFiles(paths []string) []fileStamp {
	out := make([]fileStamp, len(paths))
	for i, p := range paths {
		out[i].path = p
		if fi, err := os.Stat(p); err == nil {
			out[i].info = fi
		}
	}
	return out
}

// sameStamps reports whether no file appeared, vanished, was replaced (a
// new inode), rewritten (size or modification time) or made readable (its
// mode) between a and b.
func sameStamps(a, b []fileStamp) bool {
	if a == nil || len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i].info, b[i].info
		if a[i].path != b[i].path || (x == nil) != (y == nil) {
			return false
		}
		if x != nil && (!os.SameFile(x, y) || x.Size() != y.Size() || !x.ModTime().Equal(y.ModTime()) || x.Mode() != y.Mode()) {
			return false
		}
	}
	return true
}
