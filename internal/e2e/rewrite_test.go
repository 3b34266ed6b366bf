package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

const rewriteSQL = `
CREATE EXTENSION IF NOT EXISTS pgcrypto;
CREATE TABLE t (id int PRIMARY KEY, n int, s text);
INSERT INTO t SELECT g, g, 's' || g FROM generate_series(1, 3000) g;
CREATE TABLE other (id int PRIMARY KEY, v text);`

// keepWriting inserts into other until the test ends: it must keep
// streaming while t is re-snapshotted.
func (e *env) keepWriting(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		conn, err := pgx.Connect(ctx, e.src)
		if err != nil {
			return
		}
		defer conn.Close(context.Background())
		for i := 1; ctx.Err() == nil; i++ {
			_, _ = conn.Exec(ctx, "INSERT INTO other VALUES ($1, 'w') ON CONFLICT (id) DO UPDATE SET v = 'again'", i%5000)
			time.Sleep(10 * time.Millisecond)
		}
	}()
}

// Changes whose new values never appear as row changes are followed by a
// re-snapshot of that table alone and verify passes; a fast default stays
// an ALTER; another table keeps streaming throughout.
func TestRewriteResnapshots(t *testing.T) {
	for _, kind := range []string{"duckdb", "postgres"} {
		t.Run(kind, func(t *testing.T) {
			e := newEnv(t, kind)
			e.exec(rewriteSQL)
			const tables = "public.t,public.other"
			p := e.start(e.args("run", tables)...)
			e.waitVerified(tables, 90*time.Second, p)
			e.keepWriting(t)
			steps := []struct {
				sql, log string
			}{
				{"ALTER TABLE t ALTER COLUMN n TYPE bigint USING n * 10", "table public.t: column n changed type integer -> bigint; re-snapshotting it"},
				{"ALTER TABLE t ALTER COLUMN s TYPE varchar(40) USING upper(s); UPDATE t SET n = 0 WHERE id = 1", "column s changed type text -> character varying(40)"},
				{"ALTER TABLE t ADD COLUMN r float8 DEFAULT random()", "column r was added with a volatile default"},
				{"ALTER TABLE t ADD COLUMN u uuid DEFAULT gen_random_uuid(); UPDATE t SET n = 1 WHERE id = 2", "column u was added with a volatile default"},
				{"ALTER TABLE t ADD COLUMN at timestamptz DEFAULT now(); UPDATE t SET n = 2 WHERE id = 3", ""},
				{"ALTER TABLE t ADD COLUMN k int DEFAULT 7; UPDATE t SET n = 3 WHERE id = 4", ""},
			}
			for _, st := range steps {
				before := strings.Count(p.out.String(), "re-snapshotting it")
				e.exec(st.sql)
				e.waitVerified(tables, 90*time.Second, p)
				log := p.out.String()
				after := strings.Count(log, "re-snapshotting it")
				switch {
				case st.log == "" && after != before:
					t.Errorf("%s: re-snapshotted, but a fast default needs none:\n%s", st.sql, log)
				case st.log != "" && !strings.Contains(log, st.log):
					t.Errorf("%s: the log does not say %q:\n%s", st.sql, st.log, log)
				}
			}
			if log := p.out.String(); strings.Contains(log, "table public.other:") {
				t.Errorf("other was re-snapshotted:\n%s", log)
			}
			p.stop(t)
		})
	}
}

// kill -9 while a re-snapshot runs, then restart: the mirror converges.
func TestKillDuringResnapshot(t *testing.T) {
	e := newEnv(t, "duckdb")
	e.exec(rewriteSQL + `INSERT INTO t SELECT g, g, repeat('x', 200) FROM generate_series(3001, 200000) g;`)
	cfg := e.dir + "/sluice.yaml"
	writeFile(t, cfg, fmt.Sprintf(`
pipeline: %s
source: {url: %q}
tables: [public.t, public.other]
target: %q
state_dir: %q
snapshot: {workers: 1, chunk_rows: 2000}
batch: {max_changes: 500, interval: 50ms}
`, e.name, e.src, e.target, e.dir+"/state"))
	p := e.start("run", "--config", cfg)
	e.waitVerifiedArgs([]string{"verify", "--config", cfg}, 2*time.Minute, p)
	e.keepWriting(t)
	rng := rand.New(rand.NewPCG(11, 11))
	for i, q := range []string{"ALTER TABLE t ALTER COLUMN n TYPE bigint USING n + 1", "ALTER TABLE t ADD COLUMN r float8 DEFAULT random()"} {
		e.exec(q)
		deadline := time.Now().Add(time.Minute)
		for !strings.Contains(p.out.String(), "re-snapshotting it") {
			if p.exited() || time.Now().After(deadline) {
				t.Fatalf("no re-snapshot after %s:\n%s", q, p.out.String())
			}
			time.Sleep(5 * time.Millisecond)
		}
		wait := time.Duration(50+rng.IntN(400)) * time.Millisecond
		time.Sleep(wait)
		p.kill()
		done := strings.Count(p.out.String(), "snapshot done") > 1
		t.Logf("kill -9 #%d %s after the re-snapshot began (re-snapshot finished: %v)", i+1, wait, done)
		p = e.start("run", "--config", cfg)
		e.waitRunning(p)
	}
	out := e.waitVerifiedArgs([]string{"verify", "--config", cfg}, 2*time.Minute, p)
	t.Logf("after the kills:\n%s", out)
	p.stop(t)
}
