package e2e

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/duckdb/duckdb-go/v2"
	"github.com/jackc/pgx/v5"
)

// A target that enforces a constraint the source does not: the run does
// not exit into a restart loop. It stays up and stalls on the refused
// batch; `sluice status` names the table, the column or constraint and the
// fix; /metrics counts the failures and says it is stalled; the slot is
// not confirmed past the refused change; and once the constraint is gone
// the same process applies the batch and converges.
func TestRefusedBatchStallsThenResumes(t *testing.T) {
	e := newEnv(t, "postgres")
	e.exec(`CREATE TABLE items (id int PRIMARY KEY, qty int); INSERT INTO items SELECT i, i FROM generate_series(1, 100) i`)
	run := e.args("run", "public.items", "--retry-max", "1s")
	p := e.start(run...)
	e.waitVerified("public.items", 60*time.Second, p)

	tconn, err := pgx.Connect(context.Background(), e.target)
	if err != nil {
		t.Fatal(err)
	}
	defer tconn.Close(context.Background())
	targetExec(t, tconn, `ALTER TABLE public.items ADD CONSTRAINT qty_positive CHECK (qty > 0) NOT VALID`)
	e.exec(`INSERT INTO items VALUES (101, -5)`)
	end := walInsert(t, e)
	e.exec(`UPDATE items SET qty = qty + 1 WHERE id = 2`) // after the refused change: held too

	rep := e.waitStalled(p, 3)
	s := rep.Stats.Stall
	if s.Table != "public.items" || s.Constraint != "qty_positive" || s.Class != "permanent" ||
		!strings.Contains(s.Fix, `ALTER TABLE "public"."items" DROP CONSTRAINT "qty_positive"`) {
		t.Errorf("stall %+v: want the table, the constraint and the statement that fixes it", s)
	}
	out, code := e.sluice(e.args("status", "public.items")...)
	for _, w := range []string{"running, stalled", "STALLED", "public.items", "qty_positive", "DROP CONSTRAINT", "nothing is lost"} {
		if code != 0 || !strings.Contains(out, w) {
			t.Errorf("status (exit %d) lacks %q:\n%s", code, w, out)
		}
	}
	m := e.metrics(e.name)
	for _, w := range []string{
		fmt.Sprintf(`sluice_stalled{pipeline=%q,stage="target"} 1`, e.name),
		fmt.Sprintf(`sluice_apply_failures_total{class="permanent",pipeline=%q,stage="target",table="public.items"}`, e.name),
	} {
		if !strings.Contains(m, w) {
			t.Errorf("metrics lack %s:\n%s", w, m)
		}
	}
	e.checkHeld(s.First, end)

	targetExec(t, tconn, `ALTER TABLE public.items DROP CONSTRAINT qty_positive`)
	out = e.waitVerified("public.items", 60*time.Second, p)
	if !strings.Contains(out, "101") {
		t.Logf("verify:\n%s", out)
	}
	if !strings.Contains(e.metrics(e.name), fmt.Sprintf(`sluice_stalled{pipeline=%q,stage="target"} 0`, e.name)) {
		t.Errorf("still stalled after the fix")
	}
	log := p.out.String()
	if n := strings.Count(log, "refused by the target"); n != 1 || !strings.Contains(log, "resumed") {
		t.Errorf("want the refusal logged once (got %d) and the recovery logged:\n%s", n, log)
	}
	p.stop(t)
}

// DuckDB lets one process write the file, so a constraint in it is fixed
// with sluice stopped: a stalled run stops cleanly on SIGTERM with the
// refused change still in the slot, and the next run applies it.
func TestRefusedBatchStallsDuckDB(t *testing.T) {
	e := newEnv(t, "duckdb")
	e.exec(`CREATE TABLE items (id int PRIMARY KEY, qty int); INSERT INTO items SELECT i, i FROM generate_series(1, 100) i`)
	run := e.args("run", "public.items", "--retry-max", "1s")
	p := e.start(run...)
	e.waitVerified("public.items", 60*time.Second, p)
	p.stop(t)
	duckExec(t, e, `ALTER TABLE public.items ALTER COLUMN qty SET NOT NULL`)

	e.exec(`INSERT INTO items VALUES (101, NULL)`)
	end := walInsert(t, e)
	p = e.start(run...)
	rep := e.waitStalled(p, 2)
	s := rep.Stats.Stall
	if s.Table != "public.items" || s.Column != "qty" || s.Class != "permanent" || !strings.Contains(s.Fix, `DROP NOT NULL`) || !strings.Contains(s.Fix, "stop sluice") {
		t.Errorf("stall %+v: want the table, the column and the fix", s)
	}
	out, _ := e.sluice(e.args("status", "public.items")...)
	for _, w := range []string{"STALLED", "qty", "DROP NOT NULL"} {
		if !strings.Contains(out, w) {
			t.Errorf("status lacks %q:\n%s", w, out)
		}
	}
	if m := e.metrics(e.name); !strings.Contains(m, fmt.Sprintf(`sluice_apply_failures_total{class="permanent",pipeline=%q,stage="target",table="public.items"}`, e.name)) {
		t.Errorf("metrics do not count the failure:\n%s", m)
	}
	e.checkHeld(s.First, end)
	p.stop(t) // stalled, it still stops cleanly

	duckExec(t, e, `ALTER TABLE public.items ALTER COLUMN qty DROP NOT NULL`)
	p = e.start(run...)
	e.waitVerified("public.items", 60*time.Second, p)
	p.stop(t)
}

