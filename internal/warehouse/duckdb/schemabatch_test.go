package duckdb_test

import (
	"context"
	"testing"

	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/warehouse/duckdb"
)

func col(name string, k change.Kind, typ string, key bool) change.Column {
	return change.Column{Name: name, Type: change.Type{Name: typ, Kind: k}, Key: key, Nullable: !key}
}

// DuckDB cannot commit a transaction that adds a column with a default
// expression and then drops another; the generated ALTERs drop first. This
// batch (updates, ADD COLUMN with a fast default, DROP COLUMN, more
// changes) is what a source sends for the two schema changes in a row.
func TestAddWithDefaultThenDropInOneBatch(t *testing.T) {
	ctx := context.Background()
	tgt, err := duckdb.Open(ctx, t.TempDir()+"/x.duckdb", duckdb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	v1 := &change.Table{Schema: "public", Name: "docs", Key: []int{0}, Version: 1, Columns: []change.Column{col("id", change.KindInt, "integer", true), col("title", change.KindText, "text", false), col("body", change.KindText, "text", false)}}
	three := change.V(change.KindInt, "3")
	v2 := &change.Table{Schema: "public", Name: "docs", Key: []int{0}, Version: 2, Columns: append(append([]change.Column{}, v1.Columns...), col("rating", change.KindInt, "integer", false))}
	v2.Columns[3].Missing = &three
	v3 := &change.Table{Schema: "public", Name: "docs", Key: []int{0}, Version: 3, Columns: []change.Column{v1.Columns[0], v1.Columns[2], v2.Columns[3]}}
	I := func(s string) change.Value { return change.V(change.KindInt, s) }
	T := func(s string) change.Value { return change.V(change.KindText, s) }
	if err := tgt.Reset(ctx, v1); err != nil {
		t.Fatal(err)
	}
	var snap []change.Change
	for i := 1; i <= 5; i++ {
		snap = append(snap, change.Change{Op: change.OpRead, Table: v1, After: []change.Value{I(string(rune('0' + i))), T("t"), T("b")}, Pos: change.Position{CommitLSN: 10}})
	}
	if err := tgt.Apply(ctx, &change.Batch{Changes: snap, Snapshotted: []change.SnapshotDone{{Table: v1, Pos: change.Position{CommitLSN: 10}}}}); err != nil {
		t.Fatal(err)
	}
	{
		if err := tgt.Apply(ctx, &change.Batch{Changes: []change.Change{
			{Op: change.OpUpdate, Table: v1, After: []change.Value{I("1"), T("t!"), change.Unchanged}, Pos: change.Position{CommitLSN: 20, LSN: 19}},
		}}); err != nil {
			t.Fatal(err)
		}
	}
	err = tgt.Apply(ctx, &change.Batch{Changes: []change.Change{
		{Op: change.OpUpdate, Table: v2, After: []change.Value{I("5"), T("t"), T("b"), I("5")}, Pos: change.Position{CommitLSN: 30, LSN: 29}},
		{Op: change.OpInsert, Table: v2, After: []change.Value{I("100"), T("new"), T("short"), I("5")}, Pos: change.Position{CommitLSN: 40, LSN: 39}},
		{Op: change.OpInsert, Table: v3, After: []change.Value{I("101"), T("after"), I("1")}, Pos: change.Position{CommitLSN: 50, LSN: 49}},
		{Op: change.OpUpdate, Table: v3, After: []change.Value{I("1"), change.Unchanged, I("0")}, Pos: change.Position{CommitLSN: 60, LSN: 59}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	var sum, n int
	if err := tgt.DB().QueryRow(`SELECT sum(rating), count(*) FROM public.docs`).Scan(&sum, &n); err != nil {
		t.Fatal(err)
	}
	// ratings: 1 -> 0, 2,3,4 -> 3 (the fast default), 5 -> 5, 100 -> 5, 101 -> 1
	if sum != 0+3+3+3+5+5+1 || n != 7 {
		t.Errorf("sum(rating) = %d over %d rows, want 20 over 7", sum, n)
	}
}
