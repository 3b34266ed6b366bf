package e2e

import (
	"context"
	"database/sql"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/duckdb/duckdb-go/v2"
	"github.com/jackc/pgx/v5"
)

const pgbenchTables = "public.pgbench_accounts,public.pgbench_branches,public.pgbench_tellers,public.pgbench_history"

// pgbench's own tables under pgbench's own load, sluice killed with SIGKILL
// and restarted several times: every table equals the source afterwards,
// by verify and by an independent multiset comparison of the rows.
// pgbench_history has no key: its rows, identical ones and NULL fillers
// included, are a multiset.
func TestPgbench(t *testing.T) {
	pgbench := filepath.Join(pg.Bin, "pgbench")
	for _, kind := range []string{"duckdb", "postgres"} {
		t.Run(kind, func(t *testing.T) {
			e := newEnv(t, kind)
			if out, err := exec.Command(pgbench, "-i", "-q", "-s", "1", e.src).CombinedOutput(); err != nil {
				t.Fatalf("pgbench -i: %v\n%s", err, out)
			}
			// The history table has no key: sluice mirrors it row for row
			// once its updates and deletes carry the whole old row.
			e.exec("ALTER TABLE pgbench_history REPLICA IDENTITY FULL")
			// Identical rows and NULLs from the start, so the snapshot has them too.
			e.exec("INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) SELECT 1, 1, 1, 7, '2026-01-01' FROM generate_series(1, 3)")

			bench := exec.Command(pgbench, "-c", "4", "-j", "2", "-T", "20", "-n", e.src)
			benchOut := &syncBuffer{}
			bench.Stdout, bench.Stderr = benchOut, benchOut
			if err := bench.Start(); err != nil {
				t.Fatal(err)
			}
			benchDone := make(chan error, 1)
			go func() { benchDone <- bench.Wait() }()

			kills := 0
			for running := true; running; {
				p := e.start(e.args("run", pgbenchTables)...)
				select {
				case err := <-benchDone:
					if err != nil {
						t.Fatalf("pgbench: %v\n%s", err, benchOut.String())
					}
					running = false
					// The last run catches up and is verified while running.
					e.waitRunning(p)
					e.waitVerified(pgbenchTables, 2*time.Minute, p)
					// A few more keyless changes that touch exactly one of
					// several identical rows.
					e.exec("DELETE FROM pgbench_history WHERE ctid = (SELECT min(ctid) FROM pgbench_history WHERE delta = 7 AND aid = 1 AND tid = 1)")
					e.exec("UPDATE pgbench_history SET delta = 8 WHERE ctid = (SELECT min(ctid) FROM pgbench_history WHERE delta = 7 AND aid = 1 AND tid = 1)")
					e.waitVerified(pgbenchTables, time.Minute, p)
					p.stop(t)
				case <-time.After(time.Duration(2500+kills*700) * time.Millisecond):
					if p.exited() {
						t.Fatalf("sluice exited by itself:\n%s", p.out.String())
					}
					p.kill()
					kills++
				}
			}
			if kills < 3 {
				t.Errorf("sluice was killed %d times during pgbench: want at least 3", kills)
			}
			t.Logf("pgbench with %d kills of sluice:\n%s", kills, lastLines(benchOut.String(), 4))

			// Independent of sluice's own checksums: every row of every table,
			// counted, on both sides.
			src := pgRows(t, e.src, pgbenchQueries(false))
			var dst map[string]map[string]int
			if path, ok := strings.CutPrefix(e.target, "duckdb:"); ok {
				dst = duckRows(t, path, pgbenchQueries(true))
			} else {
				dst = pgRows(t, e.target, pgbenchQueries(false))
			}
			for table, want := range src {
				got := dst[table]
				n := 0
				for _, c := range want {
					n += c
				}
				if table == "pgbench_history" && (n < 100 || want["1|1|1|7|1767225600000000|~"] != 1 || want["1|1|1|8|1767225600000000|~"] != 1) {
					t.Errorf("pgbench_history holds %d rows, with %d and %d of the marked ones: the workload did not run as planned", n, want["1|1|1|7|1767225600000000|~"], want["1|1|1|8|1767225600000000|~"])
				}
				if d := multisetDiff(want, got); d != "" {
					t.Errorf("%s (%d rows) differs in the %s target: %s", table, n, kind, d)
				}
			}
		})
	}
}

// pgbenchQueries selects each pgbench table's rows as one text per row, the
// same text on Postgres and DuckDB.
func pgbenchQueries(duck bool) map[string]string {
	epoch := "(extract(epoch FROM mtime) * 1000000)::bigint"
	if duck {
		epoch = "epoch_us(mtime)"
	}
	text := func(cols ...string) string {
		parts := make([]string, len(cols))
		for i, c := range cols {
			parts[i] = "coalesce(CAST(" + c + " AS VARCHAR), '~')"
		}
		return strings.Join(parts, " || '|' || ")
	}
	return map[string]string{
		"pgbench_accounts": "SELECT " + text("aid", "bid", "abalance", "rtrim(filler)") + " FROM public.pgbench_accounts",
		"pgbench_branches": "SELECT " + text("bid", "bbalance", "rtrim(filler)") + " FROM public.pgbench_branches",
		"pgbench_tellers":  "SELECT " + text("tid", "bid", "tbalance", "rtrim(filler)") + " FROM public.pgbench_tellers",
		"pgbench_history":  "SELECT " + text("tid", "bid", "aid", "delta", epoch, "rtrim(filler)") + " FROM public.pgbench_history",
	}
}

func pgRows(t *testing.T, url string, queries map[string]string) map[string]map[string]int {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	out := map[string]map[string]int{}
	for table, q := range queries {
		rows, err := conn.Query(ctx, q)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		texts, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		out[table] = countTexts(texts)
	}
	return out
}

func duckRows(t *testing.T, path string, queries map[string]string) map[string]map[string]int {
	t.Helper()
	db, err := sql.Open("duckdb", path+"?access_mode=read_only")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	out := map[string]map[string]int{}
	for table, q := range queries {
		rows, err := db.Query(q)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		var texts []string
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				t.Fatal(err)
			}
			texts = append(texts, s)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		rows.Close()
		out[table] = countTexts(texts)
	}
	return out
}

func countTexts(texts []string) map[string]int {
	m := make(map[string]int, len(texts))
	for _, s := range texts {
		m[s]++
	}
	return m
}

// multisetDiff describes the first few rows whose counts differ.
func multisetDiff(want, got map[string]int) string {
	var d []string
	for k, n := range want {
		if got[k] != n {
			d = append(d, fmt.Sprintf("%q: source %d, target %d", k, n, got[k]))
		}
	}
	for k, n := range got {
		if _, ok := want[k]; !ok {
			d = append(d, fmt.Sprintf("%q: source 0, target %d", k, n))
		}
	}
	if len(d) > 5 {
		d = append(d[:5], fmt.Sprintf("and %d more", len(d)-5))
	}
	return strings.Join(d, "; ")
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
