package change

import (
	"fmt"
	"strings"
)

// Type describes a column's type as the source knows it.
type Type struct {
	OID  uint32 // the source's type OID (for domains: the domain's own OID)
	Name string // the formatted type with modifiers, e.g. "numeric(10,2)", "character varying(63)", "integer[]"
	Kind Kind   // the value shape; KindArray for arrays
	Elem Kind   // for arrays: the element shape
	// Base is the base type name for domains and the element type name for
	// arrays, e.g. "integer" for "integer[]"; empty otherwise.
	Base string
}

// Column is one column of a source table.
type Column struct {
	Name     string
	Type     Type
	Nullable bool
	Key      bool // part of the primary key or the user-declared key
	// Num is the column's number at the source (pg_attribute.attnum), 0 when
	// unknown. A column dropped and added again under the same name gets a
	// new number: its old values are not its values.
	Num int
	// Missing is the value that rows which existed before the column was
	// added hold for it (Postgres' fast default, pg_attribute.attmissingval),
	// nil when they hold NULL. Such rows send no change when the column is
	// added, so a warehouse adds the column with this value. It is not part
	// of the column's shape.
	Missing *Value
}

// Table is a source table's schema at one moment. A schema change at the
// source produces a new *Table; changes keep pointing at the schema they were
// read with, so a consumer notices a schema change by pointer or by Version.
type Table struct {
	Schema  string
	Name    string
	Columns []Column
	Key     []int // indexes into Columns of the key columns, in key order
	// Version counts the schemas the source has seen for this table in this
	// process, starting at 1. It only tells two schemas apart.
	Version int
}

// ID is the table's qualified name, schema.name (unquoted).
func (t *Table) ID() TableID { return TableID{Schema: t.Schema, Name: t.Name} }

// Column returns the index of the named column, or -1.
func (t *Table) Column(name string) int {
	for i, c := range t.Columns {
		if c.Name == name {
			return i
		}
	}
	return -1
}

// Keyless reports whether the table has no key (no primary key and none
// declared, REPLICA IDENTITY FULL): it is a multiset. Identical rows are
// separate rows, NULL is a value like any other, and a delete or update
// names its row by every old value. Downstream it is mirrored row for
// row: an insert adds one row, a delete removes exactly one equal row.
func (t *Table) Keyless() bool { return len(t.Key) == 0 }

// Identity returns the indexes of the columns that tell rows apart: the
// key's, or every column's for a keyless table (whose equal rows are
// interchangeable).
//
// The slice must not be modified.
func (t *Table) Identity() []int {
	if len(t.Key) > 0 {
		return t.Key
	}
	n := len(t.Columns)
	if n <= len(allColumns) {
		// Shared and read-only, as t.Key is: this runs per change of a
		// keyless table (its key, its partition key).
		return allColumns[:n:n]
	}
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

// allColumns is 0, 1, ... up to Postgres' limit of columns in a table.
var allColumns = func() []int {
	s := make([]int, 1600)
	for i := range s {
		s[i] = i
	}
	return s
}()

// KeyNames returns the key columns' names in key order.
func (t *Table) KeyNames() []string {
	out := make([]string, len(t.Key))
	for i, k := range t.Key {
		out[i] = t.Columns[k].Name
	}
	return out
}

// SameShape reports whether two schemas have the same columns, types and key.
func (t *Table) SameShape(u *Table) bool {
	if t == u {
		return true
	}
	if t == nil || u == nil || len(t.Columns) != len(u.Columns) || len(t.Key) != len(u.Key) {
		return false
	}
	for i := range t.Columns {
		a, b := t.Columns[i], u.Columns[i]
		if a.Name != b.Name || a.Type != b.Type || a.Nullable != b.Nullable || a.Key != b.Key {
			return false
		}
		if a.Num != 0 && b.Num != 0 && a.Num != b.Num {
			return false // dropped and added again under the same name
		}
	}
	for i := range t.Key {
		if t.Key[i] != u.Key[i] {
			return false
		}
	}
	return true
}

// TableID names a table: schema and name, both unquoted.
type TableID struct {
	Schema string
	Name   string
}

func (id TableID) String() string { return id.Schema + "." + id.Name }

// ParseTableID parses "schema.table" or "table" (schema public). A part may be
// double-quoted to hold dots or upper case, as in SQL.
func ParseTableID(s string) (TableID, error) {
	parts, err := splitQualified(strings.TrimSpace(s))
	if err != nil {
		return TableID{}, fmt.Errorf("table name %q: %w", s, err)
	}
	switch len(parts) {
	case 1:
		return TableID{Schema: "public", Name: parts[0]}, nil
	case 2:
		return TableID{Schema: parts[0], Name: parts[1]}, nil
	}
	return TableID{}, fmt.Errorf("table name %q: want schema.table or table", s)
}

func splitQualified(s string) ([]string, error) {
	var parts []string
	for s != "" {
		var part string
		if s[0] == '"' {
			end := 1
			var b strings.Builder
			for {
				i := strings.IndexByte(s[end:], '"')
				if i < 0 {
					return nil, fmt.Errorf("unterminated quote")
				}
				b.WriteString(s[end : end+i])
				end += i + 1
				if end < len(s) && s[end] == '"' {
					b.WriteByte('"')
					end++
					continue
				}
				break
			}
			part, s = b.String(), s[end:]
		} else {
			i := strings.IndexByte(s, '.')
			if i < 0 {
				i = len(s)
			}
			part, s = strings.ToLower(s[:i]), s[i:]
		}
		if part == "" {
			return nil, fmt.Errorf("empty name part")
		}
		parts = append(parts, part)
		if s != "" {
			if s[0] != '.' {
				return nil, fmt.Errorf("unexpected %q after name", s)
			}
			s = s[1:]
			if s == "" {
				return nil, fmt.Errorf("empty name part")
			}
		}
	}
	return parts, nil
}

// QuoteIdent quotes an SQL identifier the standard way (doubling quotes).
// Generated SQL quotes every identifier, whatever the warehouse.
func QuoteIdent(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// Quoted returns the table's qualified, quoted name.
func (id TableID) Quoted() string { return QuoteIdent(id.Schema) + "." + QuoteIdent(id.Name) }

// QuoteLiteral quotes a string as a standard SQL literal.
func QuoteLiteral(s string) string {
	return `'` + strings.ReplaceAll(s, `'`, `''`) + `'`
}
