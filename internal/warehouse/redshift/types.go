package redshift

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/sluice-dev/sluice/internal/change"
)

// WType is a warehouse column type, spelled the Redshift way (the Postgres
// dialect translates the few Redshift-only names: SUPER, VARBYTE).
type WType struct {
	Base string // e.g. "VARCHAR", "DECIMAL", "SUPER"
	Args string // e.g. "(252)", "(12,2)"; empty when none
}

func (t WType) String() string { return t.Base + t.Args }

// Redshift limits that shape the mapping.
const (
	maxVarchar = 65535   // VARCHAR(n): n counts BYTES, at most 65535
	maxVarbyte = 1024000 // VARBYTE(n): at most 1,024,000 bytes
	maxDecimal = 38      // DECIMAL precision
	maxScale   = 37      // DECIMAL scale: at most 37 (r_Numeric_types201.html)
	// A DECIMAL of precision 19 or less is stored as an 8-byte integer of its
	// unscaled digits, so DECIMAL(19,s) holds at most 9223372036854775807
	// unscaled, not every 19-digit number; from 20 on it is 128-bit.
	// https://docs.aws.amazon.com/redshift/latest/dg/r_Numeric_types201.html
	int64Digits = 19
	utf8MaxSize = 4 // bytes a UTF-8 character may take
)

// Column is one target column: the source column and its warehouse type.
type Column struct {
	Name   string
	Source change.Type // the source column's type
	Kind   change.Kind // the value's shape in the change record
	Type   WType
	Key    bool
	// NotNull mirrors the source's NOT NULL (key columns are always NOT NULL).
	NotNull bool
	// Toastable columns can arrive as "unchanged" in an update (Postgres only
	// omits out-of-line TOASTed values, which only variable-length types have).
	Toastable bool
}

