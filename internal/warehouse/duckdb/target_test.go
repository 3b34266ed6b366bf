package duckdb

import (
	"context"
	"database/sql"
	"flag"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/warehouse/warehousetest"
)

func open(t testing.TB, path string, opts Options) *Target {
	t.Helper()
	tg, err := Open(context.Background(), path, opts)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { tg.Close() })
	return tg
}

func rows(t *testing.T, db *sql.DB, table change.TableID, cols []string) [][]*string {
	t.Helper()
	exprs := make([]string, len(cols))
	for i, c := range cols {
		exprs[i] = "CAST(" + change.QuoteIdent(c) + " AS VARCHAR)"
	}
	r, err := db.Query("SELECT " + strings.Join(exprs, ", ") + " FROM " + table.Quoted())
	if err != nil {
		t.Fatalf("read %s: %v", table, err)
	}
	defer r.Close()
	var out [][]*string
	for r.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := r.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		row := make([]*string, len(cols))
		for i, v := range vals {
			if v.Valid {
				s := v.String
				row[i] = &s
			}
		}
		out = append(out, row)
	}
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestConformance(t *testing.T) {
	warehousetest.Run(t, warehousetest.Harness{
		Open: func(t *testing.T) warehousetest.Target { return open(t, ":memory:", Options{}) },
		Rows: func(t *testing.T, tg warehousetest.Target, table change.TableID, cols []string) [][]*string {
			return rows(t, tg.(*Target).DB(), table, cols)
		},
	})
}

func benchTarget(b *testing.B) *Target {
	return open(b, filepath.Join(b.TempDir(), "bench.duckdb"), Options{})
}

func BenchmarkApplyInserts10k(b *testing.B) {
	warehousetest.BenchApply(b, benchTarget(b), "insert", 10000)
}
func BenchmarkApplyMixed10k(b *testing.B) {
	warehousetest.BenchApply(b, benchTarget(b), "mixed", 10000)
}
func BenchmarkApplySnapshot10k(b *testing.B) {
	warehousetest.BenchApply(b, benchTarget(b), "snapshot", 10000)
}

func BenchmarkApplySnapshot100k(b *testing.B) {
	warehousetest.BenchApply(b, benchTarget(b), "snapshot", 100000)
}

var _ = flag.Bool("update", false, "rewrite the golden files in testdata")

func TestGoldenSQL(t *testing.T) { warehousetest.Golden(t, Dialect{}, "duckdb") }

func BenchmarkApplySnapshot250k(b *testing.B) {
	warehousetest.BenchApply(b, benchTarget(b), "snapshot", 250000)
}
