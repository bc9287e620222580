package releasesig

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"testing"

	"go.podman.io/image/v5/signature"
)

// TestExamplePolicyRequiresRedHatsSigstoreKey: the example policy.json in
// deploy/examples/verify parses as containers/image reads it and carries
// the ClusterImagePolicy key dtkbot ships.
func TestExamplePolicyRequiresRedHatsSigstoreKey(t *testing.T) {
	if _, err := signature.NewPolicyFromFile("../deploy/examples/verify/policy.json"); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile("../deploy/examples/verify/policy.json")
	var p struct {
		Transports map[string]map[string][]struct {
			Type    string `json:"type"`
			KeyData string `json:"keyData"`
		} `json:"transports"`
	}
	if err := json.Unmarshal(raw, &p); err != nil {
		t.Fatal(err)
	}
	reqs := p.Transports["docker"]["quay.io/openshift-release-dev/ocp-release"]
	key, _ := os.ReadFile("keys/redhat-sigstore-release-key.pub")
	if len(reqs) != 1 || reqs[0].Type != "sigstoreSigned" || reqs[0].KeyData != base64.StdEncoding.EncodeToString(key) {
		t.Errorf("requirements %+v", reqs)
	}
}
