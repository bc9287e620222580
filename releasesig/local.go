package releasesig

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/opencontainers/go-digest"
	"go.yaml.in/yaml/v3"
)

// SignatureLabel marks the ConfigMaps whose binaryData are release
// signatures: the cluster-version operator reads every ConfigMap with it in
// openshift-config-managed (openshift/library-go
// pkg/verify/store/configmap), and oc-mirror writes its ConfigMap with it
// (openshift/oc-mirror v2/internal/pkg/clusterresources).
const SignatureLabel = "release.openshift.io/verification-signatures"

// maxConfigMapFileBytes bounds one ConfigMap file read: the API server
// takes at most 1 MiB a ConfigMap, and a file holds a few of them.
const maxConfigMapFileBytes = 16 << 20

// LocalPath returns the directory a signature_store names when it is a
// local one (a path, or a file:// URL), and false for a URL of any other
// scheme.
func LocalPath(store string) (string, bool) {
	if rest, ok := strings.CutPrefix(store, "file://"); ok {
		if u, err := url.Parse(store); err == nil && u.Path != "" {
			return u.Path, true
		}
		return rest, true
	}
	if strings.Contains(store, "://") {
		return "", false
	}
	return store, true
}

// dirStore reads signatures from a local directory, in each layout a
// disconnected installation has them, all at once:
//
//   - the official store's tree, <dir>/sha256=<hex>/signature-N (a copy of
//     mirror.openshift.com's);
//   - ConfigMap files, YAML or JSON, anywhere below dir: what oc-mirror
//     writes (cluster-resources/signature-configmap.yaml and .json, one
//     ConfigMap whose binaryData keys are sha256-<hex>-<n>) and what
//     `oc adm release mirror --release-image-signature-to-dir` writes (one
//     ConfigMap a release). As the cluster-version operator, only
//     ConfigMaps labelled SignatureLabel count, and in them every
//     binaryData key that starts with sha256-<hex>;
//   - files named sha256-<hex>[-N] holding one signature each: those
//     ConfigMaps mounted as a volume (the kubelet writes each key as a
//     file, behind ..data symbolic links).
//
// The ConfigMaps and volume files are indexed, and the index is read again
// whenever one of their files changed (a ConfigMap volume is updated in
// place).
type dirStore struct {
	dir      string
	maxBytes int64

	mu       sync.Mutex
	stamp    string
	index    map[digest.Digest][][]byte
	problems []string
}

func newDirStore(dir string, maxBytes int64) (*dirStore, error) {
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil, fmt.Errorf("verify.signature_store %s: %w", dir, err)
	}
	fi, err := os.Stat(real)
	if err != nil {
		return nil, fmt.Errorf("verify.signature_store %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("verify.signature_store %s: not a directory", dir)
	}
	return &dirStore{dir: real, maxBytes: maxBytes}, nil
}

// volumeFile is a signature file as a ConfigMap volume names it.
var volumeFile = regexp.MustCompile(`^sha256-([0-9a-f]{64})(?:-([0-9]+))?$`)

// signatures returns every signature of d the directory has, tree first,
// at most MaxSignatures, and what could not be read on the way.
func (s *dirStore) signatures(d digest.Digest) ([][]byte, []string, error) {
	var out [][]byte
	var problems []string
	tree := filepath.Join(s.dir, string(d.Algorithm())+"="+d.Encoded())
	for n := 1; n <= MaxSignatures; n++ {
		b, err := readBounded(filepath.Join(tree, fmt.Sprintf("signature-%d", n)), s.maxBytes)
		if errors.Is(err, fs.ErrNotExist) {
			break
		}
		if err != nil {
			problems = append(problems, err.Error())
			break
		}
		out = append(out, b)
	}
	indexed, more, err := s.indexed(d)
	if err != nil {
		return nil, nil, err
	}
	problems = append(problems, more...)
	for _, b := range indexed {
		if len(out) >= MaxSignatures {
			break
		}
		if !containsBytes(out, b) {
			out = append(out, b)
		}
	}
	return out, problems, nil
}

func containsBytes(list [][]byte, b []byte) bool {
	for _, x := range list {
		if bytes.Equal(x, b) {
			return true
		}
	}
	return false
}

// readBounded reads a file, or as much of it as maxBytes+1 (an oversized
// signature then fails to verify, as one over the limit from a URL does).
func readBounded(path string, maxBytes int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if int64(len(b)) > maxBytes {
		return b[:0], nil
	}
	return b, nil
}

// candidate is a file the index reads.
type candidate struct {
	path   string
	volume []string // the digest and n of a volume file; nil for a ConfigMap file
}

