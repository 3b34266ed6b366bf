package warehousetest

import (
	"encoding/hex"
	"strings"

	"github.com/sluice-dev/sluice/internal/change"
)

// ManyTypes is a table of every mapped type family, with rows of ordinary
// and edge values, as the source would send them (change.Value text
// forms) and as SQL literals to fill a Postgres source table with.
type ManyTypesFixture struct {
	Table *change.Table
	// Setup creates the user types and the table in a Postgres source.
	Setup []string
	// Rows are the table's rows: values, and the SQL literal of each.
	Rows [][]change.Value
	SQL  [][]string
}

type mtCol struct {
	name, ddl, typ string
	kind, elem     change.Kind
	base           string
}

var mtCols = []mtCol{
	{"k", "integer PRIMARY KEY", "integer", change.KindInt, 0, ""},
	{"i2", "smallint", "smallint", change.KindInt, 0, ""},
	{"i8", "bigint", "bigint", change.KindInt, 0, ""},
	{"f4", "real", "real", change.KindFloat, 0, ""},
	{"f8", "double precision", "double precision", change.KindFloat, 0, ""},
	{"n", "numeric(10,2)", "numeric(10,2)", change.KindNumeric, 0, ""},
	{"nu", "numeric", "numeric", change.KindNumeric, 0, ""},
	{"nbig", "numeric(50,10)", "numeric(50,10)", change.KindNumeric, 0, ""},
	{"b", "boolean", "boolean", change.KindBool, 0, ""},
	{"t", "text", "text", change.KindText, 0, ""},
	{"vc", "varchar(20)", "character varying(20)", change.KindText, 0, ""},
	{"ch", "char(5)", "character(5)", change.KindText, 0, ""},
	{"by", "bytea", "bytea", change.KindBytes, 0, ""},
	{"d", "date", "date", change.KindDate, 0, ""},
	{"tm", "time", "time without time zone", change.KindTime, 0, ""},
	{"ttz", "timetz", "time with time zone", change.KindTime, 0, ""},
	{"ts", "timestamp", "timestamp without time zone", change.KindTimestamp, 0, ""},
	{"ts3", "timestamp(3)", "timestamp(3) without time zone", change.KindTimestamp, 0, ""},
	{"tstz", "timestamptz", "timestamp with time zone", change.KindTimestampTZ, 0, ""},
	{"iv", "interval", "interval", change.KindText, 0, ""},
	{"j", "json", "json", change.KindJSON, 0, ""},
	{"jb", "jsonb", "jsonb", change.KindJSON, 0, ""},
	{"u", "uuid", "uuid", change.KindText, 0, ""},
	{"ip", "inet", "inet", change.KindText, 0, ""},
	{"mood", "mood", "mood", change.KindText, 0, ""},
	{"pos", "posint", "posint", change.KindInt, 0, "integer"},
	{"ai", "integer[]", "integer[]", change.KindArray, change.KindInt, "integer"},
	{"at", "text[]", "text[]", change.KindArray, change.KindText, "text"},
	{"an", "numeric(6,2)[]", "numeric(6,2)[]", change.KindArray, change.KindNumeric, "numeric"},
	{"ab", "bytea[]", "bytea[]", change.KindArray, change.KindBytes, "bytea"},
	{"atz", "timestamptz[]", "timestamp with time zone[]", change.KindArray, change.KindTimestampTZ, "timestamp with time zone"},
	{"ajb", "jsonb[]", "jsonb[]", change.KindArray, change.KindJSON, "jsonb"},
}

