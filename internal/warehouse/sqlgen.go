package warehouse

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/sluice-dev/sluice/internal/change"
)

// StateSchema is the schema of sluice's own tables in a warehouse.
const StateSchema = "_sluice"

var (
	stateTable  = change.TableID{Schema: StateSchema, Name: "_sluice_state"}
	streamTable = change.TableID{Schema: StateSchema, Name: "_sluice_stream"}
)

// StateTable and StreamTable name sluice's own tables, for status queries.
func StateTable() change.TableID  { return stateTable }
func StreamTable() change.TableID { return streamTable }

// SetupSQL creates sluice's state tables. One row per mirrored source table
// (its snapshot flag, applied position and the shape the target was created
// with) and one row per stream shard (the last sequence applied).
func SetupSQL() []string {
	return []string{
		"CREATE SCHEMA IF NOT EXISTS " + change.QuoteIdent(StateSchema),
		"CREATE TABLE IF NOT EXISTS " + stateTable.Quoted() + ` (
  "source_schema" VARCHAR NOT NULL,
  "source_table" VARCHAR NOT NULL,
  "snapshotted" BOOLEAN NOT NULL,
  "commit_lsn" BIGINT NOT NULL,
  "lsn" BIGINT NOT NULL,
  "applied" VARCHAR NOT NULL,
  "shape" VARCHAR,
  PRIMARY KEY ("source_schema", "source_table")
)`,
		"CREATE TABLE IF NOT EXISTS " + streamTable.Quoted() + ` (
  "stream" VARCHAR NOT NULL,
  "shard" VARCHAR NOT NULL,
  "sequence" VARCHAR NOT NULL,
  PRIMARY KEY ("stream", "shard")
)`,
	}
}

// SelectStateSQL reads every state row: schema, table, snapshotted,
// commit_lsn, lsn, shape.
func SelectStateSQL() string {
	return `SELECT "source_schema", "source_table", "snapshotted", "commit_lsn", "lsn", "shape" FROM ` + stateTable.Quoted()
}

// PutStateSQL replaces one table's state row. LSNs are stored as BIGINT
// (Postgres LSNs stay far below 2^63) with a readable copy in "applied".
func PutStateSQL(id change.TableID, st change.TableState, shape *change.Table) []string {
	sh := "NULL"
	if shape != nil {
		sh = change.QuoteLiteral(EncodeShape(shape))
	}
	return []string{
		DeleteStateSQL(id),
		fmt.Sprintf(`INSERT INTO %s ("source_schema", "source_table", "snapshotted", "commit_lsn", "lsn", "applied", "shape") VALUES (%s, %s, %t, %d, %d, %s, %s)`,
			stateTable.Quoted(), change.QuoteLiteral(id.Schema), change.QuoteLiteral(id.Name), st.Snapshotted,
			int64(st.Applied.CommitLSN), int64(st.Applied.LSN), change.QuoteLiteral(st.Applied.String()), sh),
	}
}

// DeleteStateSQL forgets one table's state.
func DeleteStateSQL(id change.TableID) string {
	return fmt.Sprintf(`DELETE FROM %s WHERE "source_schema" = %s AND "source_table" = %s`,
		stateTable.Quoted(), change.QuoteLiteral(id.Schema), change.QuoteLiteral(id.Name))
}

// PutMarkSQL replaces one stream shard's checkpoint.
func PutMarkSQL(m StreamMark) []string {
	return []string{
		fmt.Sprintf(`DELETE FROM %s WHERE "stream" = %s AND "shard" = %s`, streamTable.Quoted(), change.QuoteLiteral(m.Stream), change.QuoteLiteral(m.Shard)),
		fmt.Sprintf(`INSERT INTO %s ("stream", "shard", "sequence") VALUES (%s, %s, %s)`, streamTable.Quoted(),
			change.QuoteLiteral(m.Stream), change.QuoteLiteral(m.Shard), change.QuoteLiteral(m.Sequence)),
	}
}

// SelectMarksSQL reads one stream's checkpoints: shard, sequence.
func SelectMarksSQL(stream string) string {
	return fmt.Sprintf(`SELECT "shard", "sequence" FROM %s WHERE "stream" = %s`, streamTable.Quoted(), change.QuoteLiteral(stream))
}

