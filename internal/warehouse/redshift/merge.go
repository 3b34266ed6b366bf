package redshift

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/sluice-dev/sluice/internal/change"
)

// The incremental merge of one table, as statements run in ONE transaction:
//
//  1. records: the landing rows of this table after the table's per-shard
//     watermark, read once (everything after reads this snapshot, so rows
//     landing meanwhile wait for the next run);
//  2. rows: one row per affected key: reads, inserts and updates upsert the
//     "after" key; deletes delete the "before" key; an update that changed the
//     key also deletes its old key;
//  3. truncates raise the table's truncation floor and empty the table (and
//     its delete markers) of everything older;
//  4. changes: rows newer than the floor, numbered per key by (commit LSN,
//     LSN), never by arrival;
//  5. merge: per key the latest change, if newer than the stored row and the
//     stored delete marker; an "unchanged" TOAST column takes the latest value
//     of that key in this run since its history last restarted (a delete, or
//     a key change moving another row onto the key), else the stored value,
//     else, for a moved row, the stored value of the key it moved from;
//  6. apply: delete, insert, refresh delete markers, move the watermarks.
//
// Redshift's MERGE takes one WHEN MATCHED clause without a condition
// (https://docs.aws.amazon.com/redshift/latest/dg/r_MERGE.html), so it cannot
// say "delete if the latest change is a delete, update otherwise"; delete
// then insert, in one transaction, says it. (How Redshift executes MERGE
// internally is not documented and not relied on.)
const (
	tmpRecords = `"_sluice_records"`
	tmpRows    = `"_sluice_rows"`
	tmpChanges = `"_sluice_changes"`
	tmpMerge   = `"_sluice_merge"`
	tmpFloor   = `"_sluice_floor"`
)

func q(s string) string { return change.QuoteIdent(s) }

// posAfter tests (ac, al) > (bc, bl).
func posAfter(ac, al, bc, bl string) string {
	return fmt.Sprintf("(%s > %s OR (%s = %s AND %s > %s))", ac, bc, ac, bc, al, bl)
}

