package e2e

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/sluice-dev/sluice/internal/change"
)

// The full-disk case itself is TestDiskFullStallsThenResumes (stuck_test.go):
// the run stalls with the slot held and resumes once there is room. These
// are the LSN helpers it and others share.

// walInsert is the source's current WAL insert position.
func walInsert(t *testing.T, e *env) string {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), e.src)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var lsn string
	if err := conn.QueryRow(context.Background(), `SELECT pg_current_wal_insert_lsn()::text`).Scan(&lsn); err != nil {
		t.Fatal(err)
	}
	return lsn
}

// lsnAfter reports whether a is at or after b.
func lsnAfter(t *testing.T, a, b string) bool {
	t.Helper()
	x, err1 := change.ParseLSN(a)
	y, err2 := change.ParseLSN(b)
	if err1 != nil || err2 != nil {
		t.Fatalf("parse LSNs %q %q", a, b)
	}
	return x >= y
}

func confirmed(t *testing.T, e *env) string {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), e.src)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var lsn string
	if err := conn.QueryRow(context.Background(), `SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1`, "sluice_"+e.name).Scan(&lsn); err != nil {
		t.Fatal(err)
	}
	return lsn
}
