package releaseinfo

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"

	"github.com/distribution/reference"

	"github.com/dtkbot/dtkbot/registry"
	"github.com/dtkbot/dtkbot/version"
)

// Paths inside the release image's last layer, as `oc adm release new` writes them.
const (
	imageReferencesPath = "release-manifests/image-references"
	releaseMetadataPath = "release-manifests/release-metadata"
)

// imageStream is the part of release-manifests/image-references we read.
type imageStream struct {
	Kind       string `json:"kind"`
	APIVersion string `json:"apiVersion"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		Tags []imageTag `json:"tags"`
	} `json:"spec"`
}

type imageTag struct {
	Name        string            `json:"name"`
	Annotations map[string]string `json:"annotations"`
	From        *struct {
		Kind string `json:"kind"`
		Name string `json:"name"`
	} `json:"from"`
}

// releaseMetadata is release-manifests/release-metadata.
type releaseMetadata struct {
	Kind     string   `json:"kind"`
	Version  string   `json:"version"`
	Previous []string `json:"previous"`
}

// components is image-references reduced to what we use: component name ->
// its tag, validated.
type components struct {
	version  string
	tags     map[string]imageTag
	order    []string
	warnings []string
}

// parseImageReferences checks that data is an ImageStream as oc writes it and
// that every tag we might use names a valid image.
func parseImageReferences(data []byte) (*components, error) {
	var is imageStream
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&is); err != nil {
		return nil, fmt.Errorf("parsing %s: %w", imageReferencesPath, err)
	}
	if is.Kind != "ImageStream" || !strings.HasPrefix(is.APIVersion, "image.openshift.io/") {
		return nil, fmt.Errorf("parsing %s: kind %q apiVersion %q, want an image.openshift.io ImageStream", imageReferencesPath, is.Kind, is.APIVersion)
	}
	if !version.Valid(is.Metadata.Name) {
		return nil, fmt.Errorf("parsing %s: metadata.name %q is not a release version", imageReferencesPath, is.Metadata.Name)
	}
	if len(is.Spec.Tags) == 0 {
		return nil, fmt.Errorf("parsing %s: no component tags", imageReferencesPath)
	}
	c := &components{version: is.Metadata.Name, tags: map[string]imageTag{}}
	for i, t := range is.Spec.Tags {
		if t.Name == "" {
			return nil, fmt.Errorf("parsing %s: tag %d has no name", imageReferencesPath, i)
		}
		if prev, dup := c.tags[t.Name]; dup {
			// The same entry twice says nothing new; two images under one
			// name leave no way to tell which the payload means.
			if prev.image() != t.image() {
				return nil, fmt.Errorf("parsing %s: tag %q appears twice with different images (%s and %s): ambiguous", imageReferencesPath, t.Name, prev.image(), t.image())
			}
			c.warnings = append(c.warnings, fmt.Sprintf("%s lists tag %q twice (the same image): used once", imageReferencesPath, t.Name))
			continue
		}
		c.tags[t.Name] = t
		c.order = append(c.order, t.Name)
	}
	return c, nil
}

// image is what the tag names: kind and image, for comparing entries.
func (t imageTag) image() string {
	if t.From == nil {
		return "nothing"
	}
	return t.From.Kind + " " + t.From.Name
}

// image returns the pullspec of component name, validated, or "" if the
// payload has no such component.
func (c *components) image(name string) (string, error) {
	t, ok := c.tags[name]
	if !ok {
		return "", nil
	}
	if t.From == nil || t.From.Kind != "DockerImage" || t.From.Name == "" {
		return "", registry.Content(fmt.Errorf("component %q: from is not a DockerImage", name))
	}
	if _, err := reference.ParseNormalizedNamed(t.From.Name); err != nil {
		return "", registry.Content(fmt.Errorf("component %q: image %q: %w", name, t.From.Name, err))
	}
	return t.From.Name, nil
}

// buildVersions parses the io.openshift.build.versions annotation of a
// component, a comma list of key=version.
func (c *components) buildVersions(name string) map[string]string {
	out := map[string]string{}
	for _, kv := range strings.Split(c.tags[name].Annotations["io.openshift.build.versions"], ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if ok && k != "" {
			out[k] = v
		}
	}
	return out
}

func parseReleaseMetadata(data []byte) (*releaseMetadata, error) {
	var m releaseMetadata
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("parsing %s: %w", releaseMetadataPath, err)
	}
	if m.Kind != "cincinnati-metadata-v0" {
		return nil, fmt.Errorf("parsing %s: kind %q, want cincinnati-metadata-v0", releaseMetadataPath, m.Kind)
	}
	if !version.Valid(m.Version) {
		return nil, fmt.Errorf("parsing %s: version %q is not a release version", releaseMetadataPath, m.Version)
	}
	return &m, nil
}

// RHCOS build ids: "416.94.202409040013-0" (OCP 4.16 on RHEL 9.4) up to 4.18,
// "9.6.20250530-0" (RHEL 9.6) from 4.19.
var (
	rhcosOldID = regexp.MustCompile(`^([0-9])([0-9]{1,2})\.([0-9]{1,2})([0-9]{1,2})\.[0-9]{12}-[0-9]+$`)
	rhcosNewID = regexp.MustCompile(`^([0-9]{1,2})\.([0-9]{1,2})\.[0-9]{8}-[0-9]+$`)
)

// rhelOfRHCOS returns the RHEL version an RHCOS build id names, or "" if the
// id has neither known shape. The old shape packs RHEL major and minor into
// two digits ("94" is 9.4, "86" is 8.6); RHEL 10 never used it.
func rhelOfRHCOS(id string) (string, bool) {
	if m := rhcosNewID.FindStringSubmatch(id); m != nil {
		return m[1] + "." + m[2], true
	}
	if m := rhcosOldID.FindStringSubmatch(id); m != nil {
		return m[3] + "." + m[4], true
	}
	return "", false
}
