package config

import (
	"fmt"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// docRow is one row of docs/configuration.md's table.
type docRow struct {
	key, def string
	line     int
}

var rowPattern = regexp.MustCompile("^\\| `([^`]+)` \\| (.*?) \\| .* \\|$")

func docRows(t *testing.T) []docRow {
	t.Helper()
	data, err := os.ReadFile("../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	var rows []docRow
	for i, line := range strings.Split(string(data), "\n") {
		if m := rowPattern.FindStringSubmatch(line); m != nil {
			rows = append(rows, docRow{key: m[1], def: m[2], line: i + 1})
		}
	}
	if len(rows) < 50 {
		t.Fatalf("docs/configuration.md: only %d rows read: has the table's shape changed?", len(rows))
	}
	return rows
}

// configKeys are the keys of Config as YAML writes them, each with its
// value in cfg: "target.staging.tag", "consumers[].name" (the first
// consumer's).
func configKeys(v reflect.Value, prefix string, out map[string]reflect.Value) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			if opts == "inline" {
				configKeys(v.Field(i), prefix, out)
			}
			continue
		}
		fv, key := v.Field(i), prefix+name
		if fv.Kind() == reflect.Pointer && fv.Type().Elem().Kind() == reflect.Struct {
			if fv.IsNil() {
				fv = reflect.New(fv.Type().Elem())
			}
			fv = fv.Elem()
		}
		switch {
		case fv.Kind() == reflect.Struct && fv.Type() != reflect.TypeOf(Duration{}):
			configKeys(fv, key+".", out)
		case fv.Kind() == reflect.Slice && fv.Type().Elem().Kind() == reflect.Struct:
			item := reflect.New(fv.Type().Elem()).Elem()
			if fv.Len() > 0 {
				item = fv.Index(0)
			}
			configKeys(item, key+"[].", out)
		default:
			out[key] = fv
		}
	}
}

// render writes a value of the config as the table does.
func render(v reflect.Value) string {
	switch x := v.Interface().(type) {
	case Duration:
		return x.String()
	case []string:
		return "[" + strings.Join(x, ", ") + "]"
	case map[string]string:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		var kv []string
		for _, k := range keys {
			kv = append(kv, k+": "+x[k])
		}
		return "{" + strings.Join(kv, ", ") + "}"
	case *bool:
		if x == nil {
			return ""
		}
		return fmt.Sprint(*x)
	}
	return fmt.Sprint(v.Interface())
}

// TestDocumentedDefaultsAreTheCodes: every key of Config has a row in
// docs/configuration.md, every row names a key, and every default the
// table states is the one Default() (and, for consumers, what a consumer
// that sets nothing gets) has.
func TestDocumentedDefaultsAreTheCodes(t *testing.T) {
	cfg, err := Parse([]byte("consumers: [{}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]reflect.Value{}
	configKeys(reflect.ValueOf(*cfg), "", keys)
	rows := docRows(t)
	documented := map[string]bool{}
	var wildcards []string
	for _, r := range rows {
		if prefix, ok := strings.CutSuffix(r.key, "*"); ok {
			wildcards = append(wildcards, prefix)
			continue
		}
		documented[r.key] = true
		v, ok := keys[r.key]
		if !ok {
			t.Errorf("docs/configuration.md:%d: `%s` is no key of config.yaml", r.line, r.key)
			continue
		}
		code := render(v)
		switch def := r.def; {
		case def == "none":
			if !v.IsZero() && code != "[]" && code != "{}" {
				t.Errorf("docs/configuration.md:%d: `%s` says none, the code's default is %q", r.line, r.key, code)
			}
		case strings.HasPrefix(def, "*") && strings.HasSuffix(def, "*"):
			// What dtkbot does with the key left empty: then it is empty.
			if !v.IsZero() && code != "[]" && code != "{}" {
				t.Errorf("docs/configuration.md:%d: `%s` says %s (left empty), the code's default is %q", r.line, r.key, def, code)
			}
		case strings.HasPrefix(def, "`") && strings.HasSuffix(def, "`"):
			want := strings.Trim(def, "`")
			if d, ok := v.Interface().(Duration); ok {
				parsed, err := time.ParseDuration(want)
				if err != nil || parsed != d.Duration {
					t.Errorf("docs/configuration.md:%d: `%s` defaults to %s, the docs say %s", r.line, r.key, d, want)
				}
				continue
			}
			if code != want {
				t.Errorf("docs/configuration.md:%d: `%s` defaults to %q, the docs say %q", r.line, r.key, code, want)
			}
		default:
			t.Errorf("docs/configuration.md:%d: `%s`: a default is `code`, none or *what happens when empty*, not %q", r.line, r.key, def)
		}
	}
	var missing []string
	for key := range keys {
		if !documented[key] && !slices.ContainsFunc(wildcards, func(p string) bool { return strings.HasPrefix(key, p) }) {
			missing = append(missing, key)
		}
	}
	slices.Sort(missing)
	if len(missing) > 0 {
		t.Errorf("docs/configuration.md lacks %d keys: %s", len(missing), strings.Join(missing, ", "))
	}
}
