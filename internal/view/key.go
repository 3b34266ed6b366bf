package view

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/sluice-dev/sluice/internal/change"
)

// deriveKey sets the view's output key and evaluation mode.
//
// Declared keys are taken as given (checked for uniqueness at runtime).
// Otherwise: an aggregating view's key is its GROUP BY columns; a DISTINCT
// view's key is all its columns; any other view's key is the keys of its
// "root" tables: the first table of FROM and every joined table that is not
// joined to-one (its whole key equated, in the ON condition, to expressions
// of the tables before it). Each key column must be an output column.
func (c *compiler) deriveKey(v *compiled) error {
	sl := list(v.sel, "select_list")
	spec := v.spec
	byName := func(name string) int {
		for i, col := range v.cols {
			if col.name == name {
				return i
			}
		}
		for i, col := range v.cols {
			if strings.EqualFold(col.name, name) {
				return i
			}
		}
		return -1
	}
	outNames := func() string {
		var n []string
		for _, col := range v.cols {
			n = append(n, col.name)
		}
		return strings.Join(n, ", ")
	}
	groups := list(v.sel, "group_expressions")
	switch {
	case len(spec.Key) > 0:
		seen := map[int]bool{}
		for _, k := range spec.Key {
			i := byName(k)
			if i < 0 {
				return c.fail(spec, -1, "declared key column %q is not an output column (output columns: %s)", k, outNames())
			}
			if seen[i] {
				return c.fail(spec, -1, "declared key column %q is listed twice", k)
			}
			seen[i] = true
			v.key = append(v.key, i)
		}
	case v.aggr:
		if len(groups) == 0 {
			return c.fail(spec, location(v.sel), "cannot derive the output key: an aggregate without GROUP BY has no key (add GROUP BY, or declare key)")
		}
		for _, g := range groups {
			i := v.groupCol(g.(map[string]any))
			if i < 0 {
				return c.fail(spec, location(g.(map[string]any)), "cannot derive the output key: GROUP BY expression %s is not an output column (add it to the SELECT list)", exprText(g.(map[string]any)))
			}
			v.key = append(v.key, i)
		}
	case v.dist:
		for i := range v.cols {
			v.key = append(v.key, i)
		}
	default:
		for i, o := range v.occ {
			if i > 0 && v.toOne(i) {
				continue
			}
			if len(o.in.tbl.Key) == 0 {
				return c.fail(spec, location(o.ref), "cannot derive the output key: table %s has no key (a keyless table is a multiset); declare the view's key, or GROUP BY", o.in.id)
			}
			for _, k := range o.in.tbl.Key {
				j := v.outputOf(&v.occ[i], k, sl)
				if j < 0 {
					return c.fail(spec, location(o.ref), "cannot derive the output key: key column %s of %s (%s) is not an output column; select it, or declare the view's key",
						o.in.tbl.Columns[k].Name, o.alias, o.in.id)
				}
				v.key = append(v.key, j)
			}
		}
	}
	keyed := map[int]bool{}
	for _, k := range v.key {
		keyed[k] = true
	}

	// Mode: rows of the first table, when its key is in the output key.
	first := &v.occ[0]
	if !v.aggr && !v.dist && len(first.in.tbl.Key) > 0 {
		var lk []int
		for _, k := range first.in.tbl.Key {
			j := v.outputOf(first, k, sl)
			if j < 0 || !keyed[j] {
				lk = nil
				break
			}
			lk = append(lk, j)
		}
		if lk != nil {
			v.mode, v.lkey = modeRows, lk
			return nil
		}
	}
	v.mode = modeGroups
	for _, k := range v.key {
		e := sl[k].(map[string]any)
		if v.aggr {
			isGroup := false
			for _, g := range groups {
				if v.groupCol(g.(map[string]any)) == k {
					isGroup = true
				}
			}
			if !isGroup {
				return c.fail(spec, location(e), "declared key column %q of an aggregating view must be one of its GROUP BY columns", v.cols[k].name)
			}
		}
		ke := clone(e)
		ke["alias"] = ""
		v.kexpr = append(v.kexpr, ke)
	}
	return nil
}

