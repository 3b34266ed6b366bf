package view

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/sluice-dev/sluice/internal/change"
)

// ridCol is the hidden column every stored input row carries: a number
// unique to that version of the row. It tells the rows of a keyless input
// apart and lets a transaction find the rows it created.
const ridCol = "_sluice_rid"

// Evaluation modes.
const (
	// modeRows: no aggregate, no DISTINCT, and the output key holds the key
	// of the first table of FROM. Every output row belongs to one row of
	// that table, so a transaction recomputes the output rows of the first
	// table's rows it touches.
	modeRows = iota
	// modeGroups: everything else. A lineage table maps each row of the
	// first table to the output keys its join rows fall in (before
	// aggregation, without HAVING); a transaction recomputes those keys.
	modeGroups
)

// occurrence is one table reference of a view's FROM clause, in join order.
type occurrence struct {
	alias string
	in    *input
	join  string // "" for the first table, else "INNER" or "LEFT"
	ref   node   // the BASE_TABLE node in the compiled tree
}

// compiled is a view ready to evaluate.
type compiled struct {
	spec  Spec
	id    change.TableID
	stmt  node // the whole parsed statement, table references resolved
	sel   node // its SELECT_NODE
	occ   []occurrence
	cols  []outCol
	key   []int // output key, indexes into cols
	mode  int
	aggr  bool
	dist  bool
	uses  map[change.TableID]map[string]bool // input columns the view reads
	lkey  []int                              // modeRows: output columns holding the first table's key, in its key order
	kexpr []node                             // modeGroups: the output key's expressions over the inputs

	table *change.Table // the output table
	live  bool          // the initial output was emitted
	// stopped is why the view stopped ("" while it runs): it is skipped,
	// its stored output and its target table keep what they had.
	stopped string

	fullSQL     string   // the view as written, over the stored inputs
	restrictSQL string   // the view over the affected set (aff table)
	lineageSQL  string   // modeGroups: (rid, key...) of the affected first-table rows
	affSQL      []string // per occurrence: the first table's key (modeRows) or rid (modeGroups) reached from its delta
}

// functions are DuckDB's function names by what the compiler needs to know.
type functions struct {
	volatile  map[string]bool
	aggregate map[string]bool
}

