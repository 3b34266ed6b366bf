package warehouse

import "github.com/sluice-dev/sluice/internal/change"

// Dialect is everything that differs between warehouses in the generated
// SQL. It is small on purpose: the apply algorithm, the merge statements,
// the state table and the checksum query are shared (sqlgen.go), so a new
// warehouse (Redshift) supplies types, staging conversions and a few
// spellings, and reuses the rest.
type Dialect interface {
	// ColumnType is the target column type for a source column.
	ColumnType(ct ColType) string
	// StageType is the staging column type the bulk loader writes.
	StageType(ct ColType) string
	// FromStage converts a staged column expression to the target type.
	FromStage(ct ColType, expr string) string
	// Canonical is the canonical text form (see the table in sqlgen.go) of
	// a target column expression of type ColumnType(ct), NULL for NULL.
	Canonical(ct ColType, expr string) string
	// HexInt turns the first digits (<= 15) hex digits of a hex text
	// expression into a non-negative BIGINT.
	HexInt(expr string, digits int) string
	// CreateStage returns the statement creating the staging table name
	// with the given column definitions, dropped at the latest at commit.
	CreateStage(name string, defs []string) string
	// StageName is the name to use in statements for staging table name.
	StageName(name string) string
	// Truncate empties a target table inside the transaction.
	Truncate(target change.TableID) string
	// Literal is an SQL expression of type ColumnType(ct) holding v, for
	// a column's default (the value rows that predate an added column hold).
	Literal(t *change.Table, col int, v change.Value) (string, error)
}

// Staging columns before the table's own: the op ('d' delete, 'u' upsert,
// 'i' insert of a key known new)
// and which columns hold an unchanged TOAST value ('1' at the column's
// position, 1-based; NULL when none).
const (
	StageOp        = "_sluice_op"
	StageUnchanged = "_sluice_unchanged"
)

// UnchangedMask is the staged StageUnchanged text for a row, and whether it
// has any unchanged value.
func UnchangedMask(values []change.Value) (string, bool) {
	any := false
	for _, v := range values {
		if v.Kind == change.KindUnchanged {
			any = true
			break
		}
	}
	if !any {
		return "", false
	}
	b := make([]byte, len(values))
	for i, v := range values {
		if v.Kind == change.KindUnchanged {
			b[i] = '1'
		} else {
			b[i] = '0'
		}
	}
	return string(b), true
}
