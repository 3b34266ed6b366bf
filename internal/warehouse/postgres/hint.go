package postgres

import (
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/pipeline"
	"github.com/sluice-dev/sluice/internal/warehouse"
)

// withHint adds what to do about the errors a user can fix, and describes
// the error to the pipeline (pipeline.TargetError): whether retrying can
// help by itself, and the table, column and constraint Postgres names.
// Errors that are not the server's (a lost connection) pass unchanged: the
// pipeline takes them as transient.
func withHint(err error) error {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return err
	}
	te := describe(pe)
	var se *warehouse.StmtError
	stmt := errors.As(err, &se)
	if te.Table == "" && stmt && se.Table != (change.TableID{}) {
		te.Table = se.Table.String()
	}
	te.Fix = fix(pe, te.Table)
	switch {
	case te.Fix == "":
	case stmt && se.Hint == "":
		se.Hint = te.Fix
	case !stmt:
		err = fmt.Errorf("%w (%s)", err, te.Fix)
	}
	te.Err = err
	return &te
}

// describe classifies a server error by its SQLSTATE and takes the names
// it carries.
func describe(pe *pgconn.PgError) pipeline.TargetError {
	te := pipeline.TargetError{Class: pipeline.Permanent, Column: pe.ColumnName, Constraint: pe.ConstraintName}
	if pe.TableName != "" {
		te.Table = pe.TableName
		if pe.SchemaName != "" {
			te.Table = pe.SchemaName + "." + pe.TableName
		}
	}
	class := pe.Code[:min(2, len(pe.Code))]
	switch {
	case class == "08", // connection exception
		class == "40",      // serialization failure, deadlock
		class == "53",      // insufficient resources: disk full, out of memory, too many connections
		class == "57",      // operator intervention: statement timeout, shutdown
		class == "58",      // system error (I/O)
		pe.Code == "55P03", // lock not available (lock_timeout)
		pe.Code == "55006", // object in use
		class == "XX":      // internal error
		te.Class = pipeline.Transient
	}
	return te
}

// fix is what to do about the error, in a sentence, or "".
func fix(pe *pgconn.PgError, table string) string {
	tbl := quoteTable(table)
	switch pe.Code {
	case "23502": // not_null_violation
		if pe.ColumnName != "" {
			return fmt.Sprintf("the target holds NOT NULL on column %s of %s and the source does not: drop it at the target (ALTER TABLE %s ALTER COLUMN %s DROP NOT NULL)",
				change.QuoteIdent(pe.ColumnName), table, tbl, change.QuoteIdent(pe.ColumnName))
		}
		return "the target holds a NOT NULL constraint the source does not: drop it at the target (ALTER TABLE ... ALTER COLUMN ... DROP NOT NULL)"
	case "23514", "23P01": // check_violation, exclusion_violation
		return dropConstraint("check or exclusion constraint", pe, table, tbl)
	case "23503": // foreign_key_violation
		return dropConstraint("foreign key", pe, table, tbl) + "; a mirror applies each table by itself and cannot keep foreign keys between them"
	case "23505": // unique_violation (what is left after the redelivery retry)
		return dropConstraint("unique constraint or index", pe, table, tbl) + ", or DROP INDEX it if it is an index"
	case "42501":
		return "the target role lacks a privilege: grant it CREATE on the database and on the target schema, and ownership of (or INSERT, DELETE, TRUNCATE on) the mirrored tables; nothing was marked applied"
	case "25006":
		return "the target is read-only (a standby, or default_transaction_read_only): point sluice at a writable primary; nothing was marked applied"
	case "53100":
		return "the target's disk is full: free space on it; nothing was marked applied"
	case "2BP01":
		return "other objects (views) depend on the table: drop them or resnapshot without dropping"
	}
	if strings.HasPrefix(pe.Code, "22") && len(pe.Code) == 5 {
		col := "the target column"
		if pe.ColumnName != "" {
			col = "column " + change.QuoteIdent(pe.ColumnName)
			if table != "" {
				col += " of " + table
			}
		}
		return "a value does not fit " + col + "'s type: if the column was changed at the target, give it back the source's type (ALTER TABLE ... ALTER COLUMN ... TYPE ...); docs/type-mapping.md lists each type's mapping"
	}
	return ""
}

func dropConstraint(what string, pe *pgconn.PgError, table, tbl string) string {
	if pe.ConstraintName == "" {
		return "the target holds a " + what + " the source does not: drop it at the target"
	}
	on := ""
	if table != "" {
		on = " on " + table
	}
	return fmt.Sprintf("the target holds %s %s%s and the source does not: drop it at the target (ALTER TABLE %s DROP CONSTRAINT %s)",
		what, change.QuoteIdent(pe.ConstraintName), on, tbl, change.QuoteIdent(pe.ConstraintName))
}

// quoteTable quotes schema.name for a statement to copy; "..." when unknown.
func quoteTable(table string) string {
	if table == "" {
		return "..."
	}
	if s, n, ok := strings.Cut(table, "."); ok {
		return change.QuoteIdent(s) + "." + change.QuoteIdent(n)
	}
	return change.QuoteIdent(table)
}
