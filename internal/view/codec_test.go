package view

import (
	"context"
	"database/sql/driver"
	"slices"
	"testing"

	"github.com/sluice-dev/sluice/internal/change"
)

func TestOutputLogRoundTrip(t *testing.T) {
	e := open(t, "", nil)
	rows := [][]change.Value{
		{I(4), S("view"), change.Null, change.V(change.KindBytes, "\x00\xff\x80"), change.Array(I(1), change.Null, change.Array(S("a")))},
		{S("y")},
	}
	var app [][]driver.Value
	for i, r := range rows {
		app = append(app, []driver.Value{uint64(7), int64(i + 1), "v", uint8(1), uint32(0), nil, appendRow(nil, r), appendRow(nil, r)})
	}
	ctx := context.Background()
	if err := e.appendRows(ctx, "", "_sluice", "outlog", app); err != nil {
		t.Fatal(err)
	}
	res, err := e.conn.QueryContext(ctx, `SELECT after FROM "_sluice"."outlog" ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Close()
	i := 0
	for res.Next() {
		var b []byte
		if err := res.Scan(&b); err != nil {
			t.Fatal(err)
		}
		got, err := decodeRow(b)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.EqualFunc(got, rows[i], change.Value.Equal) {
			t.Fatalf("row %d: got %v, want %v", i, got, rows[i])
		}
		i++
	}
}
