package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluice-dev/sluice/internal/change"
)

// A full disk under the target: the run fails with the write error, the
// slot does not move past the transaction the target could not commit, and
// once there is room again a new run mirrors everything, including what was
// written at the source meanwhile. The disk is a small tmpfs mounted for the
// test (the tests run as root, as CI does).
func TestTargetDiskFull(t *testing.T) {
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

	e.exec(`CREATE TABLE events (id int PRIMARY KEY, payload text)`)
	e.exec(`INSERT INTO events SELECT i, md5(i::text) FROM generate_series(1, 1000) i`)
	p := e.start(e.args("run", "public.events")...)
	e.waitVerified("public.events", 60*time.Second, p)

	before := confirmed(t, e)
	e.exec(`INSERT INTO events SELECT i, repeat(md5(i::text), 20) FROM generate_series(1001, 60000) i`)
	end := walInsert(t, e) // at or after the big transaction's commit
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		t.Fatalf("sluice kept running on a full disk:\n%s", p.out.String())
	}
	log := p.out.String()
	if p.cmd.ProcessState.ExitCode() != 2 || !strings.Contains(strings.ToLower(log), "no space left") {
		t.Fatalf("want a failed run (exit 2) naming the write error, exit %d:\n%s", p.cmd.ProcessState.ExitCode(), log)
	}
	// The slot may move past other WAL, never past the transaction the
	// target could not commit: a transaction is sent again after a restart
	// only while its commit lies beyond the confirmed position.
	after := confirmed(t, e)
	t.Logf("slot confirmed %s before, %s after the failure; the big transaction ends by %s", before, after, end)
	if lsnAfter(t, after, end) {
		t.Errorf("the slot moved to %s, past the transaction (ending by %s) the target could not commit", after, end)
	}
	e.exec(`UPDATE events SET payload = 'changed while the disk was full' WHERE id <= 10`)

	if out, err := exec.Command("mount", "-o", "remount,size=512m", disk).CombinedOutput(); err != nil {
		t.Fatalf("make room: %v: %s", err, out)
	}
	p = e.start(e.args("run", "public.events")...)
	e.waitRunning(p)
	time.Sleep(2 * time.Second)
	if p.exited() {
		t.Fatalf("the run after the disk was freed stopped:\n%s", p.out.String())
	}
	out := e.waitVerified("public.events", 90*time.Second, p)
	if !strings.Contains(out, "60000") {
		t.Errorf("verify after the disk was freed:\n%s", out)
	}
	p.stop(t)
}

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
