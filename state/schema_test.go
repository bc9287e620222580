package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/dtkbot/dtkbot/ledger"
)

// writeSchema makes a bbolt file whose meta bucket holds schema as its
// version, as another dtkbot (or something else) would have written it.
func writeSchema(t *testing.T, schema string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "s.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte("meta"))
		if err != nil {
			return err
		}
		return b.Put([]byte("schema"), []byte(schema))
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestANewerSchemaIsRefusedByEveryOpen: a file written by a newer dtkbot is
// never used, read-only (report, state export) included, and the error
// says what to do.
func TestANewerSchemaIsRefusedByEveryOpen(t *testing.T) {
	path := writeSchema(t, fmt.Sprint(SchemaVersion+1))
	for what, open := range map[string]func(string, time.Duration) (*Store, error){"Open": Open, "OpenReadOnly": OpenReadOnly} {
		s, err := open(path, time.Second)
		if err == nil {
			s.Close()
			t.Errorf("%s used a file of schema %d (this dtkbot's is %d)", what, SchemaVersion+1, SchemaVersion)
			continue
		}
		if !strings.Contains(err.Error(), "newer") || !strings.Contains(err.Error(), "upgrade dtkbot") {
			t.Errorf("%s: %v: the error should say the file is newer and to upgrade dtkbot", what, err)
		}
	}
	// Refused, and left as it was: still the newer schema.
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_ = db.View(func(tx *bolt.Tx) error {
		if got := string(tx.Bucket([]byte("meta")).Get([]byte("schema"))); got != fmt.Sprint(SchemaVersion+1) {
			t.Errorf("the refused file's schema is now %q", got)
		}
		return nil
	})
}

// TestSchemaVersionIsParsedStrictly: a version that is not a whole positive
// number is an error naming it, never read as the number it starts with.
func TestSchemaVersionIsParsedStrictly(t *testing.T) {
	for _, v := range []string{"2x", "", " 2", "two", "-1", "0", "2.0", "99999999999999999999"} {
		t.Run(fmt.Sprintf("%q", v), func(t *testing.T) {
			path := writeSchema(t, v)
			for what, open := range map[string]func(string, time.Duration) (*Store, error){"Open": Open, "OpenReadOnly": OpenReadOnly} {
				s, err := open(path, time.Second)
				if err == nil {
					s.Close()
					t.Errorf("%s accepted schema %q", what, v)
					continue
				}
				if !strings.Contains(err.Error(), fmt.Sprintf("schema version %q", v)) || !strings.Contains(err.Error(), "dtkbot state check") {
					t.Errorf("%s: %v: want the version quoted and the way to check the file", what, err)
				}
			}
		})
	}
}

// TestACorruptFileSaysHowToRecover: a file that is not a bbolt file at all
// stops Open with an error that names the file and the commands that
// check it and move it aside.
func TestACorruptFileSaysHowToRecover(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	if err := os.WriteFile(path, []byte(strings.Repeat("not a bbolt file\n", 1024)), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(path, time.Second)
	if err == nil {
		t.Fatal("a corrupt file opened")
	}
	for _, want := range []string{path, "corrupt", "dtkbot state check", "dtkbot state recover"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error lacks %q: %v", want, err)
		}
	}
}

// TestTheJournalIsPruned: appending keeps at most JournalKeep entries, and
// none older than JournalMaxAge before the newest, oldest dropped first.
func TestTheJournalIsPruned(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "s.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	entry := func(i int, at time.Time) JournalEntry {
		raw, _ := json.Marshal(map[string]int{"n": i})
		return JournalEntry{At: at, Action: raw, Result: "ok"}
	}
	over := 10_000 + 50
	if err := s.Update(func(tx *Tx) error {
		for i := range over {
			if err := tx.Journal(entry(i, start.Add(time.Duration(i)*time.Second))); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	exp, err := s.Export()
	if err != nil {
		t.Fatal(err)
	}
	if len(exp.Journal) != 10_000 || string(exp.Journal[0].Action) != `{"n":50}` || string(exp.Journal[len(exp.Journal)-1].Action) != fmt.Sprintf(`{"n":%d}`, over-1) {
		t.Fatalf("after %d entries the journal holds %d, from %s to %s; want the newest 10000", over, len(exp.Journal),
			exp.Journal[0].Action, exp.Journal[len(exp.Journal)-1].Action)
	}
	// A year later, one more entry: everything older than the age bound goes.
	late := start.Add(365 * 24 * time.Hour)
	if err := s.Update(func(tx *Tx) error { return tx.Journal(entry(-1, late)) }); err != nil {
		t.Fatal(err)
	}
	if exp, err = s.Export(); err != nil {
		t.Fatal(err)
	}
	if len(exp.Journal) != 1 || !exp.Journal[0].At.Equal(late) {
		t.Errorf("a year on, the journal holds %d entries, want only the new one", len(exp.Journal))
	}
}

// filled is a sound state file with a release, an image and a journal
// entry.
func filled(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "dtkbot.db")
	s, err := Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Update(func(tx *Tx) error {
		for i := range 200 { // a few pages' worth
			if err := tx.PutRelease(ledger.Release{Version: fmt.Sprintf("4.16.%d", i), Digest: fmt.Sprintf("sha256:%064d", i), Arch: "amd64"}); err != nil {
				return err
			}
		}
		if err := tx.PutImage(ledger.Image{Stream: "rhel-9", Arch: "amd64", Kernel: "5.14.0-427.37.1.el9_4", State: ledger.StateNew}); err != nil {
			return err
		}
		return tx.Journal(JournalEntry{At: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Result: "ok"})
	}); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestCheckAndRecover: Check finds a sound file sound and names what is
// wrong with a broken one (not a bbolt file; damaged pages; a record that
// does not decode; a newer schema); Recover leaves a sound file alone,
// moves a broken one aside under its lock, keeps its bytes, and leaves an
// empty state of the current schema in its place.
func TestCheckAndRecover(t *testing.T) {
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	t.Run("sound", func(t *testing.T) {
		path := filled(t)
		h, err := Check(path, time.Second)
		if err != nil || !h.OK() || h.Schema != SchemaVersion {
			t.Fatalf("a sound file: %+v, %v", h, err)
		}
		if rec, err := Recover(path, now, false); !errors.Is(err, ErrSound) || rec.MovedTo != "" {
			t.Errorf("recovering a sound file: %+v, %v", rec, err)
		}
		if _, err := os.Stat(path + ".corrupt-20260304T050607Z"); err == nil {
			t.Error("a sound file was moved")
		}
	})

	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, path string)
		want   string // in a problem
	}{
		{"not a bbolt file", func(t *testing.T, path string) {
			if err := os.WriteFile(path, []byte(strings.Repeat("garbage ", 4096)), 0o600); err != nil {
				t.Fatal(err)
			}
		}, "invalid database"},
		{"truncated", func(t *testing.T, path string) {
			if err := os.Truncate(path, 100); err != nil {
				t.Fatal(err)
			}
		}, "corrupt"},
		{"damaged pages", func(t *testing.T, path string) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			// Past the two meta pages and the freelist, every page
			// overwritten: the tree is unreadable, the meta pages sound.
			for i := 4 * 4096; i < len(data); i++ {
				data[i] = 0xA5
			}
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
		}, ""},
		{"a record that does not decode", func(t *testing.T, path string) {
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if err := db.Update(func(tx *bolt.Tx) error {
				return tx.Bucket(bucketReleases).Put([]byte("sha256:bad/amd64"), []byte(`{"version": 4`))
			}); err != nil {
				t.Fatal(err)
			}
		}, `releases/"sha256:bad/amd64"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filled(t)
			tc.damage(t, path)
			broken, _ := os.ReadFile(path)
			h, err := Check(path, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("problems: %q", h.Problems)
			if h.OK() || !strings.Contains(strings.Join(h.Problems, "\n"), tc.want) {
				t.Fatalf("Check: %+v: want a problem naming %q", h, tc.want)
			}
			if len(h.Problems) > maxProblems+1 {
				t.Errorf("%d problems listed", len(h.Problems))
			}
			rec, err := Recover(path, now, false)
			if err != nil {
				t.Fatal(err)
			}
			if rec.MovedTo != path+".corrupt-20260304T050607Z" {
				t.Errorf("moved to %q", rec.MovedTo)
			}
			if kept, _ := os.ReadFile(rec.MovedTo); string(kept) != string(broken) {
				t.Error("the file moved aside is not the broken file")
			}
			s, err := Open(path, time.Second)
			if err != nil {
				t.Fatalf("the new state does not open: %v", err)
			}
			defer s.Close()
			if exp, err := s.Export(); err != nil || len(exp.Releases) != 0 || exp.Schema != SchemaVersion {
				t.Errorf("the new state: %+v, %v", exp, err)
			}
			// Open refuses the broken file (now aside) with the way out; a
			// damaged record is found by the pass that reads it, and by
			// Check. (A panic inside bolt.Open leaves the file mapped and
			// locked until the process ends: this is the last use of it.)
			if s, err := Open(rec.MovedTo, time.Second); err == nil {
				s.Close()
			} else if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "dtkbot state recover") {
				t.Errorf("Open: %v: want ErrCorrupt and the way out", err)
			}
			// A second recovery on the same second would overwrite the first: refused.
			s.Close()
			if err := os.WriteFile(path, []byte("garbage again"), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := Recover(path, now, false); err == nil || !strings.Contains(err.Error(), "already exists") {
				t.Errorf("a second recovery onto the same name: %v", err)
			}
		})
	}

	t.Run("newer schema", func(t *testing.T) {
		path := writeSchema(t, fmt.Sprint(SchemaVersion+1))
		h, err := Check(path, time.Second)
		if err != nil || h.OK() || !h.Newer || h.Schema != SchemaVersion+1 {
			t.Fatalf("Check: %+v, %v", h, err)
		}
		if _, err := Recover(path, now, false); !errors.Is(err, ErrNewerSchema) {
			t.Errorf("Recover without --force: %v", err)
		}
		if rec, err := Recover(path, now, true); err != nil || rec.MovedTo == "" {
			t.Errorf("Recover with force: %+v, %v", rec, err)
		}
	})

	t.Run("in use", func(t *testing.T) {
		path := filled(t)
		s, err := Open(path, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if _, err := Check(path, 100*time.Millisecond); !errors.Is(err, ErrLocked) {
			t.Errorf("Check of a file in use: %v", err)
		}
		if _, err := Recover(path, now, true); !errors.Is(err, ErrLocked) {
			t.Errorf("Recover of a file in use: %v", err)
		}
		if _, err := os.Stat(path); err != nil {
			t.Errorf("the file in use was moved: %v", err)
		}
	})
}
