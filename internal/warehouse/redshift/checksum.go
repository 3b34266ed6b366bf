package redshift

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/verify"
)

// Checksums, for `sluice verify` against Redshift.
//
// They follow the canonical forms the other warehouses use (the table in
// internal/warehouse/sqlgen.go), so a source bucket and a Redshift bucket
// agree when their rows do: every column turned into a canonical text
// inside the database, a row's text its columns' texts (\N for NULL)
// joined by |, a row's bucket the first 7 hex digits of md5(key text)
// modulo the bucket count, a row's hash the first 15 hex digits of
// md5(row text) as a BIGINT, summed per bucket as DECIMAL(38,0).
//
// Forms Redshift cannot reproduce from what it stores (time with time zone
// is kept in UTC; interval is kept as text; SUPER serialises JSON without
// the spaces jsonb prints; arrays are SUPER; floats need a scientific form
// Redshift cannot print) make ChecksumSQL fail with an error naming the
// column, rather than report a difference that is not one.

// canonical forms in Redshift.
func (redshiftDialect) Canonical(c Column, x string) string {
	switch c.Type.Base {
	case "SMALLINT", "INTEGER", "BIGINT":
		return "CAST(" + x + " AS VARCHAR)"
	case "BOOLEAN":
		return "CASE WHEN " + x + " THEN 'true' WHEN NOT " + x + " THEN 'false' END"
	case "DECIMAL":
		return "CAST(" + x + " AS VARCHAR)" // the scale is kept: 1.50 prints 1.50
	case "REAL", "DOUBLE PRECISION":
		// The canonical form is %.16e (17 significant digits). Redshift's
		// numeric format strings have no scientific-notation element (no
		// EEEE: https://docs.aws.amazon.com/redshift/latest/dg/r_Numeric_formating.html),
		// and computing mantissa and exponent in DOUBLE arithmetic rounds
		// differently from the source's conversion: no form that is sure to
		// agree, so verify refuses such a table by name.
		return ""
	case "VARBYTE":
		return "FROM_VARBYTE(" + x + ", 'hex')"
	case "DATE":
		return "CAST(DATEDIFF(day, DATE '1970-01-01', " + x + ") AS VARCHAR)"
	case "TIMESTAMP":
		return "CAST(DATEDIFF(microsecond, TIMESTAMP '1970-01-01 00:00:00', " + x + ") AS VARCHAR)"
	case "TIMESTAMPTZ":
		return "CAST(DATEDIFF(microsecond, TIMESTAMP '1970-01-01 00:00:00', CONVERT_TIMEZONE('UTC', " + x + ")) AS VARCHAR)"
	case "TIME":
		return "CAST(" + x + " AS VARCHAR)"
	case "VARCHAR", "CHAR":
		return canonicalText(c, x)
	}
	return ""
}

// floatCanonical is the %.16e form of the widened double, with NaN and the
// infinities spelled out, as the Postgres warehouse dialect writes it (the
// Postgres stand-in only: Redshift has no EEEE format).
func floatCanonical(x string) string {
	f := "CAST(" + x + " AS DOUBLE PRECISION)"
	return "CASE WHEN " + f + " = 'NaN' THEN 'NaN' WHEN " + f + " = 'Infinity' THEN 'Infinity' WHEN " + f +
		" = '-Infinity' THEN '-Infinity' ELSE TRIM(TO_CHAR(" + f + ", '9.9999999999999999EEEE')) END"
}

// canonicalText covers the columns kept as text, in both dialects.
func canonicalText(c Column, x string) string {
	name := strings.ToLower(c.Source.Name)
	if c.Source.Base != "" {
		name = strings.ToLower(c.Source.Base)
	}
	switch {
	case strings.HasPrefix(name, "character(") || name == "character" || name == "bpchar":
		return "RTRIM(" + x + ", ' ')"
	case name == "interval", strings.HasPrefix(name, "interval"):
		return "" // canonical months:days:microseconds needs the interval type
	}
	return x
}

func (redshiftDialect) HexInt(x string, digits int) string {
	return "STRTOL(SUBSTRING(" + x + ", 1, " + strconv.Itoa(digits) + "), 16)"
}

// NullText avoids a backslash in a literal, whose meaning differs between
// Redshift's and Postgres' string syntax.
func (redshiftDialect) NullText() string { return "CHR(92) || 'N'" }

func (postgresDialect) Canonical(c Column, x string) string {
	switch c.Type.Base {
	case "SMALLINT", "INTEGER", "BIGINT", "DECIMAL", "TIME":
		return x + "::TEXT"
	case "BOOLEAN":
		return "CASE WHEN " + x + " THEN 'true' WHEN NOT " + x + " THEN 'false' END"
	case "REAL", "DOUBLE PRECISION":
		return floatCanonical(x)
	case "VARBYTE":
		return "encode(" + x + ", 'hex')"
	case "DATE":
		return "(" + x + " - DATE '1970-01-01')::TEXT"
	case "TIMESTAMP", "TIMESTAMPTZ":
		return "(EXTRACT(EPOCH FROM " + x + ") * 1000000)::BIGINT::TEXT"
	case "TIMETZ", "SUPER":
		return x + "::TEXT"
	case "VARCHAR", "CHAR":
		return canonicalText(c, x)
	}
	return ""
}

func (postgresDialect) HexInt(x string, digits int) string {
	return "('x' || lpad(substr(" + x + ", 1, " + strconv.Itoa(digits) + "), 16, '0'))::BIT(64)::BIGINT"
}

func (postgresDialect) NullText() string { return "CHR(92) || 'N'" }

