package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Bytes is a size in bytes, written as 16MiB, 8GiB, 1000000 or 64KB.
type Bytes int64

// ParseBytes parses a size with an optional unit (KiB, MiB, GiB, KB, MB, GB).
func ParseBytes(s string) (Bytes, error) {
	s = strings.TrimSpace(s)
	units := []struct {
		suffix string
		mul    int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1}}
	mul := int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, mul = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mul
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("want a size like 16MiB or 1000000")
	}
	return Bytes(n * mul), nil
}

func (b Bytes) String() string {
	for _, u := range []struct {
		s string
		m int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if int64(b) >= u.m && int64(b)%u.m == 0 {
			return fmt.Sprintf("%d%s", int64(b)/u.m, u.s)
		}
	}
	return strconv.FormatInt(int64(b), 10)
}

// Default returns a Config with every default applied.
func Default() *Config {
	c := &Config{}
	if err := applyDefaults(reflect.ValueOf(c).Elem()); err != nil {
		panic(err) // a bad default tag is a programming error
	}
	return c
}

// Load reads a YAML config file.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	c, err := Parse(data, os.LookupEnv)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// Parse decodes YAML config text over the defaults. lookup resolves ${ENV}.
func Parse(data []byte, lookup func(string) (string, bool)) (*Config, error) {
	c := Default()
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, errEOF) || err.Error() == "EOF" {
			return c, nil
		}
		return nil, fmt.Errorf("not valid YAML: %w", err)
	}
	if len(doc.Content) == 0 {
		return c, nil
	}
	if err := decodeNode(doc.Content[0], reflect.ValueOf(c).Elem(), "", lookup); err != nil {
		return nil, err
	}
	return c, nil
}

var errEOF = errors.New("EOF")

