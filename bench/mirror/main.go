// Command mirror measures sluice's mirror into DuckDB against baselines run
// in the same process on the same data, so the ratios hold on a noisy machine:
//
//   - snapshot: rows/s of sluice's snapshot into DuckDB against
//     `COPY ... TO STDOUT (FORMAT binary)` of the same table;
//   - streaming: changes/s of sluice draining a slot into DuckDB against
//     pg_recvlogical draining an identical slot over the same WAL;
//   - latency: p50/p99 from source commit to target commit at a steady rate.
//
// Usage: go run ./bench/mirror [-rows N] [-changes N] [-rate N] [-seconds N]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/pipeline"
	"github.com/sluice-dev/sluice/internal/source/postgres"
	"github.com/sluice-dev/sluice/internal/testenv"
	"github.com/sluice-dev/sluice/internal/warehouse/duckdb"
)

func main() {
	rows := flag.Int("rows", 1_000_000, "rows in the snapshot table")
	changes := flag.Int("changes", 500_000, "changes in the streaming run")
	rate := flag.Int("rate", 5000, "changes/s for the latency run")
	seconds := flag.Int("seconds", 20, "length of the latency run")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	if err := run(context.Background(), *rows, *changes, *rate, *seconds); err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, rows, changes, rate, seconds int) error {
	pg, err := testenv.StartPostgres(ctx, testenv.PostgresOptions{Settings: []string{"max_wal_size = 4GB", "checkpoint_timeout = 30min",
		// Commits are flushed at once, as on a production server: logical
		// decoding only sees flushed WAL, and with asynchronous commit the WAL
		// writer would add up to wal_writer_delay (200ms) to every latency.
		"synchronous_commit = on"}})
	if err != nil {
		return err
	}
	defer pg.Stop()
	db, err := pg.CreateDatabase(ctx, "bench")
	if err != nil {
		return err
	}
	url := pg.URL(db)
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	dir, err := os.MkdirTemp("", "sluice-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	fmt.Printf("# sluice mirror benchmark (DuckDB target), %s\n", time.Now().UTC().Format(time.RFC3339))
	// --- snapshot ---
	for _, q := range []string{
		`CREATE TABLE snap (id bigint PRIMARY KEY, a int, b text, c numeric(12,2), d timestamptz, e boolean, f double precision)`,
		fmt.Sprintf(`INSERT INTO snap SELECT i, i %% 1000, 'name ' || i, i / 7.0, now() - i * interval '1 second', i %% 2 = 0, i * 0.5 FROM generate_series(1, %d) i`, rows),
		`VACUUM ANALYZE snap`,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			return err
		}
	}
	copyRate, err := timeCopy(ctx, url, rows)
	if err != nil {
		return err
	}
	snapRate, err := timeSnapshot(ctx, url, filepath.Join(dir, "snap.duckdb"), rows, false)
	if err != nil {
		return err
	}
	srcRate, err := timeSnapshot(ctx, url, "", rows, true)
	if err != nil {
		return err
	}
	fmt.Printf("snapshot  source alone (rows decoded, then dropped): %.0f rows/s, ratio %.2f\n", srcRate, srcRate/copyRate)
	fmt.Printf("snapshot  %d rows x 7 columns: COPY TO binary %.0f rows/s, sluice into DuckDB %.0f rows/s, ratio %.2f\n",
		rows, copyRate, snapRate, snapRate/copyRate)

	// --- streaming ---
	if _, err := conn.Exec(ctx, `CREATE TABLE stream (id bigint PRIMARY KEY, a int, b text, c numeric(12,2), d timestamptz, e boolean, f double precision)`); err != nil {
		return err
	}
	recvRate, sluiceRate, err := timeStreaming(ctx, pg, url, conn, filepath.Join(dir, "stream.duckdb"), changes)
	if err != nil {
		return err
	}
	fmt.Printf("streaming %d changes: pg_recvlogical %.0f changes/s, sluice into DuckDB %.0f changes/s, ratio %.2f\n",
		changes, recvRate, sluiceRate, sluiceRate/recvRate)

	// --- latency ---
	p50, p99, n, err := timeLatency(ctx, url, conn, filepath.Join(dir, "lat.duckdb"), rate, seconds)
	if err != nil {
		return err
	}
	fmt.Printf("latency   %d changes at %d changes/s: commit at source to commit in DuckDB p50 %s, p99 %s\n", n, rate, p50, p99)
	return nil
}

