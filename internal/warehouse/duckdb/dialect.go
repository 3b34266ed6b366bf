package duckdb

import (
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/warehouse"
)

// Dialect is DuckDB's side of the shared SQL (warehouse.Dialect). Staging
// columns are all VARCHAR, filled by the Appender with the values' text
// forms (rewritten where DuckDB reads Postgres' form differently: BC dates,
// intervals, bytea as hex, arrays as JSON); the merge casts them.
type Dialect struct{}

var _ warehouse.Dialect = Dialect{}

func scalarType(ct warehouse.ColType) string {
	switch ct.Family {
	case warehouse.FamBool:
		return "BOOLEAN"
	case warehouse.FamInt16:
		return "SMALLINT"
	case warehouse.FamInt32:
		return "INTEGER"
	case warehouse.FamInt64:
		return "BIGINT"
	case warehouse.FamFloat32:
		return "FLOAT"
	case warehouse.FamFloat64:
		return "DOUBLE"
	case warehouse.FamDecimal:
		return fmt.Sprintf("DECIMAL(%d,%d)", ct.Precision, ct.Scale)
	case warehouse.FamBytes:
		return "BLOB"
	case warehouse.FamDate:
		return "DATE"
	case warehouse.FamTime:
		return "TIME"
	case warehouse.FamTimeTZ:
		return "TIMETZ"
	case warehouse.FamTimestamp:
		return "TIMESTAMP"
	case warehouse.FamTimestampTZ:
		return "TIMESTAMPTZ"
	case warehouse.FamInterval:
		return "INTERVAL"
	case warehouse.FamJSON:
		return "JSON"
	case warehouse.FamUUID:
		return "UUID"
	}
	return "VARCHAR" // text, character(n), numeric without precision, everything else
}

// ColumnType implements warehouse.Dialect.
func (Dialect) ColumnType(ct warehouse.ColType) string {
	if ct.Array {
		return scalarType(ct) + "[]"
	}
	return scalarType(ct)
}

// StageType implements warehouse.Dialect.
func (Dialect) StageType(warehouse.ColType) string { return "VARCHAR" }

// FromStage implements warehouse.Dialect.
func (d Dialect) FromStage(ct warehouse.ColType, e string) string {
	if ct.Array {
		switch ct.Family {
		case warehouse.FamBytes:
			return "list_transform(CAST(CAST(" + e + " AS JSON) AS VARCHAR[]), lambda \"_sluice_x\": unhex(\"_sluice_x\"))"
		case warehouse.FamJSON:
			// Elements are staged as JSON strings holding the documents, so
			// that each is kept verbatim (a direct JSON[] cast would re-print
			// them and turn a JSON null into SQL NULL).
			return "CAST(CAST(CAST(" + e + " AS JSON) AS VARCHAR[]) AS JSON[])"
		}
		return "CAST(CAST(" + e + " AS JSON) AS " + d.ColumnType(ct) + ")"
	}
	switch t := scalarType(ct); {
	case ct.Family == warehouse.FamBytes:
		return "unhex(" + e + ")"
	case t == "VARCHAR":
		return e
	default:
		return "CAST(" + e + " AS " + t + ")"
	}
}

// Canonical implements warehouse.Dialect (forms listed in warehouse/sqlgen.go).
func (d Dialect) Canonical(ct warehouse.ColType, e string) string {
	if ct.Array {
		el := ct
		el.Array = false
		return "'{' || array_to_string(list_transform(" + e + `, lambda "_sluice_e": coalesce(` + d.Canonical(el, `"_sluice_e"`) + `, '\N')), ',') || '}'`
	}
	switch ct.Family {
	case warehouse.FamChar:
		return "rtrim(" + e + ", ' ')"
	case warehouse.FamText, warehouse.FamNumeric:
		return e
	case warehouse.FamFloat32, warehouse.FamFloat64:
		f := "CAST(" + e + " AS DOUBLE)"
		return "CASE WHEN isnan(" + f + ") THEN 'NaN' WHEN " + f + " = CAST('Infinity' AS DOUBLE) THEN 'Infinity' WHEN " + f +
			" = CAST('-Infinity' AS DOUBLE) THEN '-Infinity' ELSE printf('%.16e', " + f + ") END"
	case warehouse.FamBytes:
		return "lower(hex(" + e + "))"
	case warehouse.FamDate:
		return "CASE WHEN isfinite(" + e + ") THEN CAST(" + e + " - DATE '1970-01-01' AS VARCHAR) ELSE CAST(" + e + " AS VARCHAR) END"
	case warehouse.FamTimestamp, warehouse.FamTimestampTZ:
		return "CASE WHEN isfinite(" + e + ") THEN CAST(epoch_us(" + e + ") AS VARCHAR) ELSE CAST(" + e + " AS VARCHAR) END"
	case warehouse.FamInterval:
		return "CAST(datepart('year', " + e + ") * 12 + datepart('month', " + e + ") AS VARCHAR) || ':' || CAST(datepart('day', " + e +
			") AS VARCHAR) || ':' || CAST(CAST(datepart('hour', " + e + ") AS BIGINT) * 3600000000 + CAST(datepart('minute', " + e +
			") AS BIGINT) * 60000000 + datepart('microseconds', " + e + ") AS VARCHAR)"
	}
	return "CAST(" + e + " AS VARCHAR)"
}

