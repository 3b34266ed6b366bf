package postgres

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/warehouse/warehousetest"
)

// TestMissingPrivileges: a target role that may not write the table, or
// may not create one, gets an error naming the table, the statement and
// the fix, and nothing is marked applied.
func TestMissingPrivileges(t *testing.T) {
	ctx := context.Background()
	url := newDB(t)
	admin := open(t, url, Options{})
	it := warehousetest.Items()
	if err := admin.Reset(ctx, it); err != nil {
		t.Fatal(err)
	}
	if err := admin.Apply(ctx, &change.Batch{Changes: []change.Change{warehousetest.Ins(it, 1, 1, "a", 1)}}); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		"CREATE ROLE limited LOGIN",
		"GRANT USAGE ON SCHEMA _sluice TO limited",
		"GRANT SELECT, INSERT, DELETE ON ALL TABLES IN SCHEMA _sluice TO limited",
		"GRANT SELECT ON public.items TO limited",
	} {
		if _, err := admin.Pool().Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	limitedURL := strings.Replace(url, "postgres://"+cfg.User+"@", "postgres://limited@", 1)
	tg := open(t, limitedURL, Options{})
	before, err := tg.State(ctx)
	if err != nil {
		t.Fatal(err)
	}

	// No INSERT/DELETE on the table.
	err = tg.Apply(ctx, &change.Batch{Changes: []change.Change{warehousetest.Ins(it, 2, 2, "b", 2)}})
	if err == nil {
		t.Fatal("apply without privileges succeeded")
	}
	for _, w := range []string{"public.items", "permission denied", "grant"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
	// No CREATE on the schema: a stream brings a new table.
	other := warehousetest.Items()
	other.Name = "new_table"
	err = tg.ApplyStream(ctx, &change.Batch{Changes: []change.Change{warehousetest.Ins(other, 3, 3, "c", 3)}})
	if err == nil {
		t.Fatal("creating a table without CREATE succeeded")
	}
	for _, w := range []string{"public.new_table", "CREATE TABLE", "permission denied", "grant it CREATE"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
	after, err := tg.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after[it.ID()] != before[it.ID()] || len(after) != len(before) {
		t.Fatalf("state moved by failed applies: before %v, after %v", before, after)
	}
	got := rows(t, admin.Pool(), it.ID(), []string{"k", "v"})
	if len(got) != 1 || *got[0][0] != "1" {
		t.Fatalf("table changed by failed applies: %d rows", len(got))
	}
}