func mergeSQL(p *Plan, tp *TablePlan) []string {
	if tp.Source.Keyless() {
		return multisetMergeSQL(p, tp)
	}
	d := p.Config.Dialect
	target := tp.Target.Quoted()
	deleted := tp.Deleted.Quoted()
	cols := tp.Columns
	keys := keyColumns(cols)
	var out []string
	add := func(s string) { out = append(out, s) }
	for _, t := range []string{tmpRecords, tmpRows, tmpFloor, tmpChanges, tmpMerge} {
		add("DROP TABLE IF EXISTS " + t)
	}

	// 1. records
	out = append(out, recordsSQL(p, tp)...)

	// 2. rows
	rec := `r."_sluice_data"`
	var keyMoved []string
	for _, c := range keys {
		keyMoved = append(keyMoved, d.Value(rec, []string{"before", c.Name}, c.Kind, c.Type)+" <> "+d.Value(rec, []string{"after", c.Name}, c.Kind, c.Type))
	}
	moved := "(" + strings.Join(keyMoved, "\n     OR ") + ")"
	var up, del strings.Builder
	up.WriteString("SELECT\n  r." + q(colCommitLSN) + ",\n  r." + q(colLSN) + ",\n  FALSE AS \"_sluice_deleted\",\n" +
		"  COALESCE(r.\"_sluice_op\" = 'u' AND " + moved + ", FALSE) AS \"_sluice_moved\"")
	del.WriteString("SELECT\n  r." + q(colCommitLSN) + ",\n  r." + q(colLSN) + ",\n  TRUE AS \"_sluice_deleted\",\n  FALSE AS \"_sluice_moved\"")
	for i, c := range cols {
		if c.Key {
			// The key a moved row had before, to find its stored values.
			up.WriteString(",\n  " + d.Value(rec, []string{"before", c.Name}, c.Kind, c.Type) + " AS " + fromCol(i))
			del.WriteString(",\n  NULL::" + d.Type(c.Type) + " AS " + fromCol(i))
		}
	}
	for i, c := range cols {
		up.WriteString(",\n  " + d.Value(rec, []string{"after", c.Name}, c.Kind, c.Type) + " AS " + q(c.Name))
		if c.Key {
			del.WriteString(",\n  " + d.Value(rec, []string{"before", c.Name}, c.Kind, c.Type) + " AS " + q(c.Name))
		} else {
			del.WriteString(",\n  NULL::" + d.Type(c.Type) + " AS " + q(c.Name))
		}
		if c.Toastable {
			up.WriteString(",\n  " + unchangedExpr(d, rec, `r."_sluice_shape"`, tp, c) + " AS " + unchangedCol(i))
			del.WriteString(",\n  FALSE AS " + unchangedCol(i))
		}
	}
	up.WriteString("\nFROM " + tmpRecords + " AS r\nWHERE r.\"_sluice_op\" IN ('r', 'c', 'u')")
	del.WriteString("\nFROM " + tmpRecords + " AS r\nWHERE r.\"_sluice_op\" = 'd'\n   OR (r.\"_sluice_op\" = 'u' AND " + moved + ")")
	add("CREATE TEMP TABLE " + tmpRows + " AS\n" + up.String() + "\nUNION ALL\n" + del.String())

	// 3. truncates
	out = append(out, truncateSQL(p, tp, target, deleted)...)

	// 4. changes
	var part []string
	for _, c := range keys {
		part = append(part, "s."+q(c.Name))
	}
	partS := strings.Join(part, ", ")
	partX := strings.ReplaceAll(partS, "s.", "x.")
	var b strings.Builder
	b.WriteString("CREATE TEMP TABLE " + tmpChanges + " AS\nSELECT\n  s.*,\n")
	b.WriteString("  COUNT(*) OVER (PARTITION BY " + partS + `) AS "_sluice_last"`)
	toast := false
	for _, c := range cols {
		toast = toast || c.Toastable
	}
	if toast {
		// The latest row that starts the key's history afresh: a delete, or
		// an update that moved another key's row here. Values before it are
		// not the row's.
		b.WriteString(",\n  MAX(CASE WHEN s.\"_sluice_deleted\" OR s.\"_sluice_moved\" THEN s.\"_sluice_seq\" END)" +
			" OVER (PARTITION BY " + partS + `) AS "_sluice_reset"`)
	}
	for i, c := range cols {
		if c.Toastable {
			b.WriteString(",\n  MAX(CASE WHEN NOT s.\"_sluice_deleted\" AND NOT s." + unchangedCol(i) + ` THEN s."_sluice_seq" END)` +
				" OVER (PARTITION BY " + partS + ") AS " + sourceCol(i))
		}
	}
	b.WriteString("\nFROM (\n  SELECT\n    x.*,\n")
	b.WriteString("    ROW_NUMBER() OVER (PARTITION BY " + partX + " ORDER BY x." + q(colCommitLSN) + ", x." + q(colLSN) + `) AS "_sluice_seq"` + "\n")
	b.WriteString("  FROM " + tmpRows + " AS x\n")
	b.WriteString("  LEFT JOIN " + tmpFloor + " AS f ON 1 = 1\n")
	// Rows after the latest truncate survive it, and so do the snapshot rows
	// at a reset marker's own position (both at the snapshot's consistent
	// point with LSN 0: only snapshot rows and reset markers have LSN 0; a
	// source truncate never does).
	b.WriteString("  WHERE f.\"commit_lsn\" IS NULL\n     OR " + posAfter("x."+q(colCommitLSN), "x."+q(colLSN), `f."commit_lsn"`, `f."lsn"`) +
		"\n     OR (x." + q(colCommitLSN) + ` = f."commit_lsn" AND x.` + q(colLSN) + ` = 0 AND f."lsn" = 0)` + "\n) AS s")
	add(b.String())

	// 5. merge
	b.Reset()
	b.WriteString("CREATE TEMP TABLE " + tmpMerge + " AS\nSELECT\n")
	b.WriteString(`  c."_sluice_deleted",` + "\n  c." + q(colCommitLSN) + ",\n  c." + q(colLSN))
	var joins []string
	for i, c := range cols {
		col := q(c.Name)
		if !c.Toastable {
			b.WriteString(",\n  c." + col)
			continue
		}
		s := fmt.Sprintf("s%d", i)
		after := func(a, b string) string {
			return posAfter(a+"."+q(colCommitLSN), a+"."+q(colLSN), b+"."+q(colCommitLSN), b+"."+q(colLSN))
		}
		b.WriteString(",\n  CASE\n    WHEN NOT c." + unchangedCol(i) + " THEN c." + col + "\n" +
			// the latest value of this run, unless the history restarted after it or the stored row is newer
			"    WHEN " + s + `."_sluice_seq" IS NOT NULL AND (rr."_sluice_seq" IS NULL OR ` + s + `."_sluice_seq" >= rr."_sluice_seq")` +
			" AND (t." + q(keys[0].Name) + " IS NULL OR " + after(s, "t") + ") THEN " + s + "." + col + "\n" +
			// no restart newer than the stored row: the stored value
			"    WHEN rr.\"_sluice_seq\" IS NULL OR (t." + q(keys[0].Name) + " IS NOT NULL AND NOT " + after("rr", "t") + ") THEN t." + col + "\n" +
			// the row moved here from another key: that key's stored value
			"    WHEN rr.\"_sluice_moved\" AND o." + q(keys[0].Name) + " IS NOT NULL AND " + after("rr", "o") + " THEN o." + col + "\n" +
			"  END AS " + col)
		joins = append(joins, "LEFT JOIN "+tmpChanges+" AS "+s+" ON "+keyJoin(keys, s, "c")+" AND "+s+`."_sluice_seq" = c.`+sourceCol(i))
	}
	b.WriteString("\nFROM " + tmpChanges + " AS c\n")
	b.WriteString("LEFT JOIN " + target + " AS t ON " + keyJoin(keys, "t", "c") + "\n")
	b.WriteString("LEFT JOIN " + deleted + " AS d ON " + keyJoin(keys, "d", "c") + "\n")
	if len(joins) > 0 {
		var fromKey []string
		for i, c := range cols {
			if c.Key {
				fromKey = append(fromKey, "o."+q(c.Name)+" = rr."+fromCol(i))
			}
		}
		joins = append(joins,
			"LEFT JOIN "+tmpChanges+" AS rr ON "+keyJoin(keys, "rr", "c")+` AND rr."_sluice_seq" = c."_sluice_reset"`,
			"LEFT JOIN "+target+" AS o ON "+strings.Join(fromKey, " AND "))
	}
	for _, j := range joins {
		b.WriteString(j + "\n")
	}
	b.WriteString(`WHERE c."_sluice_seq" = c."_sluice_last"` + "\n")
	b.WriteString("  AND (t." + q(keys[0].Name) + " IS NULL OR " + posAfter("c."+q(colCommitLSN), "c."+q(colLSN), "t."+q(colCommitLSN), "t."+q(colLSN)) + ")\n")
	b.WriteString("  AND (d." + q(keys[0].Name) + " IS NULL OR " + posAfter("c."+q(colCommitLSN), "c."+q(colLSN), "d."+q(colCommitLSN), "d."+q(colLSN)) + ")")
	add(b.String())

	// 6. apply
	var names, keyNames []string
	for _, c := range cols {
		names = append(names, q(c.Name))
	}
	for _, c := range keys {
		keyNames = append(keyNames, q(c.Name))
	}
	withPos := func(n []string) string {
		return strings.Join(append(append([]string{}, n...), q(colCommitLSN), q(colLSN)), ", ")
	}
	add("DELETE FROM " + target + "\nUSING " + tmpMerge + "\nWHERE " + keyJoin(keys, target, tmpMerge))
	add("INSERT INTO " + target + " (" + withPos(names) + ")\nSELECT " + withPos(names) + "\nFROM " + tmpMerge + "\nWHERE NOT \"_sluice_deleted\"")
	add("DELETE FROM " + deleted + "\nUSING " + tmpMerge + "\nWHERE " + keyJoin(keys, deleted, tmpMerge))
	add("INSERT INTO " + deleted + " (" + withPos(keyNames) + ")\nSELECT " + withPos(keyNames) + "\nFROM " + tmpMerge + "\nWHERE \"_sluice_deleted\"")
	out = append(out, watermarkSQL(p, tp)...)
	for _, t := range []string{tmpMerge, tmpChanges, tmpFloor, tmpRows, tmpRecords} {
		add("DROP TABLE " + t)
	}
	return out
}