func timeCopy(ctx context.Context, url string, rows int) (float64, error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return 0, err
	}
	defer conn.Close(ctx)
	start := time.Now()
	if _, err := conn.PgConn().CopyTo(ctx, io.Discard, "COPY snap TO STDOUT (FORMAT binary)"); err != nil {
		return 0, err
	}
	return float64(rows) / time.Since(start).Seconds(), nil
}

func newSource(url, pipelineName string, tables ...string) (*postgres.Source, error) {
	var ids []change.TableID
	for _, t := range tables {
		ids = append(ids, change.TableID{Schema: "public", Name: t})
	}
	return postgres.New(postgres.Config{URL: url, Pipeline: pipelineName, Tables: ids, StatusInterval: time.Second})
}

// observed wraps a target to see when batches commit.
type observed struct {
	pipeline.Target
	after func(*change.Batch, time.Time)
}

func (o observed) Apply(ctx context.Context, b *change.Batch) error {
	if err := o.Target.Apply(ctx, b); err != nil {
		return err
	}
	o.after(b, time.Now())
	return nil
}

// discard is a target that keeps nothing: it isolates the source's share.
type discard struct{}

func (discard) State(context.Context) (map[change.TableID]change.TableState, error) { return nil, nil }
func (discard) Reset(context.Context, *change.Table) error                          { return nil }
func (discard) Apply(context.Context, *change.Batch) error                          { return nil }

func timeSnapshot(ctx context.Context, url, file string, rows int, sourceOnly bool) (float64, error) {
	name := "bench_snap"
	if sourceOnly {
		name = "bench_snap_src"
	}
	src, err := newSource(url, name, "snap")
	if err != nil {
		return 0, err
	}
	tables, err := src.Prepare(ctx)
	if err != nil {
		return 0, err
	}
	var tgt pipeline.Target = discard{}
	if !sourceOnly {
		t, err := duckdb.Open(ctx, file, duckdb.Options{})
		if err != nil {
			return 0, err
		}
		defer t.Close()
		tgt = t
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var end time.Time
	obs := observed{Target: tgt, after: func(b *change.Batch, at time.Time) {
		if len(b.Snapshotted) > 0 {
			end = at
			cancel()
		}
	}}
	p := pipeline.New(src, obs, pipeline.Options{Logger: slog.New(slog.DiscardHandler)})
	start := time.Now()
	if err := p.Run(runCtx, tables); err != nil {
		return 0, err
	}
	if end.IsZero() {
		return 0, fmt.Errorf("snapshot did not complete")
	}
	return float64(rows) / end.Sub(start).Seconds(), nil
}

func timeStreaming(ctx context.Context, pg *testenv.Postgres, url string, conn *pgx.Conn, file string, changes int) (float64, float64, error) {
	src, err := newSource(url, "bench_stream", "stream")
	if err != nil {
		return 0, 0, err
	}
	tables, err := src.Prepare(ctx)
	if err != nil {
		return 0, 0, err
	}
	// The baseline's slot starts at the same point of the WAL.
	if _, err := conn.Exec(ctx, `SELECT pg_create_logical_replication_slot('bench_recv', 'pgoutput')`); err != nil {
		return 0, 0, err
	}
	tgt, err := duckdb.Open(ctx, file, duckdb.Options{})
	if err != nil {
		return 0, 0, err
	}
	defer tgt.Close()
	// Snapshot the empty table first so the stream is all that is measured.
	if err := drain(ctx, src, tgt, tables, 0); err != nil {
		return 0, 0, err
	}
	// The workload: inserts, then updates of those rows, in 1,000-row transactions.
	half := changes / 2
	for i := 0; i < half; i += 1000 {
		if _, err := conn.Exec(ctx, `INSERT INTO stream SELECT i, i % 1000, 'name ' || i, i / 7.0, now(), true, i * 0.5 FROM generate_series($1::bigint, $2::bigint) i`, i+1, min(i+1000, half)); err != nil {
			return 0, 0, err
		}
	}
	for i := 0; i < half; i += 1000 {
		if _, err := conn.Exec(ctx, `UPDATE stream SET a = a + 1, b = b || '+' WHERE id BETWEEN $1 AND $2`, i+1, min(i+1000, half)); err != nil {
			return 0, 0, err
		}
	}
	var endLSN string
	if err := conn.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&endLSN); err != nil {
		return 0, 0, err
	}
	recv := filepath.Join(pg.Bin, "pg_recvlogical")
	start := time.Now()
	cmd := exec.CommandContext(ctx, recv, "-d", url, "--slot", "bench_recv", "--start", "--no-loop",
		"-o", "proto_version=1", "-o", "publication_names=sluice_bench_stream", "--endpos", endLSN, "-f", "/dev/null")
	if out, err := cmd.CombinedOutput(); err != nil {
		return 0, 0, fmt.Errorf("pg_recvlogical: %w: %s", err, out)
	}
	recvRate := float64(changes) / time.Since(start).Seconds()

	start = time.Now()
	if err := drain(ctx, src, tgt, tables, 2*half); err != nil {
		return 0, 0, err
	}
	sluiceRate := float64(changes) / time.Since(start).Seconds()
	return recvRate, sluiceRate, nil
}

