package redshift

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/sluice-dev/sluice/internal/change"
)

// Schema changes at the source (ADD COLUMN, DROP COLUMN).
//
// Every record names its table's columns and key. Records of the old and
// the new shape share shards (a row's changes keep their shard), so a
// per-shard watermark cannot stop between them: one merge run takes every
// pending shape at once. Before a table's merge, Merge reads the shapes of
// its pending records (ShapesSQL); the newest record's shape is the one
// the mirror must have. It alters the mirror to it (ALTER TABLE ADD
// COLUMN, DROP COLUMN; the streaming view's SUPER needs no change) and runs
// a merge generated for that shape which accepts every pending shape: a
// column that an older record does not name is "unchanged" for it, as an
// unsent TOAST value is (a keyed table keeps the stored value; in a keyless
// table the row's value is NULL, as the mirror's rows that predate the
// column hold). The ALTERs run in the merge's transaction: a failed merge
// leaves the mirror as it was. ALTER TABLE may run in a transaction block
// on a table that is not external, and holds the table's lock until the
// transaction ends:
// https://docs.aws.amazon.com/redshift/latest/dg/r_ALTER_TABLE.html
//
// What is refused, with ErrShapeChanged, nothing merged: a changed key
// (resnapshot the table), a column whose type changed, a column dropped
// and added again under its name (its old values are not its values).

// ShapesSQL lists the distinct shapes (columns and key, as JSON text) of
// a table's pending, parsed records other than truncates, newest first.
func ShapesSQL(p *Plan, tp *TablePlan) string {
	d := p.Config.Dialect
	data := `v."data"`
	cols, key := d.SuperText(d.Field(data, "columns")), d.SuperText(d.Field(data, "key"))
	lsnT := WType{Base: "DECIMAL", Args: "(20,0)"}
	commit := d.Value(data, []string{"source", "commit_lsn"}, change.KindInt, lsnT)
	lsn := d.Value(data, []string{"source", "lsn"}, change.KindInt, lsnT)
	return "SELECT x.\"columns\", x.\"key\"\nFROM (\n  SELECT\n    " + cols + " AS \"columns\",\n    " + key + " AS \"key\",\n" +
		"    " + commit + " AS \"commit_lsn\",\n    " + lsn + " AS \"lsn\",\n" +
		"    ROW_NUMBER() OVER (PARTITION BY " + cols + ", " + key + " ORDER BY " + commit + " DESC, " + lsn + " DESC) AS \"_sluice_rank\"\n  " +
		strings.ReplaceAll(pendingSource(p, tp), "\n", "\n  ") +
		"\n    AND v.\"unparsed_data\" IS NULL\n    AND " + d.Text(data, "op") + " <> 't'\n) AS x\n" +
		"WHERE x.\"_sluice_rank\" = 1\nORDER BY x.\"commit_lsn\" DESC, x.\"lsn\" DESC"
}

// pendingShapes reads the shapes of a table's pending records, newest first.
func pendingShapes(ctx context.Context, conn Conn, p *Plan, tp *TablePlan) ([]*change.Table, error) {
	rows, err := conn.Query(ctx, ShapesSQL(p, tp))
	if err != nil {
		return nil, fmt.Errorf("read the schemas of the records of %s: %w", tp.Source.ID(), err)
	}
	out := make([]*change.Table, 0, len(rows))
	for _, r := range rows {
		if len(r) != 2 || r[0] == nil || r[1] == nil {
			return nil, fmt.Errorf("read the schemas of the records of %s: a record without columns or key", tp.Source.ID())
		}
		t, err := decodeShape(tp.Source, *r[0], *r[1])
		if err != nil {
			return nil, fmt.Errorf("read the schemas of the records of %s: %w", tp.Source.ID(), err)
		}
		out = append(out, t)
	}
	return out, nil
}

// decodeShape builds the table a record's columns and key describe, by
// the record codec's own rules (a truncate record holding only them).
func decodeShape(src *change.Table, cols, key string) (*change.Table, error) {
	if !json.Valid([]byte(cols)) || !json.Valid([]byte(key)) {
		return nil, fmt.Errorf("columns %.80q or key %.80q is not JSON", cols, key)
	}
	schema, _ := json.Marshal(src.Schema)
	name, _ := json.Marshal(src.Name)
	rec := `{"op":"t","source":{"schema":` + string(schema) + `,"table":` + string(name) + `,"lsn":0,"commit_lsn":0},"key":` + key + `,"columns":` + cols + `}`
	r, err := change.DecodeRecord([]byte(rec))
	if err != nil {
		return nil, err
	}
	return r.Change.Table, nil
}

