package view

import (
	"fmt"
	"strings"

	"github.com/sluice-dev/sluice/internal/change"
)

// tmp names a working table of the view (session-local, emptied per use).
func (v *compiled) tmp(kind string) string {
	return `"temp"."main".` + change.QuoteIdent(kind+"_"+v.slug())
}

func (v *compiled) slug() string { return v.id.Schema + "." + v.id.Name }

// outTable is the view's materialized output in the state file.
func (v *compiled) outTable() string { return `"_sluice".` + change.QuoteIdent("out."+v.slug()) }

// linTable is the view's lineage (modeGroups).
func (v *compiled) linTable() string { return `"_sluice".` + change.QuoteIdent("lin."+v.slug()) }

func (v *compiled) keyNames() []string {
	n := make([]string, len(v.key))
	for i, k := range v.key {
		n[i] = v.cols[k].name
	}
	return n
}

func (c *compiler) and(where node, cond string) (node, error) {
	n, err := c.exprNode(cond)
	if err != nil {
		return nil, err
	}
	if where == nil {
		return n, nil
	}
	return node{"class": "CONJUNCTION", "type": "CONJUNCTION_AND", "alias": "", "query_location": where["query_location"],
		"children": []any{where, n}}, nil
}

// build writes the queries a view is evaluated with.
func (c *compiler) build(v *compiled) error {
	first := v.occ[0]
	fa := change.QuoteIdent(first.alias) + "."
	if v.mode == modeRows {
		keys := first.in.tbl.KeyNames()
		st := clone(v.stmt)
		s := child(st, "node")
		w, err := c.and(child(s, "where_clause"), fmt.Sprintf("(%s) IN (SELECT * FROM %s)", quoteCols(fa, keys), v.tmp("aff")))
		if err != nil {
			return err
		}
		s["where_clause"] = w
		if v.restrictSQL, err = c.deparse(st); err != nil {
			return err
		}
	} else {
		var conds []string
		for i, n := range v.keyNames() {
			conds = append(conds, fmt.Sprintf(`a."k%d" IS NOT DISTINCT FROM "_sluice_v".%s`, i, change.QuoteIdent(n)))
		}
		v.restrictSQL = fmt.Sprintf(`SELECT * FROM (%s) AS "_sluice_v" WHERE EXISTS (SELECT 1 FROM %s AS a WHERE %s)`,
			v.fullSQL, v.tmp("affk"), strings.Join(conds, " AND "))
		st := clone(v.stmt)
		s := child(st, "node")
		rid, err := c.exprNode(fa + change.QuoteIdent(ridCol))
		if err != nil {
			return err
		}
		rid["alias"] = ridCol
		items := []any{rid}
		for i, e := range v.kexpr {
			ke := clone(e)
			ke["alias"] = fmt.Sprintf("k%d", i)
			items = append(items, ke)
		}
		s["select_list"] = items
		s["group_expressions"], s["group_sets"], s["having"], s["modifiers"] = []any{}, []any{}, nil, []any{}
		w, err := c.and(child(s, "where_clause"), fmt.Sprintf("%s%s IN (SELECT %s FROM %s)", fa, change.QuoteIdent(ridCol), change.QuoteIdent(ridCol), v.tmp("affrid")))
		if err != nil {
			return err
		}
		s["where_clause"] = w
		q, err := c.deparse(st)
		if err != nil {
			return err
		}
		v.lineageSQL = "SELECT DISTINCT * FROM (" + q + ")"
	}

	// Per occurrence: the first table's rows reached from that table's delta.
	var pick []string
	if v.mode == modeRows {
		pick = first.in.tbl.KeyNames()
	} else {
		pick = []string{ridCol}
	}
	for j := range v.occ {
		ft := clone(child(v.sel, "from_table"))
		t := ft
		for d := len(v.occ) - 1; d > j; d-- {
			t = child(t, "left")
		}
		target := t
		if j > 0 {
			t["join_type"] = "INNER"
			target = child(t, "right")
		}
		target["schema_name"] = "_sluice"
		target["table_name"] = "delta." + v.occ[j].in.id.Schema + "." + v.occ[j].in.id.Name
		st := clone(v.stmt)
		s := child(st, "node")
		var items []any
		for _, p := range pick {
			e, err := c.exprNode(fa + change.QuoteIdent(p))
			if err != nil {
				return err
			}
			items = append(items, e)
		}
		s["select_list"] = items
		s["from_table"] = t
		s["where_clause"], s["group_expressions"], s["group_sets"], s["having"], s["modifiers"] = nil, []any{}, []any{}, nil, []any{}
		q, err := c.deparse(st)
		if err != nil {
			return err
		}
		v.affSQL = append(v.affSQL, q)
	}
	return nil
}