// drain runs the pipeline until the target has applied want streamed
// changes (or, with want 0, until the snapshot is applied).
func drain(ctx context.Context, src *postgres.Source, tgt pipeline.Target, tables []*change.Table, want int) error {
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	applied := 0
	obs := observed{Target: tgt, after: func(b *change.Batch, _ time.Time) {
		if want == 0 && len(b.Snapshotted) > 0 {
			cancel()
		}
		for i := range b.Changes {
			if b.Changes[i].Op != change.OpRead {
				applied++
			}
		}
		if want > 0 && applied >= want {
			cancel()
		}
	}}
	return pipeline.New(src, obs, pipeline.Options{Logger: slog.New(slog.DiscardHandler)}).Run(runCtx, tables)
}

func timeLatency(ctx context.Context, url string, conn *pgx.Conn, file string, rate, seconds int) (time.Duration, time.Duration, int, error) {
	if _, err := conn.Exec(ctx, `CREATE TABLE lat (id bigint PRIMARY KEY, v int, at timestamptz)`); err != nil {
		return 0, 0, 0, err
	}
	src, err := newSource(url, "bench_lat", "lat")
	if err != nil {
		return 0, 0, 0, err
	}
	tables, err := src.Prepare(ctx)
	if err != nil {
		return 0, 0, 0, err
	}
	tgt, err := duckdb.Open(ctx, file, duckdb.Options{})
	if err != nil {
		return 0, 0, 0, err
	}
	defer tgt.Close()
	var mu sync.Mutex
	var lat []time.Duration
	obs := observed{Target: tgt, after: func(b *change.Batch, at time.Time) {
		mu.Lock()
		defer mu.Unlock()
		for i := range b.Changes {
			if c := &b.Changes[i]; c.Op != change.OpRead {
				lat = append(lat, at.Sub(c.CommitTime))
			}
		}
	}}
	runCtx, cancel := context.WithCancel(ctx)
	p := pipeline.New(src, obs, pipeline.Options{Logger: slog.New(slog.DiscardHandler)})
	done := make(chan error, 1)
	go func() { done <- p.Run(runCtx, tables) }()
	time.Sleep(time.Second)
	// 100 transactions a second of rate/100 rows each.
	per := max(rate/100, 1)
	tick := time.NewTicker(10 * time.Millisecond)
	id := 0
	stop := time.Now().Add(time.Duration(seconds) * time.Second)
	for time.Now().Before(stop) {
		<-tick.C
		if _, err := conn.Exec(ctx, `INSERT INTO lat SELECT i, 0, now() FROM generate_series($1::bigint, $2::bigint) i`, id+1, id+per); err != nil {
			cancel()
			return 0, 0, 0, err
		}
		id += per
	}
	tick.Stop()
	time.Sleep(2 * time.Second)
	cancel()
	if err := <-done; err != nil {
		return 0, 0, 0, err
	}
	mu.Lock()
	defer mu.Unlock()
	if len(lat) == 0 {
		return 0, 0, 0, fmt.Errorf("no changes applied")
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return lat[len(lat)/2], lat[len(lat)*99/100], len(lat), nil
}