// sameColumns reports whether two shapes have the same column names and
// source types, in order, and the same key.
func sameColumns(a, b *change.Table) bool {
	if len(a.Columns) != len(b.Columns) || strings.Join(a.KeyNames(), "\x00") != strings.Join(b.KeyNames(), "\x00") {
		return false
	}
	for i := range a.Columns {
		if a.Columns[i].Name != b.Columns[i].Name || a.Columns[i].Type.Name != b.Columns[i].Type.Name {
			return false
		}
	}
	return true
}

// mergeRun returns what one merge run of tp executes: the ALTERs that bring
// the mirror to the newest shape and the merge accepting every pending
// shape, and the shape the mirror has afterwards. When the records and the
// mirror are all of the plan's shape, that is the plan's own merge.
func (p *Plan) mergeRun(ctx context.Context, conn Conn, tp *TablePlan) ([]string, *change.Table, error) {
	shapes, err := pendingShapes(ctx, conn, p, tp)
	if err != nil {
		return nil, nil, err
	}
	have, err := CatalogInspector{Conn: conn, Dialect: p.Config.Dialect}.Columns(ctx, Object{Schema: tp.Target.Schema, Name: tp.Target.Name})
	if err != nil {
		return nil, nil, fmt.Errorf("read the columns of %s: %w", tp.Target, err)
	}
	mirror := have[:0:0]
	for _, n := range have {
		if !strings.HasPrefix(n, reservedPrefix) {
			mirror = append(mirror, n)
		}
	}
	// The shape the mirror must have: the newest record's; with none
	// pending, the one this process last gave it, else the plan's (the
	// source's when sluice started).
	known := p.alignedShape(tp)
	cur := known
	if len(shapes) > 0 {
		cur = shapes[0]
	}
	names := make([]string, len(cur.Columns))
	for i, c := range cur.Columns {
		names[i] = c.Name
	}
	static := sameColumns(cur, tp.Source) && strings.Join(names, "\x00") == strings.Join(mirror, "\x00")
	for _, s := range shapes {
		static = static && sameColumns(s, tp.Source)
	}
	if static {
		return tp.Merge, cur, nil
	}
	refuse := func(format string, args ...any) ([]string, *change.Table, error) {
		return nil, nil, fmt.Errorf("merge %s into %s: %w: %s; nothing was merged, nothing is lost",
			tp.Source.ID(), tp.Target, ErrShapeChanged, fmt.Sprintf(format, args...))
	}
	keys := strings.Join(tp.Source.KeyNames(), ", ")
	// Every pending shape, and the one the mirror was last given, must
	// agree with the newest on the key and on the types they share.
	for _, s := range append(append([]*change.Table{}, shapes...), known) {
		if k := strings.Join(s.KeyNames(), ", "); k != keys {
			return refuse("its records name the key (%s), the mirror's is (%s): a Redshift table cannot change its key in place; resnapshot the table (sluice resnapshot %s)", k, keys, tp.Source.ID())
		}
		for _, c := range s.Columns {
			i := cur.Column(c.Name)
			if i < 0 {
				continue
			}
			n := cur.Columns[i]
			if n.Type.Name != c.Type.Name {
				return refuse("column %q changed type from %s to %s at the source, which sluice does not apply to a Redshift mirror: alter %s by hand (the plan of the new schema prints its DDL) or resnapshot the table", c.Name, c.Type.Name, n.Type.Name, tp.Target)
			}
			if c.Num != 0 && n.Num != 0 && c.Num != n.Num {
				return refuse("column %q was dropped and added again at the source (its old values are not its values): resnapshot the table (sluice resnapshot %s)", c.Name, tp.Source.ID())
			}
		}
	}
	run, err := shapesPlan(p, tp, cur, shapes)
	if err != nil {
		return nil, nil, fmt.Errorf("merge %s into %s: the schema of its records: %w", tp.Source.ID(), tp.Target, err)
	}
	if n := mergeWidth(run.Columns, cur.Keyless()); n > maxColumns {
		return refuse("its merge over every pending schema needs a temporary table of %d columns, over Redshift's %d: merge the older records first with the older schema's plan", n, maxColumns)
	}
	alters := alterSQL(p.Config.Dialect, tp.Target, mirror, run.Columns)
	return append(alters, run.Merge...), cur, nil
}

