package builder

import (
	"bytes"
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

// TestPodmanOutputNeverShowsTheSecrets: a build whose output echoes the
// RHSM organisation and activation key, and the push credentials (a
// subscription-manager run with `set -x`, a registry client's debug
// line), fails; neither its error (what the pass keeps and shows) nor
// dtkbot's log holds any of them, nor a URL's path or query.
func TestPodmanOutputNeverShowsTheSecrets(t *testing.T) {
	dir := t.TempDir()
	const (
		org      = "7654321"
		key      = "act-key-s3cret-QRS"
		password = "push-pa55word-XYZ"
	)
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	auth := base64.StdEncoding.EncodeToString([]byte("pusher:" + password))
	script := write("fake-podman", "#!/bin/sh\n"+
		"echo '+ subscription-manager register --org "+org+" --activationkey "+key+"'\n"+
		"echo 'registering with org '"+org+"' and key '"+key+"\n"+
		"echo 'push: using credentials "+auth+" for quay.io'\n"+
		"echo 'the password is "+password+"'\n"+
		"echo 'Curl error (6): https://cdn.redhat.com/content/dist/rhel9/repodata/repomd.xml?sig=cdnsig-s3cret [Could not resolve host]'\n"+
		"echo 'Error: building at STEP \"RUN dnf -y install kernel-devel\": exit status 1' >&2\n"+
		"exit 1\n")
	_ = os.Chmod(script, 0o755)
	var logs bytes.Buffer
	b := &CommandBuilder{Command: script, Containerfile: "Containerfile", Context: dir,
		RHSMOrgFile: write("org", org+"\n"), RHSMActivationKeyFile: write("key", key),
		AuthFile: write("auth.json", `{"auths":{"quay.io":{"auth":"`+auth+`"}}}`), Log: zerolog.New(&logs)}
	err := b.Build(context.Background(), req)
	if err == nil {
		t.Fatal("the failing build succeeded")
	}
	public, detail := Explain(context.Background(), b, err)
	for what, text := range map[string]string{"the error": err.Error(), "its detail": detail, "its public text": public, "the log": logs.String()} {
		for _, secret := range []string{org, key, password, auth, "/content/dist", "cdnsig-s3cret"} {
			if strings.Contains(text, secret) {
				t.Errorf("%s shows %q:\n%s", what, secret, text)
			}
		}
	}
	for _, keep := range []string{"https://cdn.redhat.com", "exit status 1", "Could not resolve host"} {
		if !strings.Contains(logs.String(), keep) || !strings.Contains(detail, keep) {
			t.Errorf("the log or the detail lost %q:\n%s\n%s", keep, logs.String(), detail)
		}
	}
}