// CreateTableSQL creates the target table for a source table, primary key
// declared, every identifier quoted.
func CreateTableSQL(d Dialect, target change.TableID, t *change.Table) string {
	var b strings.Builder
	b.WriteString("CREATE TABLE ")
	b.WriteString(target.Quoted())
	b.WriteString(" (\n")
	for _, c := range t.Columns {
		b.WriteString("  ")
		b.WriteString(change.QuoteIdent(c.Name))
		b.WriteByte(' ')
		b.WriteString(d.ColumnType(TypeOf(c)))
		if c.Key {
			b.WriteString(" NOT NULL")
		}
		b.WriteString(",\n")
	}
	if t.Keyless() {
		// A multiset: no key and no NOT NULL, exactly what the source has.
		return strings.TrimSuffix(b.String(), ",\n") + "\n)"
	}
	b.WriteString("  PRIMARY KEY (")
	b.WriteString(quoteList(t.KeyNames()))
	b.WriteString(")\n)")
	return b.String()
}

// AlterTableSQL returns the statements that bring a target table created
// for from to the shape of to: ADD COLUMN, DROP COLUMN, and SET DATA TYPE
// when a column's target type changed. A changed primary key cannot be
// altered in place: the table must be snapshotted again.
func AlterTableSQL(d Dialect, target change.TableID, from, to *change.Table) ([]string, error) {
	if fk, tk := from.KeyNames(), to.KeyNames(); len(fk) > 0 && strings.Join(fk, "\x00") != strings.Join(tk, "\x00") {
		return nil, fmt.Errorf("primary key of %s changed at the source from (%s) to (%s): a warehouse table cannot change its key in place; resnapshot the table (sluice resnapshot %s)",
			to.ID(), strings.Join(fk, ", "), strings.Join(tk, ", "), to.ID())
	}
	var out []string
	q := target.Quoted()
	// Drops first: DuckDB cannot commit a transaction that adds a column
	// with a default expression and then drops another one ("another
	// transaction has altered this table").
	// A column dropped and added again under the same name (a new number
	// at the source) is dropped and added here too: its old values are not
	// its values.
	renumbered := func(name string) bool {
		i, j := from.Column(name), to.Column(name)
		return i >= 0 && j >= 0 && from.Columns[i].Num != 0 && to.Columns[j].Num != 0 && from.Columns[i].Num != to.Columns[j].Num
	}
	for _, c := range from.Columns {
		if to.Column(c.Name) < 0 || renumbered(c.Name) {
			out = append(out, fmt.Sprintf("ALTER TABLE %s DROP COLUMN %s", q, change.QuoteIdent(c.Name)))
		}
	}
	for _, c := range to.Columns {
		i := from.Column(c.Name)
		if i < 0 || renumbered(c.Name) {
			add := fmt.Sprintf("ALTER TABLE %s ADD COLUMN %s %s", q, change.QuoteIdent(c.Name), d.ColumnType(TypeOf(c)))
			if c.Missing == nil || c.Missing.IsNull() {
				out = append(out, add)
				continue
			}
			// Rows that predate the column hold its fast default at the
			// source but send no change: give them the value through a
			// default, then drop the default (inserts name every column).
			lit, err := d.Literal(to, to.Column(c.Name), *c.Missing)
			if err != nil {
				return nil, fmt.Errorf("default of added column %q of %s: %w", c.Name, to.ID(), err)
			}
			out = append(out, add+" DEFAULT "+lit,
				fmt.Sprintf("ALTER TABLE %s ALTER COLUMN %s DROP DEFAULT", q, change.QuoteIdent(c.Name)))
			continue
		}
		old := from.Columns[i]
		if old.Type.Name == "" { // shape known by column names only
			continue
		}
		if ot, nt := d.ColumnType(TypeOf(old)), d.ColumnType(TypeOf(c)); ot != nt {
			out = append(out, fmt.Sprintf("ALTER TABLE %s ALTER COLUMN %s SET DATA TYPE %s USING CAST(%s AS %s)", q,
				change.QuoteIdent(c.Name), nt, change.QuoteIdent(c.Name), nt))
		}
	}
	return out, nil
}

// CreateStageSQL creates the staging table for a segment's rows: the op,
// the unchanged mask, then the table's columns in order.
func CreateStageSQL(d Dialect, name string, t *change.Table) string {
	defs := []string{
		change.QuoteIdent(StageOp) + " VARCHAR",
		change.QuoteIdent(StageUnchanged) + " VARCHAR",
	}
	for _, c := range t.Columns {
		defs = append(defs, change.QuoteIdent(c.Name)+" "+d.StageType(TypeOf(c)))
	}
	return d.CreateStage(name, defs)
}

