package view

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strings"
)

// node is one object of DuckDB's JSON syntax tree (json_serialize_sql).
// The tree is walked and rewritten as generic JSON: it is DuckDB's own
// format, read back by json_deserialize_sql, so nothing here needs to know
// more of it than the fields the view compiler uses.
type node = map[string]any

func str(n node, k string) string {
	s, _ := n[k].(string)
	return s
}

func child(n node, k string) node {
	c, _ := n[k].(map[string]any)
	return c
}

func list(n node, k string) []any {
	l, _ := n[k].([]any)
	return l
}

// location is a node's byte offset in the SQL text, or -1.
func location(n node) int {
	num, ok := n["query_location"].(json.Number)
	if !ok {
		return -1
	}
	f, err := num.Int64()
	if err != nil || f < 0 || f >= math.MaxInt32 {
		return -1
	}
	return int(f)
}

// clone deep-copies a tree.
func clone(n node) node {
	b, err := json.Marshal(n)
	if err != nil {
		panic(err) // only maps, slices and scalars from json.Unmarshal
	}
	out, err := decode(b)
	if err != nil {
		panic(err)
	}
	return out
}

// decode reads a JSON object keeping numbers exact (DuckDB writes 2^64-1
// for "no location").
func decode(b []byte) (node, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var out node
	err := d.Decode(&out)
	return out, err
}

// walk calls f on every object below (and including) v, depth first.
func walk(v any, f func(node)) {
	switch x := v.(type) {
	case map[string]any:
		f(x)
		for _, c := range x {
			walk(c, f)
		}
	case []any:
		for _, c := range x {
			walk(c, f)
		}
	}
}

// sameExpr reports whether two expressions are the same, ignoring aliases
// and locations.
func sameExpr(a, b node) bool {
	return canon(a) == canon(b)
}

func canon(n node) string {
	var strip func(v any) any
	strip = func(v any) any {
		switch x := v.(type) {
		case map[string]any:
			out := make(map[string]any, len(x))
			for k, c := range x {
				if k == "query_location" || k == "alias" {
					continue
				}
				out[k] = strip(c)
			}
			if names, ok := out["column_names"].([]any); ok && str(x, "class") == "COLUMN_REF" {
				low := make([]any, len(names))
				for i, s := range names {
					low[i] = strings.ToLower(fmt.Sprint(s))
				}
				out["column_names"] = low
			}
			return out
		case []any:
			out := make([]any, len(x))
			for i, c := range x {
				out[i] = strip(c)
			}
			return out
		}
		return v
	}
	b, _ := json.Marshal(strip(n))
	return string(b)
}

// lineCol turns a byte offset in sql into a 1-based line and column.
func lineCol(sql string, off int) (int, int) {
	if off < 0 || off > len(sql) {
		return 0, 0
	}
	line, col := 1, 1
	for _, r := range sql[:off] {
		if r == '\n' {
			line, col = line+1, 1
			continue
		}
		col++
	}
	return line, col
}
