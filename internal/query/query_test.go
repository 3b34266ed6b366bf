package query

import (
	"context"
	"database/sql"
	"testing"

	_ "github.com/duckdb/duckdb-go/v2"
	"github.com/jackc/pgx/v5"

	"github.com/sluice-dev/sluice/internal/testenv"
)

// TestPlainJSON: a JSON value DuckDB hands over decoded prints as JSON.
func TestPlainJSON(t *testing.T) {
	for _, tc := range []struct {
		in   any
		want any
	}{
		{map[string]any{"a": 1.0}, `{"a":1}`},
		{[]any{1.0, "x", nil}, `[1,"x",null]`},
		{[]byte("raw"), "raw"},
		{"text", "text"},
		{nil, nil},
	} {
		if got := plain(tc.in); got != tc.want {
			t.Errorf("plain(%#v) = %#v, want %#v", tc.in, got, tc.want)
		}
	}
}

func openDuckDB(t *testing.T) *sql.DB {
	t.Helper()
	db, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	// One connection: the in-memory database lives as long as it.
	db.SetMaxOpenConns(1)
	for _, s := range []string{
		"CREATE SCHEMA public",
		"CREATE TABLE public.customers (id INTEGER, doc JSON)",
		`INSERT INTO public.customers VALUES (1, '{"a": 1}'), (2, NULL)`,
		"CREATE TABLE big AS SELECT range AS n FROM range(20000)",
	} {
		if _, err := db.Exec(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	return db
}

// The DuckDB sandbox: the source schema's tables are found without their
// schema, a statement that writes changes nothing, and results are bounded.
func TestDuckDB(t *testing.T) {
	ctx := context.Background()
	db := openDuckDB(t)
	res, err := DuckDB(ctx, db, "SELECT id, doc FROM customers ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Columns) != 2 || len(res.Rows) != 2 || res.Rows[0][1] != `{"a":1}` || res.Rows[1][1] != nil {
		t.Errorf("result %+v", res)
	}
	if _, err := DuckDB(ctx, db, "DELETE FROM customers RETURNING id"); err != nil {
		t.Fatalf("DELETE in the sandbox: %v", err)
	}
	var n int
	if err := db.QueryRow("SELECT count(*) FROM public.customers").Scan(&n); err != nil || n != 2 {
		t.Errorf("after a sandboxed DELETE: %d rows (%v), want 2: the write was not rolled back", n, err)
	}
	res, err = DuckDB(ctx, db, "SELECT n FROM big")
	if err != nil || len(res.Rows) != MaxRows {
		t.Errorf("unbounded select: %d rows (%v), want %d", len(res.Rows), err, MaxRows)
	}
	if _, err := DuckDB(ctx, db, "SELEC 1"); err == nil {
		t.Error("a syntax error was not reported")
	}
}

// The Postgres sandbox is a read-only transaction: a write is refused.
func TestPostgres(t *testing.T) {
	ctx := context.Background()
	pg := testenv.NewPostgres(t, testenv.PostgresOptions{})
	name, err := pg.CreateDatabase(ctx, "query")
	if err != nil {
		t.Fatal(err)
	}
	url := pg.URL(name)
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE TABLE t (id int PRIMARY KEY, at timestamptz); INSERT INTO t VALUES (1, '2026-01-02T03:04:05Z')"); err != nil {
		t.Fatal(err)
	}
	res, err := Postgres(ctx, url, "SELECT id, at FROM t")
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Rows) != 1 || res.Rows[0][0] != int32(1) || res.Rows[0][1] != "2026-01-02T03:04:05Z" {
		t.Errorf("result %+v", res.Rows)
	}
	if _, err := Postgres(ctx, url, "DELETE FROM t"); err == nil {
		t.Error("a DELETE ran in the read-only sandbox")
	}
}
