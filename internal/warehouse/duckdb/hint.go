package duckdb

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/duckdb/duckdb-go/v2"

	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/pipeline"
	"github.com/sluice-dev/sluice/internal/warehouse"
)

// withHint adds what to do about the errors a user can fix, and describes
// the error to the pipeline (pipeline.TargetError): whether retrying can
// help by itself, and the table and column DuckDB's message names.
func withHint(err error) error {
	te := describe(err)
	var se *warehouse.StmtError
	if errors.As(err, &se) {
		if se.Hint == "" && !strings.Contains(se.Err.Error(), te.Fix) {
			se.Hint = te.Fix
		}
		if te.Table == "" && se.Table != (change.TableID{}) {
			te.Table = se.Table.String()
		}
	} else if te.Fix != "" && !strings.Contains(err.Error(), te.Fix) {
		err = fmt.Errorf("%w; %s", err, te.Fix)
	}
	te.Err = err
	return &te
}

// hint is withHint's fix alone, as "; fix", or "".
func hint(err error) string {
	if f := describe(err).Fix; f != "" {
		return "; " + f
	}
	return ""
}

var (
	// "Constraint Error: NOT NULL constraint failed: items.v"
	notNullRE = regexp.MustCompile(`NOT NULL constraint failed: ([^\s.]+)\.(\S+)`)
	// The type conversions sluice does itself: `column "price" of public.prices: ...; fix`.
	columnRE = regexp.MustCompile(`column "((?:[^"]|"")+)" of ([^\s:]+): (.*)`)
	// What the shared apply puts before an error it did not make itself.
	tableRE = regexp.MustCompile(`(?:^|: )table ([^\s:]+): `)
)

// describe classifies err and takes the names its message carries.
func describe(err error) pipeline.TargetError {
	msg := err.Error()
	te := pipeline.TargetError{Class: pipeline.Transient}
	if m := tableRE.FindStringSubmatch(msg); m != nil {
		te.Table = m[1]
	}
	var de *duckdb.Error
	typ := duckdb.ErrorTypeInvalid
	if errors.As(err, &de) {
		typ = de.Type
	}
	where := "the DuckDB table"
	if te.Table != "" {
		where = "DuckDB table " + te.Table
	}
	restart := "stop sluice, %s in the DuckDB file, then start sluice again (sluice is the file's one writer; the batch waits in the slot)"
	switch {
	case typ == duckdb.ErrorTypeFatal, typ == duckdb.ErrorTypeInternal,
		strings.Contains(msg, "FATAL Error"), strings.Contains(msg, "INTERNAL Error"), strings.Contains(msg, "database has been invalidated"):
		te.Class = pipeline.Fatal
		te.Fix = "DuckDB stopped using the file after a failed write: fix the first error reported (often a full disk), then start sluice again; DuckDB replays its log on open and nothing was marked applied"
	case strings.Contains(msg, "read-only"), strings.Contains(msg, "read only"), strings.Contains(msg, "readonly"):
		te.Class = pipeline.Permanent
		te.Fix = "the DuckDB database is open read-only: open it writable (no read-only mode, a file the sluice process may write)"
	case strings.Contains(msg, "No space left"), strings.Contains(msg, "disk is full"), strings.Contains(msg, "Could not write"):
		te.Fix = "the disk holding the DuckDB file is full or not writable: free space or move the file (nothing was marked applied)"
	case strings.Contains(msg, "Could not set lock"), strings.Contains(msg, "Conflicting lock"):
		te.Fix = "another process has the DuckDB file open for writing (DuckDB allows one writer): stop it, or query the running sluice through its admin endpoint"
	case columnRE.MatchString(msg):
		m := columnRE.FindStringSubmatch(msg)
		te.Class, te.Column, te.Table = pipeline.Permanent, strings.ReplaceAll(m[1], `""`, `"`), m[2]
		if i := strings.LastIndex(m[3], "; "); i >= 0 {
			te.Fix = m[3][i+2:]
		}
	case typ == duckdb.ErrorTypeConstraint, strings.Contains(msg, "Constraint Error"),
		// an appender's errors are plain text without the error type
		strings.Contains(msg, "constraint failed"), strings.Contains(msg, "Duplicate key"), strings.Contains(msg, "foreign key constraint"):
		te.Class = pipeline.Permanent
		switch m := notNullRE.FindStringSubmatch(msg); {
		case m != nil:
			te.Column = m[2]
			if te.Table == "" {
				te.Table = m[1]
			}
			tbl := quoteTable(te.Table)
			te.Fix = fmt.Sprintf("%s holds NOT NULL on column %s and the source does not: "+restart, where, change.QuoteIdent(te.Column),
				fmt.Sprintf("drop it (ALTER TABLE %s ALTER COLUMN %s DROP NOT NULL)", tbl, change.QuoteIdent(te.Column)))
		case strings.Contains(msg, "CHECK constraint"):
			te.Fix = fmt.Sprintf("%s holds a CHECK constraint the source does not: "+restart, where,
				"recreate the table without it (DuckDB cannot drop a CHECK constraint)")
		case strings.Contains(msg, "foreign key"):
			te.Fix = fmt.Sprintf("%s holds a foreign key the source does not (a mirror applies each table by itself): "+restart, where,
				"recreate the table without it")
		default:
			te.Fix = fmt.Sprintf("%s holds a unique constraint or index the source does not: "+restart, where, "drop it (DROP INDEX ...)")
		}
	case typ == duckdb.ErrorTypeConversion, typ == duckdb.ErrorTypeOutOfRange, typ == duckdb.ErrorTypeDecimal,
		typ == duckdb.ErrorTypeMismatchType, typ == duckdb.ErrorTypeInvalidInput,
		strings.Contains(msg, "Conversion Error"), strings.Contains(msg, "Out of Range Error"), strings.Contains(msg, "Invalid Input Error"):
		te.Class = pipeline.Permanent
		te.Fix = "a value does not fit the DuckDB column's type: if the column was changed in the file, give it back the source's type; docs/type-mapping.md lists each type's mapping"
	case typ == duckdb.ErrorTypeCatalog, typ == duckdb.ErrorTypeBinder, typ == duckdb.ErrorTypePermission, typ == duckdb.ErrorTypeDependency,
		strings.Contains(msg, "Catalog Error"), strings.Contains(msg, "Binder Error"):
		te.Class = pipeline.Permanent
	}
	return te
}

// quoteTable quotes schema.name for a statement to copy.
func quoteTable(table string) string {
	if s, n, ok := strings.Cut(table, "."); ok {
		return change.QuoteIdent(s) + "." + change.QuoteIdent(n)
	}
	return change.QuoteIdent(table)
}
