package duckdb

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/warehouse/warehousetest"
)

// TestReadOnlyFile: a DuckDB file that cannot be written fails the batch
// with an error that says so and what to do, and nothing is marked applied.
func TestReadOnlyFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "mirror.duckdb")
	it := warehousetest.Items()
	rw, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := rw.Reset(ctx, it); err != nil {
		t.Fatal(err)
	}
	if err := rw.Apply(ctx, &change.Batch{Changes: []change.Change{warehousetest.Ins(it, 1, 1, "a", 1)}}); err != nil {
		t.Fatal(err)
	}
	rw.Close()

	ro := open(t, path, Options{ReadOnly: true})
	before, err := ro.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	err = ro.Apply(ctx, &change.Batch{Changes: []change.Change{warehousetest.Ins(it, 2, 2, "b", 2)}})
	if err == nil {
		t.Fatal("apply to a read-only database succeeded")
	}
	for _, w := range []string{path, "read-only", "open it writable"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
	if err := ro.Reset(ctx, it); err == nil || !strings.Contains(err.Error(), "read-only") {
		t.Errorf("reset of a read-only database: %v", err)
	}
	after, err := ro.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after[it.ID()] != before[it.ID()] || before[it.ID()].Applied != warehousetest.Pos(1) {
		t.Fatalf("state moved: before %v, after %v", before, after)
	}
	if got := rows(t, ro.DB(), it.ID(), []string{"k"}); len(got) != 1 {
		t.Fatalf("rows: %d, want 1", len(got))
	}
}

// TestDecimalNaN: a NaN in a numeric(p,s) column, which DuckDB's DECIMAL
// cannot hold, fails the batch naming the column and the way out.
func TestDecimalNaN(t *testing.T) {
	ctx := context.Background()
	tg := open(t, ":memory:", Options{})
	tbl := &change.Table{Schema: "public", Name: "prices", Key: []int{0}, Columns: []change.Column{
		{Name: "id", Type: change.Type{Name: "integer", Kind: change.KindInt}, Key: true},
		{Name: "price", Type: change.Type{Name: "numeric(10,2)", Kind: change.KindNumeric}},
	}}
	err := tg.Apply(ctx, &change.Batch{Changes: []change.Change{{Op: change.OpInsert, Table: tbl, Pos: warehousetest.Pos(1),
		After: []change.Value{change.V(change.KindInt, "1"), change.V(change.KindNumeric, "NaN")}}}})
	if err == nil || !strings.Contains(err.Error(), `column "price" of public.prices`) || !strings.Contains(err.Error(), "plain numeric") {
		t.Fatalf("got %v", err)
	}
	st, _ := tg.State(ctx)
	if _, ok := st[tbl.ID()]; ok {
		t.Fatalf("state written for a failed batch: %v", st)
	}
}
