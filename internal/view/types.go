package view

import (
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"

	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/warehouse"
	"github.com/sluice-dev/sluice/internal/warehouse/duckdb"
)

// Input columns are stored with the DuckDB types the DuckDB warehouse gives
// them, so a view computes what the same SQL computes over a DuckDB mirror.
// One exception: intervals are stored as their Postgres text, which DuckDB's
// INTERVAL cannot always read.

func colType(c change.Column) (warehouse.ColType, string) {
	ct := warehouse.TypeOf(c)
	if ct.Family == warehouse.FamInterval && !ct.Array {
		return ct, "VARCHAR"
	}
	return ct, duckdb.Dialect{}.ColumnType(ct)
}

// fromStage is the SQL turning a staged VARCHAR into the stored type.
func fromStage(ct warehouse.ColType, e string) string {
	if ct.Family == warehouse.FamInterval && !ct.Array {
		return e
	}
	return duckdb.Dialect{}.FromStage(ct, e)
}

// stageText is the text a value is staged as (see fromStage); ok is false
// for NULL and for an unchanged TOAST value.
func stageText(t *change.Table, col int, ct warehouse.ColType, v change.Value) (string, bool, error) {
	switch v.Kind {
	case change.KindNull, change.KindUnchanged:
		return "", false, nil
	case change.KindArray:
		if !ct.Array {
			return "", false, fmt.Errorf("column %q of %s: an array value in a column that is not an array", t.Columns[col].Name, t.ID())
		}
		b := []byte{'['}
		for i, e := range v.Elems {
			if i > 0 {
				b = append(b, ',')
			}
			switch e.Kind {
			case change.KindNull:
				b = append(b, "null"...)
			case change.KindArray:
				return "", false, fmt.Errorf("column %q of %s: multi-dimensional arrays are not supported in views", t.Columns[col].Name, t.ID())
			default:
				s, err := stageScalar(t, col, ct, e)
				if err != nil {
					return "", false, err
				}
				b = change.AppendValueJSON(b, change.V(change.KindText, s))
			}
		}
		return string(append(b, ']')), true, nil
	}
	s, err := stageScalar(t, col, ct, v)
	return s, err == nil, err
}

func stageScalar(t *change.Table, col int, ct warehouse.ColType, v change.Value) (string, error) {
	switch ct.Family {
	case warehouse.FamBytes:
		return hex.EncodeToString([]byte(v.Text)), nil
	case warehouse.FamDecimal:
		switch v.Text {
		case "NaN", "Infinity", "-Infinity":
			return "", fmt.Errorf("column %q of %s: numeric %s does not fit DuckDB's DECIMAL; declare the column as plain numeric",
				t.Columns[col].Name, t.ID(), v.Text)
		}
	case warehouse.FamDate, warehouse.FamTimestamp, warehouse.FamTimestampTZ:
		if strings.HasSuffix(v.Text, " BC") {
			s := strings.TrimSuffix(v.Text, " BC")
			if i := strings.IndexAny(s, " T"); i >= 0 {
				return s[:i] + " (BC) " + s[i+1:], nil
			}
			return s + " (BC)", nil
		}
	}
	return v.Text, nil
}

// outCol is one column of a view's output.
type outCol struct {
	name string
	duck string // DuckDB type as DESCRIBE prints it
	typ  change.Type
	// render is the SQL reading the column out for conversion, given the
	// quoted column reference.
	render func(string) string
}

var decimalRE = regexp.MustCompile(`^DECIMAL\((\d+),(\d+)\)$`)

