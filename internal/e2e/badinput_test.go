package e2e

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestBadConfigGivesTheLine(t *testing.T) {
	e := newEnv(t, "duckdb")
	cfg := filepath.Join(e.dir, "bad.yaml")
	writeFile(t, cfg, "pipeline: x\nsource:\n  url: postgres://h/db\n  slots: 3\n")
	out, code := e.sluice("run", "--config", cfg)
	if code != 2 || !strings.Contains(out, `line 4: unknown key "slots" in source`) {
		t.Errorf("exit %d, output:\n%s", code, out)
	}
	writeFile(t, cfg, "snapshot:\n  workers: lots\n")
	out, code = e.sluice("validate", "--config", cfg)
	if code != 2 || !strings.Contains(out, `line 2: snapshot.workers: "lots": want a whole number`) {
		t.Errorf("exit %d, output:\n%s", code, out)
	}
	out, code = e.sluice("run")
	if code != 2 || !strings.Contains(out, "no configuration") {
		t.Errorf("run without config: exit %d, output:\n%s", code, out)
	}
}

func TestUnreachableSource(t *testing.T) {
	e := newEnv(t, "duckdb")
	e.src = "postgres://sluice:topsecret@127.0.0.1:1/nowhere"
	out, code := e.sluice(e.args("run", "public.t")...)
	if code != 2 || !strings.Contains(out, "127.0.0.1") {
		t.Errorf("exit %d, output:\n%s", code, out)
	}
	if strings.Contains(out, "topsecret") {
		t.Errorf("the password reached the output:\n%s", out)
	}
}

// A target that rejects the DDL: the error names the table, the slot does
// not move, and once the target is fixed the mirror completes with nothing
// lost.
func TestTargetRejectsDDL(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, "postgres")
	e.exec(`CREATE TABLE items (id int PRIMARY KEY, name text); INSERT INTO items SELECT i, 'n' || i FROM generate_series(1, 100) i;`)
	admin := e.target
	tconn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	defer tconn.Close(ctx)
	// Since Postgres 15 only the owner may create in public: a plain role
	// may create sluice's own state schema but not the mirrored table.
	role := "noddl_" + e.name // roles are per cluster
	if _, err := tconn.Exec(ctx, `CREATE ROLE `+role+` LOGIN`); err != nil {
		t.Fatal(err)
	}
	if _, err := tconn.Exec(ctx, `GRANT CREATE ON DATABASE `+strings.TrimPrefix(admin[strings.LastIndex(admin, "/"):strings.Index(admin, "?")], "/")+` TO `+role); err != nil {
		t.Fatal(err)
	}
	e.target = strings.Replace(admin, "postgres@", role+"@", 1)
	out, code := e.sluice(e.args("run", "public.items")...)
	if code == 0 || !strings.Contains(out, "items") || !strings.Contains(strings.ToLower(out), "permission denied") {
		t.Fatalf("exit %d, want an error naming the table and the refusal:\n%s", code, out)
	}
	e.exec(`INSERT INTO items VALUES (101, 'written while the target was broken')`)
	var confirmed string
	sconn, err := pgx.Connect(ctx, e.src)
	if err != nil {
		t.Fatal(err)
	}
	defer sconn.Close(ctx)
	if err := sconn.QueryRow(ctx, `SELECT coalesce(confirmed_flush_lsn::text, '') FROM pg_replication_slots WHERE slot_name = $1`, "sluice_"+e.name).Scan(&confirmed); err != nil {
		t.Fatalf("the slot should exist after the failed run: %v", err)
	}
	if _, err := tconn.Exec(ctx, `GRANT CREATE ON SCHEMA public TO `+role); err != nil {
		t.Fatal(err)
	}
	p := e.start(e.args("run", "public.items")...)
	out = e.waitVerified("public.items", 60*time.Second, p)
	if !strings.Contains(out, "101") && !strings.Contains(out, "match") {
		t.Errorf("verify:\n%s", out)
	}
	p.stop(t)
}