// shapesPlan is the table plan of a merge run of tp's records of the given
// shapes (newest first) into a mirror of shape cur: columns some shape
// does not name are "unchanged" in its records.
func shapesPlan(p *Plan, tp *TablePlan, cur *change.Table, shapes []*change.Table) (*TablePlan, error) {
	run, _, err := planTable(p, cur)
	if err != nil {
		return nil, err
	}
	run.Target = tp.Target
	run.shapes = shapes
	if len(shapes) > 1 {
		run.missing = map[string][]int{}
		for i, c := range run.Columns {
			for j, s := range shapes {
				if s.Column(c.Name) < 0 {
					run.missing[c.Name] = append(run.missing[c.Name], j+1)
					if !c.Key && !cur.Keyless() {
						run.Columns[i].Toastable = true
					}
				}
			}
		}
	}
	run.Merge = mergeSQL(p, run)
	return run, nil
}

// alterSQL brings a mirror with the columns have to the columns want:
// drops first, then adds (at the end, as Redshift adds them; inserts name
// their columns). Added columns are nullable: the rows already there have
// no value for them. (A value the source gives them through a fast
// default is not in the records, so they hold NULL.)
func alterSQL(d Dialect, target change.TableID, have []string, want []Column) []string {
	var out []string
	wanted := map[string]bool{}
	for _, c := range want {
		wanted[c.Name] = true
	}
	had := map[string]bool{}
	for _, n := range have {
		had[n] = true
		if !wanted[n] {
			out = append(out, "ALTER TABLE "+target.Quoted()+" DROP COLUMN "+q(n))
		}
	}
	for _, c := range want {
		if !had[c.Name] {
			out = append(out, "ALTER TABLE "+target.Quoted()+" ADD COLUMN "+q(c.Name)+" "+d.Type(c.Type))
		}
	}
	return out
}

// alignedShape is the shape this process last gave tp's mirror, else the plan's.
func (p *Plan) alignedShape(tp *TablePlan) *change.Table {
	a := p.aligned
	a.mu.Lock()
	defer a.mu.Unlock()
	if t := a.m[tp.Target]; t != nil {
		return t
	}
	return tp.Source
}

func (p *Plan) setAligned(tp *TablePlan, t *change.Table) {
	a := p.aligned
	a.mu.Lock()
	defer a.mu.Unlock()
	a.m[tp.Target] = t
}

// shapeID is, for a merge over several shapes, which of them a record has
// (1 for the newest; NULL for none of them), else "".
func shapeID(d Dialect, rec string, tp *TablePlan) string {
	if len(tp.shapes) < 2 {
		return ""
	}
	var b strings.Builder
	b.WriteString("CASE")
	for i, s := range tp.shapes {
		b.WriteString("\n    WHEN " + shapeMatch(d, rec, s) + " THEN " + strconv.Itoa(i+1))
	}
	b.WriteString("\n  END")
	return b.String()
}

// shapeMatch tests that a record's columns are t's: count, names and
// source types in order.
func shapeMatch(d Dialect, rec string, t *change.Table) string {
	parts := []string{d.ArrayLen(rec, "columns") + " = " + strconv.Itoa(len(t.Columns))}
	for i, c := range t.Columns {
		parts = append(parts,
			d.ElemText(rec, []string{"columns"}, i, "name")+" = "+d.Literal(c.Name),
			d.ElemText(rec, []string{"columns"}, i, "type")+" = "+d.Literal(c.Type.Name))
	}
	return "COALESCE(" + strings.Join(parts, "\n    AND ") + ", FALSE)"
}

// unchangedExpr tests whether column c of a record is unchanged: named in
// its "unchanged" array, or absent from its shape.
func unchangedExpr(d Dialect, rec, shape string, tp *TablePlan, c Column) string {
	e := d.Contains(rec, []string{"unchanged"}, c.Name)
	if ids := tp.missing[c.Name]; len(ids) > 0 {
		s := make([]string, len(ids))
		for i, id := range ids {
			s[i] = strconv.Itoa(id)
		}
		sort.Strings(s)
		e = "(" + e + " OR COALESCE(" + shape + " IN (" + strings.Join(s, ", ") + "), FALSE))"
	}
	return e
}
