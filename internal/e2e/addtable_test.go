package e2e

import (
	"strings"
	"testing"
	"time"
)

// Adding a table to a mirror snapshots just that table; the others carry
// on from the slot, with the changes made while sluice was stopped.
func TestAddTableSnapshotsOnlyIt(t *testing.T) {
	e := newEnv(t, "duckdb")
	e.exec(`CREATE TABLE a (id int PRIMARY KEY, v text); CREATE TABLE b (id int PRIMARY KEY, v text);
INSERT INTO a SELECT i, 'a' || i FROM generate_series(1, 500) i;
INSERT INTO b SELECT i, 'b' || i FROM generate_series(1, 700) i;`)
	p := e.start(e.args("run", "public.a")...)
	e.waitVerified("public.a", 60*time.Second, p)
	p.stop(t)
	e.exec(`UPDATE a SET v = 'changed while stopped' WHERE id <= 50; DELETE FROM a WHERE id > 490; INSERT INTO b VALUES (701, 'new')`)

	p = e.start(e.args("run", "public.a,public.b")...)
	out := e.waitVerified("public.a,public.b", 60*time.Second, p)
	log := p.out.String()
	if !strings.Contains(log, "table needs a snapshot") || !strings.Contains(log, "table=public.b") || strings.Contains(log, "table=public.a") {
		t.Errorf("want a snapshot of public.b only:\n%s", log)
	}
	if !strings.Contains(out, "701") || !strings.Contains(out, "490") {
		t.Errorf("verify:\n%s", out)
	}
	p.stop(t)
}
