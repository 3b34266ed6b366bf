package warehouse

import (
	"strconv"
	"strings"

	"github.com/sluice-dev/sluice/internal/change"
)

// Family is how a warehouse treats a source column: the value shape that
// decides its target type, how it is staged and its canonical checksum form.
// Every dialect derives its types from the same Family, so that a table's
// checksum means the same in every warehouse.
type Family uint8

const (
	FamText        Family = iota // stored as text: text, varchar, enums, inet, money, ranges, unknown types
	FamChar                      // character(n): text with blank padding, trimmed for checksums
	FamBool                      // boolean
	FamInt16                     // smallint
	FamInt32                     // integer
	FamInt64                     // bigint, oid and integers of unknown width
	FamFloat32                   // real
	FamFloat64                   // double precision
	FamDecimal                   // numeric(p,s) with p <= 38 and 0 <= s <= p (Precision, Scale)
	FamNumeric                   // numeric without a usable precision: exact digits as text
	FamBytes                     // bytea
	FamDate                      // date
	FamTime                      // time without time zone
	FamTimeTZ                    // time with time zone
	FamTimestamp                 // timestamp without time zone
	FamTimestampTZ               // timestamp with time zone
	FamInterval                  // interval
	FamJSON                      // json, jsonb
	FamUUID                      // uuid
)

// ColType is a source column's type as the warehouses see it.
type ColType struct {
	Family    Family
	Precision int // FamDecimal only
	Scale     int // FamDecimal only
	// Array is true for arrays: Family is then the element's family. Arrays
	// are one-dimensional in warehouses with typed lists (DuckDB).
	Array bool
	// PGName is the Postgres type to create in a Postgres target: the
	// source's own type when it is built in, else the family's closest
	// built-in type (enums, domains and extension types cannot be created
	// in another database).
	PGName string
}

// maxDecimal is the widest DECIMAL in DuckDB and Redshift.
const maxDecimal = 38

// builtins maps a Postgres base type name (format_type without modifiers)
// to its family. Types not listed are mapped by their value Kind.
var builtins = map[string]Family{
	"smallint": FamInt16, "integer": FamInt32, "bigint": FamInt64, "oid": FamInt64,
	"real": FamFloat32, "double precision": FamFloat64,
	"numeric": FamNumeric, "boolean": FamBool,
	"text": FamText, "character varying": FamText, "character": FamChar, `"char"`: FamText, "name": FamText,
	"bytea": FamBytes, "date": FamDate,
	"time without time zone": FamTime, "time with time zone": FamTimeTZ,
	"timestamp without time zone": FamTimestamp, "timestamp with time zone": FamTimestampTZ,
	"interval": FamInterval, "json": FamJSON, "jsonb": FamJSON, "uuid": FamUUID,
	"inet": FamText, "cidr": FamText, "macaddr": FamText, "macaddr8": FamText, "money": FamText,
	"xml": FamText, "bit": FamText, "bit varying": FamText, "tsvector": FamText, "tsquery": FamText,
	"point": FamText, "line": FamText, "lseg": FamText, "box": FamText, "path": FamText,
	"polygon": FamText, "circle": FamText, "pg_lsn": FamText, "jsonpath": FamText,
	"int4range": FamText, "int8range": FamText, "numrange": FamText, "tsrange": FamText,
	"tstzrange": FamText, "daterange": FamText, "int4multirange": FamText, "int8multirange": FamText,
	"nummultirange": FamText, "tsmultirange": FamText, "tstzmultirange": FamText, "datemultirange": FamText,
	"xid": FamText, "xid8": FamText, "txid_snapshot": FamText, "pg_snapshot": FamText,
}

// kindFamily is the fallback for types sluice does not know by name.
var kindFamily = map[change.Kind]Family{
	change.KindBool: FamBool, change.KindInt: FamInt64, change.KindFloat: FamFloat64,
	change.KindNumeric: FamNumeric, change.KindText: FamText, change.KindBytes: FamBytes,
	change.KindDate: FamDate, change.KindTime: FamText, change.KindTimestamp: FamTimestamp,
	change.KindTimestampTZ: FamTimestampTZ, change.KindJSON: FamJSON,
}