var envRE = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}`)

func expand(n *yaml.Node, lookup func(string) (string, bool)) (string, error) {
	var missing string
	out := envRE.ReplaceAllStringFunc(n.Value, func(m string) string {
		sub := envRE.FindStringSubmatch(m)
		if v, ok := lookup(sub[1]); ok && v != "" {
			return v
		}
		if sub[2] != "" {
			return sub[3]
		}
		if missing == "" {
			missing = sub[1]
		}
		return ""
	})
	if missing != "" {
		return "", fmt.Errorf("line %d: environment variable %s is not set (set it, or write ${%s:-default})", n.Line, missing, missing)
	}
	return out, nil
}

var (
	durationType = reflect.TypeOf(time.Duration(0))
	bytesType    = reflect.TypeOf(Bytes(0))
)

// decodeNode decodes n into v, by the yaml tags of v's type, so that every
// error can say the line, the key path and what is allowed.
func decodeNode(n *yaml.Node, v reflect.Value, path string, lookup func(string) (string, bool)) error {
	where := func() string {
		if path == "" {
			return "the top level"
		}
		return path
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil // keep the default
	}
	t := v.Type()
	switch {
	case t == reflect.TypeOf(TableSpec{}) && n.Kind == yaml.ScalarNode:
		s, err := expand(n, lookup)
		if err != nil {
			return err
		}
		v.Set(reflect.ValueOf(TableSpec{Name: s}))
		return nil
	case t == reflect.TypeOf(Target{}) && n.Kind == yaml.ScalarNode:
		s, err := expand(n, lookup)
		if err != nil {
			return err
		}
		v.Field(0).SetString(s)
		return nil
	}
	switch t.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(t.Elem()))
			if err := applyDefaults(v.Elem()); err != nil {
				return err
			}
		}
		return decodeNode(n, v.Elem(), path, lookup)
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return fmt.Errorf("line %d: %s must be a mapping of keys (%s)", n.Line, where(), strings.Join(keysOf(t), ", "))
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			f, ok := fieldByKey(t, k.Value)
			if !ok {
				return fmt.Errorf("line %d: unknown key %q in %s (known keys: %s)", k.Line, k.Value, where(), strings.Join(keysOf(t), ", "))
			}
			if err := decodeNode(val, v.FieldByIndex(f.Index), join(path, k.Value), lookup); err != nil {
				return err
			}
		}
		return nil
	case reflect.Slice:
		if n.Kind == yaml.ScalarNode && t.Elem().Kind() == reflect.String {
			s, err := expand(n, lookup)
			if err != nil {
				return err
			}
			parts := strings.Split(s, ",")
			out := reflect.MakeSlice(t, 0, len(parts))
			for _, p := range parts {
				out = reflect.Append(out, reflect.ValueOf(strings.TrimSpace(p)))
			}
			v.Set(out)
			return nil
		}
		if n.Kind != yaml.SequenceNode {
			return fmt.Errorf("line %d: %s must be a list", n.Line, where())
		}
		out := reflect.MakeSlice(t, len(n.Content), len(n.Content))
		for i, e := range n.Content {
			if err := applyDefaults(out.Index(i)); err != nil {
				return err
			}
			if err := decodeNode(e, out.Index(i), fmt.Sprintf("%s[%d]", where(), i), lookup); err != nil {
				return err
			}
		}
		v.Set(out)
		return nil
	}
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: %s must be a single value, not a list or mapping", n.Line, where())
	}
	s, err := expand(n, lookup)
	if err != nil {
		return err
	}
	if err := setScalar(v, s); err != nil {
		return fmt.Errorf("line %d: %s: %q: %v", n.Line, where(), s, err)
	}
	return nil
}

func setScalar(v reflect.Value, s string) error {
	switch v.Type() {
	case durationType:
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("want a duration like 200ms, 10s or 5m")
		}
		v.SetInt(int64(d))
		return nil
	case bytesType:
		b, err := ParseBytes(s)
		if err != nil {
			return err
		}
		v.SetInt(int64(b))
		return nil
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Int, reflect.Int64:
		n, err := strconv.ParseInt(strings.ReplaceAll(s, "_", ""), 10, 64)
		if err != nil {
			return fmt.Errorf("want a whole number")
		}
		v.SetInt(n)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("want true or false")
		}
		v.SetBool(b)
	default:
		return fmt.Errorf("unsupported option type %s", v.Type())
	}
	return nil
}

func applyDefaults(v reflect.Value) error {
	if v.Kind() != reflect.Struct {
		return nil
	}
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		fv := v.Field(i)
		if d, ok := f.Tag.Lookup("default"); ok {
			if err := setScalar(fv, d); err != nil {
				return fmt.Errorf("default of %s: %w", f.Name, err)
			}
		}
		if f.Type.Kind() == reflect.Struct {
			if err := applyDefaults(fv); err != nil {
				return err
			}
		}
	}
	return nil
}

func fieldByKey(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if strings.Split(f.Tag.Get("yaml"), ",")[0] == key {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func keysOf(t reflect.Type) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		if k := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]; k != "" {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// Reference renders the configuration reference in Markdown from the
// declarations above, so the docs cannot drift from the code.
func Reference() string {
	var b strings.Builder
	b.WriteString("| key | default | meaning |\n|---|---|---|\n")
	var walk func(t reflect.Type, path string)
	walk = func(t reflect.Type, path string) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			key := strings.Split(f.Tag.Get("yaml"), ",")[0]
			if key == "" {
				continue
			}
			p := join(path, key)
			def := f.Tag.Get("default")
			if def != "" {
				def = "`" + def + "`"
			}
			fmt.Fprintf(&b, "| `%s` | %s | %s |\n", p, def, strings.ReplaceAll(f.Tag.Get("doc"), "|", "\\|"))
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Slice {
				ft = ft.Elem()
				p += "[]"
			}
			if ft.Kind() == reflect.Struct {
				walk(ft, p)
			}
		}
	}
	walk(reflect.TypeOf(Config{}), "")
	return b.String()
}
