package redshift

import (
	"strings"
)

// The incremental merge of a keyless table (change.Table.Keyless: no
// primary key, none declared, REPLICA IDENTITY FULL). Such a table is a
// multiset: identical rows are separate rows and NULL is a value like any
// other. An insert (or snapshot read) adds one row equal to "after", a
// delete removes exactly one row equal to "before", an update does both
// (the producer puts a keyless update as a delete and an insert; one that
// arrives whole is taken apart here).
//
// Redshift has no row id (no ctid, no rowid) to delete one of several
// identical rows, so the merge never deletes "one" row. Statements, in ONE
// transaction with the watermarks, as for keyed tables:
//
//  1. records after the per-shard watermarks (recordsSQL, shared);
//  2. rows: one per delta, +1 for each row added, -1 for each row removed;
//     a record put twice by the producer (same position and op: a retry,
//     or a batch put again after a crash) counts once, in this run or a
//     later one: the changes counted are kept per table (TablePlan.Applied,
//     forgotten once a truncate passes them). Snapshot reads all share
//     their snapshot's position and cannot be told from identical rows:
//     they are all counted;
//  3. truncates (truncateSQL, shared): rows older than the floor go;
//  4. changes: the deltas after the floor, grouped by row value compared
//     NULL-safely (eqParts), with the net count per value;
//  5. merge: one row per value whose net count is not zero;
//  6. keep: for each value with a negative net count n, the target's equal
//     rows but the |n| oldest, copied out; then all equal rows are deleted
//     and the kept ones put back (so exactly |n| are gone, and the rest
//     keep their own positions);
//  7. for each value with a positive net count n, the n newest of its
//     added rows are inserted, each with its own position.
//
// Counts commute, so the order of the records within a run does not
// matter; the source order (all changes of equal rows share a partition
// key, hence a shard, in order) guarantees that no removal precedes the
// addition it removes across runs. The per-shard watermarks, moved in the
// same transaction, make a re-run change nothing.
//
// Equality is NULL-safe and exact. Redshift has no IS NOT DISTINCT FROM,
// and "(a = b OR (a IS NULL AND b IS NULL))" would make every join with the
// target a nested loop, so each column compares as a few plain equalities
// that a hash join can use (eqParts): whether it is NULL, its value with
// NULL replaced by a constant of its type, and for VARCHAR its length,
// because Redshift compares VARCHAR ignoring trailing blanks but LEN counts
// them (https://docs.aws.amazon.com/redshift/latest/dg/r_Character_types.html#r_Character_types-significance-of-trailing-blanks,
// https://docs.aws.amazon.com/redshift/latest/dg/r_LEN.html). SUPER cannot
// be compared or grouped: it compares as its JSON_SERIALIZE text
// (https://docs.aws.amazon.com/redshift/latest/dg/JSON_SERIALIZE.html).
// VARBYTE compares and groups as it is
// (https://docs.aws.amazon.com/redshift/latest/dg/r_VARBYTE_type.html).
const tmpKeep = `"_sluice_keep"`