// stallReport is the part of `sluice status --json` these tests read.
type stallReport struct {
	Stats struct {
		Phase string `json:"phase"`
		Stall *struct {
			Attempts   int    `json:"attempts"`
			Class      string `json:"class"`
			Table      string `json:"table"`
			Column     string `json:"column"`
			Constraint string `json:"constraint"`
			Fix        string `json:"fix"`
			Error      string `json:"error"`
			First      string `json:"first_position"`
		} `json:"stall"`
	} `json:"stats"`
}

// waitStalled polls status until the running sluice reports a stall of at
// least attempts attempts; it fails the test if the process exits.
func (e *env) waitStalled(p *proc, attempts int) stallReport {
	e.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if p.exited() {
			e.t.Fatalf("sluice exited instead of stalling:\n%s", p.out.String())
		}
		out, code := e.sluice(e.args("status", "public.items", "--json")...)
		var rep stallReport
		if code == 0 && json.Unmarshal([]byte(out), &rep) == nil && rep.Stats.Phase == "stalled" &&
			rep.Stats.Stall != nil && rep.Stats.Stall.Attempts >= attempts {
			return rep
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("no stall reported within a minute (exit %d):\n%s\nsluice:\n%s", code, out, p.out.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// checkHeld fails the test if the slot was confirmed at or past the commit
// of the refused change (first, "commit:lsn"), or past end, a WAL position
// taken right after it.
func (e *env) checkHeld(first, end string) {
	e.t.Helper()
	commit, _, ok := strings.Cut(first, ":")
	if !ok {
		e.t.Fatalf("stall position %q: want commit:lsn", first)
	}
	at := confirmed(e.t, e)
	if lsnAfter(e.t, at, commit) || lsnAfter(e.t, at, end) {
		e.t.Errorf("the slot is confirmed at %s, at or past the refused change (committed at %s, WAL at %s after it)", at, commit, end)
	}
}

func targetExec(t *testing.T, conn *pgx.Conn, q string) {
	t.Helper()
	if _, err := conn.Exec(context.Background(), q); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// duckExec runs a statement in the mirror's DuckDB file (no sluice running).
func duckExec(t *testing.T, e *env, q string) {
	t.Helper()
	db, err := sql.Open("duckdb", strings.TrimPrefix(e.target, "duckdb:"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(q); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// A full disk under a DuckDB target is a transient stall: the run stays up
// with the slot held, and once there is room the same process applies the
// batch; the file then opens again consistent (a restart verifies too).
// The disk is a small tmpfs mounted for the test (the tests run as root).
func TestDiskFullStallsThenResumes(t *testing.T) {
	e := newEnv(t, "duckdb")
	disk := filepath.Join(e.dir, "disk")
	if err := os.MkdirAll(disk, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", disk).CombinedOutput(); err != nil {
		t.Fatalf("mount a small tmpfs (the test needs root): %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", disk).Run() })
	e.target = "duckdb:" + filepath.Join(disk, "mirror.duckdb")
	e.exec(`CREATE TABLE items (id int PRIMARY KEY, payload text)`)
	e.exec(`INSERT INTO items SELECT i, md5(i::text) FROM generate_series(1, 1000) i`)
	run := e.args("run", "public.items", "--retry-max", "1s")
	p := e.start(run...)
	e.waitVerified("public.items", 60*time.Second, p)

	e.exec(`INSERT INTO items SELECT i, repeat(md5(i::text), 20) FROM generate_series(1001, 60000) i`)
	end := walInsert(t, e)
	rep := e.waitStalled(p, 2)
	if s := rep.Stats.Stall; s.Class != "transient" || !strings.Contains(strings.ToLower(s.Error), "no space left") || !strings.Contains(s.Fix, "free space") {
		t.Errorf("stall %+v: want a transient one naming the full disk and the fix", s)
	}
	e.checkHeld(rep.Stats.Stall.First, end)

	if out, err := exec.Command("mount", "-o", "remount,size=512m", disk).CombinedOutput(); err != nil {
		t.Fatalf("make room: %v: %s", err, out)
	}
	if out := e.waitVerified("public.items", 90*time.Second, p); !strings.Contains(out, "60000") {
		t.Errorf("verify after the disk was freed:\n%s", out)
	}
	p.stop(t)
	p = e.start(run...)
	// Running first: a verify started before would read the file itself
	// and hold it while the run waits for it.
	e.waitRunning(p)
	e.waitVerified("public.items", 60*time.Second, p)
	p.stop(t)
}
