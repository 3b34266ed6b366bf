package duckdb

import (
	"context"
	"database/sql"
	"reflect"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/testenv"
	"github.com/sluice-dev/sluice/internal/warehouse"
	"github.com/sluice-dev/sluice/internal/warehouse/postgres"
	"github.com/sluice-dev/sluice/internal/warehouse/warehousetest"
)

// TestManyTypesAgainstPostgres fills a real Postgres source table and a
// DuckDB mirror (and a Postgres mirror) with the same rows of every mapped
// type, then checks, per column, that the canonical forms computed inside
// each database agree, that the checksums agree, and that one changed value
// is found by bucket and key.
func TestManyTypesAgainstPostgres(t *testing.T) {
	pg := testenv.NewPostgres(t, testenv.PostgresOptions{})
	f := warehousetest.ManyTypes("public", "many")
	t.Run("staged", func(t *testing.T) {
		if n := compareWithSource(t, pg, f, f.Setup); n != 0 {
			t.Errorf("%d rows were appended directly, want all staged (intervals, json, arrays)", n)
		}
	})
	t.Run("direct", func(t *testing.T) {
		// The columns the direct path converts in Go, with finite values.
		d := f.Subset("direct", []string{"k", "i2", "i8", "f4", "f8", "n", "nu", "nbig", "b", "t", "vc", "ch", "by", "d", "ts", "ts3", "tstz", "u", "ip", "mood", "pos"}, []int{0, 2})
		if n := compareWithSource(t, pg, d, append(f.Setup[:2:2], d.Setup...)); n != int64(len(d.Rows)) {
			t.Errorf("%d rows were appended directly, want %d", n, len(d.Rows))
		}
	})
}

