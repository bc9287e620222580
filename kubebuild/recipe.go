package kubebuild

import (
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

//go:embed build.sh
var buildScript string

// ConfigMap keys of the script and the Containerfile; context files are
// under "context/" in the volume.
const (
	scriptKey        = "build.sh"
	containerfileKey = "Containerfile"
)

// recipeMax bounds the recipe: a ConfigMap holds at most 1 MiB
// (k8s.io/apimachinery validation's MaxSecretSize, also applied to
// ConfigMaps), less room for its metadata.
const recipeMax = 1000 << 10

// recipe is a Containerfile and its build context, as ConfigMap data.
type recipe struct {
	files map[string][]byte // volume path -> content
}

// readRecipe reads the Containerfile and every regular file under the
// context directory.
func readRecipe(containerfile, context string) (*recipe, error) {
	if containerfile == "" || context == "" {
		return nil, fmt.Errorf("no Containerfile or context directory configured")
	}
	r := &recipe{files: map[string][]byte{scriptKey: []byte(buildScript)}}
	cf, err := os.ReadFile(containerfile)
	if err != nil {
		return nil, fmt.Errorf("reading the Containerfile: %w", err)
	}
	r.files[containerfileKey] = cf
	total := len(cf) + len(buildScript)
	err = filepath.WalkDir(context, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil // directories are implied by the files' paths; links and devices are not recipes
		}
		rel, err := filepath.Rel(context, path)
		if err != nil {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		total += len(data)
		if total > recipeMax {
			return fmt.Errorf("the context %s holds more than %d KiB: a ConfigMap holds at most 1 MiB (keep large inputs in an image the Containerfile copies FROM)", context, recipeMax>>10)
		}
		r.files["context/"+filepath.ToSlash(rel)] = data
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading the context directory: %w", err)
	}
	return r, nil
}

// keyOf is the ConfigMap key of a volume path: keys allow only
// [-._a-zA-Z0-9], so "/" becomes "_" and every other character its code.
func keyOf(path string) string {
	var out strings.Builder
	for _, c := range []byte(path) {
		switch {
		case c == '/':
			out.WriteString("_")
		case c == '_':
			out.WriteString("__")
		case c == '-' || c == '.' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'):
			out.WriteByte(c)
		default:
			fmt.Fprintf(&out, "_x%02x", c)
		}
	}
	return out.String()
}

func (r *recipe) paths() []string {
	var out []string
	for p := range r.files {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// items map each key back to its path in the volume.
func (r *recipe) items() []corev1.KeyToPath {
	var out []corev1.KeyToPath
	for _, p := range r.paths() {
		out = append(out, corev1.KeyToPath{Key: keyOf(p), Path: p})
	}
	return out
}

// hash is the hex SHA-256 of the recipe's every path and content.
func (r *recipe) hash() string {
	parts := []string{"recipe"}
	for _, p := range r.paths() {
		parts = append(parts, p, string(r.files[p]))
	}
	return hashOf(parts...)
}

// configMap is the recipe's ConfigMap, named after its content: a Job's
// recipe never changes under it, and a changed recipe is a new ConfigMap.
func (r *recipe) configMap(ns, kind string) *corev1.ConfigMap {
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Labels: map[string]string{LabelManagedBy: "dtkbot", LabelComponent: "recipe", LabelKind: kind}},
		Data:       map[string]string{},
	}
	for _, p := range r.paths() {
		data := r.files[p]
		if utf8.Valid(data) {
			cm.Data[keyOf(p)] = string(data)
		} else {
			if cm.BinaryData == nil {
				cm.BinaryData = map[string][]byte{}
			}
			cm.BinaryData[keyOf(p)] = data
		}
	}
	cm.Name = "dtkbot-recipe-" + dnsLabel(kind) + "-" + r.hash()[:10]
	return cm
}

// hashOf is the hex SHA-256 of parts, each length-prefixed so that no two
// lists hash alike.
func hashOf(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:%s", len(p), p)
	}
	return hex.EncodeToString(h.Sum(nil))
}
