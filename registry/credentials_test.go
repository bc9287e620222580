package registry

import (
	"context"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dtkbot/dtkbot/internal/payloadtest"
	"github.com/dtkbot/dtkbot/internal/registrytest"
)

// authJSON is a containers auth.json with one registry's credentials.
func authJSON(host, user, pass string) string {
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
	return fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, host, auth)
}

// TestBrokenAuthFileIsAnErrorNamingIt: an auth file that cannot be read is
// an error that names it, before any credential is sent (not an anonymous
// 401), is not retried, never shows the secret, and is noticed fixed by the
// same client.
func TestBrokenAuthFileIsAnErrorNamingIt(t *testing.T) {
	for _, tc := range []struct {
		name   string
		write  func(t *testing.T, path, host string) // makes path broken
		viaEnv bool                                  // $REGISTRY_AUTH_FILE instead of Options.AuthFile
		want   string
	}{
		{name: "not JSON", want: "unmarshaling JSON", write: func(t *testing.T, path, host string) {
			writeFile(t, path, `{"auths":{"`+host+`":{"auth":"s3cret`)
		}},
		{name: "auth field not base64", want: "illegal base64", write: func(t *testing.T, path, host string) {
			writeFile(t, path, fmt.Sprintf(`{"auths":{%q:{"auth":"robot:s3cret"}}}`, host))
		}},
		{name: "unreadable", want: "is a directory", write: func(t *testing.T, path, host string) {
			// A directory: unreadable even for root, who ignores file modes.
			if err := os.Mkdir(path, 0o700); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "missing", want: "no such file", write: func(t *testing.T, path, host string) {}},
		{name: "not base64, named by REGISTRY_AUTH_FILE", viaEnv: true, want: "illegal base64", write: func(t *testing.T, path, host string) {
			writeFile(t, path, fmt.Sprintf(`{"auths":{%q:{"auth":"robot:s3cret"}}}`, host))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.srv.RequireBearerAuth("robot", "s3cret")
			path := filepath.Join(t.TempDir(), "auth.json")
			tc.write(t, path, f.srv.Host())
			opts := Options{AuthFile: path}
			if tc.viaEnv {
				t.Setenv("REGISTRY_AUTH_FILE", path)
				opts.AuthFile = ""
			}
			c := testClient(opts)
			before := f.srv.Stats()
			err := f.readLayer(t, c)
			var afe *AuthFileError
			if !errors.As(err, &afe) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tc.want) ||
				!strings.Contains(err.Error(), "reading the registry credentials for "+f.srv.Host()+"/acme/image") {
				t.Fatalf("error %v", err)
			}
			if strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "HTTP 401") || strings.Contains(err.Error(), "unauthorized") {
				t.Errorf("error shows the secret or a 401: %v", err)
			}
			if d := f.srv.Stats().Sub(before); d.Tokens != 0 || d.Requests != 0 {
				t.Errorf("%d token requests and %d requests with a broken auth file, want none", d.Tokens, d.Requests)
			}
			if n := c.Counters().Retries; n != 0 {
				t.Errorf("a broken auth file was retried %d times", n)
			}
			// Fixed, the same client reads it again.
			replaceFile(t, path, authJSON(f.srv.Host(), "robot", "s3cret"))
			if err := f.readLayer(t, c); err != nil {
				t.Fatalf("after fixing the auth file: %v", err)
			}
		})
	}
}