// outType maps a DuckDB result type to the Postgres-style type the view's
// output table is created with.
func outType(duck string) change.Type {
	switch duck {
	case "BOOLEAN":
		return change.Type{Name: "boolean", Kind: change.KindBool}
	case "TINYINT", "SMALLINT", "UTINYINT":
		return change.Type{Name: "smallint", Kind: change.KindInt}
	case "INTEGER", "USMALLINT":
		return change.Type{Name: "integer", Kind: change.KindInt}
	case "BIGINT", "UINTEGER":
		return change.Type{Name: "bigint", Kind: change.KindInt}
	case "HUGEINT", "UBIGINT", "UHUGEINT":
		return change.Type{Name: "numeric", Kind: change.KindNumeric}
	case "FLOAT":
		return change.Type{Name: "real", Kind: change.KindFloat}
	case "DOUBLE":
		return change.Type{Name: "double precision", Kind: change.KindFloat}
	case "VARCHAR":
		return change.Type{Name: "text", Kind: change.KindText}
	case "BLOB":
		return change.Type{Name: "bytea", Kind: change.KindBytes}
	case "DATE":
		return change.Type{Name: "date", Kind: change.KindDate}
	case "TIME":
		return change.Type{Name: "time without time zone", Kind: change.KindTime}
	case "TIME WITH TIME ZONE":
		return change.Type{Name: "time with time zone", Kind: change.KindTime}
	case "TIMESTAMP", "TIMESTAMP_NS", "TIMESTAMP_MS", "TIMESTAMP_S":
		return change.Type{Name: "timestamp without time zone", Kind: change.KindTimestamp}
	case "TIMESTAMP WITH TIME ZONE":
		return change.Type{Name: "timestamp with time zone", Kind: change.KindTimestampTZ}
	case "INTERVAL":
		return change.Type{Name: "interval", Kind: change.KindText}
	case "UUID":
		return change.Type{Name: "uuid", Kind: change.KindText}
	case "JSON":
		return change.Type{Name: "jsonb", Kind: change.KindJSON}
	}
	if m := decimalRE.FindStringSubmatch(duck); m != nil {
		return change.Type{Name: "numeric(" + m[1] + "," + m[2] + ")", Kind: change.KindNumeric}
	}
	if strings.HasSuffix(duck, "[]") || strings.HasPrefix(duck, "STRUCT") || strings.HasPrefix(duck, "MAP") {
		return change.Type{Name: "jsonb", Kind: change.KindJSON}
	}
	return change.Type{Name: "text", Kind: change.KindText}
}

func renderFor(duck string, typ change.Type) func(string) string {
	switch {
	case typ.Kind == change.KindBytes && duck == "BLOB":
		return func(c string) string { return c }
	case typ.Kind == change.KindArray, typ.Kind == change.KindJSON && duck != "JSON":
		return func(c string) string { return "CAST(to_json(" + c + ") AS VARCHAR)" }
	}
	return func(c string) string { return "CAST(" + c + " AS VARCHAR)" }
}

// value turns what render read into a change.Value of kind k.
func value(k change.Kind, x any) change.Value {
	var s string
	switch v := x.(type) {
	case nil:
		return change.Null
	case string:
		s = strings.Clone(v) // the driver's strings may point into memory it reuses
	case []byte:
		s = string(v)
	default:
		s = fmt.Sprint(v)
	}
	switch k {
	case change.KindFloat:
		switch s {
		case "inf":
			s = "Infinity"
		case "-inf":
			s = "-Infinity"
		case "nan", "-nan":
			s = "NaN"
		}
	case change.KindDate:
		s = unBC(s)
	case change.KindTimestamp, change.KindTimestampTZ:
		s = unBC(s)
		if i := strings.IndexByte(s, ' '); i > 0 && !strings.HasSuffix(s, "infinity") {
			s = s[:i] + "T" + s[i+1:]
		}
		if k == change.KindTimestampTZ {
			if n := len(s); n > 3 && (s[n-3] == '+' || s[n-3] == '-') {
				s += ":00"
			}
		}
	}
	return change.V(k, s)
}

// unBC rewrites DuckDB's "2024-01-01 (BC) 10:00:00" as Postgres'
// "2024-01-01 10:00:00 BC".
func unBC(s string) string {
	if i := strings.Index(s, " (BC)"); i >= 0 {
		return s[:i] + s[i+5:] + " BC"
	}
	return s
}
