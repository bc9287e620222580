package daemon

import (
	"fmt"
	"net/http"
	"regexp"

	"github.com/dtkbot/dtkbot/kmm"
)

// The KMM endpoints serve manifests as YAML streams, ready for
// `curl … | oc apply -f -`:
//
//	GET /api/v1/kmm/preflights?release=4.19.0&arch=amd64&stream=rhel-9
//	GET /api/v1/kmm/kernel-mappings/{consumer}
//	GET /api/v1/kmm/modules/{consumer}
//
// Only promoted DTKs and promoted consumer images ever appear; a Module
// without one (no kernel mapping) is a 404 with the reason.

var (
	releaseParam = regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+[A-Za-z0-9.+_-]*$`)
	wordParam    = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)
)

func (d *Daemon) kmmPreflights(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	release, arch, stream := q.Get("release"), q.Get("arch"), q.Get("stream")
	for name, v := range map[string]string{"arch": arch, "stream": stream} {
		if v != "" && !wordParam.MatchString(v) {
			http.Error(w, fmt.Sprintf("%s %q is not a word", name, v), http.StatusBadRequest)
			return
		}
	}
	if release != "" && !releaseParam.MatchString(release) {
		http.Error(w, fmt.Sprintf("release %q is not a release version", release), http.StatusBadRequest)
		return
	}
	ix, err := d.coverageIndex()
	if err != nil {
		http.Error(w, "reading state: "+err.Error(), http.StatusInternalServerError)
		return
	}
	found := ix.Preflights(release, arch, stream)
	if len(found) == 0 {
		http.Error(w, "no promoted DTK for that release yet", http.StatusNotFound)
		return
	}
	objs := make([]any, len(found))
	for i, p := range found {
		objs[i] = p
	}
	serveYAML(w, objs...)
}

func (d *Daemon) kmmKernelMappings(w http.ResponseWriter, r *http.Request) {
	if _, _, mappings, ok := d.consumerMappings(w, r, false); ok {
		serveYAML(w, map[string][]kmm.KernelMapping{"kernelMappings": mappings})
	}
}

// kmmModule serves a consumer's Module, never one KMM's CRD would refuse:
// before one of its images is verified and promoted it has no kernel
// mapping, and the answer is a 404 saying so.
func (d *Daemon) kmmModule(w http.ResponseWriter, r *http.Request) {
	consumer, opts, mappings, ok := d.consumerMappings(w, r, true)
	if !ok {
		return
	}
	mod, err := kmm.NewModule(consumer, opts, mappings)
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	serveYAML(w, mod)
}

// consumerMappings is the {consumer} of the path, its Module options and
// its kernel mappings; or an error answered (a consumer unknown, or naming
// no module when needModule).
func (d *Daemon) consumerMappings(w http.ResponseWriter, r *http.Request, needModule bool) (string, kmm.ModuleOptions, []kmm.KernelMapping, bool) {
	consumer := r.PathValue("consumer")
	opts, ok := d.KMMModules[consumer]
	switch {
	case !ok:
		http.Error(w, fmt.Sprintf("no consumer %q", consumer), http.StatusNotFound)
		return "", opts, nil, false
	case needModule && opts.ModuleName == "":
		http.Error(w, fmt.Sprintf("consumer %q names no module (consumers[].kmm.module_name): see /api/v1/kmm/kernel-mappings/%s", consumer, consumer), http.StatusNotFound)
		return "", opts, nil, false
	}
	ix, err := d.coverageIndex()
	if err != nil {
		http.Error(w, "reading state: "+err.Error(), http.StatusInternalServerError)
		return "", opts, nil, false
	}
	return consumer, opts, ix.KernelMappings(consumer), true
}

func serveYAML(w http.ResponseWriter, objs ...any) {
	body, err := kmm.YAML(objs...)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/yaml")
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write(body)
}