// TestRotatedPullSecretIsFollowed: the registry takes only new credentials
// and the auth file holds them; the same client reads on, for as many extra
// round trips as these counts say. A rewrite a stat sees costs the new token
// (bearer) or nothing (basic); one it cannot see (same inode, size, mode and
// modification time) costs the refused request, then the same.
func TestRotatedPullSecretIsFollowed(t *testing.T) {
	for _, tc := range []struct {
		name   string
		bearer bool
		hidden bool // the rewrite keeps the file's stat
		// The cost of the read after the rotation (a warm read is 2
		// requests: the manifest and the blob).
		requests, tokens, refused int64
		// Reads of the auth file over the test (one before the rotation)
		// and changes noticed.
		reads, changes int64
	}{
		{name: "bearer, file rewritten", bearer: true, requests: 2, tokens: 1, reads: 2, changes: 1},
		{name: "bearer, rewrite a stat cannot see", bearer: true, hidden: true, requests: 3, tokens: 1, refused: 1, reads: 2},
		{name: "basic, file rewritten", requests: 2, reads: 2, changes: 1},
		{name: "basic, rewrite a stat cannot see", hidden: true, requests: 3, refused: 1, reads: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			require := f.srv.RequireBasicAuth
			if tc.bearer {
				require = f.srv.RequireBearerAuth
			}
			require("robot", "old-s3cret")
			path := filepath.Join(t.TempDir(), "auth.json")
			writeFile(t, path, authJSON(f.srv.Host(), "robot", "old-s3cret"))
			c := testClient(Options{AuthFile: path})
			for range 3 {
				if err := f.readLayer(t, c); err != nil {
					t.Fatal(err)
				}
			}
			if n := c.Counters().CredentialReads; n != 1 {
				t.Fatalf("%d reads of the auth file for three reads of one repository, want 1", n)
			}
			old, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}

			require("robot", "new-s3cret") // old tokens revoked too
			if !tc.hidden {
				replaceFile(t, path, authJSON(f.srv.Host(), "robot", "new-s3cret"))
			} else {
				// Same length, written in place, the time put back.
				writeFile(t, path, authJSON(f.srv.Host(), "robot", "new-s3cret"))
				if err := os.Chtimes(path, old.ModTime(), old.ModTime()); err != nil {
					t.Fatal(err)
				}
				now, err := os.Stat(path)
				if err != nil || !os.SameFile(old, now) || now.Size() != old.Size() || !now.ModTime().Equal(old.ModTime()) {
					t.Fatalf("the rewrite shows in the file's stat (%v)", err)
				}
			}
			before := f.srv.Stats()
			if err := f.readLayer(t, c); err != nil {
				t.Fatalf("after the rotation: %v", err)
			}
			d := f.srv.Stats().Sub(before)
			if d.Pings != 0 || d.Requests != tc.requests || d.Tokens != tc.tokens || d.Refused != tc.refused {
				t.Errorf("the read after the rotation: %d pings, %d requests, %d tokens, %d refused; want 0, %d, %d, %d",
					d.Pings, d.Requests, d.Tokens, d.Refused, tc.requests, tc.tokens, tc.refused)
			}
			n := c.Counters()
			if n.CredentialReads != tc.reads || n.AuthFileChanges != tc.changes {
				t.Errorf("%d reads of the auth file, %d changes noticed; want %d and %d", n.CredentialReads, n.AuthFileChanges, tc.reads, tc.changes)
			}
			// And it stays warm: the next read costs what a warm read costs.
			before = f.srv.Stats()
			if err := f.readLayer(t, c); err != nil {
				t.Fatal(err)
			}
			if d := f.srv.Stats().Sub(before); d.Requests != 2 || d.Tokens+d.Pings+d.Refused != 0 {
				t.Errorf("the read after that: %+v", d)
			}
		})
	}
}

// TestRotationUnseenByStatForANewScope: after a rotation a stat cannot see,
// a scope never asked for before (a tag removal) gets its token with the
// credentials read again once the realm refused the cached ones.
func TestRotationUnseenByStatForANewScope(t *testing.T) {
	f := newFixture(t)
	f.srv.RequireBearerAuth("robot", "old-s3cret")
	path := filepath.Join(t.TempDir(), "auth.json")
	writeFile(t, path, authJSON(f.srv.Host(), "robot", "old-s3cret"))
	c := testClient(Options{AuthFile: path})
	if err := f.readLayer(t, c); err != nil {
		t.Fatal(err)
	}
	old, _ := os.Stat(path)
	f.srv.RequireBearerAuth("robot", "new-s3cret")
	writeFile(t, path, authJSON(f.srv.Host(), "robot", "new-s3cret"))
	if err := os.Chtimes(path, old.ModTime(), old.ModTime()); err != nil {
		t.Fatal(err)
	}
	body, mt, _ := f.srv.Manifest("acme/image", "v1")
	f.srv.PutManifest("acme/image", "staging-v1", mt, body)
	before := f.srv.Stats()
	if err := c.Untag(context.Background(), f.srv.Host()+"/acme/image:staging-v1"); err != nil {
		t.Fatal(err)
	}
	// The DELETE's scope: a token refused with the cached credentials, one
	// granted with the fresh ones, the DELETE. The HEAD that confirms the
	// tag is gone: a new pull token (the cached one came from the old
	// credentials), the HEAD.
	if d := f.srv.Stats().Sub(before); d.Tokens != 3 || d.Requests != 2 || d.Refused != 1 || d.TagDeletes != 1 {
		t.Errorf("untag after the rotation: %d tokens, %d requests, %d refused, %d tags deleted; want 3, 2, 1, 1", d.Tokens, d.Requests, d.Refused, d.TagDeletes)
	}
}