// outputOf finds the output column that is a plain reference to column col
// of occurrence o, or -1.
func (v *compiled) outputOf(o *occurrence, col int, sl []any) int {
	for j, e := range sl {
		if ro, ci := v.refOf(e.(map[string]any)); ro != nil && ro.alias == o.alias && ci == col {
			return j
		}
	}
	return -1
}

// groupCol finds the output column a GROUP BY expression is, or -1.
func (v *compiled) groupCol(g node) int {
	sl := list(v.sel, "select_list")
	if str(g, "class") == "CONSTANT" {
		if n, err := strconv.Atoi(fmt.Sprint(child(g, "value")["value"])); err == nil && n >= 1 && n <= len(sl) {
			return n - 1
		}
	}
	for j, e := range sl {
		if sameExpr(e.(map[string]any), g) {
			return j
		}
	}
	if str(g, "class") == "COLUMN_REF" && len(list(g, "column_names")) == 1 {
		name := fmt.Sprint(list(g, "column_names")[0])
		for j, e := range sl {
			if strings.EqualFold(str(e.(map[string]any), "alias"), name) {
				return j
			}
		}
	}
	return -1
}

// toOne reports whether occurrence i is joined to at most one row: its ON
// condition equates each of its key columns with an expression over the
// tables before it.
func (v *compiled) toOne(i int) bool {
	o := &v.occ[i]
	if len(o.in.tbl.Key) == 0 {
		return false
	}
	var join node
	k := 0
	walkFrom(child(v.sel, "from_table"), func(j node) {
		k++
		if k == i {
			join = j
		}
	})
	var conj []node
	var flat func(n node)
	flat = func(n node) {
		if str(n, "type") == "CONJUNCTION_AND" {
			for _, c := range list(n, "children") {
				flat(c.(map[string]any))
			}
			return
		}
		conj = append(conj, n)
	}
	if cond := child(join, "condition"); cond != nil {
		flat(cond)
	}
	// Equalities in WHERE hold for every output row too.
	if w := child(v.sel, "where_clause"); w != nil {
		flat(w)
	}
	bound := map[int]bool{}
	for _, e := range conj {
		if str(e, "type") != "COMPARE_EQUAL" {
			continue
		}
		l, r := child(e, "left"), child(e, "right")
		for _, side := range [][2]node{{l, r}, {r, l}} {
			ro, ci := v.refOf(side[0])
			if ro == nil || ro.alias != o.alias {
				continue
			}
			if v.before(side[1], i) {
				bound[ci] = true
			}
		}
	}
	for _, kc := range o.in.tbl.Key {
		if !bound[kc] {
			return false
		}
	}
	return true
}

// before reports whether expression e reads only columns of the
// occurrences before occurrence i.
func (v *compiled) before(e node, i int) bool {
	ok := true
	walk(e, func(n node) {
		if str(n, "class") != "COLUMN_REF" {
			return
		}
		o, _ := v.refOf(n)
		if o == nil {
			ok = false
			return
		}
		for j := range v.occ {
			if &v.occ[j] == o && j >= i {
				ok = false
			}
		}
	})
	return ok
}

func exprText(n node) string {
	if str(n, "class") == "COLUMN_REF" {
		var s []string
		for _, x := range list(n, "column_names") {
			s = append(s, fmt.Sprint(x))
		}
		return strings.Join(s, ".")
	}
	if a := str(n, "alias"); a != "" {
		return a
	}
	if f := str(n, "function_name"); f != "" {
		return f + "(...)"
	}
	return "(expression)"
}

// quoteCols quotes names and joins them with sep, each prefixed by prefix.
func quoteCols(prefix string, names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = prefix + change.QuoteIdent(n)
	}
	return strings.Join(q, ", ")
}
