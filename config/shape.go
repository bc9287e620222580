package config

import (
	"fmt"
	"reflect"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// shapeProblems walks a config document against Config's type and returns
// what the strict decoder would refuse, each with its key path and line,
// and all of them (the decoder's own messages name Go types, and its first
// unknown key used to hide every other problem): unknown keys, with the
// known key they are closest to ("did you mean schedule?"), and values of
// the wrong type ("want a whole number, got \"three\"").
func shapeProblems(root *yaml.Node) []error {
	if root == nil || len(root.Content) == 0 {
		return nil
	}
	var out []error
	walkShape(root.Content[0], reflect.TypeOf(Config{}), "", &out)
	return out
}

var durationType = reflect.TypeOf(Duration{})

func walkShape(n *yaml.Node, t reflect.Type, path string, out *[]error) {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // the key left empty: its default
	}
	bad := func(format string, args ...any) {
		*out = append(*out, fmt.Errorf("line %d: %s: %s", n.Line, path, fmt.Sprintf(format, args...)))
	}
	if t == durationType {
		if err := n.Decode(new(Duration)); err != nil {
			bad("%s is not a duration (30s, 2m, 1h)", shown(n))
		}
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			bad("want keys under it (a mapping), got %s", shown(n))
			return
		}
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			key := join(path, k.Value)
			ft, ok := fields[k.Value]
			if !ok {
				*out = append(*out, fmt.Errorf("line %d: %s: unknown key%s", k.Line, key, suggestion(k.Value, fields)))
				continue
			}
			walkShape(v, ft, key, out)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			bad("want a list, got %s", shown(n))
			return
		}
		for i, item := range n.Content {
			walkShape(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i), out)
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			bad("want keys under it (a mapping), got %s", shown(n))
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			walkShape(n.Content[i+1], t.Elem(), join(path, n.Content[i].Value), out)
		}
	default:
		if n.Kind != yaml.ScalarNode {
			bad("want %s, got %s", kindOf(t), shown(n))
			return
		}
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			bad("want %s, got %s", kindOf(t), shown(n))
		}
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// yamlFields are a struct's keys and their types (inline structs'
// included; `yaml:"-"` fields are no keys).
func yamlFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		switch {
		case name == "-":
		case opts == "inline":
			for k, v := range yamlFields(f.Type) {
				out[k] = v
			}
		case name == "":
			out[strings.ToLower(f.Name)] = f.Type
		default:
			out[name] = f.Type
		}
	}
	return out
}

// kindOf says what a value of type t is written as.
func kindOf(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	}
	return "a " + t.Kind().String()
}

// shown is a node as a problem quotes it.
func shown(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "keys under it (a mapping)"
	case yaml.SequenceNode:
		return "a list"
	}
	v := n.Value
	if len(v) > 60 {
		v = v[:57] + "..."
	}
	return fmt.Sprintf("%q", v)
}

// suggestion is " (did you mean X?)" for the known key closest to an
// unknown one, when one is close; else the keys there are, when few.
func suggestion(key string, fields map[string]reflect.Type) string {
	names := make([]string, 0, len(fields))
	for k := range fields {
		names = append(names, k)
	}
	sort.Strings(names)
	best, bestDist := "", len(key)+1
	for _, name := range names {
		if d := editDistance(strings.ToLower(key), name); d < bestDist {
			best, bestDist = name, d
		}
	}
	limit := max(2, len(key)/3)
	if best != "" && (bestDist <= limit || strings.HasPrefix(best, key) || strings.HasPrefix(key, best)) {
		return fmt.Sprintf(" (did you mean %s?)", best)
	}
	if len(names) <= 8 {
		return fmt.Sprintf(" (the keys here: %s)", strings.Join(names, ", "))
	}
	return ""
}

// editDistance is the Levenshtein distance of a and b (a swap of two
// neighbours counts one, as a typo does).
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev2 := make([]int, len(rb)+1)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(rb)]
}
