package duckdb

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/pipeline"
	"github.com/sluice-dev/sluice/internal/warehouse/warehousetest"
)

// TestRefusedBatchIsDescribed: a batch the DuckDB table cannot take (a NOT
// NULL the source lacks, a value DuckDB cannot hold) fails with a
// pipeline.TargetError that names the table, the column and the fix, and is
// permanent; the same batch applies once the table is fixed.
func TestRefusedBatchIsDescribed(t *testing.T) {
	ctx := context.Background()
	tg := open(t, ":memory:", Options{})
	it := warehousetest.Items()
	if err := tg.Reset(ctx, it); err != nil {
		t.Fatal(err)
	}
	if _, err := tg.DB().ExecContext(ctx, `ALTER TABLE public.items ALTER COLUMN v SET NOT NULL`); err != nil {
		t.Fatal(err)
	}
	b := &change.Batch{Changes: []change.Change{warehousetest.Ins(it, 1, 1, nil, 1)}}
	for _, name := range []string{"staged", "direct"} {
		if name == "staged" {
			// A second batch for a key already there goes through staging.
			b = &change.Batch{Changes: []change.Change{warehousetest.Upd(it, 2, nil, 1, nil, 2)}}
		}
		err := tg.Apply(ctx, b)
		var te *pipeline.TargetError
		if !errors.As(err, &te) {
			t.Fatalf("%s: Apply = %v, want a TargetError", name, err)
		}
		if te.Class != pipeline.Permanent || te.Table != "public.items" || te.Column != "v" || !strings.Contains(te.Fix, `DROP NOT NULL`) {
			t.Errorf("%s: described as %+v", name, te)
		}
		if !strings.Contains(err.Error(), "public.items") || !strings.Contains(err.Error(), "DROP NOT NULL") {
			t.Errorf("%s: message %q lacks the table or the fix", name, err)
		}
		if name == "direct" {
			// Let the first row in, so the next batch updates it.
			if _, err := tg.DB().ExecContext(ctx, `ALTER TABLE public.items ALTER COLUMN v DROP NOT NULL`); err != nil {
				t.Fatal(err)
			}
			if err := tg.Apply(ctx, &change.Batch{Changes: []change.Change{warehousetest.Ins(it, 1, 1, "a", 1)}}); err != nil {
				t.Fatal(err)
			}
			if _, err := tg.DB().ExecContext(ctx, `ALTER TABLE public.items ALTER COLUMN v SET NOT NULL`); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := tg.DB().ExecContext(ctx, `ALTER TABLE public.items ALTER COLUMN v DROP NOT NULL`); err != nil {
		t.Fatal(err)
	}
	if err := tg.Apply(ctx, b); err != nil {
		t.Fatalf("the refused batch after the fix: %v", err)
	}
}

func TestDescribe(t *testing.T) {
	for _, c := range []struct {
		msg           string
		class         pipeline.Class
		table, column string
		fix           string
	}{
		{`apply batch to DuckDB x: table public.prices: load 1 rows into staging: column "price" of public.prices: numeric NaN cannot be stored in DuckDB DECIMAL(10,2); declare the source column as plain numeric`,
			pipeline.Permanent, "public.prices", "price", "declare the source column as plain numeric"},
		{`table public.items: INSERT INTO ...: Constraint Error: CHECK constraint failed on table items with expression CHECK((n > 0))`,
			pipeline.Permanent, "public.items", "", "cannot drop a CHECK"},
		{`table public.items: load 1 rows: flush appender into public.items: database/sql/driver: could not close appender: Failed to append: NOT NULL constraint failed: items.qty`,
			pipeline.Permanent, "public.items", "qty", "DROP NOT NULL"},
		{`FATAL Error: Failed: database has been invalidated because of a previous fatal error`, pipeline.Fatal, "", "", "start sluice again"},
		{`IO Error: Could not write file "x.wal": No space left on device`, pipeline.Transient, "", "", "free space"},
		{`connection lost`, pipeline.Transient, "", "", ""},
	} {
		te := describe(errors.New(c.msg))
		if te.Class != c.class || te.Table != c.table || te.Column != c.column || !strings.Contains(te.Fix, c.fix) || (c.fix == "") != (te.Fix == "") {
			t.Errorf("describe(%q) = %+v", c.msg, te)
		}
	}
}