// MergeSQL returns the statements that merge a loaded staging table into
// the target, set-wise:
//
//  1. when some rows hold unchanged TOAST values (the columns in unchanged),
//     copy the target's stored values of those rows into a keep table;
//  2. delete every staged key from the target but those staged as new
//     ('i': first inserted in this batch, or landing in a table just
//     emptied), skipped when all are new (appendOnly);
//  3. insert the staged rows that are not deletes, unchanged columns taken
//     from the keep table.
//
// Delete then insert rather than MERGE: it is one shape for every
// warehouse (Redshift's MERGE is restricted), and an update that moved a
// row's key is simply a delete of the old key and an insert of the new one.
func MergeSQL(d Dialect, target change.TableID, stage string, t *change.Table, unchanged []int, appendOnly bool) []string {
	st := d.StageName(stage)
	keep := d.StageName(stage + "_keep")
	var out []string
	keyOn := func(a, b string, fromStage bool) string {
		parts := make([]string, len(t.Key))
		for i, k := range t.Key {
			c := t.Columns[k]
			right := b + "." + change.QuoteIdent(c.Name)
			if fromStage {
				right = d.FromStage(TypeOf(c), right)
			}
			parts[i] = a + "." + change.QuoteIdent(c.Name) + " = " + right
		}
		return strings.Join(parts, " AND ")
	}
	if len(unchanged) > 0 {
		cols := make([]string, 0, len(t.Key)+len(unchanged))
		for _, k := range t.Key {
			cols = append(cols, "t."+change.QuoteIdent(t.Columns[k].Name))
		}
		for _, i := range unchanged {
			cols = append(cols, "t."+change.QuoteIdent(t.Columns[i].Name))
		}
		defs := d.CreateStage(stage+"_keep", nil)
		// CREATE ... AS SELECT: the dialect's CreateStage with no columns
		// ends in the table name, ready for AS.
		out = append(out, defs+" AS SELECT "+strings.Join(cols, ", ")+" FROM "+target.Quoted()+" t JOIN "+st+" s ON "+
			keyOn("t", "s", true)+" WHERE s."+change.QuoteIdent(StageUnchanged)+" IS NOT NULL")
	}
	if !appendOnly {
		out = append(out, "DELETE FROM "+target.Quoted()+" t USING "+st+" s WHERE s."+change.QuoteIdent(StageOp)+" <> 'i' AND "+keyOn("t", "s", true))
	}
	names := make([]string, len(t.Columns))
	exprs := make([]string, len(t.Columns))
	isUnchanged := map[int]bool{}
	for _, i := range unchanged {
		isUnchanged[i] = true
	}
	for i, c := range t.Columns {
		names[i] = change.QuoteIdent(c.Name)
		e := d.FromStage(TypeOf(c), "s."+names[i])
		if isUnchanged[i] {
			e = fmt.Sprintf("CASE WHEN substr(s.%s, %d, 1) = '1' THEN k.%s ELSE %s END", change.QuoteIdent(StageUnchanged), i+1, names[i], e)
		}
		exprs[i] = e
	}
	from := " FROM " + st + " s"
	if len(unchanged) > 0 {
		parts := make([]string, len(t.Key))
		for i, k := range t.Key {
			n := change.QuoteIdent(t.Columns[k].Name)
			parts[i] = "k." + n + " = " + d.FromStage(TypeOf(t.Columns[k]), "s."+n)
		}
		from += " LEFT JOIN " + keep + " k ON " + strings.Join(parts, " AND ")
	}
	out = append(out, "INSERT INTO "+target.Quoted()+" ("+strings.Join(names, ", ")+") SELECT "+strings.Join(exprs, ", ")+from+
		" WHERE s."+change.QuoteIdent(StageOp)+" <> 'd'")
	return out
}

// StageMerger is an optional Dialect ability: the statements merging a
// loaded staging table into the target (MergeSQL's arguments), used
// instead of MergeSQL; they must do what MergeSQL's do.
type StageMerger interface {
	StageMergeSQL(target change.TableID, stage string, t *change.Table, unchanged []int, appendOnly bool) []string
}

// StageMergeSQL is what a target runs to merge a loaded staging table:
// the dialect's StageMergeSQL, else MergeSQL.
func StageMergeSQL(d Dialect, target change.TableID, stage string, t *change.Table, unchanged []int, appendOnly bool) []string {
	if m, ok := d.(StageMerger); ok {
		return m.StageMergeSQL(target, stage, t, unchanged, appendOnly)
	}
	return MergeSQL(d, target, stage, t, unchanged, appendOnly)
}

// RowIDer is the Dialect ability that keyless tables need: the name of a
// column that tells a target table's physical rows apart (DuckDB's rowid,
// Postgres' ctid), so that one of several identical rows can be deleted.
type RowIDer interface {
	RowID() string
}

