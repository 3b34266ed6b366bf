package redshift

import (
	"strings"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/internal/change"
)

// Every supported type goes through record, landing and merge into the
// Postgres stand-in; what lands is pinned.
func TestEveryTypeMerged(t *testing.T) {
	tbl := allTypes()
	e := newEnv(t, tbl)
	V := change.V
	full := []change.Value{
		V(change.KindInt, "1"), V(change.KindText, "eu"), V(change.KindBool, "true"),
		V(change.KindInt, "-3"), V(change.KindInt, "42"), V(change.KindInt, "9007199254740993"), V(change.KindInt, "4000000000"),
		V(change.KindFloat, "1.5"), V(change.KindFloat, "NaN"),
		V(change.KindNumeric, "12.50"), V(change.KindNumeric, "123456789012345678901234567890.0123456789"), V(change.KindNumeric, "3.14159"),
		V(change.KindText, "héllo wörld"), V(change.KindText, "x"), V(change.KindText, "ab "), V(change.KindText, "body\nwith \"quotes\" and \\"),
		V(change.KindText, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"), V(change.KindText, "10.0.0.1"), V(change.KindText, "happy"),
		V(change.KindText, "1 year 2 mons"), V(change.KindText, "short"), V(change.KindBytes, "\x00\xffab"),
		V(change.KindDate, "2024-02-29"), V(change.KindTime, "12:34:56.789"), V(change.KindTime, "12:34:56+02:00"),
		V(change.KindTimestamp, "2024-01-02T03:04:05.123456"), V(change.KindTimestampTZ, "2024-01-02T03:04:05.123+00:00"),
		V(change.KindJSON, `{"a": [1, 2]}`), V(change.KindJSON, `{"b": null}`),
		change.Array(V(change.KindText, "x"), change.Null, V(change.KindText, "z")),
		change.Array(change.Array(V(change.KindInt, "1"), V(change.KindInt, "2")), change.Array(V(change.KindInt, "3"), V(change.KindInt, "4"))),
		V(change.KindText, "odd"),
	}
	nulls := make([]change.Value, len(full))
	nulls[0], nulls[1], nulls[len(nulls)-1] = V(change.KindInt, "2"), V(change.KindText, "us"), V(change.KindText, "not null")
	var recs []landed
	for i, row := range [][]change.Value{full, nulls} {
		c := change.Change{Op: change.OpInsert, Table: tbl, After: row, Pos: change.Position{CommitLSN: change.LSN(100 + i), LSN: change.LSN(90 + i)}, CommitTime: time.Unix(1700000000, 0)}
		recs = append(recs, record(c))
	}
	e.land(recs...)
	e.merge()
	if _, err := e.conn.Exec(e.ctx, "SET TIME ZONE 'UTC'"); err != nil {
		t.Fatal(err)
	}
	rows := e.dump(`SELECT row_to_json(t)::text FROM "shop"."every_type" AS t`)
	golden(t, "postgres_every_type_rows.txt", strings.Join(rows, "\n")+"\n")
}

func TestMapType(t *testing.T) {
	for _, tc := range []struct {
		name string
		kind change.Kind
		base string
		want string
		warn bool
	}{
		{"numeric(38,0)", change.KindNumeric, "", "DECIMAL(38,0)", false},
		// DECIMAL(19,s) is 8 bytes: 9999999999999999999 would overflow it.
		// https://docs.aws.amazon.com/redshift/latest/dg/r_Numeric_types201.html
		{"numeric(19,0)", change.KindNumeric, "", "DECIMAL(20,0)", false},
		{"numeric(19,4)", change.KindNumeric, "", "DECIMAL(20,4)", false},
		{"numeric(18,2)", change.KindNumeric, "", "DECIMAL(18,2)", false},
		// Redshift's largest scale is 37.
		{"numeric(38,37)", change.KindNumeric, "", "DECIMAL(38,37)", false},
		{"numeric(38,38)", change.KindNumeric, "", "VARCHAR(65535)", true},
		{"numeric(39,2)", change.KindNumeric, "", "VARCHAR(65535)", true},
		{"numeric(5,-2)", change.KindNumeric, "", "VARCHAR(65535)", true},
		{"numeric", change.KindNumeric, "", "VARCHAR(65535)", true},
		{"character varying(20000)", change.KindText, "", "VARCHAR(65535)", false},
		{"character varying(1)", change.KindText, "", "VARCHAR(4)", false},
		{"character", change.KindText, "", "VARCHAR(4)", false},
		{"time(3) with time zone", change.KindTime, "", "TIMETZ", false},
		{"us_postal_code", change.KindText, "character varying(10)", "VARCHAR(40)", false},
		{"int4range", change.KindText, "", "VARCHAR(65535)", false},
		{"real", change.KindFloat, "", "REAL", false},
		{"smallint", change.KindInt, "", "SMALLINT", false},
	} {
		got, warn, err := MapType(change.Column{Name: "c", Type: change.Type{Name: tc.name, Kind: tc.kind, Base: tc.base}})
		if err != nil || got.String() != tc.want || (warn != "") != tc.warn {
			t.Errorf("%s: got %s, warning %q, err %v; want %s (warning %v)", tc.name, got, warn, err, tc.want, tc.warn)
		}
	}
	if _, _, err := MapType(change.Column{Name: "c", Type: change.Type{Name: "x", Kind: change.KindUnchanged}}); err == nil {
		t.Error("a column of kind unchanged mapped without error")
	}
}