func loadFunctions(ctx context.Context, q querier) (*functions, error) {
	rows, err := q.QueryContext(ctx, `SELECT DISTINCT function_name, function_type, stability FROM duckdb_functions()`)
	if err != nil {
		return nil, fmt.Errorf("list DuckDB functions: %w", err)
	}
	defer rows.Close()
	f := &functions{volatile: map[string]bool{}, aggregate: map[string]bool{}}
	for rows.Next() {
		var name, typ, stab sql.NullString
		if err := rows.Scan(&name, &typ, &stab); err != nil {
			return nil, err
		}
		if stab.String == "VOLATILE" || stab.String == "CONSISTENT_WITHIN_QUERY" {
			f.volatile[name.String] = true
		}
		if typ.String == "aggregate" {
			f.aggregate[name.String] = true
		}
	}
	return f, rows.Err()
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// compiler turns specs into compiled views; it collects every error.
type compiler struct {
	ctx    context.Context
	q      querier
	fns    *functions
	inputs map[change.TableID]*input
}

func (c *compiler) fail(spec Spec, off int, format string, args ...any) *SQLError {
	l, col := lineCol(spec.SQL, off)
	return &SQLError{View: spec.Name, Line: l, Column: col, Msg: fmt.Sprintf(format, args...)}
}

// parse runs DuckDB's parser over the view's SQL.
func (c *compiler) parse(spec Spec) (node, error) {
	var out string
	if err := c.q.QueryRowContext(c.ctx, `SELECT CAST(json_serialize_sql(CAST(? AS VARCHAR)) AS VARCHAR)`, spec.SQL).Scan(&out); err != nil {
		return nil, fmt.Errorf("view %s: parse: %w", spec.Name, err)
	}
	res, err := decode([]byte(out))
	if err != nil {
		return nil, fmt.Errorf("view %s: parse: %w", spec.Name, err)
	}
	if e, _ := res["error"].(bool); e {
		off := -1
		switch p := res["position"].(type) {
		case json.Number:
			if n, err := p.Int64(); err == nil {
				off = int(n)
			}
		case string:
			if n, err := strconv.Atoi(p); err == nil {
				off = n
			}
		}
		msg := str(res, "error_message")
		if str(res, "error_type") == "not implemented" || strings.Contains(msg, "Only SELECT") {
			msg = "unsupported construct: " + msg + " (a view is one SELECT)"
		}
		return nil, c.fail(spec, off, "%s", msg)
	}
	stmts := list(res, "statements")
	if len(stmts) != 1 {
		return nil, c.fail(spec, -1, "want exactly one SELECT statement, found %d", len(stmts))
	}
	return stmts[0].(map[string]any), nil
}

// resolve parses a view, resolves its tables and finds the columns it reads.
func (c *compiler) resolve(spec Spec) (*compiled, error) {
	id, err := change.ParseTableID(spec.Name)
	if err != nil {
		return nil, &SQLError{View: spec.Name, Msg: "bad view name: " + err.Error()}
	}
	stmt, err := c.parse(spec)
	if err != nil {
		return nil, err
	}
	v := &compiled{spec: spec, id: id, stmt: stmt, uses: map[change.TableID]map[string]bool{}}
	sel := child(stmt, "node")
	v.sel = sel
	if str(sel, "type") != "SELECT_NODE" {
		return nil, c.fail(spec, -1, "unsupported construct: %s (a view is one SELECT without UNION, INTERSECT or EXCEPT)", strings.ToLower(strings.TrimSuffix(str(sel, "type"), "_NODE")))
	}
	var errs []error
	bad := func(n node, format string, args ...any) {
		errs = append(errs, c.fail(spec, location(n), format, args...))
	}

	// Clauses outside the supported subset.
	if m := child(child(sel, "cte_map"), "map"); len(m) > 0 || len(list(child(sel, "cte_map"), "map")) > 0 {
		bad(sel, "unsupported construct: WITH (common table expressions)")
	}
	for _, m := range list(sel, "modifiers") {
		mn := m.(map[string]any)
		switch str(mn, "type") {
		case "DISTINCT_MODIFIER":
			if len(list(mn, "distinct_on_targets")) > 0 {
				bad(mn, "unsupported construct: DISTINCT ON")
			}
			v.dist = true
		case "ORDER_MODIFIER":
			bad(mn, "unsupported construct: ORDER BY (a view's output is a set of keyed rows)")
		case "LIMIT_MODIFIER", "LIMIT_PERCENT_MODIFIER":
			bad(mn, "unsupported construct: LIMIT/OFFSET")
		default:
			bad(mn, "unsupported construct: %s", strings.ToLower(str(mn, "type")))
		}
	}
	if sel["qualify"] != nil {
		bad(sel, "unsupported construct: QUALIFY")
	}
	if sel["sample"] != nil {
		bad(sel, "unsupported construct: USING SAMPLE")
	}
	if len(list(sel, "group_sets")) > 1 {
		bad(sel, "unsupported construct: GROUPING SETS, ROLLUP or CUBE")
	}
	if h := str(sel, "aggregate_handling"); h != "" && h != "STANDARD_HANDLING" {
		bad(sel, "unsupported construct: GROUP BY ALL")
	}

	// FROM: a left-deep chain of base tables joined INNER or LEFT.
	if err := c.from(v, child(sel, "from_table"), bad); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	// Expressions.
	aliases := map[string]bool{}
	for _, e := range list(sel, "select_list") {
		if a := str(e.(map[string]any), "alias"); a != "" {
			aliases[strings.ToLower(a)] = true
		}
	}
	exprs := []any{sel["select_list"], sel["where_clause"], sel["group_expressions"], sel["having"]}
	walkFrom(child(sel, "from_table"), func(j node) { exprs = append(exprs, j["condition"]) })
	for _, e := range exprs {
		c.exprs(v, e, aliases, bad)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if v.aggr && v.dist {
		return nil, c.fail(spec, location(sel), "unsupported construct: DISTINCT together with GROUP BY or aggregates")
	}
	return v, nil
}

// finish binds a resolved view, derives its key and builds its queries.
func (c *compiler) finish(v *compiled) error {
	// Bind: DuckDB checks columns and types, and tells the output's.
	if err := c.describe(v); err != nil {
		return err
	}
	if err := c.deriveKey(v); err != nil {
		return err
	}
	return c.build(v)
}

func walkFrom(t node, f func(node)) {
	if str(t, "type") == "JOIN" {
		walkFrom(child(t, "left"), f)
		f(t)
	}
}

func (c *compiler) from(v *compiled, t node, bad func(node, string, ...any)) error {
	spec := v.spec
	if t == nil || str(t, "type") == "EMPTY_FROM" || str(t, "type") == "" {
		return c.fail(spec, -1, "a view reads at least one table: FROM is missing")
	}
	var chain []node // base tables in order
	var joins []node
	var rec func(t node) bool
	rec = func(t node) bool {
		switch str(t, "type") {
		case "BASE_TABLE":
			chain = append(chain, t)
			joins = append(joins, nil)
			return true
		case "JOIN":
			if !rec(child(t, "left")) {
				return false
			}
			r := child(t, "right")
			if str(r, "type") != "BASE_TABLE" {
				bad(r, "unsupported construct: a parenthesized join or subquery on the right of JOIN (write the joins one after the other)")
				return false
			}
			switch rt := str(t, "ref_type"); rt {
			case "REGULAR", "CROSS":
			default:
				bad(t, "unsupported construct: %s JOIN", rt)
				return false
			}
			if len(list(t, "using_columns")) > 0 {
				bad(t, "unsupported construct: JOIN ... USING (write the condition with ON)")
				return false
			}
			switch jt := str(t, "join_type"); jt {
			case "INNER", "LEFT":
			default:
				bad(t, "unsupported construct: %s JOIN (only INNER and LEFT joins)", jt)
				return false
			}
			chain = append(chain, r)
			joins = append(joins, t)
			return true
		case "SUBQUERY":
			bad(t, "unsupported construct: a subquery in FROM")
		case "TABLE_FUNCTION":
			bad(t, "unsupported construct: a table function in FROM")
		default:
			bad(t, "unsupported construct: %s in FROM", strings.ToLower(str(t, "type")))
		}
		return false
	}
	if !rec(t) {
		return nil
	}
	seen := map[string]bool{}
	for i, bt := range chain {
		if bt["at_clause"] != nil || bt["sample"] != nil {
			bad(bt, "unsupported construct: AT or TABLESAMPLE on a table")
			continue
		}
		schema, name := str(bt, "schema_name"), str(bt, "table_name")
		if str(bt, "catalog_name") != "" {
			bad(bt, "unknown table %s.%s.%s: views read the mirrored tables by schema.table", str(bt, "catalog_name"), schema, name)
			continue
		}
		in := c.lookup(schema, name)
		if in == nil {
			tid := name
			if schema != "" {
				tid = schema + "." + name
			}
			bad(bt, "unknown table %s (tables views may read: %s)", tid, c.known())
			continue
		}
		alias := str(bt, "alias")
		if alias == "" {
			alias = in.id.Name
		}
		if seen[strings.ToLower(alias)] {
			bad(bt, "table name %q specified more than once: give each reference its own alias", alias)
			continue
		}
		seen[strings.ToLower(alias)] = true
		bt["schema_name"], bt["table_name"], bt["alias"] = in.id.Schema, in.id.Name, alias
		o := occurrence{alias: alias, in: in, ref: bt}
		if i > 0 {
			o.join = str(joins[i], "join_type")
		}
		v.occ = append(v.occ, o)
		if v.uses[in.id] == nil {
			v.uses[in.id] = map[string]bool{}
		}
	}
	return nil
}

func (c *compiler) lookup(schema, name string) *input {
	if schema == "" {
		schema = "public"
	}
	if in := c.inputs[change.TableID{Schema: schema, Name: name}]; in != nil {
		return in
	}
	for id, in := range c.inputs {
		if strings.EqualFold(id.Schema, schema) && strings.EqualFold(id.Name, name) {
			return in
		}
	}
	return nil
}

func (c *compiler) known() string {
	var names []string
	for id := range c.inputs {
		names = append(names, id.String())
	}
	slices.Sort(names)
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// exprs checks the expressions of a view and records the columns it uses.
func (c *compiler) exprs(v *compiled, e any, aliases map[string]bool, bad func(node, string, ...any)) {
	var rec func(x any, inLambda bool)
	rec = func(x any, inLambda bool) {
		switch y := x.(type) {
		case []any:
			for _, z := range y {
				rec(z, inLambda)
			}
			return
		case map[string]any:
			n := y
			switch str(n, "class") {
			case "STAR":
				bad(n, "unsupported construct: * (list the columns, so that a column added to an input does not change the view)")
				return
			case "SUBQUERY":
				bad(n, "unsupported construct: a subquery in an expression")
				return
			case "WINDOW":
				bad(n, "unsupported construct: window function %s() OVER (...)", str(n, "function_name"))
				return
			case "LAMBDA":
				inLambda = true
			case "PARAMETER":
				bad(n, "unsupported construct: a parameter")
				return
			case "FUNCTION":
				name := strings.ToLower(str(n, "function_name"))
				if c.fns.volatile[name] {
					bad(n, "volatile function %s() is not allowed: a view's output must depend on its input rows only", str(n, "function_name"))
					return
				}
				if c.fns.aggregate[name] {
					v.aggr = true
				}
			case "COLUMN_REF":
				if !inLambda {
					c.columnRef(v, n, aliases, bad)
				}
				return
			}
			for k, z := range n {
				if k == "query_location" {
					continue
				}
				rec(z, inLambda)
			}
		}
	}
	rec(e, false)
	if len(list(v.sel, "group_expressions")) > 0 {
		v.aggr = true
	}
}

func (c *compiler) columnRef(v *compiled, n node, aliases map[string]bool, bad func(node, string, ...any)) {
	var names []string
	for _, s := range list(n, "column_names") {
		names = append(names, fmt.Sprint(s))
	}
	if len(names) == 0 {
		return
	}
	col := names[len(names)-1]
	if strings.EqualFold(col, ridCol) {
		bad(n, "column %s is reserved for sluice", ridCol)
		return
	}
	if len(names) >= 2 {
		qual := names[len(names)-2]
		for _, o := range v.occ {
			if strings.EqualFold(o.alias, qual) && (len(names) == 2 || strings.EqualFold(o.in.id.Schema, names[0])) {
				if i := o.in.column(col); i >= 0 {
					v.uses[o.in.id][o.in.tbl.Columns[i].Name] = true
					return
				}
				bad(n, "unknown column %s in table %s (%s has: %s)", col, qual, o.in.id, strings.Join(o.in.names(), ", "))
				return
			}
		}
		if len(names) == 2 {
			// Perhaps a struct field of a column: DuckDB's binder decides.
			for _, o := range v.occ {
				if o.in.column(qual) >= 0 {
					v.uses[o.in.id][o.in.tbl.Columns[o.in.column(qual)].Name] = true
					return
				}
			}
		}
		bad(n, "unknown table %s in column reference %s", qual, strings.Join(names, "."))
		return
	}
	found := false
	for _, o := range v.occ {
		if i := o.in.column(col); i >= 0 {
			v.uses[o.in.id][o.in.tbl.Columns[i].Name] = true
			found = true
		}
	}
	if !found && !aliases[strings.ToLower(col)] {
		bad(n, "unknown column %s", col)
	}
}

// describe binds the view in DuckDB and reads its output columns.
func (c *compiler) describe(v *compiled) error {
	sqlText, err := c.deparse(v.stmt)
	if err != nil {
		return err
	}
	v.fullSQL = sqlText
	// Bind the text as written, so that DuckDB's positions are the user's.
	if _, err := c.q.ExecContext(c.ctx, "DESCRIBE "+v.spec.SQL); err != nil {
		msg, line, col := duckPlace(err)
		if line > 0 {
			line, col = placeInSpec(v.spec.SQL, line, col)
		}
		return &SQLError{View: v.spec.Name, Line: line, Column: col, Msg: msg}
	}
	rows, err := c.q.QueryContext(c.ctx, "DESCRIBE "+sqlText)
	if err != nil {
		msg, _, _ := duckPlace(err)
		return &SQLError{View: v.spec.Name, Msg: msg}
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	seen := map[string]bool{}
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return err
		}
		name, duck := fmt.Sprint(vals[0]), fmt.Sprint(vals[1])
		if seen[name] {
			return c.fail(v.spec, -1, "output column %q appears twice: give the columns distinct names with AS", name)
		}
		if name == ridCol {
			return c.fail(v.spec, -1, "column %s is reserved for sluice", ridCol)
		}
		seen[name] = true
		typ := outType(duck)
		v.cols = append(v.cols, outCol{name: name, duck: duck, typ: typ, render: renderFor(duck, typ)})
	}
	if err := rows.Err(); err != nil {
		return err
	}
	// A column passed through keeps its source type (varchar(63) stays so).
	for i, e := range list(v.sel, "select_list") {
		if i >= len(v.cols) {
			break
		}
		if o, ci := v.refOf(e.(map[string]any)); o != nil {
			src := o.in.tbl.Columns[ci]
			if _, duck := colType(src); duck == v.cols[i].duck && src.Type.Kind != change.KindArray {
				v.cols[i].typ = src.Type
				v.cols[i].render = renderFor(duck, src.Type)
			}
		}
	}
	return nil
}

// placeInSpec maps DuckDB's line and column of "DESCRIBE <sql>" onto sql.
func placeInSpec(_ string, line, col int) (int, int) {
	if line == 1 {
		col -= len("DESCRIBE ")
		if col < 1 {
			col = 1
		}
	}
	return line, col
}

// refOf resolves a plain column reference to its occurrence and column.
func (v *compiled) refOf(e node) (*occurrence, int) {
	if str(e, "class") != "COLUMN_REF" {
		return nil, -1
	}
	var names []string
	for _, s := range list(e, "column_names") {
		names = append(names, fmt.Sprint(s))
	}
	switch len(names) {
	case 1:
		var hit *occurrence
		ci := -1
		for i := range v.occ {
			if j := v.occ[i].in.column(names[0]); j >= 0 {
				if hit != nil {
					return nil, -1
				}
				hit, ci = &v.occ[i], j
			}
		}
		return hit, ci
	case 2:
		for i := range v.occ {
			if strings.EqualFold(v.occ[i].alias, names[0]) {
				if j := v.occ[i].in.column(names[1]); j >= 0 {
					return &v.occ[i], j
				}
			}
		}
	}
	return nil, -1
}

func (c *compiler) deparse(stmt node) (string, error) {
	b, err := json.Marshal(node{"error": false, "statements": []any{stmt}})
	if err != nil {
		return "", err
	}
	var s string
	if err := c.q.QueryRowContext(c.ctx, `SELECT json_deserialize_sql(CAST(? AS JSON))`, string(b)).Scan(&s); err != nil {
		return "", fmt.Errorf("print view SQL: %w", err)
	}
	return strings.TrimSuffix(s, ";"), nil
}

// exprNode parses one expression into a tree node.
func (c *compiler) exprNode(expr string) (node, error) {
	var out string
	if err := c.q.QueryRowContext(c.ctx, `SELECT CAST(json_serialize_sql(CAST(? AS VARCHAR)) AS VARCHAR)`, "SELECT 1 WHERE "+expr).Scan(&out); err != nil {
		return nil, err
	}
	res, err := decode([]byte(out))
	if err != nil {
		return nil, err
	}
	if e, _ := res["error"].(bool); e {
		return nil, fmt.Errorf("parse %q: %s", expr, str(res, "error_message"))
	}
	return child(child(list(res, "statements")[0].(map[string]any), "node"), "where_clause"), nil
}