// indexed returns the ConfigMaps' and volume files' signatures of d,
// reading the directory again if a file changed since the last time.
func (s *dirStore) indexed(d digest.Digest) ([][]byte, []string, error) {
	var files []candidate
	var stamp strings.Builder
	err := filepath.WalkDir(s.dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := e.Name()
		if path == s.dir {
			return nil
		}
		if strings.HasPrefix(name, ".") {
			// Hidden, and the kubelet's ..data and ..<timestamp>: the
			// files are read through their links at the top.
			if e.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if e.IsDir() {
			if strings.HasPrefix(name, "sha256=") {
				return filepath.SkipDir // the tree: read directly
			}
			return nil
		}
		c := candidate{path: path}
		if m := volumeFile.FindStringSubmatch(name); m != nil {
			c.volume = m[1:]
		} else if ext := strings.ToLower(filepath.Ext(name)); ext != ".yaml" && ext != ".yml" && ext != ".json" {
			return nil
		}
		fi, err := os.Stat(path) // through a symbolic link
		if err != nil || !fi.Mode().IsRegular() {
			return nil
		}
		fmt.Fprintf(&stamp, "%s\x00%d\x00%d\x00", path, fi.Size(), fi.ModTime().UnixNano())
		files = append(files, c)
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("reading the signature store %s: %w", s.dir, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.index == nil || stamp.String() != s.stamp {
		s.index, s.problems = s.read(files)
		s.stamp = stamp.String()
	}
	return s.index[d], s.problems, nil
}

// keyed is a signature under its key, for ordering.
type keyed struct {
	key string
	n   int
	sig []byte
}

// read builds the index of the files.
func (s *dirStore) read(files []candidate) (map[digest.Digest][][]byte, []string) {
	byDigest := map[digest.Digest][]keyed{}
	var problems []string
	for _, c := range files {
		rel, _ := filepath.Rel(s.dir, c.path)
		if c.volume != nil {
			b, err := readBounded(c.path, s.maxBytes)
			if err != nil {
				problems = append(problems, err.Error())
				continue
			}
			n, _ := strconv.Atoi(c.volume[1])
			d := digest.NewDigestFromEncoded(digest.SHA256, c.volume[0])
			byDigest[d] = append(byDigest[d], keyed{key: rel, n: n, sig: b})
			continue
		}
		raw, err := readBounded(c.path, maxConfigMapFileBytes)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		if len(raw) == 0 {
			problems = append(problems, fmt.Sprintf("%s: empty or over %d bytes", rel, maxConfigMapFileBytes))
			continue
		}
		sigs, notes, err := configMapSignatures(raw)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", rel, err))
			continue
		}
		for _, n := range notes {
			problems = append(problems, rel+": "+n)
		}
		for _, sg := range sigs {
			byDigest[sg.Digest] = append(byDigest[sg.Digest], keyed{key: rel + ":" + sg.Key, n: sg.N, sig: sg.Signature})
		}
	}
	index := map[digest.Digest][][]byte{}
	for d, list := range byDigest {
		sort.Slice(list, func(i, j int) bool {
			if list[i].n != list[j].n {
				return list[i].n < list[j].n
			}
			return list[i].key < list[j].key
		})
		for _, k := range list {
			if !containsBytes(index[d], k.sig) {
				index[d] = append(index[d], k.sig)
			}
		}
	}
	sort.Strings(problems)
	return index, problems
}

// configMapSignature is one signature a ConfigMap holds.
type configMapSignature struct {
	Digest digest.Digest
	// Key is the binaryData key (sha256-<hex>-<n>); N the number after
	// the digest, 0 when there is none.
	Key       string
	N         int
	Signature []byte
}

// k8sObject is as much of a Kubernetes object as the signatures need: a
// ConfigMap, or a List of them (`oc get configmap -o yaml`).
type k8sObject struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name   string            `yaml:"name"`
		Labels map[string]string `yaml:"labels"`
	} `yaml:"metadata"`
	BinaryData map[string]string `yaml:"binaryData"`
	Items      []k8sObject       `yaml:"items"`
}

// signatureKey is a binaryData key naming a digest: sha256-<hex>, then
// anything (oc-mirror writes -<n>; the cluster takes every key that starts
// with the digest).
var signatureKey = regexp.MustCompile(`^sha256-([0-9a-f]{64})(?:-([0-9]+))?`)

// configMapSignatures reads the release signatures of the ConfigMaps in a
// YAML or JSON file (several YAML documents, or a List, are several
// ConfigMaps), as the cluster-version operator reads them from the
// cluster: only ConfigMaps labelled SignatureLabel, every binaryData key
// that starts with sha256-<hex>, each value base64. Documents of other
// kinds are not signatures and are passed over; a labelled ConfigMap that
// cannot be used is a note. The error is for a file that is not YAML.
func configMapSignatures(raw []byte) ([]configMapSignature, []string, error) {
	var out []configMapSignature
	var notes []string
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	var visit func(o k8sObject)
	visit = func(o k8sObject) {
		switch o.Kind {
		case "List", "ConfigMapList":
			for _, it := range o.Items {
				visit(it)
			}
			return
		case "ConfigMap":
		default:
			return
		}
		if _, ok := o.Metadata.Labels[SignatureLabel]; !ok {
			if len(o.BinaryData) > 0 {
				notes = append(notes, fmt.Sprintf("ConfigMap %q is not labelled %s, so the cluster would not read it: not used", o.Metadata.Name, SignatureLabel))
			}
			return
		}
		keys := make([]string, 0, len(o.BinaryData))
		for k := range o.BinaryData {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			m := signatureKey.FindStringSubmatch(k)
			if m == nil {
				notes = append(notes, fmt.Sprintf("ConfigMap %q: key %q does not name a sha256 digest: not used", o.Metadata.Name, k))
				continue
			}
			sig, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(o.BinaryData[k]), ""))
			if err != nil {
				notes = append(notes, fmt.Sprintf("ConfigMap %q: key %q is not base64: %v", o.Metadata.Name, k, err))
				continue
			}
			n, _ := strconv.Atoi(m[2])
			out = append(out, configMapSignature{Digest: digest.NewDigestFromEncoded(digest.SHA256, m[1]), Key: k, N: n, Signature: sig})
		}
	}
	for {
		var o k8sObject
		err := dec.Decode(&o)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, notes, fmt.Errorf("not YAML or JSON: %w", err)
		}
		visit(o)
	}
	return out, notes, nil
}