// HexInt implements warehouse.Dialect.
func (Dialect) HexInt(e string, digits int) string {
	return "CAST('0x' || substr(" + e + ", 1, " + strconv.Itoa(digits) + ") AS BIGINT)"
}

// CreateStage implements warehouse.Dialect.
func (Dialect) CreateStage(name string, defs []string) string {
	if defs == nil {
		return "CREATE TEMP TABLE " + change.QuoteIdent(name)
	}
	return "CREATE TEMP TABLE " + change.QuoteIdent(name) + " (" + strings.Join(defs, ", ") + ")"
}

// StageName implements warehouse.Dialect.
func (Dialect) StageName(name string) string { return `"temp"."main".` + change.QuoteIdent(name) }

// Truncate implements warehouse.Dialect.
func (Dialect) Truncate(target change.TableID) string { return "TRUNCATE " + target.Quoted() }

// Literal implements warehouse.Dialect.
func (d Dialect) Literal(t *change.Table, col int, v change.Value) (string, error) {
	ct := warehouse.TypeOf(t.Columns[col])
	s, err := stageValue(t, col, ct, v)
	if err != nil {
		return "", err
	}
	if s == nil {
		return "NULL", nil
	}
	return d.FromStage(ct, change.QuoteLiteral(s.(string))), nil
}

// stageValue is the staged text of one value, or nil for NULL (and for an
// unchanged value, which the mask marks).
func stageValue(t *change.Table, col int, ct warehouse.ColType, v change.Value) (any, error) {
	switch v.Kind {
	case change.KindNull, change.KindUnchanged:
		return nil, nil
	case change.KindArray:
		if !ct.Array {
			return nil, fmt.Errorf("column %q of %s: an array value in a column that is not an array", t.Columns[col].Name, t.ID())
		}
		b := []byte{'['}
		for i, e := range v.Elems {
			if i > 0 {
				b = append(b, ',')
			}
			switch {
			case e.Kind == change.KindNull:
				b = append(b, "null"...)
			case e.Kind == change.KindArray:
				return nil, fmt.Errorf("column %q of %s: a multi-dimensional array cannot be stored in a DuckDB list column; "+
					"cast the column to a one-dimensional array or to json in a pipeline", t.Columns[col].Name, t.ID())
			default:
				s, err := stageScalar(t, col, ct, e)
				if err != nil {
					return nil, err
				}
				b = change.AppendValueJSON(b, change.V(change.KindText, s))
			}
		}
		return string(append(b, ']')), nil
	}
	if ct.Array {
		return nil, fmt.Errorf("column %q of %s: a scalar value in an array column", t.Columns[col].Name, t.ID())
	}
	return stageScalar(t, col, ct, v)
}

func stageScalar(t *change.Table, col int, ct warehouse.ColType, v change.Value) (string, error) {
	switch ct.Family {
	case warehouse.FamBytes:
		return hex.EncodeToString([]byte(v.Text)), nil
	case warehouse.FamDecimal:
		switch v.Text {
		case "NaN", "Infinity", "-Infinity":
			return "", fmt.Errorf("column %q of %s: numeric %s cannot be stored in DuckDB %s; "+
				"declare the source column as plain numeric (mapped to VARCHAR, exact) or filter such rows in a pipeline",
				t.Columns[col].Name, t.ID(), v.Text, scalarType(ct))
		}
	case warehouse.FamDate, warehouse.FamTimestamp, warehouse.FamTimestampTZ:
		return bcForm(v.Text), nil
	case warehouse.FamInterval:
		iv, err := parseInterval(v.Text)
		if err != nil {
			return "", fmt.Errorf("column %q of %s: %w", t.Columns[col].Name, t.ID(), err)
		}
		return iv.duck(), nil
	}
	return v.Text, nil
}

// bcForm rewrites Postgres' "2024-01-01 10:00:00+00 BC" into DuckDB's
// "2024-01-01 (BC) 10:00:00+00".
func bcForm(s string) string {
	if !strings.HasSuffix(s, " BC") {
		return s
	}
	s = strings.TrimSuffix(s, " BC")
	if i := strings.IndexAny(s, " T"); i >= 0 {
		return s[:i] + " (BC) " + s[i+1:]
	}
	return s + " (BC)"
}

// RowID implements warehouse.RowIDer: DuckDB's rowid pseudo-column.
func (Dialect) RowID() string { return "rowid" }

var _ warehouse.RowIDer = Dialect{}
