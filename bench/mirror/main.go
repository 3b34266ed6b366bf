// Command mirror measures sluice's mirror into DuckDB and into Postgres
// against baselines run in the same process on the same data, so the ratios
// hold on a noisy machine:
//
//   - snapshot: rows/s from sluice's start until the target committed the
//     snapshot, against `COPY ... TO STDOUT (FORMAT binary)` of the table
//     (DuckDB) and `COPY TO` piped into `COPY FROM` a keyed table in
//     another database (Postgres);
//   - streaming: changes/s from sluice's (re)start until it applied every
//     change of a catch-up workload, against pg_recvlogical draining a
//     slot created at the same point over the same WAL;
//   - latency: p50/p99 from source commit to target commit at a steady rate.
//
// With -runs N every measurement is repeated N times and the median ratio
// is printed with the median baseline.
//
// Usage: go run ./bench/mirror [-runs 3] [-targets duckdb,postgres] [-modes snapshot,streaming,latency]
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/pipeline"
	"github.com/sluice-dev/sluice/internal/source/postgres"
	"github.com/sluice-dev/sluice/internal/testenv"
	"github.com/sluice-dev/sluice/internal/warehouse/duckdb"
	pgtarget "github.com/sluice-dev/sluice/internal/warehouse/postgres"
)

type flags struct {
	rows, inserts, runs, rate, seconds int
	targets, modes                     []string
	profiles                           string
}