// recordsSQL reads the table's records after its watermarks into
// _sluice_records, and guards against records the merge must not take.
func recordsSQL(p *Plan, tp *TablePlan) []string {
	d := p.Config.Dialect
	lsnT := WType{Base: "DECIMAL", Args: "(20,0)"}
	var out []string
	add := func(s string) { out = append(out, s) }
	// Whether a record's columns are the mirror's; over several pending
	// schemas, which of them it has (schema.go).
	shapeCol, shapeOk := shapeOK(d, `v."data"`, tp)+` AS "_sluice_shape_ok"`, `"_sluice_shape_ok"`
	if id := shapeID(d, `v."data"`, tp); id != "" {
		shapeCol, shapeOk = id+` AS "_sluice_shape"`, `("_sluice_shape" IS NOT NULL)`
	}
	data := `v."data"`
	pos := p.pos()
	add("CREATE TEMP TABLE " + tmpRecords + " AS\nSELECT\n" +
		"  v." + q(pos.lane) + " AS " + q(pos.tmpLane) + ",\n" +
		"  v." + q(pos.seq) + " AS " + q(pos.tmpSeq) + ",\n" +
		"  " + d.Text(data, "op") + ` AS "_sluice_op",` + "\n" +
		"  " + d.Value(data, []string{"source", "commit_lsn"}, change.KindInt, lsnT) + " AS " + q(colCommitLSN) + ",\n" +
		"  " + d.Value(data, []string{"source", "lsn"}, change.KindInt, lsnT) + " AS " + q(colLSN) + ",\n" +
		"  " + data + ` AS "_sluice_data",` + "\n" +
		"  " + shapeCol + ",\n" +
		`  v."unparsed_data" IS NOT NULL AS "_sluice_unparsed"` + "\n" +
		pendingSource(p, tp))

	// A record Redshift could not parse (kept by the view without "data")
	// that may be this table's stops the merge: moving the watermarks past
	// it would lose its change without a word. Merge says so first, naming
	// it; this fails the transaction should one land meanwhile. Listing it
	// in the skipped table is how someone decides to go on without it.
	add("DELETE FROM " + tmpRecords + "\nWHERE \"_sluice_unparsed\"\n" +
		"  AND CAST(CASE WHEN \"_sluice_unparsed\" THEN " + d.Literal("a record of "+tp.Source.ID().String()+" could not be parsed by Redshift") + " END AS INTEGER) IS NOT NULL")

	// A record whose columns are not the mirror's (a schema change at the
	// source) must not be merged with a column silently dropped. Merge
	// checks first and says so; this statement fails the transaction if
	// such a record landed between that check and this read.
	// (A truncate's columns do not matter.)
	// The condition is the CASE's own: SQL does not evaluate AND in order.
	bad := "NOT " + shapeOk + " AND \"_sluice_op\" <> 't'"
	add("DELETE FROM " + tmpRecords + "\nWHERE " + bad + "\n" +
		"  AND CAST(CASE WHEN " + bad + " THEN " + d.Literal("schema of "+tp.Source.ID().String()+" changed at the source") + " END AS INTEGER) IS NOT NULL")
	return out
}