func multisetMergeSQL(p *Plan, tp *TablePlan) []string {
	d := p.Config.Dialect
	target := tp.Target.Quoted()
	cols := tp.Columns
	var out []string
	add := func(s string) { out = append(out, s) }
	temps := []string{tmpRecords, tmpRows, tmpFloor, tmpChanges, tmpMerge, tmpKeep}
	for _, t := range temps {
		add("DROP TABLE IF EXISTS " + t)
	}

	// 1. records
	out = append(out, recordsSQL(p, tp)...)

	// 2. rows: the deltas. A record put twice (a producer's retry) has the
	// same position and op: the first copy counts.
	rec := `r."_sluice_data"`
	var plus, minus strings.Builder
	plus.WriteString("SELECT\n  r." + q(colCommitLSN) + ",\n  r." + q(colLSN) + ",\n  1 AS \"_sluice_n\"")
	minus.WriteString("SELECT\n  r." + q(colCommitLSN) + ",\n  r." + q(colLSN) + ",\n  -1 AS \"_sluice_n\"")
	for _, c := range cols {
		after := d.Value(rec, []string{"after", c.Name}, c.Kind, c.Type)
		before := d.Value(rec, []string{"before", c.Name}, c.Kind, c.Type)
		if c.Toastable {
			// An update that left a TOASTed value out takes it from its old
			// row (whole under REPLICA IDENTITY FULL).
			after = "CASE WHEN " + d.Contains(rec, []string{"unchanged"}, c.Name) + " THEN " + before + " ELSE " + after + " END"
		}
		plus.WriteString(",\n  " + after + " AS " + q(c.Name))
		minus.WriteString(",\n  " + before + " AS " + q(c.Name))
	}
	applied := tp.Applied.Quoted()
	from := "\nFROM (\n  SELECT\n    x.*,\n" +
		"    ROW_NUMBER() OVER (PARTITION BY x." + q(colCommitLSN) + ", x." + q(colLSN) + ", x." + q(colOp) +
		" ORDER BY x." + q(p.pos().tmpLane) + ", " + p.pos().desc(d, "x."+q(p.pos().tmpSeq)) + ") AS \"_sluice_copy\"\n" +
		"  FROM " + tmpRecords + " AS x\n) AS r\n" +
		"LEFT JOIN " + applied + " AS a\n  ON a." + q(colCommitLSN) + " = r." + q(colCommitLSN) + " AND a." + q(colLSN) + " = r." + q(colLSN) +
		" AND a." + q(colOp) + " = r." + q(colOp) + "\n"
	once := "r.\"_sluice_copy\" = 1 AND a." + q(colOp) + " IS NULL"
	plus.WriteString(from + "WHERE r.\"_sluice_op\" IN ('r', 'c', 'u')\n  AND ((" + once + ") OR r.\"_sluice_op\" = 'r')")
	minus.WriteString(from + "WHERE (r.\"_sluice_op\" = 'd' OR (r.\"_sluice_op\" = 'u' AND " + d.IsObject(d.Field(rec, "before")) + "))\n" +
		"  AND " + once)
	add("CREATE TEMP TABLE " + tmpRows + " AS\n" + plus.String() + "\nUNION ALL\n" + minus.String())

	// 3. truncates (applied changes older than the floor are forgotten:
	// a record before it is dropped anyway)
	out = append(out, truncateSQL(p, tp, target, applied)...)

	// 4. changes: after the floor (and the snapshot rows at a reset
	// marker's own position, as for keyed tables), grouped by value.
	var part []string
	for _, c := range cols {
		part = append(part, eqParts(d, c, "z")...)
	}
	// The group of a value: the smallest delta id among its equal rows, so
	// that no value needs ordering (SUPER and VARBYTE have none).
	add("CREATE TEMP TABLE " + tmpChanges + " AS\nSELECT\n  y.*,\n" +
		"  SUM(y.\"_sluice_n\") OVER (PARTITION BY y.\"_sluice_gid\") AS \"_sluice_net\",\n" +
		"  ROW_NUMBER() OVER (PARTITION BY y.\"_sluice_gid\" ORDER BY y." + q(colCommitLSN) + ", y." + q(colLSN) + ", y.\"_sluice_n\") AS \"_sluice_first\",\n" +
		"  ROW_NUMBER() OVER (PARTITION BY y.\"_sluice_gid\", y.\"_sluice_n\" ORDER BY y." + q(colCommitLSN) + " DESC, y." + q(colLSN) + " DESC) AS \"_sluice_added\"\n" +
		"FROM (\n  SELECT\n    z.*,\n    MIN(z.\"_sluice_id\") OVER (PARTITION BY " + strings.Join(part, ", ") + ") AS \"_sluice_gid\"\n" +
		"  FROM (\n    SELECT\n      x.*,\n" +
		"      ROW_NUMBER() OVER (ORDER BY x." + q(colCommitLSN) + ", x." + q(colLSN) + ", x.\"_sluice_n\") AS \"_sluice_id\"\n" +
		"    FROM " + tmpRows + " AS x\n    LEFT JOIN " + tmpFloor + " AS f ON 1 = 1\n" +
		"    WHERE f.\"commit_lsn\" IS NULL\n       OR " + posAfter("x."+q(colCommitLSN), "x."+q(colLSN), `f."commit_lsn"`, `f."lsn"`) +
		"\n       OR (x." + q(colCommitLSN) + ` = f."commit_lsn" AND x.` + q(colLSN) + ` = 0 AND f."lsn" = 0)` + "\n  ) AS z\n) AS y")

	// 5. merge: one row per value whose count changes.
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = q(c.Name)
	}
	withPos := func(prefix string) string {
		n := make([]string, 0, len(names)+2)
		for _, s := range append(append([]string{}, names...), q(colCommitLSN), q(colLSN)) {
			n = append(n, prefix+s)
		}
		return strings.Join(n, ", ")
	}
	add("CREATE TEMP TABLE " + tmpMerge + " AS\nSELECT\n  c.\"_sluice_gid\",\n  c.\"_sluice_net\",\n  " + withPos("c.") +
		"\nFROM " + tmpChanges + " AS c\nWHERE c.\"_sluice_first\" = 1\n  AND c.\"_sluice_net\" <> 0")

	// 6. keep: of the target's rows equal to a value that loses n rows, all
	// but the n oldest.
	eq := rowEq(d, cols, "t", "m", "\n    AND ")
	add("CREATE TEMP TABLE " + tmpKeep + " AS\nSELECT\n  " + withPos("k.") + "\nFROM (\n  SELECT\n    " + withPos("t.") + ",\n" +
		"    m.\"_sluice_net\",\n" +
		"    ROW_NUMBER() OVER (PARTITION BY m.\"_sluice_gid\" ORDER BY t." + q(colCommitLSN) + ", t." + q(colLSN) + ") AS \"_sluice_rank\"\n" +
		"  FROM " + target + " AS t\n  JOIN " + tmpMerge + " AS m\n    ON " + eq + "\n  WHERE m.\"_sluice_net\" < 0\n) AS k\n" +
		"WHERE k.\"_sluice_rank\" > -k.\"_sluice_net\"")
	add("DELETE FROM " + target + "\nUSING " + tmpMerge + " AS m\nWHERE m.\"_sluice_net\" < 0\n  AND " + rowEq(d, cols, target, "m", "\n  AND "))
	add("INSERT INTO " + target + " (" + withPos("") + ")\nSELECT " + withPos("") + "\nFROM " + tmpKeep)

	// 7. the rows a value gains: its n newest added rows.
	add("INSERT INTO " + target + " (" + withPos("") + ")\nSELECT " + withPos("c.") + "\nFROM " + tmpChanges + " AS c\n" +
		"JOIN " + tmpMerge + " AS m ON m.\"_sluice_gid\" = c.\"_sluice_gid\"\n" +
		"WHERE m.\"_sluice_net\" > 0\n  AND c.\"_sluice_n\" = 1\n  AND c.\"_sluice_added\" <= m.\"_sluice_net\"")

	// The changes counted, so that a copy put in a later run is not.
	add("INSERT INTO " + applied + " (" + q(colCommitLSN) + ", " + q(colLSN) + ", " + q(colOp) + ")\n" +
		"SELECT DISTINCT r." + q(colCommitLSN) + ", r." + q(colLSN) + ", r." + q(colOp) + "\nFROM " + tmpRecords + " AS r\n" +
		"LEFT JOIN " + applied + " AS a\n  ON a." + q(colCommitLSN) + " = r." + q(colCommitLSN) + " AND a." + q(colLSN) + " = r." + q(colLSN) +
		" AND a." + q(colOp) + " = r." + q(colOp) + "\n" +
		"WHERE r." + q(colOp) + " IN ('c', 'u', 'd')\n  AND a." + q(colOp) + " IS NULL")
	out = append(out, watermarkSQL(p, tp)...)
	for i := len(temps) - 1; i >= 0; i-- {
		add("DROP TABLE " + temps[i])
	}
	return out
}

