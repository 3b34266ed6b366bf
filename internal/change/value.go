package change

import (
	"fmt"
	"strings"
)

// Kind is the closed set of value shapes a column can hold. It decides how a
// value is written into the JSON change record and how a warehouse casts it.
type Kind uint8

const (
	KindNull        Kind = iota // SQL NULL
	KindUnchanged               // an unchanged TOASTed value the source did not send: keep what the target stores
	KindBool                    // Text is "true" or "false"
	KindInt                     // int2, int4, int8, oid: Text holds the decimal digits
	KindFloat                   // float4, float8: Text is Postgres' form, which may be NaN, Infinity or -Infinity
	KindNumeric                 // numeric: Text holds the exact digits, or NaN, Infinity, -Infinity
	KindText                    // every value whose record form is a string: text, varchar, uuid, enums, inet, interval, ranges, ...
	KindBytes                   // bytea: Text holds the raw bytes (base64 in the record)
	KindDate                    // date: YYYY-MM-DD (with " BC" when before year 1), infinity, -infinity
	KindTime                    // time, timetz: HH:MM:SS[.ffffff][+HH:MM]
	KindTimestamp               // timestamp: ISO-8601 without offset, infinity, -infinity
	KindTimestampTZ             // timestamptz: ISO-8601 in UTC with +00:00, infinity, -infinity
	KindJSON                    // json, jsonb: Text is the JSON document, embedded as JSON in the record
	KindArray                   // arrays of any dimension: Elems holds the elements, each itself a Value
)

var kindNames = [...]string{
	KindNull:        "null",
	KindUnchanged:   "unchanged",
	KindBool:        "bool",
	KindInt:         "int",
	KindFloat:       "float",
	KindNumeric:     "numeric",
	KindText:        "text",
	KindBytes:       "bytes",
	KindDate:        "date",
	KindTime:        "time",
	KindTimestamp:   "timestamp",
	KindTimestampTZ: "timestamptz",
	KindJSON:        "json",
	KindArray:       "array",
}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", k)
}

// ParseKind is the inverse of Kind.String.
func ParseKind(s string) (Kind, error) {
	for k, n := range kindNames {
		if n == s {
			return Kind(k), nil
		}
	}
	return 0, fmt.Errorf("unknown value kind %q", s)
}

// Value is one typed column value. Scalars keep their exact text form (so no
// precision is lost between Postgres and the warehouse); arrays keep their
// elements. The zero Value is NULL.
type Value struct {
	Kind  Kind
	Text  string  // the record form of a scalar; raw bytes for KindBytes
	Elems []Value // elements of a KindArray, nested arrays for more dimensions
}

// Null is the SQL NULL value.
var Null = Value{}

// Unchanged marks an unchanged TOASTed column in an update.
var Unchanged = Value{Kind: KindUnchanged}

// V makes a scalar value of kind k with text t.
func V(k Kind, t string) Value { return Value{Kind: k, Text: t} }

// Array makes an array value.
func Array(elems ...Value) Value { return Value{Kind: KindArray, Elems: elems} }

// IsNull reports whether v is SQL NULL.
func (v Value) IsNull() bool { return v.Kind == KindNull }

// Equal reports whether two values are identical in kind and content.
func (v Value) Equal(w Value) bool {
	if v.Kind != w.Kind || v.Text != w.Text || len(v.Elems) != len(w.Elems) {
		return false
	}
	for i := range v.Elems {
		if !v.Elems[i].Equal(w.Elems[i]) {
			return false
		}
	}
	return true
}

// Size is an estimate of the memory the value holds, used to bound batches in bytes.
func (v Value) Size() int {
	n := 48 + len(v.Text)
	for _, e := range v.Elems {
		n += e.Size()
	}
	return n
}

// String is for logs and test failures only.
func (v Value) String() string {
	switch v.Kind {
	case KindNull:
		return "NULL"
	case KindUnchanged:
		return "<unchanged>"
	case KindArray:
		parts := make([]string, len(v.Elems))
		for i, e := range v.Elems {
			parts[i] = e.String()
		}
		return "[" + strings.Join(parts, ",") + "]"
	case KindBytes:
		return fmt.Sprintf("%x", v.Text)
	}
	return v.Text
}