func main() {
	var f flags
	var targets, modes string
	flag.IntVar(&f.rows, "rows", 1_000_000, "rows in the snapshot table")
	flag.IntVar(&f.inserts, "inserts", 500_000, "inserts in the streaming workload (then an update of every even key, a delete of every tenth: 1.6x as many changes)")
	flag.IntVar(&f.runs, "runs", 1, "repeat every measurement this many times and print the medians")
	flag.IntVar(&f.rate, "rate", 5000, "changes/s for the latency run")
	flag.IntVar(&f.seconds, "seconds", 20, "length of the latency run")
	flag.StringVar(&targets, "targets", "duckdb,postgres", "targets to measure")
	flag.StringVar(&modes, "modes", "snapshot,streaming,latency", "what to measure")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	flag.StringVar(&f.profiles, "profiles", "", "write a CPU profile of each sluice measurement into this directory (not with -cpuprofile)")
	flag.Parse()
	f.targets, f.modes = strings.Split(targets, ","), strings.Split(modes, ",")
	if *cpuprofile != "" {
		pf, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		if err := pprof.StartCPUProfile(pf); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	if err := run(context.Background(), f); err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// bench is one run's environment: the cluster, the source database and a
// scratch directory for DuckDB files.
type bench struct {
	pg    *testenv.Postgres
	url   string // the source database
	conn  *pgx.Conn
	dir   string
	flags flags
}

// figure is one measurement: the baseline's rate, sluice's, and the peak
// RSS of this process while sluice ran (0 when not measured).
type figure struct {
	base, sluice float64
	rss          int64
	busy         float64 // share of sluice's wall time spent inside the target's Apply
}

func run(ctx context.Context, f flags) error {
	pg, err := testenv.StartPostgres(ctx, testenv.PostgresOptions{Settings: []string{"max_wal_size = 4GB", "checkpoint_timeout = 30min",
		"max_replication_slots = 40", "max_wal_senders = 40",
		// Commits are flushed at once, as on a production server: logical
		// decoding only sees flushed WAL, and with asynchronous commit the WAL
		// writer would add up to wal_writer_delay (200ms) to every latency.
		// The workloads' own sessions turn it off.
		"synchronous_commit = on"}})
	if err != nil {
		return err
	}
	defer pg.Stop()
	db, err := pg.CreateDatabase(ctx, "bench")
	if err != nil {
		return err
	}
	b := &bench{pg: pg, url: pg.URL(db), flags: f}
	if b.conn, err = pgx.Connect(ctx, b.url); err != nil {
		return err
	}
	defer b.conn.Close(ctx)
	if b.dir, err = os.MkdirTemp("", "sluice-bench-"); err != nil {
		return err
	}
	defer os.RemoveAll(b.dir)

	fmt.Printf("# sluice mirror benchmark, %s, %d run(s)\n", time.Now().UTC().Format(time.RFC3339), f.runs)
	results := map[string][]figure{}
	var order []string
	add := func(name string, fg figure) {
		if _, ok := results[name]; !ok {
			order = append(order, name)
		}
		results[name] = append(results[name], fg)
		rss := ""
		if fg.rss > 0 {
			rss = fmt.Sprintf(", peak RSS %d MiB", fg.rss>>20)
		}
		if fg.busy > 0 {
			rss += fmt.Sprintf(", target busy %.0f%%", 100*fg.busy)
		}
		fmt.Printf("  %-34s baseline %9.0f/s  sluice %9.0f/s  ratio %.2f%s\n", name, fg.base, fg.sluice, fg.sluice/fg.base, rss)
	}
	has := func(list []string, s string) bool { return slices.Contains(list, s) }

	if has(f.modes, "snapshot") {
		if err := b.createSnapshotTable(ctx); err != nil {
			return err
		}
	}
	for r := 1; r <= f.runs; r++ {
		fmt.Printf("run %d\n", r)
		if has(f.modes, "snapshot") {
			if has(f.targets, "duckdb") {
				base, err := b.copyBinary(ctx)
				if err != nil {
					return err
				}
				src, _, _, err := b.snapshot(ctx, r, "src", nil)
				if err != nil {
					return err
				}
				add("snapshot source alone ÷ COPY binary", figure{base: base, sluice: src})
				duck, rss, busy, err := b.snapshot(ctx, r, "duckdb", b.openDuckDB)
				if err != nil {
					return err
				}
				add("snapshot DuckDB ÷ COPY binary", figure{base: base, sluice: duck, rss: rss, busy: busy})
			}
			if has(f.targets, "postgres") {
				base, err := b.copyPipe(ctx, r)
				if err != nil {
					return err
				}
				pgRate, rss, busy, err := b.snapshot(ctx, r, "postgres", b.openPostgres)
				if err != nil {
					return err
				}
				add("snapshot Postgres ÷ COPY|COPY", figure{base: base, sluice: pgRate, rss: rss, busy: busy})
			}
		}
		if has(f.modes, "streaming") {
			figs, err := b.streaming(ctx, r)
			if err != nil {
				return err
			}
			for _, t := range f.targets {
				add("streaming "+t+" ÷ pg_recvlogical", figs[t])
			}
		}
	}
	if f.runs > 1 {
		fmt.Printf("median of %d runs\n", f.runs)
		for _, name := range order {
			fs := results[name]
			fmt.Printf("  %-34s baseline %9.0f/s  sluice %9.0f/s  ratio %.2f\n", name,
				median(fs, func(f figure) float64 { return f.base }),
				median(fs, func(f figure) float64 { return f.sluice }),
				median(fs, func(f figure) float64 { return f.sluice / f.base }))
		}
	}
	if has(f.modes, "latency") {
		for _, t := range f.targets {
			p50, p99, n, err := b.latency(ctx, t)
			if err != nil {
				return err
			}
			fmt.Printf("latency %s: %d changes at %d changes/s, commit at source to commit in target p50 %s, p99 %s\n",
				t, n, f.rate, p50.Round(100*time.Microsecond), p99.Round(100*time.Microsecond))
		}
	}
	return nil
}

func median(fs []figure, get func(figure) float64) float64 {
	v := make([]float64, len(fs))
	for i, f := range fs {
		v[i] = get(f)
	}
	sort.Float64s(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// The table of the and PEERS.md's workloads.
const customers = `(userid int PRIMARY KEY, first_name varchar(63), last_name varchar(63), phone varchar(63),
	email text, created_at timestamptz, balance numeric(12,2))`

func (b *bench) createSnapshotTable(ctx context.Context) error {
	for _, q := range []string{
		`CREATE TABLE customers ` + customers,
		fmt.Sprintf(`INSERT INTO customers SELECT i, 'first' || i, 'last name ' || (i %% 977), '+1-555-' || lpad((i %% 10000)::text, 4, '0'),
			'user' || i || '@example.com', timestamptz '2024-01-01' + i * interval '17 seconds', (i %% 100000) / 100.0
			FROM generate_series(1, %d) i`, b.flags.rows),
		`VACUUM ANALYZE customers`,
	} {
		if _, err := b.conn.Exec(ctx, q); err != nil {
			return err
		}
	}
	return nil
}

// copyBinary is the DuckDB snapshot's baseline: the table read in binary
// COPY to nowhere.
func (b *bench) copyBinary(ctx context.Context) (float64, error) {
	conn, err := pgx.Connect(ctx, b.url)
	if err != nil {
		return 0, err
	}
	defer conn.Close(ctx)
	start := time.Now()
	if _, err := conn.PgConn().CopyTo(ctx, io.Discard, "COPY customers TO STDOUT (FORMAT binary)"); err != nil {
		return 0, err
	}
	return float64(b.flags.rows) / time.Since(start).Seconds(), nil
}

// copyPipe is the Postgres snapshot's baseline: COPY TO of the table piped
// into COPY FROM a keyed table of the same shape in another database.
func (b *bench) copyPipe(ctx context.Context, run int) (float64, error) {
	db, err := b.pg.CreateDatabase(ctx, "copy_target")
	if err != nil {
		return 0, err
	}
	dst, err := pgx.Connect(ctx, b.pg.URL(db))
	if err != nil {
		return 0, err
	}
	defer dst.Close(ctx)
	if _, err := dst.Exec(ctx, `CREATE TABLE customers `+customers); err != nil {
		return 0, err
	}
	src, err := pgx.Connect(ctx, b.url)
	if err != nil {
		return 0, err
	}
	defer src.Close(ctx)
	start := time.Now()
	pr, pw := io.Pipe()
	var g sync.WaitGroup
	var copyErr error
	g.Go(func() {
		// Buffered as a shell pipe is: unbuffered, every row would be one
		// CopyData message of its own to the target.
		bw := bufio.NewWriterSize(pw, 64<<10)
		_, copyErr = src.PgConn().CopyTo(ctx, bw, "COPY customers TO STDOUT")
		if copyErr == nil {
			copyErr = bw.Flush()
		}
		pw.CloseWithError(copyErr)
	})
	_, err = dst.PgConn().CopyFrom(ctx, pr, "COPY customers FROM STDIN")
	pr.Close()
	g.Wait()
	if err = errors.Join(err, copyErr); err != nil {
		return 0, fmt.Errorf("COPY | COPY: %w", err)
	}
	return float64(b.flags.rows) / time.Since(start).Seconds(), nil
}

// opener opens a fresh target for one measurement.
type opener func(ctx context.Context, name string) (pipeline.Target, func(), error)

func (b *bench) openDuckDB(ctx context.Context, name string) (pipeline.Target, func(), error) {
	t, err := duckdb.Open(ctx, filepath.Join(b.dir, name+".duckdb"), duckdb.Options{})
	if err != nil {
		return nil, nil, err
	}
	return t, func() { t.Close() }, nil
}

func (b *bench) openPostgres(ctx context.Context, name string) (pipeline.Target, func(), error) {
	db, err := b.pg.CreateDatabase(ctx, name)
	if err != nil {
		return nil, nil, err
	}
	t, err := pgtarget.Open(ctx, b.pg.URL(db), pgtarget.Options{})
	if err != nil {
		return nil, nil, err
	}
	return t, func() { t.Close() }, nil
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

// applyBusy sums the time spent inside the observed target's Apply.
var applyBusy atomic.Int64

func (o observed) Apply(ctx context.Context, b *change.Batch) error {
	t0 := time.Now()
	err := o.Target.Apply(ctx, b)
	applyBusy.Add(int64(time.Since(t0)))
	if err != nil {
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

// snapshot times sluice from its start (source prepared, target opened)
// until the target committed the snapshot's last batch; with open nil the
// rows are dropped (the source's share alone).
func (b *bench) snapshot(ctx context.Context, run int, kind string, open opener) (float64, int64, float64, error) {
	name := fmt.Sprintf("snap_%s_%d", kind, run)
	defer b.profile(name)()
	resetPeakRSS()
	applyBusy.Store(0)
	start := time.Now()
	src, err := newSource(b.url, name, "customers")
	if err != nil {
		return 0, 0, 0, err
	}
	defer src.Close()
	tables, err := src.Prepare(ctx)
	if err != nil {
		return 0, 0, 0, err
	}
	var tgt pipeline.Target = discard{}
	if open != nil {
		t, closeT, err := open(ctx, name)
		if err != nil {
			return 0, 0, 0, err
		}
		defer closeT()
		tgt = t
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var end time.Time
	obs := observed{Target: tgt, after: func(bt *change.Batch, at time.Time) {
		if len(bt.Snapshotted) > 0 {
			end = at
			cancel()
		}
	}}
	p := pipeline.New(src, obs, pipeline.Options{Logger: slog.New(slog.DiscardHandler)})
	if err := p.Run(runCtx, tables); err != nil {
		return 0, 0, 0, err
	}
	if end.IsZero() {
		return 0, 0, 0, fmt.Errorf("snapshot did not complete")
	}
	rss := peakRSS()
	if err := b.dropSlot(ctx, src.SlotName()); err != nil {
		return 0, 0, 0, err
	}
	return float64(b.flags.rows) / end.Sub(start).Seconds(), rss, float64(applyBusy.Load()) / float64(end.Sub(start)), nil
}

// streaming runs the catch-up workload once: slots for pg_recvlogical and
// for sluice into each target created on an empty table, then inserts, an
// update of every even key, a delete of every tenth key (asynchronous
// commit, 5,000-row transactions); then each reader drains its slot.
func (b *bench) streaming(ctx context.Context, run int) (map[string]figure, error) {
	table := fmt.Sprintf("stream_%d", run)
	if _, err := b.conn.Exec(ctx, `CREATE TABLE `+table+` `+customers); err != nil {
		return nil, err
	}
	type reader struct {
		target string
		open   opener
		src    *postgres.Source
		tgt    pipeline.Target
		close  func()
	}
	var readers []*reader
	openers := map[string]opener{"duckdb": b.openDuckDB, "postgres": b.openPostgres}
	for _, t := range b.flags.targets {
		rd := &reader{target: t, open: openers[t]}
		name := fmt.Sprintf("stream_%s_%d", t, run)
		var err error
		if rd.src, err = newSource(b.url, name, table); err != nil {
			return nil, err
		}
		tables, err := rd.src.Prepare(ctx)
		if err != nil {
			return nil, err
		}
		if rd.tgt, rd.close, err = rd.open(ctx, name); err != nil {
			return nil, err
		}
		defer rd.close()
		// Snapshot the empty table, so that the stream is all that is measured.
		if err := drain(ctx, rd.src, rd.tgt, tables, 0); err != nil {
			return nil, err
		}
		rd.src.Close()
		readers = append(readers, rd)
	}
	// The baseline's slot starts at the same point of the WAL.
	recvSlot := fmt.Sprintf("bench_recv_%d", run)
	if _, err := b.conn.Exec(ctx, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, recvSlot); err != nil {
		return nil, err
	}
	n := b.flags.inserts
	changes := n + n/2 + n/10
	load, err := pgx.Connect(ctx, b.url)
	if err != nil {
		return nil, err
	}
	defer load.Close(ctx)
	if _, err := load.Exec(ctx, `SET synchronous_commit = off`); err != nil {
		return nil, err
	}
	const txn = 5000
	for i := 0; i < n; i += txn {
		if _, err := load.Exec(ctx, `INSERT INTO `+table+` SELECT i, 'first' || i, 'last name ' || (i % 977), '+1-555-' || lpad((i % 10000)::text, 4, '0'),
			'user' || i || '@example.com', now(), (i % 100000) / 100.0 FROM generate_series($1::int, $2::int) i`, i+1, min(i+txn, n)); err != nil {
			return nil, err
		}
	}
	for i := 0; i < n; i += 2 * txn {
		if _, err := load.Exec(ctx, `UPDATE `+table+` SET balance = balance + 1 WHERE userid BETWEEN $1 AND $2 AND userid % 2 = 0`, i+1, min(i+2*txn, n)); err != nil {
			return nil, err
		}
	}
	for i := 0; i < n; i += 10 * txn {
		if _, err := load.Exec(ctx, `DELETE FROM `+table+` WHERE userid BETWEEN $1 AND $2 AND userid % 10 = 0`, i+1, min(i+10*txn, n)); err != nil {
			return nil, err
		}
	}
	var endLSN string
	if err := load.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&endLSN); err != nil {
		return nil, err
	}
	// pg_recvlogical waits for the WAL up to endpos to be flushed.
	if _, err := load.Exec(ctx, `SELECT pg_switch_wal()`); err != nil {
		return nil, err
	}

	recv := filepath.Join(b.pg.Bin, "pg_recvlogical")
	start := time.Now()
	cmd := exec.CommandContext(ctx, recv, "-d", b.url, "--slot", recvSlot, "--start", "--no-loop",
		"-o", "proto_version=1", "-o", "publication_names="+readers[0].src.PublicationName(), "--endpos", endLSN, "-f", "/dev/null")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("pg_recvlogical: %w: %s", err, out)
	}
	recvRate := float64(changes) / time.Since(start).Seconds()
	if err := b.dropSlot(ctx, recvSlot); err != nil {
		return nil, err
	}

	out := map[string]figure{}
	for _, rd := range readers {
		// sluice restarted: a new source on the existing slot.
		stopProfile := b.profile(fmt.Sprintf("stream_%s_%d", rd.target, run))
		resetPeakRSS()
		applyBusy.Store(0)
		start := time.Now()
		src, err := newSource(b.url, fmt.Sprintf("stream_%s_%d", rd.target, run), table)
		if err != nil {
			return nil, err
		}
		tables, err := src.Prepare(ctx)
		if err != nil {
			return nil, err
		}
		if err := drain(ctx, src, rd.tgt, tables, changes); err != nil {
			return nil, err
		}
		took := time.Since(start)
		rate := float64(changes) / took.Seconds()
		stopProfile()
		out[rd.target] = figure{base: recvRate, sluice: rate, rss: peakRSS(), busy: float64(applyBusy.Load()) / float64(took)}
		src.Close()
		if err := b.dropSlot(ctx, src.SlotName()); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// dropSlot drops a slot once its reader's WAL sender has gone (it ends
// shortly after the reader closed its connection), so that later runs do
// not pay for WAL it retains.
func (b *bench) dropSlot(ctx context.Context, slot string) error {
	var err error
	for range 100 {
		if _, err = b.conn.Exec(ctx, `SELECT pg_drop_replication_slot($1)`, slot); err == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("drop slot %s: %w", slot, err)
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

func (b *bench) latency(ctx context.Context, target string) (time.Duration, time.Duration, int, error) {
	table := "lat_" + target
	if _, err := b.conn.Exec(ctx, `CREATE TABLE `+table+` (id bigint PRIMARY KEY, v int, at timestamptz)`); err != nil {
		return 0, 0, 0, err
	}
	src, err := newSource(b.url, "lat_"+target, table)
	if err != nil {
		return 0, 0, 0, err
	}
	defer src.Close()
	tables, err := src.Prepare(ctx)
	if err != nil {
		return 0, 0, 0, err
	}
	open := map[string]opener{"duckdb": b.openDuckDB, "postgres": b.openPostgres}[target]
	tgt, closeT, err := open(ctx, "lat_"+target)
	if err != nil {
		return 0, 0, 0, err
	}
	defer closeT()
	var mu sync.Mutex
	var lat []time.Duration
	obs := observed{Target: tgt, after: func(bt *change.Batch, at time.Time) {
		mu.Lock()
		defer mu.Unlock()
		for i := range bt.Changes {
			if c := &bt.Changes[i]; c.Op != change.OpRead {
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
	per := max(b.flags.rate/100, 1)
	tick := time.NewTicker(10 * time.Millisecond)
	id := 0
	stop := time.Now().Add(time.Duration(b.flags.seconds) * time.Second)
	for time.Now().Before(stop) {
		<-tick.C
		if _, err := b.conn.Exec(ctx, `INSERT INTO `+table+` SELECT i, 0, now() FROM generate_series($1::bigint, $2::bigint) i`, id+1, id+per); err != nil {
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

// profile starts a CPU profile of one measurement when -profiles is set
// and returns its stop.
func (b *bench) profile(name string) func() {
	if b.flags.profiles == "" {
		return func() {}
	}
	f, err := os.Create(filepath.Join(b.flags.profiles, name+".prof"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench: profile:", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		fmt.Fprintln(os.Stderr, "bench: profile:", err)
		f.Close()
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}

// resetPeakRSS starts a new peak-RSS measurement of this process (Linux:
// writing 5 to clear_refs resets VmHWM); elsewhere it does nothing.
func resetPeakRSS() { _ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

// peakRSS is the process' peak resident set since resetPeakRSS, in bytes
// (0 where /proc is missing).
func peakRSS() int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}
