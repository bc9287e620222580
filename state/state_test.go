package state

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/dtkbot/dtkbot/internal/poll"
	"github.com/dtkbot/dtkbot/ledger"
	"github.com/dtkbot/dtkbot/releaseinfo"
)

func TestRoundTripAndExport(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	s, err := Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	s.Put("sha256:abc/amd64", &releaseinfo.Report{Release: "4.16.15"})
	k := ledger.Image{Stream: "rhel-9", Arch: "amd64", Kernel: "5.14.0-427.37.1.el9_4", State: ledger.StateNew, Releases: []string{"4.16.15"}}
	err = s.Update(func(tx *Tx) error {
		if err := tx.PutRelease(ledger.Release{Version: "4.16.15", Digest: "sha256:abc", Arch: "amd64"}); err != nil {
			return err
		}
		if err := tx.PutImage(k); err != nil {
			return err
		}
		return tx.Journal(JournalEntry{At: time.Now(), Result: "ok"})
	})
	if err != nil {
		t.Fatal(err)
	}
	// A failed transaction leaves nothing behind.
	_ = s.Update(func(tx *Tx) error {
		k2 := k
		k2.State = ledger.StateBuilt
		_ = tx.PutImage(k2)
		return errors.New("crash before commit")
	})
	s.Close()

	s, err = Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if r, ok := s.Get("sha256:abc/amd64"); !ok || r.Release != "4.16.15" {
		t.Errorf("inspection %+v %v", r, ok)
	}
	exp, err := s.Export()
	if err != nil {
		t.Fatal(err)
	}
	if len(exp.Releases) != 1 || len(exp.Kernels) != 1 || exp.Kernels[0].State != ledger.StateNew || len(exp.Journal) != 1 || exp.Schema != SchemaVersion {
		t.Errorf("export %+v", exp)
	}
	counts, releases, err := s.Counts()
	if err != nil || counts[ledger.StateNew] != 1 || releases != 1 {
		t.Errorf("counts %v %d %v", counts, releases, err)
	}
}

func TestRefusesANewerSchemaAndASecondWriter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = db.Update(func(tx *bolt.Tx) error {
		b, _ := tx.CreateBucketIfNotExists([]byte("meta"))
		return b.Put([]byte("schema"), []byte("99"))
	})
	db.Close()
	if _, err := Open(path, time.Second); err == nil || !strings.Contains(err.Error(), "schema version 99") {
		t.Errorf("newer schema: %v", err)
	}

	// A second writer, and a reader, are refused by the first one's lock:
	// decided by ErrLocked, not by the clock. Each open runs apart, so that
	// one that ignored its wait (bolt's Timeout 0 blocks for ever) fails the
	// poll instead of hanging the test.
	path = filepath.Join(t.TempDir(), "t.db")
	s, err := Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	apart := func(what string, open func() (*Store, error)) error {
		t.Helper()
		done := make(chan error, 1)
		go func() {
			st, err := open()
			if err == nil {
				st.Close()
			}
			done <- err
		}()
		return poll.Receive(t, what+" to give up on the lock", 0, done)
	}
	if err := apart("a second writer", func() (*Store, error) { return Open(path, 200*time.Millisecond) }); !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "waited 200ms") {
		t.Errorf("second writer: %v", err)
	}
	if err := apart("a reader", func() (*Store, error) { return OpenReadOnly(path, 200*time.Millisecond) }); !errors.Is(err, ErrLocked) {
		t.Errorf("reader while a writer holds it: %v", err)
	}
	// The lock was the reason: released, the file opens.
	s.Close()
	if err := apart("a writer after the first closed", func() (*Store, error) { return Open(path, 200*time.Millisecond) }); err != nil {
		t.Errorf("after the first writer closed: %v", err)
	}
}

func TestPinnedImage(t *testing.T) {
	for _, tc := range []struct{ image, digest, want string }{
		{"quay.io/acme/dtk:5.14.0-427.37.1.el9_4.x86_64", "sha256:ab", "quay.io/acme/dtk@sha256:ab"},
		{"127.0.0.1:5000/acme/dtk:k", "sha256:ab", "127.0.0.1:5000/acme/dtk@sha256:ab"},
		{"127.0.0.1:5000/acme/dtk", "sha256:ab", "127.0.0.1:5000/acme/dtk@sha256:ab"},
		{"quay.io/acme/dtk:k", "", "quay.io/acme/dtk:k"},
	} {
		if got := (ledger.Image{Image: tc.image, ImageDigest: tc.digest}).PinnedImage(); got != tc.want {
			t.Errorf("%s + %s: %s, want %s", tc.image, tc.digest, got, tc.want)
		}
	}
}
