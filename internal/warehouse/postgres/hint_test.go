package postgres

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/pipeline"
	"github.com/sluice-dev/sluice/internal/warehouse/warehousetest"
)

// TestRefusedBatchIsDescribed: a batch the target table refuses (a NOT NULL
// or a CHECK the source lacks) fails with a pipeline.TargetError naming the
// table, the column or constraint and the statement that fixes it, and is
// permanent; the same batch applies once the constraint is dropped.
func TestRefusedBatchIsDescribed(t *testing.T) {
	ctx := context.Background()
	tg := open(t, newDB(t), Options{})
	it := warehousetest.Items()
	if err := tg.Reset(ctx, it); err != nil {
		t.Fatal(err)
	}
	i := 0
	for _, c := range []struct {
		add, drop     string
		column, named string
		fix           string
	}{
		{`ALTER TABLE public.items ALTER COLUMN v SET NOT NULL`, `ALTER TABLE public.items ALTER COLUMN v DROP NOT NULL`,
			"v", "", `ALTER TABLE "public"."items" ALTER COLUMN "v" DROP NOT NULL`},
		{`ALTER TABLE public.items ADD CONSTRAINT n_positive CHECK (n > 0) NOT VALID`, `ALTER TABLE public.items DROP CONSTRAINT n_positive`,
			"", "n_positive", `ALTER TABLE "public"."items" DROP CONSTRAINT "n_positive"`},
	} {
		i++
		if _, err := tg.Pool().Exec(ctx, c.add); err != nil {
			t.Fatal(err)
		}
		b := &change.Batch{Changes: []change.Change{warehousetest.Ins(it, i, i, nil, -1)}}
		err := tg.Apply(ctx, b)
		var te *pipeline.TargetError
		if !errors.As(err, &te) {
			t.Fatalf("Apply = %v, want a TargetError", err)
		}
		if te.Class != pipeline.Permanent || te.Table != "public.items" || te.Column != c.column || te.Constraint != c.named && c.named != "" || !strings.Contains(te.Fix, c.fix) {
			t.Errorf("described as %+v", te)
		}
		if !strings.Contains(err.Error(), c.fix) {
			t.Errorf("message %q lacks the fix %s", err, c.fix)
		}
		if _, err := tg.Pool().Exec(ctx, c.drop); err != nil {
			t.Fatal(err)
		}
		if err := tg.Apply(ctx, b); err != nil {
			t.Fatalf("the refused batch after %s: %v", c.drop, err)
		}
	}
}
