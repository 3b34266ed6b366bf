package redshift

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// Through the proxy the server reports what Redshift reports: pgx's own
// simple-protocol Query refuses to run there (the failure PgConn.Query had),
// and PgConn runs every kind of statement this package sends.
func TestPgConnWithRedshiftParameters(t *testing.T) {
	ctx := context.Background()
	name, err := cluster.CreateDatabase(ctx, t.Name())
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, standInURL(name))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if got := conn.PgConn().ParameterStatus("client_encoding"); got != "UNICODE" {
		t.Fatalf("client_encoding through the proxy = %q, want UNICODE", got)
	}
	if got := conn.PgConn().ParameterStatus("standard_conforming_strings"); got != "" {
		t.Fatalf("standard_conforming_strings through the proxy = %q, want none", got)
	}
	if rows, err := conn.Query(ctx, "SELECT 1", pgx.QueryExecModeSimpleProtocol); err == nil {
		rows.Close()
		if rows.Err() == nil {
			t.Fatal("pgx's simple-protocol Query ran without standard_conforming_strings: the proxy does not play Redshift")
		}
	}
	db, err := NewPgConn(ctx, conn, Postgres)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := db.Query(ctx, "SELECT 1, NULL::text, 'a''b'")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(texts(rows)[0], "|"); got != "1|NULL|a'b" {
		t.Fatalf("row %q, want 1|NULL|a'b", got)
	}
	if err := db.ExecTx(ctx, []string{"CREATE TABLE t (a int)", "INSERT INTO t VALUES (1)"}); err != nil {
		t.Fatal(err)
	}
	if rows, err := db.Query(ctx, "SELECT a FROM t WHERE false"); err != nil || len(rows) != 0 {
		t.Fatalf("empty result: %v, %v", rows, err)
	}
	if _, err := db.Query(ctx, "SELECT * FROM missing"); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("failed query: err = %v", err)
	}
}
