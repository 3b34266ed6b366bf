package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// teardown refuses while sluice runs, then removes exactly the slot and
// publication sluice created; a slot of someone else's stays.
func TestTeardown(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, "duckdb")
	e.exec(`CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'a')`)
	e.exec(`SELECT pg_create_logical_replication_slot('someone_elses', 'pgoutput')`)
	p := e.start(e.args("run", "public.t")...)
	e.waitVerified("public.t", 60*time.Second, p)
	out, code := e.sluice(e.args("teardown", "public.t")...)
	if code == 0 || !strings.Contains(out, "stop it first") {
		t.Errorf("teardown while running: exit %d\n%s", code, out)
	}
	p.stop(t)
	out, code = e.sluice(e.args("teardown", "public.t")...)
	if code != 0 || !strings.Contains(out, "sluice_"+e.name) {
		t.Fatalf("teardown: exit %d\n%s", code, out)
	}
	conn, err := pgx.Connect(ctx, e.src)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var slots, pubs int
	if err := conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'sluice_%' AND database = current_database()),
		(SELECT count(*) FROM pg_publication WHERE pubname LIKE 'sluice_%')`).Scan(&slots, &pubs); err != nil {
		t.Fatal(err)
	}
	var kept bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = 'someone_elses')`).Scan(&kept); err != nil {
		t.Fatal(err)
	}
	if slots != 0 || pubs != 0 || !kept {
		t.Errorf("after teardown: %d sluice slots, %d sluice publications, other slot kept %v", slots, pubs, kept)
	}
	out, code = e.sluice(e.args("teardown", "public.t")...)
	if code != 0 || !strings.Contains(out, "nothing to remove") {
		t.Errorf("second teardown: exit %d\n%s", code, out)
	}
	_, _ = conn.Exec(ctx, `SELECT pg_drop_replication_slot('someone_elses')`)
}