// truncateSQL records the run's truncates, computes the table's floor
// (_sluice_floor) and empties the given tables of rows older than it.
func truncateSQL(p *Plan, tp *TablePlan, tables ...string) []string {
	d := p.Config.Dialect
	name := d.Literal(tp.Target.Quoted())
	var out []string
	add := func(s string) { out = append(out, s) }
	add("INSERT INTO " + p.Truncations.Quoted() + ` ("table_name", "commit_lsn", "lsn", "merged_at")` + "\n" +
		"SELECT " + name + ", r." + q(colCommitLSN) + ", r." + q(colLSN) + ", " + d.Now() + "\n" +
		"FROM " + tmpRecords + " AS r\nWHERE r.\"_sluice_op\" = 't'")
	// The floor: the latest truncate of the table, zero or one row. Joins
	// against it, not correlated subqueries, which Redshift decorrelates
	// only in some shapes.
	add("CREATE TEMP TABLE " + tmpFloor + " AS\n" +
		"SELECT x.\"commit_lsn\", x.\"lsn\"\nFROM (\n  SELECT\n    \"commit_lsn\",\n    \"lsn\",\n" +
		"    ROW_NUMBER() OVER (ORDER BY \"commit_lsn\" DESC, \"lsn\" DESC) AS \"_sluice_rank\"\n" +
		"  FROM " + p.Truncations.Quoted() + "\n  WHERE \"table_name\" = " + name + "\n) AS x\nWHERE x.\"_sluice_rank\" = 1")
	// Only the latest truncate matters: forget the older ones.
	add("DELETE FROM " + p.Truncations.Quoted() + "\nUSING " + tmpFloor + "\n" +
		"WHERE " + p.Truncations.Quoted() + ".\"table_name\" = " + name + "\n" +
		"  AND " + posAfter(tmpFloor+`."commit_lsn"`, tmpFloor+`."lsn"`, p.Truncations.Quoted()+`."commit_lsn"`, p.Truncations.Quoted()+`."lsn"`))
	for _, t := range tables {
		add("DELETE FROM " + t + "\nUSING " + tmpFloor + "\n" +
			"WHERE EXISTS (SELECT 1 FROM " + tmpRecords + " AS r WHERE r.\"_sluice_op\" = 't')\n" +
			"  AND " + posAfter(tmpFloor+`."commit_lsn"`, tmpFloor+`."lsn"`, t+"."+q(colCommitLSN), t+"."+q(colLSN)))
	}
	return out
}