// familyKind is the value Kind each family expects; a name whose family
// disagrees with the column's Kind (a domain, a shadowing user type) is
// mapped by Kind instead.
var familyKind = map[Family]change.Kind{
	FamText: change.KindText, FamChar: change.KindText, FamBool: change.KindBool,
	FamInt16: change.KindInt, FamInt32: change.KindInt, FamInt64: change.KindInt,
	FamFloat32: change.KindFloat, FamFloat64: change.KindFloat,
	FamDecimal: change.KindNumeric, FamNumeric: change.KindNumeric, FamBytes: change.KindBytes,
	FamDate: change.KindDate, FamTime: change.KindTime, FamTimeTZ: change.KindTime,
	FamTimestamp: change.KindTimestamp, FamTimestampTZ: change.KindTimestampTZ,
	FamInterval: change.KindText, FamJSON: change.KindJSON, FamUUID: change.KindText,
}

// familyPG is the Postgres type created for a family when the source's own
// type cannot be (see ColType.PGName).
var familyPG = map[Family]string{
	FamText: "text", FamChar: "text", FamBool: "boolean", FamInt16: "smallint", FamInt32: "integer",
	FamInt64: "bigint", FamFloat32: "real", FamFloat64: "double precision", FamNumeric: "numeric",
	FamBytes: "bytea", FamDate: "date", FamTime: "time", FamTimeTZ: "time with time zone",
	FamTimestamp: "timestamp", FamTimestampTZ: "timestamp with time zone", FamInterval: "interval",
	FamJSON: "jsonb", FamUUID: "uuid",
}

// TypeOf classifies a source column.
func TypeOf(c change.Column) ColType {
	t := c.Type
	name := strings.TrimSpace(t.Name)
	kind := t.Kind
	var ct ColType
	if kind == change.KindArray {
		ct.Array = true
		kind = t.Elem
		for strings.HasSuffix(name, "[]") {
			name = strings.TrimSpace(strings.TrimSuffix(name, "[]"))
		}
	}
	base, mods := splitMods(name)
	fam, ok := builtins[base]
	builtin := ok
	if !ok && t.Base != "" && !ct.Array {
		// A domain: take its base type.
		b, m := splitMods(t.Base)
		if f, ok2 := builtins[b]; ok2 {
			fam, ok, base, mods, name = f, true, b, m, t.Base
		}
	}
	if ok && familyKind[fam] != kind && !(fam == FamInterval || fam == FamUUID) {
		ok = false
	}
	if !ok {
		fam = kindFamily[kind]
		builtin = false
	}
	ct.Family = fam
	if fam == FamNumeric && len(mods) > 0 {
		p := mods[0]
		s := 0
		if len(mods) > 1 {
			s = mods[1]
		}
		if p >= 1 && p <= maxDecimal && s >= 0 && s <= p {
			ct.Family, ct.Precision, ct.Scale = FamDecimal, p, s
		}
	}
	switch {
	case ok && (builtin || t.Base != ""):
		ct.PGName = name
	default:
		ct.PGName = familyPG[ct.Family]
	}
	if ct.Array {
		ct.PGName += "[]"
	}
	return ct
}

// splitMods splits "timestamp(3) with time zone" into its base name
// "timestamp with time zone" and modifiers [3].
func splitMods(name string) (string, []int) {
	i := strings.IndexByte(name, '(')
	if i < 0 {
		return name, nil
	}
	j := strings.IndexByte(name[i:], ')')
	if j < 0 {
		return name, nil
	}
	var mods []int
	for _, part := range strings.Split(name[i+1:i+j], ",") {
		n, err := strconv.Atoi(strings.TrimSpace(part))
		if err != nil {
			return name, nil
		}
		mods = append(mods, n)
	}
	base := strings.TrimSpace(name[:i]) + name[i+j+1:]
	return strings.TrimSpace(base), mods
}
