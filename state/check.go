package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/dtkbot/dtkbot/ledger"
	"github.com/dtkbot/dtkbot/releaseinfo"
	"github.com/dtkbot/dtkbot/watcher"
)

// Why a state file is not used. Both are refused before anything reads or
// writes the file's contents, so nothing is lost or misread.
var (
	// ErrCorrupt: the file is not a readable bbolt file, or its schema
	// version is not one.
	ErrCorrupt = errors.New("state file is corrupt")
	// ErrNewerSchema: a newer dtkbot wrote the file, in a layout this
	// one may misread.
	ErrNewerSchema = errors.New("state file was written by a newer dtkbot")
)

// recoverHint says what to do about a corrupt file: the state is a cache
// and a journal, so it can start empty.
const recoverHint = "`dtkbot state check` says what is wrong; `dtkbot state recover` moves the file aside " +
	"and starts empty, and the next pass rebuilds the state from the registry and GitHub (docs/troubleshooting.md)"

// parseSchema reads the schema version a file records: a whole number from
// 1 up to SchemaVersion (an older one reads as it is).
func parseSchema(v []byte) (int, error) {
	n, err := strconv.Atoi(string(v))
	if err != nil || n < 1 || strconv.Itoa(n) != string(v) {
		return 0, fmt.Errorf("%w: schema version %q is not a version number: %s", ErrCorrupt, v, recoverHint)
	}
	if n > SchemaVersion {
		return n, fmt.Errorf("%w: schema version %d is newer than this dtkbot's %d: upgrade dtkbot (the file is left as it is)",
			ErrNewerSchema, n, SchemaVersion)
	}
	return n, nil
}

// openBolt is bolt.Open with its corruption errors (and panics) turned into
// ErrCorrupt with the way out. A panic inside bolt.Open (a damaged freelist,
// read when opening to write) leaves no DB to close: the file it opened is
// closed here, but its mapping, and with it the lock, stay until the
// process ends, which it does: Open's callers stop on ErrCorrupt. Check
// and Recover open read-only, which never reads the freelist there.
func openBolt(path string, opts *bolt.Options) (db *bolt.DB, err error) {
	var file *os.File
	o := *opts
	o.OpenFile = func(name string, flag int, perm os.FileMode) (*os.File, error) {
		f, err := os.OpenFile(name, flag, perm)
		file = f
		return f, err
	}
	err = guard(func() error {
		var err error
		db, err = bolt.Open(path, 0o600, &o)
		return err
	})
	if err != nil && db == nil && file != nil && errors.Is(err, ErrCorrupt) {
		file.Close() // bolt.Open panicked holding it
	}
	if err != nil && corrupt(err) && !errors.Is(err, ErrCorrupt) {
		err = fmt.Errorf("%w (%v): %s", ErrCorrupt, err, recoverHint)
	}
	return db, err
}

// corrupt tells bbolt's errors about a file's contents from those about
// the file system (permissions, space) and the lock.
func corrupt(err error) bool {
	for _, e := range []error{bolterrors.ErrInvalid, bolterrors.ErrChecksum, bolterrors.ErrVersionMismatch, ErrCorrupt} {
		if errors.Is(err, e) {
			return true
		}
	}
	return strings.Contains(err.Error(), "file size too small")
}

// guard runs fn, turning a panic into ErrCorrupt: bbolt panics on some
// damaged pages rather than return an error.
func guard(fn func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w (reading it panicked: %v): %s", ErrCorrupt, p, recoverHint)
		}
	}()
	return fn()
}

// Health is what Check found in a state file.
type Health struct {
	Path string `json:"path"`
	// Schema is the version the file records (0: none, or unreadable).
	Schema int `json:"schema"`
	// Problems are what makes the file unusable, each saying where.
	Problems []string `json:"problems,omitempty"`
	// Newer: a newer dtkbot wrote the file; it is sound for that one.
	Newer bool `json:"newer,omitempty"`
}

// OK reports whether this dtkbot can use the file.
func (h *Health) OK() bool { return len(h.Problems) == 0 }

// maxProblems bounds what Check lists: a badly damaged file has a problem
// on every page, and the first ones say enough.
const maxProblems = 20

func (h *Health) problem(format string, args ...any) {
	if len(h.Problems) < maxProblems {
		h.Problems = append(h.Problems, fmt.Sprintf(format, args...))
	} else if len(h.Problems) == maxProblems {
		h.Problems = append(h.Problems, "… (more not listed)")
	}
}

// records are the buckets whose every value is JSON, with the type the
// pass decodes it into (kernel_files holds package kmod's own encoding).
var records = map[string]func() any{
	string(bucketInspections): func() any { return new(releaseinfo.Report) },
	string(bucketGraphs):      func() any { return new(watcher.GraphState) },
	string(bucketReleases):    func() any { return new(ledger.Release) },
	string(bucketKernels):     func() any { return new(ledger.Image) },
	string(bucketConsumers):   func() any { return new(ledger.Image) },
	string(bucketTags):        func() any { return new(ledger.Promotion) },
	string(bucketJournal):     func() any { return new(JournalEntry) },
	string(bucketNotices):     func() any { return new(ledger.Notice) },
	string(bucketHeld):        func() any { return new(ledger.HeldRelease) },
	string(bucketStreams):     func() any { return new(watcher.StreamState) },
	string(bucketPins):        func() any { return new(Pin) },
}