// CanDeleteEqualRows reports, for keyless table t, whether the dialect can
// delete one of several equal rows (it has a RowIDer).
func CanDeleteEqualRows(d Dialect, t *change.Table) error {
	if _, ok := d.(RowIDer); !ok {
		return fmt.Errorf("table %s has no key and this warehouse cannot delete one of several equal rows: add a primary key at the source, or declare a key for the table in the pipeline", t.ID())
	}
	return nil
}

// MultisetMergeSQL returns the statements that merge a loaded staging
// table into a keyless target table. The stage holds one row per row to
// add (op 'i') and one per row to remove (op 'd'), whole rows. Rows are
// equal when their canonical texts (the checksum's) are, so NULLs compare
// equal and no type needs an equality operator:
//
//  1. for each distinct staged 'd' row, delete that many target rows equal
//     to it, chosen by the dialect's row id (skipped when appendOnly);
//  2. insert the 'i' rows.
//
// The source order guarantees that every removed row exists: a batch's
// counts are net counts per value (Plan), which commute.
func MultisetMergeSQL(d Dialect, target change.TableID, stage string, t *change.Table, appendOnly bool) ([]string, error) {
	st := d.StageName(stage)
	names := make([]string, len(t.Columns))
	conv := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		names[i] = change.QuoteIdent(c.Name)
		conv[i] = d.FromStage(TypeOf(c), "s."+names[i]) + " AS " + names[i]
	}
	var out []string
	if !appendOnly {
		if err := CanDeleteEqualRows(d, t); err != nil {
			return nil, err
		}
		rid := d.(RowIDer).RowID()
		all := allColumns(t)
		hash := func(alias string) string { return "md5(" + RowTextSQL(d, t, all, alias) + ")" }
		removed := "SELECT " + hash("r") + " AS h, count(*) AS n FROM (SELECT " + strings.Join(conv, ", ") + " FROM " + st +
			" s WHERE s." + change.QuoteIdent(StageOp) + " = 'd') r GROUP BY 1"
		out = append(out, "DELETE FROM "+target.Quoted()+" WHERE "+rid+" IN (SELECT x.rid FROM (SELECT t."+rid+" AS rid, "+hash("t")+
			" AS h, row_number() OVER (PARTITION BY "+hash("t")+" ORDER BY t."+rid+") AS rn FROM "+target.Quoted()+" t) x JOIN ("+
			removed+") c ON x.h = c.h WHERE x.rn <= c.n)")
	}
	exprs := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		exprs[i] = d.FromStage(TypeOf(c), "s."+names[i])
	}
	out = append(out, "INSERT INTO "+target.Quoted()+" ("+strings.Join(names, ", ")+") SELECT "+strings.Join(exprs, ", ")+
		" FROM "+st+" s WHERE s."+change.QuoteIdent(StageOp)+" = 'i'")
	return out, nil
}

// DropStageSQL drops a staging table and its keep table.
func DropStageSQL(d Dialect, stage string, unchanged bool) []string {
	out := []string{"DROP TABLE IF EXISTS " + d.StageName(stage)}
	if unchanged {
		out = append(out, "DROP TABLE IF EXISTS "+d.StageName(stage+"_keep"))
	}
	return out
}

func quoteList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = change.QuoteIdent(n)
	}
	return strings.Join(q, ", ")
}

// Checksums.
//
// Every column is turned into a canonical text inside the database, the
// same text in every dialect for the same source value:
//
//	integers, booleans       decimal digits, true/false
//	numeric, decimal         the exact digits as Postgres prints them (the
//	                         scale kept: 1.50 stays 1.50; NaN as NaN)
//	real, double precision   %.16e scientific form of the (widened) double,
//	                         which identifies it exactly; NaN, Infinity,
//	                         -Infinity spelled so
//	text, varchar, enums, other types stored as text
//	                         the text itself; character(n) without trailing blanks
//	bytea                    lower-case hex
//	date                     days since 1970-01-01; infinity/-infinity
//	timestamp, timestamptz   microseconds since 1970-01-01 00:00 UTC; infinity/-infinity
//	time, timetz             HH:MM:SS[.ffffff][+HH[:MM]] as Postgres prints it
//	interval                 months:days:microseconds
//	json, jsonb              the document text as stored (jsonb is already
//	                         normalised by the source; json is kept verbatim)
//	uuid                     lower-case hyphenated text
//	arrays                   {e1,e2,...} of the elements' canonical forms, \N for NULL
//
// A row's text is its columns' canonical forms (\N for NULL) joined by |.
// The bucket of a row is the first 7 hex digits of md5(key text) modulo the
// bucket count; a row's hash is the first 15 hex digits of md5(row text) as
// a BIGINT, summed per bucket in a type that cannot overflow (numeric in
// Postgres, HUGEINT in DuckDB) and returned as decimal text.