// ManyTypes returns the fixture for table schema.name.
func ManyTypes(schema, name string) ManyTypesFixture {
	t := &change.Table{Schema: schema, Name: name, Version: 1, Key: []int{0}}
	var ddl []string
	for _, c := range mtCols {
		t.Columns = append(t.Columns, change.Column{Name: c.name, Key: c.name == "k", Nullable: c.name != "k",
			Type: change.Type{Name: c.typ, Kind: c.kind, Elem: c.elem, Base: c.base}})
		ddl = append(ddl, change.QuoteIdent(c.name)+" "+c.ddl)
	}
	f := ManyTypesFixture{Table: t, Setup: []string{
		"CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')",
		"CREATE DOMAIN posint AS integer CHECK (VALUE > 0)",
		"CREATE SCHEMA IF NOT EXISTS " + change.QuoteIdent(schema),
		"CREATE TABLE " + t.ID().Quoted() + " (" + strings.Join(ddl, ", ") + ")",
	}}
	I := func(s string) change.Value { return change.V(change.KindInt, s) }
	F := func(s string) change.Value { return change.V(change.KindFloat, s) }
	N := func(s string) change.Value { return change.V(change.KindNumeric, s) }
	T := func(s string) change.Value { return change.V(change.KindText, s) }
	B := func(s string) change.Value { return change.V(change.KindBytes, s) }
	D := func(s string) change.Value { return change.V(change.KindDate, s) }
	TM := func(s string) change.Value { return change.V(change.KindTime, s) }
	TS := func(s string) change.Value { return change.V(change.KindTimestamp, s) }
	TZ := func(s string) change.Value { return change.V(change.KindTimestampTZ, s) }
	J := func(s string) change.Value { return change.V(change.KindJSON, s) }
	bo := func(s string) change.Value { return change.V(change.KindBool, s) }
	A := change.Array
	null := change.Null
	// Each row: values, and the SQL for the array columns (the rest is derived).
	type row struct {
		v      []change.Value
		arrays []string
	}
	rows := []row{
		{[]change.Value{I("1"), I("7"), I("9000000000"), F("1.5"), F("0.1"), N("12.30"), N("3.14159265358979323846264338327950288419716939937510"),
			N("1234567890123456789012345678901234567890.0123456789"), bo("true"), T("plain"), T("héllo wörld"), T("ab   "),
			B("\x00\x01\xfe\xff"), D("2024-02-29"), TM("12:34:56.789"), TM("12:34:56.789+05:30"), TS("2024-01-02T03:04:05.123456"),
			TS("2024-01-02T03:04:05.123"), TZ("2024-01-02T03:04:05.123456+00:00"), T("1 year 2 mons 3 days 04:05:06.789"),
			J(`{"b": 1,  "a": [1, 2.50]}`), J(`{"a": [1, 2.50], "b": {"c": null}}`), T("550e8400-e29b-41d4-a716-446655440000"),
			T("192.168.0.1/24"), T("happy"), I("5"),
			A(I("1"), I("2"), I("3")), A(T("a"), T("b c"), T(`q"uote`)), A(N("1.50"), N("-2.00")), A(B("\x01\x02"), B("")),
			A(TZ("2024-01-02T03:04:05+00:00")), A(J(`{"x": 1}`), J(`[1, 2]`))},
			[]string{`'{1,2,3}'`, `'{a,"b c","q\"uote"}'`, `'{1.50,-2.00}'`, `'{"\\x0102","\\x"}'`, `'{"2024-01-02 03:04:05+00"}'`, `'{"{\"x\": 1}","[1, 2]"}'`}},
		{[]change.Value{I("2"), I("-32768"), I("9223372036854775807"), F("-Infinity"), F("NaN"), N("-99999999.99"), N("NaN"),
			N("-99999999999999999999999999999999999999.9999999999"), bo("false"), T("tab\there\nnewline \\ backslash 'quote' \"dq\" ✓ 𝄞"), T(""), T("     "),
			B(""), D("0044-03-15 BC"), TM("24:00:00"), TM("00:00:00-08"), TS("infinity"), TS("0044-03-15T10:00:00 BC"),
			TZ("-infinity"), T("-1 years -2 mons +3 days -04:05:06.000001"), J(`[]`), J(`{}`), T("00000000-0000-0000-0000-000000000000"),
			T("::1"), T("sad"), I("2147483647"),
			A(), A(T(""), null, T("NULL")), A(null), A(), A(TZ("infinity"), null), A()},
			[]string{`'{}'`, `'{"",NULL,"NULL"}'`, `'{NULL}'`, `'{}'`, `'{infinity,NULL}'`, `'{}'`}},
		{[]change.Value{I("3"), null, null, null, null, null, null, null, null, null, null, null, null, null, null, null, null, null, null,
			null, null, null, null, null, null, null, null, null, null, null, null, null},
			[]string{"NULL", "NULL", "NULL", "NULL", "NULL", "NULL"}},
		{[]change.Value{I("4"), I("0"), I("-9223372036854775808"), F("3.4028235e+38"), F("-1.2345678901234567e-300"), N("-0.01"), N("0"),
			N("0.0000000001"), bo("true"), T("x"), T("12345678901234567890"), T("abcde"),
			B(strings.Repeat("\xab", 300)), D("infinity"), TM("00:00:00"), TM("23:59:59.999999+14"), TS("1999-12-31T23:59:59.999999"),
			TS("2000-01-01T00:00:00"), TZ("1970-01-01T00:00:00+00:00"), T("00:00:00"), J(`"just a string"`), J(`123.4500`),
			T("ffffffff-ffff-ffff-ffff-ffffffffffff"), T("10.0.0.0/8"), T("ok"), I("1"),
			A(I("-1")), A(T("x,y"), T("{z}")), A(N("0.00")), A(null, B("\xff")), A(TZ("0044-03-15T10:00:00+00:00 BC")), A(J(`null`), null)},
			[]string{`'{-1}'`, `'{"x,y","{z}"}'`, `'{0.00}'`, `'{NULL,"\\xff"}'`, `'{"0044-03-15 10:00:00+00 BC"}'`, `'{"null",NULL}'`}},
	}
	nArr := 6
	for _, r := range rows {
		f.Rows = append(f.Rows, r.v)
		sql := make([]string, len(r.v))
		for i, v := range r.v {
			c := mtCols[i]
			switch {
			case i >= len(r.v)-nArr:
				sql[i] = r.arrays[i-(len(r.v)-nArr)] + "::" + c.ddl
			case v.IsNull():
				sql[i] = "NULL"
			case v.Kind == change.KindBytes:
				sql[i] = `'\x` + hex.EncodeToString([]byte(v.Text)) + `'::bytea`
			default:
				sql[i] = change.QuoteLiteral(v.Text) + "::" + strings.TrimSuffix(c.ddl, " PRIMARY KEY")
			}
		}
		f.SQL = append(f.SQL, sql)
	}
	return f
}