// MapType maps a Postgres column to its Redshift type. The mapping:
//
//	boolean                          BOOLEAN
//	smallint / integer / bigint      SMALLINT / INTEGER / BIGINT
//	oid                              BIGINT (oid is unsigned 32-bit)
//	real / double precision          REAL / DOUBLE PRECISION
//	numeric(p,s), p <= 38, s <= 37   DECIMAL(p,s); DECIMAL(20,s) for p = 19 (see int64Digits)
//	numeric, p > 38 or s > 37        VARCHAR(65535): exact digits as text, with a warning
//	character varying(n)             VARCHAR(4n) (at most 65535): Redshift counts bytes, UTF-8 takes up to 4
//	character(n)                     VARCHAR(4n): Redshift CHAR holds single-byte characters only
//	text, varchar, other text forms  VARCHAR(65535)
//	uuid                             CHAR(36)
//	inet, cidr / macaddr / macaddr8  VARCHAR(43) / VARCHAR(17) / VARCHAR(23)
//	bytea                            VARBYTE(1024000)
//	date                             DATE
//	time / timetz                    TIME / TIMETZ
//	timestamp / timestamptz          TIMESTAMP / TIMESTAMPTZ
//	json, jsonb, every array         SUPER
//
// Domains map as their base type. The warning is non-empty when the mapping
// cannot keep a property of the source type.
func MapType(col change.Column) (WType, string, error) {
	k := col.Type.Kind
	name := strings.ToLower(col.Type.Name)
	if col.Type.Base != "" && k != change.KindArray {
		name = strings.ToLower(col.Type.Base)
	}
	switch k {
	case change.KindArray, change.KindJSON:
		return WType{Base: "SUPER"}, "", nil
	case change.KindBool:
		return WType{Base: "BOOLEAN"}, "", nil
	case change.KindInt:
		switch name {
		case "smallint", "int2":
			return WType{Base: "SMALLINT"}, "", nil
		case "integer", "int4", "int":
			return WType{Base: "INTEGER"}, "", nil
		}
		return WType{Base: "BIGINT"}, "", nil
	case change.KindFloat:
		if name == "real" || name == "float4" {
			return WType{Base: "REAL"}, "", nil
		}
		return WType{Base: "DOUBLE PRECISION"}, "", nil
	case change.KindNumeric:
		p, s, ok := typeArgs2(name)
		if ok && p >= 1 && p <= maxDecimal && s >= 0 && s <= p && s <= maxScale {
			if p == int64Digits {
				// 19 digits do not all fit the 8 bytes DECIMAL(19,s) has.
				p = int64Digits + 1
			}
			return WType{Base: "DECIMAL", Args: fmt.Sprintf("(%d,%d)", p, s)}, "", nil
		}
		why := "has no declared precision"
		if ok {
			why = fmt.Sprintf("has precision %d and scale %d (Redshift DECIMAL needs 1 <= precision <= 38 and 0 <= scale <= min(precision, 37))", p, s)
		}
		return WType{Base: "VARCHAR", Args: "(65535)"},
			fmt.Sprintf("column %q is %s, which %s, so it is kept exactly as text (VARCHAR). Declare numeric(p,s) with p <= 38 and s <= 37 at the source, or cast it in a pipeline, to get DECIMAL", col.Name, col.Type.Name, why), nil
	case change.KindBytes:
		return WType{Base: "VARBYTE", Args: fmt.Sprintf("(%d)", maxVarbyte)}, "", nil
	case change.KindDate:
		return WType{Base: "DATE"}, "", nil
	case change.KindTime:
		if strings.Contains(name, "with time zone") || name == "timetz" {
			return WType{Base: "TIMETZ"}, "", nil
		}
		return WType{Base: "TIME"}, "", nil
	case change.KindTimestamp:
		return WType{Base: "TIMESTAMP"}, "", nil
	case change.KindTimestampTZ:
		return WType{Base: "TIMESTAMPTZ"}, "", nil
	case change.KindText:
		switch {
		case strings.HasPrefix(name, "character varying"), strings.HasPrefix(name, "varchar"),
			strings.HasPrefix(name, "character("), strings.HasPrefix(name, "char("), name == "character", name == "bpchar":
			n, ok := typeArg1(name)
			if name == "character" || name == "bpchar" {
				n, ok = 1, true // bare character is character(1)
			}
			if !ok {
				return WType{Base: "VARCHAR", Args: "(65535)"}, "", nil
			}
			bytes := n * utf8MaxSize
			if bytes > maxVarchar {
				bytes = maxVarchar
			}
			return WType{Base: "VARCHAR", Args: fmt.Sprintf("(%d)", bytes)}, "", nil
		case name == "uuid":
			return WType{Base: "CHAR", Args: "(36)"}, "", nil
		case name == "inet", name == "cidr":
			return WType{Base: "VARCHAR", Args: "(43)"}, "", nil
		case name == "macaddr":
			return WType{Base: "VARCHAR", Args: "(17)"}, "", nil
		case name == "macaddr8":
			return WType{Base: "VARCHAR", Args: "(23)"}, "", nil
		}
		return WType{Base: "VARCHAR", Args: "(65535)"}, "", nil
	}
	return WType{}, "", fmt.Errorf("column %q: type %s (kind %s) has no Redshift mapping: cast it to a supported type in a pipeline", col.Name, col.Type.Name, k)
}

// toastable reports whether values of kind k are variable-length in Postgres
// and so may be TOASTed out of line and arrive as "unchanged".
func toastable(k change.Kind) bool {
	switch k {
	case change.KindText, change.KindBytes, change.KindJSON, change.KindArray, change.KindNumeric:
		return true
	}
	return false
}

// typeArg1 parses "name(n)" (with optional trailing words).
func typeArg1(name string) (int, bool) {
	args, ok := typeArgs(name)
	if !ok || len(args) != 1 {
		return 0, false
	}
	return args[0], true
}

// typeArgs2 parses "name(p,s)" or "name(p)" (s = 0).
func typeArgs2(name string) (int, int, bool) {
	args, ok := typeArgs(name)
	switch {
	case !ok:
		return 0, 0, false
	case len(args) == 1:
		return args[0], 0, true
	case len(args) == 2:
		return args[0], args[1], true
	}
	return 0, 0, false
}

func typeArgs(name string) ([]int, bool) {
	open := strings.IndexByte(name, '(')
	end := strings.IndexByte(name, ')')
	if open < 0 || end < open {
		return nil, false
	}
	var out []int
	for _, part := range strings.Split(name[open+1:end], ",") {
		n, err := strconv.Atoi(strings.TrimSpace(part))
		if err != nil {
			return nil, false
		}
		out = append(out, n)
	}
	return out, true
}