// compareWithSource fills a Postgres source table and DuckDB and Postgres
// mirrors with the fixture and compares them; it returns how many rows
// DuckDB appended directly.
func compareWithSource(t *testing.T, pg *testenv.Postgres, f warehousetest.ManyTypesFixture, setup []string) int64 {
	ctx := context.Background()
	srcDB, err := pg.CreateDatabase(ctx, "src")
	if err != nil {
		t.Fatal(err)
	}
	src, err := pgx.Connect(ctx, pg.URL(srcDB))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close(ctx)
	for _, q := range append(setup, f.InsertSQL()) {
		if _, err := src.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	duck := open(t, ":memory:", Options{})
	dstDB, err := pg.CreateDatabase(ctx, "dst")
	if err != nil {
		t.Fatal(err)
	}
	pgt, err := postgres.Open(ctx, pg.URL(dstDB), postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer pgt.Close()
	snap := change.Position{CommitLSN: 500}
	for _, tg := range []warehousetest.Target{duck, pgt} {
		if err := tg.Reset(ctx, f.Table); err != nil {
			t.Fatal(err)
		}
		if err := tg.Apply(ctx, f.Batch(snap)); err != nil {
			t.Fatal(err)
		}
	}

	// Per column, the canonical text of every row, in key order.
	canon := func(q func(string) [][]*string, d warehouse.Dialect) map[string][]string {
		out := map[string][]string{}
		for _, c := range f.Table.Columns {
			rows := q("SELECT " + d.Canonical(warehouse.TypeOf(c), change.QuoteIdent(c.Name)) + " FROM " + f.Table.ID().Quoted() + " ORDER BY k")
			for _, r := range rows {
				s := "<NULL>"
				if r[0] != nil {
					s = *r[0]
				}
				out[c.Name] = append(out[c.Name], s)
			}
		}
		return out
	}
	pgQuery := func(q postgres.Querier) func(string) [][]*string {
		return func(s string) [][]*string {
			r, err := q.Query(ctx, s, pgx.QueryExecModeSimpleProtocol)
			if err != nil {
				t.Fatalf("%s: %v", s, err)
			}
			out, err := pgx.CollectRows(r, func(r pgx.CollectableRow) ([]*string, error) {
				var row []*string
				for _, v := range r.RawValues() {
					if v == nil {
						row = append(row, nil)
					} else {
						s := string(v)
						row = append(row, &s)
					}
				}
				return row, nil
			})
			if err != nil {
				t.Fatalf("%s: %v", s, err)
			}
			return out
		}
	}
	duckQuery := func(s string) [][]*string {
		r, err := duck.DB().Query(s)
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		defer r.Close()
		var out [][]*string
		for r.Next() {
			var v sql.NullString
			if err := r.Scan(&v); err != nil {
				t.Fatal(err)
			}
			if v.Valid {
				s := v.String
				out = append(out, []*string{&s})
			} else {
				out = append(out, []*string{nil})
			}
		}
		return out
	}
	want := canon(pgQuery(src), postgres.Dialect{})
	for name, got := range map[string]map[string][]string{
		"duckdb":   canon(duckQuery, Dialect{}),
		"postgres": canon(pgQuery(pgt.Pool()), postgres.Dialect{}),
	} {
		for _, c := range f.Table.Columns {
			if !reflect.DeepEqual(got[c.Name], want[c.Name]) {
				t.Errorf("%s column %s (%s):\n got  %q\n want %q", name, c.Name, c.Type.Name, got[c.Name], want[c.Name])
			}
		}
	}
	// The Postgres mirror holds the very same text forms.
	for _, c := range f.Table.Columns {
		q := "SELECT CAST(" + change.QuoteIdent(c.Name) + " AS text) FROM " + f.Table.ID().Quoted() + " ORDER BY k"
		s, m := pgQuery(src)(q), pgQuery(pgt.Pool())(q)
		if !reflect.DeepEqual(s, m) {
			t.Errorf("postgres mirror column %s differs from the source", c.Name)
		}
	}

	sb, err := postgres.Checksums(ctx, src, f.Table, 4)
	if err != nil {
		t.Fatal(err)
	}
	db, err := duck.Checksums(ctx, f.Table, 4)
	if err != nil {
		t.Fatal(err)
	}
	pb, err := pgt.Checksums(ctx, f.Table, 4)
	if err != nil {
		t.Fatal(err)
	}
	if d := warehouse.DiffBuckets(sb, db); d != nil {
		t.Errorf("duckdb buckets differ from the source: %v\n source %v\n duckdb %v", d, sb, db)
	}
	if d := warehouse.DiffBuckets(sb, pb); d != nil {
		t.Errorf("postgres buckets differ from the source: %v", d)
	}

	direct := duck.directRows.Load()
	// One changed value in the mirror: its bucket differs and BucketKeys finds the key.
	up := append([]change.Value(nil), f.Rows[1]...)
	up[f.Table.Column("f8")] = change.V(change.KindFloat, "0.30000000000000004")
	if err := duck.Apply(ctx, &change.Batch{Changes: []change.Change{{Op: change.OpUpdate, Table: f.Table, After: up, Pos: change.Position{CommitLSN: 600, LSN: 590}}}}); err != nil {
		t.Fatal(err)
	}
	db, err = duck.Checksums(ctx, f.Table, 4)
	if err != nil {
		t.Fatal(err)
	}
	d := warehouse.DiffBuckets(sb, db)
	if len(d) != 1 {
		t.Fatalf("after one change, differing buckets %v, want one", d)
	}
	sk, err := postgres.BucketKeys(ctx, src, f.Table, 4, d[0], 100)
	if err != nil {
		t.Fatal(err)
	}
	dk, err := duck.BucketKeys(ctx, f.Table, 4, d[0], 100)
	if err != nil {
		t.Fatal(err)
	}
	if rd := warehouse.DiffRows(sk, dk); len(rd) != 1 || !reflect.DeepEqual(rd[0].Key, []string{f.Rows[1][0].Text}) {
		t.Fatalf("row diff %+v, want key %s", rd, f.Rows[1][0].Text)
	}
	return direct
}