// eqParts are expressions over column c of the row alias whose pairwise
// equality is NULL-safe, exact equality of c, and which a hash join, a
// PARTITION BY and an ORDER BY can all use: whether c is NULL, c with NULL
// replaced by a constant of its type, and for VARCHAR its length (Redshift
// compares VARCHAR ignoring trailing blanks; LEN counts them).
func eqParts(d Dialect, c Column, alias string) []string {
	ref := alias + "." + q(c.Name)
	isNull := "CASE WHEN " + ref + " IS NULL THEN 1 ELSE 0 END"
	switch c.Type.Base {
	case "SUPER":
		return []string{isNull, "COALESCE(" + d.SuperText(ref) + ", '')"}
	case "VARCHAR":
		return []string{isNull, "COALESCE(" + ref + ", '')", "COALESCE(LENGTH(" + ref + "), 0)"}
	}
	return []string{isNull, "COALESCE(" + ref + ", " + zeroValue(d, c.Type) + ")"}
}

// zeroValue is a constant of type t standing in for NULL in eqParts (the
// NULL flag beside it tells the two apart).
func zeroValue(d Dialect, t WType) string {
	switch t.Base {
	case "BOOLEAN":
		return "FALSE"
	case "SMALLINT", "INTEGER", "BIGINT", "DECIMAL", "REAL", "DOUBLE PRECISION":
		return "0"
	case "CHAR", "VARCHAR":
		return "''"
	case "DATE":
		return "CAST('1970-01-01' AS DATE)"
	case "TIME":
		return "CAST('00:00:00' AS TIME)"
	case "TIMETZ":
		return "CAST('00:00:00+00' AS " + d.Type(t) + ")"
	case "TIMESTAMP":
		return "CAST('1970-01-01 00:00:00' AS TIMESTAMP)"
	case "TIMESTAMPTZ":
		return "CAST('1970-01-01 00:00:00+00' AS TIMESTAMPTZ)"
	}
	return "CAST('' AS " + d.Type(t) + ")" // VARBYTE
}

// rowEq is the NULL-safe equality of every column of rows a and b, as
// plain equalities (eqParts).
func rowEq(d Dialect, cols []Column, a, b, and string) string {
	var parts []string
	for _, c := range cols {
		pa, pb := eqParts(d, c, a), eqParts(d, c, b)
		for i := range pa {
			parts = append(parts, pa[i]+" = "+pb[i])
		}
	}
	return strings.Join(parts, and)
}