// watermarkSQL moves the table's watermarks to the last record read from
// each lane: per Kinesis shard its sequence number, per Kafka partition
// its offset.
func watermarkSQL(p *Plan, tp *TablePlan) []string {
	d := p.Config.Dialect
	name := d.Literal(tp.Target.Quoted())
	pos := p.pos()
	lane, seq, tl, ts := q(pos.lane), q(pos.seq), q(pos.tmpLane), q(pos.tmpSeq)
	var out []string
	add := func(s string) { out = append(out, s) }
	add("DELETE FROM " + p.Watermarks.Quoted() + "\nWHERE \"table_name\" = " + name + "\n  AND " + lane + " IN (SELECT " + tl + " FROM " + tmpRecords + ")")
	add("INSERT INTO " + p.Watermarks.Quoted() + ` ("table_name", ` + lane + ", " + seq + `, "merged_at")` + "\n" +
		"SELECT " + name + ", x." + tl + ", x." + ts + ", " + d.Now() + "\n" +
		"FROM (\n  SELECT\n    " + tl + ",\n    " + ts + ",\n" +
		"    ROW_NUMBER() OVER (PARTITION BY " + tl + " ORDER BY " + pos.desc(d, ts) + ") AS \"_sluice_rank\"\n" +
		"  FROM " + tmpRecords + "\n) AS x\nWHERE x.\"_sluice_rank\" = 1")
	return out
}

// shapeOK tests that a record's columns are the mirror's: same count, same
// names and source types in the same order.
func shapeOK(d Dialect, rec string, tp *TablePlan) string {
	parts := []string{d.ArrayLen(rec, "columns") + " = " + strconv.Itoa(len(tp.Columns))}
	for i, c := range tp.Columns {
		parts = append(parts,
			d.ElemText(rec, []string{"columns"}, i, "name")+" = "+d.Literal(c.Name),
			d.ElemText(rec, []string{"columns"}, i, "type")+" = "+d.Literal(c.Source.Name))
	}
	return "COALESCE(" + strings.Join(parts, "\n    AND ") + ", FALSE)"
}

func unchangedCol(i int) string { return fmt.Sprintf(`"_sluice_u%d"`, i) }
func sourceCol(i int) string    { return fmt.Sprintf(`"_sluice_s%d"`, i) }
func fromCol(i int) string      { return fmt.Sprintf(`"_sluice_from%d"`, i) }

func keyJoin(keys []Column, a, b string) string {
	var parts []string
	for _, c := range keys {
		parts = append(parts, a+"."+q(c.Name)+" = "+b+"."+q(c.Name))
	}
	return strings.Join(parts, " AND ")
}