// TestPlainHTTPRealmOnlyForInsecureRegistries: a registry reached over
// verified TLS that names a plain-http token realm is refused before any
// credential is sent; marked insecure (registries.conf, tls_verify false),
// it is used.
func TestPlainHTTPRealmOnlyForInsecureRegistries(t *testing.T) {
	reg := registrytest.New()
	srv := reg.ServerTLS()
	t.Cleanup(srv.Close)
	tokens := httptest.NewServer(reg) // the same registry's token endpoint, over plain http
	t.Cleanup(tokens.Close)
	reg.RequireBearerAuth("robot", "s3cret")
	reg.SetRealm(tokens.URL + "/token")
	f := &fixture{srv: srv, image: payloadtest.New(reg, srv.Host()).PushImage("acme/image", "v1", payloadtest.Image{Layers: [][]byte{payloadtest.NoiseLayer("a", 4096)}})}
	certs := t.TempDir()
	writeFile(t, filepath.Join(certs, "ca.crt"), string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.HTTP.Certificate().Raw})))
	auth := filepath.Join(t.TempDir(), "auth.json")
	writeFile(t, auth, authJSON(srv.Host(), "robot", "s3cret"))
	insecureConf := filepath.Join(t.TempDir(), "registries.conf")
	writeFile(t, insecureConf, fmt.Sprintf("[[registry]]\nlocation = %q\ninsecure = true\n", srv.Host()))
	verify, noVerify := true, false

	for _, tc := range []struct {
		name      string
		opts      Options
		refused   bool
		wantError string
	}{
		{name: "verified TLS", opts: Options{TLSVerify: &verify, RegistriesConf: "/dev/null"}, refused: true},
		{name: "insecure in registries.conf", opts: Options{TLSVerify: &verify, RegistriesConf: insecureConf}},
		{name: "tls_verify false", opts: Options{TLSVerify: &noVerify, RegistriesConf: "/dev/null"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.AuthFile, tc.opts.Backoff = auth, 10*time.Millisecond
			c := New(tc.opts)
			c.sys.DockerCertPath = certs // trust the test server's certificate
			before := srv.Stats()
			err := f.readLayer(t, c)
			d := srv.Stats().Sub(before)
			if !tc.refused {
				if err != nil || d.Tokens != 1 {
					t.Fatalf("%v (%d tokens)", err, d.Tokens)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), srv.Host()) || !strings.Contains(err.Error(), reg.Realm()) ||
				!strings.Contains(err.Error(), "plain-http token realm") {
				t.Fatalf("error %v", err)
			}
			if d.Pings != 1 || d.Tokens != 0 || d.Requests != 0 || c.Counters().Retries != 0 {
				t.Errorf("%d pings, %d token requests, %d requests, %d retries; want 1, 0, 0, 0", d.Pings, d.Tokens, d.Requests, c.Counters().Retries)
			}
		})
	}
}

// replaceFile replaces path with a new file, as the kubelet updates a
// mounted Secret (a new file swapped in): a new inode, whatever the clock.
func replaceFile(t *testing.T, path, content string) {
	t.Helper()
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, path+".new", content)
	if err := os.Rename(path+".new", path); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