// RowTextSQL is the canonical text of the given columns of a row, an
// expression over column references qualified by alias (empty for none).
func RowTextSQL(d Dialect, t *change.Table, cols []int, alias string) string {
	parts := make([]string, len(cols))
	for i, k := range cols {
		c := t.Columns[k]
		ref := change.QuoteIdent(c.Name)
		if alias != "" {
			ref = alias + "." + ref
		}
		parts[i] = "coalesce(" + d.Canonical(TypeOf(c), ref) + `, '\N')`
	}
	return strings.Join(parts, " || '|' || ")
}

func allColumns(t *change.Table) []int {
	out := make([]int, len(t.Columns))
	for i := range out {
		out[i] = i
	}
	return out
}

// ChecksumSQL returns the query Checksums runs: per bucket (id, rows, sum
// as text), over table (where the rows live) with t's columns.
func ChecksumSQL(d Dialect, table change.TableID, t *change.Table, buckets int) string {
	bucket := d.HexInt("md5("+RowTextSQL(d, t, t.Identity(), "")+")", 7) + " % " + strconv.Itoa(buckets)
	hash := d.HexInt("md5("+RowTextSQL(d, t, allColumns(t), "")+")", 15)
	return "SELECT b, count(*), CAST(sum(h) AS VARCHAR) FROM (SELECT " + bucket + " AS b, " + hash + " AS h FROM " +
		table.Quoted() + ") x GROUP BY b ORDER BY b"
}

// BucketKeysSQL returns the query BucketKeys runs: the canonical text of
// each key column, then the row's md5, for the rows of one bucket, in md5
// order of their key (the same order in every dialect), at most limit rows.
func BucketKeysSQL(d Dialect, table change.TableID, t *change.Table, buckets, id, limit int) string {
	keyText := RowTextSQL(d, t, t.Identity(), "")
	cols := make([]string, 0, len(t.Identity())+1)
	for _, k := range t.Identity() {
		cols = append(cols, d.Canonical(TypeOf(t.Columns[k]), change.QuoteIdent(t.Columns[k].Name)))
	}
	cols = append(cols, "md5("+RowTextSQL(d, t, allColumns(t), "")+")")
	return "SELECT " + strings.Join(cols, ", ") + " FROM " + table.Quoted() + " WHERE " +
		d.HexInt("md5("+keyText+")", 7) + " % " + strconv.Itoa(buckets) + " = " + strconv.Itoa(id) +
		" ORDER BY md5(" + keyText + ") LIMIT " + strconv.Itoa(limit)
}

// FillBuckets returns buckets 0..n-1, empty where rows has none.
func FillBuckets(rows []Bucket, n int) []Bucket {
	out := make([]Bucket, n)
	for i := range out {
		out[i] = Bucket{ID: i, Sum: "0"}
	}
	for _, r := range rows {
		if r.ID >= 0 && r.ID < n {
			out[r.ID] = r
		}
	}
	return out
}

// DiffBuckets returns the ids of buckets whose rows or sums differ.
func DiffBuckets(a, b []Bucket) []int {
	var out []int
	for i := 0; i < len(a) || i < len(b); i++ {
		var x, y Bucket
		if i < len(a) {
			x = a[i]
		}
		if i < len(b) {
			y = b[i]
		}
		if x.Rows != y.Rows || x.Sum != y.Sum {
			out = append(out, i)
		}
	}
	return out
}

// RowDiff is one key whose row differs between source and target.
type RowDiff struct {
	Key            []string
	Source, Target string // row hashes; empty when the row is missing on that side
}

// DiffRows compares the BucketKeys of one bucket on both sides.
func DiffRows(source, target []RowHash) []RowDiff {
	key := func(r RowHash) string { return strings.Join(r.Key, "\x00") }
	tm := map[string]RowHash{}
	for _, r := range target {
		tm[key(r)] = r
	}
	var out []RowDiff
	for _, s := range source {
		k := key(s)
		t, ok := tm[k]
		delete(tm, k)
		if !ok || t.Hash != s.Hash {
			out = append(out, RowDiff{Key: s.Key, Source: s.Hash, Target: t.Hash})
		}
	}
	for _, t := range target {
		if _, ok := tm[key(t)]; ok {
			out = append(out, RowDiff{Key: t.Key, Target: t.Hash})
		}
	}
	return out
}