// InsertSQL is the statement filling the source table with the rows.
func (f ManyTypesFixture) InsertSQL() string {
	var b strings.Builder
	b.WriteString("INSERT INTO " + f.Table.ID().Quoted() + " VALUES ")
	for i, r := range f.SQL {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(" + strings.Join(r, ", ") + ")")
	}
	return b.String()
}

// Batch is the rows as one snapshot batch that completes the table.
func (f ManyTypesFixture) Batch(snap change.Position) *change.Batch {
	b := &change.Batch{Snapshotted: []change.SnapshotDone{{Table: f.Table, Pos: snap}}}
	for _, r := range f.Rows {
		b.Changes = append(b.Changes, change.Change{Op: change.OpRead, Table: f.Table, After: r, Pos: snap})
	}
	return b
}

// Subset keeps the named columns (the key first) and the rows at the given
// indexes.
func (f ManyTypesFixture) Subset(name string, cols []string, rows []int) ManyTypesFixture {
	var idx []int
	for _, c := range cols {
		if i := f.Table.Column(c); i >= 0 {
			idx = append(idx, i)
		}
	}
	t := &change.Table{Schema: f.Table.Schema, Name: name, Version: 1, Key: []int{0}}
	var ddl []string
	for _, i := range idx {
		t.Columns = append(t.Columns, f.Table.Columns[i])
		ddl = append(ddl, change.QuoteIdent(mtCols[i].name)+" "+mtCols[i].ddl)
	}
	out := ManyTypesFixture{Table: t, Setup: []string{
		"CREATE TABLE " + t.ID().Quoted() + " (" + strings.Join(ddl, ", ") + ")",
	}}
	for _, r := range rows {
		var v []change.Value
		var q []string
		for _, i := range idx {
			v = append(v, f.Rows[r][i])
			q = append(q, f.SQL[r][i])
		}
		out.Rows = append(out.Rows, v)
		out.SQL = append(out.SQL, q)
	}
	return out
}