// Check reads the whole state file at path without changing it: bbolt's
// own consistency check (every page reachable once, no page freed twice),
// the schema version, and every record the pass reads, decoded as the pass
// decodes it (Export). It fails only when it cannot look (no such file, or
// a running dtkbot holds it); what it finds is in the Health.
func Check(path string, wait time.Duration) (*Health, error) {
	h := &Health{Path: path}
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("checking state: %w", err)
	}
	if wait <= 0 {
		wait = time.Second
	}
	db, err := openBolt(path, &bolt.Options{Timeout: wait, ReadOnly: true})
	switch {
	case errors.Is(err, bolterrors.ErrTimeout):
		return nil, fmt.Errorf("checking state %s: %w (stop it first: the check reads the whole file)", path, ErrLocked)
	case err != nil && corrupt(err):
		h.problem("%s", strings.TrimSuffix(err.Error(), ": "+recoverHint))
		return h, nil
	case err != nil:
		return nil, fmt.Errorf("checking state %s: %w", path, err)
	}
	defer db.Close()
	err = guard(func() error {
		return db.View(func(tx *bolt.Tx) error {
			for err := range tx.Check() {
				h.problem("bbolt: %v", err)
			}
			if !h.OK() {
				return nil // the pages are not to be trusted: reading them may panic
			}
			h.checkSchema(tx)
			if h.Newer {
				return nil // a layout this dtkbot does not know
			}
			h.checkRecords(tx)
			return nil
		})
	})
	if err != nil {
		h.problem("%s", strings.TrimSuffix(err.Error(), ": "+recoverHint))
	}
	if h.OK() {
		// What the pass and `state export` read, read the same way.
		s := &Store{db: db, path: path}
		if err := guard(func() error { _, err := s.Export(); return err }); err != nil {
			h.problem("%v", err)
		}
	}
	return h, nil
}

func (h *Health) checkSchema(tx *bolt.Tx) {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		h.problem("no meta bucket: not a dtkbot state file")
		return
	}
	v := meta.Get([]byte("schema"))
	if v == nil {
		h.problem("no schema version: not a dtkbot state file")
		return
	}
	n, err := parseSchema(v)
	h.Schema = n
	if errors.Is(err, ErrNewerSchema) {
		h.Newer = true
	}
	if err != nil {
		h.problem("%v", err)
	}
}

// checkRecords decodes every record as the pass would, naming each that
// does not decode.
func (h *Health) checkRecords(tx *bolt.Tx) {
	for name, into := range records {
		b := tx.Bucket([]byte(name))
		if b == nil {
			continue // made on the next Open
		}
		_ = b.ForEach(func(k, v []byte) error {
			if v == nil {
				h.problem("%s/%q: a nested bucket where a record belongs", name, k)
				return nil
			}
			if err := json.Unmarshal(v, into()); err != nil {
				h.problem("%s/%q: %v", name, k, err)
			}
			return nil
		})
	}
	// meta: the schema (read above), the last pass, times, and JSON.
	_ = tx.Bucket(bucketMeta).ForEach(func(k, v []byte) error {
		var into any = new(json.RawMessage)
		switch key := string(k); {
		case key == "schema":
			return nil
		case key == "last_pass":
			into = new(ledger.PassRecord)
		case strings.HasPrefix(key, "blocked_until/"), strings.HasPrefix(key, "stamp/"):
			into = new(time.Time)
		}
		if err := json.Unmarshal(v, into); err != nil {
			h.problem("meta/%q: %v", k, err)
		}
		return nil
	})
}

// Recovery is what Recover did.
type Recovery struct {
	Health *Health `json:"health"`
	// MovedTo is where the file went ("": it was sound, nothing moved).
	MovedTo string `json:"moved_to,omitempty"`
}

// ErrSound is Recover's refusal to move a file Check finds usable.
var ErrSound = errors.New("the state file is sound: nothing to recover")

// Recover moves an unusable state file aside, to path.corrupt-<now, UTC>,
// and leaves an empty state file of the current schema in its place: the
// state is a cache and a journal, and the next pass rebuilds it from the
// world (the images at dtkbot's tags, verified again; its issues and pull
// requests, found by their markers). A sound file is left alone
// (ErrSound), unless force; a file of a newer schema is moved only with
// force, as the right fix for it is a newer dtkbot. The move happens under
// the file's lock, so no running dtkbot has it open meanwhile.
func Recover(path string, now time.Time, force bool) (*Recovery, error) {
	h, err := Check(path, time.Second)
	if err != nil {
		return nil, err
	}
	out := &Recovery{Health: h}
	switch {
	case h.OK() && !force:
		return out, ErrSound
	case h.Newer && !force:
		return out, fmt.Errorf("%w: schema %d: upgrade dtkbot; --force moves it aside all the same", ErrNewerSchema, h.Schema)
	}
	aside := path + ".corrupt-" + now.UTC().Format("20060102T150405Z")
	if _, err := os.Lstat(aside); err == nil {
		return out, fmt.Errorf("moving %s aside: %s already exists", path, aside)
	}
	if err := moveLocked(path, aside); err != nil {
		return out, err
	}
	out.MovedTo = aside
	s, err := Open(path, time.Second)
	if err != nil {
		return out, fmt.Errorf("starting an empty state at %s (the old one is at %s): %w", path, aside, err)
	}
	return out, s.Close()
}

// moveLocked renames path to aside while holding the exclusive lock a
// writing dtkbot holds (bbolt's flock on the file itself).
func moveLocked(path, aside string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("moving %s aside: %w", path, err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return fmt.Errorf("moving %s aside: %w: stop it first", path, ErrLocked)
		}
		return fmt.Errorf("moving %s aside: locking it: %w", path, err)
	}
	defer syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	if err := os.Rename(path, aside); err != nil {
		return fmt.Errorf("moving %s aside: %w", path, err)
	}
	return nil
}
