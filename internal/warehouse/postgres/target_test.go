package postgres

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/testenv"
	"github.com/sluice-dev/sluice/internal/warehouse/warehousetest"
)

// One throwaway cluster for the package; every test gets its own database.
var cluster *testenv.Postgres

func TestMain(m *testing.M) {
	p, err := testenv.StartPostgres(context.Background(), testenv.PostgresOptions{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "start throwaway postgres:", err)
		os.Exit(1)
	}
	cluster = p
	code := m.Run()
	p.Stop()
	os.Exit(code)
}

func newDB(t testing.TB) string {
	t.Helper()
	db, err := cluster.CreateDatabase(context.Background(), "wh")
	if err != nil {
		t.Fatal(err)
	}
	return cluster.URL(db)
}

func open(t testing.TB, url string, opts Options) *Target {
	t.Helper()
	tg, err := Open(context.Background(), url, opts)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { tg.Close() })
	return tg
}

func rows(t *testing.T, q Querier, table change.TableID, cols []string) [][]*string {
	t.Helper()
	exprs := make([]string, len(cols))
	for i, c := range cols {
		exprs[i] = "CAST(" + change.QuoteIdent(c) + " AS VARCHAR)"
	}
	r, err := q.Query(context.Background(), "SELECT "+strings.Join(exprs, ", ")+" FROM "+table.Quoted())
	if err != nil {
		t.Fatalf("read %s: %v", table, err)
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
		t.Fatalf("read %s: %v", table, err)
	}
	return out
}

func TestConformance(t *testing.T) {
	warehousetest.Run(t, warehousetest.Harness{
		Open: func(t *testing.T) warehousetest.Target { return open(t, newDB(t), Options{}) },
		Rows: func(t *testing.T, tg warehousetest.Target, table change.TableID, cols []string) [][]*string {
			return rows(t, tg.(*Target).Pool(), table, cols)
		},
	})
}

func BenchmarkApplyInserts10k(b *testing.B) {
	warehousetest.BenchApply(b, open(b, newDB(b), Options{}), "insert", 10000)
}
func BenchmarkApplyMixed10k(b *testing.B) {
	warehousetest.BenchApply(b, open(b, newDB(b), Options{}), "mixed", 10000)
}
func BenchmarkApplySnapshot10k(b *testing.B) {
	warehousetest.BenchApply(b, open(b, newDB(b), Options{}), "snapshot", 10000)
}

func BenchmarkApplySnapshot100k(b *testing.B) {
	warehousetest.BenchApply(b, open(b, newDB(b), Options{}), "snapshot", 100000)
}

var _ = flag.Bool("update", false, "rewrite the golden files in testdata")

func TestGoldenSQL(t *testing.T) { warehousetest.Golden(t, Dialect{}, "postgres") }