// rowText is the canonical text of the given columns of a row.
func rowText(d Dialect, cols []Column) (string, error) {
	parts := make([]string, len(cols))
	for i, c := range cols {
		e := d.Canonical(c, q(c.Name))
		if e == "" {
			return "", fmt.Errorf("column %q (%s, stored as %s in %s) has no checksum form there: verify cannot compare this table; exclude the column in a pipeline or compare it by hand",
				c.Name, c.Source.Name, d.Type(c.Type), d.Name())
		}
		parts[i] = "COALESCE(" + e + ", " + d.NullText() + ")"
	}
	return strings.Join(parts, " || '|' || "), nil
}

// ChecksumSQL is the query Checksums runs: per bucket, id, rows, and the
// sum of the row hashes as text.
func ChecksumSQL(d Dialect, tp *TablePlan, buckets int) (string, error) {
	keyText, err := rowText(d, identityColumns(tp.Columns))
	if err != nil {
		return "", err
	}
	all, err := rowText(d, tp.Columns)
	if err != nil {
		return "", err
	}
	return "SELECT \"b\", COUNT(*), CAST(SUM(CAST(\"h\" AS DECIMAL(38,0))) AS VARCHAR)\nFROM (\n  SELECT\n    " +
		d.HexInt("MD5("+keyText+")", 7) + " % " + strconv.Itoa(buckets) + " AS \"b\",\n    " +
		d.HexInt("MD5("+all+")", 15) + " AS \"h\"\n  FROM " + tp.Target.Quoted() + "\n) AS x\nGROUP BY \"b\"\nORDER BY \"b\"", nil
}

// BucketRowsSQL lists one bucket's rows: each key column's canonical text,
// then the row's md5, in md5 order of the key, at most limit rows.
func BucketRowsSQL(d Dialect, tp *TablePlan, buckets, bucket, limit int) (string, error) {
	keys := identityColumns(tp.Columns)
	keyText, err := rowText(d, keys)
	if err != nil {
		return "", err
	}
	all, err := rowText(d, tp.Columns)
	if err != nil {
		return "", err
	}
	var cols []string
	for _, c := range keys {
		cols = append(cols, d.Canonical(c, q(c.Name)))
	}
	cols = append(cols, "MD5("+all+")")
	return "SELECT " + strings.Join(cols, ", ") + "\nFROM " + tp.Target.Quoted() +
		"\nWHERE " + d.HexInt("MD5("+keyText+")", 7) + " % " + strconv.Itoa(buckets) + " = " + strconv.Itoa(bucket) +
		"\nORDER BY MD5(" + keyText + ")\nLIMIT " + strconv.Itoa(limit), nil
}

// Side is the mirror's side of a verify comparison.
type Side struct {
	plan *Plan
	conn Conn
}

// VerifySide returns the mirror's side of `sluice verify`, reading through conn.
func (p *Plan) VerifySide(conn Conn) *Side { return &Side{plan: p, conn: conn} }

var _ verify.Side = (*Side)(nil)

func (s *Side) table(t *change.Table) (*TablePlan, error) {
	tp := s.plan.Table(t.ID())
	if tp == nil {
		return nil, fmt.Errorf("table %s is not mirrored by this plan: add it to the tables of the Redshift target", t.ID())
	}
	return tp, nil
}

// Checksums returns each non-empty bucket of the mirror of source table t,
// read through conn: the checksum of `sluice verify` against Redshift.
func Checksums(ctx context.Context, conn Conn, p *Plan, t *change.Table, buckets int) ([]verify.Bucket, error) {
	return p.VerifySide(conn).Checksums(ctx, t, buckets)
}

// Checksums returns each non-empty bucket of the mirrored table.
func (s *Side) Checksums(ctx context.Context, t *change.Table, buckets int) ([]verify.Bucket, error) {
	tp, err := s.table(t)
	if err != nil {
		return nil, err
	}
	sql, err := ChecksumSQL(s.plan.Config.Dialect, tp, buckets)
	if err != nil {
		return nil, fmt.Errorf("checksum %s: %w", tp.Target, err)
	}
	rows, err := s.conn.Query(ctx, sql)
	if err != nil {
		return nil, fmt.Errorf("checksum %s: %w", tp.Target, err)
	}
	out := make([]verify.Bucket, 0, len(rows))
	for _, r := range rows {
		id, err1 := strconv.Atoi(deref(r[0]))
		n, err2 := strconv.ParseInt(deref(r[1]), 10, 64)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("checksum %s: unexpected row %q %q", tp.Target, deref(r[0]), deref(r[1]))
		}
		out = append(out, verify.Bucket{ID: id, Rows: n, Sum: deref(r[2])})
	}
	return out, nil
}

// BucketRows lists one bucket's keys and row hashes.
func (s *Side) BucketRows(ctx context.Context, t *change.Table, buckets, bucket, limit int) ([]verify.KeyRow, error) {
	tp, err := s.table(t)
	if err != nil {
		return nil, err
	}
	sql, err := BucketRowsSQL(s.plan.Config.Dialect, tp, buckets, bucket, limit)
	if err != nil {
		return nil, fmt.Errorf("list rows of %s: %w", tp.Target, err)
	}
	rows, err := s.conn.Query(ctx, sql)
	if err != nil {
		return nil, fmt.Errorf("list rows of %s: %w", tp.Target, err)
	}
	out := make([]verify.KeyRow, 0, len(rows))
	for _, r := range rows {
		keys := make([]string, len(r)-1)
		for i := range keys {
			keys[i] = deref(r[i])
		}
		out = append(out, verify.KeyRow{Key: "(" + strings.Join(keys, ", ") + ")", Hash: deref(r[len(r)-1])})
	}
	return out, nil
}
