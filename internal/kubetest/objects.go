package kubetest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
	"k8s.io/client-go/rest"

	"github.com/dtkbot/dtkbot/internal/kubeapi"
	"github.com/dtkbot/dtkbot/internal/poll"
)

// CreateCRD creates a CustomResourceDefinition (YAML, as an operator's
// config/crd/bases ships it; one that exists already is kept) and waits
// until the API server serves its resources (condition Established).
func (s *Server) CreateCRD(t testing.TB, crd []byte) {
	t.Helper()
	var meta struct {
		Metadata struct{ Name string } `yaml:"metadata"`
	}
	if err := yaml.Unmarshal(crd, &meta); err != nil || meta.Metadata.Name == "" {
		t.Fatalf("kubetest: a CRD without a name (%v)", err)
	}
	const crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
	ctx, cancel := context.WithTimeout(context.Background(), kubeapi.ReadyDeadline)
	defer cancel()
	if code, body, err := s.send(ctx, http.MethodPost, crds, crd); err != nil || (code != http.StatusCreated && code != http.StatusConflict) {
		t.Fatalf("kubetest: creating the CRD %s: %d %v: %s", meta.Metadata.Name, code, err, body)
	}
	poll.Until(t, "the CRD "+meta.Metadata.Name+" established", kubeapi.ReadyDeadline, func() bool {
		_, body, err := s.send(ctx, http.MethodGet, crds+"/"+meta.Metadata.Name, nil)
		var got struct {
			Status struct {
				Conditions []struct{ Type, Status string }
			}
		}
		if err != nil || json.Unmarshal(body, &got) != nil {
			return false
		}
		for _, c := range got.Status.Conditions {
			if c.Type == "Established" && c.Status == "True" {
				return true
			}
		}
		return false
	})
}

// Create asks the API server, as the admin, to create obj (one object,
// YAML or JSON) at path (/apis/<group>/<version>/namespaces/<ns>/<plural>).
// The error is the API server's refusal, with its message (a 422 for an
// object its schema refuses), or why it could not be asked.
func (s *Server) Create(ctx context.Context, path string, obj []byte) error {
	code, body, err := s.send(ctx, http.MethodPost, path, obj)
	switch {
	case err != nil:
		return err
	case code != http.StatusCreated:
		var status struct{ Message string }
		_ = json.Unmarshal(body, &status)
		return fmt.Errorf("the API server refused it: HTTP %d: %s", code, status.Message)
	}
	return nil
}

// send sends one request as the admin, a YAML or JSON body sent as JSON.
func (s *Server) send(ctx context.Context, method, path string, obj []byte) (int, []byte, error) {
	var body io.Reader
	if obj != nil {
		var v any
		if err := yaml.Unmarshal(obj, &v); err != nil {
			return 0, nil, fmt.Errorf("reading the object: %w", err)
		}
		js, err := json.Marshal(v)
		if err != nil {
			return 0, nil, fmt.Errorf("reading the object: %w", err)
		}
		body = bytes.NewReader(js)
	}
	client, err := rest.HTTPClientFor(s.Admin)
	if err != nil {
		return 0, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, s.Admin.Host+path, body)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, out, err
}
